using System.Text.Json;
using ExtFuse.Declarative;
using ExtFuse.Policy;

namespace ExtFuse.Tests;

/// <summary>The policy model: files and their errors, precedence, globs, per-node verdicts and moves.</summary>
public class PolicyTests
{
    private static Caller As(uint uid, uint gid = 100) => new(uid, gid, (uint)Environment.ProcessId);

    private static AccessPolicy Load(string json) => FuseSessionCompose(PolicyFile.Parse(json));

    private static AccessPolicy FuseSessionCompose(PolicyDocument doc) => new(doc.Rules, doc.DefaultDeny, doc.DefaultErrno, doc.Source);

    [Fact]
    public void A_policy_file_becomes_rules_in_file_order_with_its_default()
    {
        var doc = PolicyFile.Parse("""
            {
              "$schema": "policy.schema.json",
              // comments and trailing commas are fine
              "default": "deny",
              "errno": "EPERM",
              "rules": [
                { "name": "public key", "effect": "allow", "ops": ["read"], "path": "secrets/public.pem" },
                { "effect": "deny", "ops": ["read", "write"], "path": "secrets/**", "uid": 1000, "errno": 1 },
                { "effect": "deny", "ops": "modify", "comm": "python3", "cgroup": "/sandbox" },
                { "effect": "hide", "path": "**/.git" },
                { "effect": "allow", "ops": "all" },
              ],
            }
            """, "p.json");
        Assert.True(doc.DefaultDeny);
        Assert.Equal(1, doc.DefaultErrno);
        Assert.Equal(5, doc.Rules.Count);
        Assert.Equal(new PathRule(PathRuleKind.Allow, FuseOps.Read, "secrets/public.pem", Name: "public key"), doc.Rules[0]);
        Assert.Equal(new PathRule(PathRuleKind.Deny, FuseOps.Read | FuseOps.Write, "secrets/**", 1000, Errno: 1), doc.Rules[1]);
        Assert.Equal(PolicyFile.OpNames["modify"], doc.Rules[2].Ops);
        Assert.Equal(("python3", "/sandbox"), (doc.Rules[2].Comm, doc.Rules[2].Cgroup));
        Assert.Equal(new PathRule(PathRuleKind.Hide, 0, "**/.git", Errno: 2), doc.Rules[3]);
        Assert.Equal(AccessPolicy.AllOps, doc.Rules[4].Ops);
        Assert.Equal("public key", doc.Rules[0].Describe());
        Assert.Equal("[Deny] Read, Write secrets/** uid=1000", doc.Rules[1].Describe());
    }

