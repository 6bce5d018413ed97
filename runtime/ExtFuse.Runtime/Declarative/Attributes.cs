using System.Runtime.InteropServices;

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

/// <summary>Operations a rule applies to.</summary>
[Flags]
public enum FuseOps : uint
{
    None = 0,
    Lookup = 1 << 0, GetAttr = 1 << 1, SetAttr = 1 << 2, Open = 1 << 3, Create = 1 << 4, Read = 1 << 5,
    Write = 1 << 6, Unlink = 1 << 7, MkDir = 1 << 8, RmDir = 1 << 9, Rename = 1 << 10, Link = 1 << 11,
    Symlink = 1 << 12, MkNod = 1 << 13, SetXattr = 1 << 14, RemoveXattr = 1 << 15,
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

/// <summary>BPF C emitted by the generator, carried in the assembly until the build extracts and compiles it.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class BpfSourceAttribute(string fileName, string text) : Attribute
{
    public string FileName { get; } = fileName;
    public string Text { get; } = text;
}
