using ExtFuse.Declarative;
using ExtFuse.Generator;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Testing;

namespace ExtFuse.Tests;

/// <summary>
/// BpfSubsetAnalyzer through Microsoft.CodeAnalysis.CSharp.Analyzer.Testing: for every diagnostic
/// a failing case (the exact span, marked {|#0:...|}) and a passing case that stays in the subset.
/// </summary>
public class AnalyzerTests
{
    private static async Task Verify(string source, params DiagnosticResult[] expected)
    {
        var test = new CSharpAnalyzerTest<BpfSubsetAnalyzer, DefaultVerifier>
        {
            TestCode = source,
            // The running .NET's own assemblies, so nothing is downloaded at test time.
            ReferenceAssemblies = new ReferenceAssemblies("net10.0"),
        };
        foreach (var path in ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(':'))
            if (Path.GetFileName(path).StartsWith("System.") || Path.GetFileName(path) is "mscorlib.dll" or "netstandard.dll")
                test.TestState.AdditionalReferences.Add(MetadataReference.CreateFromFile(path));
        test.TestState.AdditionalReferences.Add(MetadataReference.CreateFromFile(typeof(CheckRequest).Assembly.Location));
        test.ExpectedDiagnostics.AddRange(expected);
        await test.RunAsync();
    }

    private static string Rule(string body, string members = "") => $$"""
        using ExtFuse.Declarative;
        [FileSystem]
        public partial class Rules
        {
            [Check(FuseOps.Open)]
            public static int Rule(in CheckRequest req)
            {
                {{body}}
            }
            {{members}}
        }
        """;

    private static DiagnosticResult Error(string id) => new DiagnosticResult(id, DiagnosticSeverity.Error).WithLocation(0);

    public static TheoryData<string, string, string, string> Cases => new()
    {
        // id, failing body (span marked), passing body, extra members
        { "EXTF0001", "return {|#0:req.ToString().Length|};", "return (int)req.Uid;", "" },
        { "EXTF0002", "{|#0:while (req.Uid > 3) { }|} return 0;", "for (var i = 0; i < 3; i++) { } return 0;", "" },
        { "EXTF0003", "var s = {|#0:\"x\"|}; return 0;", "var s = 'x'; return s;", "" },
        { "EXTF0004", "var a = {|#0:new int[2]|}; return 0;", "var a = 2; return a;", "" },
        { "EXTF0005", "return (int){|#0:(req.Uid * 1.5)|};", "return (int)(req.Uid * 3 / 2);", "" },
        { "EXTF0006", "{|#0:throw new System.InvalidOperationException();|}", "return 1;", "" },
        { "EXTF0007", "return Again(1);", "return Once(1);", "static int Again(int x) => {|#0:Again(x)|}; static int Once(int x) => x + 1;" },
        { "EXTF0008", "return {|#0:System.Math.Max(1, 2)|};", "return Max(1, 2);", "static int Max(int a, int b) => a > b ? a : b;" },
        { "EXTF0009", "return {|#0:(int)req.Uid / (int)req.Gid|};", "return (int)req.Uid / 4;", "" },
        { "EXTF0020", "var b = new Buf(); return {|#0:b[(int)req.Uid]|};", "var b = new Buf(); var s = 0; for (var i = 0; i < 4; i++) s += b[i]; return s + b[3];",
          "[System.Runtime.CompilerServices.InlineArray(4)] struct Buf { private byte _e; }" },
    };

    [Theory, MemberData(nameof(Cases))]
    public async Task Each_diagnostic_fails_its_bad_case_and_passes_its_good_one(string id, string bad, string good, string members)
    {
        await Verify(Rule(bad, members), Error(id));
        await Verify(Rule(good, members.Replace("{|#0:", "").Replace("|}", "")));
    }

    [Fact]
    public async Task Stack_use_over_512_bytes_is_reported_on_each_method_that_needs_it()
    {
        var locals = string.Join(" ", Enumerable.Range(0, 70).Select(i => $"var v{i} = x + {i};"));
        await Verify(Rule("return Big(0);", $"static int {{|#1:Big|}}(int x) {{ {locals} return x; }}").Replace("public static int Rule(", "public static int {|#0:Rule|}("),
            Error("EXTF0011"), new DiagnosticResult("EXTF0011", DiagnosticSeverity.Error).WithLocation(1));
        var few = string.Join(" ", Enumerable.Range(0, 40).Select(i => $"var v{i} = x + {i};"));
        await Verify(Rule("return Big(0);", $"static int Big(int x) {{ {few} return x; }}"));
    }

