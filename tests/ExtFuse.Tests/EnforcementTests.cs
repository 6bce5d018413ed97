using System.Diagnostics;
using ExtFuse.Mounting;
using ExtFuse.Policy;
using ExtFuse.Protocol;
using ExtFuse.Samples.Stack;
using ExtFuse.Session;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// StackFs over a prepared tree with a policy file and an audit log. Where the kernel has BPF LSM
/// (the kernel lab) the rules also run in LSM programs; elsewhere the daemon enforces them alone.
/// </summary>
public class PolicyMount : StackMount
{
    public const uint Nobody = 65534;
    public const string Cgroup = "/extfuse-enforcement-test";

    public const string Rules = """
        { "rules": [
            { "name": "public key", "effect": "allow", "ops": ["read"], "path": "secrets/public.pem" },
            { "name": "secrets", "effect": "deny", "ops": ["read", "write", "readdir"], "path": "secrets/**", "uid": 65534 },
            { "name": "secrets dir", "effect": "deny", "ops": ["readdir"], "path": "secrets", "uid": 65534 },
            { "name": "vault", "effect": "deny", "ops": ["read"], "path": "vault/**" },
            { "name": "no exe", "effect": "deny", "ops": ["create"], "path": "**/*.exe", "errno": "EPERM" },
            { "name": "docs read-only", "effect": "deny", "ops": ["write"], "path": "docs/**", "uid": 65534 },
            { "name": "logs kept", "effect": "deny", "ops": ["unlink", "rename"], "path": "logs/**", "uid": 65534 },
            { "name": "no head", "effect": "deny", "ops": ["read"], "path": "public/**", "comm": "head" },
            { "name": "cgroup", "effect": "deny", "ops": ["read"], "path": "public/cg.txt", "cgroup": "/extfuse-enforcement-test" },
            { "effect": "hide", "path": "**/.git" }
        ] }
        """;

    public PolicyMount() : this(Directory.CreateTempSubdirectory("extfuse-policy-").FullName) { }

    private PolicyMount(string dir) : base(source => StackFileSystem.Open(source), options: Options(dir), prepare: Populate) => Dir = dir;

    public string Dir { get; }
    public string PolicyPath => Path.Combine(Dir, "policy.json");
    public string AuditPath => Path.Combine(Dir, "audit.jsonl");

    /// <summary>Whether LSM programs enforce the rules too (a kernel with BPF LSM).</summary>
    public bool InKernel => Session.Offload?.LsmPolicy is not null;

    private static MountOptions Options(string dir)
    {
        File.WriteAllText(Path.Combine(dir, "policy.json"), Rules);
        CgroupFixture.Ensure(Cgroup);
        return new MountOptions
        {
            FsName = "extfuse-test", Subtype = "test", DefaultPermissions = true, AllowOther = true,
            Session = new FuseSessionOptions { PolicyFile = Path.Combine(dir, "policy.json"), AuditLog = Path.Combine(dir, "audit.jsonl") },
        };
    }

    private static void Populate(string src)
    {
        void Write(string rel, string text)
        {
            var p = Path.Combine(src, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);
            File.WriteAllText(p, text);
        }
        Write("secrets/key", "top secret\n");
        Write("secrets/public.pem", "public\n");
        Write("secrets/sub/deep", "deep\n");
        Write("docs/readme", "docs\n");
        Write("logs/app.log", "line 1\n");
        Write("public/a", "hello\n");
        Write("public/cg.txt", "cgroup\n");
        Write("vault/x", "vault\n");
        Write(".git/config", "[core]\n");
        Directory.CreateDirectory(Path.Combine(src, "tmp"));
        // Mode bits let everyone do everything: what is refused, the rules refuse.
        Shell.Run($"chmod -R a+rwX '{src}'");
    }

    public override void Dispose()
    {
        base.Dispose();
        Directory.Delete(Dir, true);
    }
}

