using System.Buffers.Text;
using ExtFuse.Interop;
using ExtFuse.Nodes;
using ExtFuse.Protocol;
using ExtFuse.Session;
using static ExtFuse.Samples.Stack.Native;

namespace ExtFuse.Samples.Stack;

/// <summary>
/// A loopback file system over a source directory, done by file descriptors (an O_PATH descriptor
/// per node, or a file handle past the descriptor budget; *at(2) calls relative to it), not by
/// path strings, so renames under it stay correct.
/// Running as root with allow_other, files are created with the caller's uid/gid (setfsuid).
/// </summary>
public class StackFileSystem : NodeFileSystem
{
    private readonly SourceTree _tree;

    private StackFileSystem((StackNode Root, SourceTree Tree, string Source) opened) : base(opened.Root)
    {
        _tree = opened.Tree;
        Source = opened.Source;
    }

    /// <summary>Opens <paramref name="source"/> and builds the file system over it (also the base of [FileSystem] classes built on StackFs).</summary>
    public StackFileSystem(string source, int? pinnedLimit = null) : this(OpenSource(source, pinnedLimit)) { }

    /// <summary>Opens <paramref name="source"/> and builds the file system over it.</summary>
    /// <param name="pinnedLimit">How many nodes may hold an O_PATH descriptor (default: a quarter of the
    /// descriptor limit, shared by the process); the rest are reached by file handle. See <see cref="SourceTree"/>.</param>
    public static StackFileSystem Open(string source, int? pinnedLimit = null) => new(OpenSource(source, pinnedLimit));

    private static unsafe (StackNode, SourceTree, string) OpenSource(string source, int? pinnedLimit)
    {
        RaiseDescriptorLimit();
        var full = Path.GetFullPath(source);
        if (!Directory.Exists(full)) throw new FuseException($"source directory {full} does not exist", Errno.ENOENT);
        var path = System.Text.Encoding.UTF8.GetBytes(full + "\0");
        int fd;
        fixed (byte* p = path) fd = OpenAt(AT_FDCWD, p, O_PATH | O_DIRECTORY);
        if (fd < 0) throw new FuseException($"cannot open source directory {full}: {Errno.Describe(-fd)}", -fd);
        if (FStat(fd, out var st) is var err and < 0) { Close(fd); throw new FuseException($"cannot stat {full}: {Errno.Describe(-err)}", -err); }
        var tree = SourceTree.Create(fd, st.Dev, pinnedLimit);
        return (new StackNode(fd, null, st, tree, counted: false), tree, full);
    }

    public string Source { get; }

    /// <summary>
    /// Watch the source with inotify and invalidate what the kernel caches when it changes behind
    /// the mount's back (on by default; off leaves staleness bounded by the entry and attribute timeouts).
    /// </summary>
    public bool WatchSource { get; init; } = true;

    /// <summary>
    /// Files whose path matches this glob are opened with FUSE passthrough (the CLI's --passthrough):
    /// the [Passthrough] rule, for a StackFs used without a [FileSystem] class of its own.
    /// </summary>
    public string? PassthroughPath
    {
        get => _passthroughPath;
        init
        {
            if (value is not null && ExtFuse.Declarative.Glob.Validate(value) is { } problem) throw new ArgumentException($"bad passthrough glob '{value}': {problem}");
            _passthroughPath = value;
        }
    }
    private readonly string? _passthroughPath;

    public override IReadOnlyList<ExtFuse.Declarative.PathRule> PathRules =>
        PassthroughPath is null ? [] : [new(ExtFuse.Declarative.PathRuleKind.Passthrough, 0, PassthroughPath)];

    public override InitFlags RuleInitFlags => PassthroughPath is null ? 0 : InitFlags.Passthrough;

    /// <summary>
    /// Waits until every change made to the source directory before the call is visible through the
    /// mount (the source watcher has sent its invalidations): for a program that writes the source and
    /// then reads through the mount. False on timeout; true at once without a watcher.
    /// </summary>
    public bool WaitForSourceChanges(TimeSpan timeout) => _tree.Watcher?.WaitIdle(timeout) ?? true;

