using System.Runtime.InteropServices;

namespace ExtFuse.Protocol;

// Blittable mirrors of include/uapi/linux/fuse.h (protocol 7.45). Field order and sizes are the
// kernel's; ProtocolLayoutTests pin every size. Names follow the C fields in PascalCase.

public static class FuseConstants
{
    public const uint KernelVersion = 7;
    /// <summary>The newest minor version this runtime speaks.</summary>
    public const uint KernelMinorVersion = 45;
    /// <summary>The oldest kernel minor we accept (Linux 5.10 speaks 7.32).</summary>
    public const uint MinimumMinorVersion = 31;
    public const ulong RootId = 1;
    public const int MinReadBuffer = 8192;
    public const int CompatEntryOutSize = 120, CompatAttrOutSize = 96, CompatStatfsSize = 48, CompatWriteInSize = 24,
        CompatMknodInSize = 8, CompatSetxattrInSize = 8;
    /// <summary>FILESYSTEM_MAX_STACK_DEPTH: how deep a passthrough backing file's own stack may be, plus one.</summary>
    public const uint MaxStackDepth = 2;
    /// <summary>_IOR(229, 0, uint32_t)</summary>
    public const uint DevIocClone = 0x8004E500;
    /// <summary>_IOW(229, 1, struct fuse_backing_map)</summary>
    public const uint DevIocBackingOpen = 0x4010E501;
    /// <summary>_IOW(229, 2, uint32_t)</summary>
    public const uint DevIocBackingClose = 0x4004E502;
}

/// <summary>Cache timeouts as replies carry them: whole seconds plus nanoseconds.</summary>
public static class FuseTimeout
{
    public static (ulong Seconds, uint Nanoseconds) Split(TimeSpan t) =>
        ((ulong)(t.Ticks / TimeSpan.TicksPerSecond), (uint)(t.Ticks % TimeSpan.TicksPerSecond * 100));
}

/// <summary>INIT flags (flags | flags2 &lt;&lt; 32).</summary>
[Flags]
public enum InitFlags : ulong
{
    None = 0,
    AsyncRead = 1UL << 0, PosixLocks = 1UL << 1, FileOps = 1UL << 2, AtomicOTrunc = 1UL << 3,
    ExportSupport = 1UL << 4, BigWrites = 1UL << 5, DontMask = 1UL << 6, SpliceWrite = 1UL << 7,
    SpliceMove = 1UL << 8, SpliceRead = 1UL << 9, FlockLocks = 1UL << 10, HasIoctlDir = 1UL << 11,
    AutoInvalData = 1UL << 12, DoReaddirplus = 1UL << 13, ReaddirplusAuto = 1UL << 14, AsyncDio = 1UL << 15,
    WritebackCache = 1UL << 16, NoOpenSupport = 1UL << 17, ParallelDirops = 1UL << 18,
    HandleKillpriv = 1UL << 19, PosixAcl = 1UL << 20, AbortError = 1UL << 21, MaxPages = 1UL << 22,
    CacheSymlinks = 1UL << 23, NoOpendirSupport = 1UL << 24, ExplicitInvalData = 1UL << 25,
    MapAlignment = 1UL << 26, Submounts = 1UL << 27, HandleKillprivV2 = 1UL << 28, SetxattrExt = 1UL << 29,
    InitExt = 1UL << 30, InitReserved = 1UL << 31,
    SecurityCtx = 1UL << 32, HasInodeDax = 1UL << 33, CreateSuppGroup = 1UL << 34, HasExpireOnly = 1UL << 35,
    DirectIoAllowMmap = 1UL << 36, Passthrough = 1UL << 37, NoExportSupport = 1UL << 38, HasResend = 1UL << 39,
    AllowIdmap = 1UL << 40, OverIoUring = 1UL << 41, RequestTimeout = 1UL << 42,
}

/// <summary>fuse_open_out.open_flags</summary>
[Flags]
public enum OpenReplyFlags : uint
{
    None = 0, DirectIo = 1 << 0, KeepCache = 1 << 1, NonSeekable = 1 << 2, CacheDir = 1 << 3, Stream = 1 << 4,
    NoFlush = 1 << 5, ParallelDirectWrites = 1 << 6, Passthrough = 1 << 7,
}

