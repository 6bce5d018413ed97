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

    private const string Shared = """
        #include <extfuse/bpf.h>

        struct {
            __uint(type, BPF_MAP_TYPE_HASH);
            __uint(max_entries, 64);
            __type(key, __u32);
            __type(value, __u64);
        } table SEC(".maps");

        struct {
            __uint(type, BPF_MAP_TYPE_ARRAY);
            __uint(map_flags, BPF_F_MMAPABLE);
            __uint(max_entries, 8);
            __type(key, __u32);
            __type(value, __u64);
        } counters SEC(".maps");

        struct {
            __uint(type, BPF_MAP_TYPE_RINGBUF);
            __uint(max_entries, 4096);
        } events SEC(".maps");

        struct emit_ctx { __u32 slot; __u32 times; };

        /* Adds 1 to counters[slot] and submits `times` records {slot, i} to the ring buffer. */
        SEC("syscall")
        int emit(struct emit_ctx *c)
        {
            __u32 slot = c->slot;
            __u64 *v = bpf_map_lookup_elem(&counters, &slot);
            if (v)
                __sync_fetch_and_add(v, 1);
            for (__u32 i = 0; i < 16 && i < c->times; i++) {
                __u64 *r = bpf_ringbuf_reserve(&events, 8, 0);
                if (!r)
                    return 1;
                *r = ((__u64)slot << 32) | i;
                bpf_ringbuf_submit(r, 0);
            }
            return 0;
        }
        """;

    private struct EmitCtx { public uint Slot, Times; }

    [Fact]
    public void Batch_operations_move_many_entries_in_one_call_and_agree_with_single_ones()
    {
        using var obj = BpfObject.Open(Repo.CompileBpf(_dir, "shared", Shared));
        obj.Load();
        var table = obj.Map<uint, ulong>("table");
        uint[] keys = [.. Enumerable.Range(1, 40).Select(i => (uint)(i * 7))];
        ulong[] values = [.. keys.Select(k => (ulong)k * 1000 + 1)];
        Assert.Equal(40, table.UpdateBatch(keys, values));
        Assert.True(table.UsedBatch, "a hash map on this kernel has BPF_MAP_UPDATE_BATCH");
        foreach (var (k, v) in keys.Zip(values)) Assert.Equal(v, table[k]);   // single lookups see what the batch wrote

        var entries = table.Entries();
        Assert.True(table.UsedBatch);
        Assert.Equal(keys.Zip(values).Select(x => KeyValuePair.Create(x.First, x.Second)).OrderBy(e => e.Key), entries.OrderBy(e => e.Key));

        Assert.Equal(10, table.DeleteBatch(keys.AsSpan(0, 10)));
        Assert.Equal(30, table.Keys().Count);
        Assert.False(table.TryLookup(keys[0], out _));
        // A missing key stops a batch delete with an error that says how far it got.
        var e = Assert.Throws<BpfException>(() => table.DeleteBatch([keys[20], 99999u]));
        Assert.Contains("batch delete from table stopped after", e.Message);

        // Past the map's capacity: the entries that fit go in, and the error says how many.
        uint[] more = [.. Enumerable.Range(1000, 60).Select(i => (uint)i)];
        e = Assert.Throws<BpfException>(() => table.UpdateBatch(more, new ulong[more.Length]));
        Assert.Contains("stopped after", e.Message);
        Assert.Equal(64, table.Keys().Count);
        Assert.Throws<ArgumentException>(() => table.UpdateBatch(keys, values.AsSpan(1)));

        // An array map: lookup batch goes by index.
        var counters = obj.Map<uint, ulong>("counters");
        Assert.Equal(3, counters.UpdateBatch([0u, 3u, 7u], [5ul, 6ul, 7ul]));
        Assert.Equal([5ul, 0, 0, 6, 0, 0, 0, 7], counters.Entries().OrderBy(x => x.Key).Select(x => x.Value));
    }

    [Fact]
    public void Mapped_counters_pins_and_ring_buffers_reach_the_kernels_memory()
    {
        using var obj = BpfObject.Open(Repo.CompileBpf(_dir, "shared", Shared));
        obj.Load();
        var prog = obj.Program("emit");
        var counters = obj.Map<uint, ulong>("counters");
        using var mapped = counters.MapValues();
        Assert.Equal(8, mapped.Length);

        // The daemon adds in its memory, the program adds in the kernel: one counter.
        Interlocked.Add(ref System.Runtime.CompilerServices.Unsafe.As<ulong, long>(ref mapped[2]), 40);
        var ctx = new EmitCtx { Slot = 2, Times = 0 };
        prog.TestRun(ref ctx);
        prog.TestRun(ref ctx);
        Assert.Equal(42ul, mapped[2]);
        Assert.Equal(42ul, counters[2]);
        Assert.Throws<IndexOutOfRangeException>(() => mapped[8]);
        var notMappable = Assert.Throws<BpfException>(() => obj.Map<uint, ulong>("table").MapValues());
        Assert.Contains("BPF_F_MMAPABLE", notMappable.Message);

        // Pinned under bpffs, the map is the same map for anyone who opens the pin.
        var pin = $"/sys/fs/bpf/extfuse-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
        counters.Pin(pin);
        try
        {
            using (var opened = BpfMap<uint, ulong>.OpenPinned(pin))
            {
                Assert.Equal(42ul, opened[2]);
                opened.Update(5, 9);
                Assert.Equal(9ul, mapped[5]);
            }
            Assert.Contains("8-byte values", Assert.Throws<BpfException>(() => BpfMap<uint, uint>.OpenPinned(pin)).Message);
        }
        finally { BpfMap<uint, ulong>.Unpin(pin); }
        Assert.False(File.Exists(pin));
        Assert.Throws<BpfException>(() => BpfMap<uint, ulong>.OpenPinned(pin));

        // Ring buffer: every record the program submits arrives once, in order.
        var seen = new List<ulong>();
        using var events = BpfRingBuffer.Open(obj, "events", r => seen.Add(BitConverter.ToUInt64(r)));
        Assert.Equal(0, events.Consume());
        ctx = new EmitCtx { Slot = 6, Times = 5 };
        prog.TestRun(ref ctx);
        ctx = new EmitCtx { Slot = 1, Times = 3 };
        prog.TestRun(ref ctx);
        Assert.Equal(8, events.Poll(TimeSpan.FromSeconds(1)));
        Assert.Equal([.. Enumerable.Range(0, 5).Select(i => (6ul << 32) + (ulong)i), .. Enumerable.Range(0, 3).Select(i => (1ul << 32) + (ulong)i)], seen);
        Assert.Equal(0, events.Poll(TimeSpan.FromMilliseconds(10)));

        // A handler that throws stops the poll; the exception comes out of Poll.
        using var failing = BpfRingBuffer.Open(obj, "events", _ => throw new InvalidDataException("bad record"));
        prog.TestRun(ref ctx);
        Assert.Throws<InvalidDataException>(() => failing.Poll(TimeSpan.FromSeconds(1)));
        Assert.Contains("not a ring buffer", Assert.Throws<BpfException>(() => BpfRingBuffer.Open(obj, "table", _ => { })).Message);
    }

    [Fact]
    public void The_kernels_BTF_names_its_program_types_and_trivial_programs_load_by_number()
    {
        // Upstream numbers (include/uapi/linux/bpf.h): SOCKET_FILTER 1, SYSCALL 31.
        Assert.Equal(1, BpfProbe.BtfEnumValue("bpf_prog_type", "BPF_PROG_TYPE_SOCKET_FILTER"));
        Assert.Equal(31, BpfProbe.BtfEnumValue("bpf_prog_type", "BPF_PROG_TYPE_SYSCALL"));
        Assert.Null(BpfProbe.BtfEnumValue("bpf_prog_type", "BPF_PROG_TYPE_NO_SUCH_THING"));
        Assert.Null(BpfProbe.BtfEnumValue("no_such_enum_anywhere", "X"));
        Assert.Equal(0, BpfProbe.LoadTrivial(1));
        Assert.True(BpfProbe.LoadTrivial(4000) < 0);
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
            "tp_btf on FUSE tracepoints", "ExtFUSE program type", "FUSE mount", "FUSE passthrough", "FUSE over io_uring"], caps.Keys);
        // An ExtFUSE kernel names its program type in its BTF: the probe's answer agrees with the BTF's string table.
        var extfuseKernel = File.Exists("/sys/kernel/btf/vmlinux") && File.ReadAllBytes("/sys/kernel/btf/vmlinux").AsSpan().IndexOf("BPF_PROG_TYPE_EXTFUSE"u8) >= 0;
        Assert.Equal(extfuseKernel, caps["ExtFUSE program type"].Yes);
        if (!extfuseKernel) Assert.Contains("no BPF_PROG_TYPE_EXTFUSE", caps["ExtFUSE program type"].Detail);
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
