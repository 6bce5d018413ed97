using System.Diagnostics;
using ExtFuse.Cli.Fsx;
using ExtFuse.Protocol;
using ExtFuse.Samples.Memory;
using ExtFuse.Session;
using ExtFuse.Tests.Support;
using static ExtFuse.Tests.Support.Posix;

namespace ExtFuse.Tests;

/// <summary>
/// FUSE over io_uring on a real mount: requests really take the ring, asynchronous replies from
/// other threads, INTERRUPT (which still comes through /dev/fuse) reaching a request that came over
/// the ring, the random model check, and unmount under load. The POSIX suite runs on this transport
/// too (MemoryFsOverIoUringTests, StackFsOverIoUringTests).
/// </summary>
public class IoUringTests
{
    [Fact]
    public void Requests_and_replies_travel_over_the_ring()
    {
        using var m = new UringMemoryMount();
        var dir = m.NewDir("ring");
        var before = m.Session.RequestsOverIoUring;
        var writesBefore = m.Session.RequestsOf(FuseOpcode.Write);
        var data = new byte[256 * 1024];
        Random.Shared.NextBytes(data);
        for (var i = 0; i < 50; i++)
        {
            var path = Path.Combine(dir, $"f{i}");
            File.WriteAllBytes(path, data);
            Assert.Equal(data, File.ReadAllBytes(path));
        }
        var overRing = m.Session.RequestsOverIoUring - before;
        var writes = m.Session.RequestsOf(FuseOpcode.Write) - writesBefore;
        Assert.True(writes >= 50, $"{writes} WRITE requests for 50 files");
        // Everything but FORGET and INTERRUPT comes over the ring: at least a create, a write and
        // a lookup or open per file.
        Assert.True(overRing >= 150, $"only {overRing} requests came over io_uring");
        Assert.Equal(FuseTransport.IoUring, m.Session.Transport);
    }

    /// <summary>GETATTR answered from the thread pool: the reply commits the ring entry from another thread.</summary>
    private sealed class AsyncAttrFs : MemoryFileSystem
    {
        public override void GetAttr(FuseRequest r, ulong nodeId, ulong? fh) =>
            r.Run(Task.Run(async () =>
            {
                await Task.Yield();
                base.GetAttr(r, nodeId, fh);
            }));
    }

    [Fact]
    public void Asynchronous_replies_from_other_threads_commit_their_entries()
    {
        using var m = new MemoryMount(new AsyncAttrFs(), ioUring: true);
        var dir = m.NewDir("async");
        for (var i = 0; i < 8; i++) File.WriteAllText(Path.Combine(dir, $"f{i}"), new string('x', i));
        var before = m.Session.RequestsOf(FuseOpcode.GetAttr);
        // More concurrent callers than entries per queue: entries must come back to be reused.
        Parallel.For(0, 32, new ParallelOptions { MaxDegreeOfParallelism = 16 }, t =>
        {
            for (var k = 0; k < 50; k++)
            {
                var i = (t + k) % 8;
                Assert.Equal(0, LStat(Path.Combine(dir, $"f{i}"), out var st));
                Assert.Equal(i, (int)st.Size);
            }
        });
        Assert.True(m.Session.RequestsOf(FuseOpcode.GetAttr) - before > 0, "no GETATTR reached the daemon: the attribute cache answered everything");
    }

    /// <summary>LOOKUP of "slow" waits until the kernel interrupts it (a synchronous request: a signal to the caller sends INTERRUPT).</summary>
    private sealed class SlowLookupFs : MemoryFileSystem
    {
        public readonly ManualResetEventSlim Entered = new();
        public readonly ManualResetEventSlim Cancelled = new();

        public override void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
        {
            if (!name.SequenceEqual("slow"u8)) { base.Lookup(r, parent, name); return; }
            r.Run(WaitForInterrupt(r));
        }

        private async Task WaitForInterrupt(FuseRequest r)
        {
            Entered.Set();
            try { await Task.Delay(Timeout.Infinite, r.CancellationToken); }
            finally { if (r.IsInterrupted) Cancelled.Set(); }
        }
    }

    [Fact]
    public void Interrupt_from_the_device_reaches_a_request_that_came_over_the_ring()
    {
        var fs = new SlowLookupFs();
        using var m = new MemoryMount(fs, ioUring: true);
        var dir = m.NewDir("intr");
        using var caller = Process.Start(new ProcessStartInfo("stat", Path.Combine(dir, "slow")) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        Assert.True(fs.Entered.Wait(TimeSpan.FromSeconds(10)), "the LOOKUP never reached the daemon");
        caller.Kill();
        Assert.True(fs.Cancelled.Wait(TimeSpan.FromSeconds(10)), "INTERRUPT did not cancel the handler");
        Assert.True(caller.WaitForExit(10_000), "the caller did not end after its request was interrupted");
        // The entry that carried the interrupted LOOKUP was committed and serves again.
        File.WriteAllText(Path.Combine(dir, "after"), "after");
        Assert.Equal("after", File.ReadAllText(Path.Combine(dir, "after")));
    }

    [Theory]
    [InlineData("memory", 11)]
    [InlineData("stack", 12)]
    public void The_model_check_passes_over_io_uring(string kind, int seed)
    {
        using TestMount m = kind == "memory" ? new UringMemoryMount() : new UringStackMount();
        var native = Directory.CreateTempSubdirectory("extfuse-fsx-native-").FullName;
        try
        {
            var result = new ModelChecker(m.NewDir("fsx"), native).Run(seed, 2000);
            Assert.True(result.Passed, result.Report());
        }
        finally { Directory.Delete(native, true); }
        Assert.True(m.Session.RequestsOverIoUring > 1000, $"{m.Session.RequestsOverIoUring} requests over io_uring");
    }

    [Fact]
    public void Unmount_under_load_ends_every_queue()
    {
        var m = new UringMemoryMount();
        var dir = m.NewDir("load");
        using var stop = new CancellationTokenSource();
        var errors = 0;
        var writers = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            var buf = new byte[64 * 1024];
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                try { File.WriteAllBytes(Path.Combine(dir, $"w{t}-{i % 16}"), buf); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { Interlocked.Increment(ref errors); break; }
            }
        }) { IsBackground = true }).ToList();
        writers.ForEach(w => w.Start());
        Thread.Sleep(300);
        var served = m.Session.RequestsOverIoUring;
        var watch = Stopwatch.StartNew();
        m.Dispose(); // unmounts while the writers run
        Assert.True(m.Session.Completion.IsCompleted, "the io_uring queues did not end with the unmount");
        stop.Cancel();
        writers.ForEach(w => Assert.True(w.Join(10_000), "a writer hung on the unmounted file system"));
        Assert.True(served > 50, $"only {served} requests were served over io_uring before the abort");
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(m.Root));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"teardown took {watch.Elapsed}");
    }
}
