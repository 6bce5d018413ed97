using System;
using System.Collections;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace ExtFuse.Generator;

/// <summary>An immutable array compared by its elements, so pipeline models can be cached.</summary>
internal readonly struct EquatableArray<T>(ImmutableArray<T> items) : IEquatable<EquatableArray<T>>, IEnumerable<T> where T : IEquatable<T>
{
    private readonly ImmutableArray<T> _items = items;
    public ImmutableArray<T> Items => _items.IsDefault ? ImmutableArray<T>.Empty : _items;
    public int Count => Items.Length;
    public bool Equals(EquatableArray<T> other) => Items.SequenceEqual(other.Items);
    public override bool Equals(object? obj) => obj is EquatableArray<T> o && Equals(o);
    public override int GetHashCode()
    {
        var h = 17;
        foreach (var i in Items) h = unchecked(h * 31 + (i?.GetHashCode() ?? 0));
        return h;
    }
    public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)Items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>A diagnostic without symbols or trees: where (file, span, lines) and what.</summary>
internal sealed record DiagnosticInfo(string Id, string FilePath, TextSpan Span, LinePositionSpan Lines, EquatableArray<string> Args)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor d, Location location, params string[] args)
    {
        var line = location.GetLineSpan();
        return new DiagnosticInfo(d.Id, line.Path ?? "", location.SourceSpan, line.Span, new EquatableArray<string>(args.ToImmutableArray()));
    }

    /// <summary>Back to a Roslyn diagnostic, located in the compilation's own tree so #pragma and suppressions apply.</summary>
    public Diagnostic ToDiagnostic(Compilation compilation)
    {
        var descriptor = typeof(Diagnostics).GetFields().Select(f => (DiagnosticDescriptor)f.GetValue(null)!).First(d => d.Id == Id);
        var tree = compilation.SyntaxTrees.FirstOrDefault(t => t.FilePath == FilePath);
        var location = tree is null ? Location.Create(FilePath, Span, Lines) : Location.Create(tree, Span);
        return Diagnostic.Create(descriptor, location, Args.Items.Cast<object>().ToArray());
    }
}

/// <summary>A [Check] method: its name, the operations it applies to, and its C function name.</summary>
internal sealed record CheckModel(string Name, uint Ops, string CFunction);

/// <summary>A [FastPath] method: the one operation it serves, its C function name, and the node-keyed maps it answers from.</summary>
internal sealed record FastPathModel(string Name, uint Op, string CFunction, EquatableArray<string> NodeMaps);

/// <summary>A KernelMap field: a BPF hash map of the same name, and the C# and C types of key and value.</summary>
internal sealed record MapModel(string Name, string KeyType, string ValueType, string KeyCType, string ValueCType, int MaxEntries);

/// <summary>A [Deny], [Allow], [Hide] or [Passthrough] rule (Uid/Gid -1: any; Glob null: every path).</summary>
internal sealed record PathRuleModel(string Kind, uint Ops, string? Glob, long Uid, long Gid, string? Comm, int Errno, string? Cgroup = null);

/// <summary>A generated override of a cache timeout property.</summary>
internal sealed record TimeoutModel(string Property, double Seconds);

/// <summary>Everything the generator emits for one [FileSystem] class; strings and numbers only.</summary>
internal sealed record FileSystemModel(
    string Namespace, string ClassName, string FullName, bool IsRawFileSystem,
    EquatableArray<CheckModel> Checks, EquatableArray<FastPathModel> FastPaths, EquatableArray<MapModel> Maps,
    EquatableArray<PathRuleModel> PathRules, EquatableArray<TimeoutModel> Timeouts, ulong InitFlags,
    string CStructs, string CFunctions, EquatableArray<DiagnosticInfo> Diagnostics)
{
    public bool FailedClosed => Diagnostics.Count > 0;
    /// <summary>Whether the class has anything for the kernel, and so a .bpf.o.</summary>
    public bool HasBpf => Checks.Count > 0 || FastPaths.Count > 0 || Maps.Count > 0 || PathRules.Any(r => r.Kind is "Deny" or "Allow");
}
