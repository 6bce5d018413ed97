using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Protocol;

namespace ExtFuse.Session;

/// <summary>
/// One request from the kernel: who asked (the header fields), a cancellation token that INTERRUPT
/// fires, and the reply methods. Exactly one reply per request (FORGET, BATCH_FORGET and the
/// answer to a RETRIEVE take none). A handler may reply before it returns, or keep the request and
/// reply later from any thread; the reader thread moves on either way. Request objects are pooled:
/// do not touch one after replying.
/// </summary>
public sealed class FuseRequest
{
    private const int Handling = 0, Detached = 1, Done = 2;

    private readonly FuseSession? _session;
    private int _state = Done;            // until Begin: a message too short to parse leaves nothing pending
    private int _replyClaimed;
    private bool _interrupted;
    private CancellationTokenSource? _cts;
    private byte[] _replyBuffer = [];
    private int _replyOffset;

    internal FuseRequest(FuseSession? session) => _session = session;

    internal IFuseChannel Channel { get; set; } = null!;
    /// <summary>The session serving this request (null for requests replayed in tests).</summary>
    public FuseSession? Session => _session;
    public ulong Unique { get; private set; }
    public FuseOpcode Opcode { get; private set; }
    public ulong NodeId { get; private set; }
    public uint Uid { get; private set; }
    public uint Gid { get; private set; }
    public uint Pid { get; private set; }

    /// <summary>The negotiated protocol minor version (0 before INIT).</summary>
    public uint ProtocolMinor => _session?.ProtocolMinor ?? FuseConstants.KernelMinorVersion;

    /// <summary>True once the kernel sent INTERRUPT for this request.</summary>
    public bool IsInterrupted => Volatile.Read(ref _interrupted);

    /// <summary>Cancelled when the kernel interrupts this request (the caller got a signal).</summary>
    public CancellationToken CancellationToken
    {
        get
        {
            lock (this)
            {
                _cts ??= new CancellationTokenSource();
                if (_interrupted && !_cts.IsCancellationRequested) _cts.Cancel();
                return _cts.Token;
            }
        }
    }

    internal bool IsReplied => Volatile.Read(ref _replyClaimed) != 0;

    internal void Begin(in FuseInHeader h, IFuseChannel channel)
    {
        Channel = channel;
        Unique = h.Unique; Opcode = h.Opcode; NodeId = h.NodeId; Uid = h.Uid; Gid = h.Gid; Pid = h.Pid;
        _replyClaimed = 0;
        _interrupted = false;
        Volatile.Write(ref _state, Handling);
    }

    /// <summary>Called by the reader after the handler returned: true if the handler still owes the reply.</summary>
    internal bool DetachIfPending() => Interlocked.CompareExchange(ref _state, Detached, Handling) == Handling;

    internal bool IsDone => Volatile.Read(ref _state) == Done;

    internal void Recycle()
    {
        if (_cts is { } cts && !cts.TryReset()) { cts.Dispose(); _cts = null; }
    }

    internal void Interrupt(ulong unique)
    {
        CancellationTokenSource? cancel = null;
        lock (this)
        {
            if (Unique != unique || Volatile.Read(ref _state) == Done) return;
            _interrupted = true;
            cancel = _cts;
        }
        cancel?.Cancel();
    }

    // ---- replies ----

    public void ReplyError(int errno)
    {
        if (errno <= 0) throw new ArgumentOutOfRangeException(nameof(errno), "errno must be positive");
        Send(-errno, default, default);
    }

    /// <summary>Success with no payload (SETLK, UNLINK, RELEASE, FSYNC, ...).</summary>
    public void ReplyOk() => Send(0, default, default);

