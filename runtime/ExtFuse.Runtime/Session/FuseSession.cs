using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Mounting;
using ExtFuse.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ExtFuse.Session;

/// <summary>
/// Serves one mounted file system: dedicated reader threads, each reading its own cloned /dev/fuse
/// descriptor into a pinned buffer and handling the request inline (go-fuse and fuser measured
/// inline handling as the fast choice). Ends when the kernel reports ENODEV (unmounted/aborted).
/// </summary>
public sealed partial class FuseSession : IDisposable
{
    private readonly RawFileSystem _fs;
    private readonly ExtFuse.Declarative.CheckRule[] _rules;
    /// <summary>Operations some [Check] method applies to.</summary>
    private readonly ExtFuse.Declarative.FuseOps _checkOps;
    private readonly ExtFuse.Declarative.FastPathRule? _fastGetAttr;
    /// <summary>Counter names: the [Check] methods, then the policy's rules.</summary>
    private string[] _ruleNames;
    private ExtFuse.Kernel.KernelOffload? _offload;
    private readonly FuseSessionOptions _options;
    private readonly ConcurrentDictionary<ulong, FuseRequest> _detached = new();
    private readonly List<Reader> _readers = [];
    private readonly TaskCompletionSource _initialized = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<byte[]>> _retrieves = new();
    private readonly ulong[] _orphanInterrupts = new ulong[16];
    private int _orphanCount;
    private long _nextNotifyUnique;
    private int _liveReaders;
    private int _liveDeviceReaders;
    private int _destroyed;
    private IFuseChannel? _notifyChannel;

    public FuseSession(RawFileSystem fs, FuseSessionOptions? options = null, ILogger? logger = null)
    {
        _fs = fs;
        _rules = [.. fs.Rules];
        foreach (var rule in _rules) _checkOps |= rule.Ops;
        _fastGetAttr = fs.FastPaths.FirstOrDefault(f => f.Op == ExtFuse.Declarative.FuseOps.GetAttr);
        _options = options ?? new FuseSessionOptions();
        Log = new SessionLog(logger ?? NullLogger.Instance);
        // A policy file that does not load is an error here, before anything is mounted.
        _policy = Compose(fs, _options.PolicyFile is { } file ? ExtFuse.Policy.PolicyFile.Load(file) : null);
        _ruleNames = [.. _rules.Select(r => r.Name), .. _policy.RuleNames];
        _verdicts = new ExtFuse.Policy.NodeVerdicts(fs);
        Audit = new ExtFuse.Policy.AuditLog(_options.AuditLog);
        fs.NamesChanged += OnNamesChanged;
    }

    internal SessionLog Log { get; }
    public FuseConnection Connection { get; } = new();
    public FuseMount? Mount { get; private set; }
    public uint ProtocolMinor => Connection.ProtocolMinor;
    /// <summary>READ replies from a file descriptor go by splice(2) (-o splice_read; /dev/fuse transport only).</summary>
    public bool SpliceReads => _options.SpliceRead && Transport == FuseTransport.Device;
    /// <summary>READ replies sent by splice(2) so far.</summary>
    public long SplicedReplies => Interlocked.Read(ref _splicedReplies);
    private long _splicedReplies;
    internal void CountSplicedReply() => Interlocked.Increment(ref _splicedReplies);
    /// <summary>The kernel side of this mount (statistics, fast-path and rule counters, where each rule runs); set by <see cref="Start"/>, disposed when the session ends.</summary>
    public ExtFuse.Kernel.KernelOffload? Offload => _offload;
    /// <summary>Completes when the kernel's INIT has been answered.</summary>
    public Task Initialized => _initialized.Task;
    /// <summary>Completes when every reader has stopped (unmount, abort, or a fatal read error).</summary>
    public Task Completion => _completed.Task;

    /// <summary>Requests handled so far, by all readers.</summary>
    public long RequestCount => Interlocked.Read(ref _requestCount);
    private long _requestCount;

    /// <summary>Requests of one opcode handled so far (opcodes past 63, CUSE_INIT, share the last count, as in the BPF statistics).</summary>
    public long RequestsOf(FuseOpcode opcode) => Interlocked.Read(ref _requestsByOpcode[OpcodeSlot(opcode)]);
    private readonly long[] _requestsByOpcode = new long[64];
    private static uint OpcodeSlot(FuseOpcode opcode) => Math.Min((uint)opcode, 63u);

