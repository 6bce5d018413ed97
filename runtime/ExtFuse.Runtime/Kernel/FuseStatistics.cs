using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using ExtFuse.Bpf;
using ExtFuse.Protocol;

namespace ExtFuse.Kernel;

/// <summary>What the kernel sent for one opcode: requests, how many have been answered, and how fast.</summary>
/// <param name="Histogram">Answered requests by latency: bucket i counts latencies in [2^i, 2^(i+1)) microseconds (bucket 0 also below 1 µs).</param>
public sealed record OpcodeStatistics(FuseOpcode Opcode, ulong Sent, ulong Completed, TimeSpan TotalLatency, ulong[] Histogram)
{
    public TimeSpan MeanLatency => Completed == 0 ? TimeSpan.Zero : TotalLatency / Completed;

    /// <summary>What happened between two snapshots: <paramref name="before"/> subtracted from <paramref name="after"/>.</summary>
    public static IReadOnlyList<OpcodeStatistics> Difference(IReadOnlyList<OpcodeStatistics> after, IReadOnlyList<OpcodeStatistics> before)
    {
        var earlier = before.ToDictionary(s => s.Opcode);
        return [.. after.Select(a => earlier.TryGetValue(a.Opcode, out var b)
                ? a with { Sent = a.Sent - b.Sent, Completed = a.Completed - b.Completed, TotalLatency = a.TotalLatency - b.TotalLatency,
                           Histogram = [.. a.Histogram.Zip(b.Histogram, (x, y) => x - y)] }
                : a).Where(s => s.Sent != 0)];
    }
}

/// <summary>A request that took longer than the threshold given to <see cref="FuseStatistics.WatchSlowRequests"/>, from send to answer.</summary>
public sealed record SlowRequest(FuseOpcode Opcode, ulong Unique, ulong NodeId, uint Pid, TimeSpan Latency);

/// <summary>How often a rule refused a request (<paramref name="Rule"/> as the file system declares it).</summary>
public sealed record RuleHits(string Rule, ulong Hits);

/// <summary>
/// In-kernel statistics for one FUSE connection, counted by BPF programs on the
/// tp_btf/fuse_request_send and fuse_request_end tracepoints (bpf-runtime/ExtFuse.Bpf/programs/
/// extfuse_stats.bpf.c): requests by opcode as the kernel sent them, and their latency from
/// send to answer, including the time they waited in the kernel's queue; slow requests as
/// events; and the fast-path and rule hit counters the daemon (or kernel-side rules) add to.
/// A daemon pins its maps under <see cref="PinDirectory"/>, so `extfuse stats` shows the
/// numbers since mount.
/// </summary>
public sealed class FuseStatistics : IDisposable
{
    public const int Buckets = 32;
    /// <summary>Counter slots: [0, 64) fast-path answers by opcode, [64, 384) rule hits ([Check] methods, then the policy's rules).</summary>
    public const int CounterSlots = 384, FirstRuleSlot = 64, MaxRules = CounterSlots - FirstRuleSlot, RuleNameBytes = 64;

    /// <summary>struct op_stats of the C program.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct OpStats
    {
        public ulong Count, Completed, TotalNs;
        public fixed ulong Histogram[Buckets];
    }

    /// <summary>struct config of the C program.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Config
    {
        public uint Dev, OwnerPid;
        public ulong SlowNs, SinceNs;
    }

    /// <summary>struct slow_request of the C program.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct SlowEvent
    {
        public ulong Unique, NodeId, LatencyNs;
        public uint Opcode, Pid;
    }

    [InlineArray(RuleNameBytes)]
    internal struct RuleName { private byte _b; }

    /// <summary>The maps a daemon pins, by their names in the C program.</summary>
    private static readonly string[] Pinned = ["config", "ops", "counters", "rule_names", "slow"];

    private readonly BpfObject? _obj;
    private readonly BpfMap<uint, Config> _config;
    private readonly BpfMap<uint, OpStats> _ops;
    private readonly BpfMap<uint, ulong> _counters;
    private readonly BpfMap<uint, RuleName> _ruleNames;
    /// <summary>Where the maps are pinned (by this process or the daemon that opened them), else null.</summary>
    private string? _pinnedAt;

    private FuseStatistics(BpfObject? obj, BpfMap<uint, Config> config, BpfMap<uint, OpStats> ops, BpfMap<uint, ulong> counters,
                           BpfMap<uint, RuleName> ruleNames, uint connectionId)
    {
        _obj = obj;
        (_config, _ops, _counters, _ruleNames) = (config, ops, counters, ruleNames);
        ConnectionId = connectionId;
    }

