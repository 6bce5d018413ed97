using System.Text.RegularExpressions;
using ExtFuse.Policy;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// `extfuse sandbox` as a user runs it: the command over a view of a directory, as nobody, its exit
/// status back, every denial recorded and summed up, nothing mounted afterwards however it ended,
/// signals passed on, Landlock confinement, and a policy reloaded while it runs. Here the daemon
/// enforces; in the kernel lab the LSM programs do too.
/// </summary>
[Trait("Category", "KernelLab")]
public sealed class SandboxTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("extfuse-sandbox-").FullName;
    private string Source => Path.Combine(_dir, "src");
    private string PolicyPath => Path.Combine(_dir, "policy.json");
    private string AuditPath => Path.Combine(_dir, "audit.jsonl");
    private const string Policy = """
        { "rules": [ { "name": "secrets", "effect": "deny", "ops": ["read", "write"], "path": "secrets/**", "uid": 65534 } ] }
        """;

    public SandboxTests()
    {
        Directory.CreateDirectory(Path.Combine(Source, "secrets"));
        Directory.CreateDirectory(Path.Combine(Source, "public"));
        File.WriteAllText(Path.Combine(Source, "secrets", "key"), "top secret\n");
        File.WriteAllText(Path.Combine(Source, "public", "a"), "hello\n");
        File.WriteAllText(Path.Combine(_dir, "outside"), "outside\n");
        File.WriteAllText(PolicyPath, Policy);
        Shell.Run($"chmod -R a+rwX '{_dir}'");
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private string[] Sandbox(string command, params string[] more) =>
        ["sandbox", "--policy", PolicyPath, "--source", Source, "--audit", AuditPath, "-v", .. more, "--", "sh", "-c", command];

    private bool MountedOnHost() => File.ReadAllText("/proc/self/mountinfo").Contains(" " + Source + " ");

    private static uint Connection(CliProcess p)
    {
        p.WaitForOutput("connection ");
        return uint.Parse(Regex.Match(p.Output, @"connection (\d+)").Groups[1].Value);
    }

    [Fact]
    public void The_command_runs_as_nobody_over_the_view_and_its_status_and_denials_come_back()
    {
        var (code, output) = CliProcess.Run(Sandbox($"id -u; cat {Source}/public/a; cat {Source}/secrets/key; cd {Source} && cat public/a; exit 7"));
        Assert.True(code == 7, output);
        Assert.Contains("65534\nhello\n", output);
        Assert.Contains($"cat: {Source}/secrets/key: Permission denied", output);
        Assert.Matches(@"extfuse sandbox: sh exited with status 7; 1 denial: secrets \(1\); audit log: " + Regex.Escape(AuditPath), output);
        var record = Assert.Single(AuditLog.Read(AuditPath));
        Assert.Equal(("OPEN", "secrets/key", "cat", 65534u, "secrets"), (record.Op, record.Path, record.Comm, record.Uid, record.Rule));
        Assert.False(MountedOnHost(), "the view is visible outside the sandbox");
        Assert.Equal("top secret\n", File.ReadAllText(Path.Combine(Source, "secrets", "key")));
    }

    [Fact]
    public void Nothing_stays_mounted_or_running_when_the_command_is_killed()
    {
        Shell.Run("mountpoint -q /sys/fs/fuse/connections || mount -t fusectl fusectl /sys/fs/fuse/connections");
        using var p = CliProcess.Start(Sandbox("echo pid $$; sleep 1000 & wait"));
        var connection = Connection(p);
        p.WaitForOutput("pid ");
        var pid = int.Parse(Regex.Match(p.Output, @"pid (\d+)").Groups[1].Value);
        Assert.True(Directory.Exists($"/sys/fs/fuse/connections/{connection}"));
        Assert.Equal(0, Shell.Run($"kill -9 {pid}").Code);
        Assert.True(p.WaitForExit(30_000), p.Output);
        Assert.Equal(128 + 9, p.ExitCode);
        // The sleep it left behind was killed with its namespace, and the mount and connection went with them.
        Assert.DoesNotContain("sleep 1000", Shell.Run("ps -eo args").Output);
        Assert.False(Directory.Exists($"/sys/fs/fuse/connections/{connection}"), "the FUSE connection is still there");
        Assert.False(MountedOnHost());
    }

    [Fact]
    public void SIGTERM_to_the_launcher_reaches_the_command()
    {
        using var p = CliProcess.Start(Sandbox("trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done"));
        p.WaitForOutput("ready");
        p.Signal(15);
        Assert.True(p.WaitForExit(30_000), p.Output);
        Assert.Equal(5, p.ExitCode);
        Assert.Contains("got TERM", p.Output);
        Assert.False(MountedOnHost());
    }

    [Fact]
    public void Landlock_confines_the_command_to_the_view_even_through_proc_root()
    {
        // A process of the sandbox's uid outside it: its /proc/PID/root leads to the unprotected source.
        using var outsider = System.Diagnostics.Process.Start("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sleep", "60"]);
        try
        {
            var escape = $"cat /proc/{outsider.Id}/root{Source}/secrets/key";
            var (code, output) = CliProcess.Run(Sandbox($"cat {Source}/public/a; cat {_dir}/outside; {escape}; true", "--landlock"));
            Assert.True(code == 0, output);
            Assert.Contains("hello\n", output);
            Assert.Contains($"cat: {_dir}/outside: Permission denied", output);
            Assert.Contains($"{Source}/secrets/key: Permission denied", output);
            Assert.DoesNotContain("top secret", output);
            // --allow opens a path to it.
            (code, output) = CliProcess.Run(Sandbox($"cat {_dir}/outside", "--landlock", "--allow", Path.Combine(_dir, "outside")));
            Assert.True(code == 0 && output.Contains("outside\n"), output);
        }
        finally { outsider.Kill(); }
    }

    [Fact]
    public void A_policy_reload_and_stats_reach_a_running_sandbox()
    {
        var go = Path.Combine(Source, "public", "go");
        using var p = CliProcess.Start(Sandbox($"cat {Source}/secrets/key; echo waiting; while [ ! -e {Source}/public/go ]; do sleep 0.1; done; cat {Source}/secrets/key"));
        var connection = Connection(p);
        p.WaitForOutput("waiting");
        var (code, output) = CliProcess.Run(["stats", "--connection", connection.ToString()]);
        Assert.True(code == 0, output);
        Assert.Matches(@"(?m)^rule secrets\s+1 refused", output);

        File.WriteAllText(PolicyPath, """{ "rules": [] }""");
        (code, output) = CliProcess.Run(["policy", "reload", "--connection", connection.ToString()]);
        Assert.True(code == 0, output);
        Assert.StartsWith("ok 0 rules", output);
        File.WriteAllText(go, "");
        Assert.True(p.WaitForExit(30_000), p.Output);
        Assert.True(p.ExitCode == 0, p.Output);
        Assert.Contains("top secret", p.Output);   // read after the reload
    }

    [Fact]
    public void SIGHUP_reloads_a_mounts_policy_file()
    {
        var mnt = Path.Combine(_dir, "mnt");
        Directory.CreateDirectory(mnt);
        using var p = CliProcess.Start(["mount", "stack", "--source", Source, mnt, "-o", $"allow_other,policy={PolicyPath},audit={AuditPath}"]);
        p.WaitForOutput("mounted at");
        try
        {
            Assert.Contains("Permission denied", Shell.Run($"cat '{mnt}/secrets/key'", CliProcess.Nobody).Output);
            File.WriteAllText(PolicyPath, """{ "rules": [ { "name": "public", "effect": "deny", "ops": ["read"], "path": "public/**", "uid": 65534 } ] }""");
            p.Signal(1);
            p.WaitForOutput("SIGHUP: 1 rules from");
            Assert.Equal((0, "top secret\n"), Shell.Run($"cat '{mnt}/secrets/key'", CliProcess.Nobody));
            Assert.Contains("Permission denied", Shell.Run($"cat '{mnt}/public/a'", CliProcess.Nobody).Output);
            File.WriteAllText(PolicyPath, "{ \"rules\": [ ");
            p.Signal(1);
            p.WaitForOutput("SIGHUP: the policy was not reloaded, the old rules stay");
            Assert.Contains("Permission denied", Shell.Run($"cat '{mnt}/public/a'", CliProcess.Nobody).Output);
        }
        finally
        {
            p.Signal(15);
            Assert.True(p.WaitForExit(30_000), p.Output);
        }
        Assert.Equal(0, p.ExitCode);
    }

    [Fact]
    public void A_bad_policy_is_refused_before_anything_is_mounted()
    {
        File.WriteAllText(PolicyPath, """{ "rules": [ { "effect": "deny", "path": "**/" } ] }""");
        var (code, output) = CliProcess.Run(Sandbox("echo ran"));
        Assert.True(code == 1, output);
        Assert.Contains($"extfuse: {PolicyPath}: 1:42: rules[0].path: invalid glob \"**/\": empty path segment", output);
        Assert.DoesNotContain("ran", output);
        Assert.False(MountedOnHost());
    }
}
