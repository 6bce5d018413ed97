using System.Runtime.InteropServices;
using ExtFuse;
using ExtFuse.Bpf;
using ExtFuse.Mounting;
using ExtFuse.Sandbox;
using ExtFuse.Samples.Guarded;
using ExtFuse.Samples.Memory;
using ExtFuse.Samples.Stack;
using ExtFuse.Session;
using Microsoft.Extensions.Logging;

namespace ExtFuse.Cli;

public static class Program
{
    private const string Usage = """
        extfuse - FUSE file systems in .NET, served straight from /dev/fuse

        Usage:
          extfuse mount memory MOUNTPOINT [-o OPTIONS] [-v]
              Mount an empty in-memory file system at MOUNTPOINT (an existing, empty
              directory) and serve it in the foreground until Ctrl-C, SIGTERM or
              `umount MOUNTPOINT`. Everything written there is gone after unmount.

          extfuse mount guarded MOUNTPOINT [-o OPTIONS] [-v]
              Like memory, but only root and uids 1000-1999 may change anything (rules
              written as [Check] methods, also compiled to BPF). Use -o allow_other.

          extfuse mount stack --source DIR MOUNTPOINT [--cache SECONDS] [--passthrough GLOB] [-o OPTIONS] [-v]
              Mount a loopback view of DIR at MOUNTPOINT: every operation is passed to
              DIR. As root with -o allow_other, files are created as the calling user.
              --cache lets the kernel cache entries, attributes, negative lookups,
              file pages and listings for SECONDS (default: 1 s entries and
              attributes, nothing else); changes made in DIR behind the mount's back
              are invalidated as they happen (inotify). --passthrough has the kernel
              read and write files matching GLOB ("**" for all) straight from DIR
              (FUSE passthrough; needs root).

              With -o policy=FILE the mount also follows a policy file's rules (JSON,
              policy.schema.json); SIGHUP or `extfuse policy reload MOUNTPOINT` reads
              it again while mounted. -o audit=FILE records every denial there.

          extfuse sandbox --policy FILE --source DIR [--mount PATH] [--uid N] [--gid N]
                          [--landlock] [--allow PATH]... [--audit FILE] [--cache SECONDS]
                          [-o OPTIONS] [-v] -- COMMAND [ARGS...]
              Run COMMAND over a sandboxed view of DIR: a new mount namespace where PATH
              (default: DIR itself, which COMMAND then cannot reach) shows DIR through
              the policy; COMMAND runs as uid/gid N (default 65534, nobody) with no
              capabilities and no_new_privs; --landlock also confines it to PATH, /dev,
              the system directories (read-only) and each --allow PATH. Every
              denial goes to the audit log (default /tmp/extfuse-sandbox-PID.audit.jsonl)
              and a summary is printed at the end. Exit status: COMMAND's (128 + signal
              when a signal ended it); nothing stays mounted, however COMMAND ended.
              Needs root. SIGHUP reloads the policy; SIGINT and SIGTERM go to COMMAND.

          extfuse policy check FILE
              Read a policy file and print its rules in order, or the first mistake
              with its line and column. Exit status 0 when it is valid, 1 when not.

          extfuse policy reload MOUNTPOINT | --connection N
              Have the daemon serving the mount read its policy file again (open files
              stay open; new requests follow the new rules). Prints the daemon's
              answer; exit status 1 when the file did not load (the old rules stay).

          extfuse fsx [--seed N] [--ops N | --long] DIR NATIVE_DIR
              Model-check a mounted directory: apply the same seeded random operations
              (create, write, truncate, rename, link, unlink, mkdir, readdir, xattrs,
              fallocate, mmap writes) to DIR and to a native NATIVE_DIR, compare every
              result and the final trees; on a mismatch print the seed and the shortest
              failing prefix. Exit status 0 when they agree, 1 when not.

          extfuse verify PATH
              Load every program of a built .bpf.o (or of every .bpf.o in a build's
              output directory) into the kernel verifier, each on its own, and print
              one line per program: accepted with its instruction count and the
              instructions the verifier walked, or rejected with the verifier's reason
              and the C# line it stopped at, or skipped when this kernel cannot load
              its type at all (ExtFUSE programs; LSM where the kernel refuses it).
              Exit status 0 when none is rejected, 1 when one is. Needs root (CAP_BPF)
              on most kernels.

          extfuse caps
              Probe what the running kernel can do for the fast path, each by trying
              it: bpf(2), bpffs, BTF, syscall programs with test_run, BPF LSM,
              trampolines, tp_btf on the FUSE tracepoints (by loading and attaching a
              no-op program), and FUSE passthrough and io_uring (by mounting an empty
              file system for a moment and reading what the kernel offers at INIT).
              One line per feature; exit status 0.

          extfuse stats MOUNTPOINT|--connection N [--seconds N] [--slow MS]
              Print, per opcode, the FUSE requests the kernel sent to the file system
              mounted at MOUNTPOINT: requests, requests per second, mean latency and
              the 50th and 99th percentile (from a log2 histogram), counted by BPF
              programs on the fuse_request_send/end tracepoints. An ExtFuse.NET daemon
              counts from its mount (and pins the counts under /sys/fs/bpf/extfuse):
              then the totals since mount are printed at once, with its fast-path
              answers and the refusals of each rule. For any other FUSE file system,
              or with --seconds, the requests of the next N seconds (default 5).
              --slow MS also prints each request slower than MS milliseconds as it
              completes (events from a BPF ring buffer). Needs root and tp_btf
              (extfuse caps). Where the kernel cannot count (no tp_btf), the daemon's
              own counts of each rule's refusals are printed (from its control socket).

          extfuse top MOUNTPOINT
              The same, live: totals and the rates of the last second, refreshed
              every second until Ctrl-C.

          extfuse --help        this text

        Examples:
          mkdir -p /tmp/mem && extfuse mount memory /tmp/mem
          extfuse mount stack --source /srv/data /mnt/data -o allow_other
          extfuse mount memory /tmp/mem -o allow_other,fsname=scratch -v

        Options:
          -o OPTIONS   comma-separated mount options, as with mount(8) and libfuse:
        {0}
          -v           log more (-v: debug, -vv: every request)

        As root the file system is mounted with mount(2); as a normal user through
        fusermount3 (Debian package fuse3). Both file systems mount with
        default_permissions, so the kernel checks permissions from the mode bits.
        Exit status: 0 after a clean unmount, 1 on errors, 2 on bad usage.
        """;

