using ExtFuse.Declarative;

namespace ExtFuse.Policy;

/// <summary>The answer for one request: Errno 0 lets it through; Rule is the deciding rule's index (-1: the default or nothing);
/// Moved: a rename or link refused because it would change what that rule applies to.</summary>
public readonly record struct Verdict(int Errno, int Rule, bool Moved = false)
{
    public static Verdict Allowed => new(0, -1);
    public bool Denied => Errno != 0;
}

/// <summary>
/// The access rules of a mount, compiled: the file system's [Deny]/[Allow]/[Hide]/[Passthrough]
/// attributes in declaration order, then a policy file's rules in file order. Precedence:
/// <list type="number">
/// <item>[Hide]: a hidden name does not exist for anyone (caller-independent, decided before the rest);</item>
/// <item>[Deny]/[Allow]: the first rule that names the operation and whose path and caller conditions
/// match decides it; a request that performs several operations (an open for writing: open and write)
/// is allowed when each of them is;</item>
/// <item>no rule matched: the policy's default (allow unless it says deny), for every operation but
/// Lookup and GetAttr, which only rules that name them decide.</item>
/// </list>
/// [Check] methods run before all of these. The same tables drive the kernel's BPF LSM programs
/// (<see cref="KernelRules"/>, <see cref="VerdictOf"/>), so the two decide alike.
/// </summary>
public sealed class AccessPolicy
{
    /// <summary>Rules a policy may have: one bit each in the kernel's per-node verdicts.</summary>
    public const int MaxRules = 256;

    /// <summary>Every operation of the vocabulary: what "all" names in a rule that does not depend on the caller.</summary>
    public const FuseOps AllOps = (FuseOps)ExtFuse.Protocol.Operations.AllBits;

    /// <summary>
    /// What "all" names in a rule that depends on the caller, and what the policy's default covers:
    /// every operation but Lookup and GetAttr. The kernel caches their answers for every caller, so no
    /// caller can be told apart there; and a default that refused lookups would leave nothing to allow.
    /// </summary>
    public const FuseOps DefaultOps = AllOps & ~(FuseOps.Lookup | FuseOps.GetAttr);

    private static int _generations;

    private readonly PathRule[] _rules;
    private readonly Glob?[] _globs;
    private readonly KernelRule[] _kernel;
    /// <summary>Per FuseOps bit, the [Deny]/[Allow] rules that name it, in order: a decision looks at those alone.</summary>
    private readonly int[][] _byOp;
    private readonly int[] _hides;

    /// <param name="rules">Attributes first, then the file's rules: index = precedence.</param>
    /// <param name="defaultDeny">What requests no rule matches get (for <see cref="DefaultOps"/>).</param>
    /// <param name="source">Where the rules came from, for messages.</param>
    public AccessPolicy(IEnumerable<PathRule> rules, bool defaultDeny = false, int defaultErrno = 13, string? source = null)
    {
        _rules = [.. rules];
        if (_rules.Length > MaxRules) throw new PolicyException(source, $"{_rules.Length} rules; a policy has at most {MaxRules}");
        _globs = [.. _rules.Select(r => r.Path is null ? null : Glob.Parse(r.Path))];
        DefaultDeny = defaultDeny;
        DefaultErrno = defaultErrno;
        Source = source;
        Generation = (uint)Interlocked.Increment(ref _generations);
        foreach (var r in _rules)
        {
            if (r.Kind is PathRuleKind.Deny or PathRuleKind.Allow) Ops |= r.Ops;
            HasHide |= r.Kind == PathRuleKind.Hide;
            HasPassthrough |= r.Kind == PathRuleKind.Passthrough;
            HasPaths |= r.Path is not null && r.Kind is PathRuleKind.Deny or PathRuleKind.Allow;
        }
        if (defaultDeny) Ops |= DefaultOps;
        _kernel = [.. _rules.Select(KernelRuleOf)];
        _byOp = [.. Enumerable.Range(0, 32).Select(b => Enumerable.Range(0, _rules.Length)
            .Where(i => _rules[i].Kind is PathRuleKind.Deny or PathRuleKind.Allow && ((uint)_rules[i].Ops & (1u << b)) != 0).ToArray())];
        _hides = [.. Enumerable.Range(0, _rules.Length).Where(i => _rules[i].Kind == PathRuleKind.Hide)];
    }

