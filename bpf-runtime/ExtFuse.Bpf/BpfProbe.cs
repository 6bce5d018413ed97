using System.Runtime.InteropServices;

namespace ExtFuse.Bpf;

/// <summary>libbpf's feature probes: each loads a minimal program or creates a minimal map of the type.</summary>
public static class BpfProbe
{
    /// <summary>1 when the kernel loads programs of <paramref name="programType"/> (enum bpf_prog_type), 0 when not, -errno when it cannot tell (-1: not permitted).</summary>
    public static unsafe int ProgramType(int programType)
    {
        try { return LibBpf.libbpf_probe_bpf_prog_type(programType, null); }
        catch (DllNotFoundException e) { throw LibBpf.Missing(e); }
    }

    public static string Describe(int err) => LibBpf.Describe(err);

    /// <summary>
    /// The value of <paramref name="enumerator"/> in the running kernel's enum <paramref name="enumName"/>,
    /// read from its BTF (/sys/kernel/btf/vmlinux); null when the enum lacks it.
    /// </summary>
    public static unsafe int? BtfEnumValue(string enumName, string enumerator)
    {
        const uint BtfKindEnum = 6;
        nint btf;
        try { btf = LibBpf.btf__load_vmlinux_btf(); }
        catch (DllNotFoundException e) { throw LibBpf.Missing(e); }
        if (btf == 0) throw new BpfException($"cannot read the kernel's BTF: {Describe(Marshal.GetLastPInvokeError())}");
        try
        {
            int id;
            fixed (byte* n = LibBpf.Z(enumName)) id = LibBpf.btf__find_by_name_kind(btf, n, BtfKindEnum);
            if (id <= 0) return null;
            // struct btf_type { u32 name_off, info, size; } followed by vlen x struct btf_enum { u32 name_off; s32 val; }
            var t = LibBpf.btf__type_by_id(btf, (uint)id);
            var vlen = (int)(t[1] & 0xffff);
            for (var i = 0; i < vlen; i++)
                if (LibBpf.Str(LibBpf.btf__name_by_offset(btf, t[3 + 2 * i])) == enumerator) return (int)t[4 + 2 * i];
            return null;
        }
        finally { LibBpf.btf__free(btf); }
    }

    /// <summary>Loads "r0 = 0; exit" as a program of <paramref name="programType"/>: 0 when the kernel accepts it, else -errno.</summary>
    public static unsafe int LoadTrivial(int programType)
    {
        ulong* insns = stackalloc ulong[] { 0x00000000000000b7UL, 0x0000000000000095UL }; // BPF_MOV64_IMM(r0, 0); BPF_EXIT
        int fd;
        fixed (byte* license = "GPL\0"u8) fd = LibBpf.bpf_prog_load(programType, null, license, insns, 2, null);
        if (fd < 0) return fd;
        LibBpf.close(fd);
        return 0;
    }
}
