using System.Text;
using ExtFuse.Tests.Support;
using static ExtFuse.Tests.Support.Posix;

namespace ExtFuse.Tests;

/// <summary>What only a stacked file system has: a source directory underneath.</summary>
public class StackFsSourceTests(StackMount m) : IClassFixture<StackMount>
{
    [Fact]
    public void Writes_land_in_the_source_and_fsync_means_fsync()
    {
        var d = m.NewDir();
        var f = Path.Combine(d, "data");
        var fd = Open(f, O_CREAT | O_WRONLY);
        Assert.Equal(5, PWrite(fd, "hello"u8, 0));
        Assert.Equal(0, Fsync(fd));
        Assert.Equal("hello", File.ReadAllText(m.InSource(f)));   // acknowledged and synced: it is in the source
        Close(fd);
        // And the other way round: the source's content is what the mount shows.
        File.WriteAllText(m.InSource(Path.Combine(d, "from-source")), "behind the mount");
        Assert.Equal("behind the mount", File.ReadAllText(Path.Combine(d, "from-source")));
    }

    [Fact]
    public void Renames_in_the_source_do_not_break_known_nodes()
    {
        var d = m.NewDir();
        Directory.CreateDirectory(Path.Combine(d, "a", "b"));
        File.WriteAllText(Path.Combine(d, "a", "b", "f"), "1");
        var dirfd = Open(Path.Combine(d, "a", "b"), O_PATH | O_DIRECTORY);
        Assert.True(dirfd >= 0);
        try
        {
            // Someone renames a parent directly in the source: a path-string loopback would now
            // look for <source>/a/b/f and fail; by descriptors the node still reaches the file.
            Directory.Move(m.InSource(Path.Combine(d, "a")), m.InSource(Path.Combine(d, "c")));
            var fd = OpenAt(dirfd, "f", O_WRONLY | O_APPEND);
            Assert.True(fd >= 0, $"openat through the known node: errno {-fd}");
            Assert.Equal(1, Write(fd, "2"u8));
            Close(fd);
            Assert.Equal("12", File.ReadAllText(m.InSource(Path.Combine(d, "c", "b", "f"))));
        }
        finally { Close(dirfd); }
    }

    [Fact]
    public void Files_are_created_as_the_caller()
    {
        var d = m.NewDir();
        Assert.Equal(0, Chmod(m.Root, 0x1ED));   // the source root is a 0700 temp directory
        Assert.Equal(0, Chmod(d, 0x1FF));
        var (code, output) = Shell.Run($"touch '{d}/mine' && mkdir '{d}/mydir' && ln -s x '{d}/mylink'", asUser: CliProcess.Nobody);
        Assert.True(code == 0, output);
        foreach (var name in new[] { "mine", "mydir", "mylink" })
        {
            var st = LStat(m.InSource(Path.Combine(d, name)));
            Assert.Equal(CliProcess.Nobody, st.Uid);
            Assert.Equal(CliProcess.Nobody, st.Gid);
        }
        // Root's own files stay root's.
        File.WriteAllText(Path.Combine(d, "roots"), "");
        Assert.Equal(0u, LStat(m.InSource(Path.Combine(d, "roots"))).Uid);
    }

    [Fact]
    public void Hard_links_are_one_node_with_several_names()
    {
        var d = m.NewDir();
        File.WriteAllText(Path.Combine(d, "a"), "x");
        Assert.Equal(0, Link(Path.Combine(d, "a"), Path.Combine(d, "b")));
        Assert.Equal(LStat(Path.Combine(d, "a")).Ino, LStat(Path.Combine(d, "b")).Ino);
        Assert.Equal(LStat(m.InSource(Path.Combine(d, "a"))).Ino, LStat(Path.Combine(d, "a")).Ino);
        Assert.Equal(2ul, LStat(Path.Combine(d, "b")).Nlink);
    }
}

