using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Protocol;

namespace ExtFuse.Tests;

/// <summary>Every mirrored struct has the size (and key offsets) of include/uapi/linux/fuse.h.</summary>
public class ProtocolLayoutTests
{
    public static TheoryData<string, int, int> Sizes => new()
    {
        { nameof(FuseInHeader), Unsafe.SizeOf<FuseInHeader>(), 40 },
        { nameof(FuseOutHeader), Unsafe.SizeOf<FuseOutHeader>(), 16 },
        { nameof(FuseAttr), Unsafe.SizeOf<FuseAttr>(), 88 },
        { nameof(FuseEntryOut), Unsafe.SizeOf<FuseEntryOut>(), 128 },
        { nameof(FuseAttrOut), Unsafe.SizeOf<FuseAttrOut>(), 104 },
        { nameof(FuseInitIn), Unsafe.SizeOf<FuseInitIn>(), 64 },
        { nameof(FuseInitOut), Unsafe.SizeOf<FuseInitOut>(), 64 },
        { nameof(FuseKStatfs), Unsafe.SizeOf<FuseKStatfs>(), 80 },
        { nameof(FuseFileLock), Unsafe.SizeOf<FuseFileLock>(), 24 },
        { nameof(FuseForgetIn), Unsafe.SizeOf<FuseForgetIn>(), 8 },
        { nameof(FuseForgetOne), Unsafe.SizeOf<FuseForgetOne>(), 16 },
        { nameof(FuseBatchForgetIn), Unsafe.SizeOf<FuseBatchForgetIn>(), 8 },
        { nameof(FuseGetattrIn), Unsafe.SizeOf<FuseGetattrIn>(), 16 },
        { nameof(FuseSetattrIn), Unsafe.SizeOf<FuseSetattrIn>(), 88 },
        { nameof(FuseMknodIn), Unsafe.SizeOf<FuseMknodIn>(), 16 },
        { nameof(FuseMkdirIn), Unsafe.SizeOf<FuseMkdirIn>(), 8 },
        { nameof(FuseRenameIn), Unsafe.SizeOf<FuseRenameIn>(), 8 },
        { nameof(FuseRename2In), Unsafe.SizeOf<FuseRename2In>(), 16 },
        { nameof(FuseLinkIn), Unsafe.SizeOf<FuseLinkIn>(), 8 },
        { nameof(FuseOpenIn), Unsafe.SizeOf<FuseOpenIn>(), 8 },
        { nameof(FuseCreateIn), Unsafe.SizeOf<FuseCreateIn>(), 16 },
        { nameof(FuseOpenOut), Unsafe.SizeOf<FuseOpenOut>(), 16 },
        { nameof(FuseReleaseIn), Unsafe.SizeOf<FuseReleaseIn>(), 24 },
        { nameof(FuseFlushIn), Unsafe.SizeOf<FuseFlushIn>(), 24 },
        { nameof(FuseReadIn), Unsafe.SizeOf<FuseReadIn>(), 40 },
        { nameof(FuseWriteIn), Unsafe.SizeOf<FuseWriteIn>(), 40 },
        { nameof(FuseWriteOut), Unsafe.SizeOf<FuseWriteOut>(), 8 },
        { nameof(FuseStatfsOut), Unsafe.SizeOf<FuseStatfsOut>(), 80 },
        { nameof(FuseFsyncIn), Unsafe.SizeOf<FuseFsyncIn>(), 16 },
        { nameof(FuseSetxattrIn), Unsafe.SizeOf<FuseSetxattrIn>(), 8 },
        { nameof(FuseGetxattrIn), Unsafe.SizeOf<FuseGetxattrIn>(), 8 },
        { nameof(FuseGetxattrOut), Unsafe.SizeOf<FuseGetxattrOut>(), 8 },
        { nameof(FuseLkIn), Unsafe.SizeOf<FuseLkIn>(), 48 },
        { nameof(FuseLkOut), Unsafe.SizeOf<FuseLkOut>(), 24 },
        { nameof(FuseAccessIn), Unsafe.SizeOf<FuseAccessIn>(), 8 },
        { nameof(FuseInterruptIn), Unsafe.SizeOf<FuseInterruptIn>(), 8 },
        { nameof(FuseBmapIn), Unsafe.SizeOf<FuseBmapIn>(), 16 },
        { nameof(FuseBmapOut), Unsafe.SizeOf<FuseBmapOut>(), 8 },
        { nameof(FuseFallocateIn), Unsafe.SizeOf<FuseFallocateIn>(), 32 },
        { nameof(FuseDirent), Unsafe.SizeOf<FuseDirent>(), 24 },
        { nameof(FuseNotifyInvalInodeOut), Unsafe.SizeOf<FuseNotifyInvalInodeOut>(), 24 },
        { nameof(FuseNotifyInvalEntryOut), Unsafe.SizeOf<FuseNotifyInvalEntryOut>(), 16 },
        { nameof(FuseNotifyDeleteOut), Unsafe.SizeOf<FuseNotifyDeleteOut>(), 24 },
        { nameof(FuseNotifyStoreOut), Unsafe.SizeOf<FuseNotifyStoreOut>(), 24 },
        { nameof(FuseNotifyRetrieveOut), Unsafe.SizeOf<FuseNotifyRetrieveOut>(), 32 },
        { nameof(FuseNotifyRetrieveIn), Unsafe.SizeOf<FuseNotifyRetrieveIn>(), 40 },
        { nameof(FuseLseekIn), Unsafe.SizeOf<FuseLseekIn>(), 24 },
        { nameof(FuseLseekOut), Unsafe.SizeOf<FuseLseekOut>(), 8 },
        { nameof(FuseCopyFileRangeIn), Unsafe.SizeOf<FuseCopyFileRangeIn>(), 56 },
        { nameof(FuseCopyFileRangeOut), Unsafe.SizeOf<FuseCopyFileRangeOut>(), 8 },
        { nameof(FuseSyncfsIn), Unsafe.SizeOf<FuseSyncfsIn>(), 8 },
        { nameof(FuseStatxIn), Unsafe.SizeOf<FuseStatxIn>(), 24 },
        { nameof(FuseSxTime), Unsafe.SizeOf<FuseSxTime>(), 16 },
        { nameof(FuseStatx), Unsafe.SizeOf<FuseStatx>(), 256 },
        { nameof(FuseStatxOut), Unsafe.SizeOf<FuseStatxOut>(), 288 },
        { nameof(FuseBackingMap), Unsafe.SizeOf<FuseBackingMap>(), 16 },
    };

