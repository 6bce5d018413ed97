using System.Runtime.InteropServices;
using ExtFuse.Bpf;
using ExtFuse.Mounting;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse.Kernel;

/// <summary>One kernel feature the fast path can use, and what trying it showed.</summary>
public sealed record Capability(string Name, bool Available, string Detail);

/// <summary>
/// Finds what the running kernel can do by trying each thing (loading and attaching a program,
/// mounting and reading what the kernel offers at INIT), not by its version number.
/// </summary>
public static partial class KernelCapabilities
{
    /// <summary>The probe programs (bpf-runtime/ExtFuse.Bpf/probes), built next to the assemblies.</summary>
    public static string ProbeObject => Path.Combine(AppContext.BaseDirectory, "extfuse_caps.bpf.o");

    /// <summary>Everything, probed now: the BPF features, then FUSE's (which mounts an empty file system for a moment).</summary>
    public static IReadOnlyList<Capability> Probe() => [.. Remember(ProbeBpfNow()), .. FuseFeatures()];

    /// <summary>
    /// The BPF features, probed once per boot: each probe loads a program, and libbpf reads the
    /// kernel's BTF for each, a few hundred milliseconds in all, while what a kernel allows does not
    /// change until it is rebooted. Root keeps what it found in <see cref="CacheFile"/> with the boot's
    /// id; bpffs is looked at every time (it can be unmounted). `extfuse caps` always probes again.
    /// </summary>
    public static IReadOnlyList<Capability> ProbeBpf() => Bpf.Value;

    private static readonly Lazy<IReadOnlyList<Capability>> Bpf = new(() => Recalled() ?? Remember(ProbeBpfNow()));

    public const string CacheFile = "/run/extfuse/bpf-capabilities";

    private static IReadOnlyList<Capability> ProbeBpfNow()
    {
        var syscall = BpfSyscall();
        if (!syscall.Available)
            return [syscall, .. new[] { "bpffs", "BTF", "syscall programs and test_run", "BPF LSM", "trampolines (fentry)", "tp_btf on FUSE tracepoints", "ExtFUSE program type" }
                .Select(n => new Capability(n, false, "no bpf(2): " + syscall.Detail))];
        return [syscall, BpfFs(), Btf(), .. BpfPrograms(), ExtFuseProgramType()];
    }

    private static string? BootId()
    {
        try { return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(); }
        catch (IOException) { return null; }
    }

