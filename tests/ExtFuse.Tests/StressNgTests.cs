using System.Diagnostics;
using System.Text.RegularExpressions;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>stress-ng's filesystem class, with verification, against a StackFs mount.</summary>
public class StressNgTests
{
    [Fact]
    public void Filesystem_class_passes_with_verification_on_StackFs()
    {
        using var m = new StackMount();
        var work = m.NewDir("stress");
        Assert.Equal(0, Posix.Chmod(m.Root, 0x1ED));
        // binderfs needs a kernel feature unrelated to FUSE (this kernel has none), so it is left out.
        var psi = new ProcessStartInfo("stress-ng")
        {
            WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in new[] { "--class", "filesystem", "--seq", "1", "--timeout", "1", "--verify", "--exclude", "binderfs",
                     "--temp-path", work, "--metrics-brief" })
            psi.ArgumentList.Add(a);
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception) { Assert.Fail("stress-ng is not installed: run scripts/setup.sh (apt-get install stress-ng)"); return; }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            Assert.True(p.WaitForExit(TimeSpan.FromMinutes(8)), "stress-ng did not finish in 8 minutes");
            var output = stdout.Result + stderr.Result;
            var failures = Regex.Matches(output, @"^stress-ng: fail:.*$", RegexOptions.Multiline).Select(x => x.Value).ToList();
            Assert.True(failures.Count == 0, $"{failures.Count} failures:\n{string.Join('\n', failures)}");
            Assert.True(p.ExitCode == 0, $"stress-ng exit status {p.ExitCode}:\n{output[Math.Max(0, output.Length - 4000)..]}");
            Assert.Contains("successful run completed", output);
        }
    }
}
