using System.Text;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse.Nodes;

/// <summary>
/// Serves a tree of <see cref="Node"/> objects over the raw nodeid protocol (as go-fuse's fs
/// package does over its raw layer). The framework keeps the nodeid table, lookup counts,
/// FORGET, open handles, the names the kernel knows, and moves them on rename and unlink.
/// Node operations run on the reader thread, outside the table's lock.
/// </summary>
public class NodeFileSystem : RawFileSystem
{
    private readonly object _table = new();
    private readonly Dictionary<ulong, Node> _byId = [];
    private readonly Dictionary<ulong, Node> _byIno = [];
    private readonly Dictionary<ulong, FileHandle> _handles = [];
    private ulong _nextId = FuseConstants.RootId + 1;
    private ulong _nextHandle = 1;

    public NodeFileSystem(Node root)
    {
        Root = root;
        root.NodeId = FuseConstants.RootId;
        root.Tree = this;
        root.Lookups = 1;
        root.IsDirectory = true;
        _byId[root.NodeId] = root;
        if (root.StableIno != 0) _byIno[root.StableIno] = root;
    }

    public Node Root { get; }
    public virtual TimeSpan EntryTimeout { get; init; } = TimeSpan.FromSeconds(1);
    public virtual TimeSpan AttrTimeout { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>How long the kernel may remember that a name does not exist (0: not at all).</summary>
    public virtual TimeSpan NegativeTimeout { get; init; } = TimeSpan.Zero;
    /// <summary>
    /// Let the kernel keep file pages and directory listings across opens (FOPEN_KEEP_CACHE,
    /// FOPEN_CACHE_DIR) while a node's mtime, ctime and size are those of its last open. Changes
    /// made behind the mount's back must then be reported (see StackFs's source watcher).
    /// </summary>
    public bool KeepCaches { get; init; }

    /// <summary>Nodes the kernel currently holds (plus the root).</summary>
    public int NodeCount { get { lock (_table) return _byId.Count; } }
    public int OpenHandleCount { get { lock (_table) return _handles.Count; } }

    /// <summary>The live node for a stable inode number, if the kernel holds one.</summary>
    public Node? FindByStableIno(ulong ino) { lock (_table) return _byIno.GetValueOrDefault(ino); }

    // ---- the table ----

    private Node? Get(ulong id) { lock (_table) return _byId.GetValueOrDefault(id); }

    private static string Key(ReadOnlySpan<byte> name) => Encoding.Latin1.GetString(name);

    /// <summary>
    /// Records that the kernel now holds one more reference to parent/name -> child; returns the node
    /// it knows, or null when <paramref name="child"/> is a known node that FORGET dropped meanwhile
    /// (the lookup must then be done again).
    /// </summary>
    private Node? Register(Node parent, ReadOnlySpan<byte> name, Node child, uint mode)
    {
        if (child.NodeId == 0) child.IsDirectory = (mode & 0xF000) == 0x4000;
        Node? discard = null;
        Node node;
        bool fresh = false, named = false;
        lock (_table)
        {
            if (child.NodeId != 0 && _byId.GetValueOrDefault(child.NodeId) != child) return null;
            node = child;
            if (child.NodeId == 0 && child.StableIno != 0 && _byIno.TryGetValue(child.StableIno, out var known) && known != child
                && child.IsSameInode(known))
            {
                discard = child;
                node = known;
            }
            if (node.NodeId == 0)
            {
                node.NodeId = _nextId++;
                node.Tree = this;
                _byId[node.NodeId] = node;
                if (node.StableIno != 0) _byIno[node.StableIno] = node;
                fresh = true;
            }
            node.Lookups++;
            if (!name.IsEmpty) named = Bind(parent, name, node);
        }
        discard?.OnForget();
        if (fresh) OnRegistered(node);
        if (fresh || named) OnNamesChanged(node.NodeId);
        return node;
    }

    /// <summary>Called (outside the table's lock) when the kernel first learns a node: a file system
    /// that watches its backing store starts watching it here.</summary>
    protected virtual void OnRegistered(Node node) { }

    /// <summary>The node the kernel knows as <paramref name="name"/> in <paramref name="parent"/>, if any.</summary>
    public Node? ChildOf(Node parent, ReadOnlySpan<byte> name) { lock (_table) return KnownChild(parent, name); }

    /// <summary>The child bound to <paramref name="name"/>, found without making the name a string (a repeated LOOKUP, a watcher event).</summary>
    private static Node? KnownChild(Node parent, ReadOnlySpan<byte> name)
    {
        Span<char> chars = name.Length <= 256 ? stackalloc char[name.Length] : new char[name.Length];
        Encoding.Latin1.GetChars(name, chars);
        return parent.KnownChildren.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(chars, out var child) ? child : null;
    }

    /// <summary>The names the kernel knows in <paramref name="parent"/>, as bytes.</summary>
    public List<byte[]> KnownNames(Node parent) { lock (_table) return [.. parent.KnownChildren.Keys.Select(Encoding.Latin1.GetBytes)]; }

    /// <summary>Binds the name; true when that changed something.</summary>
    private static bool Bind(Node parent, ReadOnlySpan<byte> name, Node child) => KnownChild(parent, name) != child && Bind(parent, Key(name), child);

    private static bool Bind(Node parent, string name, Node child)
    {
        if (parent.KnownChildren.TryGetValue(name, out var old))
        {
            if (old == child) return false;
            old.Parents.Remove((parent, name));
        }
        parent.KnownChildren[name] = child;
        child.Parents.Add((parent, name));
        return true;
    }

    /// <summary>Drops the name; the node that had it, if any.</summary>
    private static Node? Unbind(Node parent, string name)
    {
        if (!parent.KnownChildren.Remove(name, out var child)) return null;
        child.Parents.Remove((parent, name));
        return child;
    }

    internal string? PathOf(Node node)
    {
        lock (_table)
        {
            var parts = new List<string>();
            for (var n = node; n != Root; )
            {
                if (n.Parents.Count == 0) return null;
                var (p, name) = n.Parents[0];
                parts.Add(name);
                n = p;
                if (parts.Count > 4096) return null;
            }
            parts.Reverse();
            return "/" + string.Join('/', parts);
        }
    }

    /// <summary>The node's path below the root as UTF-8 text ("" for the root), for the path rules.</summary>
    public override string? PathOf(ulong nodeId)
    {
        if (Get(nodeId) is not { } node || PathOf(node) is not { } path) return null;
        return RulePath(path);
    }

    private static string RulePath(string latin1Path) => Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(latin1Path))[1..];

