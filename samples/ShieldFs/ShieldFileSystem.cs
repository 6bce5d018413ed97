using ExtFuse.Declarative;
using ExtFuse.Protocol;
using ExtFuse.Samples.Stack;

namespace ExtFuse.Samples.Shield;

/// <summary>What the writers table says of one uid.</summary>
public struct WriterGrant
{
    /// <summary>Non-zero: may change things.</summary>
    public uint Allowed;
    /// <summary>Non-zero: may also hand out set-user-ID and set-group-ID bits.</summary>
    public uint SetId;
}

/// <summary>
/// A view of a source directory for code you do not fully trust. Names and attributes are cached
/// by the kernel; large files (*.bin) are read and written by the kernel from the source file
/// (passthrough); nothing under keep/ can be removed or renamed but the files of keep/scratch/
/// (an exception carved out of the rule after it); .secret files do not exist; and
/// only root and the uids in <see cref="Writers"/> may change anything. GETATTR of nodes in
/// <see cref="PinnedAttrs"/> is answered by the fast path. The same rules become the
/// BPF programs in ShieldFs's .bpf.o files (LSM and ExtFUSE), and the session applies them here.
/// </summary>
[FileSystem]
[CacheEntry(5)]
[CacheAttr(5)]
[Passthrough(Path = "**/*.bin")]
[Allow(FuseOps.Unlink, Path = "keep/scratch/*")]
[Deny(FuseOps.Unlink | FuseOps.RmDir | FuseOps.Rename, Path = "keep/**")]
[Hide("**/.secret")]
public sealed partial class ShieldFileSystem(string source) : StackFileSystem(source)
{
    private const int EACCES = 13, EPERM = 1;
    private const uint OpenAccessMode = 3, SetIdBits = 0xC00;

    /// <summary>uid -> grant; the daemon fills it (the CLI's --writer), the kernel reads it when bound.</summary>
    public static readonly KernelMap<uint, WriterGrant> Writers = new(256);

    [Check(FuseOps.Create | FuseOps.MkDir | FuseOps.MkNod | FuseOps.Symlink | FuseOps.Link | FuseOps.Unlink | FuseOps.RmDir
           | FuseOps.Rename | FuseOps.SetAttr | FuseOps.SetXattr | FuseOps.RemoveXattr)]
    public static int WritersOnly(in CheckRequest req) => MayWrite(req.Uid) ? 0 : EACCES;

    [Check(FuseOps.Open)]
    public static int WriteOpens(in CheckRequest req) => (req.Flags & OpenAccessMode) != 0 && !MayWrite(req.Uid) ? EACCES : 0;

    [Check(FuseOps.Create | FuseOps.MkNod | FuseOps.SetAttr)]
    public static int SetIdFromGrantedOnly(in CheckRequest req)
    {
        if (req.Uid == 0 || (req.Mode & SetIdBits) == 0) return 0;
        return Writers.TryGet(req.Uid, out var grant) && grant.SetId != 0 ? 0 : EPERM;
    }

    /// <summary>nodeid -> attributes the daemon pinned (files it knows do not change); GETATTR of those never reaches a handler.</summary>
    public static readonly KernelMap<ulong, FuseAttrOut> PinnedAttrs = new(1024);

    [FastPath(FuseOps.GetAttr)]
    public static int PinnedAttributes(in CheckRequest req, ref FuseAttrOut reply)
    {
        if (!PinnedAttrs.TryGet(req.NodeId, out var pinned)) return FastPath.Continue;
        reply = pinned;
        return FastPath.Served;
    }

    private static bool MayWrite(uint uid) => uid == 0 || Writers.GetValueOrDefault(uid).Allowed != 0;
}