/// <summary>StackFs through the CLI: the unmount-under-load case.</summary>
public class StackFsCliTests
{
    [Fact]
    public void Unmount_while_a_workload_runs_leaves_the_source_intact()
    {
        var source = Directory.CreateTempSubdirectory("extfuse-src-").FullName;
        var mnt = Directory.CreateTempSubdirectory("extfuse-test-stack-").FullName;
        File.WriteAllText(Path.Combine(source, "precious"), "do not lose me");
        using var cli = CliProcess.Start(["mount", "stack", "--source", source, mnt]);
        try
        {
            cli.WaitForOutput("mounted at");
            var done = 0;
            var failures = 0;
            // Like a process whose working directory is inside the mount: it keeps using the mount after unmount.
            var dirfd = Open(mnt, O_PATH | O_DIRECTORY);
            Assert.True(dirfd >= 0);
            var workload = new Thread(() =>
            {
                for (var i = 0; i < 1_000_000 && Volatile.Read(ref failures) < 20; i++)
                {
                    var block = Encoding.ASCII.GetBytes(new string((char)('a' + i % 26), 4096));
                    var fd = OpenAt(dirfd, $"w{i % 20}", O_CREAT | O_WRONLY | O_TRUNC);
                    if (fd < 0) { Interlocked.Increment(ref failures); continue; }
                    var n = Write(fd, block);
                    Close(fd);
                    if (n == block.Length) Interlocked.Increment(ref done); else Interlocked.Increment(ref failures);
                }
            });
            workload.Start();
            while (Volatile.Read(ref done) < 100) Thread.Sleep(10);
            cli.Signal(15);
            Assert.True(cli.WaitForExit(20_000), "the daemon did not exit under load:\n" + cli.Output);
            Assert.True(workload.Join(TimeSpan.FromSeconds(30)), "the workload hung after unmount");
            Close(dirfd);
            Assert.True(failures > 0, "the workload should get errors after unmount");
            Assert.False(ExtFuse.Mounting.MountTable.At(mnt) is { } e && ExtFuse.Mounting.MountTable.IsFuse(e));
            Assert.Equal("do not lose me", File.ReadAllText(Path.Combine(source, "precious")));
            foreach (var f in Directory.GetFiles(source, "w*"))
            {
                var text = File.ReadAllText(f);
                Assert.True(text.Length is 0 or 4096, $"{f}: {text.Length} bytes");  // each write whole or truncated by O_TRUNC, never torn
                Assert.True(text.Length == 0 || text.All(c => c == text[0]));
            }
            Assert.Empty(Directory.GetFileSystemEntries(mnt)); // nothing leaked into the bare mount point
        }
        finally
        {
            if (ExtFuse.Mounting.MountTable.At(mnt) is { } e2 && ExtFuse.Mounting.MountTable.IsFuse(e2)) Shell.Run($"umount -l '{mnt}'");
            Directory.Delete(mnt, true);
            Directory.Delete(source, true);
        }
    }

    /// <summary>The kernel caches far more inodes than a descriptor limit of 256 allows; nodes past the
    /// budget are reached by file handle, and stay right across a rename of their parent.</summary>
    [Fact]
    public void Thousands_of_cached_inodes_fit_a_low_descriptor_limit()
    {
        var source = Directory.CreateTempSubdirectory("extfuse-src-").FullName;
        var mnt = Directory.CreateTempSubdirectory("extfuse-test-stack-").FullName;
        using var cli = CliProcess.Start(["mount", "stack", "--source", source, mnt], descriptorLimit: 256);
        try
        {
            cli.WaitForOutput("mounted at");
            Assert.Contains("up to 64 nodes hold a descriptor, the rest are reopened by file handle; descriptor limit 256", cli.Output);
            const int dirs = 2000;
            var many = Path.Combine(mnt, "many");
            Directory.CreateDirectory(many);
            for (var i = 0; i < dirs; i++)
            {
                Directory.CreateDirectory(Path.Combine(many, $"d{i}"));
                File.WriteAllText(Path.Combine(many, $"d{i}", "f"), $"file {i}");
            }
            // Every directory and file is now a node the kernel holds; go through all of them again.
            for (var i = 0; i < dirs; i++)
                Assert.Equal($"file {i}", File.ReadAllText(Path.Combine(many, $"d{i}", "f")));
            var held = Directory.GetFiles($"/proc/{cli.Pid}/fd").Length;
            Assert.True(held < 256, $"the daemon holds {held} descriptors");
            Directory.Move(many, Path.Combine(mnt, "moved"));
            for (var i = 0; i < dirs; i += 97)
            {
                File.AppendAllText(Path.Combine(mnt, "moved", $"d{i}", "f"), "!");
                Assert.Equal($"file {i}!", File.ReadAllText(Path.Combine(source, "moved", $"d{i}", "f")));
            }
            Assert.DoesNotContain("EMFILE", cli.Output);
        }
        finally
        {
            if (!cli.HasExited) cli.Signal(15);
            cli.WaitForExit(20_000);
            if (ExtFuse.Mounting.MountTable.At(mnt) is { } e && ExtFuse.Mounting.MountTable.IsFuse(e)) Shell.Run($"umount -l '{mnt}'");
            Directory.Delete(mnt, true);
            Directory.Delete(source, true);
        }
    }