    /// <summary>Invalidations the source watcher has sent (0 without one).</summary>
    public long SourceInvalidations => _tree.Watcher?.Invalidations ?? 0;

    public override void Init(FuseConnection conn)
    {
        base.Init(conn);
        if (!WatchSource || _tree.Watcher is not null) return;
        _tree.Watcher = new SourceWatcher(this);
        ((StackNode)Root).WatchIfDirectory();
    }

    protected override void OnRegistered(Node node)
    {
        if (node is StackNode s) s.WatchIfDirectory();
    }

    public override void Destroy()
    {
        base.Destroy();
        _tree.Watcher?.Dispose();
        _tree.Watcher = null;
    }

    /// <summary>How many nodes may hold a descriptor; int.MaxValue when file handles are not available (no CAP_DAC_READ_SEARCH).</summary>
    public int PinnedLimit => _tree.PinnedLimit;

    /// <summary>The descriptor limit after <see cref="Open"/> raised it.</summary>
    public static ulong DescriptorLimit => GetRLimit(RLIMIT_NOFILE, out var l) == 0 ? l.Cur : 0;

    /// <summary>
    /// Open files and the budget of node descriptors both come out of RLIMIT_NOFILE: raise the soft
    /// limit to the hard one, and with CAP_SYS_RESOURCE the hard one to fs.nr_open, as libfuse's
    /// passthrough_hp does. Failure leaves the limit as it was.
    /// </summary>
    private static void RaiseDescriptorLimit()
    {
        if (GetRLimit(RLIMIT_NOFILE, out var lim) < 0) return;
        ulong want = 1 << 20;
        try { want = ulong.Parse(File.ReadAllText("/proc/sys/fs/nr_open").Trim()); } catch (IOException) { } catch (FormatException) { }
        if (lim.Max < want && SetRLimit(RLIMIT_NOFILE, new RLimit { Cur = want, Max = want }) == 0) return;
        if (lim.Cur < lim.Max) SetRLimit(RLIMIT_NOFILE, new RLimit { Cur = lim.Max, Max = lim.Max });
    }

    internal static FuseAttr ToAttr(in Stat st) => new()
    {
        Ino = st.Ino, Size = (ulong)st.Size, Blocks = (ulong)st.Blocks,
        Atime = (ulong)st.Atime.Sec, AtimeNsec = (uint)st.Atime.Nsec, Mtime = (ulong)st.Mtime.Sec, MtimeNsec = (uint)st.Mtime.Nsec,
        Ctime = (ulong)st.Ctime.Sec, CtimeNsec = (uint)st.Ctime.Nsec,
        Mode = st.Mode, Nlink = (uint)st.Nlink, Uid = st.Uid, Gid = st.Gid, Rdev = (uint)st.Rdev, BlkSize = (uint)st.BlkSize,
    };
}

