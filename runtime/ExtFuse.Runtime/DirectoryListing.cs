using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse;

/// <summary>
/// Builds a READDIR or READDIRPLUS reply in the request's own buffer: fuse_dirent records (with a
/// fuse_entry_out before each for READDIRPLUS), 8-byte aligned, never more than the kernel asked for.
/// </summary>
public ref struct DirectoryListing
{
    private readonly FuseRequest _request;
    private readonly Span<byte> _buffer;
    private int _length;

    public DirectoryListing(FuseRequest request, uint size)
    {
        _request = request;
        _buffer = request.GetReplyBuffer((int)size);
    }

    public readonly int Length => _length;

    /// <summary>Directory entry type (DT_*) from a mode.</summary>
    public static uint TypeOf(uint mode) => (mode & 0xF000) >> 12;

    /// <summary>Adds a READDIR entry; false (and nothing added) when it does not fit.</summary>
    public bool Add(ulong ino, scoped ReadOnlySpan<byte> name, uint mode, ulong nextOffset)
    {
        var recLen = Align(24 + name.Length);
        if (_length + recLen > _buffer.Length) return false;
        WriteDirent(_buffer.Slice(_length, recLen), ino, name, mode, nextOffset);
        _length += recLen;
        return true;
    }

    /// <summary>Adds a READDIRPLUS entry. An entry with NodeId 0 carries no lookup reference.</summary>
    public bool AddPlus(scoped in FuseEntryOut entry, scoped ReadOnlySpan<byte> name, ulong nextOffset)
    {
        var entrySize = Unsafe.SizeOf<FuseEntryOut>();
        var recLen = entrySize + Align(24 + name.Length);
        if (_length + recLen > _buffer.Length) return false;
        var rec = _buffer.Slice(_length, recLen);
        MemoryMarshal.Write(rec, in entry);
        WriteDirent(rec[entrySize..], entry.Attr.Ino, name, entry.Attr.Mode, nextOffset);
        _length += recLen;
        return true;
    }

    public readonly void Reply() => _request.ReplyBuffer(_length);

    private static int Align(int n) => (n + 7) & ~7;

    private static void WriteDirent(Span<byte> rec, ulong ino, scoped ReadOnlySpan<byte> name, uint mode, ulong off)
    {
        var d = new FuseDirent { Ino = ino, Off = off, NameLen = (uint)name.Length, Type = TypeOf(mode) };
        MemoryMarshal.Write(rec, in d);
        name.CopyTo(rec[24..]);
        rec[(24 + name.Length)..].Clear();
    }
}