    [Fact]
    public void Stack_needs_a_source()
    {
        var (code, output) = CliProcess.Run(["mount", "stack", "/tmp"]);
        Assert.Equal(2, code);
        Assert.Contains("--source", output);
        (code, output) = CliProcess.Run(["mount", "stack", "--source", "/nonexistent/dir", "/tmp"]);
        Assert.Equal(1, code);
        Assert.Contains("does not exist", output);
        (code, output) = CliProcess.Run(["mount", "stack", "--source", "/tmp", "/tmp", "--passthrough", "a/../b"]);
        Assert.Equal(2, code);
        Assert.Contains("bad --passthrough glob", output);
        (code, output) = CliProcess.Run(["mount", "memory", "/tmp", "--cache", "5"]);
        Assert.Equal(2, code);
        Assert.Contains("are for the stack file system", output);
    }

    [Fact]
    public void The_CLI_mounts_stack_with_caching_and_passthrough_and_the_kernel_serves_the_reads()
    {
        var source = Directory.CreateTempSubdirectory("extfuse-cli-src-").FullName;
        var mnt = Directory.CreateTempSubdirectory("extfuse-cli-mnt-").FullName;
        var data = new byte[1 << 20];
        new Random(9).NextBytes(data);
        File.WriteAllBytes(Path.Combine(source, "big.dat"), data);
        using var cli = CliProcess.Start(["mount", "stack", "--source", source, mnt, "--cache", "30", "--passthrough", "**/*.dat"]);
        try
        {
            cli.WaitForOutput("mounted at");
            Assert.Contains("[Passthrough] -> kernel (FUSE passthrough)", cli.Output);
            Assert.Contains("caching -> kernel caches (entry 30 s, attr 30 s)", cli.Output);
            Assert.Equal(data, File.ReadAllBytes(Path.Combine(mnt, "big.dat")));   // this test process is not the daemon
            Assert.Equal(data, File.ReadAllBytes(Path.Combine(mnt, "big.dat")));   // a second open of an unchanged passthrough file (KEEP_CACHE with it was EIO)
            File.WriteAllText(Path.Combine(source, "late.txt"), "behind its back");
            Assert.Equal("behind its back", File.ReadAllText(Path.Combine(mnt, "late.txt")));
            // The daemon's counts since mount, from its pinned maps: a 1 MiB file read with no READ request.
            var (code, stats) = CliProcess.Run(["stats", mnt]);
            Assert.True(code == 0, stats);
            Assert.Matches(@"(?m)^Open\s+\d+", stats);
            Assert.DoesNotMatch(@"(?m)^Read\s+([2-9]|\d\d+)\s", stats);   // only late.txt's one READ at most
        }
        finally
        {
            cli.Signal(15);
            cli.WaitForExit(20_000);
            Shell.Run($"umount -l '{mnt}' 2>/dev/null");
            Directory.Delete(mnt);
            Directory.Delete(source, true);
        }
    }
}

/// <summary>O_DIRECT through StackFs reaches the source with aligned buffers, both ways.</summary>
public class StackFsDirectIoTests(StackMount m) : IClassFixture<StackMount>
{
    [Fact]
    public unsafe void Direct_io_reads_and_writes_work()
    {
        const int O_DIRECT = 0x4000;
        var f = Path.Combine(m.NewDir(), "direct");
        var fd = Open(f, O_CREAT | O_RDWR | O_DIRECT);
        Assert.True(fd >= 0, $"open O_DIRECT: errno {-fd}");
        var buf = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536, 4096);
        try
        {
            var span = new Span<byte>(buf, 65536);
            for (var i = 0; i < span.Length; i++) span[i] = (byte)(i * 7);
            Assert.Equal(65536, PWrite(fd, span, 0));
            Assert.Equal(4096, PWrite(fd, span[..4096], 65536));
            span.Clear();
            Assert.Equal(65536, PRead(fd, span, 0));
            for (var i = 0; i < span.Length; i++) Assert.Equal((byte)(i * 7), span[i]);
            Assert.Equal(4096, PRead(fd, span[..4096], 32768));
            Assert.Equal(unchecked((byte)(32768 * 7)), span[0]);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(buf);
            Close(fd);
        }
        Assert.Equal(65536 + 4096, new FileInfo(m.InSource(f)).Length);
    }
}