    [Theory, MemberData(nameof(Sizes))]
    public void Struct_has_the_kernel_size(string name, int actual, int expected) =>
        Assert.True(actual == expected, $"{name} is {actual} bytes, fuse.h says {expected}");

    [Fact]
    public void Key_offsets_match_the_header()
    {
        Assert.Equal(60, (int)Marshal.OffsetOf<FuseAttr>(nameof(FuseAttr.Mode)));
        Assert.Equal(84, (int)Marshal.OffsetOf<FuseAttr>(nameof(FuseAttr.Flags)));
        Assert.Equal(40, (int)Marshal.OffsetOf<FuseEntryOut>(nameof(FuseEntryOut.Attr)));
        Assert.Equal(16, (int)Marshal.OffsetOf<FuseInitOut>(nameof(FuseInitOut.MaxBackground)));
        Assert.Equal(20, (int)Marshal.OffsetOf<FuseInitOut>(nameof(FuseInitOut.MaxWrite)));
        Assert.Equal(28, (int)Marshal.OffsetOf<FuseInitOut>(nameof(FuseInitOut.MaxPages)));
        Assert.Equal(32, (int)Marshal.OffsetOf<FuseInitOut>(nameof(FuseInitOut.Flags2)));
        Assert.Equal(36, (int)Marshal.OffsetOf<FuseInitOut>(nameof(FuseInitOut.MaxStackDepth)));
        Assert.Equal(16, (int)Marshal.OffsetOf<FuseInitIn>(nameof(FuseInitIn.Flags2)));
        Assert.Equal(36, (int)Marshal.OffsetOf<FuseInHeader>(nameof(FuseInHeader.TotalExtLen)));
        Assert.Equal(12, (int)Marshal.OffsetOf<FuseOpenOut>(nameof(FuseOpenOut.BackingId)));
        Assert.Equal(64, (int)Marshal.OffsetOf<FuseStatx>(nameof(FuseStatx.Atime)));
        Assert.Equal(32, (int)Marshal.OffsetOf<FuseStatxOut>(nameof(FuseStatxOut.Stat)));
        Assert.Equal(56, (int)Marshal.OffsetOf<FuseSetattrIn>(nameof(FuseSetattrIn.AtimeNsec)));
    }

    [Fact]
    public void Ioctl_numbers_match_the_IOR_IOW_macros()
    {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr; read = 2, write = 1.
        static uint Ioc(uint dir, uint type, uint nr, uint size) => dir << 30 | size << 16 | type << 8 | nr;
        Assert.True(Ioc(2, 229, 0, 4) == FuseConstants.DevIocClone, nameof(FuseConstants.DevIocClone));
        Assert.True(Ioc(1, 229, 1, 16) == FuseConstants.DevIocBackingOpen, nameof(FuseConstants.DevIocBackingOpen));
        Assert.True(Ioc(1, 229, 2, 4) == FuseConstants.DevIocBackingClose, nameof(FuseConstants.DevIocBackingClose));
    }
}
