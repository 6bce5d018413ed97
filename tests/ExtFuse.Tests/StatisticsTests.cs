using ExtFuse.Kernel;
using ExtFuse.Protocol;
using ExtFuse.Tests.Support;
using static ExtFuse.Tests.Support.Posix;

namespace ExtFuse.Tests;

/// <summary>tp_btf statistics on a real mount: the kernel's counts per opcode are the daemon's.</summary>
public class StatisticsTests
{
    private static readonly FuseOpcode[] Watched =
    [
        FuseOpcode.Lookup, FuseOpcode.GetAttr, FuseOpcode.MkDir, FuseOpcode.Create, FuseOpcode.Open, FuseOpcode.Read,
        FuseOpcode.Write, FuseOpcode.Flush, FuseOpcode.Release, FuseOpcode.Unlink, FuseOpcode.SetAttr,
    ];

    [Fact]
    public void Kernel_counts_per_opcode_match_the_daemons_and_every_request_is_timed()
    {
        using var m = new MemoryMount();
        using var stats = FuseStatistics.Attach(m.Session.Mount!.ConnectionId);
        var before = Watched.ToDictionary(o => o, m.Session.RequestsOf);

        var d = m.NewDir();
        for (var i = 0; i < 20; i++)
        {
            var f = Path.Combine(d, $"f{i}");
            var fd = Open(f, O_CREAT | O_RDWR);
            Assert.Equal(4096, PWrite(fd, new byte[4096], 0));
            Assert.Equal(0, FChmod(fd, 0x1A4));
            Close(fd);
            fd = Open(f, O_RDONLY);
            Assert.Equal(4096, PRead(fd, new byte[4096], 0));
            Close(fd);
            if (i % 2 == 0) Assert.Equal(0, Unlink(f));
        }

        // RELEASE is sent after close returns: wait until both sides have seen everything.
        Dictionary<FuseOpcode, long> daemon = [];
        Dictionary<FuseOpcode, ulong> kernel = [];
        var deadline = DateTime.UtcNow.AddSeconds(5);
        do
        {
            Thread.Sleep(50);
            daemon = Watched.ToDictionary(o => o, o => m.Session.RequestsOf(o) - before[o]);
            var snapshot = stats.Snapshot().ToDictionary(s => s.Opcode);
            kernel = Watched.ToDictionary(o => o, o => snapshot.TryGetValue(o, out var s) ? s.Sent : 0);
        } while (Watched.Any(o => (ulong)daemon[o] != kernel[o]) && DateTime.UtcNow < deadline);

        foreach (var op in Watched) Assert.True((ulong)daemon[op] == kernel[op], $"{op}: daemon saw {daemon[op]}, kernel sent {kernel[op]}");
        Assert.True(kernel[FuseOpcode.Create] == 20 && kernel[FuseOpcode.Unlink] == 10, string.Join(", ", kernel));
        Assert.True(kernel[FuseOpcode.Write] >= 20);
        foreach (var s in stats.Snapshot().Where(s => Watched.Contains(s.Opcode)))
        {
            Assert.Equal(s.Sent, s.Completed);
            Assert.Equal(s.Completed, (ulong)s.Histogram.Sum(b => (long)b));
            Assert.True(s.MeanLatency > TimeSpan.Zero, $"{s.Opcode}: no latency measured");
        }
    }

