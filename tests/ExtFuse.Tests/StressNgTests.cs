using System.Diagnostics;
using System.Text.RegularExpressions;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// stress-ng's filesystem class, with verification, against a StackFs mount. The daemon runs in
/// its own process, as in real use: each file stress-ng holds open is a descriptor in the daemon,
/// and stress-ng opens until its limit, so it runs with a quarter of the daemon's; in the test
/// host, running out would fail every other test that runs meanwhile.
/// </summary>
public class StressNgTests
{
    [Fact]
    public void Filesystem_class_passes_with_verification_on_StackFs()
    {
        var source = Directory.CreateTempSubdirectory("extfuse-src-").FullName;
        var mnt = Directory.CreateTempSubdirectory("extfuse-test-stress-").FullName;
        using var daemon = CliProcess.Start(["mount", "stack", "--source", source, mnt]);
        try
        {
            daemon.WaitForOutput("mounted at");
            var work = Path.Combine(mnt, "stress");
            Directory.CreateDirectory(work);
            Assert.Equal(0, Posix.Chmod(mnt, 0x1ED));
            Run(work, ClientDescriptorLimit(daemon.Pid));
            Assert.False(daemon.HasExited, "the daemon died:\n" + daemon.Output);
        }
        finally
        {
            if (!daemon.HasExited) daemon.Signal(15);
            daemon.WaitForExit(20_000);
            if (ExtFuse.Mounting.MountTable.At(mnt) is { } e && ExtFuse.Mounting.MountTable.IsFuse(e)) Shell.Run($"umount -l '{mnt}'");
            Directory.Delete(mnt, true);
            Directory.Delete(source, true);
        }
    }

    private static int ClientDescriptorLimit(int daemonPid)
    {
        var line = File.ReadLines($"/proc/{daemonPid}/limits").First(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        var soft = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]);
        return (int)Math.Clamp(soft / 4, 256, 65536);
    }

    private static void Run(string work, int descriptorLimit)
    {
        // binderfs needs a kernel feature unrelated to FUSE (this kernel has none), so it is left out.
        var psi = new ProcessStartInfo("prlimit")
        {
            WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in new[] { $"--nofile={descriptorLimit}:{descriptorLimit}", "--", "stress-ng", "--class", "filesystem", "--seq", "1", "--timeout", "1", "--verify", "--exclude", "binderfs",
                     "--temp-path", work, "--metrics-brief" })
            psi.ArgumentList.Add(a);
        Assert.True(Shell.Run("command -v stress-ng").Code == 0, "stress-ng is not installed: run scripts/setup.sh (apt-get install stress-ng)");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(8)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("stress-ng did not finish in 8 minutes");
        }
        var output = stdout.Result + stderr.Result;
        var failures = Regex.Matches(output, @"^stress-ng: fail:.*$", RegexOptions.Multiline).Select(x => x.Value).ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} failures:\n{string.Join('\n', failures)}");
        Assert.True(p.ExitCode == 0, $"stress-ng exit status {p.ExitCode}:\n{output[Math.Max(0, output.Length - 4000)..]}");
        Assert.Contains("successful run completed", output);
    }
}
