using ExtFuse.Declarative;
using ExtFuse.Samples.Memory;

namespace ExtFuse.Samples.Guarded;

/// <summary>
/// MemoryFs where everyone may read but only root and the writers' uid range (1000-1999) may
/// change anything. The rules are C# in the BPF subset: the session applies them before each
/// handler, and the same methods are built into GuardedFs's .bpf.o for the kernel. Names and
/// attributes may be cached by the kernel for 10 s: every change goes through this daemon.
/// </summary>
[FileSystem]
[CacheEntry(10)]
[CacheAttr(10)]
public sealed partial class GuardedFileSystem(uint ownerUid = 0, uint ownerGid = 0) : MemoryFileSystem(ownerUid: ownerUid, ownerGid: ownerGid)
{
    private const int EACCES = 13, EPERM = 1;
    private const uint FirstWriter = 1000, LastWriter = 1999, OpenAccessMode = 3, SetIdBits = 0xC00;

    /// <summary>Creating, removing, renaming and linking names: writers only.</summary>
    [Check(FuseOps.Create | FuseOps.MkDir | FuseOps.MkNod | FuseOps.Symlink | FuseOps.Link | FuseOps.Unlink | FuseOps.RmDir
           | FuseOps.Rename | FuseOps.SetAttr | FuseOps.SetXattr | FuseOps.RemoveXattr)]
    public static int WritersOnly(in CheckRequest req) => MayWrite(req.Uid) ? 0 : EACCES;

    /// <summary>Opening for writing: writers only; reading is for everyone.</summary>
    [Check(FuseOps.Open)]
    public static int WriteOpens(in CheckRequest req) => (req.Flags & OpenAccessMode) != 0 && !MayWrite(req.Uid) ? EACCES : 0;

    /// <summary>Only root hands out set-user-ID or set-group-ID bits.</summary>
    [Check(FuseOps.Create | FuseOps.MkNod | FuseOps.SetAttr)]
    public static int NoSetIdFromUsers(in CheckRequest req) => req.Uid != 0 && (req.Mode & SetIdBits) != 0 ? EPERM : 0;

    private static bool MayWrite(uint uid) => uid == 0 || uid >= FirstWriter && uid <= LastWriter;
}