/// <summary>The node API's bookkeeping of names, seen through StackFs nodes.</summary>
public class NodeTreeTests(StackMount m) : IClassFixture<StackMount>
{
    [Fact]
    public void Paths_follow_renames_and_hard_links_and_end_at_unlink()
    {
        var fs = (ExtFuse.Nodes.NodeFileSystem)m.Fs;
        var d = m.NewDir("paths");
        var rel = "/" + Path.GetFileName(d);
        Directory.CreateDirectory(Path.Combine(d, "a"));
        File.WriteAllText(Path.Combine(d, "a", "f"), "x");
        var node = fs.FindByStableIno(LStat(Path.Combine(d, "a", "f")).Ino);
        Assert.NotNull(node);
        Assert.Equal($"{rel}/a/f", node.GetPath());

        Assert.Equal(0, Rename(Path.Combine(d, "a"), Path.Combine(d, "b")));
        Assert.Equal($"{rel}/b/f", node.GetPath());
        Assert.Equal(0, Rename(Path.Combine(d, "b", "f"), Path.Combine(d, "g")));
        Assert.Equal($"{rel}/g", node.GetPath());

        // A second name: the node is the same object, reachable under either name.
        Assert.Equal(0, Link(Path.Combine(d, "g"), Path.Combine(d, "b", "h")));
        Assert.Same(node, fs.FindByStableIno(LStat(Path.Combine(d, "b", "h")).Ino));
        Assert.Equal(0, Unlink(Path.Combine(d, "g")));
        Assert.Equal($"{rel}/b/h", node.GetPath());
        Assert.Equal(0, Unlink(Path.Combine(d, "b", "h")));
        Assert.Null(node.GetPath());
    }
}