/// <summary>cgroup v2 directories for tests (mounting cgroup2 where nothing has).</summary>
public static class CgroupFixture
{
    public static string Ensure(string cgroup)
    {
        if (CgroupIds.MountPoint is null)
        {
            Shell.Run("mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup");
            throw new InvalidOperationException("cgroup2 was not mounted; mounted it now: CgroupIds caches the mount point, run again");
        }
        var dir = CgroupIds.MountPoint + cgroup;
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A shell command run with its process moved into the cgroup first.</summary>
    public static string In(string cgroup, string command) => $"echo $$ > '{CgroupIds.MountPoint}{cgroup}/cgroup.procs' && {command}";
}

/// <summary>A C program that tries ways around a path rule (Support/bypass.c), built once with the machine's cc.</summary>
public static class BypassTool
{
    private static readonly Lazy<string> Built = new(() =>
    {
        var source = Path.Combine(AppContext.BaseDirectory, "bypass.c");
        var exe = Path.Combine(Path.GetTempPath(), $"extfuse-bypass-{Environment.ProcessId}");
        var (code, output) = Shell.Run($"cc -O2 -o '{exe}' '{source}' && chmod 755 '{exe}'");
        Assert.True(code == 0, $"cannot build the bypass tool: {output}");
        return exe;
    });

    public static string Path_ => Built.Value;

    public static (int Code, string Output) Run(string args, uint? asUser = null, string? cwd = null) =>
        Shell.Run($"{(cwd is null ? "" : $"cd '{cwd}' && ")}'{Built.Value}' {args}", asUser);
}

/// <summary>
/// The sandbox's rules on a real mount: what they refuse and allow, the ways around a path rule
/// (renames, hard links, symlinks, "..", O_PATH and /proc/self/fd, open_by_handle_at, mmap), reload,
/// and the audit. The same tests run on this machine (the daemon enforces) and in the kernel lab
/// (BPF LSM programs enforce, and the daemon decides what they leave to it), where they also check
/// that a denied open never reached the daemon.
/// </summary>
[Trait("Category", "KernelLab")]
public class EnforcementTests(PolicyMount m) : IClassFixture<PolicyMount>
{
    private const uint Nobody = PolicyMount.Nobody;

    private (int Code, string Output) AsNobody(string command) => Shell.Run($"cd '{m.Root}' && {command}", Nobody);
    private (int Code, string Output) AsRoot(string command) => Shell.Run($"cd '{m.Root}' && {command}");

    private static void Refused((int Code, string Output) r, string why = "Permission denied")
    {
        Assert.True(r.Code != 0, $"allowed: {r.Output}");
        Assert.Contains(why, r.Output);
    }

    private static void Allowed((int Code, string Output) r, string? output = null)
    {
        Assert.True(r.Code == 0, r.Output);
        if (output is not null) Assert.Equal(output, r.Output);
    }

    [Fact]
    public void Rules_refuse_and_allow_by_path_operation_and_caller()
    {
        Refused(AsNobody("cat secrets/key"));
        Allowed(AsRoot("cat secrets/key"), "top secret\n");                   // the rule is for uid 65534
        Allowed(AsNobody("cat secrets/public.pem"), "public\n");              // the exception comes first
        Refused(AsNobody("echo x >> secrets/public.pem"));                    // for reading only
        Refused(AsNobody("ls secrets"));
        Refused(AsNobody("ls secrets/sub"));
        Allowed(AsNobody("cat docs/readme"), "docs\n");
        Refused(AsNobody("echo x >> docs/readme"));
        Refused(AsNobody("truncate -s 0 docs/readme"));
        Allowed(AsNobody("echo line 2 >> logs/app.log"));
        Refused(AsNobody("rm logs/app.log"));
        Refused(AsRoot("touch tmp/run.exe"), "Operation not permitted");     // EPERM, for everyone
        Refused(AsRoot("cat vault/x"));                                      // everyone, root too
        Refused(AsNobody("head public/a"));                                  // by process name
        Allowed(AsNobody("cat public/a"), "hello\n");
        Assert.Equal("docs\n", File.ReadAllText(Path.Combine(m.Source, "docs", "readme")));
    }

