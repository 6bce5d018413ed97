using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ExtFuse.Policy;

/// <summary>One bit per rule (at most <see cref="AccessPolicy.MaxRules"/>).</summary>
[InlineArray(4)]
public struct RuleBits
{
    private ulong _word;

    public readonly bool Has(int rule) => (this[rule >> 6] & (1UL << (rule & 63))) != 0;
    public void Set(int rule) => this[rule >> 6] |= 1UL << (rule & 63);
}

/// <summary>
/// What the policy says of one node's path, kept per nodeid by the daemon and, where the kernel has
/// BPF LSM, in the kernel's <c>extfuse_verdicts</c> map (bpf-runtime/include/extfuse/policy.h mirrors
/// it): which rules' globs match the node, and for a directory which match every child name or only
/// some. Computed when the node is resolved, again when its names change or the policy is reloaded.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct NodeVerdict
{
    /// <summary>Rules whose glob matches the node's path.</summary>
    public RuleBits Self;
    /// <summary>Directories: rules whose glob matches every child of it.</summary>
    public RuleBits ChildAll;
    /// <summary>Directories: rules whose glob matches some children, depending on the name.</summary>
    public RuleBits ChildSome;
    public uint Flags;
    /// <summary>The policy generation it was computed for.</summary>
    public uint Generation;

    /// <summary>The path is unknown, or the node's names (hard links) disagree: only the daemon can decide.</summary>
    public const uint Undecided = 1;
}

/// <summary>One rule as the BPF engine reads it, in the kernel's <c>extfuse_rules</c> array (index = precedence).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KernelRule
{
    /// <summary>FuseOps bits; 0 for rules the kernel never applies (Passthrough).</summary>
    public uint Ops;
    /// <summary>0: allow; otherwise the errno a deny answers.</summary>
    public int Errno;
    public uint Conditions;
    public uint Uid;
    public uint Gid;
    /// <summary>Depth of the cgroup (1 for "/a"): the caller's ancestor at this level must be <see cref="CgroupId"/>.</summary>
    public uint CgroupLevel;
    public ulong CgroupId;
    public Comm Comm;

    public const uint HasPath = 1, HasUid = 2, HasGid = 4, HasComm = 8, HasCgroup = 16, IsHide = 32;
}

/// <summary>A process name as the kernel keeps it: 16 bytes, NUL-padded.</summary>
[InlineArray(16)]
public struct Comm
{
    private byte _b;

    public static Comm From(string name)
    {
        var c = default(Comm);
        System.Text.Encoding.ASCII.GetBytes(name, c);
        return c;
    }
}

/// <summary>The policy's header in the kernel (<c>extfuse_policy</c>, slot 0).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KernelPolicyHeader
{
    /// <summary>0 while the daemon rewrites the tables (the kernel then lets every request through to the daemon).</summary>
    public uint Enabled;
    public uint RuleCount;
    /// <summary>Operations the default applies to, and its errno (0: allow).</summary>
    public uint DefaultOps;
    public int DefaultErrno;
    /// <summary>The kernel dev_t of the mount the programs guard.</summary>
    public uint Dev;
    public uint Generation;
}
