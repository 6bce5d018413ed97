using System.Runtime.InteropServices;
using System.Text;
using ExtFuse.Interop;

namespace ExtFuse.Tests.Support;

/// <summary>The system calls the mount tests make as a client (x86_64 layouts). Each returns -errno on failure.</summary>
public static unsafe partial class Posix
{
    private const string L = "libc";
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_TRUNC = 0x200,
        O_APPEND = 0x400, O_DIRECT = 0x4000, O_DIRECTORY = 0x10000, O_TMPFILE = 0x410000, O_PATH = 0x200000;
    public const int SEEK_SET = 0, SEEK_DATA = 3, SEEK_HOLE = 4;
    public const int RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2;
    public const int AT_FDCWD = -100, AT_SYMLINK_FOLLOW = 0x400, AT_EMPTY_PATH = 0x1000;
    public const int F_OFD_GETLK = 36, F_OFD_SETLK = 37, F_OFD_SETLKW = 38;
    public const short F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
    public const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
    public const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;
    public const int XATTR_CREATE = 1, XATTR_REPLACE = 2;

    private static int Err(long rc) => rc < 0 ? -Marshal.GetLastPInvokeError() : (int)rc;
    private static long ErrL(long rc) => rc < 0 ? -Marshal.GetLastPInvokeError() : rc;