    [Fact]
    public void The_rules_hold_for_this_mount_only()
    {
        Refused(AsRoot("cat vault/x"));
        // The same file, reached outside the mount: neither the daemon nor the LSM programs see it.
        Allowed(Shell.Run($"cat '{m.Source}/vault/x'"), "vault\n");
        Allowed(Shell.Run($"cat '{m.Source}/secrets/key'", Nobody), "top secret\n");
    }

    [Fact]
    public void Hidden_names_do_not_exist_for_anyone()
    {
        Allowed(AsRoot("ls -a ."));
        Assert.DoesNotContain(".git", AsRoot("ls -a .").Output.Split('\n'));
        Refused(AsRoot("stat .git"), "No such file or directory");
        Refused(AsRoot("mkdir tmp/.git"));
        Refused(AsRoot("mv tmp public/.git"));
    }

    [Fact]
    public void A_cgroup_rule_applies_to_callers_in_that_cgroup_only()
    {
        Allowed(AsRoot("cat public/cg.txt"), "cgroup\n");
        Refused(AsRoot(CgroupFixture.In(PolicyMount.Cgroup, "exec cat public/cg.txt")));
    }

    [Fact]
    public void Renames_and_links_cannot_move_a_file_out_of_a_rules_reach()
    {
        Refused(AsNobody("mv secrets/key public/key"));
        Refused(AsNobody("mv secrets/sub public/sub"));          // the directory: everything below it moves too
        Refused(AsNobody("mv secrets public2"));
        Refused(AsNobody("mv public/a secrets/a"));             // nor into one
        Refused(AsNobody("ln secrets/key public/k"));
        Refused(AsNobody("cat public/key public/sub/deep public/k public2/key 2>&1; exit 1"), "No such file or directory");
        Allowed(AsRoot("cat secrets/key secrets/sub/deep"), "top secret\ndeep\n");
        // Moves within what the same rules govern are fine.
        Allowed(AsNobody("echo t > tmp/r1 && mv tmp/r1 tmp/r2 && ln tmp/r2 tmp/r3 && cat tmp/r3"), "t\n");
    }

    [Fact]
    public void Symlinks_and_dotdot_lead_to_the_node_the_rules_guard()
    {
        Allowed(AsNobody("ln -sf ../secrets/key tmp/to-key"));
        Refused(AsNobody("cat tmp/to-key"));
        Refused(AsNobody("cat public/../secrets/key"));
        Refused(AsNobody("cd secrets/sub/.. && cat key"));
    }

    [Fact]
    public void O_PATH_and_proc_self_fd_reopen_are_decided_at_the_open()
    {
        Allowed(BypassTool.Run("opath public/a", Nobody, m.Root), "hello\n");
        var r = BypassTool.Run("opath secrets/key", Nobody, m.Root);
        Assert.Equal("reopen: Permission denied\n", r.Output);
    }

    [Fact]
    public void Open_by_handle_is_decided_at_the_open()
    {
        Allowed(BypassTool.Run($"handle public/a '{m.Root}'", cwd: m.Root), "hello\n");
        Assert.Equal("open_by_handle_at: Permission denied\n", BypassTool.Run($"handle vault/x '{m.Root}'", cwd: m.Root).Output);
    }

    [Fact]
    public void Mmap_cannot_write_what_the_open_did_not_grant()
    {
        Assert.Equal("mmap: Permission denied\n", BypassTool.Run("mmap docs/readme", Nobody, m.Root).Output);
        Assert.Equal("open: Permission denied\n", BypassTool.Run("mmap secrets/key", Nobody, m.Root).Output);
        Assert.Equal("docs\n", File.ReadAllText(Path.Combine(m.Source, "docs", "readme")));
    }