/// <summary>One inode of the source tree, held open with O_PATH, or by file handle past the descriptor budget.</summary>
internal sealed unsafe class StackNode : Node, INodeLookup, INodeGetAttr, INodeSetAttr, INodeReadLink, INodeMkDir, INodeMkNod,
    INodeSymlink, INodeLink, INodeUnlink, INodeRmDir, INodeRename, INodeCreate, INodeTmpFile, INodeOpen, INodeOpenDir,
    INodeStatFs, INodeAccess, INodeXattr
{
    private readonly SourceTree _tree;
    private readonly byte[]? _handle;
    private readonly bool _counted;
    private int _fd;

    /// <summary>A node that holds <paramref name="fd"/> (owned; <paramref name="counted"/> against the
    /// tree's budget), or, with fd -1, is reopened from <paramref name="handle"/> for each call.</summary>
    public StackNode(int fd, byte[]? handle, in Stat st, SourceTree tree, bool counted)
    {
        _fd = fd;
        _handle = handle;
        _counted = counted;
        _tree = tree;
        IsSymlink = (st.Mode & 0xF000) == 0xA000;
        IsDirectory = (st.Mode & 0xF000) == 0x4000;
        StableIno = StableInoOf(st, tree);
    }

    private bool HoldsDescriptor => Volatile.Read(ref _fd) >= 0;

    /// <summary>Inode numbers are unique per device; fold the device in for trees that span mounts.</summary>
    private static ulong StableInoOf(in Stat st, SourceTree tree) => st.Dev == tree.RootDev ? st.Ino : st.Ino ^ (st.Dev << 40);

    /// <summary>A node that holds a descriptor keeps its inode alive, so its number cannot have been
    /// reused; one reached by handle may name a deleted inode whose number a new file now has.</summary>
    protected override bool IsSameInode(Node known)
    {
        if (known is not StackNode k || k._handle is null) return true;
        var mine = _handle ?? (_fd >= 0 ? SourceTree.HandleOf(_fd) : null);
        return mine is null || mine.AsSpan().SequenceEqual(k._handle);
    }

    /// <summary>Makes a node reached by handle hold <paramref name="fd"/> (of its own inode) from now on.</summary>
    private bool Adopt(int fd)
    {
        if (_handle is null || Volatile.Read(ref _fd) >= 0) return false;
        if (SourceTree.HandleOf(fd) is not { } h || !h.AsSpan().SequenceEqual(_handle)) return false;
        return Interlocked.CompareExchange(ref _fd, fd, -1) == -1;
    }

    /// <summary>
    /// Before the name <paramref name="name"/> in <paramref name="dirFd"/> goes (unlink, rmdir, rename
    /// over it): if the kernel knows its inode through a node reached by handle, that node takes a
    /// descriptor, because a handle cannot reopen an unlinked inode, and open files, a working
    /// directory or fchmod on it must keep working as on the source.
    /// </summary>
    private void KeepVictimReachable(int dirFd, byte* name)
    {
        if (_tree.HandleNodes == 0) return;
        var fd = OpenAt(dirFd, name, O_PATH | O_NOFOLLOW);
        if (fd < 0) return;
        if (FStat(fd, out var st) == 0 && Tree?.FindByStableIno(StableInoOf(st, _tree)) is StackNode n && n.Adopt(fd)) return;
        Close(fd);
    }

    private bool IsSymlink { get; }
    private bool IsDirectory { get; }

    /// <summary>True when <paramref name="name"/> in this directory names <paramref name="child"/>'s inode in the source now.</summary>
    internal bool Names(ReadOnlySpan<byte> name, Node child)
    {
        if (name.Length > 255) return false;
        Span<byte> z = stackalloc byte[256];
        using var d = Use();
        if (d.Error != 0) return false;
        fixed (byte* p = Z(name, z))
            return FStatAt(d.Fd, p, out var st, AT_SYMLINK_NOFOLLOW) == 0 && StableInoOf(st, _tree) == child.StableIno;
    }

    /// <summary>Tells the source watcher that the change it will see for <paramref name="name"/> here is the mount's own, which the kernel already knows.</summary>
    private void Expect(ReadOnlySpan<byte> name) => _tree.Watcher?.Expect(this, name);

    internal void WatchIfDirectory()
    {
        if (!IsDirectory || _tree.Watcher is not { } w) return;
        using var d = Use();
        if (d.Error == 0) w.Watch(this, d.Fd);
    }

    /// <summary>The node's descriptor for one call.</summary>
    private NodeFd Use()
    {
        var fd = Volatile.Read(ref _fd);
        if (fd >= 0 || _handle is null) return new NodeFd(fd, false);
        fd = SourceTree.Reopen(_tree.MountFd, _handle);
        // Unlinked meanwhile: KeepVictimReachable may have handed this node a descriptor.
        if (fd == -Errno.ESTALE && Volatile.Read(ref _fd) is var held and >= 0) return new NodeFd(held, false);
        return new NodeFd(fd, true);
    }

    protected override void OnForget()
    {
        if (IsDirectory) _tree.Watcher?.Unwatch(this);
        if (_handle is not null) _tree.HandleNodeGone();
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd < 0) return;
        Close(fd);
        if (_counted) _tree.Unpin();
    }

    // ---- helpers ----

    /// <summary>name + NUL in <paramref name="buf"/> (256 bytes).</summary>
    private static Span<byte> Z(ReadOnlySpan<byte> name, Span<byte> buf)
    {
        name.CopyTo(buf);
        buf[name.Length] = 0;
        return buf[..(name.Length + 1)];
    }

    /// <summary>"/proc/self/fd/N" + NUL: the way to reach an O_PATH inode with calls that only take paths.</summary>
    private static Span<byte> ProcPath(int fd, Span<byte> buf)
    {
        "/proc/self/fd/"u8.CopyTo(buf);
        Utf8Formatter.TryFormat(fd, buf[14..], out var n);
        buf[14 + n] = 0;
        return buf[..(15 + n)];
    }

    /// <summary>The node for <paramref name="name"/> in <paramref name="parentFd"/>: holding a descriptor
    /// while the budget lasts, by file handle after that (or when the descriptors have run out).</summary>
    private int NewChild(int parentFd, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr)
    {
        child = null!; attr = default;
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        Span<byte> z = stackalloc byte[256];
        fixed (byte* p = Z(name, z))
        {
            // A name the kernel looks up again most often names a node it already has: one stat,
            // and no descriptor or node object. A node that holds a descriptor keeps its inode
            // alive, so an equal inode number is the same file.
            if (FStatAt(parentFd, p, out var known, AT_SYMLINK_NOFOLLOW) == 0
                && Tree?.FindByStableIno(StableInoOf(known, _tree)) is StackNode { HoldsDescriptor: true } live)
            {
                child = live;
                attr = StackFileSystem.ToAttr(known);
                return 0;
            }
            var counted = _tree.Handles && _tree.TryPin();
            if (counted || !_tree.Handles)
            {
                var fd = OpenAt(parentFd, p, O_PATH | O_NOFOLLOW);
                if (fd >= 0 && FStat(fd, out var st) is var err)
                {
                    if (err < 0) { Close(fd); fd = err; }
                    else
                    {
                        child = new StackNode(fd, null, st, _tree, counted);
                        attr = StackFileSystem.ToAttr(st);
                        return 0;
                    }
                }
                if (counted) _tree.Unpin();
                if (fd != -Errno.EMFILE || !_tree.Handles) return -fd;
            }
            return NewChildByHandle(parentFd, p, out child, out attr);
        }
    }

    private int NewChildByHandle(int parentFd, byte* name, out Node child, out FuseAttr attr)
    {
        child = null!; attr = default;
        if (FStatAt(parentFd, name, out var st, AT_SYMLINK_NOFOLLOW) is var err and < 0) return -err;
        // A mount under the source has handles of another file system: only a descriptor reaches it.
        if (st.Dev != _tree.RootDev) return Errno.EMFILE;
        if (!SourceTree.TryHandle(parentFd, name, out var handle, out err)) return err;
        child = new StackNode(-1, handle, st, _tree, counted: false);
        _tree.HandleNodeCreated();
        attr = StackFileSystem.ToAttr(st);
        return 0;
    }

    /// <summary>Creates as the caller (as root, with allow_other): new files get the caller's uid and gid.</summary>
    private readonly struct AsCaller : IDisposable
    {
        private readonly bool _switched;
        public AsCaller(OpContext ctx)
        {
            _switched = GetEuid() == 0 && (ctx.Uid != 0 || ctx.Gid != 0);
            if (!_switched) return;
            SetFsGid(ctx.Gid);
            SetFsUid(ctx.Uid);
        }
        public void Dispose()
        {
            if (!_switched) return;
            SetFsUid(0);
            SetFsGid(0);
        }
    }

    // ---- lookup and attributes ----

    public int Lookup(OpContext ctx, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr)
    {
        using var d = Use();
        if (d.Error != 0) { child = null!; attr = default; return d.Error; }
        return NewChild(d.Fd, name, out child, out attr);
    }

    public int GetAttr(OpContext ctx, out FuseAttr attr)
    {
        using var d = Use();
        if (d.Error != 0) { attr = default; return d.Error; }
        var err = FStat(d.Fd, out var st);
        attr = StackFileSystem.ToAttr(st);
        return -Math.Min(err, 0);
    }

    public int SetAttr(OpContext ctx, FileHandle? fh, in FuseSetattrIn s, out FuseAttr attr)
    {
        attr = default;
        Span<byte> proc = stackalloc byte[32];
        byte empty = 0;
        int err = 0;
        var file = fh as StackFile;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* pp = ProcPath(d.Fd, proc))
        {
            if ((s.Valid & SetAttrValid.Mode) != 0)
                err = IsSymlink ? -Errno.EOPNOTSUPP : FChmodAt(AT_FDCWD, pp, s.Mode & 0xFFF, 0);
            if (err == 0 && (s.Valid & (SetAttrValid.Uid | SetAttrValid.Gid)) != 0)
                err = FChownAt(d.Fd, &empty, (s.Valid & SetAttrValid.Uid) != 0 ? s.Uid : uint.MaxValue,
                    (s.Valid & SetAttrValid.Gid) != 0 ? s.Gid : uint.MaxValue, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
            if (err == 0 && (s.Valid & SetAttrValid.Size) != 0)
                err = file is not null ? FTruncate(file.Fd, (long)s.Size) : Truncate(pp, (long)s.Size);
            if (err == 0 && (s.Valid & (SetAttrValid.Atime | SetAttrValid.Mtime | SetAttrValid.AtimeNow | SetAttrValid.MtimeNow)) != 0)
            {
                var t = stackalloc TimeSpec[2];
                t[0] = Time(s.Valid, SetAttrValid.AtimeNow, SetAttrValid.Atime, s.Atime, s.AtimeNsec);
                t[1] = Time(s.Valid, SetAttrValid.MtimeNow, SetAttrValid.Mtime, s.Mtime, s.MtimeNsec);
                err = UtimensAt(d.Fd, &empty, t, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
            }
        }
        if (err < 0) return -err;
        return GetAttr(ctx, out attr);
    }

    private static TimeSpec Time(SetAttrValid v, SetAttrValid now, SetAttrValid set, ulong sec, uint nsec) =>
        (v & now) != 0 ? new TimeSpec { Nsec = UTIME_NOW } : (v & set) != 0 ? new TimeSpec { Sec = (long)sec, Nsec = nsec } : new TimeSpec { Nsec = UTIME_OMIT };

    public int ReadLink(OpContext ctx, Span<byte> buffer, out int length)
    {
        byte empty = 0;
        using var d = Use();
        if (d.Error != 0) { length = 0; return d.Error; }
        length = ReadLinkAt(d.Fd, &empty, buffer);
        return length < 0 ? -length : 0;
    }

    public int StatFs(OpContext ctx, out FuseKStatfs st)
    {
        st = default;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        var err = FStatFs(d.Fd, out var s);
        st = new FuseKStatfs
        {
            Blocks = s.Blocks, Bfree = s.Bfree, Bavail = s.Bavail, Files = s.Files, Ffree = s.Ffree,
            Bsize = (uint)s.Bsize, NameLen = (uint)s.NameLen, Frsize = (uint)s.Frsize,
        };
        return -Math.Min(err, 0);
    }

    public int Access(OpContext ctx, uint mask)
    {
        Span<byte> proc = stackalloc byte[32];
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* pp = ProcPath(d.Fd, proc)) return -Math.Min(FAccessAt(AT_FDCWD, pp, (int)mask, 0), 0);
    }

    // ---- creating and removing names ----

    public int MkDir(OpContext ctx, ReadOnlySpan<byte> name, uint mode, out Node child, out FuseAttr attr)
    {
        child = null!; attr = default;
        Span<byte> z = stackalloc byte[256];
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        int err;
        Expect(name);
        using (new AsCaller(ctx)) fixed (byte* p = Z(name, z)) err = MkDirAt(d.Fd, p, mode);
        return err < 0 ? -err : NewChild(d.Fd, name, out child, out attr);
    }

    public int MkNod(OpContext ctx, ReadOnlySpan<byte> name, uint mode, uint rdev, out Node child, out FuseAttr attr)
    {
        child = null!; attr = default;
        Span<byte> z = stackalloc byte[256];
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        int err;
        Expect(name);
        using (new AsCaller(ctx)) fixed (byte* p = Z(name, z)) err = MkNodAt(d.Fd, p, mode, rdev);
        return err < 0 ? -err : NewChild(d.Fd, name, out child, out attr);
    }

    public int Symlink(OpContext ctx, ReadOnlySpan<byte> target, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr)
    {
        child = null!; attr = default;
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        if (target.Length > 4095) return Errno.ENAMETOOLONG;
        Span<byte> z = stackalloc byte[256];
        Span<byte> t = stackalloc byte[4096];
        using var d = Use();
        if (d.Error != 0) return d.Error;
        int err;
        Expect(name);
        using (new AsCaller(ctx)) fixed (byte* p = Z(name, z)) fixed (byte* tp = Z(target, t)) err = SymlinkAt(tp, d.Fd, p);
        return err < 0 ? -err : NewChild(d.Fd, name, out child, out attr);
    }

    public int Link(OpContext ctx, Node target, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr)
    {
        child = null!; attr = default;
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        Span<byte> z = stackalloc byte[256];
        Span<byte> proc = stackalloc byte[32];
        using var d = Use();
        if (d.Error != 0) return d.Error;
        using var source = ((StackNode)target).Use();
        if (source.Error != 0) return source.Error;
        int err;
        Expect(name);
        fixed (byte* p = Z(name, z)) fixed (byte* pp = ProcPath(source.Fd, proc))
            err = LinkAt(AT_FDCWD, pp, d.Fd, p, AT_SYMLINK_FOLLOW);
        return err < 0 ? -err : NewChild(d.Fd, name, out child, out attr);
    }

    public int Unlink(OpContext ctx, ReadOnlySpan<byte> name) => Remove(name, 0);
    public int RmDir(OpContext ctx, ReadOnlySpan<byte> name) => Remove(name, AT_REMOVEDIR);

    private int Remove(ReadOnlySpan<byte> name, int flags)
    {
        Span<byte> z = stackalloc byte[256];
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* p = Z(name, z))
        {
            KeepVictimReachable(d.Fd, p);
            Expect(name);
            return -Math.Min(UnlinkAt(d.Fd, p, flags), 0);
        }
    }

    public int Rename(OpContext ctx, ReadOnlySpan<byte> name, Node newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        if (name.Length > 255 || newName.Length > 255) return Errno.ENAMETOOLONG;
        Span<byte> a = stackalloc byte[256];
        Span<byte> b = stackalloc byte[256];
        using var from = Use();
        if (from.Error != 0) return from.Error;
        using var to = ((StackNode)newParent).Use();
        if (to.Error != 0) return to.Error;
        fixed (byte* pa = Z(name, a)) fixed (byte* pb = Z(newName, b))
        {
            if ((flags & RENAME_EXCHANGE) == 0)
            {
                KeepVictimReachable(to.Fd, pb);
                Expect(name);
                ((StackNode)newParent).Expect(newName);
            }
            return -Math.Min(RenameAt2(from.Fd, pa, to.Fd, pb, flags), 0);
        }
    }

    // ---- opening ----

    private const int IgnoredOpenFlags = O_CREAT | O_EXCL | O_NOCTTY;

    /// <summary>
    /// With writeback caching the kernel reads pages to complete partial writes through any handle,
    /// a write-only one too, and places appends itself: open for reading as well, and without
    /// O_APPEND (which would put the kernel's positioned writes at the end).
    /// </summary>
    private int ForWriteback(int flags)
    {
        if (Tree?.Session?.Connection.Has(ExtFuse.Protocol.InitFlags.WritebackCache) != true) return flags;
        const int WriteOnly = 1, ReadWrite = 2, Append = 0x400;
        if ((flags & O_ACCMODE) == WriteOnly) flags = (flags & ~O_ACCMODE) | ReadWrite;
        return flags & ~Append;
    }

    public int Create(OpContext ctx, ReadOnlySpan<byte> name, uint flags, uint mode, out Node child, out FuseAttr attr, out FileHandle handle, out OpenReplyFlags replyFlags)
    {
        child = null!; attr = default; handle = null!; replyFlags = OpenReplyFlags.None;
        if (name.Length > 255) return Errno.ENAMETOOLONG;
        Span<byte> z = stackalloc byte[256];
        using var d = Use();
        if (d.Error != 0) return d.Error;
        int fd;
        Expect(name);
        using (new AsCaller(ctx)) fixed (byte* p = Z(name, z)) fd = OpenAt(d.Fd, p, ForWriteback((int)flags & ~O_NOCTTY) | O_CREAT, mode);
        if (fd < 0) return -fd;
        var err = NewChild(d.Fd, name, out child, out attr);
        if (err != 0) { Close(fd); return err; }
        handle = new StackFile(fd);
        return 0;
    }

    public int TmpFile(OpContext ctx, uint flags, uint mode, out Node child, out FuseAttr attr, out FileHandle handle)
    {
        child = null!; attr = default; handle = null!;
        byte dot = (byte)'.';
        var name = stackalloc byte[] { dot, 0 };
        using var d = Use();
        if (d.Error != 0) return d.Error;
        int fd;
        using (new AsCaller(ctx)) fd = OpenAt(d.Fd, name, ((int)flags & ~(IgnoredOpenFlags | O_DIRECTORY)) | O_TMPFILE, mode);
        if (fd < 0) return -fd;
        var nodeFd = Dup(fd);
        if (nodeFd < 0 || FStat(nodeFd, out var st) < 0) { Close(fd); if (nodeFd >= 0) Close(nodeFd); return Errno.EIO; }
        child = new StackNode(nodeFd, null, st, _tree, counted: false);  // an unnamed inode has no handle to reopen
        attr = StackFileSystem.ToAttr(st);
        handle = new StackFile(fd);
        return 0;
    }

    public int Open(OpContext ctx, uint flags, out FileHandle handle, out OpenReplyFlags replyFlags)
    {
        handle = null!; replyFlags = OpenReplyFlags.None;
        var fd = Reopen(ForWriteback((int)flags & ~(IgnoredOpenFlags | O_NOFOLLOW)));
        if (fd < 0) return -fd;
        handle = new StackFile(fd);
        return 0;
    }

    public int OpenDir(OpContext ctx, uint flags, out FileHandle handle)
    {
        handle = null!;
        var fd = Reopen(O_RDONLY | O_DIRECTORY);
        if (fd < 0) return -fd;
        handle = new StackDir(fd);
        return 0;
    }

    /// <summary>A real descriptor for the O_PATH inode, opened through /proc/self/fd, or -errno.</summary>
    private int Reopen(int flags)
    {
        Span<byte> proc = stackalloc byte[32];
        using var d = Use();
        if (d.Error != 0) return d.Fd;
        fixed (byte* pp = ProcPath(d.Fd, proc)) return OpenAt(AT_FDCWD, pp, flags);
    }

    // ---- extended attributes (through /proc/self/fd: the *xattr calls take no O_PATH descriptor) ----

    public int GetXattr(OpContext ctx, ReadOnlySpan<byte> name, Span<byte> buffer, out int size)
    {
        Span<byte> proc = stackalloc byte[32];
        Span<byte> z = stackalloc byte[256];
        size = 0;
        if (name.Length > 255) return Errno.ERANGE;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* pp = ProcPath(d.Fd, proc)) fixed (byte* n = Z(name, z)) size = Native.GetXattr(pp, n, buffer);
        return size < 0 ? -size : 0;
    }

    public int SetXattr(OpContext ctx, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags)
    {
        Span<byte> proc = stackalloc byte[32];
        Span<byte> z = stackalloc byte[256];
        if (name.Length > 255) return Errno.ERANGE;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* pp = ProcPath(d.Fd, proc)) fixed (byte* n = Z(name, z)) return -Math.Min(Native.SetXattr(pp, n, value, flags), 0);
    }

    public int ListXattr(OpContext ctx, Span<byte> buffer, out int size)
    {
        Span<byte> proc = stackalloc byte[32];
        size = 0;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* pp = ProcPath(d.Fd, proc)) size = Native.ListXattr(pp, buffer);
        return size < 0 ? -size : 0;
    }

    public int RemoveXattr(OpContext ctx, ReadOnlySpan<byte> name)
    {
        Span<byte> proc = stackalloc byte[32];
        Span<byte> z = stackalloc byte[256];
        if (name.Length > 255) return Errno.ERANGE;
        using var d = Use();
        if (d.Error != 0) return d.Error;
        fixed (byte* pp = ProcPath(d.Fd, proc)) fixed (byte* n = Z(name, z)) return -Math.Min(Native.RemoveXattr(pp, n), 0);
    }
}

