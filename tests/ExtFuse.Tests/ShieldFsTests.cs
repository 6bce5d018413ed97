using System.Runtime.InteropServices;
using ExtFuse.Bpf;
using ExtFuse.Declarative;
using ExtFuse.Mounting;
using ExtFuse.Nodes;
using ExtFuse.Protocol;
using ExtFuse.Samples.Shield;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>ShieldFs (StackFs with every kind of rule) over a fresh source directory.</summary>
public sealed class ShieldMount : TestMount
{
    public ShieldMount() : this(Directory.CreateTempSubdirectory("extfuse-shield-src-").FullName) { }

    private ShieldMount(string source) : base(new ShieldFileSystem(source),
        new MountOptions { FsName = "extfuse-test", Subtype = "shield", DefaultPermissions = true, AllowOther = true }) => Source = source;

    public string Source { get; }
    public override int NodeCount() => ((NodeFileSystem)Fs).NodeCount;

    public override void Dispose()
    {
        base.Dispose();
        Directory.Delete(Source, recursive: true);
    }
}

/// <summary>
/// The declarative sample with caching, passthrough, deny, hide, [Check] methods over a KernelMap
/// and a [FastPath]: the rules on a real mount, and the generated BPF agreeing with the managed
/// twins over the same map contents (BPF_PROG_TEST_RUN on the real kernel maps). One class, so the
/// sample's static maps are used by one test at a time.
/// </summary>
public class ShieldFsTests(ShieldMount m) : IClassFixture<ShieldMount>
{
    private static string ObjectPath => Path.Combine(AppContext.BaseDirectory, ShieldFileSystem.BpfObject);

    [StructLayout(LayoutKind.Sequential)]
    private struct FastPathContext
    {
        public CheckRequest Request;
        public FuseAttrOut Reply;
        public int Result;
        public uint Padding;
    }

    /// <summary>struct extfuse_checks_test: every [Check] of an operation set, the first refusal and its index out.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct ChecksContext
    {
        public CheckRequest Request;
        public uint Ops;
        public int Result;
        public int Rule;
        public uint Padding;
    }

    private static List<CheckRequest> Inputs()
    {
        var inputs = new List<CheckRequest>();
        uint[] uids = [0, 1, 999, 1000, 1001, 1500, 65534, uint.MaxValue];
        uint[] bits = [0, 1, 2, 3, 0x400, 0x800, 0xC00, 0x8000, uint.MaxValue];
        foreach (var u in uids) foreach (var f in bits) foreach (var n in new ulong[] { 0, 1, 7, 42, ulong.MaxValue })
            inputs.Add(new() { Opcode = 14, Uid = u, Gid = u ^ 5, Pid = u, NodeId = n, Flags = f, Mode = f });
        var rng = new Random(7);
        for (var i = 0; i < 300; i++)
            inputs.Add(new() { Opcode = (uint)rng.Next(50), Uid = (uint)rng.Next(995, 1010), Gid = (uint)rng.Next(), Pid = (uint)rng.Next(),
                               NodeId = (ulong)rng.Next(0, 50), Flags = (uint)rng.Next(), Mode = (uint)rng.Next() });
        return inputs;
    }

