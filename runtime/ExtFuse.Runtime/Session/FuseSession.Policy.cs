using ExtFuse.Declarative;
using ExtFuse.Policy;
using ExtFuse.Protocol;

namespace ExtFuse.Session;

public sealed partial class FuseSession
{
    private volatile AccessPolicy _policy;
    private readonly NodeVerdicts _verdicts;

    /// <summary>The mount's access rules now: the file system's attributes, then the policy file's rules.</summary>
    public AccessPolicy Policy => _policy;

    /// <summary>The policy file <see cref="ReloadPolicy"/> reads (-o policy=FILE), or null.</summary>
    public string? PolicyFile => _options.PolicyFile;

    /// <summary>Every denial, counted per rule and written to the audit file (-o audit=FILE) when there is one.</summary>
    public AuditLog Audit { get; }

    /// <summary>The file system's own rules followed by a policy file's (or none).</summary>
    public static AccessPolicy Compose(RawFileSystem fs, PolicyDocument? file) =>
        file is null ? (fs.PathRules.Count == 0 ? AccessPolicy.Empty : new AccessPolicy(fs.PathRules, source: fs.GetType().Name))
            : new AccessPolicy([.. fs.PathRules, .. file.Rules], file.DefaultDeny, file.DefaultErrno, file.Source);

    /// <summary>
    /// Reads the policy file again and puts it in force for the next request: open files stay open
    /// (a descriptor was granted when it was opened), kept node verdicts are recomputed, and the
    /// kernel's tables are rewritten. A file that does not load changes nothing and throws
    /// <see cref="PolicyException"/> saying what is wrong.
    /// </summary>
    public AccessPolicy ReloadPolicy()
    {
        if (_options.PolicyFile is not { } path) throw new PolicyException(null, "this mount has no policy file (mount it with -o policy=FILE)");
        var next = Compose(_fs, ExtFuse.Policy.PolicyFile.Load(path));
        SetPolicy(next);
        return next;
    }

    /// <summary>Puts <paramref name="next"/> in force (its rules must start with the file system's own, as <see cref="Compose"/> makes them).</summary>
    public void SetPolicy(AccessPolicy next)
    {
        lock (_verdicts)
        {
            var kernel = _offload?.LsmPolicy;
            kernel?.Load(next);   // the kernel leaves everything to the daemon until Enable
            _policy = next;
            _ruleNames = [.. _rules.Select(r => r.Name), .. next.RuleNames];
            _verdicts.RecomputeAll(next);
            kernel?.Enable(next);
        }
        _offload?.RulesChanged(_ruleNames);
    }

    /// <summary>Where the kernel has BPF LSM: the rules go into its programs too, fed the verdicts the daemon keeps.</summary>
    private void StartKernelPolicy(uint dev)
    {
        if (_offload?.StartPolicy(dev, _policy, _rules.Length > 0, OnKernelDenied) is not { } kernel) return;
        lock (_verdicts)
        {
            _verdicts.Kernel = kernel;
            _verdicts.Replay();
            kernel.Enable(_policy);
        }
    }

    /// <summary>A refusal by an LSM program: counted and recorded as the daemon's own are.</summary>
    private void OnKernelDenied(ExtFuse.Kernel.KernelAuditEvent e)
    {
        var policy = _policy;
        string rule;
        var slot = -1;
        if (e.Check != 0) (rule, slot) = e.Rule >= 0 && e.Rule < _rules.Length ? (_rules[e.Rule].Name, e.Rule) : ($"[Check] {e.Rule}", -1);
        else if (e.Rule >= 0 && e.Rule < policy.Count) (rule, slot) = (policy.Rules[e.Rule].Describe(), _rules.Length + e.Rule);
        else rule = "default deny";
        if (slot >= 0) _offload?.CountRule(slot);
        ReadOnlySpan<byte> name = e.Name;
        if (name.IndexOf((byte)0) is var end and >= 0) name = name[..end];
        var path = name.IsEmpty ? _fs.PathOf(e.NodeId) : AccessPolicy.Join(_fs.PathOf(e.NodeId), name);
        var comm = System.Text.Encoding.ASCII.GetString(((ReadOnlySpan<byte>)e.Comm)).Split('\0')[0];
        var age = (long)(ExtFuse.Kernel.KernelPolicy.BootTimeNs() - e.TimeNs);
        Audit.Record(new AuditRecord(DateTimeOffset.UtcNow - TimeSpan.FromTicks(Math.Max(age, 0) / 100), ((FuseOpcode)e.Opcode).ToString().ToUpperInvariant(),
            path, e.Pid, comm, e.Uid, e.Gid, rule, e.Errno, "kernel"));
    }

