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
/// calls to other static methods of the class) into C functions, statement by statement, with
/// #line directives back to the C# source. Anything else is a diagnostic; a caller that gets any
/// diagnostic emits no C at all (fail closed).
/// </summary>
internal sealed class Translator(Compilation compilation, INamedTypeSymbol owner, CancellationToken ct)
{
    private const string RequestType = "ExtFuse.Declarative.CheckRequest";
    private readonly List<DiagnosticInfo> _diagnostics = [];
    private readonly Dictionary<IMethodSymbol, string> _translated = new(SymbolEqualityComparer.Default);
    private readonly List<string> _functions = [];
    private readonly HashSet<IMethodSymbol> _inProgress = new(SymbolEqualityComparer.Default);
    private readonly Dictionary<IMethodSymbol, int> _stack = new(SymbolEqualityComparer.Default);

    public IReadOnlyList<DiagnosticInfo> Diagnostics => _diagnostics;
    private INamedTypeSymbol Owner => owner;
    /// <summary>The translated functions, callees before callers.</summary>
    public string Functions => string.Join("\n", _functions);

    public static string CFunctionName(INamedTypeSymbol owner, IMethodSymbol m) => $"{owner.Name}_{m.Name}";

    private void Report(DiagnosticDescriptor d, SyntaxNode node, params string[] args) =>
        _diagnostics.Add(DiagnosticInfo.Create(d, node.GetLocation(), args));

    private void Report(DiagnosticDescriptor d, SyntaxToken token, params string[] args) =>
        _diagnostics.Add(DiagnosticInfo.Create(d, token.GetLocation(), args));

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
            body.Append("{\n\treturn ").Append(fn.Expr(arrow.Expression)).Append(";\n}\n");
        }
        var parameters = string.Join(", ", method.Parameters.Select(p =>
            IsRequest(p.Type) ? $"const struct extfuse_check_req *v_{p.Name}" : $"{CType(p.Type, syntax)} v_{p.Name}"));
        var header = new StringBuilder();
        header.Append(LineDirective(syntax));
        header.Append($"static __always_inline {CType(method.ReturnType, syntax)} {name}({(parameters.Length == 0 ? "void" : parameters)})\n");
        _functions.Add(header.Append(body).ToString());
        _inProgress.Remove(method);
        _translated[method] = name;
        _stack[method] = fn.StackBytes + fn.CalleeStack;
        if (_stack[method] > 512) Report(ExtFuse.Generator.Diagnostics.StackTooLarge, syntax.Identifier, method.Name, _stack[method].ToString(CultureInfo.InvariantCulture));
        return name;
    }

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
            case SpecialType.System_Boolean: return "int";
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
        Report(ExtFuse.Generator.Diagnostics.NotInSubset, at, at.ToString());
        return "__s64";
    }

    /// <summary>Translation state of one function.</summary>
    private sealed class FunctionContext(Translator t, SemanticModel model, IMethodSymbol method)
    {
        public int StackBytes;
        public int CalleeStack;

        private static string Indent(int depth) => new('\t', depth);

        public void Line(SyntaxNode node, StringBuilder sb) => sb.Append(LineDirective(node));

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
                    Line(d, sb);
                    foreach (var v in d.Declaration.Variables)
                    {
                        var local = (ILocalSymbol)model.GetDeclaredSymbol(v)!;
                        StackBytes += 8;
                        var reported = t._diagnostics.Count;
                        var init = v.Initializer is null ? "0" : Expr(v.Initializer.Value);
                        // A bad initializer was reported already; its type would only repeat it.
                        var ctype = t._diagnostics.Count > reported ? "__s64" : t.CType(local.Type, d);
                        sb.Append(Indent(depth)).Append($"{ctype} v_{local.Name} = {init};\n");
                    }
                    break;
                case ExpressionStatementSyntax e:
                    Line(e, sb);
                    sb.Append(Indent(depth)).Append(Expr(e.Expression)).Append(";\n");
                    break;
                case IfStatementSyntax i:
                    Line(i, sb);
                    sb.Append(Indent(depth)).Append($"if ({Expr(i.Condition)})\n");
                    Statement(i.Statement, sb, depth + (i.Statement is BlockSyntax ? 0 : 1));
                    if (i.Else is { } els)
                    {
                        sb.Append(Indent(depth)).Append("else\n");
                        Statement(els.Statement, sb, depth + (els.Statement is BlockSyntax ? 0 : 1));
                    }
                    break;
                case ReturnStatementSyntax r:
                    Line(r, sb);
                    sb.Append(Indent(depth)).Append(r.Expression is null ? "return;\n" : $"return {Expr(r.Expression)};\n");
                    break;
                case SwitchStatementSyntax sw:
                    Line(sw, sb);
                    sb.Append(Indent(depth)).Append($"switch ({Expr(sw.Expression)}) {{\n");
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
                case ParenthesizedExpressionSyntax p:
                    return $"({Expr(p.Expression)})";
                case IdentifierNameSyntax id:
                    return model.GetSymbolInfo(id).Symbol switch
                    {
                        ILocalSymbol l => $"v_{l.Name}",
                        IParameterSymbol p => $"v_{p.Name}",
                        _ => Unsupported(e),
                    };
                case MemberAccessExpressionSyntax m when model.GetSymbolInfo(m.Expression).Symbol is IParameterSymbol p && IsRequest(p.Type):
                    return model.GetSymbolInfo(m).Symbol is IFieldSymbol f ? $"v_{p.Name}->{f.Name.ToLowerInvariant()}" : Unsupported(e);
                case BinaryExpressionSyntax b:
                    return Binary(b);
                case PrefixUnaryExpressionSyntax u:
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
                case PostfixUnaryExpressionSyntax pu when pu.Kind() is SyntaxKind.PostIncrementExpression or SyntaxKind.PostDecrementExpression:
                    return $"({Expr(pu.Operand)}{pu.OperatorToken.Text})";
                case ConditionalExpressionSyntax c:
                    return $"({Expr(c.Condition)} ? {Expr(c.WhenTrue)} : {Expr(c.WhenFalse)})";
                case CastExpressionSyntax c:
                    return $"(({t.CType(model.GetTypeInfo(c.Type).Type, c)})({Expr(c.Expression)}))";
                case AssignmentExpressionSyntax a when model.GetSymbolInfo(a.Left).Symbol is ILocalSymbol:
                    if (a.Kind() is SyntaxKind.DivideAssignmentExpression or SyntaxKind.ModuloAssignmentExpression && !NonZeroConstant(a.Right))
                    {
                        t.Report(ExtFuse.Generator.Diagnostics.Division, e, e.ToString());
                        return "0";
                    }
                    return $"({Expr(a.Left)} {a.OperatorToken.Text} {Expr(a.Right)})";
                case InvocationExpressionSyntax call:
                    return Call(call);
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

        private string Unsupported(ExpressionSyntax e)
        {
            var type = model.GetTypeInfo(e).Type;
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
            return $"(({t.CType(lt, b.Left)})({Expr(b.Left)}) {b.OperatorToken.Text} ({t.CType(rt, b.Right)})({Expr(b.Right)}))";
        }

        private string Call(InvocationExpressionSyntax call)
        {
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
            var args = call.ArgumentList.Arguments.Select(a => Expr(a.Expression));
            return $"{name}({string.Join(", ", args)})";
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
