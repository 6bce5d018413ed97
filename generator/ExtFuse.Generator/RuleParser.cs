using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ExtFuse.Generator;

/// <summary>
/// Reads a [FileSystem] class into its model, validating every rule. The generator emits from the
/// model; the analyzer reports its diagnostics: one parser, so the two cannot disagree.
/// </summary>
internal static class RuleParser
{
    public const string FileSystemAttribute = "ExtFuse.Declarative.FileSystemAttribute";
    private const string CheckAttribute = "ExtFuse.Declarative.CheckAttribute";

    public static FileSystemModel Parse(INamedTypeSymbol type, Compilation compilation, CancellationToken ct)
    {
        var diagnostics = ImmutableArray.CreateBuilder<DiagnosticInfo>();
        foreach (var syntax in type.DeclaringSyntaxReferences.Select(r => r.GetSyntax(ct)).OfType<ClassDeclarationSyntax>())
            if (!syntax.Modifiers.Any(m => m.Text == "partial"))
                diagnostics.Add(DiagnosticInfo.Create(Diagnostics.NotPartial, syntax.Identifier.GetLocation(), type.Name));

        var translator = new Translator(compilation, type, ct);
        var checks = ImmutableArray.CreateBuilder<CheckModel>();
        foreach (var method in type.GetMembers().OfType<IMethodSymbol>())
        {
            var attr = method.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == CheckAttribute);
            if (attr is null) continue;
            var location = method.Locations.FirstOrDefault() ?? Location.None;
            var ok = method.IsStatic && method.ReturnType.SpecialType == SpecialType.System_Int32 && method.Parameters.Length == 1
                     && Translator.IsRequest(method.Parameters[0].Type) && method.Parameters[0].RefKind is RefKind.In or RefKind.None;
            if (!ok)
            {
                diagnostics.Add(DiagnosticInfo.Create(Diagnostics.BadSignature, location, method.Name));
                continue;
            }
            var ops = attr.ConstructorArguments.Length == 1 && attr.ConstructorArguments[0].Value is uint u ? u : 0u;
            checks.Add(new CheckModel(method.Name, ops, translator.Translate(method)));
        }
        diagnostics.AddRange(translator.Diagnostics);
        var ns = type.ContainingNamespace.IsGlobalNamespace ? "" : type.ContainingNamespace.ToDisplayString();
        var isRaw = false;
        for (var b = type.BaseType; b is not null; b = b.BaseType) isRaw |= b.ToDisplayString() == "ExtFuse.RawFileSystem";
        return new FileSystemModel(ns, type.Name, type.ToDisplayString(), isRaw,
            new EquatableArray<CheckModel>(checks.ToImmutable()), translator.Functions,
            new EquatableArray<DiagnosticInfo>(diagnostics.ToImmutable()));
    }

}
