using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Interop;
using ExtFuse.Protocol;

namespace ExtFuse.Session;

/// <summary>
/// FUSE over io_uring (kernel 6.14+, protocol 7.42): after INIT, one ring per possible CPU, each with
/// a few entries (a header block and a payload buffer) registered with the kernel. A request arrives
/// as a completion on its entry; the reply goes back into the same buffers with COMMIT_AND_FETCH,
/// which also asks for the next request: one io_uring_enter per batch instead of a read and a
/// writev per request. FORGET and INTERRUPT still come through /dev/fuse, and notifications still go
/// out through it, so one device reader stays.
/// </summary>
public sealed partial class FuseSession
{
    private readonly List<UringQueue> _queues = [];
    private long _uringRequests;

    /// <summary>Requests that arrived over io_uring (0 on the /dev/fuse transport).</summary>
    public long RequestsOverIoUring => Interlocked.Read(ref _uringRequests);

    /// <summary>How the kernel delivers requests to this session, once INIT is done.</summary>
    public FuseTransport Transport { get; private set; } = FuseTransport.Device;

    private void StartUring()
    {
        var c = Connection;
        var payload = (int)Math.Max(Math.Max(FuseConstants.MinReadBuffer, c.MaxWrite), c.MaxPages * 4096u);
        var cpus = PossibleCpus();
        var ready = new CountdownEvent(cpus);
        for (var q = 0; q < cpus; q++)
        {
            var queue = new UringQueue(this, (ushort)q, Math.Max(1, _options.IoUringQueueDepth), payload, ready);
            _queues.Add(queue);
            Interlocked.Increment(ref _liveReaders);
            new Thread(queue.Run) { IsBackground = true, Name = $"fuse-uring-{q}" }.Start();
        }
        // The kernel turns the ring on once every queue has registered its entries; until then (and
        // for good, if registration fails) requests keep coming through /dev/fuse.
        ready.Wait(TimeSpan.FromSeconds(10));
        var failed = _queues.Where(q => q.Failure is not null).Select(q => q.Failure!).FirstOrDefault();
        if (failed is null)
        {
            Transport = FuseTransport.IoUring;
            Log.UringStarted(cpus, Math.Max(1, _options.IoUringQueueDepth), payload);
        }
        else
        {
            // The kernel turns the ring on only with every queue: requests stay on /dev/fuse.
            Log.UringFailed(failed);
            AddReaders(Math.Max(1, _options.Threads) - 1);
        }
    }

