using System.Diagnostics;
using System.Runtime.InteropServices;
using ExtFuse.Mounting;
using ExtFuse.Policy;
using ExtFuse.Session;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ExtFuse.Sandbox;

/// <summary>How to run a command in a sandboxed view of a directory.</summary>
public sealed record SandboxOptions
{
    /// <summary>The directory the command sees, through the policy.</summary>
    public required string Source { get; init; }
    /// <summary>Where the command sees it (default: the directory's own path, which it then hides).</summary>
    public string? MountPoint { get; init; }
    /// <summary>The policy file (its rules follow the file system's own).</summary>
    public required string PolicyFile { get; init; }
    /// <summary>Where denials are recorded, one JSON object per line.</summary>
    public required string AuditLog { get; init; }
    /// <summary>Who the command runs as (default nobody).</summary>
    public uint Uid { get; init; } = 65534;
    public uint Gid { get; init; } = 65534;
    /// <summary>
    /// Confine the command with Landlock to the view, /dev, the system directories (read-only) and
    /// <see cref="Allow"/>. Without it the command still sees the rest of the machine as its uid may,
    /// which for a source under a directory it can reach includes the source itself through
    /// /proc/PID/root of another process of its uid.
    /// </summary>
    public bool Landlock { get; init; }
    /// <summary>More paths the command may use in every way under Landlock.</summary>
    public IReadOnlyList<string> Allow { get; init; } = [];
    public MountOptions Mount { get; init; } = new();
}

/// <summary>
/// `extfuse sandbox`: runs a command over a file system view with access control. A dedicated
/// thread unshares a mount namespace, makes every mount in it private and mounts the view there at
/// the mount point, so nothing appears in the caller's namespace; the session's readers run in the
/// caller's. The thread then confines itself with Landlock (if asked) and starts util-linux's
/// setpriv, which drops the uid, gid, groups and every capability, sets no_new_privs and runs the
/// command: the command inherits the namespace, the Landlock domain and nothing else. When the
/// command ends, anything it left running in the namespace is killed, so the namespace and the
/// mount in it end with it, however the command ended.
/// </summary>
public sealed class SandboxLauncher : IDisposable
{
    /// <summary>System directories a Landlock-confined command may read and execute.</summary>
    public static readonly string[] SystemPaths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc", "/sys"];

    private readonly RawFileSystem _fs;
    private readonly SandboxOptions _options;
    private readonly ILogger _log;
    private FuseSession? _session;
    private FuseMount? _mount;
    private Process? _child;
    private string? _namespace;
    private ControlSocket? _control;

    public SandboxLauncher(RawFileSystem fs, SandboxOptions options, ILoggerFactory? loggers = null)
    {
        _fs = fs;
        _options = options;
        _log = (ILogger?)loggers?.CreateLogger("extfuse.sandbox") ?? NullLogger.Instance;
        Loggers = loggers;
    }

    private ILoggerFactory? Loggers { get; }

    public FuseSession? Session => _session;
    public string MountPoint => Path.GetFullPath(_options.MountPoint ?? _options.Source);