    /// <summary>
    /// Registers a backing file for FUSE passthrough (FUSE_DEV_IOC_BACKING_OPEN): the id to answer
    /// OPEN or CREATE with, or a negative errno (EPERM without CAP_SYS_ADMIN, EOPNOTSUPP when the
    /// connection did not negotiate passthrough).
    /// </summary>
    public unsafe int OpenBacking(int fd)
    {
        if (Mount is null) return -Errno.ENOTCONN;
        var map = new FuseBackingMap { Fd = fd };
        var id = Libc.Ioctl(Mount.Fd, FuseConstants.DevIocBackingOpen, &map);
        return id < 0 ? -Marshal.GetLastPInvokeError() : id;
    }

    /// <summary>Drops a backing id (FUSE_DEV_IOC_BACKING_CLOSE); files opened with it keep their backing file.</summary>
    public unsafe void CloseBacking(int id)
    {
        if (Mount is null) return;
        var arg = (uint)id;
        Libc.Ioctl(Mount.Fd, FuseConstants.DevIocBackingClose, &arg);
    }

    /// <summary>Starts the reader threads on a mounted connection.</summary>
    public void Start(FuseMount mount)
    {
        if (Mount is not null) throw new InvalidOperationException("session already started");
        Mount = mount;
        _fs.Session = this;
        _offload = ExtFuse.Kernel.KernelOffload.Start(_fs, _ruleNames, mount.ConnectionId, _options.Bpf, _options.StatisticsInBackground);
        StartKernelPolicy(mount.ConnectionId);
        _notifyChannel = new DeviceChannel(mount.Fd);
        foreach (var map in _fs.FastPathNodeMaps) map.NodeChanged += AttributesSourceChanged;
        // Over io_uring the device only carries INIT, FORGET and INTERRUPT: one reader is enough
        // (the rest start if the kernel does not offer the ring).
        AddReaders(_options.IoUring ? 1 : Math.Max(1, _options.Threads));
    }

    private void AddReaders(int count)
    {
        var mount = Mount!;
        var bufferSize = (int)Math.Max(FuseConstants.MinReadBuffer, EffectiveMaxWrite() + 4096);
        var first = _readers.Count;
        Interlocked.Add(ref _liveReaders, count);
        Interlocked.Add(ref _liveDeviceReaders, count);
        for (var i = first; i < first + count; i++)
        {
            var fd = i == 0 ? mount.Fd : CloneDevice(mount.Fd);
            var reader = new Reader(this, fd, ownsFd: i != 0, bufferSize);
            _readers.Add(reader);
            new Thread(reader.Run) { IsBackground = true, Name = $"fuse-reader-{i}" }.Start();
        }
    }

    /// <summary>Unmounts (which ends the session) and waits for the readers.</summary>
    public void Dispose()
    {
        if (Mount is null) Audit.Dispose();   // never started: nothing else to end
        Mount?.Unmount();
        if (Mount is not null && !_completed.Task.Wait(TimeSpan.FromSeconds(10)))
        {
            Mount.Abort();
            _completed.Task.Wait(TimeSpan.FromSeconds(10));
        }
        Mount?.Dispose();
    }

    private static unsafe int CloneDevice(int sessionFd)
    {
        var fd = Libc.Open("/dev/fuse", Libc.O_RDWR | Libc.O_CLOEXEC);
        if (fd < 0) throw new FuseException($"cannot open /dev/fuse for a reader: {Errno.Describe(Libc.LastErrno)}", Libc.LastErrno);
        uint master = (uint)sessionFd;
        if (Libc.Ioctl(fd, FuseConstants.DevIocClone, &master) < 0)
        {
            var err = Libc.LastErrno;
            Libc.Close(fd);
            throw new FuseException($"FUSE_DEV_IOC_CLONE failed: {Errno.Describe(err)}", err);
        }
        return fd;
    }

    internal uint EffectiveMaxWrite()
    {
        var limitPages = ReadMaxPagesLimit();
        return Math.Min(Math.Max(_options.MaxWrite, 4096u), limitPages * 4096u);
    }

