using ExtFuse.Mounting;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>The extfuse command, run as its own process; the test acts as the client.</summary>
public class CliTests
{
    private const int SIGKILL = 9, SIGTERM = 15, SIGINT = 2;

    private static string TempDir(string hint) => Directory.CreateTempSubdirectory($"extfuse-test-{hint}-").FullName;

    private static bool IsMounted(string path) => MountTable.At(path) is { } e && MountTable.IsFuse(e);

    private static void ForceUnmount(string path)
    {
        if (IsMounted(path)) Shell.Run($"umount -l '{path}'");
    }

    [Fact]
    public void Help_explains_the_commands()
    {
        var (code, output) = CliProcess.Run(["--help"]);
        Assert.Equal(0, code);
        Assert.Contains("extfuse mount memory MOUNTPOINT", output);
        Assert.Contains("allow_other", output);
        Assert.Contains("Ctrl-C", output);
    }

    [Theory]
    [InlineData("frobnicate", "unknown command")]
    [InlineData("mount", "expected: extfuse mount memory MOUNTPOINT")]
    [InlineData("mount nosuchfs /tmp", "unknown file system 'nosuchfs'")]
    [InlineData("mount memory /tmp --bogus", "unknown option '--bogus'")]
    public void Bad_usage_exits_2_with_a_hint(string args, string message)
    {
        var (code, output) = CliProcess.Run(args.Split(' '));
        Assert.Equal(2, code);
        Assert.Contains(message, output);
        Assert.Contains("extfuse --help", output);
    }

    [Fact]
    public void Unknown_mount_option_is_refused()
    {
        var dir = TempDir("opt");
        var (code, output) = CliProcess.Run(["mount", "memory", dir, "-o", "allow_other,turbo=9"]);
        Assert.Equal(1, code);
        Assert.Contains("unknown mount option 'turbo=9'", output);
        Assert.False(IsMounted(dir));
        Directory.Delete(dir);
    }

    [Fact]
    public void Missing_mount_point_is_a_clear_error()
    {
        var (code, output) = CliProcess.Run(["mount", "memory", "/tmp/extfuse-test-does-not-exist/x"]);
        Assert.Equal(1, code);
        Assert.Contains("does not exist", output);
    }

    [Fact]
    public void Mount_point_that_is_a_file_is_a_clear_error()
    {
        var file = Path.GetTempFileName();
        var (code, output) = CliProcess.Run(["mount", "memory", file]);
        Assert.Equal(1, code);
        Assert.Contains("is not a directory", output);
        File.Delete(file);
    }

    [Fact]
    public void Mounting_twice_is_refused_and_SIGTERM_unmounts()
    {
        var dir = TempDir("twice");
        using var first = CliProcess.Start(["mount", "memory", dir]);
        try
        {
            first.WaitForOutput("mounted at");
            File.WriteAllText(Path.Combine(dir, "f"), "served by the first daemon");
            var (code, output) = CliProcess.Run(["mount", "memory", dir]);
            Assert.Equal(1, code);
            Assert.Contains("already mounted", output);
            Assert.Equal("served by the first daemon", File.ReadAllText(Path.Combine(dir, "f")));

            first.Signal(SIGTERM);
            Assert.True(first.WaitForExit(20_000), "the daemon did not exit on SIGTERM");
            Assert.Equal(0, first.ExitCode);
            Assert.Contains("unmounted", first.Output);
            Assert.False(IsMounted(dir));
        }
        finally { ForceUnmount(dir); Directory.Delete(dir, true); }
    }

    [Fact]
    public void Ctrl_C_unmounts_even_with_a_file_open()
    {
        var dir = TempDir("busy");
        using var cli = CliProcess.Start(["mount", "memory", dir]);
        try
        {
            cli.WaitForOutput("mounted at");
            var f = Path.Combine(dir, "open");
            File.WriteAllText(f, "x");
            using var held = File.OpenRead(f); // keeps the mount busy
            cli.Signal(SIGINT);
            Assert.True(cli.WaitForExit(20_000), "the daemon did not exit on SIGINT with a busy mount:\n" + cli.Output);
            Assert.False(IsMounted(dir));
            // The open file now reports an error instead of hanging.
            Assert.ThrowsAny<IOException>(() => held.ReadByte());
        }
        finally { ForceUnmount(dir); Directory.Delete(dir, true); }
    }

