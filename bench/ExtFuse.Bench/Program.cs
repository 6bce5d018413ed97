using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExtFuse.Bench;

/// <summary>
/// Runs the same workloads on a native directory and on StackFs mounts of it in several
/// configurations (no offload, kernel caching, caching + passthrough, no offload over io_uring, no offload with splice reads), in one go, and writes each
/// figure with its ratio to native (JSON + Markdown) and a plot of the ratios (PNG, gnuplot). Usage:
///   ExtFuse.Bench --cli PATH/extfuse.dll --work DIR --out DIR [--quick]
/// </summary>
public static class Program
{
    /// <summary>A StackFs configuration: its name and the CLI arguments that make it.</summary>
    private sealed record Config(string Name, string[] Args);

    private static readonly Config[] Configs =
    [
        new("no offload", ["--cache", "0"]),
        new("caching", ["--cache", "60"]),
        new("caching + passthrough", ["--cache", "60", "--passthrough", "**"]),
        // The transport alone: the same as "no offload", with requests over io_uring.
        new("no offload, io_uring", ["--cache", "0", "-o", "io_uring"]),
        // READ replies by splice(2) instead of pread + writev, against "no offload" (plain copies).
        new("no offload, splice", ["--cache", "0", "-o", "splice_read"]),
    ];

    /// <summary>One workload: native (median of every native run), then each configuration's median value and median of its paired ratios (NaN where it did not run).</summary>
    private sealed record Figure(string Workload, string Unit, double Native, double[] Mounted, double[] Ratios, double Target, string TargetConfig)
    {
        public double Ratio(int config) => Ratios[config];
    }

    internal static double Median(List<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static int Main(string[] args)
    {
        if (args is ["sandbox", ..]) return SandboxBench.Run(args[1..]);
        if (args is ["sandbox-lab", ..]) return SandboxBench.RunInLab(args[1..]);
        string Arg(string name, string? fallback = null)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback ?? throw new ArgumentException($"missing {name}");
        }
        var cli = Arg("--cli");
        var work = Arg("--work");
        var outDir = Arg("--out");
        var quick = args.Contains("--quick");
        var native = Path.Combine(work, "native");
        var mnt = Path.Combine(work, "mnt");
        Directory.CreateDirectory(native);
        Directory.CreateDirectory(mnt);
        Directory.CreateDirectory(outDir);

        var size = quick ? "64M" : "512M";
        var seconds = quick ? 3 : 5;
        const int files = 10_000;
        // Workloads, each with the target the kernel offload issue sets and the configuration it is for.
        (string Name, string Unit, double Target, string For, Func<string, string, double> Run)[] workloads =
        [
            ("fio sequential write 1 MiB", "MiB/s", 0.95, "caching + passthrough", (dir, tag) => Fio(dir, tag, "write", "1M", size, seconds, end_fsync: true) / (1 << 20)),
            ("fio sequential read 1 MiB (cold cache)", "MiB/s", 0.95, "caching + passthrough", (dir, tag) => { DropCaches(); return Fio(dir, tag, "read", "1M", size, seconds) / (1 << 20); }),
            // O_DIRECT on both sides: through FUSE a buffered random read is also read ahead into the
            // source's page cache, two caches against one, which says nothing about the file system.
            ("fio random read 4 KiB (O_DIRECT)", "IOPS", 0.90, "caching + passthrough", (dir, tag) => Fio(dir, tag, "randread", "4k", size, seconds, iops: true, direct: true)),
            ("fs_mark 4 KiB file create", "files/s", 0.30, "caching", (dir, _) => FsMark(dir, quick ? 1000 : 5000)),
            ("warm stat of 10,000 files", "stats/s", 0.90, "caching", (dir, _) => StatWalk(Path.Combine(dir, "statwalk"), files, quick ? 3 : 10)),
            ("readdir of a 10,000-entry directory", "entries/s", double.NaN, "", (dir, _) => ReadDirRate(Path.Combine(dir, "statwalk"), quick ? 5 : 20)),
        ];
        // This machine is a VM whose disk and CPU vary from minute to minute: each figure pairs a
        // native run with a mounted run right after it, several times, and keeps the medians.
        var reps = quick ? 1 : 3;
        var nativeRuns = workloads.Select(_ => new List<double>()).ToArray();
        var mounted = workloads.Select(_ => Enumerable.Repeat(double.NaN, Configs.Length).ToArray()).ToArray();
        var ratios = workloads.Select(_ => Enumerable.Repeat(double.NaN, Configs.Length).ToArray()).ToArray();
        for (var c = 0; c < Configs.Length; c++)
        {
            var daemon = Mount(cli, native, mnt, Configs[c]);
            if (daemon is null) return 1;
            try
            {
                for (var w = 0; w < workloads.Length; w++)
                {
                    var values = new List<double>();
                    var pairRatios = new List<double>();
                    for (var r = 0; r < reps; r++)
                    {
                        Console.Error.WriteLine($"bench: {Configs[c].Name}: {workloads[w].Name} ({r + 1}/{reps})");
                        var n = workloads[w].Run(native, "native");
                        var m = workloads[w].Run(mnt, "stackfs");
                        nativeRuns[w].Add(n);
                        values.Add(m);
                        pairRatios.Add(m / n);
                        Console.Error.WriteLine($"bench:   native {n:F1}, StackFs {m:F1} {workloads[w].Unit}, ratio {m / n:F3}");
                    }
                    mounted[w][c] = Median(values);
                    ratios[w][c] = Median(pairRatios);
                }
            }
            finally
            {
                Run("umount", mnt);
                if (!daemon.WaitForExit(20_000)) daemon.Kill();
            }
        }
        var figures = workloads.Select((w, i) => new Figure(w.Name, w.Unit, Median(nativeRuns[i]), mounted[i], ratios[i], w.Target, w.For)).ToList();
        Write(outDir, figures, quick);
        return 0;
    }