    /// <summary>Every path of the node: one per name it is known by (its directories have one each).</summary>
    public override IReadOnlyList<string> PathsOf(ulong nodeId)
    {
        if (Get(nodeId) is not { } node) return [];
        if (node == Root) return [""];
        List<(Node, string)> names;
        lock (_table) names = [.. node.Parents];
        var paths = new List<string>(names.Count);
        foreach (var (parent, name) in names)
            if (PathOf(parent) is { } dir) paths.Add(RulePath(dir == "/" ? "/" + name : dir + "/" + name));
        return paths;
    }

    public override bool IsDirectory(ulong nodeId) => Get(nodeId)?.IsDirectory ?? false;

    public override bool Knows(ulong nodeId) => Get(nodeId) is not null;

    public override ulong ChildId(ulong parent, ReadOnlySpan<byte> name) =>
        Get(parent) is { } p && ChildOf(p, name) is { } child ? child.NodeId : 0;

    public override void Forget(ulong nodeId, ulong nlookup)
    {
        Node? gone = null;
        lock (_table)
        {
            if (!_byId.TryGetValue(nodeId, out var n) || n == Root) return;
            n.Lookups -= (long)nlookup;
            if (n.Lookups > 0) return;
            _byId.Remove(nodeId);
            if (n.StableIno != 0 && _byIno.GetValueOrDefault(n.StableIno) == n) _byIno.Remove(n.StableIno);
            foreach (var (p, name) in n.Parents.ToArray()) if (p.KnownChildren.GetValueOrDefault(name) == n) p.KnownChildren.Remove(name);
            n.Parents.Clear();
            gone = n;
        }
        gone.OnForget();
        OnNamesChanged(nodeId);
    }

    private ulong AddHandle(FileHandle h) { lock (_table) { var id = _nextHandle++; _handles[id] = h; return id; } }
    private FileHandle? Handle(ulong fh) { lock (_table) return _handles.GetValueOrDefault(fh); }