/// <summary>
/// StackFs with 60 s caches and FOPEN_KEEP_CACHE/CACHE_DIR: what the kernel caches must follow
/// every change, made through the mount or behind its back in the source.
/// </summary>
public class StackFsCachingTests(CachedStackMount m) : IClassFixture<CachedStackMount>
{
    /// <summary>Waits for a condition the source watcher makes true; fails with what was last seen.</summary>
    private static void Eventually(Func<bool> condition, Func<string> seen, double seconds = 3)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"still stale after {seconds} s: {seen()}");
            Thread.Sleep(10);
        }
    }

    [Fact]
    public void Changes_behind_the_mounts_back_reach_cached_entries_attributes_pages_and_listings()
    {
        var d = m.NewDir();
        var f = Path.Combine(d, "f");
        File.WriteAllText(f, "one");
        Assert.Equal("one", File.ReadAllText(f));
        Assert.Equal(3, LStat(f).Size);                                    // attributes now cached for 60 s
        Assert.False(File.Exists(Path.Combine(d, "later")));               // a negative entry, cached for 60 s
        Assert.Equal(["f"], Directory.GetFileSystemEntries(d).Select(Path.GetFileName));   // a cached listing

        File.WriteAllText(m.InSource(f), "three");                         // behind the mount's back
        Eventually(() => LStat(f).Size == 5, () => $"size {LStat(f).Size}");
        Eventually(() => File.ReadAllText(f) == "three", () => File.ReadAllText(f));

        File.WriteAllText(m.InSource(Path.Combine(d, "later")), "new");
        Eventually(() => File.Exists(Path.Combine(d, "later")), () => "later is missing");
        Eventually(() => Directory.GetFileSystemEntries(d).Length == 2, () => string.Join(",", Directory.GetFileSystemEntries(d)));

        File.Move(m.InSource(Path.Combine(d, "later")), m.InSource(Path.Combine(d, "renamed")));
        Eventually(() => !File.Exists(Path.Combine(d, "later")) && File.Exists(Path.Combine(d, "renamed")), () => string.Join(",", Directory.GetFileSystemEntries(d)));
        File.Delete(m.InSource(Path.Combine(d, "renamed")));
        Eventually(() => !File.Exists(Path.Combine(d, "renamed")), () => "renamed is still there");

        Assert.Equal(0, Chmod(m.InSource(f), 0x180));
        Eventually(() => (LStat(f).Mode & 0xFFF) == 0x180, () => Convert.ToString(LStat(f).Mode & 0xFFF, 8));
        Assert.True(m.Stack.SourceInvalidations > 0);
    }

    [Fact]
    public void Unchanged_files_keep_their_pages_across_opens_and_changed_ones_do_not()
    {
        var d = m.NewDir();
        var f = Path.Combine(d, "kept");
        var data = new byte[256 * 1024];
        new Random(3).NextBytes(data);
        File.WriteAllBytes(m.InSource(f), data);
        Assert.True(m.Stack.WaitForSourceChanges(TimeSpan.FromSeconds(5)));   // the creation's events are handled before the first read
        Assert.Equal(data, File.ReadAllBytes(f));
        var reads = m.Session.RequestsOf(Protocol.FuseOpcode.Read);
        Assert.Equal(data, File.ReadAllBytes(f));                          // FOPEN_KEEP_CACHE: from the page cache
        Assert.Equal(data, File.ReadAllBytes(f));
        Assert.Equal(reads, m.Session.RequestsOf(Protocol.FuseOpcode.Read));

        data[1000] ^= 0xFF;
        File.WriteAllBytes(m.InSource(f), data);                           // same size, new content and mtime
        Eventually(() => File.ReadAllBytes(f).AsSpan().SequenceEqual(data), () => "old pages served");
        Assert.True(m.Session.RequestsOf(Protocol.FuseOpcode.Read) > reads);

        var listings = m.Session.RequestsOf(Protocol.FuseOpcode.ReadDirPlus) + m.Session.RequestsOf(Protocol.FuseOpcode.ReadDir);
        for (var i = 0; i < 3; i++) Assert.Single(Directory.GetFileSystemEntries(d));
        Assert.True(m.Session.RequestsOf(Protocol.FuseOpcode.ReadDirPlus) + m.Session.RequestsOf(Protocol.FuseOpcode.ReadDir) - listings <= 2,
            "FOPEN_CACHE_DIR: later listings come from the kernel's cache");
    }

    [Fact]
    public void A_cached_attribute_never_outlives_the_change_that_made_it_wrong_under_concurrent_access()
    {
        var d = m.NewDir();
        const int Files = 4, Rounds = 60;
        var paths = Enumerable.Range(0, Files).Select(i => Path.Combine(d, $"c{i}")).ToArray();
        foreach (var p in paths) File.WriteAllBytes(p, []);
        var stop = false;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        // Readers hammer stat on every file, filling and refreshing the attribute cache meanwhile.
        var readers = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            while (!Volatile.Read(ref stop)) foreach (var p in paths) LStat(p, out Interop.Stat _);
        })).ToList();
        readers.ForEach(t => t.Start());
        var writers = paths.Select((p, i) => new Thread(() =>
        {
            try
            {
                long size = 0;
                for (var round = 0; round < Rounds; round++)
                {
                    size += 100 + round;
                    if (round % 2 == 0)
                    {
                        // Through the mount: the very next stat must see it.
                        var fd = Open(p, O_WRONLY);
                        PWrite(fd, new byte[size], 0);
                        Close(fd);
                        if (LStat(p).Size != size) failures.Enqueue($"{p}: stat after a write through the mount: {LStat(p).Size}, wrote {size}");
                    }
                    else
                    {
                        // Behind its back: once the watcher has handled the change's events (within 3 s),
                        // every stat sees it, though the readers had stat replies in flight mid-change.
                        File.WriteAllBytes(m.InSource(p), new byte[size]);
                        if (!m.Stack.WaitForSourceChanges(TimeSpan.FromSeconds(3))) failures.Enqueue($"{p}: the watcher did not catch up in 3 s");
                        for (var look = 0; look < 3; look++)
                            if (LStat(p).Size is var seen && seen != size) failures.Enqueue($"{p}: stat {look} after the watcher caught up with a change in the source: {seen}, source {size}");
                    }
                }
            }
            catch (Exception e) { failures.Enqueue(e.ToString()); }
        })).ToList();
        writers.ForEach(t => t.Start());
        writers.ForEach(t => t.Join());
        Volatile.Write(ref stop, true);
        readers.ForEach(t => t.Join());
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
    }
}