    [Fact]
    public void A_daemon_counts_from_its_mount_pins_the_counts_and_removes_the_pins_at_unmount()
    {
        uint connection;
        string pins;
        using (var m = new MemoryMount())
        {
            connection = m.Session.Mount!.ConnectionId;
            pins = FuseStatistics.PinDirectory(connection);
            Assert.NotNull(m.Session.Offload!.Statistics);
            Assert.True(Directory.Exists(pins), $"no pins at {pins}");
            var d = m.NewDir();
            for (var i = 0; i < 5; i++) File.WriteAllText(Path.Combine(d, $"f{i}"), "x");

            // Another reader of the pins (as `extfuse stats` in another process) sees the counts since mount.
            using var pinned = FuseStatistics.OpenPinned(connection);
            Assert.NotNull(pinned);
            Assert.Equal(Environment.ProcessId, pinned.OwnerPid);
            Assert.True(pinned.Counting > TimeSpan.Zero && pinned.Counting < TimeSpan.FromMinutes(5), pinned.Counting.ToString());
            var deadline = DateTime.UtcNow.AddSeconds(5);
            Dictionary<FuseOpcode, ulong> kernel;
            do
            {
                Thread.Sleep(20);
                kernel = pinned.Snapshot().ToDictionary(s => s.Opcode, s => s.Sent);
            } while (Watched.Any(o => (ulong)m.Session.RequestsOf(o) != kernel.GetValueOrDefault(o)) && DateTime.UtcNow < deadline);
            foreach (var op in Watched) Assert.True((ulong)m.Session.RequestsOf(op) == kernel.GetValueOrDefault(op), $"{op}: daemon {m.Session.RequestsOf(op)}, kernel {kernel.GetValueOrDefault(op)}");
            Assert.Equal(5ul, kernel[FuseOpcode.Create]);

            // Slow-request events, from the ring buffer of the pinned maps: with a 1 ns threshold, every request.
            var slow = new List<SlowRequest>();
            var tid = 0;
            using (var events = pinned.WatchSlowRequests(TimeSpan.FromTicks(1), slow.Add))
            {
                var t = new Thread(() => { tid = gettid(); for (var i = 0; i < 3; i++) File.WriteAllText(Path.Combine(d, $"g{i}"), "y"); });
                t.Start();
                t.Join();
                deadline = DateTime.UtcNow.AddSeconds(5);
                while (slow.Count(r => r.Opcode == FuseOpcode.Create) < 3 && DateTime.UtcNow < deadline) events.Poll(TimeSpan.FromMilliseconds(100));
            }
            Assert.Equal(3, slow.Count(r => r.Opcode == FuseOpcode.Create));
            Assert.All(slow, r => Assert.True(r.Latency > TimeSpan.Zero && r.Unique != 0));
            Assert.All(slow.Where(r => r.Opcode == FuseOpcode.Create), r => Assert.Equal((uint)tid, r.Pid));   // the calling thread, as FUSE reports it
        }
        Assert.False(Directory.Exists(pins), "the daemon left its pins behind");
        Assert.Null(FuseStatistics.OpenPinned(connection));
    }

    [Fact]
    public void A_daemon_removes_its_own_pins_not_those_of_a_later_mount_with_the_same_connection_id()
    {
        // The kernel can give a connection id to the next mount before the last one's daemon has cleaned up.
        const uint connection = 0x7fff_e7f0;   // no mount here has it
        var pins = FuseStatistics.PinDirectory(connection);
        using var earlier = FuseStatistics.Attach(connection);
        earlier.Pin(Environment.ProcessId);
        using var later = FuseStatistics.Attach(connection);
        later.Pin(Environment.ProcessId);

        earlier.Dispose();
        Assert.True(Directory.Exists(pins), "the earlier daemon removed the later one's pins");
        using (var pinned = FuseStatistics.OpenPinned(connection)) Assert.NotNull(pinned);
        later.Dispose();
        Assert.False(Directory.Exists(pins), "the later daemon left its pins behind");
    }

    [System.Runtime.InteropServices.DllImport("libc")] private static extern int gettid();

    [Fact]
    public void Stats_of_an_ExtFuse_daemon_prints_the_totals_since_mount_with_its_rule_counters()
    {
        using var m = new MemoryMount();
        var d = m.NewDir();
        for (var i = 0; i < 4; i++) File.WriteAllText(Path.Combine(d, $"f{i}"), "x");
        var (code, output) = CliProcess.Run(["stats", m.Root]);
        Assert.True(code == 0, output);
        Assert.Contains($"since mount by daemon {Environment.ProcessId}", output);
        Assert.Matches(@"(?m)^Create\s+4\s", output);
        Assert.Contains("since mount, counted in the kernel", output);
    }