    [Theory]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"ops\": [\"reed\"] } ] }", "1:42: rules[0].ops[0]: unknown operation \"reed\"")]
    [InlineData("{ \"rules\": [\n  { \"effect\": \"deny\", \"path\": \"a/**b\" } ] }", "2:31: rules[0].path: invalid glob \"a/**b\": '**' must be a whole segment")]
    [InlineData("{ \"rules\": [ { \"effect\": \"hide\", \"path\": \"x\", \"uid\": 3 } ] }", "1:14: rules[0]: a hide rule has only a \"path\"")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"ops\": [\"lookup\"], \"uid\": 3 } ] }", "rules[0]: depends on the caller, and the kernel caches Lookup and GetAttr answers")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"pth\": \"x\" } ] }", "1:34: rules[0].pth: unknown key")]
    [InlineData("{ \"rules\": [], \"rules\": [] }", "1:16: rules: appears twice")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"errno\": \"EWHAT\" } ] }", "rules[0].errno: unknown errno \"EWHAT\"")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"errno\": 0 } ] }", "rules[0].errno: an errno number is 1 to 4095")]
    [InlineData("{ \"rules\": [ { \"effect\": \"allow\", \"errno\": 13 } ] }", "rules[0]: an allow rule has no \"errno\"")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"comm\": \"a-name-longer-than-15\" } ] }", "rules[0]: comm is a process name of 1 to 15")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"cgroup\": \"sandbox\" } ] }", "rules[0]: cgroup is a cgroup v2 path starting with '/'")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\", \"uid\": -4 } ] }", "rules[0].uid: is a uid or gid")]
    [InlineData("{ \"rules\": [ { \"ops\": [\"open\"] } ] }", "1:14: rules[0]: has no \"effect\"")]
    [InlineData("{ \"default\": \"maybe\", \"rules\": [] }", "1:14: default: is \"allow\" or \"deny\"")]
    [InlineData("{ \"rules\": [ { \"effect\": \"deny\" }", "not valid JSON")]
    [InlineData("{ }", "file: has no \"rules\" array")]
    [InlineData("[]", "a policy is a JSON object")]
    public void Every_mistake_is_an_error_at_its_line_and_column(string json, string expected)
    {
        var e = Assert.Throws<PolicyException>(() => PolicyFile.Parse(json, "bad.json"));
        Assert.StartsWith("bad.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void More_than_the_kernel_can_hold_is_refused()
    {
        var rules = string.Join(",", Enumerable.Range(0, AccessPolicy.MaxRules + 1).Select(i => $"{{\"effect\":\"deny\",\"path\":\"f{i}\"}}"));
        var e = Assert.Throws<PolicyException>(() => PolicyFile.Parse($"{{\"rules\":[{rules}]}}", "big.json"));
        Assert.Contains($"{AccessPolicy.MaxRules + 1} rules; a policy has at most {AccessPolicy.MaxRules}", e.Message);
        Assert.Throws<PolicyException>(() => PolicyFile.Load("/nonexistent/policy.json"));
    }

    [Fact]
    public void The_published_schema_names_what_the_loader_accepts()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "policy.schema.json");
        using var schema = JsonDocument.Parse(File.ReadAllText(path));
        var root = schema.RootElement;
        Assert.Equal(PolicyFile.FileKeys.Order(), root.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order());
        var defs = root.GetProperty("$defs");
        Assert.Equal(PolicyFile.RuleKeys.Order(), defs.GetProperty("rule").GetProperty("properties").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(PolicyFile.OpNames.Keys.Order(), defs.GetProperty("op").GetProperty("enum").EnumerateArray().Select(e => e.GetString()!).Order());
        Assert.Equal(PolicyFile.ErrnoNames.Keys.Order(), defs.GetProperty("errno").GetProperty("oneOf")[0].GetProperty("enum").EnumerateArray().Select(e => e.GetString()!).Order());
        Assert.Equal(AccessPolicy.MaxRules, root.GetProperty("properties").GetProperty("rules").GetProperty("maxItems").GetInt32());
    }

    [Fact]
    public void The_first_matching_rule_decides_and_the_default_covers_the_rest()
    {
        var p = Load("""
            { "default": "deny", "errno": "EPERM", "rules": [
                { "effect": "allow", "ops": ["read"], "path": "secrets/public.pem" },
                { "effect": "deny", "ops": ["read", "write"], "path": "secrets/**" },
                { "effect": "allow", "ops": ["open", "read", "write", "create"], "uid": 1000 },
                { "effect": "deny", "ops": ["lookup"], "path": "**/*.tmp" } ] }
            """);
        var root = As(0);
        var user = As(1000);
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.Open | FuseOps.Read, "secrets/public.pem", ref user));        // the exception comes first
        Assert.Equal(new Verdict(13, 1), p.Decide(FuseOps.Open | FuseOps.Write, "secrets/public.pem", ref user));     // not for writing
        Assert.Equal(new Verdict(13, 1), p.Decide(FuseOps.Open | FuseOps.Read, "secrets/key", ref user));
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.Open | FuseOps.Read, "docs/a", ref user));
        Assert.Equal(new Verdict(1, -1), p.Decide(FuseOps.Open | FuseOps.Read | FuseOps.SetAttr, "docs/a", ref user));   // each operation must be allowed
        Assert.Equal(new Verdict(1, -1), p.Decide(FuseOps.Open | FuseOps.Read, "docs/a", ref root));                  // nothing matched root: default
        Assert.Equal(new Verdict(1, -1), p.Decide(FuseOps.Unlink, "docs/a", ref user, names: true));
        // Lookup and GetAttr are decided only by rules that name them, never by the default.
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.Lookup, "docs/a", ref root, names: true));
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.GetAttr, "docs/a", ref root));
        Assert.Equal(new Verdict(13, 3), p.Decide(FuseOps.Lookup, "x/y.tmp", ref root, names: true));
        // An unknown path: a deny may apply, an allow is not proven.
        Assert.Equal(new Verdict(13, 1), p.Decide(FuseOps.Read, (string?)null, ref user));
    }

    [Fact]
    public void Hidden_names_are_refused_before_any_rule_and_only_when_naming()
    {
        var p = new AccessPolicy([new PathRule(PathRuleKind.Allow, AccessPolicy.AllOps, null), new PathRule(PathRuleKind.Hide, 0, "**/.secret")]);
        var c = As(5);
        Assert.Equal(new Verdict(AccessPolicy.HiddenErrno, 1), p.Decide(FuseOps.Create, "a/.secret", ref c, names: true));
        Assert.True(p.IsHideRule(1));
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.Open, "a/.secret", ref c));   // an open of a node the kernel already has
        Assert.True(p.IsHidden(".secret"));
        Assert.False(p.IsHidden("a/secret"));
    }

    [Fact]
    public void Caller_conditions_read_the_process_only_when_a_rule_needs_them()
    {
        var comm = File.ReadAllText($"/proc/{Environment.ProcessId}/comm").TrimEnd('\n');
        var cgroup = File.ReadAllLines($"/proc/{Environment.ProcessId}/cgroup").FirstOrDefault(l => l.StartsWith("0::"))?[3..] ?? "/";
        var p = new AccessPolicy(
        [
            new PathRule(PathRuleKind.Deny, FuseOps.Open, null, Comm: comm, Errno: 1),
            new PathRule(PathRuleKind.Deny, FuseOps.Create, null, Cgroup: cgroup, Errno: 2),
            new PathRule(PathRuleKind.Deny, FuseOps.Unlink, null, Gid: 7, Errno: 3),
            new PathRule(PathRuleKind.Deny, FuseOps.Unlink | FuseOps.Create, null, Cgroup: "/no-such-cgroup-here", Errno: 4),
        ]);
        var me = As(0, 7);
        Assert.Equal(1, p.Decide(FuseOps.Open, "f", ref me).Errno);
        Assert.Equal(2, p.Decide(FuseOps.Create, "f", ref me, names: true).Errno);
        Assert.Equal(3, p.Decide(FuseOps.Unlink, "f", ref me, names: true).Errno);
        var other = As(0, 8);
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.Unlink, "f", ref other, names: true));
        var gone = new Caller(0, 0, uint.MaxValue);   // no such process: neither comm nor cgroup can match
        Assert.Equal(Verdict.Allowed, p.Decide(FuseOps.Open | FuseOps.Create, "f", ref gone, names: true));
        Assert.True(me.InCgroup("/"));
        Assert.True(me.InCgroup(cgroup));
        Assert.False(me.InCgroup(cgroup + "x"));
    }

    [Theory]
    [InlineData("**", "", false)]
    [InlineData("**", "a/b/c", true)]
    [InlineData("a/**", "a", false)]
    [InlineData("a/**", "a/b/c", true)]
    [InlineData("**/x", "x", true)]
    [InlineData("**/x", "a/b/x", true)]
    [InlineData("**/x", "a/b/xy", false)]
    [InlineData("a/**/b/*.txt", "a/b/c.txt", true)]
    [InlineData("a/**/b/*.txt", "a/q/r/b/c.txt", true)]
    [InlineData("a/**/b/*.txt", "a/q/r/b/c.txt/d", false)]
    [InlineData("*.[ch]", "x.c", true)]
    [InlineData("*.[!ch]", "x.c", false)]
    [InlineData("*.[!ch]", "x.o", true)]
    [InlineData("f[0-9][0-9]", "f42", true)]
    [InlineData("f[0-9][0-9]", "f4x", false)]
    [InlineData("?", "ab", false)]
    [InlineData("a*b*c", "aXXbYYc", true)]
    [InlineData("a*b*c", "aXXbYY", false)]
    [InlineData("/lead/*", "lead/x", true)]
    [InlineData("*", "a/b", false)]
    public void Globs_match_whole_segments(string glob, string path, bool matches) => Assert.Equal(matches, Glob.Parse(glob).IsMatch(path));

    [Theory]
    [InlineData("d/*", "d", ChildMatch.All)]
    [InlineData("d/**", "d", ChildMatch.All)]
    [InlineData("**", "d", ChildMatch.All)]
    [InlineData("d/*.txt", "d", ChildMatch.Some)]
    [InlineData("**/*.txt", "d/e", ChildMatch.Some)]
    [InlineData("d/x/*", "d", ChildMatch.None)]
    [InlineData("e/*", "d", ChildMatch.None)]
    [InlineData("d", "", ChildMatch.Some)]
    public void A_glob_says_which_children_of_a_directory_it_matches(string glob, string dir, ChildMatch expected)
    {
        var g = Glob.Parse(glob);
        Assert.Equal(expected, g.Children(g.After(dir)));
    }

    [Fact]
    public void Node_verdict_bits_decide_as_the_paths_do()
    {
        var rng = new Random(17);
        string[] names = ["a", "b", "x.txt", "y.key", ".git", "secrets", "public.pem"];
        string RandomPath() => string.Join('/', Enumerable.Range(0, rng.Next(1, 5)).Select(_ => names[rng.Next(names.Length)]));
        var p = Load("""
            { "default": "deny", "rules": [
                { "effect": "allow", "ops": ["read"], "path": "secrets/public.pem" },
                { "effect": "deny", "ops": ["read", "write"], "path": "secrets/**" },
                { "effect": "deny", "ops": "modify", "path": "**/*.key", "uid": 1000 },
                { "effect": "hide", "path": "**/.git" },
                { "effect": "allow", "ops": ["open", "read", "readdir"], "path": "a/**" },
                { "effect": "allow", "ops": "all", "path": "*/x.txt", "gid": 100 } ] }
            """);
        for (var i = 0; i < 2000; i++)
        {
            var path = RandomPath();
            var ops = (FuseOps)(1u << rng.Next(17));
            var caller = As(rng.Next(2) == 0 ? 1000u : 0u, rng.Next(2) == 0 ? 100u : 5u);
            var byPath = p.Decide(ops, path, ref caller);
            var byBits = p.Decide(ops, p.VerdictOf([path], isDirectory: rng.Next(2) == 0), ref caller);
            Assert.True(byPath == byBits, $"{ops} on {path}: by path {byPath}, by bits {byBits}");
            // A name made in a directory: the directory's child bits, where they decide, agree with the path.
            var dir = RandomPath();
            var name = names[rng.Next(names.Length)];
            var v = p.VerdictOf([dir], isDirectory: true);
            var byName = p.Decide(ops, dir + "/" + name, ref caller, names: true);
            for (var r = 0; r < p.Count; r++)
            {
                var matches = p.Rules[r].Path is { } glob && Glob.Parse(glob).IsMatch(dir + "/" + name);
                if (v.ChildAll.Has(r)) Assert.True(matches, $"rule {r} claims every child of {dir}, but not {name}");
                if (!v.ChildAll.Has(r) && !v.ChildSome.Has(r) && p.Rules[r].Path is not null) Assert.False(matches, $"rule {r} claims no child of {dir}, but {name} matches");
            }
            _ = byName;
        }
    }

    [Fact]
    public void A_node_with_names_that_disagree_is_left_to_the_paths()
    {
        var p = new AccessPolicy([new PathRule(PathRuleKind.Deny, FuseOps.Read, "secrets/**")]);
        Assert.Equal(NodeVerdict.Undecided, p.VerdictOf(["secrets/a", "public/a"], false).Flags);
        Assert.Equal(0u, p.VerdictOf(["secrets/a", "secrets/b"], false).Flags);
        Assert.Equal(NodeVerdict.Undecided, p.VerdictOf([], false).Flags);
        var c = As(1);
        Assert.True(p.Decide(FuseOps.Read, ["public/a", "secrets/a"], ref c).Denied);   // any name that is refused refuses the node
    }

    [Theory]
    [InlineData("secrets/a", "public/a", false, 0)]       // a file out of a denied tree
    [InlineData("secrets", "public", true, 0)]            // the tree itself
    [InlineData("public/a", "secrets/a", false, 0)]       // into it
    [InlineData("public/a", "public/b", false, -1)]       // nothing changes
    [InlineData("p/a", "p/b", true, 1)]                   // "**/a/s" matches p/a/s, not p/b/s
    [InlineData("p/a", "q/a", true, -1)]                  // the same rules hold below both
    [InlineData("d/x", "d/.git", false, 2)]               // onto a hidden name
    [InlineData("r/a.key", "r/b.key", false, -1)]         // the rule for uid 7 does not apply to this caller
    public void Moves_that_change_which_rules_apply_are_found(string from, string to, bool isDirectory, int rule)
    {
        var p = new AccessPolicy(
        [
            new PathRule(PathRuleKind.Deny, FuseOps.Read, "secrets/**"),
            new PathRule(PathRuleKind.Deny, FuseOps.Read, "**/a/s"),
            new PathRule(PathRuleKind.Hide, 0, "**/.git"),
            new PathRule(PathRuleKind.Deny, FuseOps.Write, "r/a.key", Uid: 7),
        ]);
        var c = As(1);
        Assert.Equal(rule, p.MoveChangesRules(from, to, isDirectory, ref c));
    }
}
