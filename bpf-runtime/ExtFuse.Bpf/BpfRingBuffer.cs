using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static ExtFuse.Bpf.LibBpf;

namespace ExtFuse.Bpf;

/// <summary>
/// Consumes the records BPF programs submit to a BPF_MAP_TYPE_RINGBUF map (libbpf's ring_buffer).
/// <see cref="Poll"/> waits for records and hands each to the handler on the calling thread; the
/// span is the kernel's memory and is valid only during the call.
/// </summary>
public sealed unsafe class BpfRingBuffer : IDisposable
{
    public delegate void RecordHandler(ReadOnlySpan<byte> record);

    private const int RingBufType = 27;
    private nint _rb;
    private GCHandle _self;
    private readonly RecordHandler _handler;
    private readonly int _ownFd;
    private Exception? _failure;

    private BpfRingBuffer(int fd, int ownFd, string name, RecordHandler handler)
    {
        Name = name;
        _handler = handler;
        _ownFd = ownFd;
        _self = GCHandle.Alloc(this);
        _rb = ring_buffer__new(fd, &OnRecord, (void*)GCHandle.ToIntPtr(_self), null);
        if (_rb == 0)
        {
            var err = Marshal.GetLastPInvokeError();
            _self.Free();
            if (ownFd >= 0) close(ownFd);
            throw new BpfException($"cannot consume ring buffer {name}: {Describe(err)}");
        }
    }

    public string Name { get; }

    /// <summary>The ring buffer map <paramref name="mapName"/> of a loaded object.</summary>
    public static BpfRingBuffer Open(BpfObject obj, string mapName, RecordHandler handler)
    {
        var (fd, type) = obj.MapFd(mapName);
        if (type != RingBufType) throw new BpfException($"{mapName} of {obj.Name} is not a ring buffer (map type {type})");
        return new BpfRingBuffer(fd, -1, mapName, handler);
    }

    /// <summary>A ring buffer pinned under bpffs, by this or another process.</summary>
    public static BpfRingBuffer OpenPinned(string path, RecordHandler handler)
    {
        int fd;
        fixed (byte* p = Z(path)) fd = bpf_obj_get(p);
        if (fd < 0) throw new BpfException($"cannot open the ring buffer pinned at {path}: {Describe(fd)}");
        return new BpfRingBuffer(fd, fd, Path.GetFileName(path), handler);
    }

    /// <summary>Waits up to <paramref name="timeout"/> for records and handles every one available: how many.
    /// An exception thrown by the handler stops the poll and is rethrown here.</summary>
    public int Poll(TimeSpan timeout)
    {
        var n = ring_buffer__poll(Handle, (int)Math.Clamp(timeout.TotalMilliseconds, -1, int.MaxValue));
        return Result(n, "poll");
    }

    /// <summary>Handles the records already there without waiting: how many.</summary>
    public int Consume() => Result(ring_buffer__consume(Handle), "consume");

    private int Result(int n, string what)
    {
        if (_failure is { } e) { _failure = null; System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e); }
        if (n == -4) return 0; // EINTR: a signal arrived while waiting
        return n >= 0 ? n : throw new BpfException($"{what} of ring buffer {Name} failed: {Describe(n)}");
    }

    private nint Handle => _rb != 0 ? _rb : throw new ObjectDisposedException(Name);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int OnRecord(void* ctx, void* data, nuint size)
    {
        var self = (BpfRingBuffer)GCHandle.FromIntPtr((nint)ctx).Target!;
        try
        {
            self._handler(new ReadOnlySpan<byte>(data, (int)size));
            return 0;
        }
        catch (Exception e)
        {
            // Exceptions must not unwind through libbpf: stop the poll and rethrow from Poll.
            self._failure = e;
            return -1;
        }
    }

    public void Dispose()
    {
        if (_rb == 0) return;
        ring_buffer__free(_rb);
        _rb = 0;
        _self.Free();
        if (_ownFd >= 0) close(_ownFd);
    }
}