    [Fact]
    public async Task A_bad_signature_is_reported_on_the_method()
    {
        await Verify("""
            using ExtFuse.Declarative;
            [FileSystem]
            public partial class Rules
            {
                [Check(FuseOps.Open)]
                public int {|#0:Rule|}(CheckRequest req) => 0;
            }
            """, Error("EXTF0010"));
        await Verify("""
            using ExtFuse.Declarative;
            [FileSystem]
            public partial class Rules
            {
                [Check(FuseOps.Open)]
                public static int Rule(in CheckRequest req) => 0;
            }
            """);
    }

    private const string CachingBase = """
        public class CachingBase : ExtFuse.RawFileSystem
        {
            public virtual System.TimeSpan EntryTimeout { get; init; }
            public virtual System.TimeSpan AttrTimeout { get; init; }
            public virtual System.TimeSpan NegativeTimeout { get; init; }
        }
        """;

    [Fact]
    public async Task Cache_rules_need_timeouts_to_set_and_sane_values()
    {
        await Verify("""
            using ExtFuse.Declarative;
            [FileSystem, {|#0:CacheEntry(5)|}]
            public partial class NoTimeouts { }
            """, Error("EXTF0013"));
        await Verify(CachingBase + """
            [ExtFuse.Declarative.FileSystem, {|#0:ExtFuse.Declarative.CacheAttr(-1)|}]
            public partial class Negative : CachingBase { }
            """, Error("EXTF0014"));
        await Verify(CachingBase + """
            [ExtFuse.Declarative.FileSystem, ExtFuse.Declarative.CacheAttr(2.5), ExtFuse.Declarative.CacheEntry(1, NegativeSeconds = 0.5)]
            public partial class Fine : CachingBase { }
            """);
    }

    [Fact]
    public async Task A_file_system_class_must_be_partial()
    {
        await Verify("""
            using ExtFuse.Declarative;
            [FileSystem]
            public class {|#0:Rules|}
            {
            }
            """, Error("EXTF0012"));
        await Verify("""
            using ExtFuse.Declarative;
            public class NotAFileSystem
            {
                public static int Anything() { while (true) { } }
            }
            """);
    }

    /// <summary>Class-level rules: (id, failing class, passing class); the failing span is marked {|#0:...|}.</summary>
    public static TheoryData<string, string, string> ClassCases => new()
    {
        { "EXTF0015", "struct V { public byte A; public uint B; } static readonly KernelMap<uint, V> {|#0:M = new(8)|};",
                      "struct V { public byte A; public byte Pad0, Pad1, Pad2; public uint B; } static readonly KernelMap<uint, V> M = new(8);" },
        { "EXTF0016", "static KernelMap<uint, uint> {|#0:M|} = new(8);", "static readonly KernelMap<uint, uint> M = new(8);" },
        { "EXTF0017", "[{|#0:Deny(FuseOps.Open, Path = \"src/**x\")|}]", "[Deny(FuseOps.Open, Path = \"src/**\")]" },
        { "EXTF0018", "[{|#0:Deny(FuseOps.GetAttr, Uid = 1000)|}]", "[Deny(FuseOps.Open, Uid = 1000)]" },
        { "EXTF0018", "[{|#0:Allow(FuseOps.Lookup, Comm = \"cat\")|}]", "[Allow(FuseOps.Open, Comm = \"cat\")]" },
        { "EXTF0018", "[{|#0:Deny(FuseOps.Open, Cgroup = \"sandbox\")|}]", "[Deny(FuseOps.Open, Cgroup = \"/sandbox\")]" },
        { "EXTF0019", "[FastPath(FuseOps.GetAttr)] static int A(in CheckRequest r, ref FuseAttrOut o) => FastPath.Continue; [FastPath(FuseOps.GetAttr)] static int {|#0:B|}(in CheckRequest r, ref FuseAttrOut o) => 0;",
                      "[FastPath(FuseOps.GetAttr)] static int A(in CheckRequest r, ref FuseAttrOut o) => FastPath.Continue;" },
    };

    private static string Tree(string part) => part.TrimStart().StartsWith("[{|") || part.TrimStart().StartsWith("[Deny") || part.TrimStart().StartsWith("[Allow")
        ? $$"""
            using ExtFuse.Declarative;
            using ExtFuse.Protocol;
            [FileSystem]
            {{part}}
            public partial class Tree() : ExtFuse.Nodes.NodeFileSystem(null!) { }
            """
        : $$"""
            using ExtFuse.Declarative;
            using ExtFuse.Protocol;
            [FileSystem]
            public partial class Tree() : ExtFuse.Nodes.NodeFileSystem(null!)
            {
                {{part}}
            }
            """;

    [Theory, MemberData(nameof(ClassCases))]
    public async Task Each_class_level_diagnostic_fails_its_bad_case_and_passes_its_good_one(string id, string bad, string good)
    {
        await Verify(Tree(bad), Error(id));
        await Verify(Tree(good));
    }
}
