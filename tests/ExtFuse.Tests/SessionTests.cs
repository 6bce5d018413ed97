using System.Diagnostics;
using System.Text;
using ExtFuse.Mounting;
using ExtFuse.Protocol;
using ExtFuse.Samples.Memory;
using ExtFuse.Session;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>Session behaviour on real mounts: failures, interrupts, asynchronous replies, notifications, abort.</summary>
public class SessionTests
{
    private const int EIO = 5, ENOENT = 2, ENOTCONN = 107;

    private static MemoryMount Mount(RawFileSystem fs, int threads = 4) =>
        new(fs, new MountOptions { FsName = "extfuse-test", Subtype = "scripted", Session = new FuseSessionOptions { Threads = threads } });

    private static bool Eventually(Func<bool> condition, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition()) { if (Environment.TickCount64 > deadline) return false; Thread.Sleep(20); }
        return true;
    }

    [Fact]
    public void A_throwing_handler_answers_EIO_and_the_daemon_keeps_serving()
    {
        var fs = new ScriptedFs();
        using var m = Mount(fs);
        var boom = Path.Combine(m.Root, "boom");
        var fd = Posix.Open(boom, Posix.O_RDONLY);
        Assert.True(fd >= 0);
        Assert.Equal(-EIO, Posix.PRead(fd, new byte[10], 0));
        Posix.Close(fd);
        Assert.Equal("v1", File.ReadAllText(Path.Combine(m.Root, "f")));
    }

    [Fact]
    public void Interrupt_cancels_the_handler_token()
    {
        var fs = new ScriptedFs();
        using var m = Mount(fs);
        using var cat = Process.Start(new ProcessStartInfo("cat", Path.Combine(m.Root, "slow0")) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        Assert.True(Eventually(() => Volatile.Read(ref fs.SlowPending) == 1), "the slow READ never arrived");
        Assert.Equal(0, Kill(cat.Id, 2 /* SIGINT */));
        Assert.True(Eventually(() => Volatile.Read(ref fs.SlowCancelled) == 1), "INTERRUPT did not cancel the handler");
        Assert.True(cat.WaitForExit(10_000), "the interrupted reader did not exit");
        Assert.Equal(0, Volatile.Read(ref fs.SlowPending));
    }

    [Fact]
    public void Asynchronous_handlers_do_not_hold_reader_threads()
    {
        var fs = new ScriptedFs();
        using var m = Mount(fs, threads: 1);
        var cats = Enumerable.Range(0, 3).Select(i =>
            Process.Start(new ProcessStartInfo("cat", Path.Combine(m.Root, $"slow{i}")) { RedirectStandardOutput = true, RedirectStandardError = true })!).ToList();
        try
        {
            Assert.True(Eventually(() => Volatile.Read(ref fs.SlowPending) == 3), $"pending: {fs.SlowPending}");
            // Three requests are still unanswered, yet the single reader serves this one.
            Assert.Equal("v1", ReadBySyscalls(Path.Combine(m.Root, "f")));
        }
        finally
        {
            foreach (var c in cats) { Kill(c.Id, 9); c.WaitForExit(10_000); c.Dispose(); }
        }
        Assert.True(Eventually(() => Volatile.Read(ref fs.SlowPending) == 0), "killed readers' requests were not interrupted");
    }

    [Fact]
    public void Notifications_invalidate_store_and_retrieve()
    {
        var fs = new ScriptedFs();
        using var m = Mount(fs);
        var f = Path.Combine(m.Root, "f");
        var g = Path.Combine(m.Root, "g");

        // INVAL_INODE: cached data and attributes go away. (Plain syscalls: .NET's File APIs ask
        // statx for the birth time, which always goes to the daemon and would refresh the size.)
        Assert.Equal("v1", ReadBySyscalls(f));
        fs.Content = "v2-longer";
        Assert.Equal("v1", ReadBySyscalls(f));                   // served from the kernel's caches
        Assert.Equal(0, m.Session.NotifyInvalInode(ScriptedFs.F, 0, -1));
        Assert.Equal("v2-longer", ReadBySyscalls(f));

        // INVAL_ENTRY: a cached negative lookup goes away.
        Assert.Equal(-ENOENT, Posix.LStat(g, out _));
        fs.GPresent = true;
        Assert.Equal(-ENOENT, Posix.LStat(g, out _));            // the negative entry is cached
        Assert.Equal(0, m.Session.NotifyInvalEntry(1, "g"u8));
        Assert.Equal(0, Posix.LStat(g, out var st));
        Assert.Equal(ScriptedFs.G, st.Ino);

        // DELETE: the entry disappears as if unlinked.
        fs.GPresent = false;
        Assert.Equal(0, Posix.LStat(g, out _));                  // still cached
        Assert.Equal(0, m.Session.NotifyDelete(1, ScriptedFs.G, "g"u8));
        Assert.Equal(-ENOENT, Posix.LStat(g, out _));

        // STORE puts data into the page cache; RETRIEVE reads it back.
        Assert.Equal(0, m.Session.NotifyStore(ScriptedFs.F, 0, "stored!!!"u8));
        Assert.Equal("stored!!!", ReadBySyscalls(f));            // the file system still says v2-longer
        var retrieved = m.Session.NotifyRetrieveAsync(ScriptedFs.F, 0, 9);
        Assert.True(retrieved.Wait(TimeSpan.FromSeconds(10)), "no NOTIFY_REPLY for RETRIEVE");
        Assert.Equal("stored!!!", Encoding.UTF8.GetString(retrieved.Result));

        // Notifications about unknown nodes are reported, not thrown.
        Assert.Equal(ENOENT, m.Session.NotifyInvalInode(999_999));
    }

    [Fact]
    public void Unmount_ends_the_session_and_calls_Destroy()
    {
        var fs = new ScriptedFs();
        var m = Mount(fs);
        Assert.Equal("v1", File.ReadAllText(Path.Combine(m.Root, "f")));
        Assert.Equal(0, Shell.Run($"umount '{m.Root}'").Code);
        Assert.True(m.Session.Completion.Wait(TimeSpan.FromSeconds(10)), "readers did not stop on ENODEV");
        Assert.Equal(1, fs.Destroyed);
        m.Dispose();
    }

    [Fact]
    public void Abort_through_fusectl_fails_requests_and_ends_the_session()
    {
        var fs = new MemoryFileSystem();
        using var m = Mount(fs);
        File.WriteAllText(Path.Combine(m.Root, "f"), "x");
        Assert.True(m.Session.Mount!.Abort());
        Assert.True(m.Session.Completion.Wait(TimeSpan.FromSeconds(10)), "abort did not end the session");
        Assert.Equal(-ENOTCONN, Posix.Open(Path.Combine(m.Root, "g"), Posix.O_CREAT | Posix.O_WRONLY));
    }

    [Fact]
    public void Steady_state_requests_allocate_nothing()
    {
        var fs = new MemoryFileSystem();
        var session = new FuseSession(fs);
        var channel = new NullChannel();
        var request = new FuseRequest(session);
        void Run(byte[] msg) => session.Process(msg, channel, request);
        Run(Wire.Request(35, 1, new Wire().U32(0x8042).U32(0x81A4).U32(0).U32(0).Str("file").Bytes));   // CREATE -> node 2
        Assert.Equal(0, channel.LastError);
        var getattr = Wire.Request(3, 2, new Wire().U32(0).U32(0).U64(0).Bytes);
        var write = Wire.Request(16, 2, new Wire().U64(1).U64(4096).U32(4096).U32(0).U64(0).U32(2).U32(0).Zeros(4096).Bytes);
        var read = Wire.Request(15, 2, new Wire().U64(1).U64(0).U32(8192).U32(0).U64(0).U32(0).U32(0).Bytes);
        foreach (var msg in new[] { getattr, write, read }) for (var i = 0; i < 100; i++) Run(msg); // warm up
        Assert.Equal(0, channel.LastError);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100_000; i++) { Run(getattr); Run(write); Run(read); }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, channel.LastError);
        Assert.True(allocated < 1024, $"{allocated} bytes allocated over 300,000 GETATTR/WRITE/READ requests");
    }

    private static string ReadBySyscalls(string path)
    {
        var fd = Posix.Open(path, Posix.O_RDONLY);
        Assert.True(fd >= 0, $"open {path}: errno {-fd}");
        var buf = new byte[256];
        var n = Posix.PRead(fd, buf, 0);
        Posix.Close(fd);
        Assert.True(n >= 0, $"read {path}: errno {-n}");
        return Encoding.UTF8.GetString(buf, 0, n);
    }

    private sealed class NullChannel : IFuseChannel
    {
        public int LastError;
        public int Send(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail)
        {
            LastError = System.Runtime.InteropServices.MemoryMarshal.Read<FuseOutHeader>(head).Error;
            return 0;
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int sig);
}