    public static string ProgramObject => Path.Combine(AppContext.BaseDirectory, "extfuse_stats.bpf.o");

    /// <summary>Where the daemon serving connection <paramref name="connectionId"/> pins its statistics maps.</summary>
    public static string PinDirectory(uint connectionId) => $"/sys/fs/bpf/extfuse/{connectionId}";

    /// <summary>Starts counting the requests of connection <paramref name="connectionId"/> (FuseMount.ConnectionId).
    /// Throws <see cref="BpfException"/> when the kernel cannot (no BPF, no tp_btf, not root).</summary>
    public static FuseStatistics Attach(uint connectionId)
    {
        var obj = BpfObject.Open(ProgramObject);
        try
        {
            obj.Load();
            var stats = new FuseStatistics(obj, obj.Map<uint, Config>("config"), obj.Map<uint, OpStats>("ops"), obj.Map<uint, ulong>("counters"),
                                           obj.Map<uint, RuleName>("rule_names"), connectionId);
            stats._config.Update(0, new Config { Dev = connectionId, SinceNs = MonotonicNs() });
            obj.Program("on_request_send").Attach();
            obj.Program("on_request_end").Attach();
            return stats;
        }
        catch
        {
            obj.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The statistics a live daemon pinned for connection <paramref name="connectionId"/>, counting
    /// since it mounted; null when none did (or its daemon is gone: stale pins are removed).
    /// </summary>
    public static FuseStatistics? OpenPinned(uint connectionId)
    {
        var dir = PinDirectory(connectionId);
        if (!Pinned.All(m => File.Exists(Path.Combine(dir, m)))) return null;
        var opened = new List<IDisposable>();
        try
        {
            BpfMap<uint, T> Open<T>(string name) where T : unmanaged
            {
                var m = BpfMap<uint, T>.OpenPinned(Path.Combine(dir, name));
                opened.Add(m);
                return m;
            }
            var stats = new FuseStatistics(null, Open<Config>("config"), Open<OpStats>("ops"), Open<ulong>("counters"), Open<RuleName>("rule_names"), connectionId)
                { _pinnedAt = dir };
            var config = stats._config[0];
            if (config.Dev == connectionId && config.OwnerPid != 0 && Directory.Exists($"/proc/{config.OwnerPid}")) return stats;
            stats.Dispose();
            RemovePins(dir);
            return null;
        }
        catch (BpfException)
        {
            foreach (var m in opened) m.Dispose();
            return null;
        }
    }

    public uint ConnectionId { get; }
    /// <summary>The daemon that pinned these statistics, or 0.</summary>
    public int OwnerPid => (int)_config[0].OwnerPid;

    /// <summary>How long these statistics have been counting (since mount, for a daemon's).</summary>
    public TimeSpan Counting => TimeSpan.FromTicks((long)(MonotonicNs() - _config[0].SinceNs) / 100);

    // CLOCK_MONOTONIC, as bpf_ktime_get_ns and Stopwatch on Linux: comparable across processes.
    private static ulong MonotonicNs() => (ulong)(System.Diagnostics.Stopwatch.GetTimestamp() * (1_000_000_000.0 / System.Diagnostics.Stopwatch.Frequency));

    /// <summary>Pins the maps under <see cref="PinDirectory"/> for `extfuse stats`, replacing stale pins of an earlier daemon.</summary>
    internal void Pin(int ownerPid)
    {
        var dir = PinDirectory(ConnectionId);
        RemovePins(dir);
        Directory.CreateDirectory(dir);
        var config = _config[0];
        config.OwnerPid = (uint)ownerPid;
        config.SinceNs = MonotonicNs();
        _config.Update(0, config);
        _pinnedAt = dir;
        foreach (var map in Pinned) _obj!.PinMap(map, Path.Combine(dir, map));
    }

    /// <summary>Whether the pins in <paramref name="dir"/> are still this daemon's: once its mount is gone,
    /// a new mount can get the same connection id, and its daemon pins its own maps there.</summary>
    private bool PinnedHere(string dir)
    {
        try
        {
            using var pinned = BpfMap<uint, Config>.OpenPinned(Path.Combine(dir, "config"));
            return pinned.Id == _config.Id;
        }
        catch (BpfException) { return false; }
    }

    private static void RemovePins(string dir)
    {
        if (!Directory.Exists(dir)) return;
        foreach (var f in Directory.GetFiles(dir)) File.Delete(f);
        Directory.Delete(dir);
    }

    /// <summary>The fast-path and rule counters in this process's memory, shared with the kernel.</summary>
    internal BpfMappedArray<ulong> MapCounters() => _counters.MapValues();

    /// <summary>Names the rule counters (slot 64 + i is rule i), as `extfuse stats` prints them.</summary>
    internal void NameRules(IReadOnlyList<string> rules)
    {
        var count = Math.Min(rules.Count, MaxRules);
        var keys = new uint[count];
        var names = new RuleName[count];
        for (var i = 0; i < count; i++)
        {
            keys[i] = (uint)i;
            var bytes = Encoding.UTF8.GetBytes(rules[i]);
            bytes.AsSpan(0, Math.Min(bytes.Length, RuleNameBytes - 1)).CopyTo(names[i]);
        }
        _ruleNames.UpdateBatch(keys, names);
    }

    /// <summary>Every opcode the kernel has sent since counting began.</summary>
    public unsafe IReadOnlyList<OpcodeStatistics> Snapshot()
    {
        var result = new List<OpcodeStatistics>();
        foreach (var (op, s) in _ops.Entries().OrderBy(e => e.Key))
        {
            if (s.Count == 0) continue;
            var histogram = new ulong[Buckets];
            for (var i = 0; i < Buckets; i++) histogram[i] = s.Histogram[i];
            result.Add(new OpcodeStatistics((FuseOpcode)op, s.Count, s.Completed, TimeSpan.FromTicks((long)(s.TotalNs / 100)), histogram));
        }
        return result;
    }

    /// <summary>Requests a fast path answered without the file system's handler, by opcode.</summary>
    public IReadOnlyList<(FuseOpcode Opcode, ulong Served)> FastPathServed() =>
        [.. _counters.Entries().Where(e => e.Key < FirstRuleSlot && e.Value != 0).OrderBy(e => e.Key).Select(e => ((FuseOpcode)e.Key, e.Value))];

    /// <summary>Every named rule with its hits (zero included).</summary>
    public IReadOnlyList<RuleHits> Rules()
    {
        var counts = _counters.Entries().ToDictionary(e => e.Key, e => e.Value);
        var result = new List<RuleHits>();
        foreach (var (i, name) in _ruleNames.Entries().OrderBy(e => e.Key))
        {
            ReadOnlySpan<byte> bytes = name;
            var end = bytes.IndexOf((byte)0);
            if (end == 0) continue;
            result.Add(new(Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]), counts.GetValueOrDefault(FirstRuleSlot + i)));
        }
        return result;
    }

