using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse.Nodes;

/// <summary>Who is asking: the caller's ids and the request's cancellation (INTERRUPT).</summary>
public readonly struct OpContext(FuseRequest request)
{
    public uint Uid => request.Uid;
    public uint Gid => request.Gid;
    public uint Pid => request.Pid;
    public CancellationToken CancellationToken => request.CancellationToken;
}

/// <summary>
/// A node of a <see cref="NodeFileSystem"/>. Subclasses implement the small per-operation
/// interfaces below that they support; the framework owns nodeids, lookup counts, FORGET,
/// parents and names (hard links give a node several), and rename/unlink bookkeeping.
/// Nodes with the same <see cref="StableIno"/> are one node: a lookup that returns a new object
/// for an inode the kernel already knows gets the known node, and the new one is discarded.
/// </summary>
public abstract class Node
{
    internal readonly Dictionary<string, Node> KnownChildren = new(StringComparer.Ordinal);
    internal readonly List<(Node Parent, string Name)> Parents = [];
    internal long Lookups;
    /// <summary>From the mode of the reply that first made the node known (the root is a directory).</summary>
    internal bool IsDirectory;
    /// <summary>mtime, ctime and size at the last open: unchanged means the kernel's cached pages are still right.</summary>
    internal (ulong Mtime, uint MtimeNsec, ulong Ctime, uint CtimeNsec, ulong Size)? OpenedVersion;

    /// <summary>The nodeid the kernel uses for this node; 0 until the kernel first learns of it.</summary>
    public ulong NodeId { get; internal set; }
    /// <summary>Inode number reported in attributes and used to recognise the same inode again (0: every node is distinct).</summary>
    public ulong StableIno { get; init; }
    /// <summary>Generation number sent with the nodeid (nodeids are never reused, so 0 is fine unless the backing store says otherwise).</summary>
    public ulong Generation { get; init; }
    public NodeFileSystem? Tree { get; internal set; }

    /// <summary>The kernel forgot this node (or it was a duplicate of a known inode): release what it holds.</summary>
    protected internal virtual void OnForget() { }

    /// <summary>
    /// Asked of a new node whose <see cref="StableIno"/> a known node has: false when the known
    /// node's inode is gone and its number was reused, so the new node must not be folded into it
    /// (it gets its own nodeid and takes over the number).
    /// </summary>
    protected internal virtual bool IsSameInode(Node known) => true;

    /// <summary>A path from the root to this node through the names the kernel knows, or null if it has none (unlinked).</summary>
    public string? GetPath() => Tree?.PathOf(this);
}

/// <summary>An open file or directory. Override what the handle supports; the rest answers ENOSYS.</summary>
public abstract class FileHandle
{
    /// <summary>The open file the kernel can serve reads and writes from directly ([Passthrough]), or -1.</summary>
    public virtual int BackingFd => -1;

    public virtual int Read(OpContext ctx, long offset, Span<byte> buffer, out int read) { read = 0; return Errno.ENOSYS; }
    public virtual int Write(OpContext ctx, long offset, ReadOnlySpan<byte> data, out int written) { written = 0; return Errno.ENOSYS; }
    /// <summary>close(2) of one descriptor (there may be several per handle).</summary>
    public virtual int Flush(OpContext ctx) => 0;
    /// <summary>The last descriptor is gone.</summary>
    public virtual void Release() { }
    public virtual int Fsync(OpContext ctx, bool dataOnly) => Errno.ENOSYS;
    public virtual int Allocate(OpContext ctx, long offset, long length, int mode) => Errno.ENOSYS;
    public virtual int Lseek(OpContext ctx, long offset, int whence, out long result) { result = 0; return Errno.ENOSYS; }
    public virtual int GetAttr(OpContext ctx, out FuseAttr attr) { attr = default; return Errno.ENOSYS; }
    public virtual int CopyFileRange(OpContext ctx, long offsetIn, FileHandle output, long offsetOut, long length, out long copied) { copied = 0; return Errno.ENOSYS; }
    /// <summary>Directory handles: adds entries from <paramref name="offset"/> on until the sink is full.</summary>
    public virtual int ReadDir(OpContext ctx, long offset, DirEntrySink sink) => Errno.ENOTDIR;
}

/// <summary>Receives directory entries; Add returns false when the reply is full.</summary>
public abstract class DirEntrySink
{
    /// <param name="nextOffset">the offset at which reading continues after this entry (telldir value)</param>
    public abstract bool Add(ReadOnlySpan<byte> name, ulong ino, uint mode, long nextOffset);
}

public interface INodeLookup { int Lookup(OpContext ctx, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr); }
public interface INodeGetAttr { int GetAttr(OpContext ctx, out FuseAttr attr); }
public interface INodeSetAttr { int SetAttr(OpContext ctx, FileHandle? fh, in FuseSetattrIn set, out FuseAttr attr); }
public interface INodeReadLink { int ReadLink(OpContext ctx, Span<byte> buffer, out int length); }
public interface INodeMkDir { int MkDir(OpContext ctx, ReadOnlySpan<byte> name, uint mode, out Node child, out FuseAttr attr); }
public interface INodeMkNod { int MkNod(OpContext ctx, ReadOnlySpan<byte> name, uint mode, uint rdev, out Node child, out FuseAttr attr); }
public interface INodeSymlink { int Symlink(OpContext ctx, ReadOnlySpan<byte> target, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr); }
public interface INodeLink { int Link(OpContext ctx, Node target, ReadOnlySpan<byte> name, out Node child, out FuseAttr attr); }
public interface INodeUnlink { int Unlink(OpContext ctx, ReadOnlySpan<byte> name); }
public interface INodeRmDir { int RmDir(OpContext ctx, ReadOnlySpan<byte> name); }
public interface INodeRename { int Rename(OpContext ctx, ReadOnlySpan<byte> name, Node newParent, ReadOnlySpan<byte> newName, uint flags); }
public interface INodeCreate { int Create(OpContext ctx, ReadOnlySpan<byte> name, uint flags, uint mode, out Node child, out FuseAttr attr, out FileHandle handle, out OpenReplyFlags replyFlags); }
public interface INodeTmpFile { int TmpFile(OpContext ctx, uint flags, uint mode, out Node child, out FuseAttr attr, out FileHandle handle); }
public interface INodeOpen { int Open(OpContext ctx, uint flags, out FileHandle handle, out OpenReplyFlags replyFlags); }
public interface INodeOpenDir { int OpenDir(OpContext ctx, uint flags, out FileHandle handle); }
public interface INodeStatFs { int StatFs(OpContext ctx, out FuseKStatfs st); }
public interface INodeAccess { int Access(OpContext ctx, uint mask); }

/// <summary>Extended attributes; a zero-length buffer asks for the size.</summary>
public interface INodeXattr
{
    int GetXattr(OpContext ctx, ReadOnlySpan<byte> name, Span<byte> buffer, out int size);
    int SetXattr(OpContext ctx, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags);
    int ListXattr(OpContext ctx, Span<byte> buffer, out int size);
    int RemoveXattr(OpContext ctx, ReadOnlySpan<byte> name);
}
