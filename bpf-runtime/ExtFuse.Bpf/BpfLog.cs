using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;

namespace ExtFuse.Bpf;

/// <summary>
/// libbpf's own messages (libbpf_set_print) go to <see cref="Logger"/>, and, while a call runs
/// under <see cref="Capture"/>, into that call's text too, so errors can carry them.
/// </summary>
public static unsafe class BpfLog
{
    private static int _installed;
    [ThreadStatic] private static StringBuilder? _capture;

    /// <summary>Where libbpf's warnings (Warning), info (Information) and debug lines (Debug) go; none by default.</summary>
    public static ILogger? Logger { get; set; }

    internal static void EnsureInstalled()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 0)
            LibBpf.libbpf_set_print((nint)(delegate* unmanaged[Cdecl]<int, byte*, nint, int>)&Print);
    }

    internal static int Capture(Func<int> call, out string log)
    {
        var previous = _capture;
        _capture = new StringBuilder();
        try { return call(); }
        finally { log = _capture.ToString(); _capture = previous; }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Print(int level, byte* format, nint args)
    {
        var buf = stackalloc byte[1024];
        // x86_64 va_list decays to a pointer when passed: hand it straight to vsnprintf.
        var n = LibBpf.vsnprintf(buf, 1024, format, args);
        if (n < 0) return 0;
        var text = Encoding.UTF8.GetString(buf, Math.Min(n, 1023)).TrimEnd('\n');
        _capture?.AppendLine(text);
        Logger?.Log(level switch { 0 => LogLevel.Warning, 1 => LogLevel.Information, _ => LogLevel.Debug }, "libbpf: {Message}", text);
        return n;
    }
}
