using ExtFuse.Mounting;
using ExtFuse.Samples.Memory;
using ExtFuse.Session;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

public class MountOptionsTests
{
    [Fact]
    public void Parses_kernel_flag_and_session_options()
    {
        var o = new MountOptions().With(["allow_other,fsname=scratch,ro", "max_write=65536,threads=3,writeback_cache,noexec,suid"]);
        Assert.True(o.AllowOther);
        Assert.True(o.ReadOnly);
        Assert.True(o.NoExec);
        Assert.False(o.NoSuid);
        Assert.Equal("scratch", o.FsName);
        Assert.Equal(65536u, o.Session.MaxWrite);
        Assert.Equal(3, o.Session.Threads);
        Assert.True(o.Session.WritebackCache);
        Assert.Equal("fd=7,rootmode=40000,user_id=1000,group_id=100,allow_other", o.KernelData(7, 0x4000, 1000, 100));
        Assert.Equal("ro,suid,nodev,noexec,fsname=scratch,allow_other", o.FusermountOptions());
    }

    [Theory]
    [InlineData("bogus", "unknown mount option 'bogus'")]
    [InlineData("max_write=lots", "needs a number")]
    [InlineData("max_write=999999999", "out of range")]
    [InlineData("threads=0", "out of range")]
    [InlineData("fsname=", "needs a value")]
    [InlineData("subtype=a b", "may not contain")]
    public void Bad_options_are_refused_with_a_reason(string option, string message)
    {
        var e = Assert.Throws<FuseException>(() => new MountOptions().With([option]));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_message_shorter_than_a_header_is_logged_and_ignored()
    {
        var session = new FuseSession(new MemoryFileSystem());
        var channel = new RecordingChannel();
        session.Process(new byte[10], channel, new ExtFuse.Session.FuseRequest(session));
        Assert.Empty(channel.Messages);
    }

    [Fact]
    public void Mount_points_with_spaces_are_found_and_unmounted()
    {
        var parent = Directory.CreateTempSubdirectory("extfuse-test-space-").FullName;
        var dir = Path.Combine(parent, "with space\tand tab");
        Directory.CreateDirectory(dir);
        var session = new FuseSession(new MemoryFileSystem());
        var mount = FuseMount.Mount(dir, new MountOptions());
        session.Start(mount);
        try
        {
            Assert.True(session.Initialized.Wait(TimeSpan.FromSeconds(10)));
            Assert.Equal(dir, MountTable.At(dir)!.MountPoint);
            File.WriteAllText(Path.Combine(dir, "f"), "x");
        }
        finally { session.Dispose(); }
        Assert.Null(MountTable.At(dir) is { } e && MountTable.IsFuse(e) ? e : null);
        Directory.Delete(parent, true);
    }
}