/// <summary>StackFs answering READ by splice(2) from its source files (-o splice_read).</summary>
public unsafe class StackFsSpliceTests
{
    private sealed class SpliceStackMount() : StackMount(source => ExtFuse.Samples.Stack.StackFileSystem.Open(source), spliceRead: true);

    [Fact]
    public void Reads_by_splice_return_the_source_bytes_at_every_offset_and_length()
    {
        using var m = new SpliceStackMount();
        var data = new byte[3 * 1024 * 1024 + 123];
        new Random(7).NextBytes(data);
        File.WriteAllBytes(Path.Combine(m.Source, "blob"), data);
        var before = m.Session.SplicedReplies;
        // O_DIRECT: every read is a READ request of exactly this size and offset.
        var fd = Posix.Open(Path.Combine(m.Root, "blob"), Posix.O_RDONLY | Posix.O_DIRECT);
        Assert.True(fd >= 0, $"open: errno {-fd}");
        try
        {
            var memory = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(1 << 20, 4096);
            var buffer = new Span<byte>(memory, 1 << 20);
            try
            {
            foreach (var (offset, length) in new[] { (0L, 4096), (4096L, 131072), (1L << 20, 1 << 19), (data.Length - 123L, 4096), (data.Length + 4096L, 4096), (8192L, 1 << 20) })
            {
                var n = Posix.PRead(fd, buffer[..length], offset);
                var expected = (int)Math.Clamp(data.Length - offset, 0, length);
                Assert.Equal(expected, n);
                Assert.True(buffer[..n].SequenceEqual(data.AsSpan((int)Math.Min(offset, data.Length), n)), $"bytes differ at offset {offset}");
            }
            }
            finally { System.Runtime.InteropServices.NativeMemory.AlignedFree(memory); }
        }
        finally { Posix.Close(fd); }
        Assert.True(File.ReadAllBytes(Path.Combine(m.Root, "blob")).AsSpan().SequenceEqual(data));
        // All but the 1 MiB read (larger than a pipe holds) went by splice.
        Assert.True(m.Session.SplicedReplies - before >= 5, $"{m.Session.SplicedReplies - before} replies by splice");
    }
}

/// <summary>The opt-in kernel write-back cache (-o writeback_cache) on StackFs.</summary>
public class StackFsWritebackTests
{
    private sealed class WritebackStackMount() : StackMount(source => ExtFuse.Samples.Stack.StackFileSystem.Open(source), writeback: true);

    [Fact]
    public void Small_writes_are_gathered_by_the_kernel_and_reach_the_source_whole()
    {
        using var m = new WritebackStackMount();
        Assert.True(m.Session.Connection.Has(ExtFuse.Protocol.InitFlags.WritebackCache), "the kernel did not take writeback caching");
        var path = Path.Combine(m.NewDir("wb"), "log");
        var line = System.Text.Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n");
        var writesBefore = m.Session.RequestsOf(ExtFuse.Protocol.FuseOpcode.Write);
        using (var f = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0))
        {
            for (var i = 0; i < 2000; i++) f.Write(line);
            f.Flush(flushToDisk: true);
        }
        var writes = m.Session.RequestsOf(ExtFuse.Protocol.FuseOpcode.Write) - writesBefore;
        // 2000 write(2) calls of 65 bytes: through the page cache they leave as a few page-sized WRITEs.
        Assert.True(writes < 200, $"{writes} WRITE requests for 2000 small writes: the kernel did not gather them");
        var expected = Enumerable.Repeat(line, 2000).SelectMany(b => b).ToArray();
        Assert.Equal(expected, File.ReadAllBytes(m.InSource(path)));
        Assert.Equal(expected.Length, new FileInfo(path).Length);
    }

    [Fact]
    public void The_model_check_passes_with_writeback_caching()
    {
        using var m = new WritebackStackMount();
        var native = Directory.CreateTempSubdirectory("extfuse-fsx-native-").FullName;
        try
        {
            var result = new ExtFuse.Cli.Fsx.ModelChecker(m.NewDir("fsx"), native).Run(21, 2000);
            Assert.True(result.Passed, result.Report());
        }
        finally { Directory.Delete(native, true); }
    }
}
