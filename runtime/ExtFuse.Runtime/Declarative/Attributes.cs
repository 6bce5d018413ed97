using System.Runtime.InteropServices;
using ExtFuse.Protocol;

namespace ExtFuse.Declarative;

/// <summary>Marks a partial class as a declarative file system: the generator reads its rules.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class FileSystemAttribute : Attribute;

/// <summary>
/// How long the kernel may cache names (and, with NegativeSeconds, that a name does not exist).
/// The generator turns it into the file system's EntryTimeout/NegativeTimeout.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class CacheEntryAttribute(double seconds) : Attribute
{
    public double Seconds { get; } = seconds;
    public double NegativeSeconds { get; set; }
}

/// <summary>How long the kernel may cache attributes; the generator turns it into AttrTimeout.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class CacheAttrAttribute(double seconds) : Attribute
{
    public double Seconds { get; } = seconds;
}

/// <summary>
/// Operations a rule applies to. For [Deny]/[Allow] rules and policy files, Read and Write are
/// decided when a file is opened (for reading; for writing or truncating) and Write also covers
/// truncate(2): the page cache and passthrough serve reads and writes that never reach the daemon,
/// so the open is where they can be refused, as the kernel's own permission checks do. ReadDir is
/// opening a directory to list it. [Check] methods see each request of their operations as it comes.
/// Which opcodes perform which operations is <see cref="ExtFuse.Protocol.Operations"/>' table.
/// </summary>
[Flags]
public enum FuseOps : uint
{
    None = 0,
    Lookup = 1 << 0, GetAttr = 1 << 1, SetAttr = 1 << 2, Open = 1 << 3, Create = 1 << 4, Read = 1 << 5,
    Write = 1 << 6, Unlink = 1 << 7, MkDir = 1 << 8, RmDir = 1 << 9, Rename = 1 << 10, Link = 1 << 11,
    Symlink = 1 << 12, MkNod = 1 << 13, SetXattr = 1 << 14, RemoveXattr = 1 << 15, ReadDir = 1 << 16,
    /// <summary>Reading a symlink's target.</summary>
    ReadLink = 1 << 17,
    /// <summary>Reading an extended attribute's value.</summary>
    GetXattr = 1 << 18,
    /// <summary>Listing extended attribute names.</summary>
    ListXattr = 1 << 19,
}

/// <summary>
/// A programmable security check in the BPF subset of C# (integers, if/else, switch, constant-bound
/// for loops, calls to other such methods): <c>static int Name(in CheckRequest req)</c> returning 0
/// to allow or a positive errno. The generator translates it to BPF C; the method itself is the
/// managed twin. Anything outside the subset is a build error, and no BPF is emitted for the class.
/// </summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class CheckAttribute(FuseOps ops) : Attribute
{
    public FuseOps Ops { get; } = ops;
}

/// <summary>What a [Check] sees of a request. Generated C mirrors it as struct extfuse_check_req.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CheckRequest
{
    public uint Opcode;
    public uint Uid;
    public uint Gid;
    public uint Pid;
    public ulong NodeId;
    /// <summary>Open flags (OPEN, CREATE).</summary>
    public uint Flags;
    /// <summary>File mode (CREATE, MKDIR, MKNOD, SETATTR).</summary>
    public uint Mode;
}

public delegate int CheckFunction(in CheckRequest request);

/// <summary>A [Check] method as the generator lists it for the dispatcher and for differential tests.</summary>
public sealed record CheckRule(string Name, FuseOps Ops, CheckFunction Check);

/// <summary>
/// A per-opcode fast-path handler in the same BPF subset (ExtFUSE style): on an ExtFUSE kernel it
/// runs as the <c>extfuse/&lt;opcode&gt;</c> program before the request is queued; elsewhere its
/// managed twin runs in the dispatcher before the handler. GetAttr is the operation it can serve:
/// <c>static int Name(in CheckRequest req, ref FuseAttrOut reply)</c>, returning
/// <see cref="FastPath.Served"/> with the reply filled, a positive errno, or
/// <see cref="FastPath.Continue"/> to send the request on to the daemon's handler.
/// </summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class FastPathAttribute(FuseOps op) : Attribute
{
    public FuseOps Op { get; } = op;
}

/// <summary>What a [FastPath] method returns besides a positive errno (ExtFUSE's values).</summary>
public static class FastPath
{
    /// <summary>The reply is filled: answer the request with it.</summary>
    public const int Served = 0;
    /// <summary>Not handled here: the daemon's handler answers (ExtFUSE's -ENOSYS).</summary>
    public const int Continue = -38;
}

