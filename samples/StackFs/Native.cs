using System.Runtime.InteropServices;
using ExtFuse.Interop;

namespace ExtFuse.Samples.Stack;

/// <summary>The *at(2) family and friends StackFs is built on (x86_64 layouts). Calls return -errno on failure.</summary>
internal static unsafe partial class Native
{
    private const string L = "libc";
    public const int O_RDONLY = 0, O_ACCMODE = 3, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100, O_DIRECTORY = 0x10000,
        O_NOFOLLOW = 0x20000, O_CLOEXEC = 0x80000, O_PATH = 0x200000, O_TMPFILE = 0x410000;
    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_SYMLINK_FOLLOW = 0x400, AT_EMPTY_PATH = 0x1000;
    public const uint RENAME_EXCHANGE = 2;
    public const long UTIME_NOW = (1L << 30) - 1, UTIME_OMIT = (1L << 30) - 2;

    private static int R(long rc) => rc < 0 ? -Marshal.GetLastPInvokeError() : (int)rc;
    private static long RL(long rc) => rc < 0 ? -Marshal.GetLastPInvokeError() : rc;

    [StructLayout(LayoutKind.Sequential)]
    public struct StatFs
    {
        public long Type, Bsize;
        public ulong Blocks, Bfree, Bavail, Files, Ffree, Fsid;
        public long NameLen, Frsize, Flags;
        public long S0, S1, S2, S3;
    }

    [LibraryImport(L, EntryPoint = "openat", SetLastError = true)] private static partial int openat_(int dirfd, byte* path, int flags, uint mode);
    public static int OpenAt(int dirfd, byte* path, int flags, uint mode = 0) => R(openat_(dirfd, path, flags | O_CLOEXEC, mode));

    [LibraryImport(L, EntryPoint = "close")] public static partial int Close(int fd);

    public const uint IN_MODIFY = 0x2, IN_ATTRIB = 0x4, IN_CLOSE_WRITE = 0x8, IN_MOVED_FROM = 0x40, IN_MOVED_TO = 0x80, IN_CREATE = 0x100,
        IN_DELETE = 0x200, IN_DELETE_SELF = 0x400, IN_MOVE_SELF = 0x800, IN_Q_OVERFLOW = 0x4000, IN_IGNORED = 0x8000, IN_ONLYDIR = 0x1000000,
        IN_EXCL_UNLINK = 0x4000000;
    [LibraryImport(L, EntryPoint = "inotify_init1", SetLastError = true)] private static partial int inotify_init1_(int flags);
    public static int InotifyInit() => R(inotify_init1_(O_CLOEXEC | 0x800 /* IN_NONBLOCK */));
    [LibraryImport(L, EntryPoint = "inotify_add_watch", SetLastError = true)] private static partial int inotify_add_watch_(int fd, byte* path, uint mask);
    public static int InotifyAddWatch(int fd, byte* path, uint mask) => R(inotify_add_watch_(fd, path, mask));
    [LibraryImport(L, EntryPoint = "inotify_rm_watch")] public static partial int InotifyRmWatch(int fd, int wd);
    [LibraryImport(L, EntryPoint = "poll", SetLastError = true)] private static partial int poll_(long* fds, nuint count, int timeoutMs);
    /// <summary>Waits until <paramref name="fd"/> is readable: 1, 0 on timeout, -errno.</summary>
    public static int PollIn(int fd, int timeoutMs) { long pfd = (uint)fd | (1L << 32) /* events = POLLIN */; return R(poll_(&pfd, 1, timeoutMs)); }
    [LibraryImport(L, EntryPoint = "read", SetLastError = true)] private static partial nint read_(int fd, byte* buf, nuint count);
    public static long Read(int fd, byte* buf, int count) => RL(read_(fd, buf, (nuint)count));
    [LibraryImport(L, EntryPoint = "ioctl", SetLastError = true)] private static partial int ioctl_(int fd, nuint request, int* arg);
    /// <summary>Bytes waiting to be read from <paramref name="fd"/> (FIONREAD), or -errno.</summary>
    public static int QueuedBytes(int fd) { int n; var rc = R(ioctl_(fd, 0x541B, &n)); return rc < 0 ? rc : n; }
    [LibraryImport(L, EntryPoint = "dup", SetLastError = true)] private static partial int dup_(int fd);
    public static int Dup(int fd) => R(dup_(fd));

    [LibraryImport(L, EntryPoint = "fstatat", SetLastError = true)] private static partial int fstatat_(int dirfd, byte* path, Stat* st, int flags);
    public static int FStatAt(int dirfd, byte* path, out Stat st, int flags) { fixed (Stat* p = &st) return R(fstatat_(dirfd, path, p, flags)); }
    /// <summary>fstat of any descriptor, O_PATH included, without following a symlink.</summary>
    public static int FStat(int fd, out Stat st) { byte empty = 0; return FStatAt(fd, &empty, out st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); }

