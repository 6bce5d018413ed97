using System.Text;
using ExtFuse.Interop;
using ExtFuse.Tests.Support;
using static ExtFuse.Tests.Support.Posix;

namespace ExtFuse.Tests;

/// <summary>MemoryFs on a real /dev/fuse mount, driven through ordinary system calls.</summary>
public class MemoryFsTests(MemoryMount m) : PosixSuite(m), IClassFixture<MemoryMount>;

/// <summary>StackFs over a scratch directory, through the same suite.</summary>
public class StackFsTests(StackMount m) : PosixSuite(m), IClassFixture<StackMount>;

/// <summary>StackFs with every node reached by file handle instead of a held descriptor, through the same suite.</summary>
public class StackFsByHandleTests(HandleStackMount m) : PosixSuite(m), IClassFixture<HandleStackMount>;

/// <summary>MemoryFs through the same suite, with requests and replies over FUSE over io_uring.</summary>
public class MemoryFsOverIoUringTests(UringMemoryMount m) : PosixSuite(m), IClassFixture<UringMemoryMount>;

/// <summary>StackFs through the same suite over FUSE over io_uring.</summary>
public class StackFsOverIoUringTests(UringStackMount m) : PosixSuite(m), IClassFixture<UringStackMount>;

/// <summary>POSIX behaviour every complete file system here must show, on a real mount.</summary>
public abstract class PosixSuite(TestMount m)
{
    private const int ENOENT = 2, EEXIST = 17, ENOTEMPTY = 39, ENODATA = 61, ERANGE = 34, ENXIO = 6, EAGAIN = 11,
        EISDIR = 21, ENOTDIR = 20, EINVAL = 22, ENAMETOOLONG = 36;

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    private static string ReadAll(int fd)
    {
        var buf = new byte[1 << 16];
        var n = PRead(fd, buf, 0);
        Assert.True(n >= 0, $"pread: errno {-n}");
        return Encoding.UTF8.GetString(buf, 0, n);
    }