    [LibraryImport(L, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open_(string path, int flags, uint mode);
    // Always O_CLOEXEC: tests run in parallel and spawn processes; an inherited descriptor would keep
    // its open file (and its OFD/flock locks) alive in the child after the test closed it.
    private const int O_CLOEXEC = 0x80000;

    public static int Open(string path, int flags, uint mode = 0x1A4) => Err(open_(path, flags | O_CLOEXEC, mode));

    [LibraryImport(L, EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int openat_(int dirfd, string path, int flags, uint mode);
    public static int OpenAt(int dirfd, string path, int flags, uint mode = 0x1A4) => Err(openat_(dirfd, path, flags | O_CLOEXEC, mode));

    [LibraryImport(L, EntryPoint = "close", SetLastError = true)]
    private static partial int close_(int fd);
    public static int Close(int fd) => Err(close_(fd));

    [LibraryImport(L, EntryPoint = "pread", SetLastError = true)]
    private static partial nint pread_(int fd, byte* buf, nuint count, long offset);
    public static int PRead(int fd, Span<byte> buf, long offset) { fixed (byte* p = buf) return Err(pread_(fd, p, (nuint)buf.Length, offset)); }

    [LibraryImport(L, EntryPoint = "pwrite", SetLastError = true)]
    private static partial nint pwrite_(int fd, byte* buf, nuint count, long offset);
    public static int PWrite(int fd, ReadOnlySpan<byte> buf, long offset) { fixed (byte* p = buf) return Err(pwrite_(fd, p, (nuint)buf.Length, offset)); }

    [LibraryImport(L, EntryPoint = "read", SetLastError = true)]
    private static partial nint read_(int fd, byte* buf, nuint count);
    public static int Read(int fd, Span<byte> buf) { fixed (byte* p = buf) return Err(read_(fd, p, (nuint)buf.Length)); }

    [LibraryImport(L, EntryPoint = "write", SetLastError = true)]
    private static partial nint write_(int fd, byte* buf, nuint count);
    public static int Write(int fd, ReadOnlySpan<byte> buf) { fixed (byte* p = buf) return Err(write_(fd, p, (nuint)buf.Length)); }

    [LibraryImport(L, EntryPoint = "lseek", SetLastError = true)]
    private static partial long lseek_(int fd, long offset, int whence);
    public static long Lseek(int fd, long offset, int whence) => ErrL(lseek_(fd, offset, whence));

    [LibraryImport(L, EntryPoint = "fallocate", SetLastError = true)]
    private static partial int fallocate_(int fd, int mode, long offset, long len);
    public static int FAllocate(int fd, int mode, long offset, long len) => Err(fallocate_(fd, mode, offset, len));

    [LibraryImport(L, EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int ftruncate_(int fd, long len);
    public static int FTruncate(int fd, long len) => Err(ftruncate_(fd, len));

    [LibraryImport(L, EntryPoint = "truncate", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int truncate_(string path, long len);
    public static int Truncate(string path, long len) => Err(truncate_(path, len));

    [LibraryImport(L, EntryPoint = "fsync", SetLastError = true)]
    private static partial int fsync_(int fd);
    public static int Fsync(int fd) => Err(fsync_(fd));

    [LibraryImport(L, EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int renameat2_(int olddirfd, string oldpath, int newdirfd, string newpath, uint flags);
    public static int Rename(string from, string to, int flags = 0) => Err(renameat2_(AT_FDCWD, from, AT_FDCWD, to, (uint)flags));

    [LibraryImport(L, EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link_(string from, string to);
    public static int Link(string from, string to) => Err(link_(from, to));

    [LibraryImport(L, EntryPoint = "linkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int linkat_(int olddirfd, string oldpath, int newdirfd, string newpath, int flags);
    public static int LinkAt(int olddirfd, string oldpath, int newdirfd, string newpath, int flags) => Err(linkat_(olddirfd, oldpath, newdirfd, newpath, flags));

    [LibraryImport(L, EntryPoint = "symlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int symlink_(string target, string path);
    public static int Symlink(string target, string path) => Err(symlink_(target, path));

    [LibraryImport(L, EntryPoint = "readlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint readlink_(string path, byte* buf, nuint size);
    public static string? ReadLink(string path)
    {
        var buf = new byte[4096];
        fixed (byte* p = buf)
        {
            var n = readlink_(path, p, (nuint)buf.Length);
            return n < 0 ? null : Encoding.UTF8.GetString(buf, 0, (int)n);
        }
    }

    [LibraryImport(L, EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unlink_(string path);
    public static int Unlink(string path) => Err(unlink_(path));

    [LibraryImport(L, EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkdir_(string path, uint mode);
    public static int MkDir(string path, uint mode = 0x1ED) => Err(mkdir_(path, mode));

    [LibraryImport(L, EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int rmdir_(string path);
    public static int RmDir(string path) => Err(rmdir_(path));

    [LibraryImport(L, EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mknod_(string path, uint mode, ulong dev);
    public static int MkNod(string path, uint mode, ulong dev = 0) => Err(mknod_(path, mode, dev));

    [LibraryImport(L, EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chmod_(string path, uint mode);
    public static int Chmod(string path, uint mode) => Err(chmod_(path, mode));
    [LibraryImport(L, EntryPoint = "fchmod", SetLastError = true)]
    private static partial int fchmod_(int fd, uint mode);
    public static int FChmod(int fd, uint mode) => Err(fchmod_(fd, mode));

    [LibraryImport(L, EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lchown_(string path, uint uid, uint gid);
    public static int Chown(string path, uint uid, uint gid) => Err(lchown_(path, uid, gid));


    [LibraryImport(L, EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int utimensat_(int dirfd, string path, TimeSpec* times, int flags);
    public static int Utimens(string path, TimeSpec atime, TimeSpec mtime)
    {
        var t = stackalloc TimeSpec[2];
        t[0] = atime; t[1] = mtime;
        return Err(utimensat_(AT_FDCWD, path, t, 0x100 /* AT_SYMLINK_NOFOLLOW */));
    }

    [LibraryImport(L, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lstat_(string path, Stat* st);
    public static int LStat(string path, out Stat st) { fixed (Stat* p = &st) return Err(lstat_(path, p)); }

    [LibraryImport(L, EntryPoint = "fstat", SetLastError = true)]
    private static partial int fstat_(int fd, Stat* st);
    public static int FStat(int fd, out Stat st) { fixed (Stat* p = &st) return Err(fstat_(fd, p)); }

    public static Stat LStat(string path)
    {
        var rc = LStat(path, out var st);
        if (rc != 0) throw new IOException($"lstat({path}) failed: errno {-rc}");
        return st;
    }

    /// <summary>struct statvfs on x86_64.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatVfs
    {
        public ulong Bsize, Frsize, Blocks, Bfree, Bavail, Files, Ffree, Favail, Fsid, Flag, Namemax;
        public int S0, S1, S2, S3, S4, S5;
    }

    [LibraryImport(L, EntryPoint = "statvfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statvfs_(string path, StatVfs* st);
    public static int StatFs(string path, out StatVfs st) { fixed (StatVfs* p = &st) return Err(statvfs_(path, p)); }

    [LibraryImport(L, EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lsetxattr_(string path, string name, byte* value, nuint size, int flags);
    public static int SetXattr(string path, string name, ReadOnlySpan<byte> value, int flags = 0) { fixed (byte* p = value) return Err(lsetxattr_(path, name, p, (nuint)value.Length, flags)); }

    [LibraryImport(L, EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint lgetxattr_(string path, string name, byte* value, nuint size);
    public static int GetXattr(string path, string name, Span<byte> value) { fixed (byte* p = value) return Err(lgetxattr_(path, name, p, (nuint)value.Length)); }

    [LibraryImport(L, EntryPoint = "llistxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint llistxattr_(string path, byte* list, nuint size);
    public static int ListXattr(string path, Span<byte> list) { fixed (byte* p = list) return Err(llistxattr_(path, p, (nuint)list.Length)); }

    [LibraryImport(L, EntryPoint = "lremovexattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lremovexattr_(string path, string name);
    public static int RemoveXattr(string path, string name) => Err(lremovexattr_(path, name));

    [StructLayout(LayoutKind.Sequential)]
    public struct Flock { public short Type, Whence; public long Start, Len; public int Pid; }

    [LibraryImport(L, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int fcntl_lock(int fd, int cmd, Flock* lk);
    public static int Fcntl(int fd, int cmd, ref Flock lk) { fixed (Flock* p = &lk) return Err(fcntl_lock(fd, cmd, p)); }

    [LibraryImport(L, EntryPoint = "flock", SetLastError = true)]
    private static partial int flock_(int fd, int op);
    public static int FlockFile(int fd, int op) => Err(flock_(fd, op));

    [LibraryImport(L, EntryPoint = "copy_file_range", SetLastError = true)]
    private static partial nint copy_file_range_(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);
    public static long CopyFileRange(int fdIn, long offIn, int fdOut, long offOut, long len) => ErrL(copy_file_range_(fdIn, &offIn, fdOut, &offOut, (nuint)len, 0));

    [LibraryImport(L, EntryPoint = "splice", SetLastError = true)]
    private static partial nint splice_(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);
    /// <summary>splice(2) from fdIn at offIn (a file) to fdOut (a pipe), or from a pipe to a file at offOut when offIn is negative.</summary>
    public static long Splice(int fdIn, long offIn, int fdOut, long offOut, long len) =>
        ErrL(splice_(fdIn, offIn < 0 ? null : &offIn, fdOut, offOut < 0 ? null : &offOut, (nuint)len, 0));

    [LibraryImport(L, EntryPoint = "pipe2", SetLastError = true)]
    private static partial int pipe2_(int* fds, int flags);
    public static (int Read, int Write) Pipe()
    {
        var fds = stackalloc int[2];
        var rc = Err(pipe2_(fds, O_CLOEXEC));
        return rc < 0 ? throw new IOException($"pipe2: {rc}") : (fds[0], fds[1]);
    }

    // Directory streams, for telldir/seekdir.
    [LibraryImport(L, EntryPoint = "opendir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint OpenDir(string path);
    [LibraryImport(L, EntryPoint = "readdir", SetLastError = true)]
    private static partial nint readdir_(nint dir);
    [LibraryImport(L, EntryPoint = "telldir")]
    public static partial long TellDir(nint dir);
    [LibraryImport(L, EntryPoint = "seekdir")]
    public static partial void SeekDir(nint dir, long pos);
    [LibraryImport(L, EntryPoint = "closedir")]
    public static partial int CloseDir(nint dir);

    /// <summary>Next name from a directory stream, or null at the end (struct dirent: ino 8, off 8, reclen 2, type 1, name).</summary>
    public static string? ReadDir(nint dir)
    {
        var d = readdir_(dir);
        if (d == 0) return null;
        return Marshal.PtrToStringUTF8(d + 19);
    }

    [LibraryImport(L, EntryPoint = "getpid")]
    public static partial int GetPid();
}
