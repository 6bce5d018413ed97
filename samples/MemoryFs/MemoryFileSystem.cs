using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse.Samples.Memory;

/// <summary>
/// A complete in-memory POSIX file system on the raw nodeid API: files (sparse), directories with
/// stable readdir offsets, symlinks, hard links, special files, xattrs, POSIX and flock locks,
/// fallocate, SEEK_DATA/SEEK_HOLE, O_TMPFILE and rename with NOREPLACE/EXCHANGE. Permission checks
/// are the kernel's (mount with default_permissions, as the CLI does); ACCESS is answered for
/// mounts without it. One lock guards the tree: simple, and correct under concurrent callers.
/// </summary>
public class MemoryFileSystem : RawFileSystem
{
    private const int NameMax = 255, SymlinkMax = 4095, XattrNameMax = 255, XattrSizeMax = 65536;
    private const uint LinkMax = 65000;
    private const uint F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
    private const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;
    private const int SEEK_DATA = 3, SEEK_HOLE = 4;
    private const int XATTR_CREATE = 1, XATTR_REPLACE = 2;

    private readonly object _gate = new();
    private readonly Dictionary<ulong, Inode> _nodes = [];
    private readonly List<LockWaiter> _waiters = [];
    private ulong _nextIno = 2;
    private ulong _nextFh = 1;            // every open gets its own handle: locks taken through it die with it
    private long _usedBytes;

    public MemoryFileSystem(long capacityBytes = 16L << 30, uint ownerUid = 0, uint ownerGid = 0)
    {
        Capacity = capacityBytes;
        var root = NewInode(Mode.IFDIR | 0x1ED /* 0755 */, ownerUid, ownerGid, ino: FuseConstants.RootId);
        root.Parent = root;
        root.Lookups = long.MaxValue / 2; // the kernel never forgets the root
    }

    public long Capacity { get; }
    /// <summary>How long the kernel may cache names and attributes. Every change goes through the kernel, which keeps its cache right.</summary>
    public virtual TimeSpan EntryTimeout { get; init; } = TimeSpan.FromSeconds(1);
    public virtual TimeSpan AttrTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Nodes the file system holds (for tests: forgotten, unlinked nodes must go away).</summary>
    public int NodeCount { get { lock (_gate) return _nodes.Count; } }

    private Inode NewInode(uint mode, uint uid, uint gid, ulong ino = 0)
    {
        var now = Timespec.Now();
        var n = new Inode
        {
            Ino = ino != 0 ? ino : _nextIno++, Mode = mode, Uid = uid, Gid = gid,
            Atime = now, Mtime = now, Ctime = now, Btime = now, Nlink = Mode.IsDir(mode) ? 2u : 1u,
        };
        if (Mode.IsDir(mode)) { n.Entries = new(StringComparer.Ordinal); n.ByCookie = new(); }
        else if (Mode.IsReg(mode)) n.Chunks = [];
        _nodes[n.Ino] = n;
        return n;
    }

    // ---- helpers ----

    private FuseEntryOut Entry(Inode n)
    {
        var (es, en) = FuseTimeout.Split(EntryTimeout);
        var (@as, an) = FuseTimeout.Split(AttrTimeout);
        return new FuseEntryOut { NodeId = n.Ino, Generation = 0, EntryValid = es, EntryValidNsec = en, AttrValid = @as, AttrValidNsec = an, Attr = n.Attr() };
    }

    private FuseAttrOut AttrOut(Inode n)
    {
        var (s, ns) = FuseTimeout.Split(AttrTimeout);
        return new FuseAttrOut { AttrValid = s, AttrValidNsec = ns, Attr = n.Attr() };
    }

    /// <summary>Replies with a new entry and counts the lookup reference the reply gives the kernel.</summary>
    private void ReplyEntry(FuseRequest r, Inode n)
    {
        n.Lookups++;
        r.ReplyEntry(Entry(n));
    }

    private bool TryNode(ulong ino, out Inode node) => _nodes.TryGetValue(ino, out node!);

    private int Dir(ulong ino, out Inode dir)
    {
        if (!TryNode(ino, out dir)) return Errno.ENOENT;
        return dir.IsDir ? 0 : Errno.ENOTDIR;
    }

    private static int CheckName(ReadOnlySpan<byte> name) =>
        name.Length > NameMax ? Errno.ENAMETOOLONG : name.Length == 0 ? Errno.ENOENT : 0;

    private void DropIfUnused(Inode n)
    {
        if (n.Nlink != 0 || n.Lookups > 0 || n.Ino == FuseConstants.RootId) return;
        _nodes.Remove(n.Ino);
        _usedBytes -= n.UsedBytes;
    }