    [Fact]
    public void Every_denial_is_recorded_with_who_what_and_which_rule_and_counted()
    {
        var hits = m.Session.Offload!.RuleHits().ToDictionary(h => h.Rule, h => h.Hits);
        var before = m.Session.Audit.Total;
        Refused(AsNobody("cat secrets/key"));
        var record = WaitForRecord(r => r.Path == "secrets/key" && r.Comm == "cat");
        Assert.Equal(("OPEN", Nobody, Nobody, "secrets", 13), (record.Op, record.Uid, record.Gid, record.Rule, record.Errno));
        Assert.Equal(m.InKernel ? "kernel" : "daemon", record.By);
        Assert.True(record.Pid > 0);
        Assert.True(m.Session.Audit.Total > before);
        Assert.True(m.Session.Offload!.RuleHits().Single(h => h.Rule == "secrets").Hits > hits["secrets"]);
        Assert.Contains("secrets (", m.Session.Audit.Summary());
    }

    /// <summary>The same record as the audit file has it (kernel records arrive through a ring buffer, a moment later).</summary>
    private AuditRecord WaitForRecord(Func<AuditRecord, bool> match)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            if (AuditLog.Read(m.AuditPath).LastOrDefault(match) is { } r) return r;
            Assert.True(DateTime.UtcNow < deadline, "no audit record: " + File.ReadAllText(m.AuditPath));
            Thread.Sleep(20);
        }
    }

    [Fact]
    public void Where_the_kernel_enforces_a_denied_open_never_reaches_the_daemon()
    {
        var plan = m.Session.Offload!.Plan(m.Session.Connection).Single(c => c.Rules.Contains("[Deny]"));
        Assert.Equal(m.InKernel, plan.InKernel);
        Allowed(AsNobody("cat secrets/public.pem"));   // look the names up first: the count below is of OPENs alone
        Refused(AsNobody("cat secrets/key"));
        var opens = m.Session.RequestsOf(FuseOpcode.Open);
        for (var i = 0; i < 5; i++) Refused(AsNobody("cat secrets/key"));
        var reached = m.Session.RequestsOf(FuseOpcode.Open) - opens;
        if (m.InKernel) Assert.Equal(0, reached);        // answered by the LSM program, in the kernel
        else Assert.True(reached >= 5, $"{reached} OPENs reached the daemon, which refuses them");
    }

    [Fact]
    public void A_reload_changes_the_rules_for_new_opens_and_keeps_open_files()
    {
        try
        {
            // A reader opens docs/readme, then waits; the new policy forbids nobody to read docs/.
            using var held = Process.Start(new ProcessStartInfo("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
                $"exec 3< '{m.Root}/docs/readme' && echo opened && read go && cat <&3"]) { RedirectStandardInput = true, RedirectStandardOutput = true })!;
            Assert.Equal("opened", held.StandardOutput.ReadLine());
            File.WriteAllText(m.PolicyPath, """{ "rules": [ { "name": "docs closed", "effect": "deny", "ops": ["read"], "path": "docs/**", "uid": 65534 } ] }""");
            var policy = m.Session.ReloadPolicy();
            Assert.Equal(["docs closed"], policy.RuleNames);
            held.StandardInput.WriteLine("go");
            Assert.Equal("docs", held.StandardOutput.ReadLine());   // the descriptor was granted before the reload
            Assert.True(held.WaitForExit(10_000));
            Refused(AsNobody("cat docs/readme"));
            Allowed(AsNobody("cat secrets/key"), "top secret\n");    // the old rules are gone

            // A file that does not load changes nothing.
            File.WriteAllText(m.PolicyPath, """{ "rules": [ { "effect": "deny", "ops": ["reed"] } ] }""");
            var e = Assert.Throws<PolicyException>(() => m.Session.ReloadPolicy());
            Assert.Contains("1:42: rules[0].ops[0]: unknown operation \"reed\"", e.Message);
            Refused(AsNobody("cat docs/readme"));
        }
        finally
        {
            File.WriteAllText(m.PolicyPath, PolicyMount.Rules);
            m.Session.ReloadPolicy();
        }
        Refused(AsNobody("cat secrets/key"));
    }
}

