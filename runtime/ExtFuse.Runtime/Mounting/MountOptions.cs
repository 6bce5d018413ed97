using System.Globalization;
using ExtFuse.Session;

namespace ExtFuse.Mounting;

/// <summary>
/// Mount options in libfuse's -o syntax ("allow_other,fsname=x,max_write=131072"): kernel mount
/// options, mount flags, and session tuning in one list. Unknown options are an error, not ignored.
/// </summary>
public sealed record MountOptions
{
    public string FsName { get; init; } = "extfuse";
    public string? Subtype { get; init; }
    public bool AllowOther { get; init; }
    public bool DefaultPermissions { get; init; }
    public bool ReadOnly { get; init; }
    public bool NoSuid { get; init; } = true;
    public bool NoDev { get; init; } = true;
    public bool NoExec { get; init; }
    public bool NoAtime { get; init; }
    public bool Sync { get; init; }
    public bool DirSync { get; init; }
    public uint? MaxRead { get; init; }
    /// <summary>Mount through fusermount3 and have it unmount when this process dies, even by SIGKILL.</summary>
    public bool AutoUnmount { get; init; }
    /// <summary>Use fusermount3 even as root (as a normal user it is always used).</summary>
    public bool ForceFusermount { get; init; }
    public FuseSessionOptions Session { get; init; } = new();

    /// <summary>The help text for -o, kept next to the parser so the two cannot drift.</summary>
    public const string Help = """
          allow_other            let users other than the mounter access the file system
          default_permissions    let the kernel check permissions from the mode bits
          ro | rw                read-only / read-write (rw)
          nosuid | suid, nodev | dev, noexec | exec, noatime, sync, dirsync
                                 mount flags (nosuid,nodev by default)
          fsname=NAME            source name shown by mount and df (extfuse)
          subtype=NAME           file system type shown as fuse.NAME
          max_read=N             largest READ the kernel sends
          auto_unmount           unmount through fusermount3 when the daemon dies (even SIGKILL)
          fusermount             mount through fusermount3 even as root
          threads=N              reader threads, each with its own /dev/fuse clone (2..8 by CPU)
          max_write=N            largest WRITE (up to 1 MiB, default 1 MiB)
          max_readahead=N        kernel readahead limit (1 MiB)
          max_background=N       asynchronous requests in flight (64)
          congestion_threshold=N (48)
          writeback_cache        kernel write-back cache (writes are batched by the kernel)
          export_support         answer "." and ".." lookups (NFS export, open_by_handle_at)
          no_bpf                 no BPF: no in-kernel statistics, counters kept in the daemon
          io_uring               FUSE over io_uring (kernel 6.14+, fuse.enable_uring=Y); falls back
                                 to /dev/fuse with one warning where the kernel does not offer it
          io_uring_depth=N       requests in flight per io_uring queue, one queue per CPU (8)
          splice_read            answer READs of files backed by a descriptor with splice(2)
                                 instead of pread + writev (/dev/fuse transport)
          policy=FILE            access rules from a JSON policy file (after the file system's own);
                                 reload while mounted: SIGHUP, or extfuse policy reload MOUNTPOINT
          audit=FILE             append every denial to FILE, one JSON object per line
        """;

