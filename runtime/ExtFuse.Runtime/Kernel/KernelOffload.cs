using System.Runtime.CompilerServices;
using ExtFuse.Bpf;
using ExtFuse.Declarative;
using ExtFuse.Policy;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse.Kernel;

/// <summary>Where one kind of rule of a mounted file system runs, and why there.</summary>
public sealed record OffloadChoice(string Rules, bool InKernel, string Where);

/// <summary>
/// The kernel side of one mounted file system, chosen from the capability probe: in-kernel
/// statistics (tp_btf, pinned for `extfuse stats`) when the kernel has them, and the fast-path
/// and rule hit counters, in a BPF array the daemon maps into its memory (or in the daemon's
/// own memory without BPF). <see cref="Plan"/> says where each rule runs; the session logs it
/// once at mount.
/// </summary>
public sealed class KernelOffload : IDisposable
{
    private BpfMappedArray<ulong>? _shared;
    private readonly long[] _own = new long[FuseStatistics.CounterSlots];
    private readonly RawFileSystem _fs;
    private readonly IReadOnlyList<Capability> _caps;
    private IReadOnlyList<string> _ruleNames;

    private KernelOffload(RawFileSystem fs, IReadOnlyList<string> ruleNames, IReadOnlyList<Capability> caps, string statsDetail)
    {
        _fs = fs;
        _ruleNames = ruleNames;
        _caps = caps;
        StatisticsDetail = statsDetail;
    }

    /// <summary>Sets up what the kernel allows for connection <paramref name="connectionId"/>; without BPF, counters stay in the daemon.</summary>
    /// <param name="ruleNames">The counters' names: the [Check] methods, then the policy's rules (the session's).</param>
    /// <param name="statisticsInBackground">Attach the statistics programs on another thread (the sandbox
    /// starts its command sooner); the kernel counts from when they are attached.</param>
    public static KernelOffload Start(RawFileSystem fs, IReadOnlyList<string> ruleNames, uint connectionId, bool useBpf, bool statisticsInBackground = false)
    {
        if (!useBpf)
            return new(fs, ruleNames, [], "off (-o no_bpf)");
        var caps = KernelCapabilities.ProbeBpf();
        if (!caps.Has("tp_btf on FUSE tracepoints"))
            return new(fs, ruleNames, caps, caps.Has("bpf(2)") ? caps.Get("tp_btf on FUSE tracepoints").Detail : "no BPF");
        var offload = new KernelOffload(fs, ruleNames, caps, "tp_btf (attaching)");
        if (statisticsInBackground) offload._attaching = Task.Run(() => offload.AttachStatistics(connectionId));
        else offload.AttachStatistics(connectionId);
        return offload;
    }

    private Task? _attaching;

    private void AttachStatistics(uint connectionId)
    {
        FuseStatistics? stats = null;
        try
        {
            stats = FuseStatistics.Attach(connectionId);
            string detail;
            lock (_own)
            {
                stats.NameRules(_ruleNames);
                detail = "tp_btf";
                if (_caps.Has("bpffs"))
                {
                    stats.Pin(Environment.ProcessId);
                    detail += $", pinned at {FuseStatistics.PinDirectory(connectionId)}";
                }
                var shared = stats.MapCounters();
                // Counts made before the programs were there move into the shared array.
                for (var i = 0; i < _own.Length; i++)
                    if (Interlocked.Exchange(ref _own[i], 0) is var n and not 0) Interlocked.Add(ref Unsafe.As<ulong, long>(ref shared[i]), n);
                (_shared, Statistics, StatisticsDetail) = (shared, stats, detail);
            }
        }
        catch (Exception e) when (e is BpfException or IOException or UnauthorizedAccessException)
        {
            stats?.Dispose();
            StatisticsDetail = "attach failed: " + e.Message.Split('\n')[0];
        }
    }

    /// <summary>
    /// Puts the mount's rules into the kernel where it has BPF LSM and there are rules ([Check]
    /// methods or a policy): null (with the reason in <see cref="PolicyDetail"/>) where it cannot.
    /// </summary>
    internal KernelPolicy? StartPolicy(uint dev, AccessPolicy policy, bool hasChecks, Action<KernelAuditEvent> denied)
    {
        if (_caps.Count == 0) { PolicyDetail = "-o no_bpf"; return null; }
        if (!_caps.Has("BPF LSM")) { PolicyDetail = $"no BPF LSM: {Detail("BPF LSM")}"; return null; }
        if (!hasChecks && policy.Count == 0 && !policy.DefaultDeny) { PolicyDetail = "no rules"; return null; }
        try
        {
            LsmPolicy = KernelPolicy.Start(_fs, dev, policy, denied);
            PolicyDetail = $"kernel (BPF LSM: {LsmPolicy.Programs} programs of {LsmPolicy.ObjectName}), and the daemon for what they leave to it";
        }
        catch (Exception e) when (e is BpfException or FileNotFoundException or IOException)
        {
            PolicyDetail = $"daemon (BPF LSM is available, but the programs did not load: {e.Message.Split('\n')[0]})";
        }
        return LsmPolicy;
    }

    /// <summary>The mount's rules in the kernel's LSM programs, when they run there.</summary>
    public KernelPolicy? LsmPolicy { get; private set; }
    public string PolicyDetail { get; private set; } = "not started";

    /// <summary>In-kernel request statistics since mount; null when the kernel cannot count them (see <see cref="StatisticsDetail"/>).</summary>
    public FuseStatistics? Statistics { get; private set; }
    public string StatisticsDetail { get; private set; }

