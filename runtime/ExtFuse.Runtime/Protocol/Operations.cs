#if EXTFUSE_GENERATOR
namespace ExtFuse.Generator;
#else
namespace ExtFuse.Protocol;
#endif

/// <summary>Where the access policy decides a request of an opcode.</summary>
#if EXTFUSE_GENERATOR
internal
#else
public
#endif
enum PolicyTarget : byte
{
    /// <summary>Not a file system request (INIT, FORGET, INTERRUPT, ...): no rule applies.</summary>
    Protocol,
    /// <summary>On the node the request names (its nodeid).</summary>
    Node,
    /// <summary>On a name in the directory the request names: the name it finds, makes or removes (a rename: both).</summary>
    Child,
    /// <summary>On an open handle: decided when the handle was opened (the page cache and passthrough serve it without the daemon).</summary>
    Handle,
}

/// <summary>One FUSE opcode: its kernel name, the policy operations it performs, where they are decided, and its shape.</summary>
/// <param name="Opcode">enum fuse_opcode.</param>
/// <param name="Name">The kernel's name without FUSE_ (audit records, C).</param>
/// <param name="Ops">FuseOps bits of the policy vocabulary (<see cref="Operations.Vocabulary"/>); 0 for protocol messages
/// and for handle operations that need no right beyond the open (release, flush, fsync, locks, lseek).</param>
/// <param name="Names">NUL-terminated names at the end of its body.</param>
/// <param name="NoReply">The kernel expects no answer.</param>
#if EXTFUSE_GENERATOR
internal
#else
public
#endif
readonly record struct Operation(uint Opcode, string Name, uint Ops, PolicyTarget Target, byte Names = 0, bool NoReply = false);

/// <summary>
/// The one table of FUSE operations: which policy operations (the FuseOps bits that [Deny], [Allow],
/// [Check] and policy files name) each opcode performs and where the policy decides it. The
/// dispatcher, the policy, the generator (which compiles this file too) and the C header
/// extfuse/ops.h follow it; a test pins it against FuseOpcode, FuseOps and the C headers. Every
/// opcode belongs here, so a policy's "all" covers every request that can reach a node's data,
/// attributes, names or link target.
/// </summary>
#if EXTFUSE_GENERATOR
internal
#else
public
#endif
static class Operations
{
    // The policy vocabulary, one bit each (ExtFuse.Declarative.FuseOps has the same values).
    public const uint Lookup = 1u << 0, GetAttr = 1u << 1, SetAttr = 1u << 2, Open = 1u << 3, Create = 1u << 4, Read = 1u << 5,
        Write = 1u << 6, Unlink = 1u << 7, MkDir = 1u << 8, RmDir = 1u << 9, Rename = 1u << 10, Link = 1u << 11, Symlink = 1u << 12,
        MkNod = 1u << 13, SetXattr = 1u << 14, RemoveXattr = 1u << 15, ReadDir = 1u << 16, ReadLink = 1u << 17, GetXattr = 1u << 18,
        ListXattr = 1u << 19;

    /// <summary>Every operation of the vocabulary.</summary>
    public const uint AllBits = (1u << 20) - 1;

    /// <summary>The policy vocabulary as policy files and `extfuse policy check` spell it, in bit order.</summary>
    public static readonly (uint Bit, string Name)[] Vocabulary =
    [
        (Lookup, "lookup"), (GetAttr, "getattr"), (SetAttr, "setattr"), (Open, "open"), (Create, "create"), (Read, "read"),
        (Write, "write"), (Unlink, "unlink"), (MkDir, "mkdir"), (RmDir, "rmdir"), (Rename, "rename"), (Link, "link"),
        (Symlink, "symlink"), (MkNod, "mknod"), (SetXattr, "setxattr"), (RemoveXattr, "removexattr"), (ReadDir, "readdir"),
        (ReadLink, "readlink"), (GetXattr, "getxattr"), (ListXattr, "listxattr"),
    ];

    /// <summary>Operations that change something ("modify" in policy files).</summary>
    public const uint Modifying = SetAttr | Create | Write | Unlink | MkDir | RmDir | Rename | Link | Symlink | MkNod | SetXattr | RemoveXattr;