    [Fact]
    public void Without_BPF_the_daemon_mounts_on_the_managed_path_with_one_warning()
    {
        // A normal user gets no bpf(2) here (kernel.unprivileged_bpf_disabled): the daemon's view of a kernel without BPF.
        var dir = Directory.CreateTempSubdirectory("extfuse-nobpf-").FullName;
        Shell.Run($"chown {CliProcess.Nobody}:{CliProcess.Nobody} '{dir}'");
        using var cli = CliProcess.Start(["mount", "memory", dir], asUser: CliProcess.Nobody);
        try
        {
            cli.WaitForOutput("mounted at");
            var (code, output) = Shell.Run($"echo managed > '{dir}/f' && cat '{dir}/f'", asUser: CliProcess.Nobody);
            Assert.True(code == 0 && output == "managed\n", output);
            var warnings = cli.Output.Split('\n').Where(l => l.Contains("warn:")).ToList();
            Assert.True(warnings.Count == 1, cli.Output);
            Assert.Contains("no BPF on this kernel for this daemon (not permitted to a normal user: needs root (CAP_BPF))", warnings[0]);
            Assert.Contains("statistics -> daemon counters only", warnings[0]);
        }
        finally
        {
            cli.Signal(15);
            cli.WaitForExit(20_000);
            Shell.Run($"umount -l '{dir}' 2>/dev/null; rmdir '{dir}'");
        }
    }

    [Fact]
    public void Requests_of_other_mounts_are_not_counted()
    {
        using var watched = new MemoryMount();
        using var other = new MemoryMount();
        using var stats = FuseStatistics.Attach(watched.Session.Mount!.ConnectionId);
        var d = other.NewDir();
        for (var i = 0; i < 10; i++) File.WriteAllText(Path.Combine(d, $"f{i}"), "x");
        Assert.DoesNotContain(stats.Snapshot(), s => s.Opcode == FuseOpcode.Create);
        File.WriteAllText(Path.Combine(watched.NewDir(), "f"), "x");
        Assert.Contains(stats.Snapshot(), s => s.Opcode == FuseOpcode.Create && s.Sent == 1);
    }

    [Fact]
    public void Stats_and_top_show_the_requests_of_any_mount()
    {
        using var m = new MemoryMount();
        using var stats = CliProcess.Start(["stats", m.Root, "--seconds", "3"]);
        using var top = CliProcess.Start(["top", m.Root]);
        stats.WaitForOutput("extfuse: counting the requests to");
        top.WaitForOutput("extfuse: counting the requests to");
        var d = m.NewDir();
        for (var i = 0; i < 7; i++) File.WriteAllText(Path.Combine(d, $"f{i}"), "x");
        Assert.True(stats.WaitForExit(30_000), stats.Output);
        Assert.True(stats.ExitCode == 0, stats.Output);
        Assert.Contains($"{m.Root} (connection {m.Session.Mount!.ConnectionId}):", stats.Output);
        Assert.Matches(@"(?m)^Create\s+7\s+\d+\s+[\d.]+ (us|ms)\s+[\d.]+ (us|ms)\s+[\d.]+ (us|ms)$", stats.Output);

        top.WaitForOutput("Create ");
        top.Signal(2);
        Assert.True(top.WaitForExit(10_000), top.Output);
        Assert.Equal(0, top.ExitCode);
    }

    [Fact]
    public void Stats_of_a_directory_that_is_not_a_FUSE_mount_is_a_clear_error()
    {
        var (code, output) = CliProcess.Run(["stats", "/tmp"]);
        Assert.Equal(1, code);
        Assert.Contains("/tmp is not a FUSE mount point", output);
        (code, output) = CliProcess.Run(["top"]);
        Assert.Equal(2, code);
        Assert.Contains("expected: extfuse top MOUNTPOINT", output);
    }
}
