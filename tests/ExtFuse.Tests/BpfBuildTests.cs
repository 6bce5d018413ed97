using System.Diagnostics;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// The build-time BPF compile: small projects that import bpf-runtime/ExtFuse.Bpf.targets are
/// built with `dotnet build` from the command line; their .bpf.o files must be BPF ELF objects
/// that the running kernel's verifier accepts (loaded with bpftool), rebuilt only when inputs
/// change, and clang's errors must come out as MSBuild errors at the right file and line.
/// </summary>
public class BpfBuildTests
{
    private const string GoodProgram = """
        #include <extfuse/bpf.h>

        struct check_ctx { __u32 uid; __s32 verdict; };

        struct {
            __uint(type, BPF_MAP_TYPE_HASH);
            __uint(max_entries, 64);
            __type(key, __u32);
            __type(value, __s32);
        } verdicts SEC(".maps");

        SEC("syscall")
        int check(struct check_ctx *ctx)
        {
            __u32 uid = ctx->uid;            /* map keys must live on the stack */
            __s32 *v = bpf_map_lookup_elem(&verdicts, &uid);
            ctx->verdict = v ? *v : 0;
            return 0;
        }

        char LICENSE[] SEC("license") = "GPL";
        """;

    /// <summary>Writes a project with the given BPF sources into a fresh directory.</summary>
    private static string Project(params (string Name, string Text)[] sources) => Project(declarative: false, sources);

