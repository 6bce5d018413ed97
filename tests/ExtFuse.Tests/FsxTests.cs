using ExtFuse.Cli.Fsx;
using ExtFuse.Protocol;
using ExtFuse.Samples.Memory;
using ExtFuse.Session;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// The model-based random tester against MemoryFs and StackFs (a bounded number of operations;
/// EXTFUSE_FSX_OPS raises it, `extfuse fsx --long` runs 200,000), and against a file system that
/// lies, to show it catches a lie and reports the shortest failing prefix.
/// </summary>
public class FsxTests
{
    private static int Ops => int.TryParse(Environment.GetEnvironmentVariable("EXTFUSE_FSX_OPS"), out var n) ? n : 3000;

    private static FsxResult Check(TestMount m, int seed, int ops)
    {
        var native = Directory.CreateTempSubdirectory("extfuse-fsx-native-").FullName;
        try { return new ModelChecker(m.NewDir("fsx"), native).Run(seed, ops); }
        finally { Directory.Delete(native, true); }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void MemoryFs_agrees_with_the_native_file_system(int seed)
    {
        using var m = new MemoryMount();
        var result = Check(m, seed, Ops);
        Assert.True(result.Passed, result.Report());
        Assert.True(result.Succeeded > Ops / 4, $"only {result.Succeeded} operations succeeded: the run proves little");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void StackFs_agrees_with_the_native_file_system(int seed)
    {
        using var m = new StackMount();
        var result = Check(m, seed, Ops);
        Assert.True(result.Passed, result.Report());
    }

    [Fact]
    public void StackFs_by_file_handle_agrees_with_the_native_file_system()
    {
        using var m = new HandleStackMount();
        var result = Check(m, 5, Ops);
        Assert.True(result.Passed, result.Report());
    }

    /// <summary>Acknowledges writes beyond 64 KiB without storing them.</summary>
    private sealed class LyingFs : MemoryFileSystem
    {
        public override void Write(FuseRequest r, ulong nodeId, in FuseWriteIn w, ReadOnlySpan<byte> data)
        {
            if (w.Offset >= 65536) r.ReplyWrite((uint)data.Length);
            else base.Write(r, nodeId, w, data);
        }
    }

    [Fact]
    public void A_lying_file_system_is_caught_with_the_shortest_failing_prefix()
    {
        using var m = new MemoryMount(new LyingFs());
        var native = Directory.CreateTempSubdirectory("extfuse-fsx-native-").FullName;
        try
        {
            var checker = new ModelChecker(m.NewDir("fsx"), native);
            var result = checker.Run(seed: 7, count: 2000);
            Assert.False(result.Passed, "the lie went unnoticed");
            Assert.Contains("seed 7", result.Report());
            var prefix = result.ShortestFailingPrefix;
            Assert.NotEmpty(prefix);
            // The last operation of the shortest prefix is what exposes the lie: a write past 64 KiB
            // (or a mapped write there), and one operation less passes.
            Assert.Contains(prefix[^1].Kind, new[] { "write", "mmap", "read", "truncate", "fallocate", "link", "rename" });
            Assert.Contains(prefix, op => op.Kind is "write" && op.Offset + op.Length > 65536);
            Assert.True(prefix.Count <= result.FailedAt + 1);
            Assert.NotNull(checker.Replay(prefix).FailedAt);
            Assert.Null(checker.Replay(prefix.Take(prefix.Count - 1).ToList()).FailedAt);
        }
        finally { Directory.Delete(native, true); }
    }
}
