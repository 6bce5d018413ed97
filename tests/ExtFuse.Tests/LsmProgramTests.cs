using ExtFuse.Bpf;
using ExtFuse.Kernel;
using ExtFuse.Tests.Support;

namespace ExtFuse.Tests;

/// <summary>
/// Every LSM program the build produces (the runtime's policy programs and each declarative
/// sample's) through the real verifier: accepted where the kernel has BPF LSM (the kernel lab),
/// reported as skipped, never as rejected, where the kernel refuses LSM programs (this machine).
/// </summary>
[Trait("Category", "KernelLab")]
public class LsmProgramTests
{
    public static TheoryData<string> Objects => new(["extfuse_policy.bpf.o", Samples.Shield.ShieldFileSystem.BpfObject, Samples.Guarded.GuardedFileSystem.BpfObject]);

    [Theory]
    [MemberData(nameof(Objects))]
    public void Every_LSM_program_passes_the_verifier_where_the_kernel_has_BPF_LSM(string name)
    {
        Shell.Run("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
        var lsm = KernelCapabilities.ProbeBpf().Has("BPF LSM");
        var verdicts = BpfVerifier.VerifyEach(Path.Combine(AppContext.BaseDirectory, name));
        var hooks = verdicts.Where(v => v.Section.StartsWith("lsm/", StringComparison.Ordinal)).ToList();
        Assert.True(hooks.Count >= 13, $"{name} has {hooks.Count} LSM programs");
        foreach (var v in hooks)
        {
            if (lsm) Assert.True(v.Accepted, $"{v.Program} ({v.Section}) rejected: {v.Reason}");
            else Assert.True(v.Skipped && !v.Accepted, $"{v.Program} ({v.Section}): {v.Reason}");
        }
        Assert.All(verdicts.Where(v => v.Section == "syscall"), v => Assert.True(v.Accepted, $"{v.Program}: {v.Reason}"));
    }
}