    [Fact]
    public void Daemon_killed_mid_workload_aborts_the_mount_and_nothing_hangs()
    {
        var dir = TempDir("kill");
        using var cli = CliProcess.Start(["mount", "memory", dir]);
        try
        {
            cli.WaitForOutput("mounted at");
            var errors = 0;
            var writes = 0;
            var workload = new Thread(() =>
            {
                for (var i = 0; i < 100_000; i++)
                {
                    try { File.WriteAllText(Path.Combine(dir, $"f{i % 50}"), new string('x', 1000)); Interlocked.Increment(ref writes); }
                    catch (IOException) { if (Interlocked.Increment(ref errors) > 20) return; }
                    catch (UnauthorizedAccessException) { if (Interlocked.Increment(ref errors) > 20) return; }
                }
            });
            workload.Start();
            while (Volatile.Read(ref writes) < 200) Thread.Sleep(10);
            cli.Signal(SIGKILL);
            Assert.True(cli.WaitForExit(10_000));
            Assert.True(workload.Join(TimeSpan.FromSeconds(30)), "the workload hung after the daemon died");
            Assert.True(errors > 0, "the workload should see errors once the daemon is gone");
            // The connection is aborted: the mount answers ENOTCONN until someone unmounts it.
            Assert.Equal(-107, Posix.Open(Path.Combine(dir, "after-death"), Posix.O_CREAT | Posix.O_WRONLY));
        }
        finally { ForceUnmount(dir); Directory.Delete(dir, true); }
    }

    [Fact]
    public void Auto_unmount_cleans_up_after_SIGKILL()
    {
        var dir = TempDir("auto");
        using var cli = CliProcess.Start(["mount", "memory", dir, "-o", "auto_unmount"]);
        try
        {
            cli.WaitForOutput("mounted at");
            File.WriteAllText(Path.Combine(dir, "f"), "x");
            Assert.Equal("fuse.memory", MountTable.At(dir)!.FsType);
            cli.Signal(SIGKILL);
            Assert.True(cli.WaitForExit(10_000));
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (IsMounted(dir) && DateTime.UtcNow < deadline) Thread.Sleep(50);
            Assert.False(IsMounted(dir), "fusermount3 should unmount when the daemon dies");
        }
        finally { ForceUnmount(dir); Directory.Delete(dir, true); }
    }

    [Fact]
    public void Normal_user_mounts_through_fusermount3()
    {
        var dir = TempDir("user");
        Shell.Run($"chown {CliProcess.Nobody}:{CliProcess.Nobody} '{dir}'");
        using var cli = CliProcess.Start(["mount", "memory", dir], asUser: CliProcess.Nobody);
        try
        {
            cli.WaitForOutput("mounted at");
            Assert.True(IsMounted(dir));
            // Without allow_other only the mounting user may enter: act as that user, from another process.
            var (code, output) = Shell.Run($"echo user-data > '{dir}/f' && cat '{dir}/f' && stat -c '%u' '{dir}/f'", asUser: CliProcess.Nobody);
            Assert.True(code == 0, output);
            Assert.Equal($"user-data\n{CliProcess.Nobody}\n", output);
            cli.Signal(SIGTERM);
            Assert.True(cli.WaitForExit(20_000), cli.Output);
            Assert.Equal(0, cli.ExitCode);
            Assert.False(IsMounted(dir), "fusermount3 -u should have unmounted it");
        }
        finally { ForceUnmount(dir); Directory.Delete(dir, true); }
    }

    [Fact]
    public void Normal_user_without_fusermount3_gets_told_what_to_install()
    {
        var dir = TempDir("nofm");
        Shell.Run($"chown {CliProcess.Nobody}:{CliProcess.Nobody} '{dir}'");
        var (code, output) = CliProcess.Run(["mount", "memory", dir], asUser: CliProcess.Nobody, path: "/nonexistent");
        Assert.Equal(1, code);
        Assert.Contains("fusermount3", output);
        Assert.Contains("apt-get install fuse3", output);
        Assert.False(IsMounted(dir));
        Directory.Delete(dir);
    }

    [Fact]
    public void Normal_user_cannot_mount_where_it_has_no_access()
    {
        var dir = TempDir("noaccess"); // owned by root, mode 0700
        var (code, output) = CliProcess.Run(["mount", "memory", dir], asUser: CliProcess.Nobody);
        Assert.Equal(1, code);
        Assert.Contains("fusermount3", output);
        Assert.False(IsMounted(dir));
        Directory.Delete(dir);
    }
}
