using System.Runtime.InteropServices;

namespace ExtFuse.Interop;

/// <summary>
/// A shared mapping of part of a file, read and written only through libc's memcpy. Why: a page
/// fault on a FUSE file blocks the faulting thread in the kernel until the daemon answers. If the
/// daemon runs in the same process and the fault happens in managed code, a garbage collection
/// waits for that thread, and suspends the reader thread that would answer: a deadlock. A P/Invoke
/// call switches the thread to preemptive mode first, so the GC proceeds.
/// </summary>
public sealed unsafe partial class MappedFile : IDisposable
{
    private const int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MS_SYNC = 4;
    private byte* _base;
    private readonly nuint _length;

    private MappedFile(byte* address, nuint length) { _base = address; _length = length; }

    public long Length => (long)_length;

    /// <summary>Maps [offset, offset+length) of an open descriptor; offset must be page-aligned.</summary>
    public static MappedFile Map(int fd, long offset, long length, bool writable)
    {
        var p = mmap(null, (nuint)length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, offset);
        if (p == (void*)-1) throw new IOException($"mmap failed: {Errno.Describe(Marshal.GetLastPInvokeError())}");
        return new MappedFile((byte*)p, (nuint)length);
    }

    public void Read(long at, Span<byte> destination)
    {
        Check(at, destination.Length);
        fixed (byte* d = destination) memcpy(d, _base + at, (nuint)destination.Length);
    }

    public void Write(long at, ReadOnlySpan<byte> source)
    {
        Check(at, source.Length);
        fixed (byte* s = source) memcpy(_base + at, s, (nuint)source.Length);
    }

    /// <summary>msync(MS_SYNC): written pages reach the file system.</summary>
    public void Flush()
    {
        if (msync(_base, _length, MS_SYNC) != 0) throw new IOException($"msync failed: {Errno.Describe(Marshal.GetLastPInvokeError())}");
    }

    private void Check(long at, int count)
    {
        ObjectDisposedException.ThrowIf(_base is null, this);
        if (at < 0 || (ulong)at + (ulong)count > _length) throw new ArgumentOutOfRangeException(nameof(at));
    }

    public void Dispose()
    {
        if (_base is null) return;
        munmap(_base, _length);
        _base = null;
    }

    [LibraryImport("libc", SetLastError = true)] private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);
    [LibraryImport("libc", SetLastError = true)] private static partial int munmap(void* addr, nuint length);
    [LibraryImport("libc", SetLastError = true)] private static partial int msync(void* addr, nuint length, int flags);
    [LibraryImport("libc")] private static partial void* memcpy(void* dest, void* src, nuint n);
}