    /// <summary>Every opcode this runtime knows, in opcode order.</summary>
    public static readonly Operation[] All =
    [
        new(1, "LOOKUP", Lookup, PolicyTarget.Child, Names: 1),
        new(2, "FORGET", 0, PolicyTarget.Protocol, NoReply: true),
        new(3, "GETATTR", GetAttr, PolicyTarget.Node),
        new(4, "SETATTR", SetAttr, PolicyTarget.Node),          // + Write for truncate(2) by path (decided per request)
        new(5, "READLINK", ReadLink, PolicyTarget.Node),
        new(6, "SYMLINK", Symlink, PolicyTarget.Child, Names: 2),
        new(8, "MKNOD", MkNod, PolicyTarget.Child, Names: 1),
        new(9, "MKDIR", MkDir, PolicyTarget.Child, Names: 1),
        new(10, "UNLINK", Unlink, PolicyTarget.Child, Names: 1),
        new(11, "RMDIR", RmDir, PolicyTarget.Child, Names: 1),
        new(12, "RENAME", Rename, PolicyTarget.Child, Names: 2),
        new(13, "LINK", Link, PolicyTarget.Child, Names: 1),
        new(14, "OPEN", Open, PolicyTarget.Node),               // + Read/Write by access mode and O_TRUNC
        new(15, "READ", Read, PolicyTarget.Handle),
        new(16, "WRITE", Write, PolicyTarget.Handle),
        new(17, "STATFS", GetAttr, PolicyTarget.Node),
        new(18, "RELEASE", 0, PolicyTarget.Handle),
        new(20, "FSYNC", 0, PolicyTarget.Handle),
        new(21, "SETXATTR", SetXattr, PolicyTarget.Node, Names: 1),
        new(22, "GETXATTR", GetXattr, PolicyTarget.Node, Names: 1),
        new(23, "LISTXATTR", ListXattr, PolicyTarget.Node),
        new(24, "REMOVEXATTR", RemoveXattr, PolicyTarget.Node, Names: 1),
        new(25, "FLUSH", 0, PolicyTarget.Handle),
        new(26, "INIT", 0, PolicyTarget.Protocol),
        new(27, "OPENDIR", ReadDir, PolicyTarget.Node),
        new(28, "READDIR", ReadDir, PolicyTarget.Handle),
        new(29, "RELEASEDIR", 0, PolicyTarget.Handle),
        new(30, "FSYNCDIR", 0, PolicyTarget.Handle),
        new(31, "GETLK", 0, PolicyTarget.Handle),
        new(32, "SETLK", 0, PolicyTarget.Handle),
        new(33, "SETLKW", 0, PolicyTarget.Handle),
        new(34, "ACCESS", GetAttr, PolicyTarget.Node),
        new(35, "CREATE", Create, PolicyTarget.Child, Names: 1), // + Open, Read/Write as an open
        new(36, "INTERRUPT", 0, PolicyTarget.Protocol, NoReply: true),
        new(37, "BMAP", Read, PolicyTarget.Node),
        new(38, "DESTROY", 0, PolicyTarget.Protocol),
        new(39, "IOCTL", 0, PolicyTarget.Handle),
        new(40, "POLL", 0, PolicyTarget.Handle),
        new(41, "NOTIFY_REPLY", 0, PolicyTarget.Protocol, NoReply: true),
        new(42, "BATCH_FORGET", 0, PolicyTarget.Protocol, NoReply: true),
        new(43, "FALLOCATE", Write, PolicyTarget.Handle),
        new(44, "READDIRPLUS", ReadDir, PolicyTarget.Handle),  // each entry it hands out is a LOOKUP: decided as one
        new(45, "RENAME2", Rename, PolicyTarget.Child, Names: 2),
        new(46, "LSEEK", 0, PolicyTarget.Handle),
        new(47, "COPY_FILE_RANGE", Write, PolicyTarget.Handle),
        new(48, "SETUPMAPPING", Read, PolicyTarget.Handle),
        new(49, "REMOVEMAPPING", 0, PolicyTarget.Handle),
        new(50, "SYNCFS", 0, PolicyTarget.Protocol),
        new(51, "TMPFILE", Create, PolicyTarget.Child),         // a file with no name yet in the directory: + Open, Read/Write
        new(52, "STATX", GetAttr, PolicyTarget.Node),
        new(53, "COPY_FILE_RANGE_64", Write, PolicyTarget.Handle),
    ];

    private static readonly Operation[] ByOpcode = Index();

    private static Operation[] Index()
    {
        var table = new Operation[64];
        foreach (var op in All) table[op.Opcode] = op;
        return table;
    }

    /// <summary>The operation of an opcode; an unknown opcode is a protocol message no rule names (the dispatcher answers ENOSYS).</summary>
    public static Operation Of(uint opcode) =>
        opcode < (uint)ByOpcode.Length && ByOpcode[opcode].Name is not null ? ByOpcode[opcode] : new Operation(opcode, "OPCODE_" + opcode, 0, PolicyTarget.Protocol);

    /// <summary>The policy operations of an open with these flags: Open, Read and Write by the access mode (3 reads and writes, as the kernel takes it), Write for O_TRUNC.</summary>
    public static uint OpenOps(uint flags)
    {
        var ops = Open;
        var mode = flags & 3;
        if (mode != 1) ops |= Read;
        if (mode != 0 || (flags & 0x200 /* O_TRUNC */) != 0) ops |= Write;
        return ops;
    }
}