    private void OnNamesChanged(ulong node)
    {
        if (!_policy.NeedsNodePaths) return;
        lock (_verdicts) _verdicts.NamesChanged(_policy, node);
    }

    /// <summary>Whether the policy has anything to say about these operations (the common case: no).</summary>
    private static bool PolicyApplies(AccessPolicy policy, FuseOps ops) =>
        (ops & policy.Ops) != 0 || policy.HasHide && (ops & AccessPolicy.HideOps) != 0 || policy.NeedsNodePaths && (ops & (FuseOps.Rename | FuseOps.Link)) != 0;

    /// <summary>What an open asks for (the table's rule: Open, Read and Write by access mode, Write for O_TRUNC).</summary>
    private static FuseOps OpenOps(uint flags) => (FuseOps)Operations.OpenOps(flags);

    /// <summary>
    /// The policy's answer for one request, decided here where every such request arrives, never
    /// from a LOOKUP the kernel may have cached for another caller: on the node for operations on
    /// it, on the path of the name an operation makes or removes (both names of a rename). READ and
    /// WRITE are not decided per request: their open was.
    /// </summary>
    private (Verdict Verdict, string? Path) PolicyVerdict(AccessPolicy policy, FuseRequest r, FuseOpcode op, ulong node, ReadOnlySpan<byte> body)
    {
        var caller = new Caller(r.Uid, r.Gid, r.Pid);
        FuseOps ops;
        switch (op)
        {
            case FuseOpcode.Open: ops = OpenOps(Arg<FuseOpenIn>(body).Flags); break;
            case FuseOpcode.OpenDir: ops = FuseOps.ReadDir; break;
            case FuseOpcode.GetAttr: ops = FuseOps.GetAttr; break;
            case FuseOpcode.SetXattr: ops = FuseOps.SetXattr; break;
            case FuseOpcode.RemoveXattr: ops = FuseOps.RemoveXattr; break;
            case FuseOpcode.SetAttr:
            {
                ref readonly var set = ref Arg<FuseSetattrIn>(body);
                // truncate(2) by path writes; ftruncate of an open descriptor was granted at its open.
                ops = FuseOps.SetAttr | ((set.Valid & SetAttrValid.Size) != 0 && (set.Valid & SetAttrValid.Fh) == 0 ? FuseOps.Write : 0);
                break;
            }
            default: return ChildVerdict(policy, r, op, node, body, ref caller);
        }
        if (!PolicyApplies(policy, ops)) return (Verdict.Allowed, null);
        var verdict = NodeVerdict(policy, ops, node, ref caller);
        return (verdict, verdict.Denied ? _fs.PathOf(node) : null);
    }

    private Verdict NodeVerdict(AccessPolicy policy, FuseOps ops, ulong node, ref Caller caller)
    {
        if (!policy.HasPaths) return policy.Decide(ops, default(NodeVerdict), ref caller);
        var v = _verdicts.Get(policy, node);
        return (v.Flags & ExtFuse.Policy.NodeVerdict.Undecided) == 0 ? policy.Decide(ops, v, ref caller) : policy.Decide(ops, _fs.PathsOf(node), ref caller);
    }