    [LibraryImport(L, EntryPoint = "fstatfs", SetLastError = true)] private static partial int fstatfs_(int fd, StatFs* st);
    public static int FStatFs(int fd, out StatFs st) { fixed (StatFs* p = &st) return R(fstatfs_(fd, p)); }

    [LibraryImport(L, EntryPoint = "mkdirat", SetLastError = true)] private static partial int mkdirat_(int dirfd, byte* path, uint mode);
    public static int MkDirAt(int dirfd, byte* path, uint mode) => R(mkdirat_(dirfd, path, mode));
    [LibraryImport(L, EntryPoint = "mknodat", SetLastError = true)] private static partial int mknodat_(int dirfd, byte* path, uint mode, ulong dev);
    public static int MkNodAt(int dirfd, byte* path, uint mode, ulong dev) => R(mknodat_(dirfd, path, mode, dev));
    [LibraryImport(L, EntryPoint = "symlinkat", SetLastError = true)] private static partial int symlinkat_(byte* target, int dirfd, byte* path);
    public static int SymlinkAt(byte* target, int dirfd, byte* path) => R(symlinkat_(target, dirfd, path));
    [LibraryImport(L, EntryPoint = "unlinkat", SetLastError = true)] private static partial int unlinkat_(int dirfd, byte* path, int flags);
    public static int UnlinkAt(int dirfd, byte* path, int flags) => R(unlinkat_(dirfd, path, flags));
    [LibraryImport(L, EntryPoint = "renameat2", SetLastError = true)] private static partial int renameat2_(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, uint flags);
    public static int RenameAt2(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, uint flags) => R(renameat2_(olddirfd, oldpath, newdirfd, newpath, flags));
    [LibraryImport(L, EntryPoint = "linkat", SetLastError = true)] private static partial int linkat_(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, int flags);
    public static int LinkAt(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, int flags) => R(linkat_(olddirfd, oldpath, newdirfd, newpath, flags));
    [LibraryImport(L, EntryPoint = "readlinkat", SetLastError = true)] private static partial nint readlinkat_(int dirfd, byte* path, byte* buf, nuint size);
    public static int ReadLinkAt(int dirfd, byte* path, Span<byte> buf) { fixed (byte* b = buf) return R(readlinkat_(dirfd, path, b, (nuint)buf.Length)); }
    [LibraryImport(L, EntryPoint = "fchownat", SetLastError = true)] private static partial int fchownat_(int dirfd, byte* path, uint uid, uint gid, int flags);
    public static int FChownAt(int dirfd, byte* path, uint uid, uint gid, int flags) => R(fchownat_(dirfd, path, uid, gid, flags));
    [LibraryImport(L, EntryPoint = "fchmodat", SetLastError = true)] private static partial int fchmodat_(int dirfd, byte* path, uint mode, int flags);
    public static int FChmodAt(int dirfd, byte* path, uint mode, int flags) => R(fchmodat_(dirfd, path, mode, flags));
    [LibraryImport(L, EntryPoint = "utimensat", SetLastError = true)] private static partial int utimensat_(int dirfd, byte* path, TimeSpec* times, int flags);
    public static int UtimensAt(int dirfd, byte* path, TimeSpec* times, int flags) => R(utimensat_(dirfd, path, times, flags));
    [LibraryImport(L, EntryPoint = "truncate", SetLastError = true)] private static partial int truncate_(byte* path, long len);
    public static int Truncate(byte* path, long len) => R(truncate_(path, len));
    [LibraryImport(L, EntryPoint = "ftruncate", SetLastError = true)] private static partial int ftruncate_(int fd, long len);
    public static int FTruncate(int fd, long len) => R(ftruncate_(fd, len));