    public static AccessPolicy Empty { get; } = new([]);

    public IReadOnlyList<PathRule> Rules => _rules;
    public int Count => _rules.Length;
    public bool DefaultDeny { get; }
    public int DefaultErrno { get; }
    public string? Source { get; }
    /// <summary>Tells verdicts computed for one policy from another's.</summary>
    public uint Generation { get; }
    /// <summary>Operations some [Deny]/[Allow] rule or the default decides.</summary>
    public FuseOps Ops { get; }
    public bool HasHide { get; }
    public bool HasPassthrough { get; }
    /// <summary>Whether some [Deny]/[Allow] rule has a path condition (and so needs node paths).</summary>
    public bool HasPaths { get; }
    /// <summary>Whether some rule's answer depends on where a node is: a path condition or a hiding rule.</summary>
    public bool NeedsNodePaths => HasPaths || HasHide;
    public IReadOnlyList<string> RuleNames => [.. _rules.Select(r => r.Describe())];

    // ---- deciding ----

    /// <summary>A rule's path condition against one request: true, false, or unknown (the path is not known).</summary>
    private interface IPathTest
    {
        bool? Matches(int rule);
    }

    private readonly struct ByBits(in RuleBits bits) : IPathTest
    {
        private readonly RuleBits _bits = bits;
        public bool? Matches(int rule) => _bits.Has(rule);
    }

    private readonly struct ByPath(AccessPolicy policy, string? path) : IPathTest
    {
        public bool? Matches(int rule) => path is null ? null : policy._globs[rule]!.IsMatch(path);
    }

    /// <summary>Operations on names that [Hide] rules refuse: a hidden name cannot be found, made, moved or removed.</summary>
    public const FuseOps HideOps = FuseOps.Lookup | FuseOps.Create | FuseOps.MkDir | FuseOps.MkNod | FuseOps.Symlink | FuseOps.Link
                                   | FuseOps.Rename | FuseOps.Unlink | FuseOps.RmDir;

    /// <summary>
    /// The engine, the managed twin of extfuse_policy_decide in policy.h. A request that performs
    /// several operations (an open for reading and writing is open, read and write) is allowed when
    /// each of them is; the first refused one, in FuseOps bit order, answers it.
    /// </summary>
    private Verdict Decide<T>(FuseOps ops, ref Caller caller, in T paths, bool names) where T : struct, IPathTest
    {
        for (var bits = (uint)ops; bits != 0; bits &= bits - 1)
            if (DecideOne((FuseOps)(bits & (uint)-(int)bits), ref caller, paths, names) is { Denied: true } denied) return denied;
        return Verdict.Allowed;
    }

    /// <summary>
    /// One operation: the first rule that names it and matches decides. <paramref name="names"/>: the
    /// request makes, finds or removes a name, which first meets the [Hide] rules (EACCES; the session
    /// answers a LOOKUP with ENOENT).
    /// </summary>
    private Verdict DecideOne<T>(FuseOps ops, ref Caller caller, in T paths, bool names) where T : struct, IPathTest
    {
        if (names && (ops & HideOps) != 0)
            foreach (var i in _hides)
                if (paths.Matches(i) == true) return new Verdict(HiddenErrno, i);
        foreach (var i in _byOp[System.Numerics.BitOperations.TrailingZeroCount((uint)ops)])
        {
            var r = _rules[i];
            if (r.Uid >= 0 && r.Uid != caller.Uid || r.Gid >= 0 && r.Gid != caller.Gid) continue;
            if (_globs[i] is not null)
            {
                // Unknown path (a node reached without one): a deny may apply, an allow is not proven.
                var m = paths.Matches(i);
                if (m is null ? r.Kind == PathRuleKind.Allow : m == false) continue;
            }
            // Last, what costs a read of /proc: the process's name and cgroup.
            if (r.Comm is not null && r.Comm != caller.Comm || r.Cgroup is not null && !caller.InCgroup(r.Cgroup)) continue;
            return r.Kind == PathRuleKind.Deny ? new Verdict(r.Errno, i) : Verdict.Allowed;
        }
        return DefaultDeny && (ops & DefaultOps) != 0 ? new Verdict(DefaultErrno, -1) : Verdict.Allowed;
    }

