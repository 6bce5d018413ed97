using System.Linq;

#if EXTFUSE_GENERATOR
namespace ExtFuse.Generator;
#else
using ExtFuse.Protocol;

namespace ExtFuse.Declarative;
#endif

/// <summary>
/// What makes a [Deny] or [Allow] rule, or a policy file's rule, impossible to enforce. Compiled
/// into the generator too (netstandard2.0), so the build and the policy loader refuse the same rules
/// for the same reasons.
/// </summary>
#if EXTFUSE_GENERATOR
internal
#else
public
#endif
static class RuleValidation
{
    /// <summary>FuseOps bits (the generator has no FuseOps type): Lookup, GetAttr, and every defined bit.</summary>
    public const uint LookupBit = Operations.Lookup, GetAttrBit = Operations.GetAttr, AllBits = Operations.AllBits;

    /// <summary>Why the conditions of a rule cannot hold, or null. <paramref name="errno"/> is ignored for allow rules.</summary>
    public static string? Problem(bool allow, uint ops, long uid, long gid, string? comm, string? cgroup, int errno)
    {
        if (ops == 0) return "names no operation";
        if ((ops & ~AllBits) != 0) return "names an operation that does not exist";
        if (!allow && errno is <= 0 or > 4095) return $"Errno must be a positive errno (1 to 4095), not {errno}";
        if (uid < -1 || uid > uint.MaxValue || gid < -1 || gid > uint.MaxValue) return "Uid and Gid are -1 (any) or a 32-bit id";
        if (comm is not null && (comm.Length is 0 or > 15 || comm.Any(ch => ch > 126 || ch < 32)))
            return "Comm is a process name of 1 to 15 printable ASCII characters, as the kernel keeps it";
        if (cgroup is not null && CgroupProblem(cgroup) is { } bad) return bad;
        if ((uid >= 0 || gid >= 0 || comm is not null || cgroup is not null) && (ops & (LookupBit | GetAttrBit)) != 0)
            return "depends on the caller, and the kernel caches Lookup and GetAttr answers for every caller; refuse Open or the changing operations instead";
        return null;
    }

    private static string? CgroupProblem(string cgroup)
    {
        if (!cgroup.StartsWith("/")) return $"Cgroup is a cgroup v2 path starting with '/', like \"/sandbox\", not '{cgroup}'";
        if (cgroup.Length > 1 && cgroup.EndsWith("/")) return $"Cgroup '{cgroup}' ends with '/'";
        if (cgroup.Split('/').Skip(1).Any(s => cgroup.Length > 1 && (s.Length == 0 || s == "." || s == "..")))
            return $"Cgroup '{cgroup}' has an empty, '.' or '..' segment";
        return null;
    }
}