    // ---- replies ----

    /// <summary>The attributes as the kernel must see them: with the node's stable inode number.</summary>
    private static FuseAttr Stable(Node node, FuseAttr attr)
    {
        if (node.StableIno != 0) attr.Ino = node.StableIno;
        return attr;
    }

    private FuseEntryOut EntryFor(Node node, in FuseAttr attr)
    {
        var (es, en) = FuseTimeout.Split(EntryTimeout);
        var (@as, an) = FuseTimeout.Split(AttrTimeout);
        return new FuseEntryOut { NodeId = node.NodeId, Generation = node.Generation, EntryValid = es, EntryValidNsec = en, AttrValid = @as, AttrValidNsec = an, Attr = Stable(node, attr) };
    }

    private FuseAttrOut AttrFor(Node node, in FuseAttr attr)
    {
        var (s, ns) = FuseTimeout.Split(AttrTimeout);
        return new FuseAttrOut { AttrValid = s, AttrValidNsec = ns, Attr = Stable(node, attr) };
    }

    private void ReplyNew(FuseRequest r, Node parent, ReadOnlySpan<byte> name, Node child, FuseAttr attr)
    {
        if (RegisterOrLookUp(r, parent, name, child, ref attr) is { } node) r.ReplyEntry(EntryFor(node, attr));
    }