    private static string Project(bool declarative, params (string Name, string Text)[] sources)
    {
        var dir = Directory.CreateTempSubdirectory("extfuse-bpfproj-").FullName;
        var root = Repo.Root;
        File.WriteAllText(Path.Combine(dir, "Sample.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <PropertyGroup Condition="{declarative}">
                <ExtFuseGeneratedBpf>true</ExtFuseGeneratedBpf>
              </PropertyGroup>
              <ItemGroup>
                <BpfSource Include="*.bpf.c" />
                <ProjectReference Include="{root}/bpf-runtime/ExtFuse.Bpf.Build/ExtFuse.Bpf.Build.csproj" ReferenceOutputAssembly="false" />
              </ItemGroup>
              <ItemGroup Condition="{declarative}">
                <ProjectReference Include="{root}/runtime/ExtFuse.Runtime/ExtFuse.Runtime.csproj" />
                <ProjectReference Include="{root}/generator/ExtFuse.Generator/ExtFuse.Generator.csproj" OutputItemType="Analyzer" ReferenceOutputAssembly="false" />
              </ItemGroup>
              <Import Project="{root}/bpf-runtime/ExtFuse.Bpf.targets" />
            </Project>
            """);
        if (!sources.Any(x => x.Name.EndsWith(".cs"))) File.WriteAllText(Path.Combine(dir, "Sample.cs"), "namespace Sample; public static class Marker { }");
        foreach (var (name, text) in sources) File.WriteAllText(Path.Combine(dir, name), text);
        return dir;
    }

    private static (int Code, string Output) Build(string dir, string extraArgs = "", string? path = null)
    {
        var psi = new ProcessStartInfo("dotnet", $"build \"{dir}/Sample.csproj\" -nologo -v:m -p:Configuration=Debug {extraArgs}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        if (path is not null) psi.Environment["PATH"] = path;
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)), "dotnet build hung");
        return (p.ExitCode, output.Result + error.Result);
    }

    private static string ObjectOf(string dir, string name) => Path.Combine(dir, "bin", "Debug", "net10.0", name);

    [Fact]
    public void Builds_verifiable_objects_next_to_the_assembly_and_only_when_inputs_change()
    {
        var dir = Project(("check.bpf.c", GoodProgram));
        try
        {
            var (code, output) = Build(dir);
            Assert.True(code == 0, output);
            var obj = ObjectOf(dir, "check.bpf.o");
            Assert.True(File.Exists(obj), $"no {obj}:\n{output}");

            // A BPF ELF object: ELF64, little-endian, relocatable, e_machine EM_BPF (247).
            var head = File.ReadAllBytes(obj)[..20];
            Assert.Equal(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1 }, head[..6]);
            Assert.Equal(1, BitConverter.ToUInt16(head, 16));
            Assert.Equal(247, BitConverter.ToUInt16(head, 18));

            // Every program passes the running kernel's verifier.
            var pin = $"/sys/fs/bpf/extfuse-test-{Environment.ProcessId}";
            Shell.Run("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
            try
            {
                var (load, log) = Shell.Run($"bpftool prog loadall '{obj}' {pin}");
                Assert.True(load == 0, $"the verifier rejected {obj}:\n{log}");
                Assert.Contains("check", Shell.Run($"ls {pin}").Output);
            }
            finally { Shell.Run($"rm -rf {pin}"); }

            // Incremental: nothing changed, nothing recompiled; a touched source is recompiled.
            var stamp = File.GetLastWriteTimeUtc(Path.Combine(dir, "obj", "Debug", "net10.0", "bpf", "check.bpf.o"));
            Thread.Sleep(1100);
            Assert.Equal(0, Build(dir).Code);
            Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(dir, "obj", "Debug", "net10.0", "bpf", "check.bpf.o")));
            File.SetLastWriteTimeUtc(Path.Combine(dir, "check.bpf.c"), DateTime.UtcNow);
            Assert.Equal(0, Build(dir).Code);
            Assert.NotEqual(stamp, File.GetLastWriteTimeUtc(Path.Combine(dir, "obj", "Debug", "net10.0", "bpf", "check.bpf.o")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Clang_errors_become_msbuild_errors_at_the_source_line()
    {
        var dir = Project(("broken.bpf.c", "#include <extfuse/bpf.h>\n\nSEC(\"syscall\")\nint f(void *ctx) { return missing_variable; }\n"));
        try
        {
            var (code, output) = Build(dir);
            Assert.NotEqual(0, code);
            // Canonical MSBuild form: file(line,col): error CODE: message
            Assert.Matches(@"broken\.bpf\.c\(4,27\): error CLANG: use of undeclared identifier 'missing_variable'", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_missing_clang_is_one_clear_error()
    {
        var dir = Project(("check.bpf.c", GoodProgram));
        try
        {
            var (code, output) = Build(dir, "-p:BpfClang=/nonexistent/clang");
            Assert.NotEqual(0, code);
            Assert.Contains("error EXTB0001: BpfClang is set to '/nonexistent/clang'", output);

            // No clang on PATH at all: only the dotnet directory is left.
            var dotnetDir = Path.GetDirectoryName(Environment.ProcessPath!)!;
            (code, output) = Build(dir, "", path: dotnetDir);
            Assert.NotEqual(0, code);
            Assert.Contains("error EXTB0001: clang was not found on PATH", output);
            Assert.Contains("apt-get install clang", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Generated_checks_build_into_verified_objects_that_agree_with_their_managed_twins()
    {
        var dir = Project(declarative: true, ("AccessRules.cs", GeneratorTests.AccessRules));
        try
        {
            var (code, output) = Build(dir);
            Assert.True(code == 0, output);
            var obj = Path.Combine(dir, "bin", "Debug", "net10.0", "Sample.AccessRules.bpf.o");
            Assert.True(File.Exists(obj), $"no {obj}:\n{output}");

            // The managed twins, from the assembly the same build produced.
            var asm = System.Reflection.Assembly.LoadFile(Path.Combine(dir, "bin", "Debug", "net10.0", "Sample.dll"));
            var type = asm.GetType("Sample.AccessRules")!;
            Assert.Equal("Sample.AccessRules.bpf.o", type.GetField("BpfObject")!.GetValue(null));
            var rules = (IReadOnlyList<ExtFuse.Declarative.CheckRule>)type.GetProperty("CheckRules")!.GetValue(null)!;

            // The same inputs through the kernel (BPF_PROG_TEST_RUN) and through .NET: edge cases, then random ones.
            uint[] edgeU = [0, 1, 10, 11, 99, 100, 999, 1000, 1003, 1004, int.MaxValue, uint.MaxValue];
            ulong[] edgeN = [0, 1, 99, 100, ulong.MaxValue];
            var inputs = new List<ExtFuse.Declarative.CheckRequest>();
            foreach (var u in edgeU) foreach (var f in new uint[] { 0, 1, 2, 3, uint.MaxValue }) foreach (var n in edgeN)
                inputs.Add(new() { Opcode = u % 12, Uid = u, Gid = u, Pid = u, NodeId = n, Flags = f, Mode = u });
            var rng = new Random(11);
            for (var i = 0; i < 500; i++)
                inputs.Add(new() { Opcode = (uint)rng.Next(60), Uid = (uint)rng.Next(990, 1010), Gid = (uint)rng.Next(), Pid = (uint)rng.Next(),
                                   NodeId = (ulong)rng.NextInt64(0, 200), Flags = (uint)rng.Next(), Mode = (uint)rng.Next() });
            Shell.Run("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
            using var kernel = new BpfTestRun(obj);
            var compared = 0;
            foreach (var rule in rules)
                foreach (var input in inputs)
                {
                    var inKernel = kernel.Check(rule, input);
                    var managed = rule.Check(input);
                    Assert.True(managed == inKernel, $"{rule.Name}: .NET says {managed}, the kernel says {inKernel} for uid={input.Uid} flags={input.Flags} opcode={input.Opcode} node={input.NodeId}");
                    compared++;
                }
            Assert.Equal(2 * inputs.Count, compared);
            Assert.Contains(inputs, i => rules[0].Check(i) == 13);  // both verdicts occur
            Assert.Contains(inputs, i => rules[0].Check(i) == 0);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Code_outside_the_subset_fails_the_build_at_the_CSharp_line()
    {
        var dir = Project(declarative: true, ("Rules.cs", """
            using ExtFuse.Declarative;
            namespace Sample;
            [FileSystem]
            public partial class Rules
            {
                [Check(FuseOps.Open)]
                public static int Spin(in CheckRequest req)
                {
                    while (req.Uid != 0) { }
                    return 0;
                }
            }
            """));
        try
        {
            var (code, output) = Build(dir);
            Assert.NotEqual(0, code);
            Assert.Matches(@"Rules\.cs\(9,9\): error EXTF0002", output);
            Assert.False(Directory.Exists(Path.Combine(dir, "obj", "Debug", "net10.0", "bpf", "gen")) &&
                         Directory.GetFiles(Path.Combine(dir, "obj", "Debug", "net10.0", "bpf", "gen")).Length > 0, "C was emitted for rules that failed");
        }
        finally { Directory.Delete(dir, true); }
    }
}