    [Fact]
    public unsafe void Checks_fast_path_and_deny_rules_agree_with_the_kernel_over_the_same_maps()
    {
        Shell.Run("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
        using var kernel = new BpfTestRun(ObjectPath);
        var writers = kernel.Map<uint, WriterGrant>("Writers");
        var pinned = kernel.Map<ulong, FuseAttrOut>("PinnedAttrs");
        ShieldFileSystem.Writers.Clear();
        ShieldFileSystem.PinnedAttrs.Clear();
        try
        {
            // The same contents on both sides, written through each side's own API.
            foreach (var (uid, grant) in new[] { (1000u, new WriterGrant { Allowed = 1 }), (1001u, new WriterGrant { Allowed = 1, SetId = 1 }), (65534u, new WriterGrant()) })
            {
                Assert.True(ShieldFileSystem.Writers.Set(uid, grant));
                Assert.True(writers.Update(uid, grant));
            }
            var attr = new FuseAttrOut { AttrValid = 3, Attr = new FuseAttr { Ino = 42, Size = 12345, Mode = 0x81A4, Nlink = 1, Uid = 7 } };
            Assert.True(ShieldFileSystem.PinnedAttrs.Set(42, attr));
            Assert.True(pinned.Update(42ul, attr));

            var inputs = Inputs();
            foreach (var rule in ShieldFileSystem.CheckRules)
                foreach (var input in inputs)
                    Assert.True(rule.Check(input) == kernel.Check(rule, input), $"{rule.Name} disagrees for uid={input.Uid} flags={input.Flags:x} mode={input.Mode:x}");
            Assert.Contains(inputs, i => ShieldFileSystem.CheckRules[2].Check(i) == 1);  // EPERM occurs: the map's SetId matters
            Assert.Contains(inputs, i => i.Uid == 1001 && (i.Mode & 0xC00) != 0 && ShieldFileSystem.CheckRules[2].Check(i) == 0);

            var fast = ShieldFileSystem.FastPathRules.Single();
            foreach (var input in inputs)
            {
                var managedReply = default(FuseAttrOut);
                var managed = fast.Handle(input, ref managedReply);
                var ctx = new FastPathContext { Request = input, Result = int.MinValue };
                kernel.Run($"test_{fast.Name}", ref ctx);
                Assert.Equal(managed, ctx.Result);
                Assert.True(MemoryMarshal.AsBytes(new ReadOnlySpan<FuseAttrOut>(in managedReply)).SequenceEqual(MemoryMarshal.AsBytes(new ReadOnlySpan<FuseAttrOut>(in ctx.Reply))),
                    $"replies differ for node {input.NodeId}");
            }
            Assert.Contains(inputs, i => i.NodeId == 42);

            // Every [Check] of the class for an operation set, in order, as the LSM programs run them.
            var rng = new Random(3);
            foreach (var input in inputs)
            {
                var ops = (FuseOps)(1u << rng.Next(17));
                var (managed, managedRule) = (0, -1);
                for (var i = 0; i < ShieldFileSystem.CheckRules.Count; i++)
                    if ((ShieldFileSystem.CheckRules[i].Ops & ops) != 0 && (managed = ShieldFileSystem.CheckRules[i].Check(input)) != 0) { managedRule = i; break; }
                var ctx = new ChecksContext { Request = input, Ops = (uint)ops, Result = int.MinValue, Rule = int.MinValue };
                kernel.Run("test_checks", ref ctx);
                Assert.True(managed == ctx.Result && managedRule == ctx.Rule, $"checks disagree for ops={ops} uid={input.Uid}: .NET {managed} (rule {managedRule}), kernel {ctx.Result} (rule {ctx.Rule})");
            }

            // A full map refuses a new key on both sides, and both sides end with the same contents.
            for (uint uid = 2000; ShieldFileSystem.Writers.Count < 256; uid++)
            {
                Assert.True(ShieldFileSystem.Writers.Set(uid, new WriterGrant { Allowed = uid & 1 }));
                Assert.True(writers.Update(uid, new WriterGrant { Allowed = uid & 1 }));
            }
            Assert.False(ShieldFileSystem.Writers.Set(99999, new WriterGrant { Allowed = 1 }));
            Assert.False(writers.Set(99999u, new WriterGrant { Allowed = 1 }));
            Assert.True(ShieldFileSystem.Writers.Set(1000, new WriterGrant()));  // an existing key still updates
            Assert.True(writers.Update(1000u, new WriterGrant()));
            var kernelEntries = writers.Entries().OrderBy(e => e.Key).ToList();
            Assert.Equal(ShieldFileSystem.Writers.Entries().OrderBy(e => e.Key), kernelEntries);
            foreach (var input in inputs)
                Assert.Equal(ShieldFileSystem.CheckRules[0].Check(input), kernel.Check(ShieldFileSystem.CheckRules[0], input));
        }
        finally
        {
            ShieldFileSystem.Writers.Clear();
            ShieldFileSystem.PinnedAttrs.Clear();
        }
    }

    [Fact]
    public void A_bound_kernel_map_is_the_one_table_the_daemon_and_the_programs_share()
    {
        using var obj = BpfObject.Open(ObjectPath);
        foreach (var p in obj.Programs) p.Autoload = p.Section == "syscall";
        obj.Load();
        ShieldFileSystem.Writers.Clear();
        ShieldFileSystem.Writers.Set(1234, new WriterGrant { Allowed = 1 });
        ShieldFileSystem.BindKernelMaps(obj);
        try
        {
            Assert.True(ShieldFileSystem.Writers.IsBound);
            var kernel = obj.Map<uint, WriterGrant>("Writers");
            Assert.True(kernel.TryLookup(1234u, out var moved) && moved.Allowed == 1);  // moved in at Bind
            Assert.True(kernel.Update(77u, new WriterGrant { Allowed = 1 }));
            Assert.Equal(1u, ShieldFileSystem.Writers.GetValueOrDefault(77).Allowed);   // the daemon sees the kernel's table
        }
        finally
        {
            ShieldFileSystem.Writers.Unbind();
            ShieldFileSystem.PinnedAttrs.Unbind();
            ShieldFileSystem.Writers.Clear();
        }
        Assert.False(ShieldFileSystem.Writers.IsBound);
    }

    [Fact]
    public void Hide_and_deny_rules_hold_on_a_real_mount()
    {
        Directory.CreateDirectory(Path.Combine(m.Source, "keep"));
        File.WriteAllText(Path.Combine(m.Source, "keep", "a"), "kept");
        File.WriteAllText(Path.Combine(m.Source, ".secret"), "hidden");
        File.WriteAllText(Path.Combine(m.Source, "plain"), "plain");

        Assert.DoesNotContain(".secret", Directory.GetFileSystemEntries(m.Root).Select(Path.GetFileName));
        Assert.Contains("plain", Directory.GetFileSystemEntries(m.Root).Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(m.Root, ".secret")));
        Assert.Equal(-Errno.ENOENT, Posix.LStat(Path.Combine(m.Root, ".secret"), out _));
        Assert.Throws<UnauthorizedAccessException>(() => File.WriteAllText(Path.Combine(m.Root, "keep", ".secret"), "x"));
        Assert.Throws<UnauthorizedAccessException>(() => File.Move(Path.Combine(m.Root, "plain"), Path.Combine(m.Root, ".secret")));

        Assert.Throws<UnauthorizedAccessException>(() => File.Delete(Path.Combine(m.Root, "keep", "a")));
        Assert.Throws<UnauthorizedAccessException>(() => File.Move(Path.Combine(m.Root, "keep", "a"), Path.Combine(m.Root, "moved")));
        Assert.Equal("kept", File.ReadAllText(Path.Combine(m.Root, "keep", "a")));
        File.WriteAllText(Path.Combine(m.Root, "keep", "new"), "writable, not removable");
        Assert.Throws<UnauthorizedAccessException>(() => File.Delete(Path.Combine(m.Root, "keep", "new")));
        File.Delete(Path.Combine(m.Root, "plain"));   // outside keep/ root may remove
        Directory.CreateDirectory(Path.Combine(m.Root, "keep", "scratch"));
        File.WriteAllText(Path.Combine(m.Root, "keep", "scratch", "t"), "temporary");
        File.Delete(Path.Combine(m.Root, "keep", "scratch", "t"));  // the [Allow] before the [Deny]
        Assert.Equal(-Errno.EACCES, Posix.RmDir(Path.Combine(m.Root, "keep", "scratch")));          // the exception is for its files
        Assert.False(File.Exists(Path.Combine(m.Source, "plain")));

        // Only root and the writers table may change things: nobody is refused, then allowed once granted.
        var (code, output) = Shell.Run($"touch '{m.Root}/by-nobody'", asUser: CliProcess.Nobody);
        Assert.True(code != 0 && output.Contains("Permission denied"), output);
        Shell.Run($"chmod 0777 '{m.Root}'");
        ShieldFileSystem.Writers.Set(CliProcess.Nobody, new WriterGrant { Allowed = 1 });
        try
        {
            (code, output) = Shell.Run($"touch '{m.Root}/by-nobody'", asUser: CliProcess.Nobody);
            Assert.True(code == 0, output);
        }
        finally { ShieldFileSystem.Writers.Clear(); }
    }

