using System.Runtime.InteropServices;

namespace ExtFuse.Bpf;

/// <summary>The part of libbpf.so.1's API the loader uses. Pointers come back as nint; libbpf ≥ 1.0 returns NULL and sets errno on failure.</summary>
internal static unsafe partial class LibBpf
{
    private const string L = "libbpf.so.1";

    [StructLayout(LayoutKind.Sequential)]
    public struct OpenOpts
    {
        public nuint Sz;
        public byte* ObjectName;
        public byte RelaxedMaps;
        // The rest of bpf_object_open_opts stays zero: sz tells libbpf how much of it we know.
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TestRunOpts
    {
        public nuint Sz;
        public void* DataIn, DataOut;
        public uint DataSizeIn, DataSizeOut;
        public void* CtxIn, CtxOut;
        public uint CtxSizeIn, CtxSizeOut;
        public uint Retval;
        public int Repeat;
        public uint Duration, Flags, Cpu, BatchSize;
    }

    /// <summary>struct bpf_map_batch_opts.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct BatchOpts
    {
        public nuint Sz;
        public ulong ElemFlags, Flags;
    }

    /// <summary>The head of struct bpf_map_info (the kernel fills as much as the length passed says).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MapInfo
    {
        public uint Type, Id, KeySize, ValueSize, MaxEntries, MapFlags;
        public fixed byte Name[16];
    }

    [LibraryImport(L, SetLastError = true)] public static partial nint bpf_object__open_file(byte* path, OpenOpts* opts);
    [LibraryImport(L, SetLastError = true)] public static partial nint bpf_object__open_mem(byte* buf, nuint size, OpenOpts* opts);
    [LibraryImport(L)] public static partial int bpf_object__load(nint obj);
    [LibraryImport(L)] public static partial void bpf_object__close(nint obj);
    [LibraryImport(L)] public static partial nint bpf_object__next_program(nint obj, nint prev);
    [LibraryImport(L)] public static partial nint bpf_object__next_map(nint obj, nint prev);

    [LibraryImport(L)] public static partial byte* bpf_program__name(nint prog);
    [LibraryImport(L)] public static partial byte* bpf_program__section_name(nint prog);
    [LibraryImport(L)] public static partial int bpf_program__fd(nint prog);
    [LibraryImport(L)] public static partial nuint bpf_program__insn_cnt(nint prog);
    [LibraryImport(L)] public static partial int bpf_program__set_autoload(nint prog, [MarshalAs(UnmanagedType.U1)] bool autoload);
    [LibraryImport(L)] public static partial int bpf_program__set_log_buf(nint prog, byte* buf, nuint size);
    [LibraryImport(L)] public static partial int bpf_program__set_log_level(nint prog, uint level);
    [LibraryImport(L, SetLastError = true)] public static partial nint bpf_program__attach(nint prog);
    [LibraryImport(L)] public static partial int bpf_link__destroy(nint link);
    [LibraryImport(L)] public static partial int bpf_prog_test_run_opts(int fd, TestRunOpts* opts);

    [LibraryImport(L)] public static partial byte* bpf_map__name(nint map);
    [LibraryImport(L)] public static partial int bpf_map__fd(nint map);
    [LibraryImport(L)] public static partial uint bpf_map__key_size(nint map);
    [LibraryImport(L)] public static partial uint bpf_map__value_size(nint map);
    [LibraryImport(L)] public static partial uint bpf_map__max_entries(nint map);
    [LibraryImport(L)] public static partial int bpf_map__type(nint map);

    [LibraryImport(L)] public static partial int bpf_map_lookup_elem(int fd, void* key, void* value);
    [LibraryImport(L)] public static partial int bpf_map_update_elem(int fd, void* key, void* value, ulong flags);
    [LibraryImport(L)] public static partial int bpf_map_delete_elem(int fd, void* key);
    [LibraryImport(L)] public static partial int bpf_map_get_next_key(int fd, void* key, void* nextKey);

