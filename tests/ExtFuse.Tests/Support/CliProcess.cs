using System.Diagnostics;
using System.Text;

namespace ExtFuse.Tests.Support;

/// <summary>The extfuse CLI in its own process (optionally as another user), with its output captured.</summary>
public sealed class CliProcess : IDisposable
{
    private readonly Process _p;
    private readonly StringBuilder _out = new();
    private readonly object _gate = new();

    public const uint Nobody = 65534;

    private CliProcess(Process p)
    {
        _p = p;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_gate) _out.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_gate) _out.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public int Pid => _p.Id;
    public string Output { get { lock (_gate) return _out.ToString(); } }
    public bool HasExited => _p.HasExited;
    public int ExitCode => _p.ExitCode;

    /// <summary>Starts the CLI; with <paramref name="asUser"/> it runs under setpriv as that uid/gid with no capabilities,
    /// with <paramref name="descriptorLimit"/> under prlimit with that RLIMIT_NOFILE (soft and hard).</summary>
    public static CliProcess Start(IEnumerable<string> args, uint? asUser = null, string? path = null, int? descriptorLimit = null)
    {
        var dotnet = Environment.ProcessPath!;  // the test host runs under the dotnet muxer
        var dll = asUser is null ? Path.Combine(AppContext.BaseDirectory, "extfuse.dll") : Path.Combine(WorldReadableCopy(), "extfuse.dll");
        ProcessStartInfo psi;
        if (asUser is { } uid)
        {
            psi = new ProcessStartInfo("setpriv");
            foreach (var a in new[] { $"--reuid={uid}", $"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--", dotnet, dll }) psi.ArgumentList.Add(a);
            psi.Environment["HOME"] = "/tmp";
            psi.Environment["DOTNET_CLI_HOME"] = "/tmp";
        }
        else
        {
            psi = new ProcessStartInfo(dotnet);
            psi.ArgumentList.Add(dll);
        }
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (descriptorLimit is { } n)
        {
            psi.ArgumentList.Insert(0, psi.FileName);
            foreach (var a in new[] { "--", $"--nofile={n}:{n}" }) psi.ArgumentList.Insert(0, a);
            psi.FileName = "prlimit";
        }
        psi.RedirectStandardOutput = psi.RedirectStandardError = true;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        if (path is not null) psi.Environment["PATH"] = path;
        return new CliProcess(Process.Start(psi)!);
    }

    /// <summary>Runs to completion and returns (exit code, output).</summary>
    public static (int Code, string Output) Run(IEnumerable<string> args, uint? asUser = null, string? path = null)
    {
        using var p = Start(args, asUser, path);
        Assert.True(p._p.WaitForExit(60_000), $"extfuse {string.Join(' ', args)} did not finish:\n{p.Output}");
        p._p.WaitForExit();
        return (p.ExitCode, p.Output);
    }

    public void WaitForOutput(string text, int timeoutMs = 60_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!Output.Contains(text))
        {
            if (_p.HasExited) { _p.WaitForExit(); Assert.Fail($"extfuse exited ({_p.ExitCode}) before printing '{text}':\n{Output}"); }
            if (Environment.TickCount64 > deadline) Assert.Fail($"extfuse did not print '{text}' within {timeoutMs} ms:\n{Output}");
            Thread.Sleep(20);
        }
    }

    public void Signal(int signal) => Assert.Equal(0, Kill(_p.Id, signal));

    public bool WaitForExit(int timeoutMs)
    {
        if (!_p.WaitForExit(timeoutMs)) return false;
        _p.WaitForExit();
        return true;
    }

    public void Dispose()
    {
        if (!_p.HasExited) { try { _p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } _p.WaitForExit(10_000); }
        _p.Dispose();
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int sig);

    private static string? _copy;

    /// <summary>The build output may sit under a directory other users cannot enter: copy the CLI where they can.</summary>
    private static string WorldReadableCopy()
    {
        lock (typeof(CliProcess))
        {
            if (_copy is not null) return _copy;
            var dir = Directory.CreateTempSubdirectory("extfuse-cli-").FullName;
            foreach (var f in Directory.GetFiles(AppContext.BaseDirectory))
                if (f.EndsWith(".dll") || f.EndsWith(".json")) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ED);
            foreach (var f in Directory.GetFiles(dir)) File.SetUnixFileMode(f, (UnixFileMode)0x1A4);
            return _copy = dir;
        }
    }
}

/// <summary>Runs a shell command, optionally as another user; returns exit code and output.</summary>
public static class Shell
{
    public static (int Code, string Output) Run(string command, uint? asUser = null, int timeoutMs = 60_000)
    {
        var psi = asUser is { } uid ? new ProcessStartInfo("setpriv") : new ProcessStartInfo("sh");
        if (asUser is { } u)
            foreach (var a in new[] { $"--reuid={u}", $"--regid={u}", "--clear-groups", "--inh-caps=-all", "--", "sh" }) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        psi.RedirectStandardOutput = psi.RedirectStandardError = true;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs)) { p.Kill(true); Assert.Fail($"'{command}' hung"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