    public static int Main(string[] args)
    {
        try { return Run(args); }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"extfuse: {e.Message}");
            Console.Error.WriteLine("Try 'extfuse --help'.");
            return 2;
        }
        catch (FuseException e)
        {
            Console.Error.WriteLine($"extfuse: {e.Message}");
            return 1;
        }
        catch (ExtFuse.Policy.PolicyException e)
        {
            Console.Error.WriteLine($"extfuse: {e.Message}");
            return 1;
        }
    }

    private sealed class UsageException(string message) : Exception(message);

    /// <summary>Set by SIGINT or SIGTERM (which then no longer end the process), or by <see cref="ManualResetEventSlim.Set()"/>.</summary>
    private sealed class StopOnSignal : ManualResetEventSlim
    {
        private readonly PosixSignalRegistration _sigint, _sigterm;

        public StopOnSignal()
        {
            _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        }

        private void OnSignal(PosixSignalContext c) { c.Cancel = true; Set(); }

        protected override void Dispose(bool disposing)
        {
            if (disposing) { _sigint.Dispose(); _sigterm.Dispose(); }
            base.Dispose(disposing);
        }
    }

    private static int Run(string[] args)
    {
        if (args.Length == 0 || args is ["--help" or "-h" or "help", ..])
        {
            Console.WriteLine(string.Format(Usage, MountOptions.Help.TrimEnd()));
            return args.Length == 0 ? 2 : 0;
        }
        return args[0] switch
        {
            "mount" => Mount(args[1..]),
            "sandbox" => SandboxCommand(args[1..]),
            "policy" => PolicyCommand(args[1..]),
            "fsx" => Fsx(args[1..]),
            "verify" => Verify(args[1..]),
            "caps" => Caps(args[1..]),
            "stats" => Stats(args[1..], live: false),
            "top" => Stats(args[1..], live: true),
            _ => throw new UsageException($"unknown command '{args[0]}'"),
        };
    }

    private static int Mount(string[] args)
    {
        var positional = new List<string>();
        var optionLists = new List<string>();
        var verbosity = 0;
        string? source = null, passthrough = null;
        double? cache = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "-o":
                    if (++i >= args.Length) throw new UsageException("-o needs a list of options");
                    optionLists.Add(args[i]);
                    break;
                case "-v": verbosity++; break;
                case "--source":
                    if (++i >= args.Length) throw new UsageException("--source needs a directory");
                    source = args[i];
                    break;
                case "--cache":
                    if (++i >= args.Length || !double.TryParse(args[i], System.Globalization.CultureInfo.InvariantCulture, out var c) || c < 0 || c > 1e6)
                        throw new UsageException("--cache needs a number of seconds (0 to 1000000)");
                    cache = c;
                    break;
                case "--passthrough":
                    if (++i >= args.Length) throw new UsageException("--passthrough needs a glob (\"**\" for every file)");
                    passthrough = args[i];
                    break;
                case "-vv": verbosity += 2; break;
                case "--help" or "-h":
                    Console.WriteLine(string.Format(Usage, MountOptions.Help.TrimEnd()));
                    return 0;
                default:
                    if (args[i].StartsWith("-o", StringComparison.Ordinal) && args[i].Length > 2) optionLists.Add(args[i][2..]);
                    else if (args[i].StartsWith('-')) throw new UsageException($"unknown option '{args[i]}'");
                    else positional.Add(args[i]);
                    break;
            }
        }
        if (positional.Count != 2) throw new UsageException("expected: extfuse mount memory MOUNTPOINT, or extfuse mount stack --source DIR MOUNTPOINT");
        var (kind, mountPoint) = (positional[0], positional[1]);
        if (kind == "stack" && source is null) throw new UsageException("the stack file system needs --source DIR");
        if (kind != "stack" && (source ?? passthrough ?? (object?)cache) is not null) throw new UsageException($"--source, --cache and --passthrough are for the stack file system, not '{kind}'");
        if (passthrough is not null && ExtFuse.Declarative.Glob.Validate(passthrough) is { } globProblem) throw new UsageException($"bad --passthrough glob '{passthrough}': {globProblem}");
        RawFileSystem fs = kind switch
        {
            "memory" => new MemoryFileSystem(ownerUid: Libc_GetUid(), ownerGid: Libc_GetGid()),
            "stack" => cache is null && passthrough is null ? StackFileSystem.Open(source!) : new StackFileSystem(source!)
            {
                EntryTimeout = TimeSpan.FromSeconds(cache ?? 1), AttrTimeout = TimeSpan.FromSeconds(cache ?? 1),
                NegativeTimeout = TimeSpan.FromSeconds(cache ?? 0), KeepCaches = cache > 0, PassthroughPath = passthrough,
            },
            "guarded" => new GuardedFileSystem(Libc_GetUid(), Libc_GetGid()),
            _ => throw new UsageException($"unknown file system '{kind}' (available: memory, guarded, stack)"),
        };
        var options = new MountOptions { FsName = kind, Subtype = kind, DefaultPermissions = true }.With(optionLists);

        using var loggerFactory = LoggerFactory.Create(b => b
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
            .SetMinimumLevel(verbosity switch { 0 => LogLevel.Information, 1 => LogLevel.Debug, _ => LogLevel.Trace }));
        var log = loggerFactory.CreateLogger("extfuse");

        if (fs is StackFileSystem stack)
            log.LogInformation(stack.PinnedLimit == int.MaxValue
                ? "every node holds a descriptor (no CAP_DAC_READ_SEARCH for file handles); descriptor limit {Limit}"
                : "up to {Pinned} nodes hold a descriptor, the rest are reopened by file handle; descriptor limit {Limit}",
                stack.PinnedLimit, StackFileSystem.DescriptorLimit);
        var session = new FuseSession(fs, options.Session, loggerFactory.CreateLogger<FuseSession>());
        var mount = FuseMount.Mount(mountPoint, options, log);
        session.Start(mount);

        using var stop = new StopOnSignal();
        session.Completion.ContinueWith(_ => stop.Set());
        using var reload = ReloadOnHangup(session, log);
        using var control = ServeControl(session, log);

        if (!session.Initialized.Wait(TimeSpan.FromSeconds(30)))
            log.LogWarning("the kernel has not sent INIT after 30 s; still waiting");
        if (session.Initialized.IsCompletedSuccessfully)
            Console.Out.WriteLine($"extfuse: {kind} file system mounted at {mount.MountPoint} (FUSE 7.{session.ProtocolMinor}, " +
                                  $"connection {mount.ConnectionId}); Ctrl-C to unmount");
        Console.Out.Flush();
        stop.Wait();

        var external = session.Completion.IsCompleted;
        session.Dispose();
        Console.Out.WriteLine(external ? $"extfuse: {mount.MountPoint} was unmounted" : $"extfuse: unmounted {mount.MountPoint}");
        return session.Initialized.IsCompletedSuccessfully ? 0 : 1;
    }

    /// <summary>SIGHUP reads the policy file again; the outcome is logged.</summary>
    private static PosixSignalRegistration? ReloadOnHangup(FuseSession session, ILogger log)
    {
        if (session.PolicyFile is null) return null;
        return PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            try
            {
                var policy = session.ReloadPolicy();
                log.LogInformation("SIGHUP: {Count} rules from {Source} in force", policy.Count, policy.Source);
            }
            catch (ExtFuse.Policy.PolicyException e) { log.LogError("SIGHUP: the policy was not reloaded, the old rules stay: {Error}", e.Message); }
        });
    }

    private static ControlSocket? ServeControl(FuseSession session, ILogger log)
    {
        try { return ControlSocket.Serve(session); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        {
            log.LogWarning("no control socket ({Error}): extfuse policy reload cannot reach this daemon (SIGHUP still works)", e.Message);
            return null;
        }
    }

    private static int SandboxCommand(string[] args)
    {
        string? policy = null, source = null, mountPoint = null, audit = null;
        uint uid = 65534, gid = 65534;
        var landlock = false;
        double? cache = null;
        var allow = new List<string>();
        var optionLists = new List<string>();
        var verbosity = 0;
        var i = 0;
        string Value(string name) => ++i < args.Length ? args[i] : throw new UsageException($"{name} needs a value");
        for (; i < args.Length && args[i] != "--"; i++)
        {
            switch (args[i])
            {
                case "--policy": policy = Value("--policy"); break;
                case "--source": source = Value("--source"); break;
                case "--mount": mountPoint = Value("--mount"); break;
                case "--audit": audit = Value("--audit"); break;
                case "--uid": uid = uint.TryParse(Value("--uid"), out var u) ? u : throw new UsageException("--uid needs a number"); break;
                case "--gid": gid = uint.TryParse(Value("--gid"), out var g) ? g : throw new UsageException("--gid needs a number"); break;
                case "--landlock": landlock = true; break;
                case "--allow": allow.Add(Path.GetFullPath(Value("--allow"))); break;
                case "--cache":
                    cache = double.TryParse(Value("--cache"), System.Globalization.CultureInfo.InvariantCulture, out var c) && c is >= 0 and <= 1e6 ? c
                        : throw new UsageException("--cache needs a number of seconds (0 to 1000000)");
                    break;
                case "-o": optionLists.Add(Value("-o")); break;
                case "-v": verbosity++; break;
                case "-vv": verbosity += 2; break;
                default: throw new UsageException($"unknown sandbox option '{args[i]}' (the command follows --)");
            }
        }
        var command = i < args.Length ? args[(i + 1)..] : [];
        if (policy is null || source is null || command.Length == 0)
            throw new UsageException("expected: extfuse sandbox --policy FILE --source DIR [--mount PATH] [--uid N] [--gid N] [--landlock] [--allow PATH] [--audit FILE] -- COMMAND [ARGS...]");
        source = Path.GetFullPath(source);
        var options = new SandboxOptions
        {
            Source = source, MountPoint = mountPoint is null ? null : Path.GetFullPath(mountPoint), PolicyFile = Path.GetFullPath(policy),
            AuditLog = Path.GetFullPath(audit ?? $"/tmp/extfuse-sandbox-{Environment.ProcessId}.audit.jsonl"),
            Uid = uid, Gid = gid, Landlock = landlock, Allow = allow,
            Mount = new MountOptions { FsName = "sandbox", Subtype = "extfuse-sandbox", DefaultPermissions = true }.With(optionLists),
        };
        using var loggerFactory = new StderrLog(verbosity switch { 0 => LogLevel.Warning, 1 => LogLevel.Information, 2 => LogLevel.Debug, _ => LogLevel.Trace });
        var fs = cache is null ? StackFileSystem.Open(source) : new StackFileSystem(source)
        {
            EntryTimeout = TimeSpan.FromSeconds(cache.Value), AttrTimeout = TimeSpan.FromSeconds(cache.Value),
            NegativeTimeout = TimeSpan.FromSeconds(cache.Value), KeepCaches = cache > 0,
        };
        var log = loggerFactory.CreateLogger("extfuse");
        // Signal handling starts here, on this thread, before the launcher's thread leaves this namespace.
        SandboxLauncher? running = null;
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; Volatile.Read(ref running)?.Signal(2); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; Volatile.Read(ref running)?.Signal(15); });
        int status;
        var launcher = new SandboxLauncher(fs, options, loggerFactory);
        Volatile.Write(ref running, launcher);   // a signal from now on reaches the command, once it runs
        using (launcher)
        {
            launcher.Start(command);
            using var reload = ReloadOnHangup(launcher.Session!, log);
            status = launcher.WaitForExit();
        }
        var auditLog = launcher.Session!.Audit;
        Console.Error.WriteLine($"extfuse sandbox: {command[0]} exited with status {status}; {auditLog.Summary()}; audit log: {options.AuditLog}");
        return status;
    }

    private static int PolicyCommand(string[] args)
    {
        switch (args)
        {
            case ["check", var file]:
            {
                var doc = ExtFuse.Policy.PolicyFile.Load(file);
                Console.Out.WriteLine($"{file}: {doc.Rules.Count} rules, default {(doc.DefaultDeny ? $"deny (errno {doc.DefaultErrno})" : "allow")}; the first that matches decides:");
                for (var i = 0; i < doc.Rules.Count; i++) Console.Out.WriteLine($"  {i,3}  {doc.Rules[i].Describe()}");
                return 0;
            }
            case ["reload", _] or ["reload", "--connection", _]:
            {
                var connection = args.Length == 3 ? (uint.TryParse(args[2], out var n) ? n : throw new UsageException("--connection needs a number")) : ConnectionOf(args[1]);
                var answer = ControlSocket.Request(connection, "reload", TimeSpan.FromSeconds(30));
                Console.Out.WriteLine(answer);
                return answer.StartsWith("ok", StringComparison.Ordinal) ? 0 : 1;
            }
            default: throw new UsageException("expected: extfuse policy check FILE, or extfuse policy reload MOUNTPOINT | --connection N");
        }
    }

    /// <summary>The FUSE connection serving a mount point.</summary>
    private static uint ConnectionOf(string mountPoint)
    {
        var full = Path.GetFullPath(mountPoint);
        if (MountTable.At(full) is not { } entry || !MountTable.IsFuse(entry)) throw new FuseException($"{full} is not a FUSE mount point", Errno.EINVAL);
        return entry.Minor;
    }

    private static int Caps(string[] args)
    {
        if (args.Length != 0) throw new UsageException("extfuse caps takes no arguments");
        foreach (var c in ExtFuse.Kernel.KernelCapabilities.Probe())
            Console.Out.WriteLine($"{(c.Available ? "yes" : "no "),-4} {c.Name,-30} {c.Detail}");
        return 0;
    }

    private static int Stats(string[] args, bool live)
    {
        int? seconds = null;
        double? slowMs = null;
        string? mountPoint = null;
        var expected = $"expected: extfuse {(live ? "top MOUNTPOINT" : "stats MOUNTPOINT | --connection N [--seconds N] [--slow MS]")}";
        uint? connection = null;
        for (var i = 0; i < args.Length; i++)
        {
            // A connection has no mount point to watch for the end (a sandbox's is in its own namespace): stats only.
            if (!live && args[i] == "--connection" && i + 1 < args.Length && uint.TryParse(args[i + 1], out var id)) { connection = id; i++; }
            else if (!live && args[i] == "--seconds" && i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n > 0) { seconds = n; i++; }
            else if (!live && args[i] == "--slow" && i + 1 < args.Length && double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out var ms) && ms >= 0) { slowMs = ms; i++; }
            else if (args[i].StartsWith('-') || mountPoint is not null) throw new UsageException(expected);
            else mountPoint = args[i];
        }
        if ((mountPoint is null) == (connection is null)) throw new UsageException(expected);
        var full = mountPoint is null ? $"connection {connection}" : Path.GetFullPath(mountPoint);
        var minor = connection ?? ConnectionOf(full);
        // An ExtFuse.NET daemon counts from its mount and pins the maps; for any other FUSE file system, count from now.
        var stats = ExtFuse.Kernel.FuseStatistics.OpenPinned(minor);
        var sinceMount = stats is not null;
        if (stats is null)
        {
            try { stats = ExtFuse.Kernel.FuseStatistics.Attach(minor); }
            catch (BpfException e)
            {
                // No in-kernel counting here: an ExtFuse.NET daemon still has its own counts.
                if (!live && DaemonStatus(minor) is { } status)
                {
                    Console.Out.WriteLine($"extfuse: the kernel cannot count requests here ({e.Message.Split('\n')[0]}); the daemon's own counts:");
                    Console.Out.Write(status);
                    return 0;
                }
                throw new FuseException($"cannot count requests in the kernel: {e.Message.Split('\n')[0]} (see extfuse caps)", Errno.EPERM);
            }
        }
        using (stats)
        {
            var interval = !live && (seconds is not null || slowMs is not null || !sinceMount);
            Console.Out.WriteLine($"extfuse: counting the requests to {full} in the kernel (connection {minor})" +
                                  (sinceMount ? $", since mount by daemon {stats.OwnerPid}" : "") +
                                  (live ? "; Ctrl-C to stop" : interval ? $" for {seconds ?? 5} s" : ""));
            Console.Out.Flush();
            if (!live)
            {
                var before = interval ? stats.Snapshot() : [];
                var started = DateTime.UtcNow;
                if (interval)
                {
                    using var slow = slowMs is { } t
                        ? stats.WatchSlowRequests(TimeSpan.FromMilliseconds(t), r =>
                            Console.Out.WriteLine($"slow: {r.Opcode} unique {r.Unique} node {r.NodeId} pid {r.Pid}: {Micros(r.Latency.TotalMicroseconds)}"))
                        : null;
                    var end = started + TimeSpan.FromSeconds(seconds ?? 5);
                    for (var left = end - DateTime.UtcNow; left > TimeSpan.Zero; left = end - DateTime.UtcNow)
                        if (slow is null) Thread.Sleep(left);
                        else { slow.Poll(left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200)); Console.Out.Flush(); }
                }
                PrintStatistics(stats, full, interval ? ExtFuse.Kernel.OpcodeStatistics.Difference(stats.Snapshot(), before) : stats.Snapshot(),
                                interval ? DateTime.UtcNow - started : stats.Counting, sinceMount && !interval);
                return 0;
            }
            using var stop = new StopOnSignal();
            var last = stats.Snapshot();
            var lastAt = DateTime.UtcNow;
            var begun = lastAt;
            while (!stop.Wait(TimeSpan.FromSeconds(1)))
            {
                var now = stats.Snapshot();
                if (!Console.IsOutputRedirected) Console.Out.Write("\e[H\e[2J");
                // Totals since mount (or since top started), and the rates of the last second.
                PrintStatistics(stats, full, now, sinceMount ? stats.Counting : DateTime.UtcNow - begun, sinceMount,
                                rates: ExtFuse.Kernel.OpcodeStatistics.Difference(now, last), rateSeconds: (DateTime.UtcNow - lastAt).TotalSeconds);
                (last, lastAt) = (now, DateTime.UtcNow);
                Console.Out.Flush();
                if (MountTable.At(full) is not { } e || e.Minor != minor) { Console.Out.WriteLine($"extfuse: {full} was unmounted"); break; }
            }
            return 0;
        }
    }

    /// <summary>A daemon's requests and refusals by rule, from its control socket; null when no ExtFuse.NET daemon serves the connection.</summary>
    private static string? DaemonStatus(uint connection)
    {
        string json;
        try { json = ControlSocket.Request(connection, "status", TimeSpan.FromSeconds(10)); }
        catch (FuseException) { return null; }
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        var root = doc.RootElement;
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"connection {connection}: {root.GetProperty("requests").GetInt64()} requests since mount by daemon {root.GetProperty("pid").GetInt32()}, " +
                      $"{root.GetProperty("denials").GetInt64()} denials" + (root.GetProperty("audit").GetString() is { } a ? $" (audit log {a})" : "")
                      + (root.GetProperty("unreported").GetUInt64() is var lost and > 0 ? $", and {lost} refused in the kernel that its ring buffer could not report" : ""));
        foreach (var rule in root.GetProperty("rules").EnumerateArray())
            sb.AppendLine($"rule {rule.GetProperty("rule").GetString(),-40}{rule.GetProperty("refused").GetUInt64(),10} refused");
        foreach (var line in root.GetProperty("plan").EnumerateArray()) sb.AppendLine($"where: {line.GetString()}");
        return sb.ToString();
    }

    private static void PrintStatistics(ExtFuse.Kernel.FuseStatistics stats, string mountPoint, IReadOnlyList<ExtFuse.Kernel.OpcodeStatistics> rows, TimeSpan elapsed, bool sinceMount,
                                        IReadOnlyList<ExtFuse.Kernel.OpcodeStatistics>? rates = null, double rateSeconds = 0)
    {
        var perSecond = rates?.ToDictionary(r => r.Opcode, r => r.Sent / Math.Max(rateSeconds, 0.001));
        Console.Out.WriteLine($"{mountPoint} (connection {stats.ConnectionId}): {rows.Sum(r => (long)r.Sent)} requests in {elapsed.TotalSeconds:F1} s" +
                              (sinceMount ? " since mount" : "") + ", counted in the kernel");
        Console.Out.WriteLine($"{"opcode",-16}{"requests",10}{"per s",10}{"mean",12}{"p50",12}{"p99",12}");
        foreach (var r in rows.OrderByDescending(r => r.Sent))
            Console.Out.WriteLine($"{r.Opcode,-16}{r.Sent,10}{(perSecond is null ? r.Sent / Math.Max(elapsed.TotalSeconds, 0.001) : perSecond.GetValueOrDefault(r.Opcode)),10:F0}{Micros(r.MeanLatency.TotalMicroseconds),12}" +
                                  $"{Micros(Percentile(r.Histogram, 0.50)),12}{Micros(Percentile(r.Histogram, 0.99)),12}");
        if (!sinceMount) return;
        // The daemon's counters: requests its fast paths answered, and refusals by rule (the kernel's and the daemon's).
        foreach (var (op, served) in stats.FastPathServed())
            Console.Out.WriteLine($"fast path {op,-16}{served,10} answered without the handler");
        foreach (var rule in stats.Rules())
            Console.Out.WriteLine($"rule {rule.Rule,-40}{rule.Hits,10} refused");
    }

    /// <summary>The upper bound, in microseconds, of the histogram bucket holding the given fraction of requests.</summary>
    private static double Percentile(ulong[] histogram, double fraction)
    {
        var total = histogram.Aggregate(0UL, (a, b) => a + b);
        if (total == 0) return 0;
        ulong seen = 0;
        for (var i = 0; i < histogram.Length; i++)
            if ((seen += histogram[i]) >= fraction * total) return Math.Pow(2, i + 1);
        return Math.Pow(2, histogram.Length);
    }

    private static string Micros(double us) => us >= 1000 ? $"{us / 1000:F1} ms" : $"{us:F0} us";

    private static int Verify(string[] args)
    {
        if (args.Length != 1 || args[0].StartsWith('-')) throw new UsageException("expected: extfuse verify PATH (a .bpf.o file or a directory of them)");
        IReadOnlyList<string> objects;
        try { objects = BpfVerifier.Objects(args[0]); }
        catch (FileNotFoundException e) { throw new FuseException(e.Message, 2); }
        if (objects.Count == 0) throw new FuseException($"no .bpf.o files in {args[0]}", 2);
        var rejected = 0;
        foreach (var obj in objects)
        {
            IReadOnlyList<ProgramVerdict> verdicts;
            try { verdicts = BpfVerifier.VerifyEach(obj); }
            catch (BpfException e) { Console.Out.WriteLine($"error     {Path.GetFileName(obj)}: {e.Message}"); rejected++; continue; }
            foreach (var v in verdicts)
            {
                var where = $"{Path.GetFileName(v.Object)} {v.Program} ({v.Section})";
                if (v.Accepted)
                    Console.Out.WriteLine($"accepted  {where}: {v.Instructions} insns, verifier processed {v.Processed}");
                else if (v.Skipped)
                    Console.Out.WriteLine($"skipped   {where}: {v.Reason}");
                else
                {
                    rejected++;
                    Console.Out.WriteLine($"rejected  {where}: {v.Reason}" + (v.SourceLocation is { } at ? $" at {at}" : ""));
                }
            }
            if (verdicts.Count == 0) Console.Out.WriteLine($"empty     {Path.GetFileName(obj)}: no programs");
        }
        return rejected == 0 ? 0 : 1;
    }

    private static int Fsx(string[] args)
    {
        var seed = Environment.TickCount & 0x7FFFFFFF;
        var ops = 2_000;
        var dirs = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--seed" when i + 1 < args.Length && int.TryParse(args[i + 1], out var s): seed = s; i++; break;
                case "--ops" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n > 0: ops = n; i++; break;
                case "--long": ops = 200_000; break;
                default:
                    if (args[i].StartsWith('-')) throw new UsageException($"bad fsx option '{args[i]}'");
                    dirs.Add(args[i]);
                    break;
            }
        }
        if (dirs.Count != 2) throw new UsageException("expected: extfuse fsx [--seed N] [--ops N | --long] DIR NATIVE_DIR");
        foreach (var d in dirs) if (!Directory.Exists(d)) throw new FuseException($"{d} is not a directory", Errno.ENOENT);
        var result = new Fsx.ModelChecker(dirs[0], dirs[1]).Run(seed, ops);
        Console.WriteLine(result.Report());
        return result.Passed ? 0 : 1;
    }

    [DllImport("libc", EntryPoint = "getuid")] private static extern uint Libc_GetUid();
    [DllImport("libc", EntryPoint = "getgid")] private static extern uint Libc_GetGid();
}