    [LibraryImport(L)] public static partial int bpf_map_lookup_batch(int fd, void* inBatch, void* outBatch, void* keys, void* values, uint* count, BatchOpts* opts);
    [LibraryImport(L)] public static partial int bpf_map_update_batch(int fd, void* keys, void* values, uint* count, BatchOpts* opts);
    [LibraryImport(L)] public static partial int bpf_map_delete_batch(int fd, void* keys, uint* count, BatchOpts* opts);
    [LibraryImport(L)] public static partial int bpf_obj_get(byte* path);
    [LibraryImport(L)] public static partial int bpf_obj_pin(int fd, byte* path);
    [LibraryImport(L)] public static partial int bpf_obj_get_info_by_fd(int fd, void* info, uint* length);
    [LibraryImport(L)] public static partial int bpf_prog_load(int type, byte* name, byte* license, ulong* insns, nuint count, void* opts);

    [LibraryImport(L, SetLastError = true)] public static partial nint ring_buffer__new(int mapFd, delegate* unmanaged[Cdecl]<void*, void*, nuint, int> sample, void* ctx, void* opts);
    [LibraryImport(L)] public static partial int ring_buffer__poll(nint rb, int timeoutMs);
    [LibraryImport(L)] public static partial int ring_buffer__consume(nint rb);
    [LibraryImport(L)] public static partial void ring_buffer__free(nint rb);

    [LibraryImport(L, SetLastError = true)] public static partial nint btf__load_vmlinux_btf();
    [LibraryImport(L)] public static partial void btf__free(nint btf);
    [LibraryImport(L)] public static partial int btf__find_by_name_kind(nint btf, byte* name, uint kind);
    [LibraryImport(L)] public static partial uint* btf__type_by_id(nint btf, uint id);
    [LibraryImport(L)] public static partial byte* btf__name_by_offset(nint btf, uint offset);

    [LibraryImport(L)] public static partial nint libbpf_set_print(nint fn);
    [LibraryImport(L)] public static partial int libbpf_probe_bpf_prog_type(int progType, void* opts);
    [LibraryImport(L)] public static partial int libbpf_probe_bpf_map_type(int mapType, void* opts);
    [LibraryImport(L)] public static partial int libbpf_strerror(int err, byte* buf, nuint size);

    [LibraryImport("libc", SetLastError = true)] public static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);
    [LibraryImport("libc")] public static partial int munmap(void* addr, nuint length);
    [LibraryImport("libc")] public static partial int close(int fd);
    [LibraryImport("libc")] public static partial int vsnprintf(byte* buf, nuint size, byte* fmt, nint args);

    /// <summary>libbpf returns -errno from int functions, and NULL with errno set from pointer ones.</summary>
    public static string Describe(int err)
    {
        var buf = stackalloc byte[256];
        libbpf_strerror(err < 0 ? err : -err, buf, 256);
        return Marshal.PtrToStringUTF8((nint)buf) ?? $"error {err}";
    }

    /// <summary>What to say when libbpf.so.1 cannot be loaded at all.</summary>
    public static BpfException Missing(DllNotFoundException e) =>
        new("libbpf.so.1 is not installed: apt-get install libbpf1 (scripts/setup.sh does)", e);

    /// <summary>Pins the map behind <paramref name="fd"/> at <paramref name="path"/> under bpffs.</summary>
    public static void Pin(int fd, string name, string path)
    {
        int err;
        fixed (byte* p = Z(path)) err = bpf_obj_pin(fd, p);
        if (err != 0) throw new BpfException($"cannot pin {name} at {path}: {Describe(err)}" + (Directory.Exists("/sys/fs/bpf") ? "" : " (is bpffs mounted at /sys/fs/bpf?)"));
    }

    public static string Str(byte* p) => Marshal.PtrToStringUTF8((nint)p) ?? "";

    public static byte[] Z(string s) => System.Text.Encoding.UTF8.GetBytes(s + "\0");
}
