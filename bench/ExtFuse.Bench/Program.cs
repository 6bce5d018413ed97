using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExtFuse.Bench;

/// <summary>
/// Runs the same workloads on a native directory and on a StackFs mount of it, in one go, and
/// writes each figure with its ratio to native (JSON + Markdown). Usage:
///   ExtFuse.Bench --cli PATH/extfuse.dll --work DIR --out DIR [--quick]
/// </summary>
public static class Program
{
    private sealed record Figure(string Workload, string Unit, double Native, double Mounted)
    {
        public double Ratio => Native == 0 ? 0 : Mounted / Native;
    }

    public static int Main(string[] args)
    {
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

        var daemon = Process.Start(new ProcessStartInfo("dotnet") { ArgumentList = { cli, "mount", "stack", "--source", native, mnt }, RedirectStandardOutput = true, RedirectStandardError = true })!;
        var ready = new TaskCompletionSource();
        daemon.OutputDataReceived += (_, e) => { if (e.Data?.Contains("mounted at") == true) ready.TrySetResult(); };
        daemon.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"[daemon] {e.Data}"); };
        daemon.BeginOutputReadLine();
        daemon.BeginErrorReadLine();
        if (!ready.Task.Wait(TimeSpan.FromSeconds(60))) { Console.Error.WriteLine("bench: the StackFs daemon did not come up"); daemon.Kill(); return 1; }

        var figures = new List<Figure>();
        try
        {
            var size = quick ? "64M" : "512M";
            var seconds = quick ? 3 : 10;
            Figure Both(string workload, string unit, Func<string, string, double> run)
            {
                Console.Error.WriteLine($"bench: {workload}");
                var n = run(native, "native");
                var m = run(mnt, "stackfs");
                var f = new Figure(workload, unit, n, m);
                Console.Error.WriteLine($"bench:   native {n:F1} {unit}, StackFs {m:F1} {unit}, ratio {f.Ratio:F3}");
                figures.Add(f);
                return f;
            }
            Both("fio sequential write 1 MiB", "MiB/s", (dir, tag) => Fio(dir, tag, "write", "1M", size, seconds, end_fsync: true) / (1 << 20));
            Both("fio sequential read 1 MiB (cold cache)", "MiB/s", (dir, tag) => { DropCaches(); return Fio(dir, tag, "read", "1M", size, seconds) / (1 << 20); });
            // O_DIRECT on both sides: through FUSE a buffered random read is also read ahead into the
            // source's page cache, two caches against one, which says nothing about the file system.
            Both("fio random read 4 KiB (O_DIRECT)", "IOPS", (dir, tag) => Fio(dir, tag, "randread", "4k", size, seconds, iops: true, direct: true));
            Both("fs_mark 4 KiB file create", "files/s", (dir, _) => FsMark(dir, quick ? 1000 : 5000));
            var files = 10_000;
            Both("warm stat of 10,000 files", "stats/s", (dir, _) => StatWalk(Path.Combine(dir, "statwalk"), files, quick ? 3 : 10));
            Both("readdir of a 10,000-entry directory", "entries/s", (dir, _) => ReadDirRate(Path.Combine(dir, "statwalk"), quick ? 5 : 20));
        }
        finally
        {
            Run("umount", mnt);
            if (!daemon.WaitForExit(20_000)) daemon.Kill();
        }

        var machine = Machine();
        var json = new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
            ["machine"] = machine,
            ["quick"] = quick,
            ["results"] = new JsonArray(figures.Select(f => (JsonNode)new JsonObject
            {
                ["workload"] = f.Workload, ["unit"] = f.Unit, ["native"] = Math.Round(f.Native, 1),
                ["stackfs"] = Math.Round(f.Mounted, 1), ["ratio"] = Math.Round(f.Ratio, 3),
            }).ToArray()),
        };
        File.WriteAllText(Path.Combine(outDir, "results.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var md = new StringBuilder();
        md.AppendLine($"# StackFs vs native ({DateTime.UtcNow:yyyy-MM-dd})").AppendLine();
        md.AppendLine($"Machine: {machine["cpu"]}, {machine["cores"]} cores, {machine["memory"]}, kernel {machine["kernel"]}, .NET {machine["dotnet"]}, source on {machine["filesystem"]}.");
        md.AppendLine("StackFs runs with no kernel offload (no passthrough, 1 s entry/attr caching).").AppendLine();
        md.AppendLine("| workload | unit | native | StackFs | ratio |");
        md.AppendLine("|---|---|---:|---:|---:|");
        foreach (var f in figures) md.AppendLine($"| {f.Workload} | {f.Unit} | {f.Native:F1} | {f.Mounted:F1} | {f.Ratio:F3} |");
        File.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
        Console.WriteLine(md.ToString());
        return 0;
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

    private static JsonObject Machine()
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

    private static string Run(string exe, params string[] args) => RunIn(null, exe, args);

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