    [Fact]
    public void Each_rule_runs_where_the_probe_allows_and_its_refusals_are_counted_for_stats()
    {
        var offload = m.Session.Offload!;
        var plan = offload.Plan(m.Session.Connection).ToDictionary(c => c.Rules);
        Assert.True(plan["caching"].InKernel);
        Assert.Equal("kernel (FUSE passthrough)", plan["[Passthrough]"].Where);
        var lsm = Kernel.KernelCapabilities.Has(Kernel.KernelCapabilities.ProbeBpf(), "BPF LSM");
        Assert.StartsWith(lsm ? "kernel (BPF LSM: 13 programs of ExtFuse.Samples.Shield.ShieldFileSystem.bpf.o)" : "daemon (no BPF LSM:", plan["[Check] [Deny] [Allow] [Hide]"].Where);
        Assert.Equal(lsm, plan["[Check] [Deny] [Allow] [Hide]"].InKernel);
        Assert.StartsWith("daemon, after the kernel's attribute cache (no ExtFUSE program type", plan["[FastPath] GetAttr"].Where);
        Assert.Equal(offload.Statistics is not null, plan["statistics"].InKernel);

        Directory.CreateDirectory(Path.Combine(m.Source, "keep"));
        File.WriteAllText(Path.Combine(m.Source, "keep", "counted"), "x");
        Shell.Run($"chmod 0777 '{m.Source}/keep'");   // so the kernel lets nobody try, and the rule decides
        Dictionary<string, ulong> Hits() => offload.RuleHits().ToDictionary(h => h.Rule, h => h.Hits);
        var before = Hits();
        Assert.Equal(["WritersOnly", "WriteOpens", "SetIdFromGrantedOnly", "[Passthrough] **/*.bin", "[Allow] Unlink keep/scratch/*", "[Deny] Unlink, RmDir, Rename keep/**", "[Hide] **/.secret"], before.Keys);

        Assert.Throws<UnauthorizedAccessException>(() => File.Delete(Path.Combine(m.Root, "keep", "counted")));
        Assert.Throws<UnauthorizedAccessException>(() => File.Delete(Path.Combine(m.Root, "keep", "counted")));
        var (code, _) = Shell.Run($"touch '{m.Root}/keep/by-nobody-{Guid.NewGuid():N}'", asUser: CliProcess.Nobody);
        Assert.NotEqual(0, code);
        var after = Hits();
        Assert.Equal(before["[Deny] Unlink, RmDir, Rename keep/**"] + 2, after["[Deny] Unlink, RmDir, Rename keep/**"]);
        Assert.True(after["WritersOnly"] > before["WritersOnly"] || after["WriteOpens"] > before["WriteOpens"], string.Join(", ", after));
        Assert.Equal(before["[Passthrough] **/*.bin"], after["[Passthrough] **/*.bin"]);   // not a refusal rule

        if (offload.Statistics is null) return;
        // The same counters through the pins, as `extfuse stats` reads them from another process.
        using var pinned = Kernel.FuseStatistics.OpenPinned(m.Session.Mount!.ConnectionId)!;
        Assert.Equal(after.Select(kv => (kv.Key, kv.Value)), pinned.Rules().Select(r => (r.Rule, r.Hits)));
        var (cliCode, output) = CliProcess.Run(["stats", m.Root]);
        Assert.True(cliCode == 0, output);
        Assert.Matches($@"(?m)^rule \[Deny\] Unlink, RmDir, Rename keep/\*\*\s+{after["[Deny] Unlink, RmDir, Rename keep/**"]} refused$", output);
    }

    [Fact]
    public void Passthrough_files_are_served_by_the_kernel_and_pinned_attributes_by_the_fast_path()
    {
        var fs = (ShieldFileSystem)m.Fs;
        var data = new byte[1 << 20];
        new Random(5).NextBytes(data);
        File.WriteAllBytes(Path.Combine(m.Source, "big.bin"), data);
        File.WriteAllBytes(Path.Combine(m.Source, "small.txt"), data[..4096]);
        Assert.True(m.Session.Connection.Has(InitFlags.Passthrough), $"passthrough not negotiated: {m.Session.Connection.Flags}");

        var readsBefore = m.Session.RequestsOf(FuseOpcode.Read);
        using (var f = new FileStream(Path.Combine(m.Root, "big.bin"), FileMode.Open, FileAccess.ReadWrite))
        {
            Assert.Equal(1, fs.BackedInodes);
            var back = new byte[data.Length];
            f.ReadExactly(back);
            Assert.Equal(data, back);
            f.Position = 10;
            f.Write("through the kernel"u8);
        }
        Assert.Equal(readsBefore, m.Session.RequestsOf(FuseOpcode.Read));   // no READ reached the daemon
        Assert.Equal("through the kernel", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(Path.Combine(m.Source, "big.bin")), 10, 18));
        Assert.True(SpinWait.SpinUntil(() => fs.BackedInodes == 0, TimeSpan.FromSeconds(5)), "the backing id outlived the last open");

        Assert.Equal(data[..4096], File.ReadAllBytes(Path.Combine(m.Root, "small.txt")));  // not *.bin: the daemon serves it
        Assert.True(m.Session.RequestsOf(FuseOpcode.Read) > readsBefore);

        // Pin attributes for small.txt's node. The kernel holds its attributes for 5 s ([CacheAttr]);
        // the generated FastPathNodeMaps make the session drop them when the map entry changes, so
        // the very next stat is answered from the map, and so is the one after the entry is replaced.
        Assert.Equal(0, Posix.LStat(Path.Combine(m.Root, "small.txt"), out var st));
        var node = fs.FindByStableIno(st.Ino)!;
        try
        {
            var served = m.Session.FastPathServed;
            ShieldFileSystem.PinnedAttrs.Set(node.NodeId, new FuseAttrOut { AttrValid = 0, Attr = new FuseAttr { Ino = st.Ino, Size = 777, Mode = st.Mode, Nlink = 1 } });
            Assert.Equal(0, Posix.LStat(Path.Combine(m.Root, "small.txt"), out var pinnedStat));
            Assert.Equal(777, pinnedStat.Size);
            Assert.True(m.Session.FastPathServed > served);
            ShieldFileSystem.PinnedAttrs.Set(node.NodeId, new FuseAttrOut { AttrValid = 60, Attr = new FuseAttr { Ino = st.Ino, Size = 778, Mode = st.Mode, Nlink = 1 } });
            Assert.Equal(0, Posix.LStat(Path.Combine(m.Root, "small.txt"), out pinnedStat));
            Assert.Equal(778, pinnedStat.Size);
            ShieldFileSystem.PinnedAttrs.Remove(node.NodeId);   // back to the file's own attributes, though the kernel was told 60 s
            Assert.Equal(0, Posix.LStat(Path.Combine(m.Root, "small.txt"), out pinnedStat));
            Assert.Equal(st.Size, pinnedStat.Size);
            if (m.Session.Offload!.Statistics is not null)
            {
                using var pinned = Kernel.FuseStatistics.OpenPinned(m.Session.Mount!.ConnectionId)!;
                Assert.Equal((ulong)m.Session.FastPathServed, pinned.FastPathServed().Single(f => f.Opcode == FuseOpcode.GetAttr).Served);
            }
        }
        finally { ShieldFileSystem.PinnedAttrs.Clear(); }
    }

    [Fact]
    public unsafe void Passthrough_serves_mmap_O_DIRECT_and_splice_without_the_daemon()
    {
        var fs = (ShieldFileSystem)m.Fs;
        var data = new byte[1 << 20];
        new Random(11).NextBytes(data);
        var name = $"io-{Guid.NewGuid():N}.bin";
        File.WriteAllBytes(Path.Combine(m.Source, name), data);
        var path = Path.Combine(m.Root, name);
        long Served() => m.Session.RequestsOf(FuseOpcode.Read) + m.Session.RequestsOf(FuseOpcode.Write);
        var before = Served();

        // mmap: reads fault pages in from the backing file, stores reach it at msync.
        using (var map = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.ReadWrite))
        using (var view = map.CreateViewAccessor())
        {
            Assert.Equal(1, fs.BackedInodes);
            var back = new byte[data.Length];
            view.ReadArray(0, back, 0, back.Length);
            Assert.Equal(data, back);
            view.WriteArray(4096, "mapped"u8.ToArray(), 0, 6);
            view.Flush();
        }
        Assert.Equal("mapped", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(Path.Combine(m.Source, name)), 4096, 6));

        // O_DIRECT, with aligned buffers: straight to the backing file, around every page cache.
        var buf = (byte*)NativeMemory.AlignedAlloc(65536, 4096);
        try
        {
            var fd = Posix.Open(path, Posix.O_RDWR | Posix.O_DIRECT);
            Assert.True(fd >= 0, $"open O_DIRECT: {fd}");
            try
            {
                var span = new Span<byte>(buf, 65536);
                Assert.Equal(65536, Posix.PRead(fd, span, 65536));
                Assert.True(span.SequenceEqual(data.AsSpan(65536, 65536)));
                span.Fill(0x5A);
                Assert.Equal(65536, Posix.PWrite(fd, span, 131072));
            }
            finally { Posix.Close(fd); }
        }
        finally { NativeMemory.AlignedFree(buf); }
        Assert.All(File.ReadAllBytes(Path.Combine(m.Source, name)).AsSpan(131072, 65536).ToArray(), b => Assert.Equal(0x5A, b));

        // splice: file -> pipe -> another offset of the same file.
        var (pr, pw) = Posix.Pipe();
        try
        {
            var fd = Posix.Open(path, Posix.O_RDWR);
            try
            {
                Assert.Equal(16384, Posix.Splice(fd, 0, pw, -1, 16384));
                Assert.Equal(16384, Posix.Splice(pr, -1, fd, 524288, 16384));
            }
            finally { Posix.Close(fd); }
        }
        finally { Posix.Close(pr); Posix.Close(pw); }
        var final = File.ReadAllBytes(Path.Combine(m.Source, name));
        Assert.True(final.AsSpan(524288, 16384).SequenceEqual(final.AsSpan(0, 16384)));

        Assert.Equal(before, Served());   // none of it was a READ or WRITE request to the daemon
        Assert.True(SpinWait.SpinUntil(() => fs.BackedInodes == 0, TimeSpan.FromSeconds(5)), "the backing id outlived the last open");
    }

    [Fact]
    public void The_build_emits_both_targets_and_every_syscall_program_passes_the_verifier()
    {
        Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, ShieldFileSystem.ExtFuseBpfObject)));
        var verdicts = BpfVerifier.VerifyEach(ObjectPath);
        Assert.Contains(verdicts, v => v.Section == "lsm/file_open");
        Assert.All(verdicts.Where(v => v.Section == "syscall"), v => Assert.True(v.Accepted, $"{v.Program}: {v.Reason}\n{v.Log}"));
        Assert.Equal(["test_PinnedAttributes", "test_SetIdFromGrantedOnly", "test_WriteOpens", "test_WritersOnly", "test_checks", "test_policy"],
            verdicts.Where(v => v.Section == "syscall").Select(v => v.Program).Order());
        // LSM programs are verified where the kernel has BPF LSM; elsewhere they are skipped, not rejected.
        Assert.All(verdicts.Where(v => v.Section.StartsWith("lsm/")), v => Assert.True(v.Accepted || v.Skipped, $"{v.Program}: {v.Reason}\n{v.Log}"));
        var extfuse = BpfVerifier.VerifyEach(Path.Combine(AppContext.BaseDirectory, ShieldFileSystem.ExtFuseBpfObject));
        Assert.Contains(extfuse, v => v.Section == "extfuse" && v.Skipped);
        Assert.Contains(extfuse, v => v.Section == "extfuse/GETATTR");
    }
}