    /// <summary>The kernel keeps a queue per possible CPU (not per online one) and needs them all.</summary>
    private static int PossibleCpus()
    {
        try
        {
            var text = File.ReadAllText("/sys/devices/system/cpu/possible").Trim();
            var last = text.Split(',').Last();
            var dash = last.IndexOf('-');
            return int.Parse(dash < 0 ? last : last[(dash + 1)..]) + 1;
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { return Environment.ProcessorCount; }
    }

    private sealed unsafe class UringQueue(FuseSession session, ushort qid, int depth, int payloadSize, CountdownEvent ready)
    {
        private FuseSession Session => session;
        private int PayloadSize => payloadSize;
        private const uint CmdRegister = 1, CmdCommitAndFetch = 2;
        // struct fuse_uring_req_header: in_out[128], op_in[128], struct fuse_uring_ent_in_out.
        private const int OpInOffset = 128, CommitIdOffset = 264, PayloadSizeOffset = 272, HeaderSize = 288;
        // Room before each payload, so that in_header and the op header can be put in front of it
        // and the request read as one contiguous message, as from /dev/fuse.
        private const int Prefix = 4096;

        private IoUring? _ring;
        private Entry[] _entries = [];
        private Thread? _thread;
        public string? Failure { get; private set; }

        public FuseRequest? CurrentWith(ulong unique)
        {
            foreach (var e in _entries)
                if (e.Current is { } r && r.Unique == unique) return r;
            return null;
        }

        public void Run()
        {
            _thread = Thread.CurrentThread;
            var live = 0;
            var reason = "unmounted";
            try
            {
                try
                {
                    PinToCpu(qid);
                    _ring = new IoUring((uint)depth + 1);         // the entries, and the eventfd read
                    _entries = new Entry[depth];
                    for (var i = 0; i < depth; i++) _entries[i] = new Entry(this, i, payloadSize);
                    foreach (var e in _entries) Submit(e, CmdRegister);
                    _wake = eventfd(0, 0x80000 /* EFD_CLOEXEC */);
                    if (_wake < 0) throw new IOException($"eventfd: {Errno.Describe(Libc.LastErrno)}");
                    ArmWakeUp();
                    var err = _ring.Enter(wait: false);
                    if (err != 0) throw new IOException($"io_uring_enter: {Errno.Describe(err)}");
                    live = depth;
                    // A REGISTER the kernel refuses completes at once, during the submission: its
                    // error is in the queue now, before the session is told how the ring went.
                    live -= Reap();
                }
                catch (Exception e) when (e is IOException or OutOfMemoryException)
                {
                    Failure = $"queue {qid}: {e.Message}";
                }
                ready.Signal();
                while (live > 0 && !_stopping)
                {
                    var err = _ring!.Enter(wait: true);
                    if (err != 0) { reason = $"io_uring_enter: {Errno.Describe(err)}"; break; }
                    live -= Reap();
                    SubmitHandedCommits();
                }
            }
            finally
            {
                lock (_ringLock)
                {
                    _ring?.Dispose();
                    _ring = null;
                    foreach (var e in _entries) e.Free();
                    if (_wake >= 0) Libc.Close(_wake);
                    // _wakeValue stays: the kernel may finish cancelling the pending read into it after the close.
                }
                session.ReaderStopped(reason);
            }
        }

        private volatile bool _stopping;
        private readonly Lock _ringLock = new();
        private const ulong WakeUp = ulong.MaxValue;

        private int _wake = -1;
        private readonly ulong* _wakeValue = (ulong*)NativeMemory.Alloc(8);
        private readonly Queue<Entry> _handed = new();

        /// <summary>
        /// Only the queue's own thread submits to its ring. The kernel completes a FUSE command by
        /// task work in the thread that submitted it: a reply submitted from a pool thread that then
        /// blocks as a client of this very mount would hold the next request back for good. Other
        /// threads hand their commits over and wake the queue through an eventfd the ring reads.
        /// </summary>
        private void ArmWakeUp()
        {
            Span<byte> read = stackalloc byte[IoUring.SqeSize];
            read.Clear();
            read[0] = 22;                                                   // IORING_OP_READ
            MemoryMarshal.Write(read[4..], _wake);
            MemoryMarshal.Write(read[8..], ulong.MaxValue);                // off -1: an eventfd has no offsets
            MemoryMarshal.Write(read[16..], (ulong)_wakeValue);           // native: the kernel writes it later
            MemoryMarshal.Write(read[24..], 8u);
            MemoryMarshal.Write(read[32..], WakeUp);
            if (!_ring!.Queue(read)) throw new InvalidOperationException("io_uring submission queue full: no room for the wake-up read");
        }

        private void Wake()
        {
            ulong one = 1;
            Libc.Write(_wake, &one, 8);
        }

        private void SubmitHandedCommits()
        {
            lock (_handed)
                while (_handed.TryDequeue(out var e)) Submit(e, CmdCommitAndFetch);
        }

        /// <summary>Ends the queue's thread (the connection is gone); closing the ring cancels what the kernel still holds.</summary>
        public void Stop()
        {
            _stopping = true;
            lock (_ringLock)
                if (_ring is not null && _wake >= 0) Wake();
        }

        /// <summary>Handles every completion there is; returns how many entries ended.</summary>
        private int Reap()
        {
            var ended = 0;
            while (_ring!.TryComplete(out var c))
            {
                if (c.UserData == WakeUp) { if (!_stopping) ArmWakeUp(); continue; }
                var entry = _entries[(int)c.UserData];
                if (c.Result == 0) { Handle(entry); continue; }
                if (c.Result is -Errno.EAGAIN or -Errno.EINTR) { Submit(entry, entry.LastCommand); continue; }
                // ENOTCONN/ECANCELED/ENODEV: the connection went away. A REGISTER failing otherwise
                // (EOPNOTSUPP, EINVAL) means the kernel will not take the ring.
                if (c.Result is not (-Errno.ENOTCONN or -Errno.ECANCELED or -Errno.ENODEV) && entry.LastCommand == CmdRegister)
                    Failure ??= $"queue {qid}: registering an entry failed: {Errno.Describe(-c.Result)}";
                ended++;
            }
            return ended;
        }

        private void Handle(Entry e)
        {
            Interlocked.Increment(ref session._uringRequests);
            var h = e.Header;
            var len = *(uint*)h;
            var payloadLen = *(uint*)(h + PayloadSizeOffset);
            e.CommitId = *(ulong*)(h + CommitIdOffset);
            var opLen = (long)len - Unsafe.SizeOf<FuseInHeader>() - payloadLen;
            var request = e.Request;
            if (opLen is < 0 or > 128 || payloadLen > payloadSize)
            {
                // Nothing to parse; answer so the kernel's request and this entry are not lost.
                session.Log.Malformed(0, *(ulong*)(h + 8), $"io_uring entry: length {len}, payload {payloadLen}");
                e.Answer(-Errno.EIO, ReadOnlySpan<byte>.Empty, ReadOnlySpan<byte>.Empty);
                return;
            }
            var start = e.Payload - Unsafe.SizeOf<FuseInHeader>() - opLen;
            Unsafe.CopyBlockUnaligned(start, h, (uint)Unsafe.SizeOf<FuseInHeader>());
            Unsafe.CopyBlockUnaligned(start + Unsafe.SizeOf<FuseInHeader>(), h + OpInOffset, (uint)opLen);
            e.Answered = false;
            e.Current = request;
            session.Process(new ReadOnlySpan<byte>(start, (int)len), e, request);
            var detached = session.KeepIfDetached(request);
            e.Current = null;
            if (detached) e.Request = session.Rent();
            else
            {
                request.Recycle();
                // A request that takes no reply still holds this entry: hand the entry back.
                if (!e.Answered) e.Answer(0, ReadOnlySpan<byte>.Empty, ReadOnlySpan<byte>.Empty);
            }
        }

        private void Submit(Entry e, uint command)
        {
            e.LastCommand = command;
            Span<byte> sqe = stackalloc byte[IoUring.SqeSize];
            sqe.Clear();
            sqe[0] = IoUring.OpUringCmd;
            MemoryMarshal.Write(sqe[4..], session.Mount!.Fd);
            MemoryMarshal.Write(sqe[8..], command);        // cmd_op
            if (command == CmdRegister)
            {
                MemoryMarshal.Write(sqe[16..], (ulong)e.Iov); // addr: the two iovecs
                MemoryMarshal.Write(sqe[24..], 2u);          // len
            }
            MemoryMarshal.Write(sqe[32..], (ulong)e.Index); // user_data
            // struct fuse_uring_cmd_req in the command area: flags, commit_id, qid.
            MemoryMarshal.Write(sqe[56..], command == CmdRegister ? 0UL : e.CommitId);
            MemoryMarshal.Write(sqe[64..], qid);
            if (!_ring!.Queue(sqe)) throw new InvalidOperationException("io_uring submission queue full: more commits than entries");
        }

        /// <summary>
        /// Fills an entry's reply and commits it. On the queue's own thread the commit is queued for
        /// the loop to submit; an asynchronous reply from another thread is handed over (see
        /// <see cref="ArmWakeUp"/>), or finds the queue gone (its buffers freed) if the connection ended.
        /// </summary>
        private int Reply(Entry e, int error, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
        {
            if (Thread.CurrentThread == _thread)
            {
                e.Fill(error, a, b);
                Submit(e, CmdCommitAndFetch);
                return 0;
            }
            lock (_ringLock)
            {
                if (_ring is null) return Errno.ENOTCONN;
                e.Fill(error, a, b);
                lock (_handed) _handed.Enqueue(e);
                Wake();
                return 0;
            }
        }

        private static void PinToCpu(int cpu)
        {
            if (cpu >= 1024) return;
            var mask = stackalloc ulong[16];
            mask[cpu / 64] = 1UL << (cpu % 64);
            sched_setaffinity(0, 128, mask); // best effort: an offline CPU just keeps the default
        }

        [DllImport("libc")] private static extern int sched_setaffinity(int pid, nuint size, ulong* mask);
        [DllImport("libc", SetLastError = true)] private static extern int eventfd(uint initval, int flags);

        /// <summary>One registered entry: its buffers are where requests arrive and replies go.</summary>
        private sealed class Entry : IFuseChannel
        {
            private readonly UringQueue _queue;
            private readonly byte* _block;
            public readonly int Index;
            public readonly byte* Header;
            public readonly byte* Payload;
            public readonly Libc.IoVec* Iov;
            public ulong CommitId;
            public uint LastCommand;
            public bool Answered;
            public volatile FuseRequest? Current;
            public FuseRequest Request;

            public Entry(UringQueue queue, int index, int payloadSize)
            {
                _queue = queue;
                Index = index;
                // [header page][iovecs ... prefix][payload]: page-aligned header and payload.
                _block = (byte*)NativeMemory.AlignedAlloc((nuint)(4096 + Prefix + payloadSize), 4096);
                Header = _block;
                Payload = _block + 4096 + Prefix;
                Iov = (Libc.IoVec*)(_block + 2048);
                Iov[0] = new Libc.IoVec { Base = Header, Len = HeaderSize };
                Iov[1] = new Libc.IoVec { Base = Payload, Len = (nuint)payloadSize };
                Request = queue.Session.Rent();
            }

            public int Send(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail)
            {
                var header = MemoryMarshal.Read<FuseOutHeader>(head);
                return Answer(header.Error, head[Unsafe.SizeOf<FuseOutHeader>()..], tail);
            }

            public int Answer(int error, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => _queue.Reply(this, error, a, b);

            /// <summary>The reply in place of the request; fuse_out_header's unique sits where fuse_in_header's does.</summary>
            public void Fill(int error, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
            {
                var size = a.Length + b.Length;
                if (size > _queue.PayloadSize) { error = -Errno.EIO; size = 0; }
                else
                {
                    a.CopyTo(new Span<byte>(Payload, a.Length));
                    b.CopyTo(new Span<byte>(Payload + a.Length, b.Length));
                }
                var unique = *(ulong*)(Header + 8);
                *(FuseOutHeader*)Header = new FuseOutHeader { Len = (uint)(Unsafe.SizeOf<FuseOutHeader>() + size), Error = error, Unique = unique };
                *(uint*)(Header + PayloadSizeOffset) = (uint)size;
                Answered = true;
            }

            public void Free() => NativeMemory.AlignedFree(_block);
        }
    }
}

/// <summary>How requests travel between the kernel and the daemon.</summary>
public enum FuseTransport
{
    /// <summary>read(2) and writev(2) on /dev/fuse descriptors, one reader thread each.</summary>
    Device,
    /// <summary>FUSE over io_uring: a ring per CPU; requests and replies share registered buffers.</summary>
    IoUring,
}