    private static bool CallerMatches(PathRule r, ref Caller caller) =>
        (r.Uid < 0 || r.Uid == caller.Uid) && (r.Gid < 0 || r.Gid == caller.Gid)
        && (r.Comm is null || r.Comm == caller.Comm) && (r.Cgroup is null || caller.InCgroup(r.Cgroup));

    /// <summary>What a [Hide] rule answers (a LOOKUP gets ENOENT instead).</summary>
    public const int HiddenErrno = 13;

    /// <summary>A request on a node whose verdict the daemon keeps (exact: <see cref="NodeVerdict.Undecided"/> must not be set).</summary>
    public Verdict Decide(FuseOps ops, in NodeVerdict node, ref Caller caller, bool names = false) => Decide(ops, ref caller, new ByBits(node.Self), names);

    /// <summary>A request on a path (a name being made, found or removed: <paramref name="names"/>, or a node the verdicts cannot decide).
    /// Null: the path is unknown, and only rules without a path condition, or denies, can apply.</summary>
    public Verdict Decide(FuseOps ops, string? path, ref Caller caller, bool names = false) => Decide(ops, ref caller, new ByPath(this, path), names);

    /// <summary>A node with several names (hard links) is refused when any of them is.</summary>
    public Verdict Decide(FuseOps ops, IReadOnlyList<string> paths, ref Caller caller, bool names = false)
    {
        if (paths.Count == 0) return Decide(ops, (string?)null, ref caller, names);
        var first = Decide(ops, paths[0], ref caller, names);
        for (var i = 1; i < paths.Count && !first.Denied; i++)
            if (Decide(ops, paths[i], ref caller, names) is { Denied: true } denied) return denied;
        return first;
    }

    /// <summary>Whether rule i is a [Hide] rule (its verdicts are answered as a missing name by LOOKUP).</summary>
    public bool IsHideRule(int rule) => rule >= 0 && _rules[rule].Kind == PathRuleKind.Hide;

    /// <summary>A child's path from its parent's (null when the parent's is unknown).</summary>
    public static string? Join(string? parent, ReadOnlySpan<byte> name) =>
        parent is null ? null : parent.Length == 0 ? System.Text.Encoding.UTF8.GetString(name) : parent + "/" + System.Text.Encoding.UTF8.GetString(name);

    // ---- hide and passthrough ----

    /// <summary>Whether a [Hide] rule matches the path (listings skip it).</summary>
    public bool IsHidden(string? path) => HasHide && path is not null && FirstMatch(PathRuleKind.Hide, path) >= 0;

    public bool IsPassthrough(string? path) => HasPassthrough && FirstMatch(PathRuleKind.Passthrough, path) >= 0;

    private int FirstMatch(PathRuleKind kind, string? path)
    {
        for (var i = 0; i < _rules.Length; i++)
            if (_rules[i].Kind == kind && (_globs[i] is not { } g || path is not null && g.IsMatch(path))) return i;
        return -1;
    }

    // ---- renames and links ----

