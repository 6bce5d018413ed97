using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ExtFuse.Mounting;

/// <summary>
/// A mounted FUSE connection: the /dev/fuse descriptor, where it is mounted and how to take it
/// down. As root it mounts with mount(2); otherwise (or with auto_unmount / fusermount) through
/// fusermount3, which passes the descriptor back over a socket (SCM_RIGHTS), as libfuse does.
/// </summary>
public sealed unsafe class FuseMount : IDisposable
{
    private readonly ILogger _log;
    private int _fd;
    private int _commFd = -1;          // kept open with auto_unmount: fusermount3 unmounts when it closes
    private Process? _fusermount;
    private int _unmounted;

    private FuseMount(string mountPoint, int fd, bool viaFusermount, MountOptions options, ILogger log)
    {
        MountPoint = mountPoint; _fd = fd; ViaFusermount = viaFusermount; Options = options; _log = log;
    }

    public string MountPoint { get; }
    public int Fd => _fd;
    public bool ViaFusermount { get; }
    public MountOptions Options { get; }
    /// <summary>The kernel's connection number (the mount's device minor): /sys/fs/fuse/connections/N.</summary>
    public uint ConnectionId { get; private set; }

    public static FuseMount Mount(string mountPoint, MountOptions options, ILogger? logger = null)
    {
        var log = logger ?? NullLogger.Instance;
        var path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(mountPoint));
        CheckMountPoint(path);
        var useFusermount = options.AutoUnmount || options.ForceFusermount || Libc.GetEuid() != 0;
        var m = useFusermount ? MountWithFusermount(path, options, log) : MountWithSyscall(path, options, log);
        var entry = MountTable.At(path);
        if (entry is null || !MountTable.IsFuse(entry))
        {
            m.Dispose();
            throw new FuseException($"mounting {path} reported success, but no FUSE mount is there", Errno.EIO);
        }
        m.ConnectionId = entry.Minor;
        log.LogDebug("mounted {MountPoint} ({FsType}, connection {Id}) via {How}", path, entry.FsType, entry.Minor,
            useFusermount ? "fusermount3" : "mount(2)");
        return m;
    }

    private static void CheckMountPoint(string path)
    {
        if (MountTable.At(path) is { } existing && MountTable.IsFuse(existing))
            throw new FuseException(
                $"{path} is already mounted ({existing.FsType} from {existing.Source}); unmount it first (umount {path} or fusermount3 -u {path})",
                Errno.EBUSY);
        if (File.Exists(path)) throw new FuseException($"mount point {path} is not a directory", Errno.ENOTDIR);
        if (!Directory.Exists(path)) throw new FuseException($"mount point {path} does not exist (create it with mkdir -p {path})", Errno.ENOENT);
    }

    private static FuseMount MountWithSyscall(string path, MountOptions o, ILogger log)
    {
        var fd = Libc.Open("/dev/fuse", Libc.O_RDWR | Libc.O_CLOEXEC);
        if (fd < 0)
        {
            var err = Libc.LastErrno;
            throw new FuseException(err == Errno.ENOENT
                ? "/dev/fuse does not exist: load the fuse module (modprobe fuse)"
                : $"cannot open /dev/fuse: {Errno.Describe(err)}", err);
        }
        var type = o.Subtype is null ? "fuse" : $"fuse.{o.Subtype}";
        var data = o.KernelData(fd, 0x4000 /* S_IFDIR */, Libc.GetUid(), Libc.GetGid());
        if (Libc.Mount(o.FsName, path, type, o.MountFlags, data) != 0)
        {
            var err = Libc.LastErrno;
            if (err == Errno.ENODEV && o.Subtype is not null && Libc.Mount(o.FsName, path, "fuse", o.MountFlags, data) == 0)
                return new FuseMount(path, fd, false, o, log);
            Libc.Close(fd);
            throw new FuseException(err == Errno.EPERM
                ? $"mount({path}) was refused: mounting needs root (CAP_SYS_ADMIN), or run as a normal user with fusermount3"
                : $"mount({path}) failed: {Errno.Describe(err)}", err);
        }
        return new FuseMount(path, fd, false, o, log);
    }

    internal static string? FindFusermount()
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        foreach (var d in dirs)
        {
            var p = Path.Combine(d, "fusermount3");
            if (File.Exists(p)) return p;
        }
        return null;
    }

    private static FuseMount MountWithFusermount(string path, MountOptions o, ILogger log)
    {
        var fusermount = FindFusermount() ?? throw new FuseException(
            Libc.GetEuid() == 0
                ? "fusermount3 was not found on PATH, and auto_unmount/fusermount needs it: install the fuse3 package (apt-get install fuse3)"
                : "mounting as a normal user needs fusermount3, which was not found on PATH: install the fuse3 package (apt-get install fuse3), or run as root",
            Errno.ENOENT);
        var sv = stackalloc int[2];
        if (Libc.SocketPair(Libc.AF_UNIX, Libc.SOCK_STREAM, 0, sv) != 0)
            throw new FuseException($"socketpair failed: {Errno.Describe(Libc.LastErrno)}", Libc.LastErrno);
        int ours = sv[0], theirs = sv[1];
        Libc.Fcntl(ours, Libc.F_SETFD, Libc.FD_CLOEXEC); // fusermount3 must not hold our end, or auto_unmount never fires

        var psi = new ProcessStartInfo(fusermount) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-o");
        psi.ArgumentList.Add(o.FusermountOptions());
        psi.ArgumentList.Add("--");
        psi.ArgumentList.Add(path);
        psi.Environment["_FUSE_COMMFD"] = theirs.ToString();
        Process proc;
        try { proc = Process.Start(psi)!; }
        finally { Libc.Close(theirs); }

        var fd = ReceiveFd(ours);
        if (fd < 0)
        {
            proc.WaitForExit(10_000);
            var err = proc.StandardError.ReadToEnd().Trim();
            Libc.Close(ours);
            if (err.Contains("/dev/fuse") && err.Contains("Permission denied"))
                err += " (fusermount3 opens /dev/fuse with your rights: it must be mode 0666, as Debian's udev rules make it)";
            throw new FuseException($"fusermount3 could not mount {path}: {(err.Length > 0 ? err : $"exit status {proc.ExitCode}")}", Errno.EPERM);
        }
        Libc.Fcntl(fd, Libc.F_SETFD, Libc.FD_CLOEXEC);
        var m = new FuseMount(path, fd, true, o, log);
        if (o.AutoUnmount) { m._commFd = ours; m._fusermount = proc; } // it stays to watch us
        else
        {
            proc.WaitForExit(10_000);
            Libc.Close(ours);
        }
        return m;
    }

    private static int ReceiveFd(int sock)
    {
        byte data = 0;
        var control = stackalloc byte[64];
        var iov = new Libc.IoVec { Base = &data, Len = 1 };
        var msg = new Libc.MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = 64 };
        nint n;
        do n = Libc.RecvMsg(sock, &msg, 0); while (n < 0 && Libc.LastErrno == Errno.EINTR);
        if (n <= 0 || msg.ControlLen < (nuint)sizeof(Libc.CmsgHdr) + 4) return -1;
        var cmsg = (Libc.CmsgHdr*)control;
        if (cmsg->Level != Libc.SOL_SOCKET || cmsg->Type != Libc.SCM_RIGHTS) return -1;
        return *(int*)(control + sizeof(Libc.CmsgHdr));
    }

    /// <summary>
    /// Unmounts. Busy (files still open): detaches the mount and aborts the connection, so the
    /// session ends and the remaining users get ENOTCONN instead of hanging.
    /// </summary>
    public void Unmount()
    {
        if (Interlocked.Exchange(ref _unmounted, 1) != 0) return;
        if (!IsStillMounted()) return;
        if (ViaFusermount)
        {
            if (RunFusermount("-u", "-q", "--", MountPoint)) return;
            if (RunFusermount("-u", "-q", "-z", "--", MountPoint)) { Abort(); return; }
            _log.LogWarning("fusermount3 -u {MountPoint} failed; the mount may still be there", MountPoint);
            if (Libc.GetEuid() != 0) return;
        }
        if (Libc.Umount2(MountPoint, 0) == 0) return;
        var err = Libc.LastErrno;
        if (err == Errno.EBUSY && Libc.Umount2(MountPoint, Libc.MNT_DETACH) == 0)
        {
            _log.LogInformation("{MountPoint} was busy: detached it and aborted the connection", MountPoint);
            Abort();
            return;
        }
        if (err is not (Errno.EINVAL or Errno.ENOENT))
            _log.LogWarning("umount {MountPoint} failed: {Error}", MountPoint, Errno.Describe(err));
    }

    private bool IsStillMounted() => MountTable.At(MountPoint) is { } e && MountTable.IsFuse(e) && e.Minor == ConnectionId;

    private bool RunFusermount(params string[] args)
    {
        var exe = FindFusermount();
        if (exe is null) return false;
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        if (!p.WaitForExit(10_000)) { p.Kill(); return false; }
        return p.ExitCode == 0;
    }

    /// <summary>Aborts the connection through /sys/fs/fuse/connections/N/abort: every request fails, readers see ENODEV.</summary>
    public bool Abort() => AbortConnection(ConnectionId, _log);

    public static bool AbortConnection(uint connectionId, ILogger? log = null)
    {
        const string root = "/sys/fs/fuse/connections";
        var abort = $"{root}/{connectionId}/abort";
        if (!File.Exists(abort) && Libc.GetEuid() == 0 && Directory.Exists(root))
            Libc.Mount("fusectl", root, "fusectl", 0, ""); // not mounted by default on every system
        try
        {
            File.WriteAllText(abort, "1");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log?.LogWarning("cannot abort FUSE connection {Id} via {Path}: {Error}", connectionId, abort, e.Message);
            return false;
        }
    }

    public void Dispose()
    {
        Unmount();
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
        if (_commFd >= 0) { Libc.Close(_commFd); _commFd = -1; }
        if (_fusermount is { } p)
        {
            if (!p.WaitForExit(5_000)) p.Kill();
            p.Dispose();
        }
    }
}