    private void Unlinked(Inode n)
    {
        n.Nlink = n.IsDir ? 0 : n.Nlink - 1;
        n.Touch(mtime: false);
        DropIfUnused(n);
    }

    private int Create(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, out Inode node)
    {
        node = null!;
        var err = CheckName(name);
        if (err != 0) return err;
        if ((err = Dir(parent, out var dir)) != 0) return err;
        var key = Inode.Key(name);
        if (dir.Entries!.ContainsKey(key)) return Errno.EEXIST;
        if (dir.Nlink == 0) return Errno.ENOENT; // removed directory
        if (Mode.IsDir(mode) && dir.Nlink >= LinkMax) return Errno.EMLINK;
        var gid = r.Gid;
        if ((dir.Mode & Mode.ISGID) != 0)
        {
            gid = dir.Gid;
            if (Mode.IsDir(mode)) mode |= Mode.ISGID;
        }
        node = NewInode(mode, r.Uid, gid);
        node.Rdev = rdev;
        dir.AddEntry(key, node);
        if (node.IsDir) { node.Parent = dir; dir.Nlink++; }
        dir.Touch();
        return 0;
    }

    // ---- lookup and attributes ----

    public override void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        lock (_gate)
        {
            var err = Dir(parent, out var dir);
            if (err != 0) { r.ReplyError(err); return; }
            if (name.Length > NameMax) { r.ReplyError(Errno.ENAMETOOLONG); return; }
            if (name.SequenceEqual("."u8)) { ReplyEntry(r, dir); return; }
            if (name.SequenceEqual(".."u8)) { ReplyEntry(r, dir.Parent ?? dir); return; }
            if (!dir.Entries!.TryGetValue(Inode.Key(name), out var e)) { r.ReplyError(Errno.ENOENT); return; }
            ReplyEntry(r, e.Node);
        }
    }

    public override void Forget(ulong nodeId, ulong nlookup)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) return;
            n.Lookups -= (long)nlookup;
            DropIfUnused(n);
        }
    }

    public override void GetAttr(FuseRequest r, ulong nodeId, ulong? fh)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            r.ReplyAttr(AttrOut(n));
        }
    }

    public override void Statx(FuseRequest r, ulong nodeId, in FuseStatxIn statx)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var a = n.Attr();
            var o = new FuseStatxOut
            {
                AttrValid = FuseTimeout.Split(AttrTimeout).Seconds,
                Stat = new FuseStatx
                {
                    Mask = 0x7FF /* STATX_BASIC_STATS */ | 0x800 /* STATX_BTIME */, BlkSize = a.BlkSize,
                    Nlink = a.Nlink, Uid = a.Uid, Gid = a.Gid, Mode = (ushort)a.Mode, Ino = a.Ino, Size = a.Size, Blocks = a.Blocks,
                    Atime = new FuseSxTime { Sec = n.Atime.Sec, Nsec = n.Atime.Nsec },
                    Mtime = new FuseSxTime { Sec = n.Mtime.Sec, Nsec = n.Mtime.Nsec },
                    Ctime = new FuseSxTime { Sec = n.Ctime.Sec, Nsec = n.Ctime.Nsec },
                    Btime = new FuseSxTime { Sec = n.Btime.Sec, Nsec = n.Btime.Nsec },
                    RdevMajor = (n.Rdev >> 8) & 0xFFF, RdevMinor = (n.Rdev & 0xFF) | ((n.Rdev >> 12) & 0xFFF00),
                },
            };
            r.ReplyStatx(o);
        }
    }

    public override void SetAttr(FuseRequest r, ulong nodeId, in FuseSetattrIn a)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var v = a.Valid;
            if ((v & SetAttrValid.Size) != 0)
            {
                if (n.IsDir) { r.ReplyError(Errno.EISDIR); return; }
                if (!Mode.IsReg(n.Mode)) { r.ReplyError(Errno.EINVAL); return; }
                var grow = (long)a.Size - n.Size;
                if (grow > 0 && _usedBytes + grow > Capacity && (long)a.Size > 0) { /* sparse: no blocks used */ }
                var before = n.UsedBytes;
                n.Truncate((long)a.Size);
                _usedBytes += n.UsedBytes - before;
                n.Touch();
                if ((v & SetAttrValid.KillSuidGid) != 0) n.KillSuidGid();
            }
            if ((v & SetAttrValid.Mode) != 0) n.Mode = (n.Mode & Mode.IFMT) | (a.Mode & Mode.Perms);
            if ((v & (SetAttrValid.Uid | SetAttrValid.Gid)) != 0)
            {
                if ((v & SetAttrValid.Uid) != 0) n.Uid = a.Uid;
                if ((v & SetAttrValid.Gid) != 0) n.Gid = a.Gid;
                // With HANDLE_KILLPRIV_V2 the file system clears set-id bits on chown, as the VFS would.
                if (!n.IsDir && (v & SetAttrValid.Mode) == 0) n.KillSuidGid();
            }
            var now = Timespec.Now();
            if ((v & SetAttrValid.AtimeNow) != 0) n.Atime = now;
            else if ((v & SetAttrValid.Atime) != 0) n.Atime = new Timespec((long)a.Atime, a.AtimeNsec);
            if ((v & SetAttrValid.MtimeNow) != 0) n.Mtime = now;
            else if ((v & SetAttrValid.Mtime) != 0) n.Mtime = new Timespec((long)a.Mtime, a.MtimeNsec);
            n.Ctime = (v & SetAttrValid.Ctime) != 0 ? new Timespec((long)a.Ctime, a.CtimeNsec) : now;
            r.ReplyAttr(AttrOut(n));
        }
    }

    public override void Access(FuseRequest r, ulong nodeId, uint mask)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            r.ReplyError0(Permitted(n, r.Uid, r.Gid, mask) ? 0 : Errno.EACCES);
        }
    }

    private static bool Permitted(Inode n, uint uid, uint gid, uint mask)
    {
        if (mask == 0) return true; // F_OK
        if (uid == 0) return (mask & 1) == 0 || (n.Mode & 0x49) != 0 || n.IsDir;
        var bits = uid == n.Uid ? (n.Mode >> 6) & 7 : gid == n.Gid ? (n.Mode >> 3) & 7 : n.Mode & 7;
        return (bits & mask) == mask;
    }

    // ---- names ----

    public override void MkNod(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask)
    {
        lock (_gate)
        {
            var type = mode & Mode.IFMT;
            if (type is not (Mode.IFREG or Mode.IFCHR or Mode.IFBLK or Mode.IFIFO or Mode.IFSOCK)) { r.ReplyError(Errno.EINVAL); return; }
            var err = Create(r, parent, name, mode, rdev, out var n);
            if (err != 0) r.ReplyError(err); else ReplyEntry(r, n);
        }
    }

    public override void MkDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask)
    {
        lock (_gate)
        {
            var err = Create(r, parent, name, Mode.IFDIR | (mode & Mode.Perms), 0, out var n);
            if (err != 0) r.ReplyError(err); else ReplyEntry(r, n);
        }
    }

    public override void Symlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target)
    {
        lock (_gate)
        {
            if (target.Length > SymlinkMax) { r.ReplyError(Errno.ENAMETOOLONG); return; }
            var err = Create(r, parent, name, Mode.IFLNK | 0x1FF, 0, out var n);
            if (err != 0) { r.ReplyError(err); return; }
            n.Target = target.ToArray();
            n.Size = target.Length;
            ReplyEntry(r, n);
        }
    }

    public override void ReadLink(FuseRequest r, ulong nodeId)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (n.Target is null) { r.ReplyError(Errno.EINVAL); return; }
            r.ReplyData(n.Target);
        }
    }

    public override void Link(FuseRequest r, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (n.IsDir) { r.ReplyError(Errno.EPERM); return; }
            var err = CheckName(newName);
            if (err == 0) err = Dir(newParent, out var dir2);
            if (err != 0) { r.ReplyError(err); return; }
            var dir = _nodes[newParent];
            var key = Inode.Key(newName);
            if (dir.Entries!.ContainsKey(key)) { r.ReplyError(Errno.EEXIST); return; }
            if (n.Nlink >= LinkMax) { r.ReplyError(Errno.EMLINK); return; }
            dir.AddEntry(key, n);
            n.Nlink++;
            n.Touch(mtime: false);
            dir.Touch();
            ReplyEntry(r, n);
        }
    }

    public override void Unlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        lock (_gate)
        {
            var err = Dir(parent, out var dir);
            if (err != 0) { r.ReplyError(err); return; }
            if (!dir.Entries!.TryGetValue(Inode.Key(name), out var e)) { r.ReplyError(Errno.ENOENT); return; }
            if (e.Node.IsDir) { r.ReplyError(Errno.EISDIR); return; }
            dir.RemoveEntry(e.Name);
            dir.Touch();
            Unlinked(e.Node);
            r.ReplyOk();
        }
    }

    public override void RmDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        lock (_gate)
        {
            var err = Dir(parent, out var dir);
            if (err != 0) { r.ReplyError(err); return; }
            if (name.SequenceEqual("."u8)) { r.ReplyError(Errno.EINVAL); return; }
            if (name.SequenceEqual(".."u8)) { r.ReplyError(Errno.ENOTEMPTY); return; }
            if (!dir.Entries!.TryGetValue(Inode.Key(name), out var e)) { r.ReplyError(Errno.ENOENT); return; }
            if (!e.Node.IsDir) { r.ReplyError(Errno.ENOTDIR); return; }
            if (e.Node.Entries!.Count != 0) { r.ReplyError(Errno.ENOTEMPTY); return; }
            dir.RemoveEntry(e.Name);
            dir.Nlink--;
            dir.Touch();
            Unlinked(e.Node);
            r.ReplyOk();
        }
    }

    public override void Rename(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        lock (_gate) r.ReplyError0(RenameLocked(parent, name, newParent, newName, flags));
    }

    private int RenameLocked(ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        const uint known = FuseFlags.RenameNoReplace | FuseFlags.RenameExchange;
        if ((flags & ~known) != 0) return Errno.EINVAL; // RENAME_WHITEOUT is for overlay file systems
        if (flags == known) return Errno.EINVAL;
        var err = Dir(parent, out var from);
        if (err != 0) return err;
        if ((err = Dir(newParent, out var to)) != 0) return err;
        if ((err = CheckName(newName)) != 0) return err;
        if (!from.Entries!.TryGetValue(Inode.Key(name), out var src)) return Errno.ENOENT;
        var newKey = Inode.Key(newName);
        to.Entries!.TryGetValue(newKey, out var dst);
        var exchange = (flags & FuseFlags.RenameExchange) != 0;
        if (dst is not null && (flags & FuseFlags.RenameNoReplace) != 0) return Errno.EEXIST;
        if (exchange && dst is null) return Errno.ENOENT;
        // A directory may not move below itself.
        if (src.Node.IsDir && IsAncestorOrSelf(src.Node, to)) return Errno.EINVAL;
        if (exchange && dst!.Node.IsDir && IsAncestorOrSelf(dst.Node, from)) return Errno.EINVAL;
        if (dst is not null && dst.Node == src.Node) return 0; // two links to one file: nothing to do

        if (exchange)
        {
            var a = src.Node; var b = dst!.Node;
            src.Node = b; dst.Node = a;
            if (a.IsDir && from != to) { a.Parent = to; from.Nlink--; to.Nlink++; }
            if (b.IsDir && from != to) { b.Parent = from; to.Nlink--; from.Nlink++; }
            a.Touch(mtime: false); b.Touch(mtime: false);
            from.Touch(); to.Touch();
            return 0;
        }
        if (dst is not null)
        {
            if (src.Node.IsDir && !dst.Node.IsDir) return Errno.ENOTDIR;
            if (!src.Node.IsDir && dst.Node.IsDir) return Errno.EISDIR;
            if (dst.Node.IsDir && dst.Node.Entries!.Count != 0) return Errno.ENOTEMPTY;
            if (dst.Node.IsDir && dst.Node == to) return Errno.EBUSY;
            to.RemoveEntry(newKey);
            if (dst.Node.IsDir) to.Nlink--;
            Unlinked(dst.Node);
        }
        var node = src.Node;
        from.RemoveEntry(src.Name);
        to.AddEntry(newKey, node);
        if (node.IsDir && from != to) { node.Parent = to; from.Nlink--; to.Nlink++; }
        node.Touch(mtime: false);
        from.Touch(); to.Touch();
        return 0;
    }

    private static bool IsAncestorOrSelf(Inode dir, Inode node)
    {
        for (var n = node; ; n = n.Parent!)
        {
            if (n == dir) return true;
            if (n.Parent is null || n.Parent == n) return false;
        }
    }

    // ---- files ----

    public override void Create(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, in FuseCreateIn c)
    {
        lock (_gate)
        {
            var err = Dir(parent, out var dir);
            if (err != 0) { r.ReplyError(err); return; }
            if (dir.Entries!.TryGetValue(Inode.Key(name), out var existing))
            {
                // The name appeared after the kernel's lookup: O_EXCL fails, otherwise open it.
                if ((c.Flags & Libc_O_EXCL) != 0) { r.ReplyError(Errno.EEXIST); return; }
                if (existing.Node.IsDir) { r.ReplyError(Errno.EISDIR); return; }
                OpenExisting(existing.Node, c.Flags, c.OpenFlags);
                existing.Node.Lookups++;
                r.ReplyCreate(Entry(existing.Node), new FuseOpenOut { Fh = _nextFh++ });
                return;
            }
            err = Create(r, parent, name, Mode.IFREG | (c.Mode & Mode.Perms), 0, out var n);
            if (err != 0) { r.ReplyError(err); return; }
            n.Lookups++;
            r.ReplyCreate(Entry(n), new FuseOpenOut { Fh = _nextFh++ });
        }
    }

    public override void TmpFile(FuseRequest r, ulong parent, in FuseCreateIn c)
    {
        lock (_gate)
        {
            var err = Dir(parent, out var dir);
            if (err != 0) { r.ReplyError(err); return; }
            var gid = (dir.Mode & Mode.ISGID) != 0 ? dir.Gid : r.Gid;
            var n = NewInode(Mode.IFREG | (c.Mode & Mode.Perms), r.Uid, gid);
            n.Nlink = 0; // no name until linkat(2) gives it one
            n.Lookups++;
            r.ReplyCreate(Entry(n), new FuseOpenOut { Fh = _nextFh++ });
        }
    }

    private const uint Libc_O_EXCL = 0x80, Libc_O_TRUNC = 0x200, Libc_O_ACCMODE = 3;

    private void OpenExisting(Inode n, uint flags, uint openFlags)
    {
        // ATOMIC_O_TRUNC: the kernel leaves O_TRUNC to us.
        if ((flags & Libc_O_TRUNC) != 0 && (flags & Libc_O_ACCMODE) != 0 && Mode.IsReg(n.Mode))
        {
            var before = n.UsedBytes;
            n.Truncate(0);
            _usedBytes += n.UsedBytes - before;
            n.Touch();
            if ((openFlags & FuseFlags.OpenKillSuidGid) != 0) n.KillSuidGid();
        }
    }

    public override void Open(FuseRequest r, ulong nodeId, in FuseOpenIn o)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (n.IsDir && (o.Flags & Libc_O_ACCMODE) != 0) { r.ReplyError(Errno.EISDIR); return; }
            OpenExisting(n, o.Flags, o.OpenFlags);
            r.ReplyOpen(new FuseOpenOut { Fh = _nextFh++, OpenFlags = OpenReplyFlags.KeepCache });
        }
    }

    public override void Read(FuseRequest r, ulong nodeId, in FuseReadIn read)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (n.Chunks is null) { r.ReplyError(n.IsDir ? Errno.EISDIR : Errno.EINVAL); return; }
            var buf = r.GetReplyBuffer((int)read.Size);
            var got = n.ReadInto((long)read.Offset, buf);
            r.ReplyBuffer(got);
        }
    }

    public override void Write(FuseRequest r, ulong nodeId, in FuseWriteIn w, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (n.Chunks is null) { r.ReplyError(Errno.EINVAL); return; }
            var offset = (long)w.Offset;
            if (offset < 0 || offset + data.Length < 0) { r.ReplyError(Errno.EFBIG); return; }
            var before = n.UsedBytes;
            if (_usedBytes + data.Length > Capacity && WouldAllocate(n, offset, data.Length)) { r.ReplyError(Errno.ENOSPC); return; }
            n.WriteAt(offset, data);
            _usedBytes += n.UsedBytes - before;
            n.Touch();
            if ((w.WriteFlags & FuseFlags.WriteKillSuidGid) != 0) n.KillSuidGid();
            r.ReplyWrite((uint)data.Length);
        }
    }

    private static bool WouldAllocate(Inode n, long offset, int length)
    {
        for (var idx = offset / Inode.ChunkSize; idx <= (offset + Math.Max(length, 1) - 1) / Inode.ChunkSize; idx++)
            if (!n.Chunks!.ContainsKey(idx)) return true;
        return false;
    }

    public override void Flush(FuseRequest r, ulong nodeId, ulong fh, ulong lockOwner)
    {
        lock (_gate)
        {
            // close(2): POSIX locks of this owner go away.
            if (TryNode(nodeId, out var n) && n.PosixLocks is { Count: > 0 } locks)
            {
                locks.RemoveAll(l => l.Owner == lockOwner);
                WakeWaiters(n);
            }
        }
        r.ReplyOk();
    }

    public override void Release(FuseRequest r, ulong nodeId, in FuseReleaseIn release)
    {
        lock (_gate)
        {
            // The last close of an open file: its flock and open-file-description locks go with it
            // (the kernel sends no unlock for those).
            if (TryNode(nodeId, out var n) && (n.FlockLocks is { Count: > 0 } || n.PosixLocks is { Count: > 0 }))
            {
                var fh = release.Fh;
                n.FlockLocks?.RemoveAll(l => l.Fh == fh);
                n.PosixLocks?.RemoveAll(l => l.Fh == fh);
                WakeWaiters(n);
            }
        }
        r.ReplyOk();
    }

    public override void Fsync(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) => r.ReplyOk();
    public override void FsyncDir(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) => r.ReplyOk();
    public override void SyncFs(FuseRequest r, ulong nodeId) => r.ReplyOk();

    public override void FAllocate(FuseRequest r, ulong nodeId, in FuseFallocateIn f)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (n.Chunks is null) { r.ReplyError(n.IsDir ? Errno.EISDIR : Errno.ENODEV); return; }
            var mode = (int)f.Mode;
            var offset = (long)f.Offset; var length = (long)f.Length;
            if (offset < 0 || length <= 0 || offset + length < 0) { r.ReplyError(Errno.EINVAL); return; }
            if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0) { r.ReplyError(Errno.EOPNOTSUPP); return; }
            var before = n.UsedBytes;
            if ((mode & FALLOC_FL_PUNCH_HOLE) != 0)
            {
                if ((mode & FALLOC_FL_KEEP_SIZE) == 0) { r.ReplyError(Errno.EOPNOTSUPP); return; }
                n.PunchHole(offset, Math.Min(length, Math.Max(0, n.Size - offset)));
            }
            else
            {
                if ((mode & FALLOC_FL_ZERO_RANGE) != 0) n.PunchHole(offset, Math.Min(length, Math.Max(0, n.Size - offset)));
                if (_usedBytes + length > Capacity) { r.ReplyError(Errno.ENOSPC); return; }
                n.Allocate(offset, length);
                if ((mode & FALLOC_FL_KEEP_SIZE) == 0 && offset + length > n.Size) n.Size = offset + length;
            }
            _usedBytes += n.UsedBytes - before;
            n.Touch();
            r.ReplyOk();
        }
    }

    public override void Lseek(FuseRequest r, ulong nodeId, ulong fh, long offset, int whence)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (whence is not (SEEK_DATA or SEEK_HOLE) || n.Chunks is null) { r.ReplyError(Errno.EINVAL); return; }
            var pos = n.Seek(offset, data: whence == SEEK_DATA);
            if (pos < 0) r.ReplyError(Errno.ENXIO); else r.ReplyLseek(pos);
        }
    }

    public override void CopyFileRange(FuseRequest r, ulong nodeIdIn, in FuseCopyFileRangeIn c)
    {
        lock (_gate)
        {
            if (!TryNode(nodeIdIn, out var src) || !TryNode(c.NodeIdOut, out var dst)) { r.ReplyError(Errno.ENOENT); return; }
            if (src.Chunks is null || dst.Chunks is null) { r.ReplyError(Errno.EINVAL); return; }
            if (c.Flags != 0) { r.ReplyError(Errno.EINVAL); return; }
            var len = (long)Math.Min(c.Len, (ulong)Math.Max(0, src.Size - (long)c.OffIn));
            var buf = new byte[Math.Min(len, 1 << 20)];
            long done = 0;
            var before = dst.UsedBytes;
            while (done < len)
            {
                var n = (int)Math.Min(buf.Length, len - done);
                src.ReadInto((long)c.OffIn + done, buf.AsSpan(0, n));
                dst.WriteAt((long)c.OffOut + done, buf.AsSpan(0, n));
                done += n;
            }
            _usedBytes += dst.UsedBytes - before;
            if (done > 0) dst.Touch();
            r.ReplyCopied((ulong)done);
        }
    }

    public override void StatFs(FuseRequest r, ulong nodeId)
    {
        lock (_gate)
        {
            var blocks = (ulong)(Capacity / 4096);
            var used = (ulong)(Math.Max(0, _usedBytes) / 4096);
            const ulong files = 1 << 24;
            r.ReplyStatfs(new FuseKStatfs
            {
                Bsize = 4096, Frsize = 4096, Blocks = blocks, Bfree = blocks - Math.Min(used, blocks), Bavail = blocks - Math.Min(used, blocks),
                Files = files, Ffree = files - (ulong)_nodes.Count, NameLen = NameMax,
            });
        }
    }

    // ---- directories ----

    public override void OpenDir(FuseRequest r, ulong nodeId, in FuseOpenIn o)
    {
        lock (_gate)
        {
            var err = Dir(nodeId, out _);
            if (err != 0) r.ReplyError(err); else r.ReplyOpen(new FuseOpenOut());
        }
    }

    public override void ReadDir(FuseRequest r, ulong nodeId, in FuseReadIn read) => List(r, nodeId, read, plus: false);
    public override void ReadDirPlus(FuseRequest r, ulong nodeId, in FuseReadIn read) => List(r, nodeId, read, plus: true);

    private void List(FuseRequest r, ulong nodeId, in FuseReadIn read, bool plus)
    {
        lock (_gate)
        {
            var err = Dir(nodeId, out var dir);
            if (err != 0) { r.ReplyError(err); return; }
            var list = new DirectoryListing(r, read.Size);
            var offset = (long)read.Offset;
            // "." and ".." carry no lookup reference in READDIRPLUS (the kernel skips them).
            if (offset < 1 && !Add(ref list, dir, "."u8, 1, plus, counted: false)) { list.Reply(); return; }
            if (offset < 2 && !Add(ref list, dir.Parent ?? dir, ".."u8, 2, plus, counted: false)) { list.Reply(); return; }
            var cookies = dir.ByCookie!;
            var i = LowerBound(cookies.Keys, offset + 1);
            Span<byte> name = stackalloc byte[NameMax];
            for (; i < cookies.Count; i++)
            {
                var e = cookies.Values[i];
                var len = System.Text.Encoding.Latin1.GetBytes(e.Name, name);
                if (!Add(ref list, e.Node, name[..len], e.Cookie, plus, counted: true)) break;
            }
            list.Reply();
        }
    }

    private bool Add(ref DirectoryListing list, Inode n, scoped ReadOnlySpan<byte> name, long cookie, bool plus, bool counted)
    {
        if (!plus) return list.Add(n.Ino, name, n.Mode, (ulong)cookie);
        var entry = Entry(n);
        if (!counted) entry = new FuseEntryOut { Attr = entry.Attr };
        if (!list.AddPlus(entry, name, (ulong)cookie)) return false;
        if (counted) n.Lookups++;
        return true;
    }

    private static int LowerBound(IList<long> keys, long value)
    {
        int lo = 0, hi = keys.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (keys[mid] < value) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    // ---- extended attributes ----

    private static int CheckXattr(Inode n, ReadOnlySpan<byte> name)
    {
        if (name.Length == 0) return Errno.ERANGE;
        if (name.Length > XattrNameMax) return Errno.ERANGE;
        if (name.StartsWith("system."u8)) return Errno.EOPNOTSUPP; // no POSIX ACLs here
        // Like the VFS for disk file systems: user.* only on regular files and directories.
        if (name.StartsWith("user."u8) && !Mode.IsReg(n.Mode) && !n.IsDir) return Errno.EPERM;
        return 0;
    }

    public override void SetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, uint flags)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var err = CheckXattr(n, name);
            if (err != 0) { r.ReplyError(err); return; }
            if (value.Length > XattrSizeMax) { r.ReplyError(Errno.E2BIG); return; }
            n.Xattrs ??= new(StringComparer.Ordinal);
            var key = Inode.Key(name);
            var exists = n.Xattrs.ContainsKey(key);
            if ((flags & XATTR_CREATE) != 0 && exists) { r.ReplyError(Errno.EEXIST); return; }
            if ((flags & XATTR_REPLACE) != 0 && !exists) { r.ReplyError(Errno.ENODATA); return; }
            n.Xattrs[key] = value.ToArray();
            n.Touch(mtime: false);
            r.ReplyOk();
        }
    }

    public override void GetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, uint size)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var err = CheckXattr(n, name);
            if (err == Errno.EPERM) err = Errno.ENODATA;
            if (err != 0) { r.ReplyError(err); return; }
            if (n.Xattrs is null || !n.Xattrs.TryGetValue(Inode.Key(name), out var value)) { r.ReplyError(Errno.ENODATA); return; }
            if (size == 0) r.ReplyXattrSize((uint)value.Length);
            else if (size < value.Length) r.ReplyError(Errno.ERANGE);
            else r.ReplyData(value);
        }
    }

    public override void ListXattr(FuseRequest r, ulong nodeId, uint size)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var total = 0;
            if (n.Xattrs is not null) foreach (var k in n.Xattrs.Keys) total += k.Length + 1;
            if (size == 0) { r.ReplyXattrSize((uint)total); return; }
            if (size < total) { r.ReplyError(Errno.ERANGE); return; }
            var buf = r.GetReplyBuffer(total);
            var at = 0;
            if (n.Xattrs is not null)
                foreach (var k in n.Xattrs.Keys)
                {
                    at += System.Text.Encoding.Latin1.GetBytes(k, buf[at..]);
                    buf[at++] = 0;
                }
            r.ReplyBuffer(total);
        }
    }

    public override void RemoveXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var err = CheckXattr(n, name);
            if (err != 0) { r.ReplyError(err); return; }
            if (n.Xattrs is null || !n.Xattrs.Remove(Inode.Key(name))) { r.ReplyError(Errno.ENODATA); return; }
            n.Touch(mtime: false);
            r.ReplyOk();
        }
    }

    // ---- locks ----

    private sealed class LockWaiter(FuseRequest request, Inode node, FuseLkIn lk)
    {
        public readonly FuseRequest Request = request;
        public readonly Inode Node = node;
        public readonly FuseLkIn Lk = lk;
        public CancellationTokenRegistration Cancel;
    }

    private static bool IsFlock(in FuseLkIn lk) => (lk.LkFlags & FuseFlags.LkFlock) != 0;

    private static List<LockRange> Locks(Inode n, bool flock) =>
        flock ? n.FlockLocks ??= [] : n.PosixLocks ??= [];

    private static long End(in FuseFileLock l) => l.End >= long.MaxValue ? long.MaxValue : (long)l.End;

    private static LockRange? Conflict(List<LockRange> locks, in FuseLkIn lk)
    {
        long start = (long)lk.Lk.Start, end = End(lk.Lk);
        foreach (var l in locks)
            if (l.Owner != lk.Owner && l.Overlaps(start, end) && (l.Type == F_WRLCK || lk.Lk.Type == F_WRLCK))
                return l;
        return null;
    }

    public override void GetLk(FuseRequest r, ulong nodeId, in FuseLkIn lk)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            var c = Conflict(Locks(n, IsFlock(lk)), lk);
            r.ReplyLock(c is { } l
                ? new FuseFileLock { Start = (ulong)l.Start, End = (ulong)l.End, Type = l.Type, Pid = l.Pid }
                : new FuseFileLock { Start = lk.Lk.Start, End = lk.Lk.End, Type = F_UNLCK, Pid = 0 });
        }
    }

    public override void SetLk(FuseRequest r, ulong nodeId, in FuseLkIn lk, bool wait)
    {
        lock (_gate)
        {
            if (!TryNode(nodeId, out var n)) { r.ReplyError(Errno.ENOENT); return; }
            if (lk.Lk.Type is not (F_RDLCK or F_WRLCK or F_UNLCK)) { r.ReplyError(Errno.EINVAL); return; }
            if (TryLock(n, lk))
            {
                r.ReplyOk();
                WakeWaiters(n); // an unlock or downgrade may let a waiter in
                return;
            }
            if (!wait) { r.ReplyError(Errno.EAGAIN); return; }
            // Wait without holding a reader thread: the reply comes when the lock is granted or on INTERRUPT.
            var waiter = new LockWaiter(r, n, lk);
            _waiters.Add(waiter);
            waiter.Cancel = r.CancellationToken.Register(() =>
            {
                lock (_gate) { if (!_waiters.Remove(waiter)) return; }
                r.ReplyError(Errno.EINTR);
            });
        }
    }

    private static bool TryLock(Inode n, in FuseLkIn lk)
    {
        var locks = Locks(n, IsFlock(lk));
        if (lk.Lk.Type != F_UNLCK && Conflict(locks, lk) is not null) return false;
        long start = IsFlock(lk) ? 0 : (long)lk.Lk.Start, end = IsFlock(lk) ? long.MaxValue : End(lk.Lk);
        // Carve [start, end] out of this owner's locks, then add the new one.
        for (var i = locks.Count - 1; i >= 0; i--)
        {
            var l = locks[i];
            if (l.Owner != lk.Owner || !l.Overlaps(start, end)) continue;
            locks.RemoveAt(i);
            if (l.Start < start) locks.Add(l with { End = start - 1 });
            if (l.End > end) locks.Add(l with { Start = end + 1 });
        }
        if (lk.Lk.Type != F_UNLCK)
            locks.Add(new LockRange { Start = start, End = end, Type = lk.Lk.Type, Owner = lk.Owner, Pid = lk.Lk.Pid, Fh = lk.Fh });
        return true;
    }

    private void WakeWaiters(Inode n)
    {
        for (var i = 0; i < _waiters.Count; i++)
        {
            var w = _waiters[i];
            if (w.Node != n || !TryLock(n, w.Lk)) continue;
            _waiters.RemoveAt(i--);
            w.Cancel.Dispose();
            w.Request.ReplyOk();
        }
    }
}

internal static class ReplyExtensions
{
    /// <summary>Replies OK for 0, else the errno.</summary>
    public static void ReplyError0(this FuseRequest r, int err)
    {
        if (err == 0) r.ReplyOk(); else r.ReplyError(err);
    }
}
