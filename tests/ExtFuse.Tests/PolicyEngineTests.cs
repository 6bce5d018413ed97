using System.Runtime.InteropServices;
using ExtFuse.Declarative;
using ExtFuse.Policy;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// The policy engine in the kernel (extfuse/policy.h, run through BPF_PROG_TEST_RUN on the real
/// verifier and kernel) against the daemon's decision, on random policies, paths and callers:
/// wherever the kernel decides, it decides as the daemon does; it leaves to the daemon only what its
/// bits cannot tell.
/// </summary>
public class PolicyEngineTests
{
    /// <summary>struct extfuse_policy_test.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct PolicyTestContext
    {
        public RuleBits Match, Maybe;
        public uint Uid, Gid;
        public Comm Comm;
        public uint Ops, Child;
        public int Result, Rule;
    }

    private const int Defer = -1;

    private static readonly string[] Names = ["a", "b", "x.txt", "y.key", ".git", "secrets", "public.pem", "logs"];
    private static readonly string[] Globs = ["secrets/**", "**/*.key", "**/.git", "a/*", "*/x.txt", "logs/**", "a/**/b", "secrets/public.pem", "[ab]", "**/logs/*.txt"];
    private static readonly string[] Comms = ["cat", "python3", "sh"];

    private static PathRule RandomRule(Random rng)
    {
        var path = rng.Next(5) == 0 ? null : Globs[rng.Next(Globs.Length)];
        var kind = rng.Next(10) switch { 0 when path is not null => PathRuleKind.Hide, < 5 => PathRuleKind.Deny, _ => PathRuleKind.Allow };
        if (kind == PathRuleKind.Hide) return new PathRule(kind, 0, path, Errno: 2);
        FuseOps ops = 0;
        while (ops == 0) ops = (FuseOps)((uint)rng.Next(1 << 17) & rng.Next(1 << 17)) & ~(FuseOps.Lookup | FuseOps.GetAttr);
        var callerBound = rng.Next(3) == 0;
        if (!callerBound && rng.Next(8) == 0) ops |= FuseOps.Lookup;
        return new PathRule(kind, ops, path, Uid: callerBound && rng.Next(2) == 0 ? rng.Next(2) : -1, Gid: callerBound && rng.Next(3) == 0 ? 100 : -1,
            Comm: callerBound && rng.Next(3) == 0 ? Comms[rng.Next(Comms.Length)] : null, Errno: rng.Next(2) == 0 ? 13 : 1);
    }

    [Fact]
    public void The_kernels_engine_decides_as_the_daemon_wherever_it_decides()
    {
        using var kernel = new BpfTestRun(Path.Combine(AppContext.BaseDirectory, "extfuse_policy.bpf.o"));
        var header = kernel.Map<uint, KernelPolicyHeader>("extfuse_policy");
        var table = kernel.Map<uint, KernelRule>("extfuse_rules");
        var rng = new Random(23);
        string RandomPath(int min) => string.Join('/', Enumerable.Range(0, rng.Next(min, 4)).Select(_ => Names[rng.Next(Names.Length)]));
        int decided = 0, deferred = 0, denied = 0;
        for (var round = 0; round < 40; round++)
        {
            var policy = new AccessPolicy(Enumerable.Range(0, rng.Next(1, 12)).Select(_ => RandomRule(rng)), defaultDeny: rng.Next(2) == 0, defaultErrno: 30);
            var rules = policy.KernelRules;
            Assert.Equal(rules.Length, table.UpdateBatch([.. Enumerable.Range(0, rules.Length).Select(i => (uint)i)], rules));
            header.Update(0, policy.Header(dev: 1));
            for (var i = 0; i < 150; i++)
            {
                var ops = (FuseOps)(1u << rng.Next(17));
                var (uid, gid, comm) = ((uint)rng.Next(2), rng.Next(2) == 0 ? 100u : 5u, Comms[rng.Next(Comms.Length)]);
                var caller = new Caller(uid, gid, 0, comm);
                var ctx = new PolicyTestContext { Uid = uid, Gid = gid, Comm = Comm.From(comm), Ops = (uint)ops, Result = int.MinValue, Rule = int.MinValue };
                Verdict daemon;
                var kind = rng.Next(3);
                if (kind < 2)
                {
                    // The node itself (open, setattr...), or a name removed (unlink: the victim's own bits, [Hide] first).
                    var path = RandomPath(1);
                    ctx.Match = policy.VerdictOf([path], isDirectory: rng.Next(2) == 0).Self;
                    ctx.Child = (uint)kind;
                    daemon = policy.Decide(ops, path, ref caller, names: kind == 1);
                }
                else
                {
                    // A name being made: only the directory's bits are known.
                    var dir = RandomPath(0);
                    var name = Names[rng.Next(Names.Length)];
                    var v = policy.VerdictOf([dir], isDirectory: true);
                    (ctx.Match, ctx.Maybe, ctx.Child) = (v.ChildAll, v.ChildSome, 1);
                    daemon = policy.Decide(ops, dir.Length == 0 ? name : dir + "/" + name, ref caller, names: true);
                }
                kernel.Run("test_policy", ref ctx);
                Assert.NotEqual(int.MinValue, ctx.Result);
                if (ctx.Result == Defer)
                {
                    Assert.True(kind == 2, $"the kernel left {ops} to the daemon though its bits were exact (round {round}, query {i})");
                    deferred++;
                    continue;
                }
                Assert.True((daemon.Errno, daemon.Rule) == (ctx.Result, ctx.Rule),
                    $"round {round} query {i}: {ops} kind {kind} uid {uid} gid {gid} comm {comm}: daemon {daemon}, kernel errno {ctx.Result} rule {ctx.Rule}\n{string.Join("\n", policy.Rules.Select(r => r.Describe()))}");
                decided++;
                if (daemon.Denied) denied++;
            }
        }
        Assert.True(decided > 3000 && deferred > 50 && denied > 500, $"decided {decided}, deferred {deferred}, denied {denied}: the inputs did not cover the engine");
    }

    [Fact]
    public void The_kernels_tables_have_the_layout_of_the_dotnet_types()
    {
        Assert.Equal(104, Marshal.SizeOf<NodeVerdict>());
        Assert.Equal(48, Marshal.SizeOf<KernelRule>());
        Assert.Equal(24, Marshal.SizeOf<KernelPolicyHeader>());
        Assert.Equal(128, Marshal.SizeOf<ExtFuse.Kernel.KernelAuditEvent>());
        Assert.Equal(104, Marshal.SizeOf<PolicyTestContext>());
        // The C side asserts the same sizes (_Static_assert in policy.h); loading checks them against the maps.
        using var kernel = new BpfTestRun(Path.Combine(AppContext.BaseDirectory, "extfuse_policy.bpf.o"));
        _ = kernel.Map<ulong, NodeVerdict>("extfuse_verdicts");
        _ = kernel.Map<uint, KernelRule>("extfuse_rules");
    }
}