    /// <summary>True when this kernel gave the daemon no BPF at all.</summary>
    public bool NoBpf => _caps.Count > 0 && !_caps.Has("bpf(2)");
    public string NoBpfReason => _caps.Get("bpf(2)").Detail;

    internal void CountFastPath(FuseOpcode op) => Increment((int)Math.Min((uint)op, 63u));

    /// <summary>The rules were replaced (a policy reload): the counters start again under the new names.</summary>
    internal void RulesChanged(IReadOnlyList<string> ruleNames)
    {
        lock (_own)
        {
            _ruleNames = ruleNames;
            for (var i = FuseStatistics.FirstRuleSlot; i < FuseStatistics.CounterSlots; i++)
            {
                if (_shared is { } m) Volatile.Write(ref m[i], 0UL);
                Volatile.Write(ref _own[i], 0L);
            }
            Statistics?.NameRules(ruleNames);
        }
    }

    internal void CountRule(int rule)
    {
        if (rule >= 0 && rule < FuseStatistics.MaxRules) Increment(FuseStatistics.FirstRuleSlot + rule);
    }

    private void Increment(int slot)
    {
        if (_shared is { } m) Interlocked.Increment(ref Unsafe.As<ulong, long>(ref m[slot]));
        else Interlocked.Increment(ref _own[slot]);
    }

    /// <summary>A counter: the shared array's, plus what the daemon counted in its own memory before (or while) the array came.</summary>
    private ulong Read(int slot)
    {
        lock (_own) return (_shared is { } m ? Volatile.Read(ref m[slot]) : 0) + (ulong)Volatile.Read(ref _own[slot]);
    }

    /// <summary>Requests a [FastPath] answered, by opcode (the daemon's and the kernel's together).</summary>
    public ulong FastPathServed(FuseOpcode op) => Read((int)Math.Min((uint)op, 63u));

    /// <summary>Every rule of the file system with how often it refused a request.</summary>
    public IReadOnlyList<RuleHits> RuleHits()
    {
        return [.. _ruleNames.Take(FuseStatistics.MaxRules).Select((n, i) => new RuleHits(n, Read(FuseStatistics.FirstRuleSlot + i)))];
    }

    /// <summary>Where each kind of rule the file system declares runs, given what INIT negotiated.</summary>
    public IReadOnlyList<OffloadChoice> Plan(FuseConnection connection)
    {
        var plan = new List<OffloadChoice>();
        if (_fs is ExtFuse.Nodes.NodeFileSystem nodes)
            plan.Add(new("caching", true, $"kernel caches (entry {Seconds(nodes.EntryTimeout)}, attr {Seconds(nodes.AttrTimeout)})"));
        var paths = _fs.Session?.Policy.Rules ?? _fs.PathRules;
        if (paths.Any(p => p.Kind == PathRuleKind.Passthrough))
            plan.Add(connection.Has(InitFlags.Passthrough)
                ? new("[Passthrough]", true, "kernel (FUSE passthrough)")
                : new("[Passthrough]", false, "daemon (" + ((connection.KernelFlags & InitFlags.Passthrough) == 0 ? "the kernel offers no FUSE passthrough" : "passthrough is off with writeback_cache") + ")"));
        var enforced = new[] { (_fs.Rules.Count > 0, "[Check]"), (paths.Any(p => p.Kind == PathRuleKind.Deny) || _fs.Session?.Policy.DefaultDeny == true, "[Deny]"), (paths.Any(p => p.Kind == PathRuleKind.Allow), "[Allow]"), (paths.Any(p => p.Kind == PathRuleKind.Hide), "[Hide]") }
            .Where(x => x.Item1).Select(x => x.Item2).ToList();
        if (enforced.Count > 0)
            plan.Add(new(string.Join(" ", enforced), LsmPolicy is not null, LsmPolicy is not null ? PolicyDetail
                : _caps.Has("BPF LSM") ? $"daemon ({PolicyDetail})" : $"daemon (no BPF LSM: {Detail("BPF LSM")})"));
        if (_fs.FastPaths.Count > 0)
            plan.Add(new($"[FastPath] {string.Join(" ", _fs.FastPaths.Select(f => f.Op))}", false, _caps.Has("ExtFUSE program type")
                ? "daemon (the kernel has the ExtFUSE program type; attaching it at INIT is not done by this runtime yet)"
                : $"daemon, after the kernel's attribute cache (no ExtFUSE program type: {Detail("ExtFUSE program type")})"));
        plan.Add(Statistics is null ? new("statistics", false, $"daemon counters only ({StatisticsDetail})") : new("statistics", true, $"kernel ({StatisticsDetail})"));
        return plan;
    }

    private string Detail(string cap) => _caps.Count == 0 ? "-o no_bpf" : _caps.Get(cap).Detail;

    private static string Seconds(TimeSpan t) => $"{t.TotalSeconds:0.###} s";

    /// <summary>The plan as the one line logged at mount.</summary>
    public static string Format(IEnumerable<OffloadChoice> plan) => string.Join("; ", plan.Select(c => $"{c.Rules} -> {c.Where}"));

    /// <summary>Called once the readers have stopped: the counts stay readable, from the daemon's own copy.</summary>
    public void Dispose()
    {
        _attaching?.Wait(TimeSpan.FromSeconds(10));
        LsmPolicy?.Dispose();
        lock (_own)
        {
            var shared = _shared;
            if (shared is not null)
                for (var i = 0; i < _own.Length; i++) _own[i] += (long)shared[i];
            _shared = null;
            shared?.Dispose();
        }
        Statistics?.Dispose();
    }
}
