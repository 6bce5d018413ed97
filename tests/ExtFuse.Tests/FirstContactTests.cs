using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// The README's first command, run the way a newcomer runs it: in a copy of the checkout that has
/// only its source files (no bin/, obj/ or artifacts/ from earlier builds, which hide missing build
/// steps), so the build, the BPF objects, the verifier, the mount and the sandbox all start from nothing.
/// </summary>
public sealed class FirstContactTests
{
    [Fact]
    public void The_demo_works_from_a_clean_copy_of_the_checkout()
    {
        var copy = Directory.CreateTempSubdirectory("extfuse-fresh-").FullName;
        try
        {
            // Tracked files and new ones not ignored: what a clone of this work would hold.
            var (code, output) = Shell.Run($"cd '{Repo.Root}' && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t '{copy}'");
            Assert.True(code == 0, output);
            Assert.False(Directory.Exists(Path.Combine(copy, "artifacts")));
            (code, output) = Shell.Run($"cd '{copy}' && bash scripts/demo.sh 2>&1", timeoutMs: 900_000);
            Assert.True(code == 0, $"scripts/demo.sh exited {code}:\n{output}");
            Assert.DoesNotContain("\nrejected ", output, StringComparison.Ordinal);
            Assert.Contains("refused, as the rule says", output, StringComparison.Ordinal);
            Assert.Contains("demo: unmounted cleanly", output, StringComparison.Ordinal);
            Assert.Contains("demo: the sandbox ended and left nothing mounted", output, StringComparison.Ordinal);
            Assert.DoesNotContain(copy, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
        }
        finally
        {
            Shell.Run($"rm -rf '{copy}'");
        }
    }
}
