using System.Collections.Immutable;
using System.Reflection;
using ExtFuse.Declarative;
using ExtFuse.Generator;
using ExtFuse.Tests.Support;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ExtFuse.Tests;

/// <summary>
/// ExtFuse.Generator: golden files of the generated C# and C for a representative class,
/// the BPF-subset diagnostics (and that nothing is emitted when any fires), and that an unrelated
/// edit leaves the pipeline's model step cached.
/// </summary>
public class GeneratorTests
{
    internal const string AccessRules = """
        using ExtFuse.Declarative;

        namespace Sample;

        [FileSystem]
        public partial class AccessRules
        {
            private const uint Root = 0;
            private const int EACCES = 13, EPERM = 1;

            [Check(FuseOps.Open | FuseOps.Create)]
            public static int OnlyTrustedWrite(in CheckRequest req)
            {
                if (req.Uid == Root) return 0;
                var writes = (req.Flags & 3) != 0;
                if (writes && !IsTrusted(req.Uid)) return EACCES;
                return 0;
            }

            [System.Runtime.CompilerServices.InlineArray(4)]
            private struct Uids { private uint _uid; }

            private static bool IsTrusted(uint uid)
            {
                var trusted = new Uids();
                for (var i = 0; i < 4; i++) trusted[i] = 1000 + (uint)i;
                for (var i = 0; i < 4; i++)
                    if (uid == trusted[i]) return true;
                return false;
            }

            [Check(FuseOps.Unlink | FuseOps.RmDir)]
            public static int KeepSystemFiles(in CheckRequest req)
            {
                switch (req.Opcode)
                {
                    case 10:
                    case 11:
                        return req.NodeId < 100 && req.Uid != Root ? EPERM : 0;
                    default:
                        return 0;
                }
            }
        }
        """;

    private static readonly CSharpParseOptions Parse = new(LanguageVersion.Preview);

