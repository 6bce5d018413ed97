using ExtFuse.Declarative;
using ExtFuse.Mounting;
using ExtFuse.Samples.Guarded;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>The declarative sample: [Check] rules enforced on a real mount, and its .bpf.o agreeing with them.</summary>
public sealed class GuardedMount() : TestMount(new GuardedFileSystem(),
    new MountOptions { FsName = "extfuse-test", Subtype = "guarded", DefaultPermissions = true, AllowOther = true })
{
    public override int NodeCount() => ((GuardedFileSystem)Fs).NodeCount;
}

public class GuardedFsTests(GuardedMount m) : IClassFixture<GuardedMount>
{
    private static (int Code, string Output) As(uint uid, string command) => Shell.Run(command, asUser: uid);

    [Fact]
    public void Rules_decide_who_may_change_what()
    {
        Assert.Equal(0, Posix.Chmod(m.Root, 0x1FF));
        var d = m.NewDir("shared");
        Assert.Equal(0, Posix.Chmod(d, 0x1FF));
        File.WriteAllText(Path.Combine(d, "notes"), "root wrote this\n");
        Assert.Equal(0, Posix.Chmod(Path.Combine(d, "notes"), 0x1B6));

        // A writer (uid 1500) creates, writes, renames and removes.
        var (code, output) = As(1500, $"cd '{d}' && echo hi > w && mv w w2 && echo more >> notes && mkdir sub && rm w2 && rmdir sub");
        Assert.True(code == 0, output);
        Assert.Equal("root wrote this\nmore\n", File.ReadAllText(Path.Combine(d, "notes")));

        // Anyone else (nobody) reads, but every change is refused with EACCES, though the mode bits would allow it.
        (code, output) = As(CliProcess.Nobody, $"cat '{d}/notes'");
        Assert.True(code == 0, output);
        foreach (var change in new[] { $"touch '{d}/x'", $"mkdir '{d}/y'", $"rm '{d}/notes'", $"mv '{d}/notes' '{d}/n2'", $"echo x >> '{d}/notes'", $"ln -s a '{d}/l'" })
        {
            (code, output) = As(CliProcess.Nobody, change);
            Assert.True(code != 0 && output.Contains("Permission denied"), $"'{change}' should be refused: {output}");
        }
        Assert.Equal("root wrote this\nmore\n", File.ReadAllText(Path.Combine(d, "notes")));

        // Set-id bits: root may, a writer may not.
        (code, output) = As(1500, $"cd '{d}' && touch mine && chmod u+s mine");
        Assert.True(code != 0 && output.Contains("Operation not permitted"), output);
        Assert.Equal(0, Posix.Chmod(Path.Combine(d, "notes"), 0x9B6));
    }

    /// <summary>
    /// Where the kernel has BPF LSM (the kernel lab), the class's translated [Check] methods run in
    /// its LSM programs and a refusal never reaches the daemon; elsewhere the daemon answers it.
    /// Both are audited alike.
    /// </summary>
    [Fact]
    [Trait("Category", "KernelLab")]
    public void A_checks_refusal_is_answered_in_the_kernel_where_the_kernel_can()
    {
        Assert.Equal(0, Posix.Chmod(m.Root, 0x1FF));
        var d = m.NewDir("kernel");
        Assert.Equal(0, Posix.Chmod(d, 0x1FF));
        var inKernel = m.Session.Offload?.LsmPolicy is not null;
        var records = new System.Collections.Concurrent.ConcurrentQueue<ExtFuse.Policy.AuditRecord>();
        m.Session.Audit.Recorded += records.Enqueue;
        try
        {
            Assert.Equal(0, As(CliProcess.Nobody, $"ls '{d}'").Code);   // the directory is looked up
            var creates = m.Session.RequestsOf(Protocol.FuseOpcode.Create);
            var (code, output) = As(CliProcess.Nobody, $"touch '{d}/x'");
            Assert.True(code != 0 && output.Contains("Permission denied"), output);
            Assert.True(SpinWait.SpinUntil(() => records.Any(r => r.Rule == "WritersOnly"), TimeSpan.FromSeconds(5)), "no audit record");
            var record = records.First(r => r.Rule == "WritersOnly");
            Assert.Equal((inKernel ? "kernel" : "daemon", CliProcess.Nobody, 13), (record.By, record.Uid, record.Errno));
            if (inKernel) Assert.Equal(creates, m.Session.RequestsOf(Protocol.FuseOpcode.Create));
            else Assert.True(m.Session.RequestsOf(Protocol.FuseOpcode.Create) > creates);
        }
        finally { m.Session.Audit.Recorded -= records.Enqueue; }
    }

    [Fact]
    public void Cache_rules_set_the_kernel_cache_timeouts()
    {
        var fs = new GuardedFileSystem();
        Assert.Equal(TimeSpan.FromSeconds(10), fs.EntryTimeout);
        Assert.Equal(TimeSpan.FromSeconds(10), fs.AttrTimeout);
    }

    [Fact]
    public void The_sample_builds_a_bpf_object_that_agrees_with_its_rules()
    {
        // The object travels to every project that references GuardedFs, this test project included.
        var obj = Path.Combine(AppContext.BaseDirectory, GuardedFileSystem.BpfObject);
        Assert.True(File.Exists(obj), $"no {obj} next to the referencing assembly");
        Shell.Run("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
        using var kernel = new BpfTestRun(obj);
        uint[] uids = [0, 1, 999, 1000, 1500, 1999, 2000, 65534, uint.MaxValue];
        uint[] flags = [0, 1, 2, 3, 0x8000, 0x8241];
        uint[] modes = [0, 0x81A4, 0x89ED, 0x85ED, 0x4000 | 0x1ED, 0xC00];
        var seen = new HashSet<int>();
        foreach (var rule in GuardedFileSystem.CheckRules)
            foreach (var uid in uids) foreach (var f in flags) foreach (var mode in modes)
            {
                var req = new CheckRequest { Opcode = 35, Uid = uid, Gid = uid, Pid = 1, NodeId = 7, Flags = f, Mode = mode };
                var inKernel = kernel.Check(rule, req);
                Assert.Equal(rule.Check(req), inKernel);
                seen.Add(inKernel);
            }
        Assert.Equal([0, 1, 13], seen.Order());
    }
}
