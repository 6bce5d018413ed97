using ExtFuse.Bpf;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>The libbpf loader against the real kernel: loading, verifier logs, typed maps, test_run, `extfuse verify`.</summary>
public sealed class BpfLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("extfuse-bpf-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private const string Counter = """
        #include <extfuse/bpf.h>

        struct count_key { __u32 uid; __u32 op; };
        struct {
            __uint(type, BPF_MAP_TYPE_HASH);
            __uint(max_entries, 4);
            __type(key, struct count_key);
            __type(value, __u64);
        } counts SEC(".maps");

        struct count_ctx { __u32 uid; __u32 op; __s64 result; };

        /* Counts (uid, op) pairs; result: the new count, or -1 when the map is full. */
        SEC("syscall")
        int count(struct count_ctx *c)
        {
            struct count_key k = { .uid = c->uid, .op = c->op };
            __u64 one = 1, *v = bpf_map_lookup_elem(&counts, &k);
            if (v) { __sync_fetch_and_add(v, 1); c->result = *v; return 0; }
            c->result = bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST) ? -1 : 1;
            return 0;
        }
        """;

    // Dereferences a number the caller chose: the verifier must refuse it.
    private const string Bad = """
        #include <extfuse/bpf.h>

        struct count_ctx { __u32 uid; __u32 op; __s64 result; };

        SEC("syscall")
        int fine(struct count_ctx *c) { c->result = c->uid + 1; return 0; }

        SEC("syscall")
        int wild(struct count_ctx *c)
        {
            long *p = (long *)(unsigned long)c->uid;
            c->result = *p;
            return 0;
        }
        """;

    private struct CountKey { public uint Uid, Op; }
    private struct CountCtx { public uint Uid, Op; public long Result = 0; public CountCtx() { } }

    [Fact]
    public void Maps_round_trip_between_test_run_and_the_typed_accessor()
    {
        using var obj = BpfObject.Open(Repo.CompileBpf(_dir, "counter", Counter));
        obj.Load();
        var counts = obj.Map<CountKey, ulong>("counts");
        var prog = obj.Program("count");
        Assert.Equal("syscall", prog.Section);
        Assert.True(prog.InstructionCount > 5);

        var ctx = new CountCtx { Uid = 1000, Op = 3 };
        Assert.Equal(0, prog.TestRun(ref ctx));
        Assert.Equal(1, ctx.Result);
        prog.TestRun(ref ctx);
        Assert.Equal(2, ctx.Result);
        Assert.Equal(2ul, counts[new CountKey { Uid = 1000, Op = 3 }]);

        // The managed side writes, the kernel program reads what it wrote.
        Assert.True(counts.Update(new CountKey { Uid = 7, Op = 1 }, 41));
        Assert.False(counts.Update(new CountKey { Uid = 7, Op = 1 }, 5, BpfUpdate.NoExist));
        Assert.False(counts.Update(new CountKey { Uid = 8, Op = 1 }, 5, BpfUpdate.Exist));
        ctx = new CountCtx { Uid = 7, Op = 1 };
        prog.TestRun(ref ctx);
        Assert.Equal(42, ctx.Result);

        // Full map: the program sees the failed insert, the accessor an error, and nothing changes.
        counts.Update(new CountKey { Uid = 9, Op = 9 }, 0);
        counts.Update(new CountKey { Uid = 10, Op = 10 }, 0);
        ctx = new CountCtx { Uid = 11, Op = 11 };
        prog.TestRun(ref ctx);
        Assert.Equal(-1, ctx.Result);
        Assert.Throws<BpfException>(() => counts.Update(new CountKey { Uid = 12, Op = 12 }, 1));
        Assert.Equal([7u, 9u, 10u, 1000u], counts.Keys().Select(k => k.Uid).Order().ToArray());
        Assert.Equal(4, counts.Entries().Count);

        Assert.True(counts.Delete(new CountKey { Uid = 7, Op = 1 }));
        Assert.False(counts.Delete(new CountKey { Uid = 7, Op = 1 }));
        Assert.False(counts.TryLookup(new CountKey { Uid = 7, Op = 1 }, out _));
        Assert.Equal(3, counts.Keys().Count);
    }

    [Fact]
    public void Objects_open_from_memory_too()
    {
        var elf = File.ReadAllBytes(Repo.CompileBpf(_dir, "counter", Counter));
        using var obj = BpfObject.Open(elf, "embedded-counter");
        obj.Load();
        var ctx = new CountCtx { Uid = 1, Op = 2 };
        obj.Program("count").TestRun(ref ctx);
        Assert.Equal(1, ctx.Result);
        Assert.Equal(1ul, obj.Map<CountKey, ulong>("counts")[new CountKey { Uid = 1, Op = 2 }]);
        Assert.Throws<BpfException>(() => BpfObject.Open("not an ELF object"u8, "garbage"));
    }

    [Fact]
    public void A_schema_that_does_not_match_the_map_is_refused_when_opened()
    {
        using var obj = BpfObject.Open(Repo.CompileBpf(_dir, "counter", Counter));
        obj.Load();
        var e = Assert.Throws<BpfException>(() => obj.Map<uint, ulong>("counts"));
        Assert.Contains("8-byte keys", e.Message);
        Assert.Throws<KeyNotFoundException>(() => obj.Map<CountKey, ulong>("nosuchmap"));
    }

    [Fact]
    public void A_rejected_program_surfaces_the_verifier_log_and_its_source_line()
    {
        var path = Repo.CompileBpf(_dir, "bad", Bad);
        using var obj = BpfObject.Open(path);
        var e = Assert.Throws<BpfVerifierException>(obj.Load);
        Assert.Equal("wild", e.Program);
        Assert.Contains("invalid mem access", e.Reason);
        Assert.Matches(@"bad\.bpf\.c:1[12]$", e.SourceLocation);
        Assert.Contains("R", e.Log);
        Assert.Contains("the kernel verifier rejected wild (syscall)", e.Message);
        Assert.False(obj.IsLoaded);
    }

    [Fact]
    public void Verify_prints_one_line_per_program_with_the_verifiers_verdict()
    {
        Repo.CompileBpf(_dir, "bad", Bad);
        Repo.CompileBpf(_dir, "counter", Counter);
        var (code, output) = CliProcess.Run(["verify", _dir]);
        Assert.Equal(1, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^accepted  bad\.bpf\.o fine \(syscall\): \d+ insns, verifier processed \d+$", lines[0]);
        Assert.Matches(@"^rejected  bad\.bpf\.o wild \(syscall\): .*invalid mem access.* at .*bad\.bpf\.c:1[12]$", lines[1]);
        Assert.Matches(@"^accepted  counter\.bpf\.o count \(syscall\): \d+ insns", lines[2]);

        // The generated sample's objects, next to the assembly that carries them, all pass.
        (code, output) = CliProcess.Run(["verify", Path.Combine(AppContext.BaseDirectory, "ExtFuse.Samples.Guarded.GuardedFileSystem.bpf.o")]);
        Assert.True(code == 0, output);
        Assert.Contains("accepted  ExtFuse.Samples.Guarded.GuardedFileSystem.bpf.o", output);
        Assert.DoesNotContain("rejected", output);

        // As root, a refusal is the kernel's policy, not a missing privilege (LSM and fentry are refused here).
        (_, output) = CliProcess.Run(["verify", Path.Combine(AppContext.BaseDirectory, "extfuse_caps.bpf.o")]);
        Assert.Contains("accepted  extfuse_caps.bpf.o probe_syscall (syscall)", output);
        Assert.DoesNotContain("needs root", output);
        Assert.Matches(@"(accepted|skipped)   extfuse_caps\.bpf\.o probe_lsm \(lsm/file_open\)", output);
    }

    [Fact]
    public void Verify_explains_bad_paths_and_what_needs_root()
    {
        var (code, output) = CliProcess.Run(["verify", "/nonexistent.bpf.o"]);
        Assert.Equal(1, code);
        Assert.Contains("neither a .bpf.o file nor a directory", output);
        (code, output) = CliProcess.Run(["verify", _dir]);
        Assert.Equal(1, code);
        Assert.Contains("no .bpf.o files in", output);
        var garbage = Path.Combine(_dir, "garbage.bpf.o");
        File.WriteAllText(garbage, "not an ELF file");
        (code, output) = CliProcess.Run(["verify", garbage]);
        Assert.Equal(1, code);
        Assert.Contains("libbpf cannot open", output);

        // A normal user: the kernel refuses, and the line says what is needed.
        Repo.CompileBpf(_dir, "counter", Counter);
        File.Delete(garbage);
        Shell.Run($"chmod -R a+rX '{_dir}'");
        (code, output) = CliProcess.Run(["verify", _dir], asUser: CliProcess.Nobody);
        Assert.Equal(1, code);
        Assert.Contains("needs root", output);
    }
}

/// <summary>`extfuse caps`: every feature tried on the running kernel, and the answers agree with what the kernel shows elsewhere.</summary>
public class CapsTests
{
    private static Dictionary<string, (bool Yes, string Detail)> Parse(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => (Yes: l.StartsWith("yes ", StringComparison.Ordinal), Name: l[5..35].Trim(), Detail: l[35..].Trim()))
            .ToDictionary(x => x.Name, x => (x.Yes, x.Detail));

    [Fact]
    public void Caps_tries_each_feature_and_agrees_with_the_kernel()
    {
        var (code, output) = CliProcess.Run(["caps"]);
        Assert.True(code == 0, output);
        var caps = Parse(output);
        Assert.Equal(["bpf(2)", "bpffs", "BTF", "syscall programs and test_run", "BPF LSM", "trampolines (fentry)",
            "tp_btf on FUSE tracepoints", "FUSE mount", "FUSE passthrough", "FUSE over io_uring", "ExtFUSE program type"], caps.Keys);
        // The loader tests run syscall programs with test_run as root: the probe must find that too.
        Assert.True(caps["syscall programs and test_run"].Yes, output);
        Assert.Equal(File.Exists("/sys/kernel/btf/vmlinux"), caps["BTF"].Yes);
        Assert.Equal(Shell.Run("mountpoint -q /sys/fs/bpf").Code == 0, caps["bpffs"].Yes);
        Assert.True(caps["FUSE mount"].Yes, output);
        var uring = File.Exists("/sys/module/fuse/parameters/enable_uring") && File.ReadAllText("/sys/module/fuse/parameters/enable_uring").Trim() == "Y";
        Assert.Equal(uring, caps["FUSE over io_uring"].Yes);
        Assert.False(caps["BPF LSM"].Yes && !caps["bpf(2)"].Yes);
        // The probe mount is gone again.
        Assert.DoesNotContain("extfuse-caps", File.ReadAllText("/proc/self/mounts"));
    }

    [Fact]
    public void Caps_as_a_normal_user_says_what_needs_root()
    {
        var (code, output) = CliProcess.Run(["caps"], asUser: CliProcess.Nobody);
        Assert.True(code == 0, output);
        var caps = Parse(output);
        Assert.False(caps["bpf(2)"].Yes);
        Assert.Contains("needs root", caps["bpf(2)"].Detail);
        Assert.False(caps["syscall programs and test_run"].Yes);
        Assert.True(caps["FUSE mount"].Yes, output);   // through fusermount3
    }
}
