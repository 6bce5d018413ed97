using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Protocol;

namespace ExtFuse.Session;

// Kernel notifications: unsolicited messages (unique 0, error = notify code). Do not send one from
// inside the handler of a request on the same inode or directory: the kernel may hold the lock the
// notification needs (libfuse documents the same deadlock).
public sealed partial class FuseSession
{
    /// <summary>Drops cached attributes and, for len != 0, cached pages from off (len &lt; 0: to the end). Returns 0 or an errno (ENOENT: not cached).</summary>
    public int NotifyInvalInode(ulong nodeId, long offset = 0, long length = 0) =>
        Notify(FuseNotifyCode.InvalInode, new FuseNotifyInvalInodeOut { Ino = nodeId, Off = offset, Len = length }, default);

    /// <summary>Drops a cached name (or with expireOnly, marks it expired).</summary>
    public int NotifyInvalEntry(ulong parent, ReadOnlySpan<byte> name, bool expireOnly = false) =>
        Notify(FuseNotifyCode.InvalEntry,
            new FuseNotifyInvalEntryOut { Parent = parent, NameLen = (uint)name.Length, Flags = expireOnly ? FuseFlags.ExpireOnly : 0 },
            name, nulTerminate: true);

    /// <summary>Tells the kernel that parent/name (which was child) is gone, as if it had been unlinked.</summary>
    public int NotifyDelete(ulong parent, ulong child, ReadOnlySpan<byte> name) =>
        Notify(FuseNotifyCode.Delete, new FuseNotifyDeleteOut { Parent = parent, Child = child, NameLen = (uint)name.Length },
            name, nulTerminate: true);

    /// <summary>Pushes data into the kernel's page cache of a node.</summary>
    public int NotifyStore(ulong nodeId, ulong offset, ReadOnlySpan<byte> data) =>
        Notify(FuseNotifyCode.Store, new FuseNotifyStoreOut { NodeId = nodeId, Offset = offset, Size = (uint)data.Length }, data);

    /// <summary>Asks the kernel for what its page cache holds of a node; the bytes come back in a NOTIFY_REPLY.</summary>
    public Task<byte[]> NotifyRetrieveAsync(ulong nodeId, ulong offset, uint size)
    {
        var unique = (ulong)Interlocked.Increment(ref _nextNotifyUnique);
        var tcs = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _retrieves[unique] = tcs;
        var err = Notify(FuseNotifyCode.Retrieve,
            new FuseNotifyRetrieveOut { NotifyUnique = unique, NodeId = nodeId, Offset = offset, Size = size }, default);
        if (err != 0 && _retrieves.TryRemove(unique, out _))
            tcs.TrySetException(new FuseException($"RETRIEVE of node {nodeId} failed: {Errno.Describe(err)}", err));
        return tcs.Task;
    }

    private void HandleRetrieveReply(FuseRequest r, ReadOnlySpan<byte> body)
    {
        r.CompleteWithoutReply();
        ref readonly var a = ref Arg<FuseNotifyRetrieveIn>(body);
        var data = After<FuseNotifyRetrieveIn>(body);
        if (_retrieves.TryRemove(r.Unique, out var tcs))
            tcs.TrySetResult(data[..(int)Math.Min(a.Size, (uint)data.Length)].ToArray());
    }

    [SkipLocalsInit]
    private int Notify<T>(FuseNotifyCode code, in T arg, ReadOnlySpan<byte> tail, bool nulTerminate = false) where T : unmanaged
    {
        var channel = _notifyChannel ?? throw new InvalidOperationException("the session is not started");
        Span<byte> head = stackalloc byte[64 + 256 + 1];
        var argSize = Unsafe.SizeOf<T>();
        var total = 16 + argSize + tail.Length + (nulTerminate ? 1 : 0);
        MemoryMarshal.Write(head, new FuseOutHeader { Len = (uint)total, Error = (int)code, Unique = 0 });
        MemoryMarshal.Write(head[16..], in arg);
        var used = 16 + argSize;
        if (nulTerminate)
        {
            if (tail.Length > 255) return Errno.ENAMETOOLONG;
            tail.CopyTo(head[used..]);
            head[used + tail.Length] = 0;
            return channel.Send(head[..total], default);
        }
        return channel.Send(head[..used], tail);
    }

    /// <summary>For tests: route notifications to a recorder.</summary>
    internal void UseNotifyChannel(IFuseChannel channel) => _notifyChannel = channel;
}