    /// <summary>Operations on a name in a directory (and a rename's two names).</summary>
    private (Verdict, string?) ChildVerdict(AccessPolicy policy, FuseRequest r, FuseOpcode op, ulong parent, ReadOnlySpan<byte> body, ref Caller caller)
    {
        ReadOnlySpan<byte> name, newName = default;
        ulong newParent = 0, source = 0;
        FuseOps ops, opens = 0;
        switch (op)
        {
            case FuseOpcode.Lookup: name = Name(body); ops = FuseOps.Lookup; break;
            case FuseOpcode.Unlink: name = Name(body); ops = FuseOps.Unlink; break;
            case FuseOpcode.RmDir: name = Name(body); ops = FuseOps.RmDir; break;
            case FuseOpcode.Symlink: name = Name(body); ops = FuseOps.Symlink; break;
            case FuseOpcode.MkDir: name = Name(After<FuseMkdirIn>(body)); ops = FuseOps.MkDir; break;
            case FuseOpcode.MkNod: name = Name(After<FuseMknodIn>(body)); ops = FuseOps.MkNod; break;
            case FuseOpcode.Create: name = Name(After<FuseCreateIn>(body)); ops = FuseOps.Create; opens = OpenOps(Arg<FuseCreateIn>(body).Flags); break;
            case FuseOpcode.Link: name = Name(After<FuseLinkIn>(body)); ops = FuseOps.Link; source = Arg<FuseLinkIn>(body).OldNodeId; break;
            case FuseOpcode.Rename or FuseOpcode.Rename2:
            {
                var names = op == FuseOpcode.Rename ? After<FuseRenameIn>(body) : After<FuseRename2In>(body);
                name = Name(names);
                newName = Name(names[(name.Length + 1)..]);
                newParent = op == FuseOpcode.Rename ? Arg<FuseRenameIn>(body).NewDir : Arg<FuseRename2In>(body).NewDir;
                ops = FuseOps.Rename;
                break;
            }
            default: return (Verdict.Allowed, null);
        }
        if (!PolicyApplies(policy, ops | opens)) return (Verdict.Allowed, null);
        var path = AccessPolicy.Join(_fs.PathOf(parent), name);
        var target = newParent != 0 ? AccessPolicy.Join(_fs.PathOf(newParent), newName) : null;
        var verdict = policy.Decide(ops, path, ref caller, names: true);
        // A hidden name does not exist: a LOOKUP of it finds nothing.
        if (verdict.Denied && op == FuseOpcode.Lookup && policy.IsHideRule(verdict.Rule)) verdict = new Verdict(Errno.ENOENT, verdict.Rule);
        if (verdict.Denied) return (verdict, path);
        // CREATE makes the name, then opens it: two decisions, as the kernel's inode_create and file_open hooks make them.
        if (opens != 0 && (verdict = policy.Decide(opens, path, ref caller)).Denied) return (verdict, path);
        if (newParent != 0)
        {
            if ((verdict = policy.Decide(ops, target, ref caller, names: true)).Denied) return (verdict, target);
            if (path is null || target is null) return (new Verdict(Errno.EACCES, UnknownPath), path);
            var moved = _fs.ChildId(parent, name);
            // Unknown: take it as a directory, the stricter check.
            if (policy.MoveChangesRules(path, target, moved == 0 || _fs.IsDirectory(moved), ref caller) is var rule and >= 0)
                return (new Verdict(Errno.EACCES, rule, Moved: true), path);
        }
        if (source != 0)
        {
            // A new name for an existing file: allowed only where the same rules hold as where it is.
            var from = _fs.PathsOf(source);
            if ((verdict = policy.Decide(ops, from, ref caller, names: true)).Denied) return (verdict, from.Count > 0 ? from[0] : null);
            if (path is null || from.Count == 0) return (new Verdict(Errno.EACCES, UnknownPath), path);
            foreach (var f in from)
                if (policy.MoveChangesRules(f, path, isDirectory: false, ref caller) is var rule and >= 0) return (new Verdict(Errno.EACCES, rule, Moved: true), path);
        }
        return (verdict, path);
    }

    /// <summary>Answers a refused request, counts it for its rule and records it for audit.</summary>
    private void Refuse(FuseRequest r, FuseOpcode op, Verdict verdict, int ruleSlot, string ruleName, string? path)
    {
        Log.RuleDenied(ruleName, op, r.Unique, r.Uid, verdict.Errno);
        if (ruleSlot >= 0) _offload?.CountRule(ruleSlot);
        var caller = new Caller(r.Uid, r.Gid, r.Pid);
        Audit.Record(new AuditRecord(DateTimeOffset.UtcNow, op.ToString().ToUpperInvariant(), path, r.Pid, caller.Comm, r.Uid, r.Gid, ruleName, verdict.Errno, "daemon"));
        r.ReplyError(verdict.Errno);
    }

    /// <summary>Verdict.Rule of a rename or link refused because a path it needs is not known.</summary>
    private const int UnknownPath = -2;

    /// <summary>The rule's name for logs, audit and stats.</summary>
    private static string RuleName(AccessPolicy policy, Verdict v) => v.Rule switch
    {
        >= 0 => policy.Rules[v.Rule].Describe() + (v.Moved ? " (the move would change what it applies to)" : ""),
        UnknownPath => "path unknown",
        _ => "default deny",
    };
}