    /// <summary>
    /// Rules follow paths, so moving a file is how one would slip out of a rule (rename secret/ to
    /// public/, then read it). A rename or link is refused when, for some rule that applies to this
    /// caller (or a [Hide] rule), what it matches would change: for a file, whether it matches; for a
    /// directory, the glob's state after the directory, so every path below it matches the same
    /// before and after. Returns that rule's index, or -1.
    /// </summary>
    public int MoveChangesRules(string from, string to, bool isDirectory, ref Caller caller)
    {
        for (var i = 0; i < _rules.Length; i++)
        {
            var r = _rules[i];
            if (_globs[i] is not { } glob || r.Kind == PathRuleKind.Passthrough) continue;
            if (r.Kind != PathRuleKind.Hide && !CallerMatches(r, ref caller)) continue;
            var changes = isDirectory ? glob.After(from) != glob.After(to) : glob.IsMatch(from) != glob.IsMatch(to);
            if (changes) return i;
        }
        return -1;
    }

    // ---- the kernel's tables ----

    /// <summary>What the policy says of a node's paths, for the daemon's cache and the kernel's verdict map.</summary>
    public NodeVerdict VerdictOf(IReadOnlyList<string> paths, bool isDirectory)
    {
        var v = new NodeVerdict { Generation = Generation };
        if (paths.Count == 0) { v.Flags = NodeVerdict.Undecided; return v; }
        for (var i = 0; i < _rules.Length; i++)
        {
            if (_globs[i] is not { } glob || _rules[i].Kind == PathRuleKind.Passthrough) continue;
            var states = glob.After(paths[0]);
            if (glob.Accepts(states)) v.Self.Set(i);
            for (var p = 1; p < paths.Count; p++)
                if (glob.IsMatch(paths[p]) != glob.Accepts(states)) v.Flags |= NodeVerdict.Undecided;
            if (!isDirectory) continue;
            switch (glob.Children(states))
            {
                case ChildMatch.All: v.ChildAll.Set(i); break;
                case ChildMatch.Some: v.ChildSome.Set(i); break;
            }
            // A directory with several names has no single answer for its children either.
            for (var p = 1; p < paths.Count; p++)
                if (glob.After(paths[p]) != states) v.Flags |= NodeVerdict.Undecided;
        }
        return v;
    }

    /// <summary>The rules as the kernel's engine reads them (same order).</summary>
    public ReadOnlySpan<KernelRule> KernelRules => _kernel;

    public KernelPolicyHeader Header(uint dev) => new()
    {
        Enabled = 1, RuleCount = (uint)_rules.Length, DefaultOps = DefaultDeny ? (uint)DefaultOps : 0,
        DefaultErrno = DefaultDeny ? DefaultErrno : 0, Dev = dev, Generation = Generation,
    };

    private static KernelRule KernelRuleOf(PathRule r)
    {
        if (r.Kind == PathRuleKind.Hide) return new KernelRule { Ops = (uint)HideOps, Errno = HiddenErrno, Conditions = KernelRule.HasPath | KernelRule.IsHide };
        if (r.Kind is not (PathRuleKind.Deny or PathRuleKind.Allow)) return default;
        var k = new KernelRule { Ops = (uint)r.Ops, Errno = r.Kind == PathRuleKind.Deny ? r.Errno : 0 };
        if (r.Path is not null) k.Conditions |= KernelRule.HasPath;
        if (r.Uid >= 0) (k.Conditions, k.Uid) = (k.Conditions | KernelRule.HasUid, (uint)r.Uid);
        if (r.Gid >= 0) (k.Conditions, k.Gid) = (k.Conditions | KernelRule.HasGid, (uint)r.Gid);
        if (r.Comm is not null) (k.Conditions, k.Comm) = (k.Conditions | KernelRule.HasComm, Comm.From(r.Comm));
        if (r.Cgroup is not null)
        {
            // A cgroup that does not exist (yet) has id 0: the kernel then leaves the request to the daemon.
            k.Conditions |= KernelRule.HasCgroup;
            (k.CgroupLevel, k.CgroupId) = CgroupIds.Resolve(r.Cgroup);
        }
        return k;
    }
}

/// <summary>A policy that cannot be used, with where it came from.</summary>
public sealed class PolicyException(string? source, string problem) : Exception(source is null ? problem : $"{source}: {problem}");
