using Microsoft.CodeAnalysis;

namespace ExtFuse.Generator;

/// <summary>Every diagnostic the generator reports, with stable IDs (documented in README).</summary>
internal static class Diagnostics
{
    private const string Category = "ExtFuse.Bpf";

    private static DiagnosticDescriptor Error(string id, string title, string message) =>
        new(id, title, message, Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor NotInSubset = Error("EXTF0001", "Not in the BPF subset",
        "'{0}' cannot run in the kernel: [Check] code may use integers, if/else, switch, for loops with constant bounds and calls to other such methods");
    public static readonly DiagnosticDescriptor UnboundedLoop = Error("EXTF0002", "Loop without a constant bound",
        "{0}: the verifier needs a bound it can see; write for (var i = 0; i < CONSTANT; i++) and do not assign i in the body");
    public static readonly DiagnosticDescriptor StringUse = Error("EXTF0003", "Strings are not available",
        "'{0}' uses a string: BPF has no strings here; compare integers or fixed-size byte buffers");
    public static readonly DiagnosticDescriptor Allocation = Error("EXTF0004", "Allocation",
        "'{0}' allocates: BPF programs cannot allocate; use locals of integer or struct type");
    public static readonly DiagnosticDescriptor FloatingPoint = Error("EXTF0005", "Floating point",
        "'{0}' uses floating point, which BPF does not have");
    public static readonly DiagnosticDescriptor Exceptions = Error("EXTF0006", "Exceptions",
        "'{0}': exceptions cannot be thrown or caught in BPF; return an errno instead");
    public static readonly DiagnosticDescriptor Recursion = Error("EXTF0007", "Recursion",
        "'{0}' calls itself (directly or through other methods): BPF functions are inlined and cannot recurse");
    public static readonly DiagnosticDescriptor CallOutsideSubset = Error("EXTF0008", "Call outside the subset",
        "'{0}' is not a static method of this file system (virtual, interface and library calls do not translate)");
    public static readonly DiagnosticDescriptor Division = Error("EXTF0009", "Division by a non-constant",
        "'{0}': divide only by a non-zero constant (BPF answers 0 where .NET throws, so the twins would differ)");
    public static readonly DiagnosticDescriptor BadSignature = Error("EXTF0010", "Bad rule method signature",
        "[{1}] method '{0}' must be declared '{2}'");
    public static readonly DiagnosticDescriptor StackTooLarge = Error("EXTF0011", "BPF stack limit",
        "'{0}' needs about {1} bytes of stack with its inlined callees; BPF allows 512");
    public static readonly DiagnosticDescriptor CacheNotSupported = Error("EXTF0013", "Cache rule without cache timeouts",
        "[{0}] needs a file system with a virtual {1} property (MemoryFileSystem or NodeFileSystem, or a base of your own)");
    public static readonly DiagnosticDescriptor BadTimeout = Error("EXTF0014", "Bad cache timeout",
        "[{0}] takes a finite, non-negative number of seconds, not {1}");
    public static readonly DiagnosticDescriptor NotBlittable = Error("EXTF0015", "Type cannot cross to the kernel",
        "'{0}' cannot be shared with BPF: {1}");
    public static readonly DiagnosticDescriptor BadMap = Error("EXTF0016", "Bad KernelMap declaration",
        "KernelMap '{0}' must be a 'static readonly' field of the file system created with a constant capacity, as in '= new(1024)'");
    public static readonly DiagnosticDescriptor InvalidGlob = Error("EXTF0017", "Invalid glob",
        "invalid glob \"{0}\": {1}");
    public static readonly DiagnosticDescriptor OpsNotApplicable = Error("EXTF0018", "Rule cannot apply to these operations",
        "[{0}] {1}");
    public static readonly DiagnosticDescriptor ConflictingRules = Error("EXTF0019", "Conflicting rules",
        "{0}");
    public static readonly DiagnosticDescriptor IndexOutOfRange = Error("EXTF0020", "Index the verifier cannot bound",
        "'{0}': index a fixed-size buffer of {1} elements with a constant below {1}, or with a for-loop variable whose constant bound is at most {1}");
    public static readonly DiagnosticDescriptor NotPartial = Error("EXTF0012", "File system class must be partial",
        "[FileSystem] class '{0}' must be declared partial so the generator can add to it");
}
