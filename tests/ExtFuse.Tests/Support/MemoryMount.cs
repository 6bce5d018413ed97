using ExtFuse.Mounting;
using ExtFuse.Nodes;
using ExtFuse.Samples.Memory;
using ExtFuse.Samples.Stack;
using ExtFuse.Session;

namespace ExtFuse.Tests.Support;

/// <summary>
/// A file system mounted in this process for a test class. The tests act as clients from xunit's
/// threads, never from the session's reader threads. Dispose unmounts, whatever happened.
/// </summary>
public abstract class TestMount : IDisposable
{
    private int _dirs;

    /// <param name="ioUring">Serve over FUSE over io_uring instead of /dev/fuse reads; the mount fails if the kernel does not take the ring.</param>
    protected TestMount(RawFileSystem fs, MountOptions? options = null, bool ioUring = false, bool spliceRead = false, bool writeback = false)
    {
        Fs = fs;
        Root = Directory.CreateTempSubdirectory("extfuse-test-").FullName;
        options ??= new MountOptions { FsName = "extfuse-test", Subtype = "test", DefaultPermissions = true, AllowOther = true };
        Session = new FuseSession(fs, options.Session with { Threads = 4, IoUring = ioUring, SpliceRead = spliceRead, WritebackCache = writeback });
        var mount = FuseMount.Mount(Root, options);
        try
        {
            Session.Start(mount);
            if (!Session.Initialized.Wait(TimeSpan.FromSeconds(20))) throw new TimeoutException("no INIT from the kernel");
            if (ioUring && Session.Transport != FuseTransport.IoUring)
                throw new InvalidOperationException("FUSE over io_uring was asked for but the kernel did not take the ring " +
                    "(scripts/setup.sh enables it: echo Y > /sys/module/fuse/parameters/enable_uring; kernel 6.14+)");
        }
        catch
        {
            Session.Dispose();
            mount.Dispose();
            try { Directory.Delete(Root); } catch (IOException) { }
            throw;
        }
    }

    public RawFileSystem Fs { get; }
    public string Root { get; }
    public FuseSession Session { get; }

    /// <summary>Nodes the file system holds for the kernel.</summary>
    public abstract int NodeCount();

    /// <summary>A fresh directory inside the mount for one test.</summary>
    public string NewDir(string hint = "t")
    {
        var p = Path.Combine(Root, $"{hint}-{Interlocked.Increment(ref _dirs)}");
        Directory.CreateDirectory(p);
        return p;
    }

    public virtual void Dispose()
    {
        Session.Dispose();
        try { Directory.Delete(Root); } catch (IOException) { }
    }
}

public sealed class MemoryMount : TestMount
{
    public MemoryMount() : base(new MemoryFileSystem()) { }
    internal MemoryMount(RawFileSystem fs, MountOptions? options = null, bool ioUring = false) : base(fs, options, ioUring) { }
    public override int NodeCount() => ((MemoryFileSystem)Fs).NodeCount;
}

/// <summary>MemoryFs served over FUSE over io_uring.</summary>
public sealed class UringMemoryMount() : TestMount(new MemoryFileSystem(), ioUring: true)
{
    public override int NodeCount() => ((MemoryFileSystem)Fs).NodeCount;
}

/// <summary>StackFs over a fresh source directory.</summary>
public class StackMount : TestMount
{
    public StackMount() : this(source => StackFileSystem.Open(source)) { }

    protected StackMount(int? pinnedLimit) : this(source => StackFileSystem.Open(source, pinnedLimit)) { }

    /// <summary>A StackFs made by <paramref name="open"/> over a fresh source directory (<paramref name="prepare"/> fills it before the mount).</summary>
    protected StackMount(Func<string, StackFileSystem> open, bool ioUring = false, bool spliceRead = false, bool writeback = false,
                         MountOptions? options = null, Action<string>? prepare = null)
        : this(Prepared(prepare), open, ioUring, spliceRead, writeback, options) { }

    private static string Prepared(Action<string>? prepare)
    {
        var source = Directory.CreateTempSubdirectory("extfuse-src-").FullName;
        prepare?.Invoke(source);
        return source;
    }

    private StackMount(string source, Func<string, StackFileSystem> open, bool ioUring, bool spliceRead, bool writeback, MountOptions? options)
        : base(open(source), options, ioUring: ioUring, spliceRead: spliceRead, writeback: writeback) => Source = source;

    public string Source { get; }
    public StackFileSystem Stack => (StackFileSystem)Fs;
    public override int NodeCount() => ((NodeFileSystem)Fs).NodeCount;

    /// <summary>The source-side path of a path inside the mount.</summary>
    public string InSource(string mounted) => Path.Combine(Source, Path.GetRelativePath(Root, mounted));

    public override void Dispose()
    {
        base.Dispose();
        Directory.Delete(Source, recursive: true);
    }
}

/// <summary>StackFs served over FUSE over io_uring.</summary>
public sealed class UringStackMount() : StackMount(source => StackFileSystem.Open(source), ioUring: true);

/// <summary>StackFs with long caching (60 s entries, attributes and negative entries) and kept page and listing caches: only invalidation keeps it true.</summary>
public sealed class CachedStackMount() : StackMount(source => new StackFileSystem(source)
{
    EntryTimeout = TimeSpan.FromSeconds(60), AttrTimeout = TimeSpan.FromSeconds(60), NegativeTimeout = TimeSpan.FromSeconds(60), KeepCaches = true,
});

/// <summary>StackFs with no descriptor budget: every node but the root is reached by file handle.</summary>
public sealed class HandleStackMount : StackMount
{
    public HandleStackMount() : base(pinnedLimit: 0)
    {
        if (Stack.PinnedLimit != 0)
        {
            Dispose();
            throw new InvalidOperationException("open_by_handle_at is not permitted here (it needs CAP_DAC_READ_SEARCH): StackFs cannot reach nodes by file handle");
        }
    }
}