    private static Process? Mount(string cli, string source, string mnt, Config config)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[cli, "mount", "stack", "--source", source, mnt, .. config.Args]) psi.ArgumentList.Add(a);
        var daemon = Process.Start(psi)!;
        var ready = new TaskCompletionSource();
        var uring = config.Args.Contains("io_uring");
        var onRing = false;
        daemon.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data.Contains("requests over io_uring")) onRing = true;
            if (e.Data.Contains("mounted at")) ready.TrySetResult();
        };
        daemon.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data.Contains("requests over io_uring")) onRing = true;
            Console.Error.WriteLine($"[daemon] {e.Data}");
        };
        daemon.BeginOutputReadLine();
        daemon.BeginErrorReadLine();
        if (ready.Task.Wait(TimeSpan.FromSeconds(60)))
        {
            // The log line may come on the other stream a moment later.
            for (var i = 0; i < 20 && uring && !Volatile.Read(ref onRing); i++) Thread.Sleep(100);
            if (!uring || onRing) return daemon;
            // A fallback to /dev/fuse would measure the wrong transport under this name.
            Console.Error.WriteLine($"bench: the StackFs daemon ({config.Name}) did not get FUSE over io_uring (see its log above)");
            Run("umount", mnt);
            daemon.WaitForExit(20_000);
            return null;
        }
        Console.Error.WriteLine($"bench: the StackFs daemon ({config.Name}) did not come up");
        daemon.Kill();
        return null;
    }

    private static void Write(string outDir, List<Figure> figures, bool quick)
    {
        var machine = Machine();
        var json = new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
            ["machine"] = machine,
            ["quick"] = quick,
            ["runs"] = quick ? 1 : 3,
            ["configurations"] = new JsonArray([.. Configs.Select(c => (JsonNode)new JsonObject { ["name"] = c.Name, ["cli"] = string.Join(' ', c.Args) })]),
            ["results"] = new JsonArray([.. figures.Select(f => (JsonNode)new JsonObject
            {
                ["workload"] = f.Workload, ["unit"] = f.Unit, ["native"] = Math.Round(f.Native, 1),
                ["stackfs"] = new JsonObject([.. Configs.Select((c, i) => KeyValuePair.Create(c.Name, (JsonNode?)new JsonObject
                {
                    ["value"] = Math.Round(f.Mounted[i], 1), ["ratio"] = Math.Round(f.Ratio(i), 3),
                }))]),
                ["target"] = double.IsNaN(f.Target) ? null : new JsonObject { ["ratio"] = f.Target, ["configuration"] = f.TargetConfig },
            })]),
        };
        File.WriteAllText(Path.Combine(outDir, "results.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var md = new StringBuilder();
        md.AppendLine($"# StackFs vs native ({DateTime.UtcNow:yyyy-MM-dd})").AppendLine();
        md.AppendLine($"Machine: {machine["cpu"]}, {machine["cores"]} cores, {machine["memory"]}, kernel {machine["kernel"]}, .NET {machine["dotnet"]}, source on {machine["filesystem"]}.");
        md.AppendLine("Configurations: " + string.Join("; ", Configs.Select(c => $"{c.Name} (`{string.Join(' ', c.Args)}`)")) + ".");
        md.AppendLine($"Each figure: the median of {(quick ? 1 : 3)} runs; each ratio: the median of the ratios of a mounted run to the native run just before it.").AppendLine();
        md.AppendLine("| workload | unit | native | " + string.Join(" | ", Configs.Select(c => c.Name)) + " | target |");
        md.AppendLine("|---|---|---:|" + string.Concat(Configs.Select(_ => "---:|")) + "---|");
        foreach (var f in figures)
            md.AppendLine($"| {f.Workload} | {f.Unit} | {f.Native:F1} | " + string.Join(" | ", Configs.Select((_, i) => $"{f.Mounted[i]:F1} ({f.Ratio(i):F2})")) +
                          $" | {(double.IsNaN(f.Target) ? "" : $">= {f.Target:F2} with {f.TargetConfig}: " + (f.Ratio(Array.FindIndex(Configs, c => c.Name == f.TargetConfig)) >= f.Target ? "met" : "missed"))} |");
        File.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
        Console.WriteLine(md.ToString());
        Plot(outDir, figures);
    }

    /// <summary>ratios.png: one group of bars per workload, one bar per configuration, and each target as a mark.</summary>
    private static void Plot(string outDir, List<Figure> figures)
    {
        var data = new StringBuilder("workload\t" + string.Join("\t", Configs.Select(c => $"\"{c.Name}\"")) + "\ttarget\n");
        foreach (var f in figures)
            data.AppendLine($"\"{f.Workload.Replace(" (", "\\n(")}\"\t" + string.Join("\t", Configs.Select((_, i) => f.Ratio(i).ToString("F3", CultureInfo.InvariantCulture)))
                            + "\t" + (double.IsNaN(f.Target) ? "NaN" : f.Target.ToString("F2", CultureInfo.InvariantCulture)));
        var dat = Path.Combine(outDir, "ratios.dat");
        File.WriteAllText(dat, data.ToString());
        var script = $$"""
            set terminal pngcairo size 1400,700 noenhanced font ",11"
            set output "{{Path.Combine(outDir, "ratios.png")}}"
            set title "StackFs throughput as a ratio to native (same machine, same run); marks: targets"
            set style data histograms
            set style histogram clustered gap 1
            set style fill solid 0.8 border -1
            set yrange [0:*]
            set ylabel "ratio to native"
            set grid ytics
            set key outside top center horizontal
            set xtics scale 0 font ",9"
            set datafile separator "	"
            plot for [i=2:{{Configs.Length + 1}}] "{{dat}}" using i:xtic(1) title columnheader(i),                  "{{dat}}" using ($0 - 1):{{Configs.Length + 2}} with points pt 9 ps 2.5 lc rgb "black" title "target"
            """;
        var gp = Path.Combine(outDir, "ratios.gp");
        File.WriteAllText(gp, script);
        try { Run("gnuplot", gp); }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            Console.Error.WriteLine($"bench: no plot ({e.Message.Split('\n')[0]}); install gnuplot-nox");
        }
    }

    private static double Fio(string dir, string tag, string rw, string bs, string size, int seconds, bool end_fsync = false, bool iops = false, bool direct = false)
    {
        // Each side its own file (the mount shows the native directory: sharing one would let the
        // second run overwrite blocks the first one allocated).
        var file = Path.Combine(dir, $"fio-{tag}.dat");
        if (rw == "write") File.Delete(file);
        var args = new List<string> { "--name=" + tag, "--filename=" + file, "--rw=" + rw, "--bs=" + bs, "--size=" + size,
            "--ioengine=psync", "--output-format=json", "--invalidate=1" };
        if (rw == "randread") args.AddRange(["--time_based", $"--runtime={seconds}"]);
        if (end_fsync) args.Add("--end_fsync=1");
        if (direct) args.Add("--direct=1");
        var output = Run("fio", [.. args]);
        var job = JsonNode.Parse(output[output.IndexOf('{')..])!["jobs"]![0]!;
        var side = job[rw.Contains("write") ? "write" : "read"]!;
        return iops ? side["iops"]!.GetValue<double>() : side["bw_bytes"]!.GetValue<double>();
    }

    private static double FsMark(string dir, int files)
    {
        var target = Path.Combine(dir, "fsmark");
        if (Directory.Exists(target)) Directory.Delete(target, true);
        Directory.CreateDirectory(target);
        var output = RunIn(dir, "fs_mark", "-d", target, "-n", files.ToString(), "-s", "4096", "-t", "1", "-S", "0", "-L", "1");
        // The result row: FSUse% Count Size Files/sec App-Overhead
        var row = output.Split('\n').Select(l => l.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Last(p => p.Length >= 5 && double.TryParse(p[3], NumberStyles.Float, CultureInfo.InvariantCulture, out _));
        return double.Parse(row[3], CultureInfo.InvariantCulture);
    }

    private static double StatWalk(string dir, int files, int rounds)
    {
        if (!Directory.Exists(dir) || Directory.GetFiles(dir).Length != files)
        {
            Directory.CreateDirectory(dir);
            for (var i = 0; i < files; i++) File.WriteAllBytes(Path.Combine(dir, $"f{i:D5}"), []);
        }
        var names = Enumerable.Range(0, files).Select(i => Path.Combine(dir, $"f{i:D5}")).ToArray();
        foreach (var n in names) Sys.LStat(n); // warm
        var sw = Stopwatch.StartNew();
        for (var r = 0; r < rounds; r++) foreach (var n in names) Sys.LStat(n);
        return files * (double)rounds / sw.Elapsed.TotalSeconds;
    }

    private static double ReadDirRate(string dir, int rounds)
    {
        var sw = Stopwatch.StartNew();
        long entries = 0;
        for (var r = 0; r < rounds; r++) foreach (var _ in Directory.EnumerateFileSystemEntries(dir)) entries++;
        return entries / sw.Elapsed.TotalSeconds;
    }

    private static void DropCaches()
    {
        Run("sync");
        File.WriteAllText("/proc/sys/vm/drop_caches", "3");
    }

    internal static JsonObject Machine()
    {
        string Read(string f) { try { return File.ReadAllText(f); } catch (IOException) { return ""; } }
        var cpu = Read("/proc/cpuinfo").Split('\n').FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        var mem = Read("/proc/meminfo").Split('\n').FirstOrDefault(l => l.StartsWith("MemTotal"))?.Split(':', 2)[1].Trim() ?? "?";
        return new JsonObject
        {
            ["cpu"] = cpu, ["cores"] = Environment.ProcessorCount, ["memory"] = mem,
            ["kernel"] = Run("uname", "-r").Trim(), ["dotnet"] = Environment.Version.ToString(),
            ["filesystem"] = Run("stat", "-f", "-c", "%T", "/var/tmp").Trim(),
        };
    }

    internal static string Run(string exe, params string[] args) => RunIn(null, exe, args);

    /// <summary>Runs a tool to completion in <paramref name="cwd"/> (fs_mark leaves its log there).</summary>
    private static string RunIn(string? cwd, string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd ?? "" };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && exe != "umount") throw new InvalidOperationException($"{exe} {string.Join(' ', args)} failed ({p.ExitCode}): {err}");
        return output;
    }

    private static unsafe class Sys
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "lstat")]
        private static extern int lstat(string path, byte* buf);
        public static void LStat(string path)
        {
            var buf = stackalloc byte[256];
            if (lstat(path, buf) != 0) throw new IOException($"lstat {path} failed");
        }
    }
}
