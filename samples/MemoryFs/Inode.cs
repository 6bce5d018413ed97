using System.Text;
using ExtFuse.Protocol;

namespace ExtFuse.Samples.Memory;

internal static class Mode
{
    public const uint IFMT = 0xF000, IFSOCK = 0xC000, IFLNK = 0xA000, IFREG = 0x8000, IFBLK = 0x6000,
        IFDIR = 0x4000, IFCHR = 0x2000, IFIFO = 0x1000, ISUID = 0x800, ISGID = 0x400, ISVTX = 0x200,
        IXGRP = 0x8, Perms = 0xFFF;
    public static bool IsDir(uint m) => (m & IFMT) == IFDIR;
    public static bool IsReg(uint m) => (m & IFMT) == IFREG;
    public static bool IsLnk(uint m) => (m & IFMT) == IFLNK;
}

internal readonly record struct Timespec(long Sec, uint Nsec)
{
    public static Timespec Now()
    {
        var t = DateTime.UtcNow - DateTime.UnixEpoch;
        return new Timespec(t.Ticks / TimeSpan.TicksPerSecond, (uint)(t.Ticks % TimeSpan.TicksPerSecond * 100));
    }
}

/// <summary>A directory entry; Cookie is its stable readdir offset (telldir/seekdir survive changes).</summary>
internal sealed class DirEntry(string name, Inode node, long cookie)
{
    public string Name = name;
    public Inode Node = node;
    public long Cookie = cookie;
}

/// <summary>A node of the in-memory tree. All fields are guarded by the file system's lock.</summary>
internal sealed class Inode
{
    public const int ChunkSize = 64 * 1024;

    public required ulong Ino;
    public uint Mode, Uid, Gid, Rdev, Nlink;
    public Timespec Atime, Mtime, Ctime, Btime;
    public long Size;
    public long Lookups;                  // references the kernel holds (LOOKUP, CREATE, READDIRPLUS... minus FORGET)

    // Regular files: sparse 64 KiB chunks; a missing chunk is a hole.
    public Dictionary<long, byte[]>? Chunks;
    // Directories.
    public Dictionary<string, DirEntry>? Entries;
    public SortedList<long, DirEntry>? ByCookie;
    public long NextCookie = 3;           // 1 and 2 are "." and ".."
    public Inode? Parent;
    // Symlinks.
    public byte[]? Target;
    public Dictionary<string, byte[]>? Xattrs;
    // Locks.
    public List<LockRange>? PosixLocks;
    public List<LockRange>? FlockLocks;

    public bool IsDir => Memory.Mode.IsDir(Mode);
    public long UsedBytes => Chunks is null ? (Target?.Length ?? 0) : (long)Chunks.Count * ChunkSize;

    public static string Key(ReadOnlySpan<byte> name) => Encoding.Latin1.GetString(name);
    public static byte[] Bytes(string key) => Encoding.Latin1.GetBytes(key);

    public void Touch(bool mtime = true, bool ctime = true)
    {
        var now = Timespec.Now();
        if (mtime) Mtime = now;
        if (ctime) Ctime = now;
    }

    /// <summary>Clears set-user-ID, and set-group-ID when group-executable (what the VFS does on write and chown).</summary>
    public void KillSuidGid()
    {
        Mode &= ~Memory.Mode.ISUID;
        if ((Mode & Memory.Mode.IXGRP) != 0) Mode &= ~Memory.Mode.ISGID;
    }

    public FuseAttr Attr()
    {
        var blocks = (ulong)((UsedBytes + 511) / 512);
        return new FuseAttr
        {
            Ino = Ino, Size = (ulong)Size, Blocks = blocks,
            Atime = (ulong)Atime.Sec, AtimeNsec = Atime.Nsec, Mtime = (ulong)Mtime.Sec, MtimeNsec = Mtime.Nsec,
            Ctime = (ulong)Ctime.Sec, CtimeNsec = Ctime.Nsec,
            Mode = Mode, Nlink = Nlink, Uid = Uid, Gid = Gid, Rdev = Rdev, BlkSize = 4096,
        };
    }

