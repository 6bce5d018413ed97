using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;

namespace ExtFuse.Generator;

/// <summary>
/// Reports, in the IDE and at build, every rule of a [FileSystem] class that cannot become
/// verifiable BPF (EXTF0001-EXTF0020), at the offending C# span. It is compiled into the
/// generator's assembly, so one analyzer reference brings both, and shares its parser: what it
/// reports is exactly what makes the generator refuse to emit.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class BpfSubsetAnalyzer : DiagnosticAnalyzer
{
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } =
        typeof(Diagnostics).GetFields().Select(f => (DiagnosticDescriptor)f.GetValue(null)!).ToImmutableArray();

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterSymbolAction(Analyze, SymbolKind.NamedType);
    }

    private static void Analyze(SymbolAnalysisContext context)
    {
        var type = (INamedTypeSymbol)context.Symbol;
        if (!type.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == RuleParser.FileSystemAttribute)) return;
        var model = RuleParser.Parse(type, context.Compilation, context.CancellationToken);
        foreach (var d in model.Diagnostics) context.ReportDiagnostic(d.ToDiagnostic(context.Compilation));
    }
}
