using System.Runtime.CompilerServices;
using ExtFuse.Interop;
using static ExtFuse.Samples.Stack.Native;

namespace ExtFuse.Samples.Stack;

/// <summary>
/// How StackFs nodes reach their source inodes. The kernel keeps thousands of inodes cached
/// (stress-ng's chdir alone makes 8,192 directories), each a node here, and each node holding an
/// O_PATH descriptor would hit RLIMIT_NOFILE. So only the first <see cref="PinnedLimit"/> nodes
/// keep a descriptor; the rest keep a file handle (name_to_handle_at), which names the inode, not
/// a path, so renames stay correct, and open it (open_by_handle_at) for the length of one call.
/// open_by_handle_at needs CAP_DAC_READ_SEARCH; without it every node keeps a descriptor, and
/// lookups past the limit answer EMFILE.
/// </summary>
internal sealed unsafe class SourceTree
{
    /// <summary>Descriptor slots left; the default budget is one per process (the limit is), shared by every StackFs in it.</summary>
    private readonly StrongBox<int> _pinnedLeft;
    private static readonly Lazy<StrongBox<int>> ProcessBudget = new(() => new StrongBox<int>(DefaultPinnedLimit()));

    private SourceTree(int mountFd, ulong rootDev, int pinnedLimit, StrongBox<int> budget, bool handles)
    {
        MountFd = mountFd;
        RootDev = rootDev;
        PinnedLimit = pinnedLimit;
        _pinnedLeft = budget;
        Handles = handles;
    }

    /// <summary>The source directory opened for reading: open_by_handle_at resolves handles on its file
    /// system, and takes no O_PATH descriptor for it.</summary>
    public int MountFd { get; }
    /// <summary>Watches the source for changes behind the mount's back, when the file system asked for it.</summary>
    public SourceWatcher? Watcher { get; set; }
    public ulong RootDev { get; }
    /// <summary>How many nodes may hold a descriptor (in all StackFs instances of the process, unless given to <see cref="Create"/>).</summary>
    public int PinnedLimit { get; }
    /// <summary>Whether nodes past the limit can be reached by file handle.</summary>
    public bool Handles { get; }

    public static SourceTree Create(int rootFd, ulong rootDev, int? pinnedLimit)
    {
        var dot = stackalloc byte[] { (byte)'.', 0 };
        var mountFd = OpenAt(rootFd, dot, O_RDONLY | O_DIRECTORY);
        var handles = mountFd >= 0 && HandleOf(rootFd) is { } h && Reopen(mountFd, h) is var fd and >= 0 && Close(fd) == 0;
        if (!handles) return new SourceTree(mountFd, rootDev, int.MaxValue, new StrongBox<int>(int.MaxValue), false);
        var budget = pinnedLimit is { } own ? new StrongBox<int>(own) : ProcessBudget.Value;
        return new SourceTree(mountFd, rootDev, pinnedLimit ?? DefaultPinnedLimit(), budget, true);
    }

    /// <summary>A quarter of the descriptor limit: the rest is for open files (one per file a client
    /// has open, and a client may hold as many as its own limit) and the runtime.</summary>
    private static int DefaultPinnedLimit()
    {
        var limit = GetRLimit(RLIMIT_NOFILE, out var l) == 0 ? l.Cur : 1024;
        return (int)Math.Min(limit / 4, int.MaxValue);
    }

    /// <summary>Takes one descriptor slot, if any is left.</summary>
    public bool TryPin()
    {
        while (true)
        {
            var left = Volatile.Read(ref _pinnedLeft.Value);
            if (left <= 0) return false;
            if (Interlocked.CompareExchange(ref _pinnedLeft.Value, left - 1, left) == left) return true;
        }
    }

    public void Unpin() => Interlocked.Increment(ref _pinnedLeft.Value);

    private int _handleNodes;
    /// <summary>Live nodes reached by handle (none: nothing to keep reachable at unlink).</summary>
    public int HandleNodes => Volatile.Read(ref _handleNodes);
    public void HandleNodeCreated() => Interlocked.Increment(ref _handleNodes);
    public void HandleNodeGone() => Interlocked.Decrement(ref _handleNodes);

    /// <summary>The handle (struct file_handle bytes) of <paramref name="name"/> in <paramref name="dirFd"/>, not following a symlink.</summary>
    public static bool TryHandle(int dirFd, byte* name, out byte[] handle, out int errno)
    {
        var buf = stackalloc byte[8 + (int)MAX_HANDLE_SZ];
        *(uint*)buf = MAX_HANDLE_SZ;
        int mountId;
        var rc = NameToHandleAt(dirFd, name, buf, &mountId, *name == 0 ? AT_EMPTY_PATH : 0);
        if (rc < 0) { handle = []; errno = -rc; return false; }
        handle = new ReadOnlySpan<byte>(buf, 8 + (int)*(uint*)buf).ToArray();
        errno = 0;
        return true;
    }

    /// <summary>The handle of the inode <paramref name="fd"/> refers to, or null when it has none.</summary>
    public static byte[]? HandleOf(int fd)
    {
        byte empty = 0;
        return TryHandle(fd, &empty, out var handle, out _) ? handle : null;
    }

    /// <summary>An O_PATH descriptor for <paramref name="handle"/>, or -errno (ESTALE once the inode is gone).</summary>
    public static int Reopen(int mountFd, byte[] handle)
    {
        fixed (byte* h = handle) return OpenByHandleAt(mountFd, h, O_PATH);
    }
}

/// <summary>A node's descriptor for the length of one call: <see cref="Fd"/> is -errno when it cannot be had.</summary>
internal readonly ref struct NodeFd(int fd, bool owned)
{
    public int Fd { get; } = fd;
    public int Error => Fd < 0 ? -Fd : 0;
    public void Dispose() { if (owned && Fd >= 0) Close(Fd); }
}
