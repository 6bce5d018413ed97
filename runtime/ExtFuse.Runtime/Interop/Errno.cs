namespace ExtFuse;

/// <summary>Linux errno values (x86_64 and arm64 share them). Handlers reply with these, positive.</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7,
        EBADF = 9, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17,
        EXDEV = 18, ENODEV = 19, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24,
        ETXTBSY = 26, EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30, EMLINK = 31, EPIPE = 32,
        ERANGE = 34, EDEADLK = 35, ENAMETOOLONG = 36, ENOLCK = 37, ENOSYS = 38, ENOTEMPTY = 39,
        ELOOP = 40, ENODATA = 61, EOVERFLOW = 75, EOPNOTSUPP = 95, ENOTSUP = 95,
        ECONNABORTED = 103, ECONNREFUSED = 111, ENOTCONN = 107, ETIMEDOUT = 110, ESTALE = 116, EPROTO = 71, ECANCELED = 125;

    /// <summary>The C library's text for an errno, e.g. "No such file or directory".</summary>
    public static string Describe(int errno) => Libc.StrError(errno);
}
