using System.Runtime.CompilerServices;

namespace ExtFuse.Tests.Support;

/// <summary>The checkout the tests were built from, and the BPF C compiled the way the build does.</summary>
public static class Repo
{
    public static string Root { get; } = Find();

    private static string Find([CallerFilePath] string caller = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(caller)!, "..", "..", ".."));

    /// <summary>Compiles BPF C with clang as the MSBuild task does (the same clang names, -O2 -g, our include directory); returns the object path.</summary>
    public static string CompileBpf(string dir, string name, string source)
    {
        var c = Path.Combine(dir, name + ".bpf.c");
        var o = Path.Combine(dir, name + ".bpf.o");
        File.WriteAllText(c, source);
        var clang = Shell.Run("for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do command -v $c && break; done").Output.Trim();
        Assert.True(clang.Length > 0, "clang is not installed: run scripts/setup.sh (apt-get install clang)");
        var (code, output) = Shell.Run($"{clang} -target bpf -O2 -g -I'{Path.Combine(Root, "bpf-runtime", "include")}' -c '{c}' -o '{o}'");
        Assert.True(code == 0, $"clang failed on {name}:\n{output}");
        return o;
    }
}