/// <summary>An open file of the source tree: a real descriptor.</summary>
internal sealed class StackFile(int fd) : FileHandle
{
    public int Fd { get; } = fd;
    public override int BackingFd => Fd;

    public override int Read(OpContext ctx, long offset, Span<byte> buffer, out int read)
    {
        read = PRead(Fd, buffer, offset);
        return read < 0 ? -read : 0;
    }

    public override int Write(OpContext ctx, long offset, ReadOnlySpan<byte> data, out int written)
    {
        written = PWrite(Fd, data, offset);
        return written < 0 ? -written : 0;
    }

    /// <summary>close(2) of a duplicate reports what the source file system reports at close (NFS, quotas).</summary>
    public override int Flush(OpContext ctx)
    {
        var dup = Dup(Fd);
        if (dup < 0) return -dup;
        return Close(dup) < 0 ? Errno.EIO : 0;
    }

    public override void Release() => Close(Fd);
    public override int Fsync(OpContext ctx, bool dataOnly) => -Math.Min(dataOnly ? Fdatasync(Fd) : Native.Fsync(Fd), 0);
    public override int Allocate(OpContext ctx, long offset, long length, int mode) => -Math.Min(FAllocate(Fd, mode, offset, length), 0);

    public override int Lseek(OpContext ctx, long offset, int whence, out long result)
    {
        result = Native.Lseek(Fd, offset, whence);
        return result < 0 ? (int)-result : 0;
    }

