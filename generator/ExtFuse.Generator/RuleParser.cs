using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
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
    private const string Ns = "ExtFuse.Declarative.";
    private const string CheckAttribute = Ns + "CheckAttribute";
    private const string FastPathAttribute = Ns + "FastPathAttribute";
    private const string CacheEntryAttribute = Ns + "CacheEntryAttribute";
    private const string CacheAttrAttribute = Ns + "CacheAttrAttribute";
    private const string DenyAttribute = Ns + "DenyAttribute";
    private const string AllowAttribute = Ns + "AllowAttribute";
    private const string HideAttribute = Ns + "HideAttribute";
    private const string PassthroughAttribute = Ns + "PassthroughAttribute";

    // FuseOps bits (ExtFuse.Declarative.FuseOps) the rules reason about.
    private const uint GetAttr = 1 << 1, Read = 1 << 5, Write = 1 << 6;
    /// <summary>InitFlags.Passthrough and the READDIRPLUS pair (ExtFuse.Protocol.InitFlags).</summary>
    private const ulong InitPassthrough = 1UL << 37, InitReaddirplus = (1UL << 13) | (1UL << 14);

    private static bool Derives(INamedTypeSymbol type, string baseName)
    {
        for (var b = type.BaseType; b is not null; b = b.BaseType)
            if (b.ToDisplayString() == baseName) return true;
        return false;
    }

    private static bool HasVirtualTimeout(INamedTypeSymbol type, string property)
    {
        for (var b = type.BaseType; b is not null; b = b.BaseType)
            if (b.GetMembers(property).OfType<IPropertySymbol>().FirstOrDefault() is { } p)
                return (p.IsVirtual || p.IsOverride || p.IsAbstract) && !p.IsSealed && p.Type.ToDisplayString() == "System.TimeSpan";
        return false;
    }

    private static T? Named<T>(AttributeData attr, string name) =>
        attr.NamedArguments.FirstOrDefault(n => n.Key == name).Value.Value is T v ? v : default;

    public static FileSystemModel Parse(INamedTypeSymbol type, Compilation compilation, CancellationToken ct)
    {
        var diagnostics = ImmutableArray.CreateBuilder<DiagnosticInfo>();
        foreach (var syntax in type.DeclaringSyntaxReferences.Select(r => r.GetSyntax(ct)).OfType<ClassDeclarationSyntax>())
            if (!syntax.Modifiers.Any(m => m.Text == "partial"))
                diagnostics.Add(DiagnosticInfo.Create(Diagnostics.NotPartial, syntax.Identifier.GetLocation(), type.Name));
        var knowsPaths = Derives(type, "ExtFuse.Nodes.NodeFileSystem");

        var translator = new Translator(compilation, type, ct);
        translator.Require(Translator.RequestType);
        translator.DeclareMaps();
        var checks = ImmutableArray.CreateBuilder<CheckModel>();
        var fastPaths = ImmutableArray.CreateBuilder<FastPathModel>();
        foreach (var method in type.GetMembers().OfType<IMethodSymbol>())
        {
            foreach (var attr in method.GetAttributes())
            {
                var name = attr.AttributeClass?.ToDisplayString();
                if (name is not (CheckAttribute or FastPathAttribute)) continue;
                var location = method.Locations.FirstOrDefault() ?? Location.None;
                var ops = attr.ConstructorArguments.Length == 1 && attr.ConstructorArguments[0].Value is uint u ? u : 0u;
                var isCheck = name == CheckAttribute;
                var p = method.Parameters;
                var ok = method.IsStatic && method.ReturnType.SpecialType == SpecialType.System_Int32 && p.Length == (isCheck ? 1 : 2)
                         && Translator.IsRequest(p[0].Type) && p[0].RefKind is RefKind.In or RefKind.None
                         && (isCheck || p[1].Type.ToDisplayString() == "ExtFuse.Protocol.FuseAttrOut" && p[1].RefKind == RefKind.Ref);
                if (!ok)
                {
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.BadSignature, location, method.Name, isCheck ? "Check" : "FastPath",
                        isCheck ? $"static int {method.Name}(in CheckRequest req)" : $"static int {method.Name}(in CheckRequest req, ref FuseAttrOut reply)"));
                    continue;
                }
                if (ops == 0)
                {
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.OpsNotApplicable, location, isCheck ? "Check" : "FastPath", "names no operation"));
                    continue;
                }
                if (!isCheck && ops != GetAttr)
                {
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.OpsNotApplicable, location, "FastPath",
                        "can serve GetAttr only (one operation, whose reply it fills); use [Check] to refuse other operations"));
                    continue;
                }
                var c = translator.Translate(method);
                if (isCheck) checks.Add(new CheckModel(method.Name, ops, c));
                else if (fastPaths.Any(f => f.Op == ops))
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.ConflictingRules, location, $"two [FastPath] methods serve the same operation ({fastPaths.First(f => f.Op == ops).Name} and {method.Name})"));
                else
                {
                    // Maps keyed by node id that the answer comes from: a change to an entry makes the
                    // kernel's cached attributes of that node wrong, so the session invalidates them.
                    var nodeMaps = translator.MapsReadBy(method).Where(m => translator.MapNamed(m)?.KeyType == "ulong").ToImmutableArray();
                    fastPaths.Add(new FastPathModel(method.Name, ops, c, new EquatableArray<string>(nodeMaps)));
                }
            }
        }

        var timeouts = ImmutableArray.CreateBuilder<TimeoutModel>();
        var pathRules = ImmutableArray.CreateBuilder<PathRuleModel>();
        ulong initFlags = 0;
        foreach (var attr in type.GetAttributes())
        {
            var name = attr.AttributeClass?.ToDisplayString();
            var location = attr.ApplicationSyntaxReference?.GetSyntax(ct).GetLocation() ?? Location.None;
            switch (name)
            {
                case CacheEntryAttribute or CacheAttrAttribute:
                    ParseCache(type, attr, name, location, diagnostics, timeouts);
                    if (name == CacheEntryAttribute) initFlags |= InitReaddirplus;
                    break;
                case DenyAttribute or AllowAttribute:
                {
                    var ops = attr.ConstructorArguments.Length == 1 && attr.ConstructorArguments[0].Value is uint u ? u : 0u;
                    var rule = new PathRuleModel(name == DenyAttribute ? "Deny" : "Allow", ops, Named<string>(attr, "Path"),
                        attr.NamedArguments.Any(n => n.Key == "Uid") ? Named<long>(attr, "Uid") : -1,
                        attr.NamedArguments.Any(n => n.Key == "Gid") ? Named<long>(attr, "Gid") : -1,
                        Named<string>(attr, "Comm"), attr.NamedArguments.Any(n => n.Key == "Errno") ? Named<int>(attr, "Errno") : 13,
                        Named<string>(attr, "Cgroup"));
                    if (ValidateRule(rule, knowsPaths, location, diagnostics)) pathRules.Add(rule);
                    break;
                }
                case HideAttribute:
                {
                    var glob = attr.ConstructorArguments.Length == 1 ? attr.ConstructorArguments[0].Value as string : null;
                    if (ValidatePath("Hide", glob, knowsPaths, location, diagnostics)) pathRules.Add(new PathRuleModel("Hide", 0, glob, -1, -1, null, 2));
                    break;
                }
                case PassthroughAttribute:
                {
                    var glob = Named<string>(attr, "Path");
                    if (ValidatePath("Passthrough", glob ?? "**", knowsPaths, location, diagnostics))
                    {
                        pathRules.Add(new PathRuleModel("Passthrough", Read | Write, glob, -1, -1, null, 0));
                        initFlags |= InitPassthrough;
                    }
                    break;
                }
            }
        }

        diagnostics.AddRange(translator.Diagnostics);
        var ns = type.ContainingNamespace.IsGlobalNamespace ? "" : type.ContainingNamespace.ToDisplayString();
        return new FileSystemModel(ns, type.Name, type.ToDisplayString(), Derives(type, "ExtFuse.RawFileSystem"),
            new(checks.ToImmutable()), new(fastPaths.ToImmutable()), new(translator.Maps.ToImmutableArray()),
            new(pathRules.ToImmutable()), new(timeouts.ToImmutable()), initFlags,
            translator.Structs, translator.Functions, new(diagnostics.ToImmutable()));
    }

    private static bool ValidatePath(string rule, string? glob, bool knowsPaths, Location location, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
    {
        if (glob is not null && Glob.Validate(glob) is { } error)
        {
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.InvalidGlob, location, glob, error));
            return false;
        }
        if (glob is not null && !knowsPaths)
        {
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.OpsNotApplicable, location, rule,
                "needs a file system that knows each node's path (a NodeFileSystem); a raw file system has nodeids only"));
            return false;
        }
        return true;
    }

    private static bool ValidateRule(PathRuleModel rule, bool knowsPaths, Location location, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
    {
        if (RuleValidation.Problem(rule.Kind == "Allow", rule.Ops, rule.Uid, rule.Gid, rule.Comm, rule.Cgroup, rule.Errno) is { } problem)
        {
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.OpsNotApplicable, location, rule.Kind, problem));
            return false;
        }
        return ValidatePath(rule.Kind, rule.Glob, knowsPaths, location, diagnostics);
    }

    private static void ParseCache(INamedTypeSymbol type, AttributeData attr, string name, Location location,
        ImmutableArray<DiagnosticInfo>.Builder diagnostics, ImmutableArray<TimeoutModel>.Builder timeouts)
    {
        var shortName = name == CacheEntryAttribute ? "CacheEntry" : "CacheAttr";
        var values = new List<(string Property, double Seconds)>
        {
            (name == CacheEntryAttribute ? "EntryTimeout" : "AttrTimeout", attr.ConstructorArguments.Length == 1 && attr.ConstructorArguments[0].Value is double d ? d : double.NaN),
        };
        foreach (var named in attr.NamedArguments)
            if (named.Key == "NegativeSeconds" && named.Value.Value is double n) values.Add(("NegativeTimeout", n));
        foreach (var (property, seconds) in values)
        {
            if (double.IsNaN(seconds) || double.IsInfinity(seconds) || seconds < 0)
                diagnostics.Add(DiagnosticInfo.Create(Diagnostics.BadTimeout, location, shortName, seconds.ToString(CultureInfo.InvariantCulture)));
            else if (!HasVirtualTimeout(type, property))
                diagnostics.Add(DiagnosticInfo.Create(Diagnostics.CacheNotSupported, location, shortName, property));
            else timeouts.Add(new TimeoutModel(property, seconds));
        }
    }
}