    // ---- directory ----

    public void AddEntry(string name, Inode node)
    {
        var e = new DirEntry(name, node, NextCookie++);
        Entries!.Add(name, e);
        ByCookie!.Add(e.Cookie, e);
    }

    public DirEntry RemoveEntry(string name)
    {
        var e = Entries![name];
        Entries.Remove(name);
        ByCookie!.Remove(e.Cookie);
        return e;
    }

    // ---- file data ----

    public int ReadInto(long offset, Span<byte> dest)
    {
        if (offset >= Size) return 0;
        var n = (int)Math.Min(dest.Length, Size - offset);
        var done = 0;
        while (done < n)
        {
            var pos = offset + done;
            var idx = pos / ChunkSize;
            var within = (int)(pos % ChunkSize);
            var len = Math.Min(ChunkSize - within, n - done);
            if (Chunks!.TryGetValue(idx, out var chunk)) chunk.AsSpan(within, len).CopyTo(dest.Slice(done, len));
            else dest.Slice(done, len).Clear();
            done += len;
        }
        return n;
    }

    public void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        var done = 0;
        while (done < data.Length)
        {
            var pos = offset + done;
            var idx = pos / ChunkSize;
            var within = (int)(pos % ChunkSize);
            var len = Math.Min(ChunkSize - within, data.Length - done);
            if (!Chunks!.TryGetValue(idx, out var chunk)) Chunks[idx] = chunk = new byte[ChunkSize];
            data.Slice(done, len).CopyTo(chunk.AsSpan(within, len));
            done += len;
        }
        Size = Math.Max(Size, offset + data.Length);
    }

    public void Truncate(long size)
    {
        if (size < Size)
        {
            var lastChunk = size == 0 ? -1 : (size - 1) / ChunkSize;
            foreach (var idx in Chunks!.Keys.Where(k => k > lastChunk).ToList()) Chunks.Remove(idx);
            if (size % ChunkSize != 0 && Chunks.TryGetValue(size / ChunkSize, out var tail))
                tail.AsSpan((int)(size % ChunkSize)).Clear();
        }
        Size = size;
    }

    /// <summary>Zeroes [offset, offset+length): whole chunks become holes.</summary>
    public void PunchHole(long offset, long length)
    {
        var end = offset + length;
        for (var pos = offset; pos < end;)
        {
            var idx = pos / ChunkSize;
            var within = (int)(pos % ChunkSize);
            var len = (int)Math.Min(ChunkSize - within, end - pos);
            if (within == 0 && len == ChunkSize) Chunks!.Remove(idx);
            else if (Chunks!.TryGetValue(idx, out var chunk)) chunk.AsSpan(within, len).Clear();
            pos += len;
        }
    }

    /// <summary>Makes [offset, offset+length) allocated (zero-filled where it was a hole).</summary>
    public void Allocate(long offset, long length)
    {
        if (length <= 0) return;
        for (var idx = offset / ChunkSize; idx <= (offset + length - 1) / ChunkSize; idx++)
            if (!Chunks!.ContainsKey(idx)) Chunks[idx] = new byte[ChunkSize];
    }

    /// <summary>SEEK_DATA / SEEK_HOLE at chunk granularity; -1 means ENXIO.</summary>
    public long Seek(long offset, bool data)
    {
        if (offset >= Size) return -1;
        for (var idx = offset / ChunkSize; idx * ChunkSize < Size; idx++)
        {
            if (Chunks!.ContainsKey(idx) == data) return Math.Max(offset, idx * ChunkSize);
        }
        return data ? -1 : Size; // the end of file is an implicit hole
    }
}

internal struct LockRange
{
    public long Start, End;   // inclusive end; long.MaxValue = to EOF
    public uint Type;         // F_RDLCK 0, F_WRLCK 1
    public ulong Owner;
    public uint Pid;
    public ulong Fh;          // the open file it was taken through
    public readonly bool Overlaps(long start, long end) => Start <= end && start <= End;
}
