using System.Runtime.InteropServices;
using ExtFuse.Bpf;
using ExtFuse.Protocol;

namespace ExtFuse.Kernel;

/// <summary>What the kernel sent for one opcode: requests, how many have been answered, and how fast.</summary>
/// <param name="Histogram">Answered requests by latency: bucket i counts latencies in [2^i, 2^(i+1)) microseconds (bucket 0 also below 1 µs).</param>
public sealed record OpcodeStatistics(FuseOpcode Opcode, ulong Sent, ulong Completed, TimeSpan MeanLatency, ulong[] Histogram);

/// <summary>
/// In-kernel statistics for one FUSE connection, counted by BPF programs on the
/// tp_btf/fuse_request_send and fuse_request_end tracepoints (bpf-runtime/ExtFuse.Bpf/programs/
/// extfuse_stats.bpf.c): requests by opcode as the kernel sent them, and their latency from
/// send to answer, including the time they waited in the kernel's queue.
/// </summary>
public sealed class FuseStatistics : IDisposable
{
    public const int Buckets = 32;

    /// <summary>struct op_stats of the C program.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct OpStats
    {
        public ulong Count, Completed, TotalNs;
        public fixed ulong Histogram[Buckets];
    }

    private readonly BpfObject _obj;
    private readonly BpfMap<uint, OpStats> _ops;

    private FuseStatistics(BpfObject obj, BpfMap<uint, OpStats> ops) { _obj = obj; _ops = ops; }

    public static string ProgramObject => Path.Combine(AppContext.BaseDirectory, "extfuse_stats.bpf.o");

    /// <summary>Starts counting the requests of connection <paramref name="connectionId"/> (FuseMount.ConnectionId).
    /// Throws <see cref="BpfException"/> when the kernel cannot (no BPF, no tp_btf, not root).</summary>
    public static FuseStatistics Attach(uint connectionId)
    {
        var obj = BpfObject.Open(ProgramObject);
        try
        {
            obj.Load();
            obj.Map<uint, uint>("watched").Update(0, connectionId);
            var ops = obj.Map<uint, OpStats>("ops");
            obj.Program("on_request_send").Attach();
            obj.Program("on_request_end").Attach();
            return new FuseStatistics(obj, ops) { ConnectionId = connectionId };
        }
        catch
        {
            obj.Dispose();
            throw;
        }
    }

    public uint ConnectionId { get; private init; }

    /// <summary>Every opcode the kernel has sent since <see cref="Attach"/>.</summary>
    public unsafe IReadOnlyList<OpcodeStatistics> Snapshot()
    {
        var result = new List<OpcodeStatistics>();
        for (uint op = 0; op < 64; op++)
        {
            if (!_ops.TryLookup(op, out var s) || s.Count == 0) continue;
            var histogram = new ulong[Buckets];
            for (var i = 0; i < Buckets; i++) histogram[i] = s.Histogram[i];
            var mean = s.Completed == 0 ? TimeSpan.Zero : TimeSpan.FromTicks((long)(s.TotalNs / s.Completed / 100));
            result.Add(new OpcodeStatistics((FuseOpcode)op, s.Count, s.Completed, mean, histogram));
        }
        return result;
    }

    public void Dispose() => _obj.Dispose();
}
