using System.Text;
using ExtFuse.Session;

namespace ExtFuse.Tests.Support;

/// <summary>Captures what would have been written to /dev/fuse.</summary>
public sealed class RecordingChannel : IFuseChannel
{
    public List<byte[]> Messages { get; } = [];

    public int Send(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail)
    {
        lock (Messages) Messages.Add([.. head, .. tail]);
        return 0;
    }
}

/// <summary>Little-endian message builder, written from fuse.h field by field (independent of our structs).</summary>
public sealed class Wire
{
    private readonly List<byte> _b = [];
    public Wire U16(ushort v) { _b.AddRange(BitConverter.GetBytes(v)); return this; }
    public Wire U32(uint v) { _b.AddRange(BitConverter.GetBytes(v)); return this; }
    public Wire U64(ulong v) { _b.AddRange(BitConverter.GetBytes(v)); return this; }
    public Wire Str(string s) { _b.AddRange(Encoding.UTF8.GetBytes(s)); _b.Add(0); return this; }
    public Wire Raw(params byte[] bytes) { _b.AddRange(bytes); return this; }
    public Wire Zeros(int n) { _b.AddRange(new byte[n]); return this; }
    public byte[] Bytes => [.. _b];

    /// <summary>fuse_in_header (40 bytes) + body.</summary>
    public static byte[] Request(uint opcode, ulong nodeId, byte[] body, ulong unique = 0, uint uid = 1000, uint gid = 100, uint pid = 4242) =>
        new Wire().U32((uint)(40 + body.Length)).U32(opcode).U64(unique == 0 ? 0x100 + opcode : unique).U64(nodeId)
            .U32(uid).U32(gid).U32(pid).U32(0).Raw(body).Bytes;
}
