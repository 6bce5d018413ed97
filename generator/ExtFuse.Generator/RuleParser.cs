using System.Collections.Generic;
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
    private const string CacheEntryAttribute = "ExtFuse.Declarative.CacheEntryAttribute";
    private const string CacheAttrAttribute = "ExtFuse.Declarative.CacheAttrAttribute";

    private static bool HasVirtualTimeout(INamedTypeSymbol type, string property)
    {
        for (var b = type.BaseType; b is not null; b = b.BaseType)
            if (b.GetMembers(property).OfType<IPropertySymbol>().FirstOrDefault() is { } p)
                return (p.IsVirtual || p.IsOverride || p.IsAbstract) && !p.IsSealed && p.Type.ToDisplayString() == "System.TimeSpan";
        return false;
    }

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
        var timeouts = ImmutableArray.CreateBuilder<TimeoutModel>();
        foreach (var attr in type.GetAttributes())
        {
            var name = attr.AttributeClass?.ToDisplayString();
            if (name is not (CacheEntryAttribute or CacheAttrAttribute)) continue;
            var shortName = name == CacheEntryAttribute ? "CacheEntry" : "CacheAttr";
            var location = attr.ApplicationSyntaxReference?.GetSyntax(ct).GetLocation() ?? Location.None;
            var values = new List<(string Property, double Seconds)>
            {
                (name == CacheEntryAttribute ? "EntryTimeout" : "AttrTimeout", attr.ConstructorArguments.Length == 1 && attr.ConstructorArguments[0].Value is double d ? d : double.NaN),
            };
            foreach (var named in attr.NamedArguments)
                if (named.Key == "NegativeSeconds" && named.Value.Value is double n) values.Add(("NegativeTimeout", n));
            foreach (var (property, seconds) in values)
            {
                if (double.IsNaN(seconds) || double.IsInfinity(seconds) || seconds < 0)
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.BadTimeout, location, shortName, seconds.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                else if (!HasVirtualTimeout(type, property))
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.CacheNotSupported, location, shortName, property));
                else timeouts.Add(new TimeoutModel(property, seconds));
            }
        }
        var ns = type.ContainingNamespace.IsGlobalNamespace ? "" : type.ContainingNamespace.ToDisplayString();
        var isRaw = false;
        for (var b = type.BaseType; b is not null; b = b.BaseType) isRaw |= b.ToDisplayString() == "ExtFuse.RawFileSystem";
        return new FileSystemModel(ns, type.Name, type.ToDisplayString(), isRaw,
            new EquatableArray<CheckModel>(checks.ToImmutable()), new EquatableArray<TimeoutModel>(timeouts.ToImmutable()), translator.Functions,
            new EquatableArray<DiagnosticInfo>(diagnostics.ToImmutable()));
    }

}
