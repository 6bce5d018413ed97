using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ExtFuse.Generator;

/// <summary>
/// Translates the BPF subset of C# (integers, if/else, switch, constant-bound for loops, locals,
/// structs and fixed-size buffers, KernelMap get/set/remove, calls to other static methods of the
/// class) into C functions, statement by statement, with #line directives back to the C# source.
/// Struct types that reach C are emitted with _Static_assert checks of the layout .NET gives them.
/// Anything else is a diagnostic; a caller that gets any diagnostic emits no C at all (fail closed).
/// </summary>
internal sealed class Translator(Compilation compilation, INamedTypeSymbol owner, CancellationToken ct)
{
    public const string RequestType = "ExtFuse.Declarative.CheckRequest";
    private const string KernelMapType = "ExtFuse.Declarative.KernelMap<TKey, TValue>";
    private readonly List<DiagnosticInfo> _diagnostics = [];
    private readonly Dictionary<ITypeSymbol, StructLayout?> _layouts = new(SymbolEqualityComparer.Default);
    private readonly List<string> _structs = [];
    private readonly Dictionary<IFieldSymbol, MapModel> _maps = new(SymbolEqualityComparer.Default);
    private readonly Dictionary<IMethodSymbol, string> _translated = new(SymbolEqualityComparer.Default);
    private readonly List<string> _functions = [];
    private readonly HashSet<IMethodSymbol> _inProgress = new(SymbolEqualityComparer.Default);
    private readonly Dictionary<IMethodSymbol, int> _stack = new(SymbolEqualityComparer.Default);
    /// <summary>The KernelMaps each translated method looks up, its callees' included.</summary>
    private readonly Dictionary<IMethodSymbol, SortedSet<string>> _reads = new(SymbolEqualityComparer.Default);

    public IReadOnlyList<DiagnosticInfo> Diagnostics => _diagnostics;
    private INamedTypeSymbol Owner => owner;
    /// <summary>The translated functions, callees before callers.</summary>
    public string Functions => string.Join("\n", _functions);
    /// <summary>The C structs the functions and maps use, each after the structs it contains.</summary>
    public string Structs => string.Join("\n", _structs);
    public IEnumerable<MapModel> Maps => _maps.Values;

    /// <summary>Where to report a problem with a type that has no source here: the file system class.</summary>
    private SyntaxNode Anchor => owner.DeclaringSyntaxReferences.First().GetSyntax(ct);

    /// <summary>The owner's KernelMap fields, read before any method so calls can name them.</summary>
    public void DeclareMaps()
    {
        foreach (var field in owner.GetMembers().OfType<IFieldSymbol>())
        {
            if (field.Type is not INamedTypeSymbol { IsGenericType: true } mt || mt.ConstructedFrom.ToDisplayString() != KernelMapType) continue;
            var syntax = field.DeclaringSyntaxReferences.Select(r => r.GetSyntax(ct)).OfType<VariableDeclaratorSyntax>().FirstOrDefault();
            var at = (SyntaxNode?)syntax ?? Anchor;
            var capacity = syntax?.Initializer?.Value switch
            {
                BaseObjectCreationExpressionSyntax { ArgumentList.Arguments.Count: 1 } c => compilation.GetSemanticModel(c.SyntaxTree).GetConstantValue(c.ArgumentList!.Arguments[0].Expression),
                _ => default,
            };
            if (!field.IsStatic || !field.IsReadOnly || !capacity.HasValue || capacity.Value is not int n || n <= 0)
            {
                Report(ExtFuse.Generator.Diagnostics.BadMap, syntax?.Identifier ?? default, field.Name);
                continue;
            }
            string key = MapType(mt.TypeArguments[0], at), value = MapType(mt.TypeArguments[1], at);
            _maps[field] = new MapModel(field.Name, mt.TypeArguments[0].ToDisplayString(), mt.TypeArguments[1].ToDisplayString(), key, value, n);
        }
    }

    /// <summary>A map key or value type: an integer, or a struct with no implicit padding (the kernel copies and hashes every byte).</summary>
    private string MapType(ITypeSymbol type, SyntaxNode at)
    {
        var ctype = CType(type, at);
        if (Layout(type) is { } layout && layout.Padding is { } gap)
            Report(ExtFuse.Generator.Diagnostics.NotBlittable, at, type.Name, $"it has {gap}; declare the padding as a field so .NET and the kernel agree on every byte");
        return ctype;
    }

    public static string CFunctionName(INamedTypeSymbol owner, IMethodSymbol m) => $"{owner.Name}_{m.Name}";

    private void Report(DiagnosticDescriptor d, SyntaxNode node, params string[] args) =>
        _diagnostics.Add(DiagnosticInfo.Create(d, node.GetLocation(), args));

    private void Report(DiagnosticDescriptor d, SyntaxToken token, params string[] args) =>
        _diagnostics.Add(DiagnosticInfo.Create(d, token.GetLocation(), args));

    /// <summary>Emits a struct the generated entry programs use even when no method mentions it.</summary>
    public void Require(string metadataName)
    {
        if (compilation.GetTypeByMetadataName(metadataName) is { } type) CType(type, Anchor);
    }

