using System.Text;
using ExtFuse.Protocol;
using ExtFuse.Session;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// Golden bytes for every opcode: a request built field by field from fuse.h goes through the real
/// dispatcher into a file system that records the decoded call and answers with fixed values; the
/// call and the exact reply bytes are compared with Golden/protocol.golden.
/// Set EXTFUSE_UPDATE_GOLDEN=1 to rewrite the file (then review the diff).
/// </summary>
public class ProtocolGoldenTests
{
    private sealed class RecordingFs : RawFileSystem
    {
        public readonly List<string> Calls = [];
        private void Call(string s) => Calls.Add(s);
        private static string S(ReadOnlySpan<byte> b) => Encoding.UTF8.GetString(b);

        public static FuseAttr Attr => new()
        {
            Ino = 5, Size = 6, Blocks = 7, Atime = 8, Mtime = 9, Ctime = 10, AtimeNsec = 11, MtimeNsec = 12, CtimeNsec = 13,
            Mode = 0x81A4, Nlink = 1, Uid = 1000, Gid = 100, Rdev = 0, BlkSize = 4096,
        };
        public static FuseEntryOut Entry => new() { NodeId = 5, Generation = 1, EntryValid = 2, AttrValid = 3, EntryValidNsec = 4, AttrValidNsec = 5, Attr = Attr };

