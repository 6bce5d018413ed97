using System.Text.RegularExpressions;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace ExtFuse.Bpf.Build;

/// <summary>
/// Compiles one BPF C file with clang -target bpf -O2 -g. Clang's diagnostics become MSBuild
/// errors and warnings at their file and line, which for generated C (with #line directives) is
/// the user's C# source. A missing clang is one error that says what to install.
/// </summary>
public sealed partial class BpfCompile : ToolTask
{
    /// <summary>Clang names tried on PATH, newest first (Debian ships them versioned).</summary>
    private static readonly string[] ClangNames = ["clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14"];

    [Required] public string Source { get; set; } = "";
    [Required] public string Output { get; set; } = "";
    public ITaskItem[] IncludeDirectories { get; set; } = [];
    /// <summary>An explicit clang to use (the BpfClang property); empty: search PATH.</summary>
    public string? ClangPath { get; set; }

    protected override string ToolName => "clang";

    protected override string GenerateFullPathToTool()
    {
        if (!string.IsNullOrEmpty(ClangPath)) return File.Exists(ClangPath) ? ClangPath! : "";
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        foreach (var name in ClangNames)
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return "";
    }

    public override bool Execute()
    {
        if (GenerateFullPathToTool().Length == 0)
        {
            Log.LogError(null, "EXTB0001", null, Source, 0, 0, 0, 0,
                string.IsNullOrEmpty(ClangPath)
                    ? "clang was not found on PATH, and it compiles this project's BPF programs: install it (sudo apt-get install clang), or set the BpfClang property to a clang binary"
                    : $"BpfClang is set to '{ClangPath}', which does not exist");
            return false;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(Output))!);
        return base.Execute();
    }

    protected override string GenerateCommandLineCommands()
    {
        var b = new CommandLineBuilder();
        b.AppendSwitch("-target bpf");
        b.AppendSwitch("-O2");
        b.AppendSwitch("-g");
        b.AppendSwitch("-Wall");
        b.AppendSwitch("-fno-color-diagnostics");
        b.AppendSwitch("-D__TARGET_ARCH_x86");
        foreach (var dir in IncludeDirectories) b.AppendSwitchIfNotNull("-I", dir.ItemSpec);
        b.AppendSwitchIfNotNull("-c ", Source);
        b.AppendSwitchIfNotNull("-o ", Output);
        return b.ToString();
    }

    // file:line:col: error|warning|fatal error: message
    [GeneratedRegex(@"^(?<file>[^:]+):(?<line>\d+):(?<col>\d+): (?<kind>fatal error|error|warning): (?<msg>.*)$")]
    private static partial Regex Diagnostic();

    protected override void LogEventsFromTextOutput(string line, MessageImportance importance)
    {
        var m = Diagnostic().Match(line);
        if (!m.Success) { Log.LogMessage(MessageImportance.Low, line); return; }
        var file = m.Groups["file"].Value;
        int l = int.Parse(m.Groups["line"].Value), c = int.Parse(m.Groups["col"].Value);
        var msg = m.Groups["msg"].Value;
        if (m.Groups["kind"].Value == "warning") Log.LogWarning(null, "CLANG", null, file, l, c, 0, 0, msg);
        else Log.LogError(null, "CLANG", null, file, l, c, 0, 0, msg);
    }
}
