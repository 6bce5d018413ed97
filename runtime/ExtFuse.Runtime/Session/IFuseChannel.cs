namespace ExtFuse.Session;

/// <summary>Where replies and notifications go: a /dev/fuse file descriptor in production, a recorder in tests.</summary>
public interface IFuseChannel
{
    /// <summary>Writes one complete message (header + payload, possibly split in two parts). Returns 0 or an errno.</summary>
    int Send(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail);
}

/// <summary>A /dev/fuse descriptor: one message per writev(2), or per splice(2) for READ replies from a file.</summary>
internal sealed unsafe partial class DeviceChannel(int fd) : IFuseChannel
{
    public int Fd { get; } = fd;

    private const uint SpliceMove = 1;
    private const int FSetPipeSize = 1031;
    // Two pipes: the file's bytes go into the first, so their count is known before the header
    // (which must come first) goes into the second; then the bytes follow it and the whole
    // message moves to the device. -1: not made yet; -2: this machine refused them.
    private int _dataRead = -1, _dataWrite, _msgRead, _msgWrite, _capacity;

    /// <summary>
    /// Answers a READ with up to <paramref name="size"/> bytes of <paramref name="file"/> at
    /// <paramref name="offset"/>, moved by splice(2) without passing through this process.
    /// Returns 0 when the reply went out, or an errno (nothing was sent: copy instead).
    /// </summary>
    public int SpliceReply(ulong unique, int file, long offset, int size)
    {
        if (_dataRead == -2 || (_dataRead == -1 && !MakePipes())) return Errno.EOPNOTSUPP;
        if (size + 4096 > _capacity) return Errno.EFBIG;
        long n = 0;
        while (n < size)
        {
            var off = offset + n;
            var got = splice(file, &off, _dataWrite, null, (nuint)(size - n), SpliceMove);
            if (got == 0) break;
            if (got < 0)
            {
                var err = Libc.LastErrno;
                if (err == Errno.EINTR) continue;
                Drain(_dataRead, n);
                return err;
            }
            n += got;
        }
        var header = new ExtFuse.Protocol.FuseOutHeader { Len = (uint)(16 + n), Error = 0, Unique = unique };
        if (Libc.Write(_msgWrite, &header, 16) != 16) { var err = Libc.LastErrno; Drain(_dataRead, n); return err; }
        for (long moved = 0; moved < n;)
        {
            var got = splice(_dataRead, null, _msgWrite, null, (nuint)(n - moved), SpliceMove);
            if (got <= 0) { var err = got < 0 ? Libc.LastErrno : Errno.EIO; Drain(_dataRead, n - moved); Drain(_msgRead, 16 + moved); return err; }
            moved += got;
        }
        var sent = splice(_msgRead, null, Fd, null, (nuint)(16 + n), SpliceMove);
        if (sent == 16 + n) return 0;
        // The device takes a message whole or not at all; what is left in the pipe is dropped.
        var error = sent < 0 ? Libc.LastErrno : Errno.EIO;
        Drain(_msgRead, 16 + n);
        return error == Errno.ENOENT ? 0 : error; // ENOENT: the request was interrupted meanwhile
    }

    private bool MakePipes()
    {
        var fds = stackalloc int[4];
        if (pipe2(fds, Libc.O_CLOEXEC | Libc.O_NONBLOCK) != 0) { _dataRead = -2; return false; }
        if (pipe2(fds + 2, Libc.O_CLOEXEC | Libc.O_NONBLOCK) != 0) { Libc.Close(fds[0]); Libc.Close(fds[1]); _dataRead = -2; return false; }
        // As large as an unprivileged process may make them (pipe-max-size, 1 MiB by default).
        var want = 1 << 20;
        var a = Libc.Fcntl(fds[1], FSetPipeSize, want);
        var b = Libc.Fcntl(fds[3], FSetPipeSize, want);
        (_dataRead, _dataWrite, _msgRead, _msgWrite) = (fds[0], fds[1], fds[2], fds[3]);
        _capacity = Math.Min(a > 0 ? a : 65536, b > 0 ? b : 65536);
        return true;
    }

    private static void Drain(int pipe, long bytes)
    {
        var scratch = stackalloc byte[4096];
        while (bytes > 0)
        {
            var got = Libc.Read(pipe, scratch, (nuint)Math.Min(bytes, 4096));
            if (got <= 0) return;
            bytes -= got;
        }
    }

    /// <summary>Closes the splice pipes (the device descriptor belongs to the reader).</summary>
    public void ClosePipes()
    {
        if (_dataRead < 0) return;
        Libc.Close(_dataRead); Libc.Close(_dataWrite); Libc.Close(_msgRead); Libc.Close(_msgWrite);
        _dataRead = -2;
    }

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial nint splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int pipe2(int* fds, int flags);

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
