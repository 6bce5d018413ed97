using System.Runtime.InteropServices;
using ExtFuse.Nodes;
using static ExtFuse.Samples.Stack.Native;

namespace ExtFuse.Samples.Stack;

/// <summary>
/// Keeps the kernel's caches true to the source directory when it changes behind the mount's
/// back: inotify watches every directory the kernel knows, and each change is turned into the
/// invalidation it needs (a name created, removed or moved: that entry and the directory's
/// attributes and listing; a file modified or its attributes changed: its attributes, after
/// which the kernel drops stale pages itself, AUTO_INVAL_DATA). Changes made through the mount
/// are seen too; they cost an invalidation the kernel did not need, never a stale answer.
/// </summary>
internal sealed unsafe class SourceWatcher : IDisposable
{
    private const uint DirMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE
                                 | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;
    private readonly NodeFileSystem _fs;
    private readonly int _fd;
    private readonly Dictionary<int, Node> _dirs = [];
    private readonly Dictionary<Node, int> _watches = [];
    private readonly Thread _thread;
    /// <summary>Entry changes the mount makes itself, by (directory, name): their events need no invalidation
    /// (the kernel made the change and knows it), and one would drop a dentry the kernel still uses.</summary>
    private readonly Dictionary<(Node, string), (int Count, long Until)> _expected = [];
    private volatile bool _stopping;
    /// <summary>1 from just before the watcher reads a batch of events until it has handled them.</summary>
    private int _busy;

    public SourceWatcher(NodeFileSystem fs)
    {
        _fs = fs;
        _fd = InotifyInit();
        if (_fd < 0) throw new IOException($"inotify_init1: errno {-_fd}");
        _thread = new Thread(Run) { IsBackground = true, Name = "stackfs-source-watcher" };
        _thread.Start();
    }

    /// <summary>
    /// Returns true once every change made to the source before the call has been turned into its
    /// invalidations (the kernel queues inotify events in the changing call itself, so they are
    /// either unread or in the batch being handled), false on timeout. Until then a reply the daemon
    /// computed mid-change may still be cached: the kernel keeps the first of two concurrent GETATTR
    /// replies it applies, not the newest one, and only the invalidation for the change fixes that.
    /// </summary>
    public bool WaitIdle(TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (QueuedBytes(_fd) > 0 || Volatile.Read(ref _busy) != 0)
        {
            if (Environment.TickCount64 > deadline || _stopping) return false;
            Thread.Sleep(1);
        }
        return true;
    }

    /// <summary>Invalidations sent so far (for tests and the curious).</summary>
    public long Invalidations => Interlocked.Read(ref _invalidations);
    private long _invalidations;

    /// <summary>Starts watching directory <paramref name="dir"/>, reached through <paramref name="fd"/> (any descriptor of it).</summary>
    public void Watch(Node dir, int fd)
    {
        var path = System.Text.Encoding.ASCII.GetBytes($"/proc/self/fd/{fd}\0");
        int wd;
        fixed (byte* p = path) wd = InotifyAddWatch(_fd, p, DirMask);
        if (wd < 0) return;   // ENOSPC (fs.inotify.max_user_watches): that directory is then cached for its timeouts only
        lock (_dirs)
        {
            _dirs[wd] = dir;
            _watches[dir] = wd;
        }
    }

    /// <summary>The mount is about to create, remove or move <paramref name="name"/> in <paramref name="dir"/>.
    /// Expectations lapse after a second, so one whose event never comes (a failed call) cannot hide a later change for long.</summary>
    public void Expect(Node dir, ReadOnlySpan<byte> name)
    {
        var key = (dir, System.Text.Encoding.Latin1.GetString(name));
        var until = Environment.TickCount64 + 1000;
        lock (_expected) _expected[key] = (_expected.GetValueOrDefault(key).Count + 1, until);
    }