        public override void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) { Call($"Lookup({parent}, \"{S(name)}\")"); r.ReplyEntry(Entry); }
        public override void Forget(ulong nodeId, ulong nlookup) => Call($"Forget({nodeId}, {nlookup})");
        public override void GetAttr(FuseRequest r, ulong nodeId, ulong? fh) { Call($"GetAttr({nodeId}, fh={fh?.ToString() ?? "none"})"); r.ReplyAttr(new FuseAttrOut { AttrValid = 1, AttrValidNsec = 2, Attr = Attr }); }
        public override void SetAttr(FuseRequest r, ulong nodeId, in FuseSetattrIn a) { Call($"SetAttr({nodeId}, valid={a.Valid}, size={a.Size}, mode={Convert.ToString(a.Mode, 8)}, uid={a.Uid}, gid={a.Gid}, atime={a.Atime}.{a.AtimeNsec}, mtime={a.Mtime}.{a.MtimeNsec})"); r.ReplyAttr(new FuseAttrOut { AttrValid = 1, Attr = Attr }); }
        public override void ReadLink(FuseRequest r, ulong nodeId) { Call($"ReadLink({nodeId})"); r.ReplyData("target"u8); }
        public override void Symlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target) { Call($"Symlink({parent}, \"{S(name)}\" -> \"{S(target)}\")"); r.ReplyEntry(Entry); }
        public override void MkNod(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask) { Call($"MkNod({parent}, \"{S(name)}\", mode={Convert.ToString(mode, 8)}, rdev={rdev}, umask={Convert.ToString(umask, 8)})"); r.ReplyEntry(Entry); }
        public override void MkDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask) { Call($"MkDir({parent}, \"{S(name)}\", mode={Convert.ToString(mode, 8)}, umask={Convert.ToString(umask, 8)})"); r.ReplyEntry(Entry); }
        public override void Unlink(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) { Call($"Unlink({parent}, \"{S(name)}\")"); r.ReplyOk(); }
        public override void RmDir(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) { Call($"RmDir({parent}, \"{S(name)}\")"); r.ReplyError(Errno.ENOTEMPTY); }
        public override void Rename(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags) { Call($"Rename({parent}, \"{S(name)}\", {newParent}, \"{S(newName)}\", flags={flags})"); r.ReplyOk(); }
        public override void Link(FuseRequest r, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName) { Call($"Link({nodeId}, {newParent}, \"{S(newName)}\")"); r.ReplyEntry(Entry); }
        public override void Open(FuseRequest r, ulong nodeId, in FuseOpenIn o) { Call($"Open({nodeId}, flags={Convert.ToString(o.Flags, 8)}, openFlags={o.OpenFlags})"); r.ReplyOpen(new FuseOpenOut { Fh = 0x10, OpenFlags = OpenReplyFlags.KeepCache }); }
        public override void Read(FuseRequest r, ulong nodeId, in FuseReadIn a) { Call($"Read({nodeId}, fh={a.Fh}, offset={a.Offset}, size={a.Size}, flags={Convert.ToString(a.Flags, 8)})"); r.ReplyData("data"u8); }
        public override void Write(FuseRequest r, ulong nodeId, in FuseWriteIn a, ReadOnlySpan<byte> data) { Call($"Write({nodeId}, fh={a.Fh}, offset={a.Offset}, writeFlags={a.WriteFlags}, data=\"{S(data)}\")"); r.ReplyWrite((uint)data.Length); }
        public override void StatFs(FuseRequest r, ulong nodeId) { Call($"StatFs({nodeId})"); r.ReplyStatfs(new FuseKStatfs { Blocks = 1000, Bfree = 500, Bavail = 400, Files = 100, Ffree = 50, Bsize = 4096, NameLen = 255, Frsize = 4096 }); }
        public override void Release(FuseRequest r, ulong nodeId, in FuseReleaseIn a) { Call($"Release({nodeId}, fh={a.Fh}, flags={Convert.ToString(a.Flags, 8)}, releaseFlags={a.ReleaseFlags}, owner={a.LockOwner:x})"); r.ReplyOk(); }
        public override void Fsync(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) { Call($"Fsync({nodeId}, fh={fh}, dataOnly={dataOnly})"); r.ReplyOk(); }
        public override void SetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, uint flags) { Call($"SetXattr({nodeId}, \"{S(name)}\", \"{S(value)}\", flags={flags})"); r.ReplyOk(); }
        public override void GetXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name, uint size) { Call($"GetXattr({nodeId}, \"{S(name)}\", size={size})"); if (size == 0) r.ReplyXattrSize(5); else r.ReplyData("value"u8); }
        public override void ListXattr(FuseRequest r, ulong nodeId, uint size) { Call($"ListXattr({nodeId}, size={size})"); if (size == 0) r.ReplyXattrSize(7); else r.ReplyData("user.a\0"u8); }
        public override void RemoveXattr(FuseRequest r, ulong nodeId, ReadOnlySpan<byte> name) { Call($"RemoveXattr({nodeId}, \"{S(name)}\")"); r.ReplyError(Errno.ENODATA); }
        public override void Flush(FuseRequest r, ulong nodeId, ulong fh, ulong lockOwner) { Call($"Flush({nodeId}, fh={fh}, owner={lockOwner:x})"); r.ReplyOk(); }
        public override void OpenDir(FuseRequest r, ulong nodeId, in FuseOpenIn o) { Call($"OpenDir({nodeId}, flags={Convert.ToString(o.Flags, 8)})"); r.ReplyOpen(new FuseOpenOut { Fh = 0x20, OpenFlags = OpenReplyFlags.CacheDir }); }
        public override void ReadDir(FuseRequest r, ulong nodeId, in FuseReadIn a)
        {
            Call($"ReadDir({nodeId}, fh={a.Fh}, offset={a.Offset}, size={a.Size})");
            var l = new DirectoryListing(r, a.Size);
            l.Add(1, "."u8, 0x41ED, 1);
            l.Add(5, "file.txt"u8, 0x81A4, 2);
            l.Reply();
        }
        public override void ReadDirPlus(FuseRequest r, ulong nodeId, in FuseReadIn a)
        {
            Call($"ReadDirPlus({nodeId}, fh={a.Fh}, offset={a.Offset}, size={a.Size})");
            var l = new DirectoryListing(r, a.Size);
            l.AddPlus(Entry, "f"u8, 3);
            l.Reply();
        }
        public override void ReleaseDir(FuseRequest r, ulong nodeId, in FuseReleaseIn a) { Call($"ReleaseDir({nodeId}, fh={a.Fh})"); r.ReplyOk(); }
        public override void FsyncDir(FuseRequest r, ulong nodeId, ulong fh, bool dataOnly) { Call($"FsyncDir({nodeId}, fh={fh}, dataOnly={dataOnly})"); r.ReplyOk(); }
        public override void GetLk(FuseRequest r, ulong nodeId, in FuseLkIn lk) { Call($"GetLk({nodeId}, fh={lk.Fh}, owner={lk.Owner:x}, {lk.Lk.Start}-{lk.Lk.End}, type={lk.Lk.Type}, pid={lk.Lk.Pid}, lkFlags={lk.LkFlags})"); r.ReplyLock(new FuseFileLock { Start = 0, End = 99, Type = 1, Pid = 77 }); }
        public override void SetLk(FuseRequest r, ulong nodeId, in FuseLkIn lk, bool wait) { Call($"SetLk({nodeId}, {lk.Lk.Start}-{lk.Lk.End}, type={lk.Lk.Type}, wait={wait}, lkFlags={lk.LkFlags})"); if (wait) r.ReplyOk(); else r.ReplyError(Errno.EAGAIN); }
        public override void Access(FuseRequest r, ulong nodeId, uint mask) { Call($"Access({nodeId}, mask={mask})"); r.ReplyError(Errno.EACCES); }
        public override void Create(FuseRequest r, ulong parent, ReadOnlySpan<byte> name, in FuseCreateIn c) { Call($"Create({parent}, \"{S(name)}\", flags={Convert.ToString(c.Flags, 8)}, mode={Convert.ToString(c.Mode, 8)}, umask={Convert.ToString(c.Umask, 8)})"); r.ReplyCreate(Entry, new FuseOpenOut { Fh = 0x30 }); }
        public override void Bmap(FuseRequest r, ulong nodeId, ulong block, uint blockSize) { Call($"Bmap({nodeId}, block={block}, blockSize={blockSize})"); r.ReplyBmap(77); }
        public override void FAllocate(FuseRequest r, ulong nodeId, in FuseFallocateIn f) { Call($"FAllocate({nodeId}, fh={f.Fh}, offset={f.Offset}, length={f.Length}, mode={f.Mode})"); r.ReplyOk(); }
        public override void Lseek(FuseRequest r, ulong nodeId, ulong fh, long offset, int whence) { Call($"Lseek({nodeId}, fh={fh}, offset={offset}, whence={whence})"); r.ReplyLseek(4096); }
        public override void CopyFileRange(FuseRequest r, ulong nodeIdIn, in FuseCopyFileRangeIn c) { Call($"CopyFileRange({nodeIdIn}, fhIn={c.FhIn}, offIn={c.OffIn}, out={c.NodeIdOut}, fhOut={c.FhOut}, offOut={c.OffOut}, len={c.Len}, flags={c.Flags})"); r.ReplyCopied(1000); }
        public override void SyncFs(FuseRequest r, ulong nodeId) { Call($"SyncFs({nodeId})"); r.ReplyOk(); }
        public override void TmpFile(FuseRequest r, ulong parent, in FuseCreateIn c) { Call($"TmpFile({parent}, flags={Convert.ToString(c.Flags, 8)}, mode={Convert.ToString(c.Mode, 8)})"); r.ReplyCreate(Entry, new FuseOpenOut { Fh = 0x40 }); }
        public override void Statx(FuseRequest r, ulong nodeId, in FuseStatxIn s)
        {
            Call($"Statx({nodeId}, getattrFlags={s.GetattrFlags}, fh={s.Fh}, sxFlags={s.SxFlags:x}, sxMask={s.SxMask:x})");
            r.ReplyStatx(new FuseStatxOut { AttrValid = 1, Stat = new FuseStatx { Mask = 0xFFF, BlkSize = 4096, Nlink = 1, Mode = 0x81A4, Ino = 5, Size = 6, Btime = new FuseSxTime { Sec = 1700000000, Nsec = 5 } } });
        }
        public override void Destroy() => Call("Destroy()");
    }

    private static readonly byte[] Empty = [];

    private static IEnumerable<(string Name, byte[] Request)> Cases()
    {
        const uint LOOKUP = 1, FORGET = 2, GETATTR = 3, SETATTR = 4, READLINK = 5, SYMLINK = 6, MKNOD = 8, MKDIR = 9,
            UNLINK = 10, RMDIR = 11, RENAME = 12, LINK = 13, OPEN = 14, READ = 15, WRITE = 16, STATFS = 17, RELEASE = 18,
            FSYNC = 20, SETXATTR = 21, GETXATTR = 22, LISTXATTR = 23, REMOVEXATTR = 24, FLUSH = 25, INIT = 26, OPENDIR = 27,
            READDIR = 28, RELEASEDIR = 29, FSYNCDIR = 30, GETLK = 31, SETLK = 32, SETLKW = 33, ACCESS = 34, CREATE = 35,
            INTERRUPT = 36, BMAP = 37, DESTROY = 38, IOCTL = 39, POLL = 40, BATCH_FORGET = 42, FALLOCATE = 43,
            READDIRPLUS = 44, RENAME2 = 45, LSEEK = 46, COPY_FILE_RANGE = 47, SYNCFS = 50, TMPFILE = 51, STATX = 52,
            COPY_FILE_RANGE_64 = 53;
        static byte[] R(uint op, ulong node, Wire body) => Wire.Request(op, node, body.Bytes);
        var readIn = new Wire().U64(0x10).U64(8192).U32(4096).U32(0).U64(0).U32(0x8000).U32(0);

        // INIT as Linux 6.18 sends it: 7.45, INIT_EXT with flags2.
        yield return ("INIT", R(INIT, 0, new Wire().U32(7).U32(45).U32(131072).U32(0xFFFFFFFF).U32(0x3FF).Zeros(44)));
        yield return ("INIT from a 7.31 kernel (16-byte fuse_init_in)", R(INIT, 0, new Wire().U32(7).U32(31).U32(131072).U32(0x3FFFFFF)));
        yield return ("INIT from a too-old kernel", R(INIT, 0, new Wire().U32(7).U32(19).U32(131072).U32(0xFFFF)));
        yield return ("LOOKUP", R(LOOKUP, 1, new Wire().Str("hello.txt")));
        yield return ("FORGET (no reply)", R(FORGET, 5, new Wire().U64(3)));
        yield return ("BATCH_FORGET (no reply)", R(BATCH_FORGET, 0, new Wire().U32(2).U32(0).U64(5).U64(1).U64(6).U64(2)));
        yield return ("GETATTR", R(GETATTR, 5, new Wire().U32(0).U32(0).U64(0)));
        yield return ("GETATTR with fh", R(GETATTR, 5, new Wire().U32(1).U32(0).U64(0x10)));
        yield return ("SETATTR", R(SETATTR, 5, new Wire().U32(1 | 8 | 16 | 32).U32(0).U64(0).U64(1234).U64(0).U64(100).U64(200).U64(0).U32(1).U32(2).U32(0).U32(0x1A4).U32(0).U32(1000).U32(100).U32(0)));
        yield return ("READLINK", R(READLINK, 7, new Wire()));
        yield return ("SYMLINK", R(SYMLINK, 1, new Wire().Str("link").Str("../target")));
        yield return ("MKNOD", R(MKNOD, 1, new Wire().U32(0x11A4).U32(0).U32(0x12).U32(0).Str("fifo")));
        yield return ("MKDIR", R(MKDIR, 1, new Wire().U32(0x1ED).U32(0x12).Str("dir")));
        yield return ("UNLINK", R(UNLINK, 1, new Wire().Str("gone")));
        yield return ("RMDIR (error reply)", R(RMDIR, 1, new Wire().Str("full")));
        yield return ("RENAME", R(RENAME, 1, new Wire().U64(9).Str("a").Str("b")));
        yield return ("RENAME2 with RENAME_EXCHANGE", R(RENAME2, 1, new Wire().U64(9).U32(2).U32(0).Str("a").Str("b")));
        yield return ("LINK", R(LINK, 9, new Wire().U64(5).Str("hard")));
        yield return ("OPEN", R(OPEN, 5, new Wire().U32(0x8002).U32(0)));
        yield return ("READ", R(READ, 5, readIn));
        yield return ("WRITE", R(WRITE, 5, new Wire().U64(0x10).U64(4).U32(5).U32(4).U64(0).U32(0x8001).U32(0).Raw("hello"u8.ToArray())));
        yield return ("STATFS", R(STATFS, 1, new Wire()));
        yield return ("RELEASE", R(RELEASE, 5, new Wire().U64(0x10).U32(0x8000).U32(2).U64(0xABCDEF)));
        yield return ("FSYNC", R(FSYNC, 5, new Wire().U64(0x10).U32(1).U32(0)));
        yield return ("SETXATTR", R(SETXATTR, 5, new Wire().U32(3).U32(1).Str("user.k").Raw("v12"u8.ToArray())));
        yield return ("GETXATTR size query", R(GETXATTR, 5, new Wire().U32(0).U32(0).Str("user.k")));
        yield return ("GETXATTR", R(GETXATTR, 5, new Wire().U32(64).U32(0).Str("user.k")));
        yield return ("LISTXATTR size query", R(LISTXATTR, 5, new Wire().U32(0).U32(0)));
        yield return ("LISTXATTR", R(LISTXATTR, 5, new Wire().U32(64).U32(0)));
        yield return ("REMOVEXATTR (error reply)", R(REMOVEXATTR, 5, new Wire().Str("user.k")));
        yield return ("FLUSH", R(FLUSH, 5, new Wire().U64(0x10).U32(0).U32(0).U64(0xABCDEF)));
        yield return ("OPENDIR", R(OPENDIR, 1, new Wire().U32(0x10000).U32(0)));
        yield return ("READDIR", R(READDIR, 1, new Wire().U64(0x20).U64(0).U32(4096).U32(0).U64(0).U32(0).U32(0)));
        yield return ("READDIR buffer too small for the second entry", R(READDIR, 1, new Wire().U64(0x20).U64(0).U32(40).U32(0).U64(0).U32(0).U32(0)));
        yield return ("READDIRPLUS", R(READDIRPLUS, 1, new Wire().U64(0x20).U64(2).U32(4096).U32(0).U64(0).U32(0).U32(0)));
        yield return ("RELEASEDIR", R(RELEASEDIR, 1, new Wire().U64(0x20).U32(0).U32(0).U64(0)));
        yield return ("FSYNCDIR", R(FSYNCDIR, 1, new Wire().U64(0x20).U32(0).U32(0)));
        yield return ("GETLK", R(GETLK, 5, new Wire().U64(0x10).U64(0x77).U64(0).U64(99).U32(1).U32(4242).U32(0).U32(0)));
        yield return ("SETLK (conflict)", R(SETLK, 5, new Wire().U64(0x10).U64(0x77).U64(0).U64(ulong.MaxValue >> 1).U32(1).U32(4242).U32(0).U32(0)));
        yield return ("SETLKW flock", R(SETLKW, 5, new Wire().U64(0x10).U64(0x77).U64(0).U64(ulong.MaxValue >> 1).U32(1).U32(4242).U32(1).U32(0)));
        yield return ("ACCESS", R(ACCESS, 5, new Wire().U32(2).U32(0)));
        yield return ("CREATE", R(CREATE, 1, new Wire().U32(0x80C1).U32(0x81A4).U32(0x12).U32(0).Str("new.txt")));
        yield return ("INTERRUPT of an unknown request (no reply)", R(INTERRUPT, 0, new Wire().U64(0xDEAD)));
        yield return ("BMAP", R(BMAP, 5, new Wire().U64(3).U32(4096).U32(0)));
        yield return ("DESTROY", R(DESTROY, 0, new Wire()));
        yield return ("IOCTL is not supported", R(IOCTL, 5, new Wire().U64(0x10).U32(0).U32(0x5401).U64(0).U32(0).U32(0)));
        yield return ("POLL is not supported", R(POLL, 5, new Wire().U64(0x10).U64(1).U32(0).U32(1)));
        yield return ("FALLOCATE", R(FALLOCATE, 5, new Wire().U64(0x10).U64(4096).U64(8192).U32(1).U32(0)));
        yield return ("LSEEK SEEK_HOLE", R(LSEEK, 5, new Wire().U64(0x10).U64(100).U32(4).U32(0)));
        yield return ("COPY_FILE_RANGE", R(COPY_FILE_RANGE, 5, new Wire().U64(0x10).U64(0).U64(6).U64(0x11).U64(512).U64(4096).U64(0)));
        yield return ("COPY_FILE_RANGE_64", R(COPY_FILE_RANGE_64, 5, new Wire().U64(0x10).U64(0).U64(6).U64(0x11).U64(512).U64(4096).U64(0)));
        yield return ("SYNCFS", R(SYNCFS, 1, new Wire().U64(0)));
        yield return ("TMPFILE", R(TMPFILE, 1, new Wire().U32(0x410002).U32(0x8180).U32(0x12).U32(0).Str("/")));
        yield return ("STATX", R(STATX, 5, new Wire().U32(0).U32(0).U64(0).U32(0).U32(0xFFF)));
        yield return ("unknown opcode 4000", R(4000, 1, new Wire()));
        yield return ("malformed: GETATTR body too short", R(GETATTR, 5, new Wire().U32(0)));
        yield return ("malformed: LOOKUP name without NUL", R(LOOKUP, 1, new Wire().Raw("abc"u8.ToArray())));
        yield return ("malformed: WRITE shorter than its size", R(WRITE, 5, new Wire().U64(0x10).U64(0).U32(100).U32(0).U64(0).U32(0).U32(0).Raw(1, 2, 3)));
    }

    private static string Hex(byte[] b) => string.Join("\n  ", b.Chunk(16).Select(c => Convert.ToHexString(c).ToLowerInvariant()));

    private static string Render()
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Generated by ProtocolGoldenTests: request bytes, the decoded call, reply bytes. EXTFUSE_UPDATE_GOLDEN=1 rewrites.");
        foreach (var (name, request) in Cases())
        {
            var fs = new RecordingFs();
            var session = new FuseSession(fs, new FuseSessionOptions { MaxWrite = 128 * 1024, MaxReadahead = 128 * 1024, MaxBackground = 64, CongestionThreshold = 48 });
            var channel = new RecordingChannel();
            session.Process(request, channel, new FuseRequest(session));
            sb.AppendLine($"## {name}");
            sb.AppendLine($"request:\n  {Hex(request)}");
            sb.AppendLine($"call: {(fs.Calls.Count == 0 ? "(none)" : string.Join("; ", fs.Calls))}");
            if (channel.Messages.Count == 0) sb.AppendLine("reply: (none)");
            foreach (var m in channel.Messages) sb.AppendLine($"reply:\n  {Hex(m)}");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    [Fact]
    public void Every_opcode_matches_the_golden_bytes()
    {
        var actual = Render();
        var path = Golden.PathOf("protocol.golden");
        if (Golden.Update) { File.WriteAllText(path, actual); return; }
        Assert.True(File.Exists(path), $"missing {path}; run with EXTFUSE_UPDATE_GOLDEN=1");
        Golden.AssertSame(File.ReadAllText(path), actual, path);
    }

    [Fact]
    public void Golden_file_covers_every_opcode_the_issue_lists()
    {
        var names = Cases().Select(c => c.Name).ToList();
        foreach (var op in new[] { "LOOKUP", "FORGET", "BATCH_FORGET", "GETATTR", "SETATTR", "READLINK", "SYMLINK", "MKNOD", "MKDIR", "UNLINK",
                     "RMDIR", "RENAME", "RENAME2", "LINK", "OPEN", "READ", "WRITE", "STATFS", "RELEASE", "FSYNC", "SETXATTR", "GETXATTR",
                     "LISTXATTR", "REMOVEXATTR", "FLUSH", "OPENDIR", "READDIR", "READDIRPLUS", "RELEASEDIR", "FSYNCDIR", "ACCESS",
                     "CREATE", "INTERRUPT", "DESTROY", "FALLOCATE", "LSEEK", "COPY_FILE_RANGE", "GETLK", "SETLK", "SETLKW", "TMPFILE",
                     "STATX", "SYNCFS", "INIT" })
            Assert.Contains(names, n => n == op || n.StartsWith(op + " ", StringComparison.Ordinal));
    }

    [Fact]
    public void Init_reply_negotiates_minor_limits_and_flags()
    {
        var session = new FuseSession(new RecordingFs(), new FuseSessionOptions { MaxWrite = 1 << 20, WritebackCache = true });
        var channel = new RecordingChannel();
        var request = Wire.Request(26, 0, new Wire().U32(7).U32(50).U32(65536).U32(0xFFFFFFFF).U32(0xFFFFFFFF).Zeros(44).Bytes);
        session.Process(request, channel, new FuseRequest(session));
        var reply = channel.Messages.Single();
        Assert.Equal(16 + 64, reply.Length);
        var body = System.Runtime.InteropServices.MemoryMarshal.Read<FuseInitOut>(reply.AsSpan(16));
        Assert.Equal(7u, body.Major);
        Assert.Equal(FuseConstants.KernelMinorVersion, body.Minor);    // min(kernel 50, ours)
        Assert.Equal(65536u, body.MaxReadahead);                        // min(kernel, ours)
        var flags = (InitFlags)body.Flags | (InitFlags)((ulong)body.Flags2 << 32);
        foreach (var f in new[] { InitFlags.AsyncRead, InitFlags.AtomicOTrunc, InitFlags.BigWrites, InitFlags.ParallelDirops,
                     InitFlags.DoReaddirplus, InitFlags.ReaddirplusAuto, InitFlags.AutoInvalData, InitFlags.HandleKillprivV2,
                     InitFlags.CacheSymlinks, InitFlags.InitExt, InitFlags.MaxPages, InitFlags.WritebackCache, InitFlags.PosixLocks })
            Assert.True(flags.HasFlag(f), $"{f} missing from {flags}");
        Assert.False(flags.HasFlag(InitFlags.Passthrough), "passthrough is not asked for yet");
        Assert.Equal(session.EffectiveMaxWrite(), body.MaxWrite);
        Assert.Equal((ushort)((body.MaxWrite + 4095) / 4096), body.MaxPages);
        Assert.True(body.MaxWrite <= 1 << 20);
    }

    [Fact]
    public void Capabilities_follow_what_the_file_system_implements()
    {
        // A file system without ReadDirPlus or locks must not get READDIRPLUS or POSIX_LOCKS.
        var session = new FuseSession(new OnlyLookupFs());
        var wanted = session.WantedFlags();
        Assert.False(wanted.HasFlag(InitFlags.DoReaddirplus));
        Assert.False(wanted.HasFlag(InitFlags.PosixLocks));
        Assert.True(wanted.HasFlag(InitFlags.NoOpenSupport), "no Open override: zero-message opens");
        Assert.True(new FuseSession(new RecordingFs()).WantedFlags().HasFlag(InitFlags.DoReaddirplus));
    }

    private sealed class OnlyLookupFs : RawFileSystem
    {
        public override void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name) => r.ReplyError(Errno.ENOENT);
    }
}