    [Fact]
    public void Create_write_read_append_and_truncate()
    {
        var d = m.NewDir();
        var f = Path.Combine(d, "a.txt");
        File.WriteAllText(f, "hello");
        File.AppendAllText(f, " world");
        Assert.Equal("hello world", File.ReadAllText(f));
        Assert.Equal(11, new FileInfo(f).Length);

        var fd = Open(f, O_WRONLY | O_APPEND);
        Assert.Equal(1, Write(fd, B("!")));
        Close(fd);
        Assert.Equal("hello world!", File.ReadAllText(f));

        fd = Open(f, O_RDWR | O_TRUNC);
        Assert.True(fd >= 0);
        Assert.Equal(0, LStat(f).Size);
        Assert.Equal(3, PWrite(fd, B("abc"), 0));
        Close(fd);

        Assert.Equal(0, Truncate(f, 1));
        Assert.Equal("a", File.ReadAllText(f));
        Assert.Equal(0, Truncate(f, 10000));
        var bytes = File.ReadAllBytes(f);
        Assert.Equal(10000, bytes.Length);
        Assert.Equal((byte)'a', bytes[0]);
        Assert.All(bytes[1..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void O_EXCL_fails_on_an_existing_file()
    {
        var f = Path.Combine(m.NewDir(), "x");
        var fd = Open(f, O_CREAT | O_EXCL | O_WRONLY);
        Assert.True(fd >= 0, $"create: {fd}");
        Close(fd);
        Assert.Equal(-EEXIST, Open(f, O_CREAT | O_EXCL | O_WRONLY));
    }

    [Fact]
    public void Large_writes_and_reads_round_trip()
    {
        var f = Path.Combine(m.NewDir(), "big");
        var data = new byte[5 * 1024 * 1024 + 123];
        new Random(42).NextBytes(data);
        File.WriteAllBytes(f, data);
        Assert.Equal(data, File.ReadAllBytes(f));
        // Unaligned reads across 64 KiB chunks.
        using var s = File.OpenRead(f);
        s.Position = 65530;
        var part = new byte[100_000];
        s.ReadExactly(part);
        Assert.Equal(data.AsSpan(65530, 100_000).ToArray(), part);
    }

    [Fact]
    public void Rename_within_and_across_directories()
    {
        var d = m.NewDir();
        Directory.CreateDirectory(Path.Combine(d, "x"));
        Directory.CreateDirectory(Path.Combine(d, "y"));
        File.WriteAllText(Path.Combine(d, "x", "f"), "1");
        Assert.Equal(0, Rename(Path.Combine(d, "x", "f"), Path.Combine(d, "x", "g")));
        Assert.Equal(0, Rename(Path.Combine(d, "x", "g"), Path.Combine(d, "y", "h")));
        Assert.False(File.Exists(Path.Combine(d, "x", "g")));
        Assert.Equal("1", File.ReadAllText(Path.Combine(d, "y", "h")));
        // A directory moves with its contents, and nlink of both parents follows.
        Directory.CreateDirectory(Path.Combine(d, "x", "sub"));
        File.WriteAllText(Path.Combine(d, "x", "sub", "k"), "k");
        Assert.Equal(3ul, LStat(Path.Combine(d, "x")).Nlink);
        Assert.Equal(0, Rename(Path.Combine(d, "x", "sub"), Path.Combine(d, "y", "sub")));
        Assert.Equal(2ul, LStat(Path.Combine(d, "x")).Nlink);
        Assert.Equal(3ul, LStat(Path.Combine(d, "y")).Nlink);
        Assert.Equal("k", File.ReadAllText(Path.Combine(d, "y", "sub", "k")));
        // Not into itself.
        Assert.Equal(-EINVAL, Rename(Path.Combine(d, "y"), Path.Combine(d, "y", "sub", "inner")));
    }

    [Fact]
    public void Rename_over_an_open_file_keeps_the_open_file_readable()
    {
        var d = m.NewDir();
        string a = Path.Combine(d, "a"), b = Path.Combine(d, "b");
        File.WriteAllText(a, "new");
        File.WriteAllText(b, "old");
        var fd = Open(b, O_RDONLY);
        Assert.Equal(0, Rename(a, b));
        Assert.Equal("old", ReadAll(fd));
        Close(fd);
        Assert.Equal("new", File.ReadAllText(b));
        Assert.False(File.Exists(a));
    }

    [Fact]
    public void Rename_noreplace_and_exchange()
    {
        var d = m.NewDir();
        string a = Path.Combine(d, "a"), b = Path.Combine(d, "b"), c = Path.Combine(d, "c");
        File.WriteAllText(a, "A");
        File.WriteAllText(b, "B");
        Assert.Equal(-EEXIST, Rename(a, b, RENAME_NOREPLACE));
        Assert.Equal("A", File.ReadAllText(a));
        Assert.Equal(0, Rename(a, c, RENAME_NOREPLACE));
        Assert.Equal(0, Rename(c, b, RENAME_EXCHANGE));
        Assert.Equal("A", File.ReadAllText(b));
        Assert.Equal("B", File.ReadAllText(c));
        Assert.Equal(-ENOENT, Rename(c, Path.Combine(d, "missing"), RENAME_EXCHANGE));
        // Exchange a directory and a file across directories.
        Directory.CreateDirectory(Path.Combine(d, "dir"));
        File.WriteAllText(Path.Combine(d, "dir", "inside"), "i");
        Assert.Equal(0, Rename(Path.Combine(d, "dir"), c, RENAME_EXCHANGE));
        Assert.True(Directory.Exists(c));
        Assert.Equal("i", File.ReadAllText(Path.Combine(c, "inside")));
        Assert.Equal("B", File.ReadAllText(Path.Combine(d, "dir")));
    }

    [Fact]
    public void Rename_type_mismatches_are_refused()
    {
        var d = m.NewDir();
        Directory.CreateDirectory(Path.Combine(d, "dir"));
        Directory.CreateDirectory(Path.Combine(d, "full"));
        File.WriteAllText(Path.Combine(d, "full", "x"), "");
        File.WriteAllText(Path.Combine(d, "file"), "");
        Assert.Equal(-EISDIR, Rename(Path.Combine(d, "file"), Path.Combine(d, "dir")));
        Assert.Equal(-ENOTDIR, Rename(Path.Combine(d, "dir"), Path.Combine(d, "file")));
        Assert.Equal(-ENOTEMPTY, Rename(Path.Combine(d, "dir"), Path.Combine(d, "full")));
        Directory.CreateDirectory(Path.Combine(d, "empty"));
        Assert.Equal(0, Rename(Path.Combine(d, "dir"), Path.Combine(d, "empty")));
    }

    [Fact]
    public void Unlinked_open_file_stays_readable_and_writable()
    {
        var f = Path.Combine(m.NewDir(), "tmp");
        File.WriteAllText(f, "still here");
        var fd = Open(f, O_RDWR);
        Assert.Equal(0, Unlink(f));
        Assert.False(File.Exists(f));
        Assert.Equal("still here", ReadAll(fd));
        Assert.Equal(4, PWrite(fd, B("more"), 10));
        Assert.Equal("still heremore", ReadAll(fd));
        // Attribute changes reach the node, which must still reach the unlinked inode.
        Assert.Equal(0, FChmod(fd, 0x180));
        Assert.Equal(0, FStat(fd, out var st));
        Assert.Equal(0ul, st.Nlink);
        Assert.Equal(0x180u, st.Mode & 0xFFF);
        Close(fd);
    }

    [Fact]
    public void Unlinked_and_forgotten_nodes_are_freed()
    {
        var d = m.NewDir();
        for (var i = 0; i < 50; i++) File.WriteAllText(Path.Combine(d, $"f{i}"), "x");
        var withFiles = m.NodeCount();
        for (var i = 0; i < 50; i++) File.Delete(Path.Combine(d, $"f{i}"));
        // The kernel forgets unlinked inodes once nothing holds them.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (m.NodeCount() > withFiles - 50 && DateTime.UtcNow < deadline) Thread.Sleep(50);
        Assert.True(m.NodeCount() <= withFiles - 50, $"{m.NodeCount()} nodes left of {withFiles}");
    }

    [Fact]
    public void Mkdir_rmdir_and_ENOTEMPTY()
    {
        var d = m.NewDir();
        var sub = Path.Combine(d, "sub");
        Assert.Equal(0, MkDir(sub));
        Assert.Equal(-EEXIST, MkDir(sub));
        File.WriteAllText(Path.Combine(sub, "f"), "");
        Assert.Equal(-ENOTEMPTY, RmDir(sub));
        Assert.Equal(-ENOTDIR, RmDir(Path.Combine(sub, "f")));
        File.Delete(Path.Combine(sub, "f"));
        Assert.Equal(0, RmDir(sub));
        Assert.Equal(-ENOENT, RmDir(sub));
        Assert.Equal(-ENAMETOOLONG, MkDir(Path.Combine(d, new string('n', 256))));
        Assert.Equal(0, MkDir(Path.Combine(d, new string('n', 255))));
    }

    [Fact]
    public void Readdir_of_10000_entries_with_telldir_and_seekdir()
    {
        var d = m.NewDir("many");
        var expected = new HashSet<string>();
        for (var i = 0; i < 10_000; i++)
        {
            var name = $"entry-{i:D5}";
            var fd = Open(Path.Combine(d, name), O_CREAT | O_WRONLY);
            Assert.True(fd >= 0, $"create {name}: errno {-fd}");
            Close(fd);
            expected.Add(name);
        }
        var dir = OpenDir(d);
        Assert.NotEqual(0, dir);
        try
        {
            var seen = new List<string>();
            long mark = 0;
            string? afterMark = null;
            for (string? n; (n = ReadDir(dir)) is not null;)
            {
                if (n is "." or "..") continue;
                seen.Add(n);
                if (seen.Count == 5000) mark = TellDir(dir);
                else if (seen.Count == 5001) afterMark = n;
            }
            Assert.Equal(10_000, seen.Count);
            Assert.Equal(expected, seen.ToHashSet());
            // seekdir back to the remembered position continues with the same entry.
            SeekDir(dir, mark);
            Assert.Equal(afterMark, ReadDir(dir));
            // And deleting entries before the mark does not move it.
            for (var i = 0; i < 100; i++) File.Delete(Path.Combine(d, seen[i]));
            SeekDir(dir, mark);
            Assert.Equal(afterMark, ReadDir(dir));
        }
        finally { CloseDir(dir); }
        Assert.Equal(9_900, Directory.GetFileSystemEntries(d).Length);
    }

    [Fact]
    public void Symlinks_and_readlink()
    {
        var d = m.NewDir();
        File.WriteAllText(Path.Combine(d, "target"), "t");
        Assert.Equal(0, Symlink("target", Path.Combine(d, "link")));
        Assert.Equal("target", ReadLink(Path.Combine(d, "link")));
        Assert.Equal("t", File.ReadAllText(Path.Combine(d, "link")));
        var st = LStat(Path.Combine(d, "link"));
        Assert.Equal(0xA000u, st.Mode & 0xF000);
        Assert.Equal(6, st.Size);
        Assert.Equal(0, Symlink("/nowhere/at/all", Path.Combine(d, "dangling")));
        Assert.Equal(-ENOENT, Open(Path.Combine(d, "dangling"), O_RDONLY));
        Assert.Equal("/nowhere/at/all", ReadLink(Path.Combine(d, "dangling")));
        Assert.Equal(-EEXIST, Symlink("x", Path.Combine(d, "link")));
    }

    [Fact]
    public void Hard_links_share_data_and_count_nlink()
    {
        var d = m.NewDir();
        string a = Path.Combine(d, "a"), b = Path.Combine(d, "b");
        File.WriteAllText(a, "shared");
        Assert.Equal(0, Link(a, b));
        Assert.Equal(2ul, LStat(a).Nlink);
        Assert.Equal(LStat(a).Ino, LStat(b).Ino);
        File.AppendAllText(b, "!");
        Assert.Equal("shared!", File.ReadAllText(a));
        File.Delete(a);
        Assert.Equal(1ul, LStat(b).Nlink);
        Assert.Equal("shared!", File.ReadAllText(b));
        Assert.Equal(-EEXIST, Link(b, b));
    }

    [Fact]
    public void Chmod_chown_and_utimens()
    {
        var f = Path.Combine(m.NewDir(), "f");
        File.WriteAllText(f, "x");
        Assert.Equal(0, Chmod(f, 0x1C0 /* 0700 */ | 0x800 /* setuid */));
        Assert.Equal(0x89C0u, LStat(f).Mode);
        var ctime = LStat(f).Ctime;
        Thread.Sleep(20);
        Assert.Equal(0, Chown(f, 1234, 5678));
        var st = LStat(f);
        Assert.Equal(1234u, st.Uid);
        Assert.Equal(5678u, st.Gid);
        Assert.Equal(0x81C0u, st.Mode);            // chown cleared set-user-ID
        Assert.True(st.Ctime.Sec * 1_000_000_000 + st.Ctime.Nsec > ctime.Sec * 1_000_000_000 + ctime.Nsec, "ctime moves on chown");
        Assert.Equal(0, Utimens(f, new TimeSpec { Sec = 1_000_000_000, Nsec = 123 }, new TimeSpec { Sec = 1_500_000_000, Nsec = 456 }));
        st = LStat(f);
        Assert.Equal(1_000_000_000, st.Atime.Sec);
        Assert.Equal(123, st.Atime.Nsec);
        Assert.Equal(1_500_000_000, st.Mtime.Sec);
        Assert.Equal(456, st.Mtime.Nsec);
    }

    [Fact]
    public void Writes_move_mtime_and_size()
    {
        var f = Path.Combine(m.NewDir(), "f");
        File.WriteAllText(f, "x");
        Assert.Equal(0, Utimens(f, new TimeSpec { Sec = 1000 }, new TimeSpec { Sec = 1000 }));
        File.AppendAllText(f, "yz");
        var st = LStat(f);
        Assert.Equal(3, st.Size);
        Assert.True(st.Mtime.Sec > 1000);
    }

    [Fact]
    public void Extended_attributes()
    {
        var f = Path.Combine(m.NewDir(), "f");
        File.WriteAllText(f, "x");
        Assert.Equal(0, SetXattr(f, "user.color", B("blue")));
        Assert.Equal(0, SetXattr(f, "user.empty", []));
        var buf = new byte[64];
        Assert.Equal(4, GetXattr(f, "user.color", buf));
        Assert.Equal("blue", Encoding.UTF8.GetString(buf, 0, 4));
        Assert.Equal(4, GetXattr(f, "user.color", []));          // size query
        Assert.Equal(-ERANGE, GetXattr(f, "user.color", new byte[2]));
        Assert.Equal(0, GetXattr(f, "user.empty", buf));
        Assert.Equal(-ENODATA, GetXattr(f, "user.none", buf));
        Assert.Equal(-EEXIST, SetXattr(f, "user.color", B("red"), XATTR_CREATE));
        Assert.Equal(-ENODATA, SetXattr(f, "user.other", B("red"), XATTR_REPLACE));
        Assert.Equal(0, SetXattr(f, "user.color", B("red"), XATTR_REPLACE));
        var list = new byte[256];
        var n = ListXattr(f, list);
        var names = Encoding.UTF8.GetString(list, 0, n).Split('\0', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["user.color", "user.empty"], names.Order().ToArray());
        Assert.Equal(n, ListXattr(f, []));
        Assert.Equal(0, RemoveXattr(f, "user.color"));
        Assert.Equal(-ENODATA, RemoveXattr(f, "user.color"));
        Assert.Equal(-ENODATA, GetXattr(f, "user.color", buf));
    }

    [Fact]
    public void Statfs_reports_capacity_and_use()
    {
        Assert.Equal(0, StatFs(m.Root, out var before));
        Assert.Equal(4096ul, before.Bsize);
        Assert.Equal(255ul, before.Namemax);
        Assert.True(before.Blocks > 0);
        File.WriteAllBytes(Path.Combine(m.NewDir(), "fill"), new byte[4 << 20]);
        Assert.Equal(0, StatFs(m.Root, out var after));
        if (m is StackMount stack)
        {
            // A stacked file system reports its source's figures. The free counts move with
            // everything else on that disk (other tests run meanwhile): compare the totals.
            Assert.Equal(0, StatFs(stack.Source, out var source));
            Assert.Equal(source.Blocks, after.Blocks);
            Assert.Equal(source.Files, after.Files);
            Assert.Equal(source.Bsize, after.Bsize);
            Assert.Equal(source.Namemax, after.Namemax);
        }
        else
        {
            // Nothing else shares this file system's storage: the write must show.
            Assert.True(after.Bfree < before.Bfree, $"bfree {before.Bfree} -> {after.Bfree}");
            Assert.True(after.Ffree < before.Ffree);
        }
    }

    [Fact]
    public void Fsync_and_fdatasync_succeed()
    {
        var f = Path.Combine(m.NewDir(), "f");
        using var s = new FileStream(f, FileMode.Create);
        s.Write(B("data"));
        s.Flush(flushToDisk: true);
        Assert.Equal("data", File.ReadAllText(f));
    }

    [Fact]
    public void Fallocate_and_seek_data_hole()
    {
        var f = Path.Combine(m.NewDir(), "sparse");
        var fd = Open(f, O_CREAT | O_RDWR);
        try
        {
            const long MiB = 1 << 20;
            Assert.Equal(4, PWrite(fd, B("head"), 0));
            Assert.Equal(4, PWrite(fd, B("tail"), 4 * MiB));
            Assert.Equal(4 * MiB + 4, LStat(f).Size);
            // Data at 0, a hole after the first chunk, data again at 4 MiB.
            Assert.Equal(0, Lseek(fd, 0, SEEK_DATA));
            var hole = Lseek(fd, 0, SEEK_HOLE);
            Assert.True(hole > 0 && hole < 4 * MiB, $"hole at {hole}");
            var data = Lseek(fd, hole, SEEK_DATA);
            Assert.True(data > hole && data <= 4 * MiB, $"data at {data}");
            Assert.Equal(4 * MiB + 4, Lseek(fd, 4 * MiB, SEEK_HOLE)); // EOF is a hole
            Assert.Equal(-ENXIO, Lseek(fd, 5 * MiB, SEEK_DATA));
            // fallocate extends size and allocates; KEEP_SIZE does not change the size.
            Assert.Equal(0, FAllocate(fd, 0, 4 * MiB, 2 * MiB));
            Assert.Equal(6 * MiB, LStat(f).Size);
            Assert.Equal(0, FAllocate(fd, FALLOC_FL_KEEP_SIZE, 6 * MiB, MiB));
            Assert.Equal(6 * MiB, LStat(f).Size);
            // Punching a hole zeroes the range.
            Assert.Equal(0, FAllocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2));
            var buf = new byte[4];
            Assert.Equal(4, PRead(fd, buf, 0));
            Assert.Equal("\0\0ad", Encoding.ASCII.GetString(buf));
            Assert.Equal(4, PRead(fd, buf, 4 * MiB));
            Assert.Equal("tail", Encoding.ASCII.GetString(buf));
        }
        finally { Close(fd); }
    }

    [Fact]
    public void Copy_file_range_copies_between_files()
    {
        var d = m.NewDir();
        string a = Path.Combine(d, "a"), b = Path.Combine(d, "b");
        File.WriteAllText(a, "0123456789");
        File.WriteAllText(b, "");
        int fa = Open(a, O_RDONLY), fb = Open(b, O_WRONLY);
        Assert.Equal(5, CopyFileRange(fa, 2, fb, 0, 5));
        Close(fa); Close(fb);
        Assert.Equal("23456", File.ReadAllText(b));
    }

    [Fact]
    public void Mmap_read_and_write()
    {
        // Mapped pages are touched through MappedFile (native memcpy): the daemon runs in this
        // process, and a page fault in managed code could deadlock with the GC.
        var f = Path.Combine(m.NewDir(), "mapped");
        File.WriteAllBytes(f, Encoding.ASCII.GetBytes(new string('a', 8192)));
        var fd = Open(f, O_RDWR);
        using (var map = MappedFile.Map(fd, 0, 8192, writable: true))
        {
            var one = new byte[1];
            map.Read(4100, one);
            Assert.Equal((byte)'a', one[0]);
            map.Write(10, "Z"u8);
            map.Write(5000, "Q"u8);
            map.Flush();
        }
        Close(fd);
        var bytes = File.ReadAllBytes(f);
        Assert.Equal((byte)'Z', bytes[10]);
        Assert.Equal((byte)'Q', bytes[5000]);
        // A write(2) is seen by a new mapping.
        fd = Open(f, O_RDWR);
        PWrite(fd, B("W"), 7000);
        using (var map = MappedFile.Map(fd, 0, 8192, writable: false))
        {
            var one = new byte[1];
            map.Read(7000, one);
            Assert.Equal((byte)'W', one[0]);
        }
        Close(fd);
    }

    [Fact]
    public void Concurrent_readers_and_writers()
    {
        var d = m.NewDir();
        const int Writers = 4, Blocks = 64, BlockSize = 16 * 1024;
        var shared = Path.Combine(d, "shared");
        File.WriteAllBytes(shared, new byte[Writers * Blocks * BlockSize]);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var threads = new List<Thread>();
        for (var w = 0; w < Writers; w++)
        {
            var id = w;
            threads.Add(Client(errors, () =>
            {
                var fd = Open(shared, O_RDWR);
                var block = new byte[BlockSize];
                Array.Fill(block, (byte)('A' + id));
                for (var i = 0; i < Blocks; i++)
                {
                    var off = ((long)i * Writers + id) * BlockSize;
                    if (PWrite(fd, block, off) != BlockSize) errors.Enqueue($"writer {id} block {i}");
                    var back = new byte[BlockSize];
                    if (PRead(fd, back, off) != BlockSize || !back.AsSpan().SequenceEqual(block)) errors.Enqueue($"readback {id}/{i}");
                }
                Close(fd);
                // Each writer also churns its own files.
                for (var i = 0; i < 100; i++)
                {
                    var p = Path.Combine(d, $"w{id}-{i}");
                    File.WriteAllText(p, p);
                    if (File.ReadAllText(p) != p) errors.Enqueue($"file {p}");
                    if (i % 2 == 0) File.Delete(p);
                }
            }));
        }
        for (var r = 0; r < 2; r++)
            threads.Add(Client(errors, () =>
            {
                for (var i = 0; i < 50; i++)
                {
                    foreach (var e in Directory.EnumerateFileSystemEntries(d)) _ = e;
                    using var s = File.OpenRead(shared);
                    s.ReadExactly(new byte[BlockSize]);
                }
            }));
        threads.ForEach(t => t.Start());
        threads.ForEach(t => Assert.True(t.Join(TimeSpan.FromSeconds(120)), "a client thread hung"));
        Assert.Empty(errors);
        var all = File.ReadAllBytes(shared);
        for (var i = 0; i < Writers * Blocks; i++) Assert.Equal((byte)('A' + i % Writers), all[(long)i * BlockSize]);
        Assert.Equal(Writers * 50 + 1, Directory.GetFileSystemEntries(d).Length);
    }

    /// <summary>A client thread whose failure is recorded, not left to take the test host down.</summary>
    private static Thread Client(System.Collections.Concurrent.ConcurrentQueue<string> errors, Action body) => new(() =>
    {
        try { body(); }
        catch (Exception e) { errors.Enqueue(e.ToString()); }
    });

    [Fact]
    public void Posix_record_locks_and_flock()
    {
        var f = Path.Combine(m.NewDir(), "locked");
        File.WriteAllText(f, "0123456789");
        int a = Open(f, O_RDWR), b = Open(f, O_RDWR);
        try
        {
            // Open-file-description locks: each fd is its own owner, so they conflict within one process.
            var wr = new Flock { Type = F_WRLCK, Start = 0, Len = 5 };
            Assert.Equal(0, Fcntl(a, F_OFD_SETLK, ref wr));
            var other = new Flock { Type = F_WRLCK, Start = 3, Len = 2 };
            Assert.Equal(-EAGAIN, Fcntl(b, F_OFD_SETLK, ref other));
            var free = new Flock { Type = F_WRLCK, Start = 5, Len = 5 };
            Assert.Equal(0, Fcntl(b, F_OFD_SETLK, ref free));
            var query = new Flock { Type = F_WRLCK, Start = 0, Len = 1 };
            Assert.Equal(0, Fcntl(b, F_OFD_GETLK, ref query));
            Assert.Equal(F_WRLCK, query.Type);
            Assert.Equal(0, query.Start);

            // A waiting lock is granted when the holder unlocks, without blocking the daemon.
            var waiter = new Thread(() =>
            {
                var w = new Flock { Type = F_WRLCK, Start = 0, Len = 5 };
                Assert.Equal(0, Fcntl(b, F_OFD_SETLKW, ref w));
            });
            waiter.Start();
            Thread.Sleep(200);
            Assert.True(waiter.IsAlive, "SETLKW should wait while the range is locked");
            Assert.Equal("0123456789", File.ReadAllText(f)); // the daemon still serves others
            var un = new Flock { Type = F_UNLCK, Start = 0, Len = 5 };
            Assert.Equal(0, Fcntl(a, F_OFD_SETLK, ref un));
            Assert.True(waiter.Join(TimeSpan.FromSeconds(10)), "SETLKW was not granted after unlock");

            // flock(2) locks belong to the open file.
            Assert.Equal(0, FlockFile(a, LOCK_EX | LOCK_NB));
            Assert.Equal(-EAGAIN, FlockFile(b, LOCK_SH | LOCK_NB));
            Assert.Equal(0, FlockFile(a, LOCK_UN));
            Assert.Equal(0, FlockFile(b, LOCK_SH | LOCK_NB));
        }
        finally { Close(a); Close(b); }
        // Closing released everything: a fresh descriptor can take the whole file.
        var c = Open(f, O_RDWR);
        var all = new Flock { Type = F_WRLCK, Start = 0, Len = 0 };
        Assert.Equal(0, Fcntl(c, F_OFD_SETLK, ref all));
        Assert.Equal(0, FlockFile(c, LOCK_EX | LOCK_NB));
        Close(c);
    }

    [Fact]
    public void Special_files_and_tmpfile()
    {
        var d = m.NewDir();
        Assert.Equal(0, MkNod(Path.Combine(d, "fifo"), 0x1000 | 0x1A4));
        Assert.Equal(0x1000u, LStat(Path.Combine(d, "fifo")).Mode & 0xF000);
        Assert.Equal(0, MkNod(Path.Combine(d, "chr"), 0x2000 | 0x1A4, (1 << 8) | 3));
        Assert.Equal((ulong)((1 << 8) | 3), LStat(Path.Combine(d, "chr")).Rdev);

        var fd = Open(d, O_TMPFILE | O_RDWR, 0x1A4);
        Assert.True(fd >= 0, $"O_TMPFILE: errno {-fd}");
        Assert.Equal(5, PWrite(fd, B("temp!"), 0));
        Assert.Equal(0, LinkAt(fd, "", AT_FDCWD, Path.Combine(d, "named"), AT_EMPTY_PATH));
        Close(fd);
        Assert.Equal("temp!", File.ReadAllText(Path.Combine(d, "named")));
    }

    [Fact]
    public void Sgid_directories_pass_their_group_down()
    {
        var d = m.NewDir();
        var shared = Path.Combine(d, "shared");
        Assert.Equal(0, MkDir(shared));
        Assert.Equal(0, Chown(shared, 0, 4321));
        Assert.Equal(0, Chmod(shared, 0x400 | 0x1FD /* g+s 0775 */));
        File.WriteAllText(Path.Combine(shared, "f"), "");
        Assert.Equal(0, MkDir(Path.Combine(shared, "sub")));
        Assert.Equal(4321u, LStat(Path.Combine(shared, "f")).Gid);
        var sub = LStat(Path.Combine(shared, "sub"));
        Assert.Equal(4321u, sub.Gid);
        Assert.True((sub.Mode & 0x400) != 0, "subdirectory inherits set-group-ID");
    }
}