    /// <summary>Translates a method (and, first, what it calls). Returns its C name.</summary>
    public string Translate(IMethodSymbol method)
    {
        if (_translated.TryGetValue(method, out var done)) return done;
        var name = CFunctionName(owner, method);
        var syntax = method.DeclaringSyntaxReferences.Select(r => r.GetSyntax(ct)).OfType<MethodDeclarationSyntax>().FirstOrDefault();
        if (syntax is null) return name;
        if (!_inProgress.Add(method))
        {
            Report(ExtFuse.Generator.Diagnostics.Recursion, syntax.Identifier, method.Name);
            return name;
        }
        var model = compilation.GetSemanticModel(syntax.SyntaxTree);
        var body = new StringBuilder();
        var fn = new FunctionContext(this, model, method);
        if (syntax.Body is { } block) fn.Statement(block, body, 0);
        else if (syntax.ExpressionBody is { } arrow)
        {
            fn.Line(arrow.Expression, body);
            fn.Return(arrow.Expression, body);
        }
        var parameters = string.Join(", ", method.Parameters.Select(p => p.RefKind switch
        {
            RefKind.In or RefKind.RefReadOnlyParameter => $"const {CType(p.Type, syntax)} *v_{p.Name}",
            RefKind.Ref or RefKind.Out => $"{CType(p.Type, syntax)} *v_{p.Name}",
            _ => $"{CType(p.Type, syntax)} v_{p.Name}",
        }));
        var header = new StringBuilder();
        header.Append(LineDirective(syntax));
        header.Append($"static __always_inline {CType(method.ReturnType, syntax)} {name}({(parameters.Length == 0 ? "void" : parameters)})\n");
        _functions.Add(header.Append(body).ToString());
        _inProgress.Remove(method);
        _translated[method] = name;
        _stack[method] = fn.StackBytes + fn.CalleeStack;
        _reads[method] = fn.Reads;
        if (_stack[method] > 512) Report(ExtFuse.Generator.Diagnostics.StackTooLarge, syntax.Identifier, method.Name, _stack[method].ToString(CultureInfo.InvariantCulture));
        return name;
    }

    /// <summary>The names of the KernelMaps a translated method (or a method it calls) looks up.</summary>
    public IReadOnlyCollection<string> MapsReadBy(IMethodSymbol method) =>
        _reads.TryGetValue(method, out var r) ? r : (IReadOnlyCollection<string>)System.Array.Empty<string>();

    /// <summary>The model of a KernelMap field, by name.</summary>
    public MapModel? MapNamed(string name) => _maps.Values.FirstOrDefault(m => m.Name == name);

    internal static bool IsRequest(ITypeSymbol t) => t.ToDisplayString() == RequestType;