    public override int GetAttr(OpContext ctx, out FuseAttr attr)
    {
        var err = FStat(Fd, out var st);
        attr = StackFileSystem.ToAttr(st);
        return -Math.Min(err, 0);
    }

    public override int CopyFileRange(OpContext ctx, long offsetIn, FileHandle output, long offsetOut, long length, out long copied)
    {
        copied = Native.CopyFileRange(Fd, offsetIn, ((StackFile)output).Fd, offsetOut, length);
        return copied < 0 ? (int)-copied : 0;
    }
}

/// <summary>An open directory: getdents64 from the offset the kernel asks for (d_off cookies are lseek positions).</summary>
internal sealed class StackDir(int fd) : FileHandle
{
    private readonly byte[] _buffer = new byte[32 * 1024];

    public override int ReadDir(OpContext ctx, long offset, DirEntrySink sink)
    {
        lock (_buffer)
        {
            if (Native.Lseek(fd, offset, 0) is var pos and < 0) return (int)-pos;
            while (true)
            {
                var n = GetDents64(fd, _buffer);
                if (n < 0) return -n;
                if (n == 0) return 0;
                for (var at = 0; at < n;)
                {
                    var rec = _buffer.AsSpan(at);
                    var ino = BitConverter.ToUInt64(rec);
                    var next = BitConverter.ToInt64(rec[8..]);
                    var reclen = BitConverter.ToUInt16(rec[16..]);
                    var type = rec[18];
                    var name = rec[19..reclen];
                    name = name[..name.IndexOf((byte)0)];
                    if (!sink.Add(name, ino, (uint)type << 12, next)) return 0;
                    at += reclen;
                }
            }
        }
    }

    public override int Fsync(OpContext ctx, bool dataOnly) => -Math.Min(dataOnly ? Fdatasync(fd) : Native.Fsync(fd), 0);
    public override void Release() => Close(fd);
}