/// <summary>A policy whose default is deny: only what is allowed goes through.</summary>
public class DefaultDenyMount() : StackMount(source => StackFileSystem.Open(source), options: new MountOptions
{
    FsName = "extfuse-test", Subtype = "test", DefaultPermissions = true, AllowOther = true,
    Session = new FuseSessionOptions { PolicyFile = Write() },
}, prepare: src =>
{
    Directory.CreateDirectory(Path.Combine(src, "public"));
    Directory.CreateDirectory(Path.Combine(src, "private"));
    File.WriteAllText(Path.Combine(src, "public", "a"), "a\n");
    File.WriteAllText(Path.Combine(src, "private", "b"), "b\n");
    Shell.Run($"chmod -R a+rwX '{src}'");
})
{
    private static string Write()
    {
        var path = Path.Combine(Path.GetTempPath(), $"extfuse-default-deny-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """
            { "default": "deny", "errno": "EPERM", "rules": [
                { "effect": "allow", "ops": "all", "uid": 0 },
                { "effect": "allow", "ops": ["readdir"], "path": "public" },
                { "effect": "allow", "ops": ["open", "read", "readdir"], "path": "public/**" } ] }
            """);
        return path;
    }
}

[Trait("Category", "KernelLab")]
public class DefaultDenyEnforcementTests(DefaultDenyMount m) : IClassFixture<DefaultDenyMount>
{
    [Fact]
    public void Only_what_a_rule_allows_goes_through()
    {
        (int, string) AsNobody(string command) => Shell.Run($"cd '{m.Root}' && {command}", PolicyMount.Nobody);
        Assert.Equal((0, "a\n"), AsNobody("cat public/a"));
        Assert.Equal((0, "a\n"), AsNobody("ls public"));
        var (code, output) = AsNobody("cat private/b");
        Assert.True(code != 0 && output.Contains("Operation not permitted"), output);
        (code, output) = AsNobody("touch public/new");
        Assert.True(code != 0 && output.Contains("Operation not permitted"), output);
        (code, output) = AsNobody("echo x >> public/a");
        Assert.True(code != 0 && output.Contains("Operation not permitted"), output);
        Assert.Equal((0, "b\n"), Shell.Run($"cat '{m.Root}/private/b'"));   // root is allowed everything
        Assert.Equal(0, Shell.Run($"touch '{m.Root}/public/by-root' && rm '{m.Root}/public/by-root'").Code);
    }
}

/// <summary>
/// A policy with caller rules alone on a file system that knows no paths (MemoryFs): no rule can
/// change with a name, so renames and links go through, and the caller rule still holds.
/// </summary>
public class CallerPolicyOnRawFsTests
{
    [Fact]
    public void Renames_and_links_go_through_when_no_rule_names_a_path()
    {
        var policy = Path.Combine(Path.GetTempPath(), $"extfuse-caller-policy-{Guid.NewGuid():N}.json");
        File.WriteAllText(policy, """{ "rules": [ { "name": "keep", "effect": "deny", "ops": ["unlink"], "uid": 0 } ] }""");
        try
        {
            using var m = new MemoryMount(new ExtFuse.Samples.Memory.MemoryFileSystem(), new MountOptions
            {
                FsName = "extfuse-test", Subtype = "test", DefaultPermissions = true, AllowOther = true,
                Session = new FuseSessionOptions { PolicyFile = policy },
            });
            var dir = m.NewDir();
            File.WriteAllText(Path.Combine(dir, "a"), "a\n");
            Assert.Equal((0, ""), Shell.Run($"cd '{dir}' && mv a b && ln b c"));
            Assert.Equal("a\n", File.ReadAllText(Path.Combine(dir, "c")));
            var (code, output) = Shell.Run($"rm '{dir}/b'");
            Assert.True(code != 0 && output.Contains("Permission denied"), output);
        }
        finally
        {
            File.Delete(policy);
        }
    }
}
