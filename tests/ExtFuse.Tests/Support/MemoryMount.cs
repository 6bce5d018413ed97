using ExtFuse.Mounting;
using ExtFuse.Samples.Memory;
using ExtFuse.Session;

namespace ExtFuse.Tests.Support;

/// <summary>
/// MemoryFs mounted in this process for a test class. The tests act as clients from xunit's
/// threads, never from the session's reader threads. Dispose unmounts, whatever happened.
/// </summary>
public sealed class MemoryMount : IDisposable
{
    private int _dirs;

    public MemoryMount() : this(new MemoryFileSystem()) { }

    internal MemoryMount(RawFileSystem fs, MountOptions? options = null)
    {
        Fs = fs;
        Root = Directory.CreateTempSubdirectory("extfuse-test-").FullName;
        options ??= new MountOptions { FsName = "extfuse-test", Subtype = "memory", DefaultPermissions = true, AllowOther = true };
        Session = new FuseSession(fs, options.Session with { Threads = 4 });
        var mount = FuseMount.Mount(Root, options);
        try
        {
            Session.Start(mount);
            if (!Session.Initialized.Wait(TimeSpan.FromSeconds(20))) throw new TimeoutException("no INIT from the kernel");
        }
        catch
        {
            mount.Dispose();
            throw;
        }
    }

    public RawFileSystem Fs { get; }
    public string Root { get; }
    public FuseSession Session { get; }

    /// <summary>A fresh directory inside the mount for one test.</summary>
    public string NewDir(string hint = "t")
    {
        var p = Path.Combine(Root, $"{hint}-{Interlocked.Increment(ref _dirs)}");
        Directory.CreateDirectory(p);
        return p;
    }

    public void Dispose()
    {
        Session.Dispose();
        try { Directory.Delete(Root); } catch (IOException) { }
    }
}