    /// <summary>
    /// Sends every request slower than <paramref name="threshold"/> (send to answer) to
    /// <paramref name="onRequest"/>, from a BPF ring buffer, during the returned buffer's Poll.
    /// </summary>
    public BpfRingBuffer WatchSlowRequests(TimeSpan threshold, Action<SlowRequest> onRequest)
    {
        var config = _config[0];
        config.SlowNs = (ulong)Math.Max(1, threshold.Ticks * 100);
        BpfRingBuffer.RecordHandler handler = record =>
        {
            var e = MemoryMarshal.Read<SlowEvent>(record);
            onRequest(new SlowRequest((FuseOpcode)e.Opcode, e.Unique, e.NodeId, e.Pid, TimeSpan.FromTicks((long)(e.LatencyNs / 100))));
        };
        var rb = _obj is not null ? BpfRingBuffer.Open(_obj, "slow", handler) : BpfRingBuffer.OpenPinned(Path.Combine(_pinnedAt!, "slow"), handler);
        _config.Update(0, config);
        return rb;
    }

    /// <summary>Stops counting (and removes this process's pins); maps opened from pins are only closed.</summary>
    public void Dispose()
    {
        if (_obj is null)
        {
            // A reader of the daemon's pins turns off the slow-request events it may have asked for.
            try { if (_config[0] is { SlowNs: not 0 } c) _config.Update(0, c with { SlowNs = 0 }); }
            catch (BpfException) { }
            _config.Dispose(); _ops.Dispose(); _counters.Dispose(); _ruleNames.Dispose();
            return;
        }
        if (_pinnedAt is { } dir && PinnedHere(dir)) { try { RemovePins(dir); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
        _pinnedAt = null;
        _obj.Dispose();
    }
}