    private static uint ReadMaxPagesLimit()
    {
        try { return uint.Parse(File.ReadAllText("/proc/sys/fs/fuse/max_pages_limit").Trim()); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { return 256; }
    }

    // ---- requests ----

    /// <summary>Each reader reuses one request object while its handlers answer synchronously.</summary>
    internal FuseRequest Rent() => new(this);

    /// <summary>
    /// A detached (asynchronously answered) request has been answered. It is not pooled again: the
    /// asynchronous path allocates anyway, and never reusing it keeps the interrupt table exact.
    /// </summary>
    internal void Release(FuseRequest r) => _detached.TryRemove(KeyValuePair.Create(r.Unique, r));

    // ---- reader ----

    private sealed unsafe class Reader(FuseSession session, int fd, bool ownsFd, int bufferSize)
    {
        private readonly DeviceChannel _channel = new(fd);
        public volatile FuseRequest? Current;

        // fuse_in_header + fuse_write_in: reading at this offset into a page puts WRITE data on a page boundary.
        private static readonly int WriteHeaders = Unsafe.SizeOf<FuseInHeader>() + Unsafe.SizeOf<FuseWriteIn>();

        public void Run()
        {
            var block = (byte*)NativeMemory.AlignedAlloc((nuint)(bufferSize + 4096), 4096);
            var buffer = block + 4096 - WriteHeaders;
            var request = session.Rent();
            string reason = "unmounted";
            try
            {
                while (true)
                {
                    var n = Libc.Read(fd, buffer, (nuint)bufferSize);
                    if (n < 0)
                    {
                        var err = Libc.LastErrno;
                        // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: retry.
                        if (err is Errno.EINTR or Errno.EAGAIN or Errno.ENOENT) continue;
                        if (err is Errno.ENODEV or Errno.ECONNABORTED) break;
                        reason = $"read error {err}";
                        session.Log.ReadFailed(Errno.Describe(err), err);
                        break;
                    }
                    Current = request;
                    session.Process(new ReadOnlySpan<byte>(buffer, (int)n), _channel, request);
                    var detached = session.KeepIfDetached(request);
                    Current = null;
                    if (detached) request = session.Rent();
                    else request.Recycle();
                }
            }
            finally
            {
                NativeMemory.AlignedFree(block);
                _channel.ClosePipes();
                if (ownsFd) Libc.Close(fd);
                // The device ends with the connection (ENODEV): then the rings must end too,
                // whether or not the kernel completes their pending commands.
                if (Interlocked.Decrement(ref session._liveDeviceReaders) == 0)
                    foreach (var queue in session._queues) queue.Stop();
                session.ReaderStopped(reason);
            }
        }
    }

    /// <summary>
    /// After the handler returned: true if it still owes the reply (it answers later, from any
    /// thread). The request is then findable by INTERRUPT among the detached ones before its
    /// reader lets go of it, so an INTERRUPT arriving in between cannot miss it.
    /// </summary>
    private bool KeepIfDetached(FuseRequest request)
    {
        if (!request.DetachIfPending()) return false;
        var entry = KeyValuePair.Create(request.Unique, request);
        _detached[request.Unique] = request;
        if (request.IsDone) _detached.TryRemove(entry);
        return true;
    }

    private void ReaderStopped(string reason)
    {
        if (Interlocked.Decrement(ref _liveReaders) != 0) return;
        foreach (var map in _fs.FastPathNodeMaps) map.NodeChanged -= AttributesSourceChanged;
        _fs.NamesChanged -= OnNamesChanged;
        RunDestroy();
        _offload?.Dispose();
        Audit.Dispose();
        Log.Ended(reason);
        foreach (var kv in _retrieves) kv.Value.TrySetException(new FuseException("session ended", Errno.ENODEV));
        _initialized.TrySetException(new FuseException($"session ended before INIT ({reason})", Errno.ENODEV));
        _completed.TrySetResult();
    }

    private void RunDestroy()
    {
        if (Interlocked.Exchange(ref _destroyed, 1) != 0) return;
        try { _fs.Destroy(); } catch (Exception e) { Log.DestroyFailed(e); }
    }

    /// <summary>
    /// A fast path answers GETATTR of this node from a map entry that just changed: the attributes
    /// the kernel cached from the old entry must go (ENOENT: the kernel holds none).
    /// </summary>
    private void AttributesSourceChanged(ulong node)
    {
        if (Initialized.IsCompletedSuccessfully) NotifyInvalInode(node, -1);
    }

    // ---- interrupts ----

    private void Interrupt(ulong unique)
    {
        foreach (var reader in _readers)
        {
            var cur = reader.Current;
            if (cur is not null && cur.Unique == unique) { cur.Interrupt(unique); return; }
        }
        foreach (var queue in _queues)
            if (queue.CurrentWith(unique) is { } current) { current.Interrupt(unique); return; }
        if (_detached.TryGetValue(unique, out var r)) { r.Interrupt(unique); return; }
        // The request may not have been picked up by its reader yet: remember it briefly.
        lock (_orphanInterrupts) _orphanInterrupts[_orphanCount++ % _orphanInterrupts.Length] = unique;
    }

    private void CheckOrphanInterrupt(FuseRequest r)
    {
        if (Volatile.Read(ref _orphanCount) == 0) return;
        lock (_orphanInterrupts)
            for (var i = 0; i < Math.Min(_orphanCount, _orphanInterrupts.Length); i++)
                if (_orphanInterrupts[i] == r.Unique) { _orphanInterrupts[i] = 0; r.Interrupt(r.Unique); }
    }
}
