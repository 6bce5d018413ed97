using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse;

/// <summary>
/// The nodeid-based file system API (like libfuse's lowlevel API or fuser's Filesystem trait): one
/// virtual method per operation. Each receives the request and answers it with one of the
/// request's Reply methods, now or later. Byte spans (names, write data) are valid only until the
/// method returns: copy what an asynchronous handler keeps. Methods not overridden answer ENOSYS,
/// and the INIT reply only advertises capabilities for operations that are overridden.
/// </summary>
[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)]
public abstract class RawFileSystem
{
    /// <summary>Called with the negotiated connection before the INIT reply; adjust <paramref name="conn"/> here.</summary>
    public virtual void Init(FuseConnection conn) { }

    /// <summary>The session serving this file system once started: for notifications (invalidation) outside a request.</summary>
    public FuseSession? Session { get; internal set; }

    /// <summary>Called once when the session ends (DESTROY or unmount).</summary>
    public virtual void Destroy() { }

    public virtual void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) => r.ReplyError(Errno.ENOSYS);
    /// <summary>The kernel dropped <paramref name="nlookup"/> references to a node. No reply.</summary>
    public virtual void Forget(ulong nodeId, ulong nlookup) { }
    public virtual void BatchForget(ReadOnlySpan<FuseForgetOne> forgets)
    {
        foreach (ref readonly var f in forgets) Forget(f.NodeId, f.Nlookup);
    }
    /// <summary><paramref name="fh"/> is set when the kernel asks about an open file (fstat).</summary>
    public virtual void GetAttr(FuseRequest r, ulong nodeId, ulong? fh) => r.ReplyError(Errno.ENOSYS);
    public virtual void SetAttr(FuseRequest r, ulong nodeId, in FuseSetattrIn attr) => r.ReplyError(Errno.ENOSYS);
    public virtual void ReadLink(FuseRequest r, ulong nodeId) => r.ReplyError(Errno.ENOSYS);
    public virtual void Symlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target) => r.ReplyError(Errno.ENOSYS);
    public virtual void MkNod(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask) => r.ReplyError(Errno.ENOSYS);
    public virtual void MkDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask) => r.ReplyError(Errno.ENOSYS);
    public virtual void Unlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) => r.ReplyError(Errno.ENOSYS);
    public virtual void RmDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) => r.ReplyError(Errno.ENOSYS);
    /// <summary>RENAME and RENAME2; <paramref name="flags"/> holds RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT.</summary>
    public virtual void Rename(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags) => r.ReplyError(Errno.ENOSYS);
    public virtual void Link(FuseRequest r, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName) => r.ReplyError(Errno.ENOSYS);
    public virtual void Open(FuseRequest r, ulong nodeId, in FuseOpenIn open) => r.ReplyError(Errno.ENOSYS);
    public virtual void Read(FuseRequest r, ulong nodeId, in FuseReadIn read) => r.ReplyError(Errno.ENOSYS);
    public virtual void Write(FuseRequest r, ulong nodeId, in FuseWriteIn write, ReadOnlySpan<byte> data) => r.ReplyError(Errno.ENOSYS);
    public virtual void StatFs(FuseRequest r, ulong nodeId) => r.ReplyError(Errno.ENOSYS);
    public virtual void Release(FuseRequest r, ulong nodeId, in FuseReleaseIn release) => r.ReplyOk();
    public virtual void Fsync(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) => r.ReplyError(Errno.ENOSYS);
    public virtual void SetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, uint flags) => r.ReplyError(Errno.ENOSYS);
    /// <summary><paramref name="size"/> 0 asks for the value's size (ReplyXattrSize); otherwise ReplyData or ERANGE.</summary>
    public virtual void GetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, uint size) => r.ReplyError(Errno.ENOSYS);
    public virtual void ListXattr(FuseRequest r, ulong nodeId, uint size) => r.ReplyError(Errno.ENOSYS);
    public virtual void RemoveXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name) => r.ReplyError(Errno.ENOSYS);
    public virtual void Flush(FuseRequest r, ulong nodeId, ulong fh, ulong lockOwner) => r.ReplyError(Errno.ENOSYS);
    public virtual void OpenDir(FuseRequest r, ulong nodeId, in FuseOpenIn open) => r.ReplyError(Errno.ENOSYS);
    /// <summary>Answer with a listing built by <see cref="DirectoryListing"/>.</summary>
    public virtual void ReadDir(FuseRequest r, ulong nodeId, in FuseReadIn read) => r.ReplyError(Errno.ENOSYS);
    /// <summary>Like ReadDir with entries; every entry with a nodeid other than "." and ".." counts as a lookup.</summary>
    public virtual void ReadDirPlus(FuseRequest r, ulong nodeId, in FuseReadIn read) => r.ReplyError(Errno.ENOSYS);
    public virtual void ReleaseDir(FuseRequest r, ulong nodeId, in FuseReleaseIn release) => r.ReplyOk();
    public virtual void FsyncDir(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) => r.ReplyError(Errno.ENOSYS);
    public virtual void GetLk(FuseRequest r, ulong nodeId, in FuseLkIn lk) => r.ReplyError(Errno.ENOSYS);
    /// <summary>SETLK and SETLKW (<paramref name="wait"/>); a waiting lock should be answered asynchronously so it does not hold a reader.</summary>
    public virtual void SetLk(FuseRequest r, ulong nodeId, in FuseLkIn lk, bool wait) => r.ReplyError(Errno.ENOSYS);
    public virtual void Access(FuseRequest r, ulong nodeId, uint mask) => r.ReplyError(Errno.ENOSYS);
    public virtual void Create(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, in FuseCreateIn create) => r.ReplyError(Errno.ENOSYS);
    public virtual void Bmap(FuseRequest r, ulong nodeId, ulong block, uint blockSize) => r.ReplyError(Errno.ENOSYS);
    public virtual void FAllocate(FuseRequest r, ulong nodeId, in FuseFallocateIn fallocate) => r.ReplyError(Errno.ENOSYS);
    public virtual void Lseek(FuseRequest r, ulong nodeId, ulong fh, long offset, int whence) => r.ReplyError(Errno.ENOSYS);
    public virtual void CopyFileRange(FuseRequest r, ulong nodeIdIn, in FuseCopyFileRangeIn copy) => r.ReplyError(Errno.ENOSYS);
    public virtual void SyncFs(FuseRequest r, ulong nodeId) => r.ReplyError(Errno.ENOSYS);
    public virtual void TmpFile(FuseRequest r, ulong parent, in FuseCreateIn create) => r.ReplyError(Errno.ENOSYS);
    public virtual void Statx(FuseRequest r, ulong nodeId, in FuseStatxIn statx) => r.ReplyError(Errno.ENOSYS);

    /// <summary>
    /// [Check] rules the session applies before calling a handler (a non-zero errno answers the
    /// request). The generator overrides this for [FileSystem] classes with their CheckRules.
    /// </summary>
    public virtual IReadOnlyList<ExtFuse.Declarative.CheckRule> Rules => [];

    /// <summary>[FastPath] handlers the session runs before the handler of their operation.</summary>
    public virtual IReadOnlyList<ExtFuse.Declarative.FastPathRule> FastPaths => [];
    /// <summary>Maps keyed by node id that fast paths answer attributes from (generated): a change to an entry invalidates that node's cached attributes.</summary>
    public virtual IReadOnlyList<ExtFuse.Declarative.INodeKeyedMap> FastPathNodeMaps => [];

    /// <summary>[Deny], [Allow], [Hide] and [Passthrough] rules (generated); path conditions need <see cref="PathsOf"/>.
    /// The session puts a policy file's rules after them (<see cref="FuseSession.Policy"/>).</summary>
    public virtual IReadOnlyList<ExtFuse.Declarative.PathRule> PathRules => [];

    /// <summary>Called with the loaded object before its programs run: routes the class's KernelMap fields to its maps (generated).</summary>
    public virtual void BindKernelObject(ExtFuse.Bpf.BpfObject loaded) { }

    /// <summary>The name of the BPF object built from this class's rules (next to its assembly), or null: the runtime's generic policy programs serve it.</summary>
    public virtual string? BpfObjectName => null;

    /// <summary>INIT capabilities the rules need; the session asks for those the kernel offers.</summary>
    public virtual InitFlags RuleInitFlags => 0;

    /// <summary>The path of a node below the mount's root ("" for the root, no leading '/'), or null when unknown.</summary>
    public virtual string? PathOf(ulong nodeId) => null;

    /// <summary>Every path of a node (hard links give a file several); empty when none is known.</summary>
    public virtual IReadOnlyList<string> PathsOf(ulong nodeId) => PathOf(nodeId) is { } p ? [p] : [];

    /// <summary>Whether the node is a directory (what path rules say of it covers everything below it).</summary>
    public virtual bool IsDirectory(ulong nodeId) => nodeId == FuseConstants.RootId;

    /// <summary>The nodeid the kernel knows as <paramref name="name"/> in <paramref name="parent"/>, or 0.</summary>
    public virtual ulong ChildId(ulong parent, ReadOnlySpan<byte> name) => 0;

    /// <summary>Whether the node is one the file system knows (not forgotten).</summary>
    public virtual bool Knows(ulong nodeId) => nodeId == FuseConstants.RootId;

    /// <summary>
    /// Raised, outside the file system's locks, when a node's paths may have changed: it got a name
    /// (lookup, create), lost one (unlink, rename), was renamed, or was forgotten. The session keeps
    /// what the policy says of each node (and the kernel's copy) current with it.
    /// </summary>
    public event Action<ulong>? NamesChanged;

    protected void OnNamesChanged(ulong nodeId) => NamesChanged?.Invoke(nodeId);

    /// <summary>Which operations this file system overrides; INIT capabilities are derived from it.</summary>
    public virtual bool Implements(string method) => ImplementedMethods.Contains(method);

    private HashSet<string>? _implemented;

    private HashSet<string> ImplementedMethods => _implemented ??= FindOverrides();

    private HashSet<string> FindOverrides()
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in GetType().GetMethods(BindingFlags.Public | BindingFlags.Instance))
            if (m.IsVirtual && m.DeclaringType != typeof(RawFileSystem) && m.GetBaseDefinition().DeclaringType == typeof(RawFileSystem))
                set.Add(m.Name);
        return set;
    }
}
