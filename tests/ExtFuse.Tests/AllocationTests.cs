using System.Runtime.InteropServices;
using ExtFuse.Protocol;
using ExtFuse.Samples.Stack;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>Runs alone: it counts every byte the process allocates, so no other test may run meanwhile.</summary>
[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// No allocation per request on the read, write, getattr and lookup paths: 100,000 requests (25,000
/// of each) through StackFs with no caching, so every call reaches the daemon, on each transport.
/// The runtime's own counter (GC.GetTotalAllocatedBytes, precise) covers every thread of the
/// process; the client side is raw system calls on preallocated buffers, which allocate nothing.
/// </summary>
[Collection(nameof(AllocationCollection))]
public unsafe class AllocationTests
{
    private const int O_RDWR = 2, O_DIRECT = 0x4000;
    private const int PerOp = 25_000;

    // Its own descriptor budget: the process-wide one is shared with every other test's StackFs,
    // and a node past it is reached by file handle, whose LOOKUP still allocates (see README).
    private sealed class UncachedStackMount(bool ioUring) : StackMount(source => new StackFileSystem(source, pinnedLimit: 64)
    {
        EntryTimeout = TimeSpan.Zero, AttrTimeout = TimeSpan.Zero,
        // The sample's inotify bookkeeping of its own writes is not the runtime's request path.
        WatchSource = false,
    }, ioUring);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_read_write_getattr_and_lookup_paths_allocate_nothing_per_request(bool ioUring)
    {
        using var m = new UncachedStackMount(ioUring);
        var file = Path.Combine(m.Root, "data");
        File.WriteAllBytes(file, new byte[1 << 20]);
        var path = Marshal.StringToCoTaskMemUTF8(file);
        var buffer = NativeMemory.AlignedAlloc(4096, 4096);
        var fd = open((byte*)path, O_RDWR | O_DIRECT);
        Assert.True(fd >= 0, $"open: errno {Marshal.GetLastPInvokeError()}");
        var st = stackalloc byte[256];
        try
        {
            // Every call is a request: O_DIRECT reads and writes, fstat with no attribute cache,
            // stat of a name with no entry cache.
            var ops = new (string Name, FuseOpcode Opcode, Func<long> Call)[]
            {
                ("read", FuseOpcode.Read, () => pread(fd, buffer, 4096, 8192)),
                ("write", FuseOpcode.Write, () => pwrite(fd, buffer, 4096, 4096)),
                ("getattr", FuseOpcode.GetAttr, () => fstat(fd, st)),
                ("lookup", FuseOpcode.Lookup, () => stat((byte*)path, st)),
            };
            // Warm up until tiered compilation has settled (its background recompiles allocate).
            for (var round = 0; round < 3; round++)
            {
                foreach (var op in ops)
                    for (var i = 0; i < 3000; i++)
                        if (op.Call() < 0) Assert.Fail($"{op.Name}: errno {Marshal.GetLastPInvokeError()}");
                _ = GC.GetTotalAllocatedBytes(precise: true);
                Thread.Sleep(200);
            }

            var report = new List<string>();
            long totalBytes = 0, totalRequests = 0;
            foreach (var op in ops)
            {
                var requestsBefore = m.Session.RequestsOf(op.Opcode);
                var allRequestsBefore = m.Session.RequestCount;
                var before = GC.GetTotalAllocatedBytes(precise: true);
                for (var i = 0; i < PerOp; i++)
                    if (op.Call() < 0) Assert.Fail($"{op.Name}: errno {Marshal.GetLastPInvokeError()}");
                var bytes = GC.GetTotalAllocatedBytes(precise: true) - before;
                var requests = m.Session.RequestsOf(op.Opcode) - requestsBefore;
                Assert.True(requests >= PerOp, $"{op.Name}: {requests} {op.Opcode} requests for {PerOp} calls: the cache answered some");
                totalBytes += bytes;
                totalRequests += m.Session.RequestCount - allRequestsBefore;
                report.Add($"{op.Name}: {bytes} bytes over {m.Session.RequestCount - allRequestsBefore} requests");
            }
            var summary = $"{(ioUring ? "io_uring" : "/dev/fuse")}: {string.Join("; ", report)}";
            Console.WriteLine(summary);
            Assert.True(totalRequests >= 100_000, $"only {totalRequests} requests");
            // Not one allocation per request: a few hundred bytes of incidental allocation (timers,
            // the runtime's own bookkeeping) may fall in the window; one object per request would be
            // at least 24 bytes each, 2.4 MB in all.
            Assert.True(totalBytes < 16 * 1024, $"{totalBytes} bytes allocated over {totalRequests} requests ({(double)totalBytes / totalRequests:F2} per request). {summary}");
        }
        finally
        {
            close(fd);
            NativeMemory.AlignedFree(buffer);
            Marshal.FreeCoTaskMem(path);
        }
    }

    [DllImport("libc", SetLastError = true)] private static extern int open(byte* path, int flags);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
    [DllImport("libc", SetLastError = true)] private static extern nint pread(int fd, void* buf, nuint count, long offset);
    [DllImport("libc", SetLastError = true)] private static extern nint pwrite(int fd, void* buf, nuint count, long offset);
    [DllImport("libc", SetLastError = true)] private static extern int fstat(int fd, byte* st);
    [DllImport("libc", SetLastError = true)] private static extern int stat(byte* path, byte* st);
}
