using System.Runtime.CompilerServices;

namespace ExtFuse.Tests.Support;

/// <summary>Golden-file helpers: files live in the source tree so EXTFUSE_UPDATE_GOLDEN=1 rewrites them in place.</summary>
public static class Golden
{
    public static bool Update => Environment.GetEnvironmentVariable("EXTFUSE_UPDATE_GOLDEN") == "1";

    public static string PathOf(string name, [CallerFilePath] string caller = "")
    {
        var dir = Path.GetDirectoryName(caller)!;
        while (!Directory.Exists(Path.Combine(dir, "Golden"))) dir = Path.GetDirectoryName(dir)!;
        return Path.Combine(dir, "Golden", name);
    }

    public static void AssertSame(string expected, string actual, string path)
    {
        if (expected == actual) return;
        var e = expected.Split('\n');
        var a = actual.Split('\n');
        var i = 0;
        while (i < e.Length && i < a.Length && e[i] == a[i]) i++;
        Assert.Fail($"{path} differs at line {i + 1}:\n expected: {(i < e.Length ? e[i] : "<end>")}\n   actual: {(i < a.Length ? a[i] : "<end>")}\n(EXTFUSE_UPDATE_GOLDEN=1 rewrites it; review the diff)");
    }
}