    private static string LineDirective(SyntaxNode node)
    {
        var span = node.GetLocation().GetLineSpan();
        return $"#line {span.StartLinePosition.Line + 1} \"{span.Path.Replace("\\", "\\\\").Replace("\"", "\\\"")}\"\n";
    }

    internal string CType(ITypeSymbol? t, SyntaxNode at)
    {
        switch (t?.SpecialType)
        {
            case SpecialType.System_Int32: return "__s32";
            case SpecialType.System_UInt32: return "__u32";
            case SpecialType.System_Int64: return "__s64";
            case SpecialType.System_UInt64: return "__u64";
            case SpecialType.System_Int16: return "__s16";
            case SpecialType.System_UInt16: return "__u16";
            case SpecialType.System_Byte: return "__u8";
            case SpecialType.System_SByte: return "__s8";
            case SpecialType.System_Char: return "__u16";
            case SpecialType.System_Boolean: return "__u8";
            case SpecialType.System_Single:
            case SpecialType.System_Double:
            case SpecialType.System_Decimal:
                Report(ExtFuse.Generator.Diagnostics.FloatingPoint, at, at.ToString());
                return "__s64";
            case SpecialType.System_String:
                Report(ExtFuse.Generator.Diagnostics.StringUse, at, at.ToString());
                return "__s64";
        }
        if (t is INamedTypeSymbol { TypeKind: TypeKind.Enum } e) return CType(e.EnumUnderlyingType, at);
        if (t is INamedTypeSymbol { TypeKind: TypeKind.Struct } s)
        {
            if (Layout(s) is not null) return $"struct {s.Name}";
            Report(ExtFuse.Generator.Diagnostics.NotBlittable, at, s.Name, _layoutWhy.TryGetValue(s, out var why) ? why : "not a plain struct");
            return "__s64";
        }
        Report(ExtFuse.Generator.Diagnostics.NotInSubset, at, at.ToString());
        return "__s64";
    }

    private readonly Dictionary<ITypeSymbol, string> _layoutWhy = new(SymbolEqualityComparer.Default);

    /// <summary>A field of a struct as C sees it: its C element type, offset, and element count for buffers (0: a scalar).</summary>
    internal sealed record StructField(string Name, string CType, int Offset, int Count);

    /// <summary>The layout .NET gives a sequential struct (natural alignment, as C's), or null when C cannot mirror it.</summary>
    internal sealed record StructLayout(string Name, int Size, int Align, List<StructField> Fields, string? Padding, int ElementCount);

    internal static int SizeOf(ITypeSymbol t) => t.SpecialType switch
    {
        SpecialType.System_Byte or SpecialType.System_SByte or SpecialType.System_Boolean => 1,
        SpecialType.System_Int16 or SpecialType.System_UInt16 or SpecialType.System_Char => 2,
        SpecialType.System_Int32 or SpecialType.System_UInt32 => 4,
        SpecialType.System_Int64 or SpecialType.System_UInt64 => 8,
        _ => t is INamedTypeSymbol { TypeKind: TypeKind.Enum } e && e.EnumUnderlyingType is { } u ? SizeOf(u) : 0,
    };

    /// <summary>Lays out a struct for C (and emits it once), or explains why it cannot cross.</summary>
    internal StructLayout? Layout(ITypeSymbol type)
    {
        if (type is not INamedTypeSymbol { TypeKind: TypeKind.Struct } s) return null;
        if (_layouts.TryGetValue(s, out var known)) return known;
        _layouts[s] = null; // a struct containing itself stops here
        string? why = null;
        var layoutAttr = s.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == "System.Runtime.InteropServices.StructLayoutAttribute");
        var inline = s.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == "System.Runtime.CompilerServices.InlineArrayAttribute");
        if (layoutAttr is not null && (layoutAttr.ConstructorArguments[0].Value is not 0 || layoutAttr.NamedArguments.Any(n => n.Key is "Pack" or "Size" && n.Value.Value is not 0)))
            why = "only [StructLayout(LayoutKind.Sequential)] without Pack or Size has the layout C gives it";
        var fields = new List<StructField>();
        int offset = 0, align = 1, elementCount = 0;
        string? padding = null;
        var members = s.GetMembers().OfType<IFieldSymbol>().Where(f => !f.IsStatic && !f.IsConst).ToList();
        if (why is null && members.Count == 0) why = "it has no fields";
        if (why is null && inline is not null)
        {
            elementCount = inline.ConstructorArguments[0].Value is int n ? n : 0;
            if (members.Count != 1) why = "an inline array has one element field";
        }
        foreach (var f in why is null ? members : [])
        {
            var ft = f.Type;
            int count = f.IsFixedSizeBuffer ? f.FixedSize : 0;
            if (f.IsFixedSizeBuffer && ft is IPointerTypeSymbol ptr) ft = ptr.PointedAtType;
            int size, fieldAlign;
            string ctype;
            if (SizeOf(ft) is var scalar and > 0)
            {
                size = fieldAlign = scalar;
                ctype = CType(ft, Anchor);
            }
            else if (Layout(ft) is { } nested)
            {
                (size, fieldAlign, ctype) = (nested.Size, nested.Align, $"struct {nested.Name}");
            }
            else
            {
                why = $"field {f.Name} is {ft.ToDisplayString()}: fields must be integers, enums, bools or such structs";
                break;
            }
            if (inline is not null) count = elementCount;
            var at = (offset + fieldAlign - 1) / fieldAlign * fieldAlign;
            if (at != offset && padding is null) padding = $"{at - offset} bytes of implicit padding before {f.Name}";
            fields.Add(new StructField(f.Name, ctype, at, count));
            offset = at + size * Math.Max(count, 1);
            align = Math.Max(align, fieldAlign);
        }
        if (why is not null)
        {
            _layoutWhy[s] = why;
            return null;
        }
        var total = (offset + align - 1) / align * align;
        if (total != offset && padding is null) padding = $"{total - offset} bytes of implicit padding at the end";
        var layout = new StructLayout(s.Name, total, align, fields, padding, elementCount);
        _layouts[s] = layout;
        _structs.Add(EmitStruct(s, layout));
        return layout;
    }

    private static string EmitStruct(INamedTypeSymbol s, StructLayout layout)
    {
        var sb = new StringBuilder();
        sb.Append($"/* {s.ToDisplayString()} */\nstruct {layout.Name} {{\n");
        foreach (var f in layout.Fields)
            sb.Append($"\t{f.CType} {f.Name}{(f.Count > 0 ? $"[{f.Count}]" : "")};\n");
        sb.Append("};\n");
        sb.Append($"_Static_assert(sizeof(struct {layout.Name}) == {layout.Size}, \"{s.Name} is {layout.Size} bytes in .NET\");\n");
        foreach (var f in layout.Fields)
            sb.Append($"_Static_assert(__builtin_offsetof(struct {layout.Name}, {f.Name}) == {f.Offset}, \"{s.Name}.{f.Name} is at {f.Offset} in .NET\");\n");
        return sb.ToString();
    }

    /// <summary>Translation state of one function.</summary>
    private sealed class FunctionContext(Translator t, SemanticModel model, IMethodSymbol method)
    {
        public int StackBytes;
        public int CalleeStack;
        public readonly SortedSet<string> Reads = new(System.StringComparer.Ordinal);
        /// <summary>Declarations an expression needs before its statement (out var, map temporaries).</summary>
        private readonly List<string> _hoisted = [];
        /// <summary>For-loop variables and the exclusive bound the verifier will see for them.</summary>
        private readonly Dictionary<ILocalSymbol, long> _loopBounds = new(SymbolEqualityComparer.Default);
        private int _temps;

        private static string Indent(int depth) => new('\t', depth);

        public void Line(SyntaxNode node, StringBuilder sb) => sb.Append(LineDirective(node));

        private void Flush(StringBuilder sb, int depth)
        {
            foreach (var h in _hoisted) sb.Append(Indent(depth)).Append(h).Append('\n');
            _hoisted.Clear();
        }

        private string Temp() => $"__t{_temps++}";

        private static int Slot(int bytes) => (bytes + 7) / 8 * 8;

        private int SizeOfType(ITypeSymbol? type) => type is null ? 8 : t.Layout(type)?.Size ?? Math.Max(SizeOf(type), 1);

        private static string Zero(string ctype) => ctype.StartsWith("struct ", StringComparison.Ordinal) ? $"(({ctype}){{}})" : $"(({ctype})0)";

        /// <summary>Expression body: `=> expr;`.</summary>
        public void Return(ExpressionSyntax e, StringBuilder sb)
        {
            var value = Expr(e);
            sb.Append("{\n");
            Flush(sb, 1);
            sb.Append("\treturn ").Append(value).Append(";\n}\n");
        }

        public void Statement(StatementSyntax s, StringBuilder sb, int depth)
        {
            t.ThrowIfCancelled();
            switch (s)
            {
                case BlockSyntax b:
                    sb.Append(Indent(depth)).Append("{\n");
                    foreach (var inner in b.Statements) Statement(inner, sb, depth + 1);
                    sb.Append(Indent(depth)).Append("}\n");
                    break;
                case LocalDeclarationStatementSyntax d:
                    foreach (var v in d.Declaration.Variables)
                    {
                        var local = (ILocalSymbol)model.GetDeclaredSymbol(v)!;
                        StackBytes += Slot(SizeOfType(local.Type));
                        string ctype, init;
                        if (v.Initializer is null) init = Zero(ctype = t.CType(local.Type, d));
                        else
                        {
                            var reported = t._diagnostics.Count;
                            init = Expr(v.Initializer.Value);
                            // A bad initializer was reported already; its type would only repeat it.
                            ctype = t._diagnostics.Count > reported ? "__s64" : t.CType(local.Type, d);
                        }
                        Line(d, sb);
                        Flush(sb, depth);
                        sb.Append(Indent(depth)).Append($"{ctype} v_{local.Name} = {init};\n");
                    }
                    break;
                case ExpressionStatementSyntax e:
                {
                    var text = Expr(e.Expression);
                    Line(e, sb);
                    Flush(sb, depth);
                    sb.Append(Indent(depth)).Append(text).Append(";\n");
                    break;
                }
                case IfStatementSyntax i:
                {
                    var cond = Expr(i.Condition);
                    Line(i, sb);
                    Flush(sb, depth);
                    sb.Append(Indent(depth)).Append($"if ({cond})\n");
                    Statement(i.Statement, sb, depth + (i.Statement is BlockSyntax ? 0 : 1));
                    if (i.Else is { } els)
                    {
                        sb.Append(Indent(depth)).Append("else\n");
                        Statement(els.Statement, sb, depth + (els.Statement is BlockSyntax ? 0 : 1));
                    }
                    break;
                }
                case ReturnStatementSyntax r:
                {
                    var value = r.Expression is null ? null : Expr(r.Expression);
                    Line(r, sb);
                    Flush(sb, depth);
                    sb.Append(Indent(depth)).Append(value is null ? "return;\n" : $"return {value};\n");
                    break;
                }
                case SwitchStatementSyntax sw:
                {
                    var value = Expr(sw.Expression);
                    Line(sw, sb);
                    Flush(sb, depth);
                    sb.Append(Indent(depth)).Append($"switch ({value}) {{\n");
                    foreach (var section in sw.Sections)
                    {
                        foreach (var label in section.Labels)
                        {
                            if (label is CaseSwitchLabelSyntax c) sb.Append(Indent(depth)).Append($"case {Expr(c.Value)}:\n");
                            else if (label is DefaultSwitchLabelSyntax) sb.Append(Indent(depth)).Append("default:\n");
                            else t.Report(ExtFuse.Generator.Diagnostics.NotInSubset, label, label.ToString());
                        }
                        foreach (var st in section.Statements) Statement(st, sb, depth + 1);
                    }
                    sb.Append(Indent(depth)).Append("}\n");
                    break;
                }
                case ForStatementSyntax f:
                    For(f, sb, depth);
                    break;
                case BreakStatementSyntax:
                    sb.Append(Indent(depth)).Append("break;\n");
                    break;
                case ContinueStatementSyntax:
                    sb.Append(Indent(depth)).Append("continue;\n");
                    break;
                case EmptyStatementSyntax:
                    break;
                case WhileStatementSyntax or DoStatementSyntax or ForEachStatementSyntax:
                    t.Report(ExtFuse.Generator.Diagnostics.UnboundedLoop, s, s.GetFirstToken().Text);
                    break;
                case ThrowStatementSyntax or TryStatementSyntax:
                    t.Report(ExtFuse.Generator.Diagnostics.Exceptions, s, s.GetFirstToken().Text);
                    break;
                default:
                    t.Report(ExtFuse.Generator.Diagnostics.NotInSubset, s, s.GetFirstToken().Text);
                    break;
            }
        }

        /// <summary>for (var i = C0; i &lt; C1; i++) with i untouched in the body.</summary>
        private void For(ForStatementSyntax f, StringBuilder sb, int depth)
        {
            var v = f.Declaration?.Variables.Count == 1 ? f.Declaration.Variables[0] : null;
            var local = v is null ? null : model.GetDeclaredSymbol(v) as ILocalSymbol;
            bool Constant(ExpressionSyntax? e) => e is not null && model.GetConstantValue(e).HasValue;
            var bounded = local is not null && v!.Initializer is not null && Constant(v.Initializer.Value)
                && f.Condition is BinaryExpressionSyntax cond
                && cond.Kind() is SyntaxKind.LessThanExpression or SyntaxKind.LessThanOrEqualExpression
                && SymbolEqualityComparer.Default.Equals(model.GetSymbolInfo(cond.Left).Symbol, local) && Constant(cond.Right)
                && f.Incrementors.Count == 1
                && f.Incrementors[0] is PostfixUnaryExpressionSyntax { RawKind: (int)SyntaxKind.PostIncrementExpression } or PrefixUnaryExpressionSyntax { RawKind: (int)SyntaxKind.PreIncrementExpression }
                && !f.Statement.DescendantNodes().Any(n => Assigns(n, local));
            if (!bounded)
            {
                t.Report(ExtFuse.Generator.Diagnostics.UnboundedLoop, f, "for");
                return;
            }
            var c = (BinaryExpressionSyntax)f.Condition!;
            var limit = System.Convert.ToInt64(model.GetConstantValue(c.Right).Value, CultureInfo.InvariantCulture);
            _loopBounds[local!] = c.Kind() == SyntaxKind.LessThanOrEqualExpression ? limit + 1 : limit;
            var first = System.Convert.ToInt64(model.GetConstantValue(v!.Initializer!.Value).Value, CultureInfo.InvariantCulture);
            if (first < 0) _loopBounds[local!] = long.MaxValue; // a negative start could index below 0
            Line(f, sb);
            StackBytes += 8;
            sb.Append(Indent(depth)).Append($"for ({t.CType(local!.Type, f)} v_{local.Name} = {Expr(v!.Initializer!.Value)}; {Expr(f.Condition!)}; v_{local.Name}++)\n");
            Statement(f.Statement, sb, depth + (f.Statement is BlockSyntax ? 0 : 1));
        }

        private bool Assigns(SyntaxNode n, ILocalSymbol local) => n switch
        {
            AssignmentExpressionSyntax a => SymbolEqualityComparer.Default.Equals(model.GetSymbolInfo(a.Left).Symbol, local),
            PostfixUnaryExpressionSyntax p => SymbolEqualityComparer.Default.Equals(model.GetSymbolInfo(p.Operand).Symbol, local),
            PrefixUnaryExpressionSyntax p when p.Kind() is SyntaxKind.PreIncrementExpression or SyntaxKind.PreDecrementExpression
                => SymbolEqualityComparer.Default.Equals(model.GetSymbolInfo(p.Operand).Symbol, local),
            ArgumentSyntax { RefKindKeyword.RawKind: (int)SyntaxKind.OutKeyword or (int)SyntaxKind.RefKeyword } arg
                => SymbolEqualityComparer.Default.Equals(model.GetSymbolInfo(arg.Expression).Symbol, local),
            _ => false,
        };

        /// <summary>A place C can assign: a local, a ref/out parameter, or a field or element of one.</summary>
        private bool Writable(ExpressionSyntax e) => e switch
        {
            IdentifierNameSyntax => model.GetSymbolInfo(e).Symbol is ILocalSymbol or IParameterSymbol { RefKind: RefKind.Ref or RefKind.Out },
            MemberAccessExpressionSyntax m => model.GetSymbolInfo(m).Symbol is IFieldSymbol && Writable(m.Expression),
            ElementAccessExpressionSyntax el => Writable(el.Expression),
            ParenthesizedExpressionSyntax p => Writable(p.Expression),
            _ => false,
        };

        public string Expr(ExpressionSyntax e)
        {
            var constant = model.GetConstantValue(e);
            if (constant.HasValue && e is not LiteralExpressionSyntax { RawKind: (int)SyntaxKind.StringLiteralExpression })
                return Constant(constant.Value, e);
            var type = model.GetTypeInfo(e).Type;
            if (type?.SpecialType is SpecialType.System_Single or SpecialType.System_Double or SpecialType.System_Decimal)
            {
                t.Report(ExtFuse.Generator.Diagnostics.FloatingPoint, e, e.ToString());
                return "0";
            }
            switch (e)
            {
                case LiteralExpressionSyntax lit when lit.IsKind(SyntaxKind.StringLiteralExpression):
                    t.Report(ExtFuse.Generator.Diagnostics.StringUse, e, e.ToString());
                    return "0";
                case LiteralExpressionSyntax lit when lit.IsKind(SyntaxKind.DefaultLiteralExpression):
                    return Zero(t.CType(model.GetTypeInfo(e).ConvertedType, e));
                case DefaultExpressionSyntax d:
                    return Zero(t.CType(model.GetTypeInfo(d.Type).Type, e));
                case ParenthesizedExpressionSyntax p:
                    return $"({Expr(p.Expression)})";
                case IdentifierNameSyntax id:
                    return model.GetSymbolInfo(id).Symbol switch
                    {
                        ILocalSymbol l => $"v_{l.Name}",
                        IParameterSymbol { RefKind: RefKind.None } p => $"v_{p.Name}",
                        IParameterSymbol p => $"(*v_{p.Name})",
                        _ => Unsupported(e),
                    };
                case MemberAccessExpressionSyntax m when model.GetSymbolInfo(m).Symbol is IFieldSymbol { IsStatic: false } f:
                    // A field of a struct: through the pointer for in/ref/out parameters.
                    return model.GetSymbolInfo(m.Expression).Symbol is IParameterSymbol { RefKind: not RefKind.None } rp && m.Expression is IdentifierNameSyntax
                        ? $"v_{rp.Name}->{f.Name}"
                        : $"{Expr(m.Expression)}.{f.Name}";
                case ElementAccessExpressionSyntax el:
                    return Element(el);
                case BinaryExpressionSyntax b:
                    return Binary(b);
                case PrefixUnaryExpressionSyntax u:
                    if (u.Kind() is SyntaxKind.PreIncrementExpression or SyntaxKind.PreDecrementExpression && !Writable(u.Operand)) return Unsupported(e);
                    return u.Kind() switch
                    {
                        SyntaxKind.UnaryMinusExpression => $"(-{Expr(u.Operand)})",
                        SyntaxKind.UnaryPlusExpression => Expr(u.Operand),
                        SyntaxKind.BitwiseNotExpression => $"({t.CType(type, e)})(~{Expr(u.Operand)})",
                        SyntaxKind.LogicalNotExpression => $"(!{Expr(u.Operand)})",
                        SyntaxKind.PreIncrementExpression => $"(++{Expr(u.Operand)})",
                        SyntaxKind.PreDecrementExpression => $"(--{Expr(u.Operand)})",
                        _ => Unsupported(e),
                    };
                case PostfixUnaryExpressionSyntax pu when pu.Kind() is SyntaxKind.PostIncrementExpression or SyntaxKind.PostDecrementExpression && Writable(pu.Operand):
                    return $"({Expr(pu.Operand)}{pu.OperatorToken.Text})";
                case ConditionalExpressionSyntax c:
                    return $"({Expr(c.Condition)} ? {Expr(c.WhenTrue)} : {Expr(c.WhenFalse)})";
                case CastExpressionSyntax c:
                    return $"(({t.CType(model.GetTypeInfo(c.Type).Type, c)})({Expr(c.Expression)}))";
                case AssignmentExpressionSyntax a when Writable(a.Left):
                    if (a.Kind() is SyntaxKind.DivideAssignmentExpression or SyntaxKind.ModuloAssignmentExpression && !NonZeroConstant(a.Right))
                    {
                        t.Report(ExtFuse.Generator.Diagnostics.Division, e, e.ToString());
                        return "0";
                    }
                    return $"({Expr(a.Left)} {a.OperatorToken.Text} {Expr(a.Right)})";
                case InvocationExpressionSyntax call:
                    return Call(call);
                case BaseObjectCreationExpressionSyntax create when model.GetTypeInfo(e).Type is INamedTypeSymbol { TypeKind: TypeKind.Struct } st:
                    return StructValue(create, st);
                case ObjectCreationExpressionSyntax or ImplicitObjectCreationExpressionSyntax or ArrayCreationExpressionSyntax
                    or ImplicitArrayCreationExpressionSyntax or CollectionExpressionSyntax or AnonymousObjectCreationExpressionSyntax:
                    t.Report(ExtFuse.Generator.Diagnostics.Allocation, e, e.ToString());
                    return "0";
                case InterpolatedStringExpressionSyntax:
                    t.Report(ExtFuse.Generator.Diagnostics.StringUse, e, e.ToString());
                    return "0";
                case ThrowExpressionSyntax:
                    t.Report(ExtFuse.Generator.Diagnostics.Exceptions, e, e.ToString());
                    return "0";
                default:
                    return Unsupported(e);
            }
        }

        /// <summary>new T { A = x } of a struct: a C compound literal, the rest zero.</summary>
        private string StructValue(BaseObjectCreationExpressionSyntax create, INamedTypeSymbol st)
        {
            var ctype = t.CType(st, create);
            if (create.ArgumentList is { Arguments.Count: > 0 }) return Unsupported(create);
            var parts = new List<string>();
            foreach (var init in create.Initializer?.Expressions ?? default)
            {
                if (init is AssignmentExpressionSyntax { Left: IdentifierNameSyntax name } a && model.GetSymbolInfo(name).Symbol is IFieldSymbol)
                    parts.Add($".{name.Identifier.Text} = {Expr(a.Right)}");
                else return Unsupported(init);
            }
            return $"(({ctype}){{ {string.Join(", ", parts)} }})";
        }

        /// <summary>buffer[i] of an inline array or fixed buffer, with an index the verifier can bound.</summary>
        private string Element(ElementAccessExpressionSyntax el)
        {
            if (el.ArgumentList.Arguments.Count != 1) return Unsupported(el);
            var bufferType = model.GetTypeInfo(el.Expression).Type;
            var fixedField = model.GetSymbolInfo(el.Expression).Symbol is IFieldSymbol { IsFixedSizeBuffer: true } ff ? ff : null;
            var layout = fixedField is null ? t.Layout(bufferType!) : null;
            int count = fixedField?.FixedSize ?? (layout is { ElementCount: > 0 } ? layout.ElementCount : 0);
            if (count == 0) return Unsupported(el);
            var index = el.ArgumentList.Arguments[0].Expression;
            var c = model.GetConstantValue(index);
            var ok = c.HasValue ? System.Convert.ToInt64(c.Value, CultureInfo.InvariantCulture) is var k && k >= 0 && k < count
                : model.GetSymbolInfo(index).Symbol is ILocalSymbol l && _loopBounds.TryGetValue(l, out var bound) && bound <= count;
            if (!ok)
            {
                t.Report(ExtFuse.Generator.Diagnostics.IndexOutOfRange, el, el.ToString(), count.ToString(CultureInfo.InvariantCulture));
                return "0";
            }
            var buffer = Expr(el.Expression);
            return layout is null ? $"{buffer}[{Expr(index)}]" : $"{buffer}.{layout.Fields[0].Name}[{Expr(index)}]";
        }

        private string Unsupported(SyntaxNode e)
        {
            var type = e is ExpressionSyntax x ? model.GetTypeInfo(x).Type : null;
            if (type?.SpecialType == SpecialType.System_String) t.Report(ExtFuse.Generator.Diagnostics.StringUse, e, e.ToString());
            else t.Report(ExtFuse.Generator.Diagnostics.NotInSubset, e, e.ToString());
            return "0";
        }

        private bool NonZeroConstant(ExpressionSyntax e)
        {
            var c = model.GetConstantValue(e);
            return c.HasValue && c.Value is not null && System.Convert.ToDecimal(c.Value, CultureInfo.InvariantCulture) != 0;
        }

        /// <summary>Each operand cast to the type C# converts it to, so C's promotions cannot change the result.</summary>
        private string Binary(BinaryExpressionSyntax b)
        {
            if (b.Kind() is SyntaxKind.DivideExpression or SyntaxKind.ModuloExpression && !NonZeroConstant(b.Right))
            {
                t.Report(ExtFuse.Generator.Diagnostics.Division, b, b.ToString());
                return "0";
            }
            if (b.Kind() is SyntaxKind.LogicalAndExpression or SyntaxKind.LogicalOrExpression)
                return $"({Expr(b.Left)} {b.OperatorToken.Text} {Expr(b.Right)})";
            if (b.Kind() is SyntaxKind.IsExpression or SyntaxKind.AsExpression or SyntaxKind.CoalesceExpression) return Unsupported(b);
            var lt = model.GetTypeInfo(b.Left).ConvertedType;
            var rt = model.GetTypeInfo(b.Right).ConvertedType;
            if (lt?.TypeKind == TypeKind.Struct && lt.SpecialType == SpecialType.None && lt is not INamedTypeSymbol { TypeKind: TypeKind.Enum }) return Unsupported(b);
            return $"(({t.CType(lt, b.Left)})({Expr(b.Left)}) {b.OperatorToken.Text} ({t.CType(rt, b.Right)})({Expr(b.Right)}))";
        }

        private string Call(InvocationExpressionSyntax call)
        {
            if (model.GetSymbolInfo(call).Symbol is IMethodSymbol { IsStatic: false } m && call.Expression is MemberAccessExpressionSyntax access
                && model.GetSymbolInfo(access.Expression).Symbol is IFieldSymbol field && t._maps.TryGetValue(field, out var map))
                return MapCall(call, m.Name, map);
            if (model.GetSymbolInfo(call).Symbol is not IMethodSymbol target || !target.IsStatic
                || !SymbolEqualityComparer.Default.Equals(target.ContainingType, t.Owner) || target.IsVirtual || target.IsAbstract)
            {
                t.Report(ExtFuse.Generator.Diagnostics.CallOutsideSubset, call, call.Expression.ToString());
                return "0";
            }
            if (SymbolEqualityComparer.Default.Equals(target, method) || t._inProgress.Contains(target))
            {
                t.Report(ExtFuse.Generator.Diagnostics.Recursion, call, target.Name);
                return "0";
            }
            var name = t.Translate(target);
            CalleeStack = System.Math.Max(CalleeStack, t._stack.TryGetValue(target, out var s) ? s : 0);
            if (t._reads.TryGetValue(target, out var calleeReads)) Reads.UnionWith(calleeReads);
            var args = call.ArgumentList.Arguments.Select((a, i) => target.Parameters[i].RefKind switch
            {
                RefKind.None => Expr(a.Expression),
                _ when Writable(a.Expression) || target.Parameters[i].RefKind is RefKind.In or RefKind.RefReadOnlyParameter => Address(a.Expression),
                _ => Unsupported(a),
            });
            return $"{name}({string.Join(", ", args)})";
        }

        /// <summary>The address of an argument passed by reference (a parameter already passed by reference is its pointer).</summary>
        private string Address(ExpressionSyntax e) =>
            e is IdentifierNameSyntax && model.GetSymbolInfo(e).Symbol is IParameterSymbol { RefKind: not RefKind.None } p ? $"v_{p.Name}" : $"&{Expr(e)}";

        /// <summary>KernelMap calls: lookups copy out (or zero), updates and deletes report success.</summary>
        private string MapCall(InvocationExpressionSyntax call, string op, MapModel map)
        {
            var args = call.ArgumentList.Arguments;
            var k = Temp();
            StackBytes += 8 + 8;
            switch (op)
            {
                case "TryGet" when args.Count == 2:
                {
                    Reads.Add(map.Name);
                    string target;
                    if (args[1].Expression is DeclarationExpressionSyntax { Designation: SingleVariableDesignationSyntax single }
                        && model.GetDeclaredSymbol(single) is ILocalSymbol declared)
                    {
                        _hoisted.Add($"{map.ValueCType} v_{declared.Name} = {Zero(map.ValueCType)};");
                        StackBytes += Slot(SizeOfType(declared.Type));
                        target = $"v_{declared.Name}";
                    }
                    else if (Writable(args[1].Expression)) target = Expr(args[1].Expression);
                    else return Unsupported(args[1]);
                    var p = Temp();
                    return $"({{ {map.KeyCType} {k} = {Expr(args[0].Expression)}; {map.ValueCType} *{p} = bpf_map_lookup_elem(&{map.Name}, &{k}); " +
                           $"{target} = {p} ? *{p} : {Zero(map.ValueCType)}; (__u8)({p} != 0); }})";
                }
                case "GetValueOrDefault" when args.Count == 1:
                {
                    Reads.Add(map.Name);
                    var p = Temp();
                    return $"({{ {map.KeyCType} {k} = {Expr(args[0].Expression)}; {map.ValueCType} *{p} = bpf_map_lookup_elem(&{map.Name}, &{k}); " +
                           $"{p} ? *{p} : {Zero(map.ValueCType)}; }})";
                }
                case "Set" when args.Count == 2:
                {
                    var v = Temp();
                    StackBytes += Slot(map.ValueCType.StartsWith("struct ", StringComparison.Ordinal) ? 64 : 8);
                    return $"({{ {map.KeyCType} {k} = {Expr(args[0].Expression)}; {map.ValueCType} {v} = {Expr(args[1].Expression)}; " +
                           $"(__u8)(bpf_map_update_elem(&{map.Name}, &{k}, &{v}, BPF_ANY) == 0); }})";
                }
                case "Remove" when args.Count == 1:
                    return $"({{ {map.KeyCType} {k} = {Expr(args[0].Expression)}; (__u8)(bpf_map_delete_elem(&{map.Name}, &{k}) == 0); }})";
                default:
                    t.Report(ExtFuse.Generator.Diagnostics.CallOutsideSubset, call, call.Expression.ToString());
                    return "0";
            }
        }

        private string Constant(object? value, SyntaxNode at) => value switch
        {
            bool v => v ? "1" : "0",
            char c => ((int)c).ToString(CultureInfo.InvariantCulture),
            int v => v == int.MinValue ? "(-2147483647 - 1)" : v.ToString(CultureInfo.InvariantCulture),
            uint v => v.ToString(CultureInfo.InvariantCulture) + "U",
            long v => v == long.MinValue ? "(-9223372036854775807LL - 1)" : v.ToString(CultureInfo.InvariantCulture) + "LL",
            ulong v => v.ToString(CultureInfo.InvariantCulture) + "ULL",
            short or ushort or byte or sbyte => System.Convert.ToInt64(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture),
            string => Report(ExtFuse.Generator.Diagnostics.StringUse, at),
            float or double or decimal => Report(ExtFuse.Generator.Diagnostics.FloatingPoint, at),
            _ => Report(ExtFuse.Generator.Diagnostics.NotInSubset, at),
        };

        private string Report(DiagnosticDescriptor d, SyntaxNode at)
        {
            t.Report(d, at, at.ToString());
            return "0";
        }
    }

    private void ThrowIfCancelled() => ct.ThrowIfCancellationRequested();
}
