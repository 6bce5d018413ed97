namespace ExtFuse.Bpf;

/// <summary>libbpf's feature probes: each loads a minimal program or creates a minimal map of the type.</summary>
public static class BpfProbe
{
    /// <summary>1 when the kernel loads programs of <paramref name="programType"/> (enum bpf_prog_type), 0 when not, -errno when it cannot tell (-1: not permitted).</summary>
    public static unsafe int ProgramType(int programType)
    {
        try { return LibBpf.libbpf_probe_bpf_prog_type(programType, null); }
        catch (DllNotFoundException e) { throw new BpfException("libbpf.so.1 is not installed: apt-get install libbpf1 (scripts/setup.sh does)", e); }
    }

    public static string Describe(int err) => LibBpf.Describe(err);
}