public delegate int FastPathFunction(in CheckRequest request, ref FuseAttrOut reply);

/// <summary>A [FastPath] method as the generator lists it for the dispatcher and for differential tests.</summary>
public sealed record FastPathRule(string Name, FuseOps Op, FastPathFunction Handle);

/// <summary>
/// What [Deny] and [Allow] rules have in common: the operations they name, and the conditions that
/// must all hold (a path glob, every path when unset; the caller's uid, gid, process name, cgroup).
/// Rules are one ordered list (these attributes in declaration order, then a policy file's rules):
/// the first rule that names an operation and matches decides it. Rules that depend on the caller
/// cannot apply to Lookup or GetAttr, whose answers the kernel caches for every caller.
/// </summary>
public abstract class AccessRuleAttribute(FuseOps ops) : Attribute
{
    public FuseOps Ops { get; } = ops;
    /// <summary>A <see cref="Glob"/> below the mount's root; every path when unset.</summary>
    public string? Path { get; set; }
    /// <summary>Only this caller uid (-1: any).</summary>
    public long Uid { get; set; } = -1;
    /// <summary>Only this caller gid (-1: any).</summary>
    public long Gid { get; set; } = -1;
    /// <summary>Only processes of this name (the kernel's comm, at most 15 bytes).</summary>
    public string? Comm { get; set; }
    /// <summary>Only processes in this cgroup (v2 path, like "/sandbox") or below it.</summary>
    public string? Cgroup { get; set; }
}

/// <summary>Refuses the operations with an errno (EACCES unless Errno says otherwise).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false, AllowMultiple = true)]
public sealed class DenyAttribute(FuseOps ops) : AccessRuleAttribute(ops)
{
    public int Errno { get; set; } = 13;
}

/// <summary>Lets the operations through: an exception carved out of a later [Deny] (or a policy file's rule, or its "deny" default).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false, AllowMultiple = true)]
public sealed class AllowAttribute(FuseOps ops) : AccessRuleAttribute(ops);

/// <summary>Names matching the glob do not exist for anyone: LOOKUP answers ENOENT, listings omit them, creating them is EACCES.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false, AllowMultiple = true)]
public sealed class HideAttribute(string path) : Attribute
{
    public string Path { get; } = path;
}

/// <summary>
/// Reads and writes of regular files matching the glob (every file when unset) are served by the
/// kernel from the backing file (FUSE passthrough), where the kernel and privileges allow it.
/// The file handle provides the backing file (<see cref="ExtFuse.Nodes.FileHandle.BackingFd"/>).
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class PassthroughAttribute : Attribute
{
    public string? Path { get; set; }
}

public enum PathRuleKind { Deny, Hide, Passthrough, Allow }

/// <summary>
/// A [Deny], [Allow], [Hide] or [Passthrough] rule as the generator lists it, or a rule of a policy
/// file (Uid/Gid -1: any; Path null: every path; Name: how audit and stats call it, when not derived).
/// </summary>
public sealed record PathRule(PathRuleKind Kind, FuseOps Ops, string? Path, long Uid = -1, long Gid = -1, string? Comm = null, int Errno = 13,
    string? Cgroup = null, string? Name = null)
{
    /// <summary>Whether the rule depends on who asks.</summary>
    public bool DependsOnCaller => Uid >= 0 || Gid >= 0 || Comm is not null || Cgroup is not null;

    /// <summary>How the rule is named in logs, audit records and `extfuse stats`.</summary>
    public string Describe() => Name ?? Kind switch
    {
        PathRuleKind.Hide => $"[Hide] {Path}",
        PathRuleKind.Passthrough => $"[Passthrough] {Path}",
        _ => $"[{Kind}] {OpsText(Ops)} {Path ?? "**"}" + (Uid >= 0 ? $" uid={Uid}" : "") + (Gid >= 0 ? $" gid={Gid}" : "")
             + (Comm is null ? "" : $" comm={Comm}") + (Cgroup is null ? "" : $" cgroup={Cgroup}"),
    };

    private static string OpsText(FuseOps ops) => (uint)ops switch
    {
        ExtFuse.Protocol.Operations.AllBits => "all",
        ExtFuse.Protocol.Operations.AllBits & ~(ExtFuse.Protocol.Operations.Lookup | ExtFuse.Protocol.Operations.GetAttr) => "all but Lookup, GetAttr",
        _ => ops.ToString(),
    };
}

/// <summary>BPF C emitted by the generator, carried in the assembly until the build extracts and compiles it.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class BpfSourceAttribute(string fileName, string text) : Attribute
{
    public string FileName { get; } = fileName;
    public string Text { get; } = text;
}