    /// <summary>
    /// Registers what an operation answered. An operation may answer with a node the kernel already
    /// has; if FORGET dropped that node in the meantime, the name is looked up again, which makes a
    /// new node. Null when that failed (the error is replied).
    /// </summary>
    private Node? RegisterOrLookUp(FuseRequest r, Node parent, ReadOnlySpan<byte> name, Node child, ref FuseAttr attr)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            if (Register(parent, name, child, attr.Mode) is { } node) return node;
            if (parent is not INodeLookup lookup || Fail(r, lookup.Lookup(new OpContext(r), name, out child, out attr))) return null;
        }
        r.ReplyError(Errno.EAGAIN);
        return null;
    }

    private static bool Fail(FuseRequest r, int err)
    {
        if (err == 0) return false;
        r.ReplyError(err);
        return true;
    }

    private bool Resolve<T>(FuseRequest r, ulong id, out Node node, out T op) where T : class
    {
        op = null!;
        node = Get(id)!;
        if (node is null) { r.ReplyError(Errno.ENOENT); return false; }
        if (node is not T t) { r.ReplyError(Errno.ENOSYS); return false; }
        op = t;
        return true;
    }

    // ---- operations ----

    public override void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        if (!Resolve<INodeLookup>(r, parent, out var p, out var op)) return;
        var err = op.Lookup(new OpContext(r), name, out var child, out var attr);
        if (err == Errno.ENOENT && NegativeTimeout > TimeSpan.Zero)
        {
            var (s, ns) = FuseTimeout.Split(NegativeTimeout);
            r.ReplyEntry(new FuseEntryOut { NodeId = 0, EntryValid = s, EntryValidNsec = ns });
            return;
        }
        if (Fail(r, err)) return;
        ReplyNew(r, p, name, child, attr);
    }

    public override void GetAttr(FuseRequest r, ulong nodeId, ulong? fh)
    {
        var node = Get(nodeId);
        if (node is null) { r.ReplyError(Errno.ENOENT); return; }
        FuseAttr attr;
        int err;
        if (fh is { } h && Handle(h) is { } handle && (err = handle.GetAttr(new OpContext(r), out attr)) != Errno.ENOSYS) { }
        else if (node is INodeGetAttr g) err = g.GetAttr(new OpContext(r), out attr);
        else { r.ReplyError(Errno.ENOSYS); return; }
        if (!Fail(r, err)) r.ReplyAttr(AttrFor(node, attr));
    }

    public override void SetAttr(FuseRequest r, ulong nodeId, in FuseSetattrIn set)
    {
        if (!Resolve<INodeSetAttr>(r, nodeId, out var node, out var op)) return;
        var fh = (set.Valid & SetAttrValid.Fh) != 0 ? Handle(set.Fh) : null;
        if (!Fail(r, op.SetAttr(new OpContext(r), fh, set, out var attr))) r.ReplyAttr(AttrFor(node, attr));
    }

    public override void ReadLink(FuseRequest r, ulong nodeId)
    {
        if (!Resolve<INodeReadLink>(r, nodeId, out _, out var op)) return;
        var buf = r.GetReplyBuffer(4096);
        if (!Fail(r, op.ReadLink(new OpContext(r), buf, out var n))) r.ReplyBuffer(n);
    }

    public override void MkDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask)
    {
        if (!Resolve<INodeMkDir>(r, parent, out var p, out var op)) return;
        if (!Fail(r, op.MkDir(new OpContext(r), name, mode, out var child, out var attr))) ReplyNew(r, p, name, child, attr);
    }

    public override void MkNod(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask)
    {
        if (!Resolve<INodeMkNod>(r, parent, out var p, out var op)) return;
        if (!Fail(r, op.MkNod(new OpContext(r), name, mode, rdev, out var child, out var attr))) ReplyNew(r, p, name, child, attr);
    }

    public override void Symlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target)
    {
        if (!Resolve<INodeSymlink>(r, parent, out var p, out var op)) return;
        if (!Fail(r, op.Symlink(new OpContext(r), target, name, out var child, out var attr))) ReplyNew(r, p, name, child, attr);
    }

    public override void Link(FuseRequest r, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName)
    {
        var target = Get(nodeId);
        if (target is null) { r.ReplyError(Errno.ENOENT); return; }
        if (!Resolve<INodeLink>(r, newParent, out var p, out var op)) return;
        if (!Fail(r, op.Link(new OpContext(r), target, newName, out var child, out var attr))) ReplyNew(r, p, newName, child, attr);
    }

    public override void Unlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        if (!Resolve<INodeUnlink>(r, parent, out var p, out var op)) return;
        if (Fail(r, op.Unlink(new OpContext(r), name))) return;
        Node? gone;
        lock (_table) gone = Unbind(p, Key(name));
        if (gone is not null) OnNamesChanged(gone.NodeId);
        r.ReplyOk();
    }

    public override void RmDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        if (!Resolve<INodeRmDir>(r, parent, out var p, out var op)) return;
        if (Fail(r, op.RmDir(new OpContext(r), name))) return;
        Node? gone;
        lock (_table) gone = Unbind(p, Key(name));
        if (gone is not null) OnNamesChanged(gone.NodeId);
        r.ReplyOk();
    }

    public override void Rename(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        if (!Resolve<INodeRename>(r, parent, out var p, out var op)) return;
        var np = Get(newParent);
        if (np is null) { r.ReplyError(Errno.ENOENT); return; }
        if (Fail(r, op.Rename(new OpContext(r), name, np, newName, flags))) return;
        Node? moved, other;
        lock (_table)
        {
            string from = Key(name), to = Key(newName);
            p.KnownChildren.TryGetValue(from, out moved);
            np.KnownChildren.TryGetValue(to, out other);
            Unbind(p, from);
            Unbind(np, to);
            if (moved is not null) Bind(np, to, moved);
            if ((flags & FuseFlags.RenameExchange) != 0 && other is not null) Bind(p, from, other);
        }
        if (moved is not null) OnNamesChanged(moved.NodeId);
        if (other is not null) OnNamesChanged(other.NodeId);
        r.ReplyOk();
    }

    public override void Create(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, in FuseCreateIn c)
    {
        if (!Resolve<INodeCreate>(r, parent, out var p, out var op)) return;
        if (Fail(r, op.Create(new OpContext(r), name, c.Flags, c.Mode, out var child, out var attr, out var handle, out var flags))) return;
        if (RegisterOrLookUp(r, p, name, child, ref attr) is not { } node)
        {
            handle.Release();
            return;
        }
        var open = new FuseOpenOut { Fh = AddHandle(handle), OpenFlags = flags };
        Passthrough(r, node, handle, ref open);
        r.ReplyCreate(EntryFor(node, attr), open);
    }

    public override void TmpFile(FuseRequest r, ulong parent, in FuseCreateIn c)
    {
        if (!Resolve<INodeTmpFile>(r, parent, out var p, out var op)) return;
        if (Fail(r, op.TmpFile(new OpContext(r), c.Flags, c.Mode, out var child, out var attr, out var handle))) return;
        var node = Register(p, default, child, attr.Mode)!; // always a new node: nothing to have forgotten
        r.ReplyCreate(EntryFor(node, attr), new FuseOpenOut { Fh = AddHandle(handle) });
    }

    public override void Open(FuseRequest r, ulong nodeId, in FuseOpenIn o)
    {
        if (!Resolve<INodeOpen>(r, nodeId, out var node, out var op)) return;
        if (Fail(r, op.Open(new OpContext(r), o.Flags, out var handle, out var flags))) return;
        var open = new FuseOpenOut { Fh = AddHandle(handle), OpenFlags = flags | KeepCache(r, node) };
        Passthrough(r, node, handle, ref open);
        r.ReplyOpen(open);
    }

    /// <summary>FOPEN_KEEP_CACHE when <see cref="KeepCaches"/> is on and the node is as it was at its last open.</summary>
    private OpenReplyFlags KeepCache(FuseRequest r, Node node)
    {
        if (!KeepCaches || node is not INodeGetAttr g || g.GetAttr(new OpContext(r), out var a) != 0) return OpenReplyFlags.None;
        var now = (a.Mtime, a.MtimeNsec, a.Ctime, a.CtimeNsec, a.Size);
        lock (node)
        {
            var same = node.OpenedVersion == now;
            node.OpenedVersion = now;
            return same ? OpenReplyFlags.KeepCache : OpenReplyFlags.None;
        }
    }

    // ---- [Passthrough]: one backing id per inode, dropped when its last open is released ----

    private readonly Dictionary<Node, (int Id, int Opens)> _backing = [];
    private readonly Dictionary<FileHandle, Node> _backed = [];
    private int _passthroughRefused;

    /// <summary>Number of inodes whose reads and writes the kernel serves from a backing file now.</summary>
    public int BackedInodes { get { lock (_backing) return _backing.Count; } }

    private void Passthrough(FuseRequest r, Node node, FileHandle handle, ref FuseOpenOut open)
    {
        if (handle.BackingFd < 0 || r.Session is not { } session || !session.Policy.HasPassthrough
            || !session.Connection.Has(InitFlags.Passthrough) || !session.Policy.IsPassthrough(PathOf(node.NodeId))) return;
        lock (_backing)
        {
            if (!_backing.TryGetValue(node, out var b))
            {
                // One backing file serves every open of the inode (the kernel allows one), so it
                // is opened for reading and writing when the daemon may; the kernel keeps its own reference.
                var wide = Libc.Open($"/proc/self/fd/{handle.BackingFd}", Libc.O_RDWR | Libc.O_CLOEXEC);
                var id = session.OpenBacking(wide >= 0 ? wide : handle.BackingFd);
                if (wide >= 0) Libc.Close(wide);
                if (id < 0)
                {
                    // Without CAP_SYS_ADMIN (or with a file the kernel cannot stack on) the daemon serves the data.
                    if (Interlocked.Exchange(ref _passthroughRefused, 1) == 0)
                        session.Log.PassthroughRefused(-id);
                    return;
                }
                b = (id, 0);
            }
            _backing[node] = (b.Id, b.Opens + 1);
            _backed[handle] = node;
            // The kernel reads and writes through the backing file's page cache: FUSE's own cache flags do not apply (and KEEP_CACHE with it fails the open with EIO).
            open.OpenFlags = (open.OpenFlags | OpenReplyFlags.Passthrough) & ~(OpenReplyFlags.DirectIo | OpenReplyFlags.ParallelDirectWrites | OpenReplyFlags.KeepCache);
            open.BackingId = b.Id;
        }
    }

    private void ReleaseBacking(FuseRequest r, FileHandle h)
    {
        lock (_backing)
        {
            if (!_backed.Remove(h, out var node) || !_backing.TryGetValue(node, out var b)) return;
            if (b.Opens > 1) { _backing[node] = (b.Id, b.Opens - 1); return; }
            _backing.Remove(node);
            r.Session?.CloseBacking(b.Id);
        }
    }

    public override void OpenDir(FuseRequest r, ulong nodeId, in FuseOpenIn o)
    {
        if (!Resolve<INodeOpenDir>(r, nodeId, out var node, out var op)) return;
        if (!Fail(r, op.OpenDir(new OpContext(r), o.Flags, out var handle)))
            r.ReplyOpen(new FuseOpenOut { Fh = AddHandle(handle), OpenFlags = KeepCaches ? OpenReplyFlags.CacheDir | KeepCache(r, node) : OpenReplyFlags.None });
    }

    private bool HandleFor(FuseRequest r, ulong fh, out FileHandle handle)
    {
        handle = Handle(fh)!;
        if (handle is not null) return true;
        r.ReplyError(Errno.EBADF);
        return false;
    }

    public override void Read(FuseRequest r, ulong nodeId, in FuseReadIn read)
    {
        if (!HandleFor(r, read.Fh, out var h)) return;
        if (h.BackingFd >= 0 && r.TryReplySplice(h.BackingFd, (long)read.Offset, (int)read.Size)) return;
        var buf = r.GetReplyBuffer((int)read.Size);
        if (!Fail(r, h.Read(new OpContext(r), (long)read.Offset, buf, out var n))) r.ReplyBuffer(n);
    }

    public override void Write(FuseRequest r, ulong nodeId, in FuseWriteIn write, ReadOnlySpan<byte> data)
    {
        if (!HandleFor(r, write.Fh, out var h)) return;
        if (!Fail(r, h.Write(new OpContext(r), (long)write.Offset, data, out var n))) r.ReplyWrite((uint)n);
    }

    public override void Flush(FuseRequest r, ulong nodeId, ulong fh, ulong lockOwner)
    {
        if (!HandleFor(r, fh, out var h)) return;
        if (!Fail(r, h.Flush(new OpContext(r)))) r.ReplyOk();
    }

    public override void Release(FuseRequest r, ulong nodeId, in FuseReleaseIn release) => ReleaseHandle(r, release.Fh);
    public override void ReleaseDir(FuseRequest r, ulong nodeId, in FuseReleaseIn release) => ReleaseHandle(r, release.Fh);

    private void ReleaseHandle(FuseRequest r, ulong fh)
    {
        FileHandle? h;
        lock (_table) _handles.Remove(fh, out h);
        if (h is not null && _backed.Count > 0) ReleaseBacking(r, h);
        h?.Release();
        r.ReplyOk();
    }

    public override void Fsync(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly)
    {
        if (!HandleFor(r, fh, out var h)) return;
        if (!Fail(r, h.Fsync(new OpContext(r), dataOnly))) r.ReplyOk();
    }

    public override void FsyncDir(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) => Fsync(r, nodeId, fh, dataOnly);

    public override void FAllocate(FuseRequest r, ulong nodeId, in FuseFallocateIn f)
    {
        if (!HandleFor(r, f.Fh, out var h)) return;
        if (!Fail(r, h.Allocate(new OpContext(r), (long)f.Offset, (long)f.Length, (int)f.Mode))) r.ReplyOk();
    }

    public override void Lseek(FuseRequest r, ulong nodeId, ulong fh, long offset, int whence)
    {
        if (!HandleFor(r, fh, out var h)) return;
        if (!Fail(r, h.Lseek(new OpContext(r), offset, whence, out var result))) r.ReplyLseek(result);
    }

    public override void CopyFileRange(FuseRequest r, ulong nodeIdIn, in FuseCopyFileRangeIn c)
    {
        if (!HandleFor(r, c.FhIn, out var input) || !HandleFor(r, c.FhOut, out var output)) return;
        if (!Fail(r, input.CopyFileRange(new OpContext(r), (long)c.OffIn, output, (long)c.OffOut, (long)c.Len, out var n))) r.ReplyCopied((ulong)n);
    }

    public override void StatFs(FuseRequest r, ulong nodeId)
    {
        var node = Get(nodeId) ?? Root;
        if (node is not INodeStatFs op) { r.ReplyStatfs(new FuseKStatfs { Bsize = 4096, Frsize = 4096, NameLen = 255 }); return; }
        if (!Fail(r, op.StatFs(new OpContext(r), out var st))) r.ReplyStatfs(st);
    }

    public override void Access(FuseRequest r, ulong nodeId, uint mask)
    {
        if (!Resolve<INodeAccess>(r, nodeId, out _, out var op)) return;
        if (!Fail(r, op.Access(new OpContext(r), mask))) r.ReplyOk();
    }

    public override void GetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, uint size)
    {
        if (!Resolve<INodeXattr>(r, nodeId, out _, out var op)) return;
        var buf = size == 0 ? Span<byte>.Empty : r.GetReplyBuffer((int)size);
        if (Fail(r, op.GetXattr(new OpContext(r), name, buf, out var n))) return;
        if (size == 0) r.ReplyXattrSize((uint)n); else r.ReplyBuffer(n);
    }

    public override void ListXattr(FuseRequest r, ulong nodeId, uint size)
    {
        if (!Resolve<INodeXattr>(r, nodeId, out _, out var op)) return;
        var buf = size == 0 ? Span<byte>.Empty : r.GetReplyBuffer((int)size);
        if (Fail(r, op.ListXattr(new OpContext(r), buf, out var n))) return;
        if (size == 0) r.ReplyXattrSize((uint)n); else r.ReplyBuffer(n);
    }

    public override void SetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, uint flags)
    {
        if (!Resolve<INodeXattr>(r, nodeId, out _, out var op)) return;
        if (!Fail(r, op.SetXattr(new OpContext(r), name, value, (int)flags))) r.ReplyOk();
    }

    public override void RemoveXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name)
    {
        if (!Resolve<INodeXattr>(r, nodeId, out _, out var op)) return;
        if (!Fail(r, op.RemoveXattr(new OpContext(r), name))) r.ReplyOk();
    }

    // ---- directories ----

    public override void ReadDir(FuseRequest r, ulong nodeId, in FuseReadIn read) => List(r, nodeId, read, plus: false);
    public override void ReadDirPlus(FuseRequest r, ulong nodeId, in FuseReadIn read) => List(r, nodeId, read, plus: true);

    private void List(FuseRequest r, ulong nodeId, in FuseReadIn read, bool plus)
    {
        var dir = Get(nodeId);
        if (dir is null) { r.ReplyError(Errno.ENOENT); return; }
        if (!HandleFor(r, read.Fh, out var h)) return;
        var policy = r.Session?.Policy;
        var sink = new ListingSink(this, r, dir, read.Size, plus, policy, policy is { HasHide: true } ? PathOf(nodeId) ?? "" : null);
        if (!Fail(r, h.ReadDir(new OpContext(r), (long)read.Offset, sink))) r.ReplyBuffer(sink.Length);
    }

    /// <summary>Writes entries into the request's reply buffer; for READDIRPLUS it looks each one up (a lookup reference per entry).</summary>
    private sealed class ListingSink(NodeFileSystem fs, FuseRequest r, Node dir, uint size, bool plus, ExtFuse.Policy.AccessPolicy? policy, string? hidingUnder) : DirEntrySink
    {
        public int Length;

        public override bool Add(ReadOnlySpan<byte> name, ulong ino, uint mode, long nextOffset)
        {
            // [Hide]: the entry is skipped, and the listing goes on past it.
            if (hidingUnder is not null && policy!.IsHidden(ExtFuse.Policy.AccessPolicy.Join(hidingUnder, name))) return true;
            var rest = r.GetReplyBuffer((int)size)[Length..];
            if (DirectoryListing.RecordSize(name.Length, plus) > rest.Length) return false;
            if (!plus)
            {
                Length += DirectoryListing.Encode(rest, ino, name, mode, (ulong)nextOffset);
                return true;
            }
            // "." and ".." and entries that vanished meanwhile go without a node (nodeid 0: no lookup reference).
            var entry = new FuseEntryOut { Attr = new FuseAttr { Ino = ino, Mode = mode } };
            if (!name.SequenceEqual("."u8) && !name.SequenceEqual(".."u8) && dir is INodeLookup lookup
                && lookup.Lookup(new OpContext(r), name, out var child, out var attr) == 0
                && fs.Register(dir, name, child, attr.Mode) is { } known)
                entry = fs.EntryFor(known, attr);
            Length += DirectoryListing.EncodePlus(rest, entry, name, (ulong)nextOffset);
            return true;
        }
    }

    /// <summary>READDIRPLUS when the root can look names up; locks are left to the kernel (local locks).</summary>
    public override bool Implements(string method) => method switch
    {
        nameof(ReadDirPlus) => Root is INodeLookup,
        nameof(GetLk) or nameof(SetLk) => false,
        _ => base.Implements(method),
    };
}