    /// <summary>Mounts the view in a new namespace and starts the command there; the policy must load.</summary>
    public void Start(IReadOnlyList<string> command)
    {
        if (command.Count == 0) throw new ArgumentException("no command to run", nameof(command));
        if (Libc.GetEuid() != 0) throw new FuseException("extfuse sandbox needs root: it makes a mount namespace, mounts the view and drops to the sandbox's uid", Errno.EPERM);
        if (FindSetpriv() is not { } setpriv) throw new FuseException("setpriv (util-linux) is not installed: apt-get install util-linux", Errno.ENOENT);
        if (!Directory.Exists(_options.Source)) throw new FuseException($"the source {_options.Source} is not a directory", Errno.ENOTDIR);
        if (!Directory.Exists(MountPoint)) throw new FuseException($"the mount point {MountPoint} is not a directory", Errno.ENOTDIR);
        // The policy is read here, so a bad one fails before anything is mounted.
        // Enforcement is in place before the command starts; counting requests in the kernel can start a moment later.
        _session = new FuseSession(_fs, _options.Mount.Session with { PolicyFile = _options.PolicyFile, AuditLog = _options.AuditLog, StatisticsInBackground = true },
            Loggers?.CreateLogger<FuseSession>());

        var mounted = new TaskCompletionSource<FuseMount>(TaskCreationOptions.RunContinuationsAsynchronously);
        var ready = new ManualResetEventSlim();
        var started = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        var launcher = new Thread(() =>
        {
            try
            {
                EnterNamespace();
                mounted.SetResult(FuseMount.Mount(MountPoint, _options.Mount with { AllowOther = true }, _log));
                ready.Wait();   // the main thread starts the session's readers, outside this namespace
                if (!_session.Initialized.Wait(TimeSpan.FromSeconds(20))) throw new FuseException("the kernel sent no INIT within 20 s", Errno.ETIMEDOUT);
                _namespace = NamespaceId("thread-self");
                if (_options.Landlock)
                    Landlock.RestrictThread([MountPoint, "/dev", .. _options.Allow], SystemPaths);
                started.SetResult(Process.Start(ChildStart(setpriv, command))!);
            }
            catch (Exception e)
            {
                if (!mounted.Task.IsCompleted) mounted.SetException(e);
                started.TrySetException(e);
            }
        }) { Name = "extfuse-sandbox", IsBackground = true };
        launcher.Start();
        try
        {
            _mount = mounted.Task.GetAwaiter().GetResult();
            _session.Start(_mount);
            ready.Set();
            var child = started.Task.GetAwaiter().GetResult();
            lock (_signalGate)
            {
                _child = child;
                if (_pendingSignal != 0) kill(child.Id, _pendingSignal);
            }
        }
        catch
        {
            ready.Set();
            _session.Dispose();
            throw;
        }
        launcher.Join();
        _log.LogInformation("sandbox: {Command} runs as uid {Uid} (pid {Pid}) over {Source} at {MountPoint}, connection {Id}",
            command[0], _options.Uid, _child.Id, _options.Source, MountPoint, _mount.ConnectionId);
        try { _control = ControlSocket.Serve(_session); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        { _log.LogWarning("no control socket ({Error}): extfuse policy reload cannot reach this sandbox", e.Message); }
    }

    /// <summary>This thread gets a mount namespace of its own, in which every mount is private (nothing propagates back).</summary>
    private static void EnterNamespace()
    {
        const int CloneNewNs = 0x00020000;
        const ulong MsRec = 16384, MsPrivate = 1 << 18;
        if (unshare(CloneNewNs) != 0) throw new FuseException($"unshare(CLONE_NEWNS): {Errno.Describe(Marshal.GetLastPInvokeError())}", Marshal.GetLastPInvokeError());
        if (mount("none", "/", null, MsRec | MsPrivate, null) != 0)
            throw new FuseException($"making / private in the sandbox's namespace: {Errno.Describe(Marshal.GetLastPInvokeError())}", Marshal.GetLastPInvokeError());
    }

    private ProcessStartInfo ChildStart(string setpriv, IReadOnlyList<string> command)
    {
        var psi = new ProcessStartInfo(setpriv) { UseShellExecute = false, WorkingDirectory = WorkingDirectory() };
        foreach (var a in new[] { $"--reuid={_options.Uid}", $"--regid={_options.Gid}", "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--" })
            psi.ArgumentList.Add(a);
        foreach (var a in command) psi.ArgumentList.Add(a);
        return psi;
    }

    /// <summary>The caller's directory, but inside the view when it was inside the source (the source itself is not the command's to see).</summary>
    private string WorkingDirectory()
    {
        var cwd = Environment.CurrentDirectory;
        var source = Path.GetFullPath(_options.Source);
        var rel = Path.GetRelativePath(source, cwd);
        if (rel == ".") return MountPoint;
        return rel.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(rel) ? (_options.Landlock ? MountPoint : cwd) : Path.Combine(MountPoint, rel);
    }

    /// <summary>Waits for the command; its exit status (128 + signal when a signal ended it).</summary>
    public int WaitForExit()
    {
        var child = _child ?? throw new InvalidOperationException("not started");
        child.WaitForExit();
        return child.ExitCode;
    }

    /// <summary>Sends a signal to the command (the launcher forwards SIGINT and SIGTERM); one that comes before the command exists is delivered when it does.</summary>
    public void Signal(int signal)
    {
        lock (_signalGate)
        {
            if (_child is null) { _pendingSignal = signal; return; }
        }
        if (!_child.HasExited) kill(_child.Id, signal);
    }

    private readonly object _signalGate = new();
    private int _pendingSignal;

    /// <summary>
    /// After the command: kills what it left in the namespace, which ends the namespace and its
    /// mount, and waits for the session to end (aborting the connection if it will not).
    /// </summary>
    public void Dispose()
    {
        _control?.Dispose();
        if (_child is { HasExited: false } c)
        {
            kill(c.Id, 9);
            c.WaitForExit();
        }
        if (_namespace is not null)
        {
            for (var round = 0; round < 50 && KillNamespace(_namespace) > 0; round++) Thread.Sleep(20);
        }
        if (_session is { } s)
        {
            if (_mount is not null && !s.Completion.Wait(TimeSpan.FromSeconds(5))) _mount.Abort();
            s.Completion.Wait(TimeSpan.FromSeconds(5));
            _mount?.Dispose();
        }
        _child?.Dispose();
    }

    /// <summary>Kills every process in the mount namespace <paramref name="ns"/>; how many there were.</summary>
    private static int KillNamespace(string ns)
    {
        var killed = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId) continue;
            if (NamespaceId(pid.ToString()) != ns) continue;
            kill(pid, 9);
            killed++;
        }
        return killed;
    }

    private static string? NamespaceId(string proc)
    {
        try { return new FileInfo($"/proc/{proc}/ns/mnt").LinkTarget; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static string? FindSetpriv() =>
        new[] { "/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv" }.FirstOrDefault(File.Exists);

    [DllImport("libc", SetLastError = true)] private static extern int unshare(int flags);
    [DllImport("libc", SetLastError = true)]
    private static extern int mount([MarshalAs(UnmanagedType.LPUTF8Str)] string source, [MarshalAs(UnmanagedType.LPUTF8Str)] string target,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string? fstype, ulong flags, [MarshalAs(UnmanagedType.LPUTF8Str)] string? data);
    [DllImport("libc", SetLastError = true)] private static extern int kill(int pid, int signal);
}
