using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ExtFuse.Interop;

/// <summary>
/// A minimal io_uring over the raw system calls (no liburing): one submission queue of 128-byte
/// entries (IORING_SETUP_SQE128, which URING_CMD needs for its 80-byte command area) and one
/// completion queue. One thread submits and reaps: FUSE's commands complete by task work in the
/// thread that submitted them, so a ring stays with its queue's thread.
/// </summary>
internal sealed unsafe partial class IoUring : IDisposable
{
    public const byte OpUringCmd = 46;
    private const uint SetupCqSize = 1 << 3, SetupSqe128 = 1 << 10;
    private const uint EnterGetEvents = 1;
    private const uint FeatSingleMmap = 1;
    private const long OffSqRing = 0, OffCqRing = 0x8000000, OffSqes = 0x10000000;
    private const int SysSetup = 425, SysEnter = 426; // the same numbers on every architecture
    public const int SqeSize = 128;

    [StructLayout(LayoutKind.Sequential)]
    private struct Params
    {
        public uint SqEntries, CqEntries, Flags, SqThreadCpu, SqThreadIdle, Features, WqFd, Resv0, Resv1, Resv2;
        public uint SqHead, SqTail, SqRingMask, SqRingEntries, SqFlags, SqDropped, SqArray, SqResv1; public ulong SqUserAddr;
        public uint CqHead, CqTail, CqRingMask, CqRingEntries, CqOverflow, CqCqes, CqFlags, CqResv1; public ulong CqUserAddr;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Completion { public ulong UserData; public int Result; public uint Flags; }

    private readonly int _fd;
    private readonly byte* _sqRing, _cqRing, _sqes;
    private readonly nuint _sqRingSize, _cqRingSize, _sqesSize;
    private readonly uint* _sqTail, _sqHead, _sqArray, _cqHead, _cqTail;
    private readonly uint _sqMask, _cqMask, _sqEntries;
    private readonly Completion* _cqes;
    private uint _localTail;

    public int Fd => _fd;

    public IoUring(uint entries)
    {
        var p = new Params { Flags = SetupSqe128 | SetupCqSize, CqEntries = entries * 2 };
        _fd = (int)syscall(SysSetup, (nint)entries, (nint)(&p), 0, 0, 0, 0);
        if (_fd < 0) throw new IOException($"io_uring_setup failed: {Errno.Describe(Marshal.GetLastPInvokeError())}");
        _sqEntries = p.SqEntries;
        _sqRingSize = p.SqArray + p.SqEntries * 4;
        _cqRingSize = p.CqCqes + p.CqEntries * (uint)sizeof(Completion);
        if ((p.Features & FeatSingleMmap) != 0) _sqRingSize = _cqRingSize = Math.Max(_sqRingSize, _cqRingSize);
        _sqRing = Map(_sqRingSize, OffSqRing);
        _cqRing = (p.Features & FeatSingleMmap) != 0 ? _sqRing : Map(_cqRingSize, OffCqRing);
        _sqesSize = p.SqEntries * (nuint)SqeSize;
        _sqes = Map(_sqesSize, OffSqes);
        _sqHead = (uint*)(_sqRing + p.SqHead);
        _sqTail = (uint*)(_sqRing + p.SqTail);
        _sqMask = *(uint*)(_sqRing + p.SqRingMask);
        _sqArray = (uint*)(_sqRing + p.SqArray);
        _cqHead = (uint*)(_cqRing + p.CqHead);
        _cqTail = (uint*)(_cqRing + p.CqTail);
        _cqMask = *(uint*)(_cqRing + p.CqRingMask);
        _cqes = (Completion*)(_cqRing + p.CqCqes);
        _localTail = *_sqTail;
    }

    private byte* Map(nuint size, long offset)
    {
        var m = mmap(null, size, 3 /* PROT_READ|WRITE */, 0x8001 /* MAP_SHARED|MAP_POPULATE */, _fd, offset);
        if (m == (void*)-1)
        {
            var err = Marshal.GetLastPInvokeError();
            Dispose();
            throw new IOException($"mmap of the io_uring rings failed: {Errno.Describe(err)}");
        }
        return (byte*)m;
    }

    /// <summary>
    /// Copies one prepared 128-byte submission entry into the queue and publishes it; the kernel
    /// sees it at the next <see cref="Enter"/>. False when the queue is full.
    /// </summary>
    public bool Queue(ReadOnlySpan<byte> entry)
    {
        if (entry.Length != SqeSize) throw new ArgumentException($"a submission entry is {SqeSize} bytes", nameof(entry));
        if (_localTail - Volatile.Read(ref *_sqHead) >= _sqEntries) return false;
        var index = _localTail & _sqMask;
        entry.CopyTo(new Span<byte>(_sqes + index * SqeSize, SqeSize));
        _sqArray[index] = index;
        _localTail++;
        Volatile.Write(ref *_sqTail, _localTail);
        return true;
    }

    /// <summary>Submits what is queued and, with <paramref name="wait"/>, sleeps until a completion is there. Returns 0 or an errno.</summary>
    public int Enter(bool wait)
    {
        while (true)
        {
            // Exactly what is queued: asked to submit more than there is, the kernel returns
            // without waiting for completions.
            var pending = _localTail - Volatile.Read(ref *_sqHead);
            var r = syscall(SysEnter, _fd, (nint)pending, wait ? 1 : 0, (nint)(wait ? EnterGetEvents : 0), 0, 0);
            if (r >= 0) return 0;
            var err = Marshal.GetLastPInvokeError();
            if (err == Errno.EINTR) { if (wait) return 0; continue; }
            return err;
        }
    }

    /// <summary>Takes the next completion, if there is one.</summary>
    public bool TryComplete(out Completion completion)
    {
        var head = *_cqHead;
        if (head == Volatile.Read(ref *_cqTail)) { completion = default; return false; }
        completion = _cqes[head & _cqMask];
        Volatile.Write(ref *_cqHead, head + 1);
        return true;
    }

    public void Dispose()
    {
        if (_sqes is not null) munmap(_sqes, _sqesSize);
        if (_cqRing is not null && _cqRing != _sqRing) munmap(_cqRing, _cqRingSize);
        if (_sqRing is not null) munmap(_sqRing, _sqRingSize);
        if (_fd >= 0) Libc.Close(_fd);
    }

    [LibraryImport("libc", SetLastError = true)] private static partial nint syscall(nint number, nint a1, nint a2, nint a3, nint a4, nint a5, nint a6);
    [LibraryImport("libc", SetLastError = true)] private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);
    [LibraryImport("libc", SetLastError = true)] private static partial int munmap(void* addr, nuint length);
}
