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