/// <summary>fuse_setattr_in.valid</summary>
[Flags]
public enum SetAttrValid : uint
{
    None = 0, Mode = 1 << 0, Uid = 1 << 1, Gid = 1 << 2, Size = 1 << 3, Atime = 1 << 4, Mtime = 1 << 5,
    Fh = 1 << 6, AtimeNow = 1 << 7, MtimeNow = 1 << 8, LockOwner = 1 << 9, Ctime = 1 << 10, KillSuidGid = 1 << 11,
}

public static class FuseFlags
{
    public const uint GetattrFh = 1 << 0;
    public const uint ReleaseFlush = 1 << 0, ReleaseFlockUnlock = 1 << 1;
    public const uint LkFlock = 1 << 0;
    public const uint WriteCache = 1 << 0, WriteLockOwner = 1 << 1, WriteKillSuidGid = 1 << 2;
    public const uint ReadLockOwner = 1 << 1;
    public const uint FsyncFdatasync = 1 << 0;
    public const uint OpenKillSuidGid = 1 << 0;
    public const uint ExpireOnly = 1 << 0;
    public const uint RenameNoReplace = 1 << 0, RenameExchange = 1 << 1, RenameWhiteout = 1 << 2;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseAttr
{
    public ulong Ino, Size, Blocks, Atime, Mtime, Ctime;
    public uint AtimeNsec, MtimeNsec, CtimeNsec, Mode, Nlink, Uid, Gid, Rdev, BlkSize, Flags;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct FuseKStatfs
{
    public ulong Blocks, Bfree, Bavail, Files, Ffree;
    public uint Bsize, NameLen, Frsize, Padding;
    public fixed uint Spare[6];
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseFileLock
{
    public ulong Start, End;
    public uint Type, Pid;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseEntryOut
{
    public ulong NodeId, Generation, EntryValid, AttrValid;
    public uint EntryValidNsec, AttrValidNsec;
    public FuseAttr Attr;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseForgetIn { public ulong Nlookup; }
[StructLayout(LayoutKind.Sequential)] public struct FuseForgetOne { public ulong NodeId, Nlookup; }
[StructLayout(LayoutKind.Sequential)] public struct FuseBatchForgetIn { public uint Count, Dummy; }
[StructLayout(LayoutKind.Sequential)] public struct FuseGetattrIn { public uint GetattrFlags, Dummy; public ulong Fh; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseAttrOut
{
    public ulong AttrValid;
    public uint AttrValidNsec, Dummy;
    public FuseAttr Attr;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseMknodIn { public uint Mode, Rdev, Umask, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseMkdirIn { public uint Mode, Umask; }
[StructLayout(LayoutKind.Sequential)] public struct FuseRenameIn { public ulong NewDir; }
[StructLayout(LayoutKind.Sequential)] public struct FuseRename2In { public ulong NewDir; public uint Flags, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseLinkIn { public ulong OldNodeId; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseSetattrIn
{
    public SetAttrValid Valid;
    public uint Padding;
    public ulong Fh, Size, LockOwner, Atime, Mtime, Ctime;
    public uint AtimeNsec, MtimeNsec, CtimeNsec, Mode, Unused4, Uid, Gid, Unused5;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseOpenIn { public uint Flags, OpenFlags; }
[StructLayout(LayoutKind.Sequential)] public struct FuseCreateIn { public uint Flags, Mode, Umask, OpenFlags; }
[StructLayout(LayoutKind.Sequential)] public struct FuseOpenOut { public ulong Fh; public OpenReplyFlags OpenFlags; public int BackingId; }
[StructLayout(LayoutKind.Sequential)] public struct FuseReleaseIn { public ulong Fh; public uint Flags, ReleaseFlags; public ulong LockOwner; }
[StructLayout(LayoutKind.Sequential)] public struct FuseFlushIn { public ulong Fh; public uint Unused, Padding; public ulong LockOwner; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseReadIn
{
    public ulong Fh, Offset;
    public uint Size, ReadFlags;
    public ulong LockOwner;
    public uint Flags, Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseWriteIn
{
    public ulong Fh, Offset;
    public uint Size, WriteFlags;
    public ulong LockOwner;
    public uint Flags, Padding;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseWriteOut { public uint Size, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseStatfsOut { public FuseKStatfs St; }
[StructLayout(LayoutKind.Sequential)] public struct FuseFsyncIn { public ulong Fh; public uint FsyncFlags, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseSetxattrIn { public uint Size, Flags; }
[StructLayout(LayoutKind.Sequential)] public struct FuseGetxattrIn { public uint Size, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseGetxattrOut { public uint Size, Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseLkIn
{
    public ulong Fh, Owner;
    public FuseFileLock Lk;
    public uint LkFlags, Padding;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseLkOut { public FuseFileLock Lk; }
[StructLayout(LayoutKind.Sequential)] public struct FuseAccessIn { public uint Mask, Padding; }

[StructLayout(LayoutKind.Sequential)]
public unsafe struct FuseInitIn
{
    public uint Major, Minor, MaxReadahead, Flags, Flags2;
    public fixed uint Unused[11];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct FuseInitOut
{
    public uint Major, Minor, MaxReadahead, Flags;
    public ushort MaxBackground, CongestionThreshold;
    public uint MaxWrite, TimeGran;
    public ushort MaxPages, MapAlignment;
    public uint Flags2, MaxStackDepth;
    public ushort RequestTimeout;
    public fixed ushort Unused[11];
}

[StructLayout(LayoutKind.Sequential)] public struct FuseInterruptIn { public ulong Unique; }
[StructLayout(LayoutKind.Sequential)] public struct FuseBmapIn { public ulong Block; public uint BlockSize, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseBmapOut { public ulong Block; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseFallocateIn
{
    public ulong Fh, Offset, Length;
    public uint Mode, Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseInHeader
{
    public uint Len;
    public FuseOpcode Opcode;
    public ulong Unique, NodeId;
    public uint Uid, Gid, Pid;
    public ushort TotalExtLen, Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseOutHeader
{
    public uint Len;
    public int Error;
    public ulong Unique;
}

/// <summary>Fixed part of struct fuse_dirent; the name follows, padded to 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseDirent
{
    public ulong Ino, Off;
    public uint NameLen, Type;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseNotifyInvalInodeOut { public ulong Ino; public long Off, Len; }
[StructLayout(LayoutKind.Sequential)] public struct FuseNotifyInvalEntryOut { public ulong Parent; public uint NameLen, Flags; }
[StructLayout(LayoutKind.Sequential)] public struct FuseNotifyDeleteOut { public ulong Parent, Child; public uint NameLen, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseNotifyStoreOut { public ulong NodeId, Offset; public uint Size, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseNotifyRetrieveOut { public ulong NotifyUnique, NodeId, Offset; public uint Size, Padding; }

/// <summary>Body of the NOTIFY_REPLY request that answers a RETRIEVE; data follows. Same size as fuse_write_in.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseNotifyRetrieveIn
{
    public ulong Dummy1, Offset;
    public uint Size, Dummy2;
    public ulong Dummy3, Dummy4;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseLseekIn { public ulong Fh, Offset; public uint Whence, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct FuseLseekOut { public ulong Offset; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseCopyFileRangeIn
{
    public ulong FhIn, OffIn, NodeIdOut, FhOut, OffOut, Len, Flags;
}

[StructLayout(LayoutKind.Sequential)] public struct FuseCopyFileRangeOut { public ulong BytesCopied; }
[StructLayout(LayoutKind.Sequential)] public struct FuseSyncfsIn { public ulong Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseStatxIn
{
    public uint GetattrFlags, Reserved;
    public ulong Fh;
    public uint SxFlags, SxMask;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseSxTime { public long Sec; public uint Nsec; public int Reserved; }

[StructLayout(LayoutKind.Sequential)]
public unsafe struct FuseStatx
{
    public uint Mask, BlkSize;
    public ulong Attributes;
    public uint Nlink, Uid, Gid;
    public ushort Mode, Spare0;
    public ulong Ino, Size, Blocks, AttributesMask;
    public FuseSxTime Atime, Btime, Ctime, Mtime;
    public uint RdevMajor, RdevMinor, DevMajor, DevMinor;
    public fixed ulong Spare2[14];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct FuseStatxOut
{
    public ulong AttrValid;
    public uint AttrValidNsec, Flags;
    public fixed ulong Spare[2];
    public FuseStatx Stat;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseBackingMap { public int Fd; public uint Flags; public ulong Padding; }
