using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExtFuse.Bench;

/// <summary>
/// The sandbox's targets, measured: the overhead of a 200-rule policy against none on an
/// open/fstat/read workload (two StackFs mounts of one directory, measured in alternation), the
/// time from starting `extfuse sandbox` to the command running, and (in the kernel lab, which has
/// BPF LSM) the cost of a denial answered in the kernel against a native failed open. Usage:
///   ExtFuse.Bench sandbox --cli PATH/extfuse.dll --native PATH/extfuse --loops PATH --work DIR --out DIR [--quick]
///   ExtFuse.Bench sandbox-lab --cli PATH/extfuse.dll --loops PATH --work DIR --out DIR   (inside the lab)
/// </summary>
public static class SandboxBench
{
    private static string Arg(string[] args, string name) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"missing {name}");

    public static int Run(string[] args)
    {
        var (cli, loops, work, outDir, quick) = (Arg(args, "--cli"), Arg(args, "--loops"), Arg(args, "--work"), Arg(args, "--out"), args.Contains("--quick"));
        var native = Arg(args, "--native");
        Directory.CreateDirectory(outDir);
        var result = new JsonObject { ["machine"] = Program.Machine(), ["quick"] = quick };
        result["policy"] = PolicyOverhead(cli, loops, work, quick);
        result["start"] = StartLatency(cli, native, work, quick);
        var lab = Path.Combine(outDir, "sandbox-lab.json");
        if (File.Exists(lab)) result["lab"] = JsonNode.Parse(File.ReadAllText(lab));
        File.WriteAllText(Path.Combine(outDir, "sandbox.json"), result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(outDir, "sandbox.md"), Markdown(result));
        Console.Out.Write(Markdown(result));
        return 0;
    }

    /// <summary>A policy of 200 rules none of which matches the workload, so every open runs through all of them (the worst case), against no policy.</summary>
    private static JsonObject PolicyOverhead(string cli, string loops, string work, bool quick)
    {
        var source = Path.Combine(work, "src");
        var data = Path.Combine(source, "data");
        Directory.CreateDirectory(data);
        const int Count = 2000;
        var block = new byte[4096];
        for (var i = 0; i < Count; i++) File.WriteAllBytes(Path.Combine(data, $"f{i}"), block);
        var rules = Enumerable.Range(0, 200).Select(i => (i % 4) switch
        {
            0 => $$"""{ "effect": "deny", "ops": ["read", "write"], "path": "zone{{i}}/**" }""",
            1 => $$"""{ "effect": "deny", "ops": ["open"], "path": "**/*.z{{i}}" }""",
            2 => $$"""{ "effect": "deny", "ops": ["read"], "path": "data/f*/x{{i}}", "uid": 4242 }""",
            _ => $$"""{ "effect": "allow", "ops": ["read"], "path": "other{{i}}/*" }""",
        });
        var policy = Path.Combine(work, "policy200.json");
        File.WriteAllText(policy, $"{{ \"rules\": [ {string.Join(",\n", rules)} ] }}");
        var (plain, ruled) = (Path.Combine(work, "plain"), Path.Combine(work, "ruled"));
        using var a = Mount(cli, source, plain, []);
        using var b = Mount(cli, source, ruled, ["-o", $"policy={policy}"]);
        var reps = quick ? 3 : 7;
        var rounds = quick ? 2 : 5;
        List<double> native = [], none = [], with = [], ratios = [];
        double Plain() => Files(loops, Path.Combine(plain, "data"), Count, rounds);
        double Ruled() => Files(loops, Path.Combine(ruled, "data"), Count, rounds);
        Plain();   // warm both: every name looked up, every verdict computed
        Ruled();
        for (var r = 0; r < reps; r++)
        {
            native.Add(Files(loops, data, Count, rounds));
            // Alternate which goes first: the VM's speed drifts.
            double x, y;
            if (r % 2 == 0) { x = Plain(); y = Ruled(); }
            else { y = Ruled(); x = Plain(); }
            none.Add(x);
            with.Add(y);
            ratios.Add(y / x);
            Console.Error.WriteLine($"bench: open+fstat+read+close/s: native {native[^1]:F0}, no rules {x:F0}, 200 rules {y:F0}, ratio {y / x:F3}");
        }
        return new JsonObject
        {
            ["workload"] = $"open, fstat, read 4 KiB, close of {Count} files, {rounds} rounds per run, {reps} paired runs",
            ["native"] = Program.Median(native), ["noRules"] = Program.Median(none), ["rules200"] = Program.Median(with),
            ["ratio"] = Program.Median(ratios), ["target"] = 0.95,
        };
    }

    private static double Files(string loops, string dir, int n, int rounds) =>
        double.Parse(Program.Run(loops, "files", dir, n.ToString(), rounds.ToString()).Trim(), CultureInfo.InvariantCulture);

    /// <summary>
    /// From starting `extfuse sandbox` to the command printing the time (date +%s%N, exec'd by
    /// setpriv): the native build (Native AOT, as bench/sandbox.sh publishes it) and the managed one
    /// (dotnet extfuse.dll), whose JIT and runtime start are most of its time.
    /// </summary>
    private static JsonObject StartLatency(string cli, string native, string work, bool quick)
    {
        var source = Path.Combine(work, "src");
        var policy = Path.Combine(work, "policy200.json");
        var runs = quick ? 7 : 21;
        var result = new JsonObject { ["runs"] = runs, ["targetMs"] = 50 };
        foreach (var (name, exe, prefix) in new[] { ("native", native, Array.Empty<string>()), ("managed", "dotnet", new[] { cli }) })
        {
            List<double> start = [], total = [];
            for (var i = 0; i < runs; i++)
            {
                var t0 = RealtimeNs();
                var output = Program.Run(exe, [.. prefix, "sandbox", "--policy", policy, "--source", source, "--audit", Path.Combine(work, "audit.jsonl"), "--", "/bin/date", "+%s%N"]);
                var t2 = RealtimeNs();
                start.Add((long.Parse(output.Trim().Split('\n')[0], CultureInfo.InvariantCulture) - t0) / 1e6);
                total.Add((t2 - t0) / 1e6);
                Console.Error.WriteLine($"bench: {name} sandbox: start to command {start[^1]:F1} ms, whole run {total[^1]:F1} ms");
            }
            result[name] = new JsonObject { ["startMs"] = Program.Median(start), ["totalMs"] = Program.Median(total) };
        }
        return result;
    }

    /// <summary>Inside the kernel lab: a failed open answered by the LSM program, by the daemon, and by a native file system's permission check.</summary>
    public static int RunInLab(string[] args)
    {
        var (cli, loops, work, outDir) = (Arg(args, "--cli"), Arg(args, "--loops"), Arg(args, "--work"), Arg(args, "--out"));
        var source = Path.Combine(work, "src");
        Directory.CreateDirectory(source);
        File.WriteAllText(Path.Combine(source, "secret"), "x");
        File.WriteAllText(Path.Combine(source, "open"), "x");
        var native = Path.Combine(work, "native");
        Directory.CreateDirectory(native);
        File.WriteAllText(Path.Combine(native, "secret"), "x");
        Program.Run("chmod", "000", Path.Combine(native, "secret"));
        Program.Run("chmod", "-R", "a+rwX", source);
        Program.Run("chmod", "a+rx", work, native);
        var policy = Path.Combine(work, "policy.json");
        File.WriteAllText(policy, """{ "rules": [ { "effect": "deny", "ops": ["read"], "path": "secret", "uid": 65534 } ] }""");
        const int Rounds = 20000;
        double Open(string path) => double.Parse(Program.Run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", loops, "open", path, Rounds.ToString()).Split(' ')[0], CultureInfo.InvariantCulture);
        var result = new JsonObject();
        foreach (var (name, options) in new[] { ("kernel", Array.Empty<string>()), ("daemon", new[] { "-o", "no_bpf" }) })
        {
            var mnt = Path.Combine(work, "mnt-" + name);
            using var daemon = Mount(cli, source, mnt, ["-o", $"policy={policy}", .. options]);
            Open(Path.Combine(mnt, "secret"));   // warm: the name is looked up, the verdict is in
            List<double> denied = [], nativeDenied = [], allowed = [];
            for (var r = 0; r < 5; r++)
            {
                nativeDenied.Add(Open(Path.Combine(native, "secret")));
                denied.Add(Open(Path.Combine(mnt, "secret")));
                allowed.Add(Open(Path.Combine(mnt, "open")));
            }
            result[name] = new JsonObject
            {
                ["deniedNs"] = Program.Median(denied), ["nativeDeniedNs"] = Program.Median(nativeDenied), ["allowedNs"] = Program.Median(allowed),
                ["ratio"] = Program.Median(denied) / Program.Median(nativeDenied),
            };
            Console.Error.WriteLine($"bench: denial by the {name}: {Program.Median(denied):F0} ns, native failed open {Program.Median(nativeDenied):F0} ns, allowed open {Program.Median(allowed):F0} ns");
        }
        result["target"] = 2.0;
        result["kernelVersion"] = Program.Run("uname", "-r").Trim();
        result["lsm"] = File.ReadAllText("/sys/kernel/security/lsm").Trim();
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "sandbox-lab.json"), result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    private sealed class Daemon(Process p, string mnt) : IDisposable
    {
        public void Dispose()
        {
            Program.Run("umount", mnt);
            if (!p.WaitForExit(20_000)) p.Kill();
        }
    }

    private static Daemon Mount(string cli, string source, string mnt, string[] options)
    {
        Directory.CreateDirectory(mnt);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[cli, "mount", "stack", "--source", source, mnt, "-o", "allow_other", .. options]) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var output = new StringBuilder();
        p.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        for (var i = 0; i < 600; i++)
        {
            if (File.ReadAllText("/proc/self/mountinfo").Contains(" " + mnt + " ")) return new Daemon(p, mnt);
            if (p.HasExited) break;
            Thread.Sleep(50);
        }
        throw new InvalidOperationException($"the daemon did not mount {mnt}: {p.StandardOutput.ReadToEnd()} {output}");
    }

    private static long RealtimeNs()
    {
        var t = DateTime.UtcNow - DateTime.UnixEpoch;
        return t.Ticks * 100;
    }

    private static string Markdown(JsonObject r)
    {
        var sb = new StringBuilder("| sandbox target | measured | target | |\n|---|---:|---:|---|\n");
        var p = r["policy"]!;
        var ratio = p["ratio"]!.GetValue<double>();
        sb.Append(CultureInfo.InvariantCulture, $"| open/fstat/read/close with 200 rules vs none (ops/s ratio) | {ratio:F3} ({p["rules200"]!.GetValue<double>():F0} vs {p["noRules"]!.GetValue<double>():F0}; native {p["native"]!.GetValue<double>():F0}) | >= 0.95 | {(ratio >= 0.95 ? "met" : "missed")} |\n");
        var s = r["start"]!;
        var ms = s["native"]!["startMs"]!.GetValue<double>();
        sb.Append(CultureInfo.InvariantCulture, $"| `extfuse sandbox` start to command running, native build (median of {s["runs"]}) | {ms:F1} ms (whole run {s["native"]!["totalMs"]!.GetValue<double>():F1} ms) | <= 50 ms | {(ms <= 50 ? "met" : "missed")} |\n");
        sb.Append(CultureInfo.InvariantCulture, $"| the same, managed build (`dotnet extfuse.dll`) | {s["managed"]!["startMs"]!.GetValue<double>():F1} ms (whole run {s["managed"]!["totalMs"]!.GetValue<double>():F1} ms) | | for comparison |\n");
        if (r["lab"] is JsonObject lab)
        {
            foreach (var who in new[] { "kernel", "daemon" })
            {
                var l = lab[who]!;
                var x = l["ratio"]!.GetValue<double>();
                sb.Append(CultureInfo.InvariantCulture, $"| failed open denied by the {who} vs a native failed open (kernel lab, {lab["kernelVersion"]}) | {x:F2}x ({l["deniedNs"]!.GetValue<double>():F0} ns vs {l["nativeDeniedNs"]!.GetValue<double>():F0} ns; allowed open {l["allowedNs"]!.GetValue<double>():F0} ns) | {(who == "kernel" ? "<= 2x" : "")} | {(who == "kernel" ? (x <= 2 ? "met" : "missed") : "for comparison")} |\n");
            }
        }
        return sb.ToString();
    }
}