    private bool WasExpected(Node dir, ReadOnlySpan<byte> name)
    {
        lock (_expected)
        {
            if (_expected.Count == 0) return false;
            var key = (dir, System.Text.Encoding.Latin1.GetString(name));
            if (!_expected.TryGetValue(key, out var e)) return false;
            if (e.Count > 1) _expected[key] = (e.Count - 1, e.Until);
            else _expected.Remove(key);
            return e.Until >= Environment.TickCount64;
        }
    }

    public void Unwatch(Node dir)
    {
        lock (_dirs)
        {
            if (!_watches.Remove(dir, out var wd)) return;
            _dirs.Remove(wd);
            InotifyRmWatch(_fd, wd);
        }
    }

    private void Run()
    {
        const int Size = 64 * 1024;
        var buf = (byte*)NativeMemory.Alloc(Size);
        try
        {
            while (!_stopping)
            {
                if (PollIn(_fd, 200) <= 0) continue;
                Volatile.Write(ref _busy, 1);
                var n = Read(_fd, buf, Size);
                if (n <= 0) { Volatile.Write(ref _busy, 0); continue; }
                for (long off = 0; off + 16 <= n; )
                {
                    // struct inotify_event { int wd; u32 mask; u32 cookie; u32 len; char name[len]; }
                    var wd = *(int*)(buf + off);
                    var mask = *(uint*)(buf + off + 4);
                    var len = *(uint*)(buf + off + 12);
                    var name = new ReadOnlySpan<byte>(buf + off + 16, (int)len);
                    var end = name.IndexOf((byte)0);
                    Handle(wd, mask, end < 0 ? name : name[..end]);
                    off += 16 + len;
                }
                Volatile.Write(ref _busy, 0);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A watcher that dies leaves caching to its timeouts; it must not take the daemon down.
            Console.Error.WriteLine($"stackfs: source watcher stopped: {e.Message}");
        }
        finally { NativeMemory.Free(buf); }
    }

    private void Handle(int wd, uint mask, ReadOnlySpan<byte> name)
    {
        if (_fs.Session is not { } session) return;
        if ((mask & IN_Q_OVERFLOW) != 0)
        {
            // Events were lost: forget every name and attribute the kernel caches under a watched directory.
            List<Node> all;
            lock (_dirs) all = [.. _watches.Keys];
            foreach (var dir in all)
            {
                foreach (var known in _fs.KnownNames(dir)) Count(session.NotifyInvalEntry(dir.NodeId, known));
                Count(session.NotifyInvalInode(dir.NodeId));
            }
            return;
        }
        Node? parent;
        lock (_dirs)
        {
            if (!_dirs.TryGetValue(wd, out parent)) return;
            if ((mask & IN_IGNORED) != 0) { _dirs.Remove(wd); _watches.Remove(parent); return; }
        }
        if (name.IsEmpty)
        {
            if ((mask & (IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)) != 0) Count(session.NotifyInvalInode(parent.NodeId, -1));
            return;
        }
        if ((mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) != 0)
        {
            if (WasExpected(parent, name)) return;
            // A name that appeared and that the kernel has already looked up to the very inode it now
            // names is a true entry: dropping it would evict the inode and its pages for nothing.
            var appeared = (mask & (IN_CREATE | IN_MOVED_TO)) != 0;
            if (!(appeared && _fs.ChildOf(parent, name) is { } known && parent is StackNode dir && dir.Names(name, known)))
                Count(session.NotifyInvalEntry(parent.NodeId, name));
            Count(session.NotifyInvalInode(parent.NodeId));   // its mtime, and the cached listing
        }
        if ((mask & (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO)) != 0 && _fs.ChildOf(parent, name) is { } child)
            Count(session.NotifyInvalInode(child.NodeId, -1));
    }

    /// <summary>ENOENT (the kernel had nothing cached) is the common answer and fine.</summary>
    private void Count(int result)
    {
        if (result == 0) Interlocked.Increment(ref _invalidations);
    }

    public void Dispose()
    {
        _stopping = true;
        _thread.Join(TimeSpan.FromSeconds(2));
        Close(_fd);
    }
}
