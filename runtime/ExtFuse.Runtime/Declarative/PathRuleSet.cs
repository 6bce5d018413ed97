using System.Text.RegularExpressions;

namespace ExtFuse.Declarative;

/// <summary>
/// The [Deny], [Hide] and [Passthrough] rules of a file system, with their globs compiled once.
/// Paths are relative to the mount's root, without a leading '/'. The managed twin of the
/// generated C's <c>_rules</c> function for the deny part: same order, same conditions.
/// </summary>
public sealed class PathRuleSet
{
    private readonly (PathRule Rule, Regex? Glob)[] _rules;

    public PathRuleSet(IEnumerable<PathRule> rules)
    {
        _rules = [.. rules.Select(r => (r, r.Path is null ? null : new Regex(Glob.ToRegex(r.Path), RegexOptions.CultureInvariant | RegexOptions.Compiled)))];
        foreach (var (rule, _) in _rules)
            if (rule.Kind == PathRuleKind.Deny) DenyOps |= rule.Ops;
        HasHide = _rules.Any(r => r.Rule.Kind == PathRuleKind.Hide);
        HasPassthrough = _rules.Any(r => r.Rule.Kind == PathRuleKind.Passthrough);
    }

    public static PathRuleSet Empty { get; } = new([]);

    public FuseOps DenyOps { get; }
    public bool HasHide { get; }
    public bool HasPassthrough { get; }
    public int Count => _rules.Length;

    private static bool Matches(Regex? glob, string? path) => glob is null || path is not null && glob.IsMatch(path);

    /// <summary>Bit i set when rule i's glob matches the path (rules without a glob always match): the kernel's verdict bits.</summary>
    public ulong PathBits(string? path)
    {
        ulong bits = 0;
        for (var i = 0; i < _rules.Length && i < 64; i++)
            if (_rules[i].Glob is { } g && path is not null && g.IsMatch(path)) bits |= 1UL << i;
        return bits;
    }

    /// <summary>
    /// The errno of the first [Deny] rule that refuses this operation on this path for this caller, or 0.
    /// comm is asked for only when a rule that otherwise matches names a process.
    /// </summary>
    public int Denied(FuseOps op, string? path, uint uid, uint gid, Func<string?> comm) => FirstDenial(op, path, null, uid, gid, comm, out _);

    /// <summary>The same, with the index of the rule that refused (-1 when none did).</summary>
    public int Denied(FuseOps op, string? path, uint uid, uint gid, Func<string?> comm, out int rule) => FirstDenial(op, path, null, uid, gid, comm, out rule);

    /// <summary>Same as <see cref="Denied(FuseOps, string?, uint, uint, Func{string?})"/> from precomputed path bits, as the kernel decides.</summary>
    public int Denied(FuseOps ops, ulong pathBits, uint uid, uint gid, string? comm) => FirstDenial(ops, null, pathBits, uid, gid, () => comm, out _);

    /// <summary>One loop for both: a rule's glob is matched against the path, or read from its bit.</summary>
    private int FirstDenial(FuseOps ops, string? path, ulong? pathBits, uint uid, uint gid, Func<string?> comm, out int index)
    {
        index = -1;
        for (var i = 0; i < _rules.Length; i++)
        {
            var (rule, glob) = _rules[i];
            if (rule.Kind != PathRuleKind.Deny || (rule.Ops & ops) == 0) continue;
            if (!(pathBits is { } bits ? glob is null || (bits & (1UL << i)) != 0 : Matches(glob, path))) continue;
            if (rule.Uid >= 0 && rule.Uid != uid || rule.Gid >= 0 && rule.Gid != gid) continue;
            if (rule.Comm is not null && rule.Comm != comm()) continue;
            index = i;
            return rule.Errno;
        }
        return 0;
    }

    public bool IsHidden(string? path) => HidingRule(path) >= 0;

    /// <summary>The index of the first [Hide] rule matching the path, or -1.</summary>
    public int HidingRule(string? path) => HasHide && path is not null ? FirstMatch(PathRuleKind.Hide, path) : -1;

    public bool IsPassthrough(string? path) => HasPassthrough && FirstMatch(PathRuleKind.Passthrough, path) >= 0;

    private int FirstMatch(PathRuleKind kind, string? path)
    {
        for (var i = 0; i < _rules.Length; i++)
            if (_rules[i].Rule.Kind == kind && Matches(_rules[i].Glob, path)) return i;
        return -1;
    }

    /// <summary>The kernel's name for a process (/proc/PID/comm), or null when it is gone.</summary>
    public static string? CommOf(uint pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/comm").TrimEnd('\n'); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>A child's path from its parent's.</summary>
    public static string? Join(string? parent, ReadOnlySpan<byte> name) =>
        parent is null ? null : parent.Length == 0 ? System.Text.Encoding.UTF8.GetString(name) : parent + "/" + System.Text.Encoding.UTF8.GetString(name);
}