    /// <summary>What root probed earlier in this boot, or null.</summary>
    private static IReadOnlyList<Capability>? Recalled()
    {
        if (Libc.GetEuid() != 0 || BootId() is not { } boot) return null;
        try
        {
            var lines = File.ReadAllLines(CacheFile);
            if (lines.Length < 2 || lines[0] != boot) return null;
            var caps = lines.Skip(1).Select(l => l.Split('\t')).Where(f => f.Length == 3).Select(f => new Capability(f[0], f[1] == "yes", f[2])).ToList();
            var bpffs = caps.FindIndex(c => c.Name == "bpffs");
            if (bpffs >= 0 && caps[0].Available) caps[bpffs] = BpfFs();
            return caps;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static IReadOnlyList<Capability> Remember(IReadOnlyList<Capability> caps)
    {
        if (Libc.GetEuid() != 0 || BootId() is not { } boot) return caps;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(CacheFile)!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var temp = CacheFile + "." + Environment.ProcessId;
            File.WriteAllLines(temp, [boot, .. caps.Select(c => $"{c.Name}\t{(c.Available ? "yes" : "no")}\t{c.Detail.Replace('\t', ' ').Replace('\n', ' ')}")]);
            File.Move(temp, CacheFile, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return caps;
    }

    /// <summary>Whether <paramref name="name"/> was found working (names as <see cref="Probe"/> reports them).</summary>
    public static bool Has(this IReadOnlyList<Capability> caps, string name) => caps.Any(c => c.Name == name && c.Available);

    public static Capability Get(this IReadOnlyList<Capability> caps, string name) =>
        caps.FirstOrDefault(c => c.Name == name) ?? new Capability(name, false, "not probed");

    private static Capability BpfSyscall()
    {
        const int SocketFilter = 1;
        int rc;
        try { rc = BpfProbe.ProgramType(SocketFilter); }
        catch (BpfException e) { return new("bpf(2)", false, e.Message); }
        // libbpf reports a refused load as "not supported" (0): only the caller's privileges tell the two apart.
        return rc switch
        {
            1 => new("bpf(2)", true, "BPF_PROG_LOAD works"),
            0 or -1 when Libc.GetEuid() != 0 => new("bpf(2)", false, "not permitted to a normal user: needs root (CAP_BPF)"),
            0 => new("bpf(2)", false, "the kernel loads no BPF programs (CONFIG_BPF_SYSCALL off?)"),
            _ => new("bpf(2)", false, $"BPF_PROG_LOAD fails: {BpfProbe.Describe(rc)}"),
        };
    }

    /// <summary>bpffs at /sys/fs/bpf; mounted there when missing and we are root, as bpftool does (a fresh boot often has none).</summary>
    private static Capability BpfFs()
    {
        if (IsBpfFs()) return new("bpffs", true, "mounted at /sys/fs/bpf (maps can be pinned)");
        if (Libc.GetEuid() == 0 && Directory.Exists("/sys/fs/bpf") && Libc.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") == 0 && IsBpfFs())
            return new("bpffs", true, "was not mounted: mounted it at /sys/fs/bpf (maps can be pinned)");
        return new("bpffs", false, "not mounted: mount -t bpf bpf /sys/fs/bpf (maps cannot be pinned)");
    }

    private static unsafe bool IsBpfFs()
    {
        const long BpfFsMagic = 0xCAFE4A11;
        var buf = stackalloc long[16];
        return statfs("/sys/fs/bpf", buf) == 0 && buf[0] == BpfFsMagic;
    }

    private static Capability Btf() =>
        File.Exists("/sys/kernel/btf/vmlinux") ? new("BTF", true, "/sys/kernel/btf/vmlinux: CO-RE relocations work")
            : new("BTF", false, "no /sys/kernel/btf/vmlinux: the kernel was built without CONFIG_DEBUG_INFO_BTF");

    /// <summary>Each probe program loaded, and attached or run, on its own.</summary>
    private static IEnumerable<Capability> BpfPrograms()
    {
        (string Name, string Program, Func<BpfProgram, string> Use)[] probes =
        [
            ("syscall programs and test_run", "probe_syscall", p =>
            {
                long ctx = 0;
                var rc = p.TestRun(ref ctx);
                return rc == 7 ? "loaded, and BPF_PROG_TEST_RUN ran it" : throw new BpfException($"BPF_PROG_TEST_RUN returned {rc}, not 7");
            }),
            ("BPF LSM", "probe_lsm", p => { using var l = p.Attach(); return "lsm/file_open loaded and attached" + ActiveLsms(); }),
            ("trampolines (fentry)", "probe_fentry", p => { using var l = p.Attach(); return "fentry/vfs_getattr loaded and attached"; }),
            ("tp_btf on FUSE tracepoints", "probe_fuse_tracepoint", p => { using var l = p.Attach(); return "tp_btf/fuse_request_send loaded and attached"; }),
        ];
        foreach (var (name, program, use) in probes)
        {
            Capability cap;
            try
            {
                using var obj = BpfObject.Open(ProbeObject);
                foreach (var p in obj.Programs) p.Autoload = p.Name == program;
                obj.Load();
                cap = new(name, true, use(obj.Program(program)));
            }
            catch (BpfVerifierException e) { cap = new(name, false, $"the kernel refuses it: {e.Reason}" + (name == "BPF LSM" ? ActiveLsms() : "")); }
            catch (BpfException e) { cap = new(name, false, Short(e.Message) + (name == "BPF LSM" ? ActiveLsms() : "")); }
            catch (DllNotFoundException) { cap = new(name, false, "libbpf.so.1 is not installed (apt-get install libbpf1)"); }
            catch (FileNotFoundException) { cap = new(name, false, $"the probe programs are missing ({ProbeObject}): build with clang installed"); }
            yield return cap;
        }
    }

    /// <summary>The first line of libbpf's error, without the object's path (the same for every probe).</summary>
    private static string Short(string message) =>
        message.Split('\n')[0].Replace($"libbpf cannot load {ProbeObject}: ", "the kernel refuses to load it: ", StringComparison.Ordinal);

    private static string ActiveLsms()
    {
        try { return $" (active LSMs: {File.ReadAllText("/sys/kernel/security/lsm").Trim()})"; }
        catch (IOException) { return " (securityfs not mounted: the active LSM list is unknown)"; }
        catch (UnauthorizedAccessException) { return ""; }
    }

    /// <summary>Mounts an empty file system for a moment and reads what the kernel offers at INIT.</summary>
    private static IEnumerable<Capability> FuseFeatures()
    {
        var dir = Directory.CreateTempSubdirectory("extfuse-caps-").FullName;
        InitFlags offered;
        uint minor;
        try
        {
            using var session = new FuseSession(new EmptyFileSystem());
            session.Start(FuseMount.Mount(dir, new MountOptions { FsName = "extfuse-caps", Subtype = "caps" }));
            if (!session.Initialized.Wait(TimeSpan.FromSeconds(10))) throw new FuseException("the kernel sent no INIT within 10 s", Errno.ETIMEDOUT);
            offered = session.Connection.KernelFlags;
            minor = session.Connection.ProtocolMinor;
        }
        catch (FuseException e)
        {
            return [new("FUSE mount", false, e.Message)];
        }
        finally { try { Directory.Delete(dir); } catch (IOException) { } }
        var uring = File.Exists("/sys/module/fuse/parameters/enable_uring")
            ? " (enable with: echo Y > /sys/module/fuse/parameters/enable_uring)" : " (kernel built without CONFIG_FUSE_IO_URING)";
        return
        [
            new("FUSE mount", true, $"FUSE 7.{minor}"),
            new("FUSE passthrough", (offered & InitFlags.Passthrough) != 0,
                (offered & InitFlags.Passthrough) != 0 ? "offered at INIT (backing files need CAP_SYS_ADMIN)" : "not offered at INIT"),
            new("FUSE over io_uring", (offered & InitFlags.OverIoUring) != 0,
                (offered & InitFlags.OverIoUring) != 0 ? "offered at INIT" : "not offered at INIT" + uring),
        ];
    }

    /// <summary>
    /// An ExtFUSE-patched kernel adds BPF_PROG_TYPE_EXTFUSE to enum bpf_prog_type, so its BTF names
    /// the type and its number: found there, then tried by loading a two-instruction program of it.
    /// </summary>
    private static Capability ExtFuseProgramType()
    {
        const string Name = "ExtFUSE program type";
        int? type;
        try { type = BpfProbe.BtfEnumValue("bpf_prog_type", "BPF_PROG_TYPE_EXTFUSE"); }
        catch (BpfException e) { return new(Name, false, e.Message); }
        if (type is not { } n)
            return new(Name, false, "not in this kernel (its BTF has no BPF_PROG_TYPE_EXTFUSE): a stock kernel; the generated extfuse/ programs need the ExtFUSE patches");
        var err = BpfProbe.LoadTrivial(n);
        return err == 0 ? new(Name, true, $"BPF_PROG_TYPE_EXTFUSE ({n}) loads")
            : new(Name, false, $"the kernel names BPF_PROG_TYPE_EXTFUSE ({n}) but refuses a program of it: {BpfProbe.Describe(err)}");
    }

    private sealed class EmptyFileSystem : RawFileSystem;

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statfs(string path, long* buf);
}
