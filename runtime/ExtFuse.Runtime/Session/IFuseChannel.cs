namespace ExtFuse.Session;

/// <summary>Where replies and notifications go: a /dev/fuse file descriptor in production, a recorder in tests.</summary>
public interface IFuseChannel
{
    /// <summary>Writes one complete message (header + payload, possibly split in two parts). Returns 0 or an errno.</summary>
    int Send(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail);
}

/// <summary>A /dev/fuse descriptor: one message per writev(2).</summary>
internal sealed unsafe class DeviceChannel(int fd) : IFuseChannel
{
    public int Fd { get; } = fd;

    public int Send(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail)
    {
        fixed (byte* h = head)
        fixed (byte* t = tail)
        {
            var iov = stackalloc Libc.IoVec[2];
            iov[0] = new Libc.IoVec { Base = h, Len = (nuint)head.Length };
            iov[1] = new Libc.IoVec { Base = t, Len = (nuint)tail.Length };
            while (true)
            {
                var n = Libc.Writev(Fd, iov, tail.IsEmpty ? 1 : 2);
                if (n >= 0) return 0;
                var err = Libc.LastErrno;
                if (err != Errno.EINTR) return err;
            }
        }
    }
}