    /// <summary>Success with one fixed-size struct.</summary>
    public void Reply<T>(in T value) where T : unmanaged =>
        Send(0, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)), default);

    /// <summary>Success with bytes: READ, READLINK, GETXATTR/LISTXATTR with a size, or a prepared directory listing.</summary>
    public void ReplyData(ReadOnlySpan<byte> data) => Send(0, data, default);

    public void ReplyEntry(in FuseEntryOut entry) => Reply(entry);
    public void ReplyAttr(in FuseAttrOut attr) => Reply(attr);
    public void ReplyOpen(in FuseOpenOut open) => Reply(open);
    public void ReplyWrite(uint written) => Reply(new FuseWriteOut { Size = written });
    public void ReplyStatfs(in FuseKStatfs st) => Reply(st);
    public void ReplyXattrSize(uint size) => Reply(new FuseGetxattrOut { Size = size });
    public void ReplyLock(in FuseFileLock lk) => Reply(lk);
    public void ReplyLseek(long offset) => Reply(new FuseLseekOut { Offset = (ulong)offset });
    public void ReplyStatx(in FuseStatxOut statx) => Reply(statx);
    public void ReplyBmap(ulong block) => Reply(new FuseBmapOut { Block = block });

    /// <summary>CREATE and TMPFILE: the new entry and its open file.</summary>
    public void ReplyCreate(in FuseEntryOut entry, in FuseOpenOut open) =>
        Send(0, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseEntryOut>(in entry)),
             MemoryMarshal.AsBytes(new ReadOnlySpan<FuseOpenOut>(in open)));

    /// <summary>COPY_FILE_RANGE (32-bit count) and COPY_FILE_RANGE_64 (64-bit count) share this.</summary>
    public void ReplyCopied(ulong bytes)
    {
        if (Opcode == FuseOpcode.CopyFileRange64) Reply(new FuseCopyFileRangeOut { BytesCopied = bytes });
        else Reply(new FuseWriteOut { Size = (uint)Math.Min(bytes, uint.MaxValue) });
    }

    /// <summary>
    /// A scratch buffer owned by this request for building a reply in place (directory listings,
    /// reads copied from elsewhere); pass the filled length to <see cref="ReplyBuffer"/>.
    /// </summary>
    public Span<byte> GetReplyBuffer(int size)
    {
        if (_replyBuffer.Length - _replyOffset < size)
        {
            // Page-aligned, so a handler may read into it with O_DIRECT.
            _replyBuffer = GC.AllocateUninitializedArray<byte>(Math.Max(size, 4096) + 4096, pinned: true);
            _replyOffset = (int)(4096 - (AddressOf(_replyBuffer) & 4095)) & 4095;
        }
        return _replyBuffer.AsSpan(_replyOffset, size);
    }

    private static unsafe nint AddressOf(byte[] pinned) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));

    public void ReplyBuffer(int length) => ReplyData(_replyBuffer.AsSpan(_replyOffset, length));

    /// <summary>
    /// Answers READ with up to <paramref name="size"/> bytes of <paramref name="fd"/> at
    /// <paramref name="offset"/>, moved by splice(2) instead of copied through this process, where
    /// the session allows it (-o splice_read, on the /dev/fuse transport). False: nothing was sent,
    /// answer as usual.
    /// </summary>
    public bool TryReplySplice(int fd, long offset, int size)
    {
        if (_session is not { SpliceReads: true } || Channel is not DeviceChannel device) return false;
        if (Interlocked.CompareExchange(ref _replyClaimed, 1, 0) != 0)
            throw new InvalidOperationException($"request {Unique} ({Opcode}) was already answered");
        if (device.SpliceReply(Unique, fd, offset, size) != 0)
        {
            Volatile.Write(ref _replyClaimed, 0);
            return false;
        }
        _session.CountSplicedReply();
        Finish();
        return true;
    }

    /// <summary>Marks a request that takes no reply (FORGET, NOTIFY_REPLY) as finished.</summary>
    internal void CompleteWithoutReply()
    {
        if (Interlocked.Exchange(ref _replyClaimed, 1) != 0) return;
        Finish();
    }

    /// <summary>
    /// Runs an asynchronous handler body: the reader does not wait for it. A fault replies EIO
    /// (and is logged), a cancellation after INTERRUPT replies EINTR, and a body that finishes
    /// without replying gets EIO so the caller never hangs.
    /// </summary>
    public void Run(Task body)
    {
        if (body.IsCompletedSuccessfully && IsReplied) return;
        body.ContinueWith(static (t, state) =>
        {
            var r = (FuseRequest)state!;
            if (r.IsReplied) return;
            if (t.IsCanceled) { r.ReplyError(Errno.EINTR); return; }
            if (t.Exception is { } ex) r._session?.Log.HandlerFailed(r.Opcode, r.Unique, ex.InnerException ?? ex);
            else r._session?.Log.HandlerDidNotReply(r.Opcode, r.Unique);
            r.ReplyError(Errno.EIO);
        }, this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    [SkipLocalsInit]
    private void Send(int error, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (Interlocked.Exchange(ref _replyClaimed, 1) != 0)
            throw new InvalidOperationException($"request {Unique} ({Opcode}) was already answered");
        Span<byte> head = stackalloc byte[512];
        var total = Unsafe.SizeOf<FuseOutHeader>() + a.Length + b.Length;
        var header = new FuseOutHeader { Len = (uint)total, Error = error, Unique = Unique };
        MemoryMarshal.Write(head, in header);
        int err;
        // Small replies go out as one buffer; large payloads are not copied.
        if (a.Length + b.Length <= head.Length - 16)
        {
            a.CopyTo(head[16..]);
            b.CopyTo(head[(16 + a.Length)..]);
            err = Channel.Send(head[..total], default);
        }
        else if (b.IsEmpty)
        {
            err = Channel.Send(head[..16], a);
        }
        else
        {
            a.CopyTo(head[16..]); // a is a fixed struct here (CREATE), b the second struct
            err = Channel.Send(head[..(16 + a.Length)], b);
        }
        if (err != 0) _session?.Log.ReplyFailed(Opcode, Unique, err);
        Finish();
    }

    private void Finish()
    {
        if (Interlocked.Exchange(ref _state, Done) == Detached) _session?.Release(this);
    }
}
