using System.Runtime.InteropServices;

namespace ExtFuse.Interop;

/// <summary>struct timespec.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct TimeSpec { public long Sec, Nsec; }

/// <summary>struct stat as x86_64 Linux lays it out (what stat, lstat, fstat and fstatat fill).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Stat
{
    public ulong Dev, Ino, Nlink;
    public uint Mode, Uid, Gid, Pad0;
    public ulong Rdev;
    public long Size, BlkSize, Blocks;
    public TimeSpec Atime, Mtime, Ctime;
    public long Reserved0, Reserved1, Reserved2;
}