    /// <summary>Parses one or more -o arguments on top of these options.</summary>
    public MountOptions With(IEnumerable<string> optionLists)
    {
        var o = this;
        var s = Session;
        foreach (var list in optionLists)
        foreach (var raw in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = raw.IndexOf('=');
            var key = eq < 0 ? raw : raw[..eq];
            var value = eq < 0 ? null : raw[(eq + 1)..];
            switch (key)
            {
                case "allow_other": o = o with { AllowOther = true }; break;
                case "default_permissions": o = o with { DefaultPermissions = true }; break;
                case "ro": o = o with { ReadOnly = true }; break;
                case "rw": o = o with { ReadOnly = false }; break;
                case "nosuid": o = o with { NoSuid = true }; break;
                case "suid": o = o with { NoSuid = false }; break;
                case "nodev": o = o with { NoDev = true }; break;
                case "dev": o = o with { NoDev = false }; break;
                case "noexec": o = o with { NoExec = true }; break;
                case "exec": o = o with { NoExec = false }; break;
                case "noatime": o = o with { NoAtime = true }; break;
                case "atime": o = o with { NoAtime = false }; break;
                case "sync": o = o with { Sync = true }; break;
                case "async": o = o with { Sync = false }; break;
                case "dirsync": o = o with { DirSync = true }; break;
                case "fsname": o = o with { FsName = Text(key, value) }; break;
                case "subtype": o = o with { Subtype = Text(key, value) }; break;
                case "max_read": o = o with { MaxRead = Number(key, value, 4096, uint.MaxValue) }; break;
                case "auto_unmount": o = o with { AutoUnmount = true }; break;
                case "fusermount": o = o with { ForceFusermount = true }; break;
                case "threads": s = s with { Threads = (int)Number(key, value, 1, 64) }; break;
                case "max_write": s = s with { MaxWrite = Number(key, value, 4096, 1 << 20) }; break;
                case "max_readahead": s = s with { MaxReadahead = Number(key, value, 0, 1 << 30) }; break;
                case "max_background": s = s with { MaxBackground = (ushort)Number(key, value, 1, ushort.MaxValue) }; break;
                case "congestion_threshold": s = s with { CongestionThreshold = (ushort)Number(key, value, 1, ushort.MaxValue) }; break;
                case "writeback_cache": s = s with { WritebackCache = true }; break;
                case "export_support": s = s with { ExportSupport = true }; break;
                case "no_bpf": s = s with { Bpf = false }; break;
                case "io_uring": s = s with { IoUring = true }; break;
                case "splice_read": s = s with { SpliceRead = true }; break;
                case "policy": s = s with { PolicyFile = Text(key, value) }; break;
                case "audit": s = s with { AuditLog = Text(key, value) }; break;
                case "io_uring_depth": s = s with { IoUringQueueDepth = (int)Number(key, value, 1, 512) }; break;
                default: throw new FuseException($"unknown mount option '{raw}' (extfuse --help lists them)", Errno.EINVAL);
            }
        }
        return o with { Session = s };
    }

    private static string Text(string key, string? value)
    {
        if (string.IsNullOrEmpty(value)) throw new FuseException($"mount option '{key}' needs a value: {key}=...", Errno.EINVAL);
        if (value.AsSpan().IndexOfAny(",\0\n ") >= 0) throw new FuseException($"mount option '{key}={value}' may not contain commas, spaces or NULs", Errno.EINVAL);
        return value;
    }

    private static uint Number(string key, string? value, uint min, uint max)
    {
        if (value is null || !uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            throw new FuseException($"mount option '{key}' needs a number: {key}=N", Errno.EINVAL);
        if (n < min || n > max) throw new FuseException($"mount option '{key}={n}' is out of range [{min}, {max}]", Errno.EINVAL);
        return n;
    }

    internal ulong MountFlags =>
        (ReadOnly ? Libc.MS_RDONLY : 0) | (NoSuid ? Libc.MS_NOSUID : 0) | (NoDev ? Libc.MS_NODEV : 0) |
        (NoExec ? Libc.MS_NOEXEC : 0) | (NoAtime ? Libc.MS_NOATIME : 0) | (Sync ? Libc.MS_SYNCHRONOUS : 0) |
        (DirSync ? Libc.MS_DIRSYNC : 0);

    /// <summary>The option string for fusermount3 -o (it turns these into mount(2) arguments itself).</summary>
    internal string FusermountOptions()
    {
        var parts = new List<string>
        {
            ReadOnly ? "ro" : "rw", NoSuid ? "nosuid" : "suid", NoDev ? "nodev" : "dev", NoExec ? "noexec" : "exec",
            $"fsname={FsName}",
        };
        if (NoAtime) parts.Add("noatime");
        if (Sync) parts.Add("sync");
        if (DirSync) parts.Add("dirsync");
        if (Subtype is not null) parts.Add($"subtype={Subtype}");
        if (AllowOther) parts.Add("allow_other");
        if (DefaultPermissions) parts.Add("default_permissions");
        if (MaxRead is { } m) parts.Add($"max_read={m}");
        if (AutoUnmount) parts.Add("auto_unmount");
        return string.Join(',', parts);
    }

    /// <summary>The data string for mount(2).</summary>
    internal string KernelData(int fd, uint rootMode, uint uid, uint gid)
    {
        var d = $"fd={fd},rootmode={Convert.ToString(rootMode, 8)},user_id={uid},group_id={gid}";
        if (AllowOther) d += ",allow_other";
        if (DefaultPermissions) d += ",default_permissions";
        if (MaxRead is { } m) d += $",max_read={m}";
        return d;
    }
}