    private static CSharpCompilation Compile(params string[] sources) => CSharpCompilation.Create("Sample",
        sources.Select(s => CSharpSyntaxTree.ParseText(s, Parse, path: "/src/Sample.cs")),
        [.. ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(':').Select(p => MetadataReference.CreateFromFile(p)),
         MetadataReference.CreateFromFile(typeof(CheckRequest).Assembly.Location),
         MetadataReference.CreateFromFile(typeof(ExtFuse.Bpf.BpfObject).Assembly.Location),
         MetadataReference.CreateFromFile(typeof(ExtFuse.Samples.Stack.StackFileSystem).Assembly.Location)],
        new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));

    private static (GeneratorDriver Driver, GeneratorDriverRunResult Result, Compilation Output) Run(Compilation compilation, GeneratorDriver? driver = null)
    {
        driver ??= CSharpGeneratorDriver.Create([new FileSystemGenerator().AsSourceGenerator()], parseOptions: Parse,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));
        driver = driver.RunGeneratorsAndUpdateCompilation(compilation, out var output, out _);
        return (driver, driver.GetRunResult(), output);
    }

    internal static FileSystemModel Model(Compilation compilation, string className)
    {
        var tree = compilation.SyntaxTrees.First();
        var syntax = tree.GetRoot().DescendantNodes().OfType<ClassDeclarationSyntax>().First(c => c.Identifier.Text == className);
        var symbol = compilation.GetSemanticModel(tree).GetDeclaredSymbol(syntax)!;
        return RuleParser.Parse(symbol, compilation, CancellationToken.None);
    }

    private static void AssertGolden(string name, string actual)
    {
        var path = Golden.PathOf(name);
        if (Golden.Update) { File.WriteAllText(path, actual); return; }
        Assert.True(File.Exists(path), $"missing {path}; run with EXTFUSE_UPDATE_GOLDEN=1");
        Golden.AssertSame(File.ReadAllText(path), actual, path);
    }

    [Fact]
    public void Generated_CSharp_and_C_match_the_golden_files()
    {
        var (_, result, output) = Run(Compile(AccessRules));
        Assert.Empty(result.Diagnostics);
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));
        var sources = result.Results.Single().GeneratedSources;
        AssertGolden("AccessRules.Rules.g.cs", sources.Single(s => s.HintName.EndsWith(".Rules.g.cs")).SourceText.ToString());
        AssertGolden("AccessRules.bpf.c", FileSystemGenerator.EmitC(Model(Compile(AccessRules), "AccessRules")));
        Assert.Contains(sources, s => s.HintName.EndsWith(".Bpf.g.cs"));
    }

    [Fact]
    public void Every_kind_of_rule_matches_the_golden_files()
    {
        // The ShieldFs sample: caches, passthrough, deny, hide, checks over a KernelMap, a fast path.
        var source = File.ReadAllText(Path.Combine(Repo.Root, "samples", "ShieldFs", "ShieldFileSystem.cs"));
        var compilation = Compile(source);
        var (_, result, output) = Run(compilation);
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));
        var model = Model(compilation, "ShieldFileSystem");
        Assert.Empty(model.Diagnostics);
        AssertGolden("Shield.Rules.g.cs", result.Results.Single().GeneratedSources.Single(s => s.HintName.EndsWith(".Rules.g.cs")).SourceText.ToString());
        AssertGolden("Shield.bpf.c", FileSystemGenerator.EmitC(model));
        AssertGolden("Shield.extfuse.bpf.c", FileSystemGenerator.EmitExtFuseC(model));
    }

    [Fact]
    public void The_managed_twins_are_listed_and_callable()
    {
        var (_, _, output) = Run(Compile(AccessRules));
        using var ms = new MemoryStream();
        var emit = output.Emit(ms);
        Assert.True(emit.Success, string.Join("\n", emit.Diagnostics));
        var asm = Assembly.Load(ms.ToArray());
        var rules = (IReadOnlyList<CheckRule>)asm.GetType("Sample.AccessRules")!.GetProperty("CheckRules")!.GetValue(null)!;
        Assert.Equal(["OnlyTrustedWrite", "KeepSystemFiles"], rules.Select(r => r.Name));
        Assert.Equal(FuseOps.Open | FuseOps.Create, rules[0].Ops);
        Assert.Equal(13, rules[0].Check(new CheckRequest { Uid = 5, Flags = 1 }));
        Assert.Equal(0, rules[0].Check(new CheckRequest { Uid = 1002, Flags = 1 }));
        Assert.Equal(1, rules[1].Check(new CheckRequest { Opcode = 10, Uid = 7, NodeId = 5 }));
    }

    public static TheoryData<string, string, int> Rejected => new()
    {
        { "while (req.Uid > 0) { }", "EXTF0002", 9 },
        { "var s = \"text\"; return s.Length;", "EXTF0003", 9 },
        { "var a = new int[4]; return a[0];", "EXTF0004", 9 },
        { "double d = req.Uid; return (int)d;", "EXTF0005", 9 },
        { "throw new System.Exception();", "EXTF0006", 9 },
        { "return Loop(req.Uid);", "EXTF0007", 11 },
        { "return req.GetHashCode();", "EXTF0008", 9 },
        { "return (int)(req.Uid / req.Gid);", "EXTF0009", 9 },
        { "for (var i = 0; i < req.Uid; i++) { } return 0;", "EXTF0002", 9 },
        { "System.Console.WriteLine(); return 0;", "EXTF0008", 9 },
    };

    [Theory, MemberData(nameof(Rejected))]
    public void Code_outside_the_subset_is_a_build_error_and_nothing_is_emitted(string body, string id, int line)
    {
        var source = $$"""
            using ExtFuse.Declarative;
            namespace Sample;
            [FileSystem]
            public partial class Bad
            {
                [Check(FuseOps.Open)]
                public static int Rule(in CheckRequest req)
                {
                    {{body}}
                }
                private static int Loop(uint x) => Loop(x);
            }
            """;
        // The model carries the diagnostic (the analyzer reports it); the generator emits nothing.
        var model = Model(Compile(source), "Bad");
        var d = model.Diagnostics.FirstOrDefault(x => x.Id == id);
        Assert.True(d is not null, $"expected {id}, got: {string.Join("; ", model.Diagnostics.Select(x => x.Id))}");
        Assert.Equal(line, d.Lines.Start.Line + 1);
        var (_, result, _) = Run(Compile(source));
        Assert.Empty(result.Results.Single().GeneratedSources); // fail closed
    }

    [Fact]
    public void A_bad_signature_and_a_non_partial_class_are_reported()
    {
        var model = Model(Compile("""
            using ExtFuse.Declarative;
            [FileSystem]
            public class NotPartial
            {
                [Check(FuseOps.Open)] public int Instance(CheckRequest req) => 0;
            }
            """), "NotPartial");
        Assert.Contains(model.Diagnostics, d => d.Id == "EXTF0012");
        Assert.Contains(model.Diagnostics, d => d.Id == "EXTF0010");
    }

    [Fact]
    public void Cache_rules_become_timeout_overrides()
    {
        var (_, result, output) = Run(Compile("""
            using ExtFuse.Declarative;
            namespace Sample;
            public class CachingBase : ExtFuse.RawFileSystem
            {
                public virtual System.TimeSpan EntryTimeout { get; init; } = System.TimeSpan.FromSeconds(1);
                public virtual System.TimeSpan AttrTimeout { get; init; } = System.TimeSpan.FromSeconds(1);
                public virtual System.TimeSpan NegativeTimeout { get; init; }
            }
            [FileSystem, CacheEntry(30, NegativeSeconds = 2.5), CacheAttr(0.25)]
            public partial class Cached : CachingBase { }
            """));
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));
        using var ms = new MemoryStream();
        Assert.True(output.Emit(ms).Success);
        var fs = Activator.CreateInstance(Assembly.Load(ms.ToArray()).GetType("Sample.Cached")!)!;
        TimeSpan Get(string p) => (TimeSpan)fs.GetType().GetProperty(p)!.GetValue(fs)!;
        Assert.Equal(TimeSpan.FromSeconds(30), Get("EntryTimeout"));
        Assert.Equal(TimeSpan.FromSeconds(2.5), Get("NegativeTimeout"));
        Assert.Equal(TimeSpan.FromSeconds(0.25), Get("AttrTimeout"));
        Assert.Contains(result.Results.Single().GeneratedSources, g => g.SourceText.ToString().Contains("public override global::System.TimeSpan AttrTimeout"));
    }

    [Fact]
    public void An_unrelated_edit_leaves_the_model_cached()
    {
        var compilation = Compile(AccessRules);
        var (driver, first, _) = Run(compilation);
        Assert.All(first.Results.Single().TrackedSteps[FileSystemGenerator.ModelStep].SelectMany(s => s.Outputs),
            o => Assert.Equal(IncrementalStepRunReason.New, o.Reason));
        var edited = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText("namespace Other; public static class Unrelated { public static int X => 1; }",
            Parse, path: "/src/Other.cs"));
        var (_, second, _) = Run(edited, driver);
        var outputs = second.Results.Single().TrackedSteps[FileSystemGenerator.ModelStep].SelectMany(s => s.Outputs).ToList();
        Assert.NotEmpty(outputs);
        Assert.All(outputs, o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"{o.Reason}"));
    }

    [Fact]
    public void Models_hold_no_symbols_syntax_or_compilations()
    {
        var forbidden = new[] { typeof(ISymbol), typeof(SyntaxNode), typeof(Compilation), typeof(SemanticModel), typeof(Location) };
        var seen = new HashSet<Type>();
        void Check(Type t)
        {
            if (!seen.Add(t) || t.IsPrimitive || t == typeof(string)) return;
            Assert.DoesNotContain(forbidden, f => f.IsAssignableFrom(t));
            foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance)) Check(p.PropertyType);
            if (t.IsGenericType) foreach (var a in t.GetGenericArguments()) Check(a);
        }
        Check(typeof(FileSystemModel));
        Assert.Contains(typeof(CheckModel), seen);
        Assert.Contains(typeof(DiagnosticInfo), seen);
    }
}