    [LibraryImport(L, EntryPoint = "pread", SetLastError = true)] private static partial nint pread_(int fd, byte* buf, nuint count, long offset);
    public static int PRead(int fd, Span<byte> buf, long offset) { fixed (byte* b = buf) return R(pread_(fd, b, (nuint)buf.Length, offset)); }
    [LibraryImport(L, EntryPoint = "pwrite", SetLastError = true)] private static partial nint pwrite_(int fd, byte* buf, nuint count, long offset);
    public static int PWrite(int fd, ReadOnlySpan<byte> buf, long offset) { fixed (byte* b = buf) return R(pwrite_(fd, b, (nuint)buf.Length, offset)); }
    [LibraryImport(L, EntryPoint = "fsync", SetLastError = true)] private static partial int fsync_(int fd);
    public static int Fsync(int fd) => R(fsync_(fd));
    [LibraryImport(L, EntryPoint = "fdatasync", SetLastError = true)] private static partial int fdatasync_(int fd);
    public static int Fdatasync(int fd) => R(fdatasync_(fd));
    [LibraryImport(L, EntryPoint = "fallocate", SetLastError = true)] private static partial int fallocate_(int fd, int mode, long offset, long len);
    public static int FAllocate(int fd, int mode, long offset, long len) => R(fallocate_(fd, mode, offset, len));
    [LibraryImport(L, EntryPoint = "lseek", SetLastError = true)] private static partial long lseek_(int fd, long offset, int whence);
    public static long Lseek(int fd, long offset, int whence) => RL(lseek_(fd, offset, whence));
    [LibraryImport(L, EntryPoint = "copy_file_range", SetLastError = true)] private static partial nint copy_file_range_(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);
    public static long CopyFileRange(int fdIn, long offIn, int fdOut, long offOut, long len) => RL(copy_file_range_(fdIn, &offIn, fdOut, &offOut, (nuint)len, 0));
    [LibraryImport(L, EntryPoint = "getdents64", SetLastError = true)] private static partial nint getdents64_(int fd, byte* buf, nuint count);
    public static int GetDents64(int fd, Span<byte> buf) { fixed (byte* b = buf) return R(getdents64_(fd, b, (nuint)buf.Length)); }

    [LibraryImport(L, EntryPoint = "getxattr", SetLastError = true)] private static partial nint getxattr_(byte* path, byte* name, byte* value, nuint size);
    public static int GetXattr(byte* path, byte* name, Span<byte> value) { fixed (byte* v = value) return R(getxattr_(path, name, v, (nuint)value.Length)); }
    [LibraryImport(L, EntryPoint = "setxattr", SetLastError = true)] private static partial int setxattr_(byte* path, byte* name, byte* value, nuint size, int flags);
    public static int SetXattr(byte* path, byte* name, ReadOnlySpan<byte> value, int flags) { fixed (byte* v = value) return R(setxattr_(path, name, v, (nuint)value.Length, flags)); }
    [LibraryImport(L, EntryPoint = "listxattr", SetLastError = true)] private static partial nint listxattr_(byte* path, byte* list, nuint size);
    public static int ListXattr(byte* path, Span<byte> list) { fixed (byte* v = list) return R(listxattr_(path, v, (nuint)list.Length)); }
    [LibraryImport(L, EntryPoint = "removexattr", SetLastError = true)] private static partial int removexattr_(byte* path, byte* name);
    public static int RemoveXattr(byte* path, byte* name) => R(removexattr_(path, name));
    [LibraryImport(L, EntryPoint = "faccessat", SetLastError = true)] private static partial int faccessat_(int dirfd, byte* path, int mode, int flags);
    public static int FAccessAt(int dirfd, byte* path, int mode, int flags) => R(faccessat_(dirfd, path, mode, flags));

    // Per-thread on Linux: handlers run on their reader thread, so this is safe.
    [LibraryImport(L, EntryPoint = "setfsuid")] public static partial int SetFsUid(uint uid);
    [LibraryImport(L, EntryPoint = "setfsgid")] public static partial int SetFsGid(uint gid);
    [LibraryImport(L, EntryPoint = "geteuid")] public static partial uint GetEuid();

    public const uint MAX_HANDLE_SZ = 128;
    [LibraryImport(L, EntryPoint = "name_to_handle_at", SetLastError = true)] private static partial int name_to_handle_at_(int dirfd, byte* path, byte* handle, int* mountId, int flags);
    public static int NameToHandleAt(int dirfd, byte* path, byte* handle, int* mountId, int flags) => R(name_to_handle_at_(dirfd, path, handle, mountId, flags));
    [LibraryImport(L, EntryPoint = "open_by_handle_at", SetLastError = true)] private static partial int open_by_handle_at_(int mountFd, byte* handle, int flags);
    public static int OpenByHandleAt(int mountFd, byte* handle, int flags) => R(open_by_handle_at_(mountFd, handle, flags | O_CLOEXEC));

    public const int RLIMIT_NOFILE = 7;
    [StructLayout(LayoutKind.Sequential)] public struct RLimit { public ulong Cur, Max; }
    [LibraryImport(L, EntryPoint = "getrlimit", SetLastError = true)] private static partial int getrlimit_(int resource, RLimit* lim);
    public static int GetRLimit(int resource, out RLimit lim) { fixed (RLimit* p = &lim) return R(getrlimit_(resource, p)); }
    [LibraryImport(L, EntryPoint = "setrlimit", SetLastError = true)] private static partial int setrlimit_(int resource, RLimit* lim);
    public static int SetRLimit(int resource, RLimit lim) => R(setrlimit_(resource, &lim));
}
