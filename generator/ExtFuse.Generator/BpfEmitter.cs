using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

namespace ExtFuse.Generator;

/// <summary>
/// The BPF C of a [FileSystem] model, for two targets from one body of translated code:
/// <list type="bullet">
/// <item><c>X.bpf.c</c> for stock kernels: BPF LSM programs limited to this mount that run the
/// [Check] and [Deny] rules before a request reaches FUSE, and SEC("syscall") wrappers that run the
/// same functions on a test context through BPF_PROG_TEST_RUN;</item>
/// <item><c>X.extfuse.bpf.c</c> for ExtFUSE kernels: the <c>extfuse</c> main program tail-calling
/// <c>extfuse/&lt;OPCODE&gt;</c> programs that run the rules and the [FastPath] methods.</item>
/// </list>
/// </summary>
internal static class BpfEmitter
{
    /// <summary>One operation as the kernel sees it: FuseOps bit, FUSE opcode and name, and the LSM hook that precedes it.</summary>
    private sealed record Op(uint Bit, int Opcode, string Name, string? Hook, string Params, string Inode, string Victim, string Fields);

    // Lookup has no LSM hook before FUSE (the daemon decides it); Read and Write share file_permission.
    private static readonly Op[] Ops =
    [
        new(1 << 0, 1, "LOOKUP", null, "", "", "", ""),
        new(1 << 1, 3, "GETATTR", "inode_getattr", "const struct path *path", "path->dentry->d_inode", "path->dentry->d_inode", ""),
        new(1 << 2, 4, "SETATTR", "inode_setattr", "struct mnt_idmap *idmap, struct dentry *dentry, struct iattr *attr", "dentry->d_inode", "dentry->d_inode",
            "req.Mode = (attr->ia_valid & EXTFUSE_ATTR_MODE) ? attr->ia_mode : 0;"),
        new(1 << 3, 14, "OPEN", "file_open", "struct file *file", "file->f_inode", "file->f_inode",
            "if ((file->f_inode->i_mode & EXTFUSE_S_IFMT) == EXTFUSE_S_IFDIR) return 0; /* OPENDIR */\n\treq.Flags = file->f_flags;"),
        new(1 << 4, 35, "CREATE", "inode_create", "struct inode *dir, struct dentry *dentry, umode_t mode", "dir", "0", "req.Mode = mode;"),
        new(1 << 5, 15, "READ", "file_permission", "struct file *file, int mask", "file->f_inode", "file->f_inode", ""),
        new(1 << 6, 16, "WRITE", "file_permission", "struct file *file, int mask", "file->f_inode", "file->f_inode", ""),
        new(1 << 7, 10, "UNLINK", "inode_unlink", "struct inode *dir, struct dentry *dentry", "dir", "dentry->d_inode", ""),
        new(1 << 8, 9, "MKDIR", "inode_mkdir", "struct inode *dir, struct dentry *dentry, umode_t mode", "dir", "0", "req.Mode = mode | EXTFUSE_S_IFDIR;"),
        new(1 << 9, 11, "RMDIR", "inode_rmdir", "struct inode *dir, struct dentry *dentry", "dir", "dentry->d_inode", ""),
        new(1 << 10, 12, "RENAME", "inode_rename", "struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir, struct dentry *new_dentry", "old_dir", "old_dentry->d_inode", ""),
        new(1 << 11, 13, "LINK", "inode_link", "struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry", "dir", "old_dentry->d_inode", ""),
        new(1 << 12, 6, "SYMLINK", "inode_symlink", "struct inode *dir, struct dentry *dentry, const char *old_name", "dir", "0", ""),
        new(1 << 13, 8, "MKNOD", "inode_mknod", "struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev", "dir", "0", "req.Mode = mode;"),
        new(1 << 14, 21, "SETXATTR", "inode_setxattr", "struct mnt_idmap *idmap, struct dentry *dentry, const char *name, const void *value, __u64 size, int flags", "dentry->d_inode", "dentry->d_inode", ""),
        new(1 << 15, 24, "REMOVEXATTR", "inode_removexattr", "struct mnt_idmap *idmap, struct dentry *dentry, const char *name", "dentry->d_inode", "dentry->d_inode", ""),
    ];

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    private static uint RuleOps(FileSystemModel m) =>
        m.Checks.Aggregate(0u, (a, c) => a | c.Ops) | m.PathRules.Where(r => r.Kind == "Deny").Aggregate(0u, (a, r) => a | r.Ops);

    private static bool UsesComm(FileSystemModel m) => m.PathRules.Any(r => r.Kind == "Deny" && r.Comm is not null);

    /// <summary>Structs, maps, the translated methods, and one function that applies every rule to a request.</summary>
    private static void Common(StringBuilder sb, FileSystemModel m, string file, string afterStructs = "")
    {
        sb.Append(m.CStructs).Append('\n').Append(afterStructs);
        foreach (var map in m.Maps)
            sb.Append($$"""
                /* KernelMap<{{map.KeyType}}, {{map.ValueType}}> {{m.ClassName}}.{{map.Name}} */
                struct {
                	__uint(type, BPF_MAP_TYPE_HASH);
                	__uint(max_entries, {{map.MaxEntries}});
                	__type(key, {{map.KeyCType}});
                	__type(value, {{map.ValueCType}});
                } {{map.Name}} SEC(".maps");


                """);
        sb.Append(m.CFunctions);
        // Back to this file's own numbering (C has no "#line default"): the directive names the next line.
        sb.Append($"#line {sb.ToString().Count(c => c == '\n') + 2} \"{file}\"\n");
        if (UsesComm(m))
            sb.Append("""

                static __always_inline int extfuse_comm_is(const char *comm, const char *want)
                {
                	for (int i = 0; i < 16; i++) {
                		if (comm[i] != want[i])
                			return 0;
                		if (!want[i])
                			return 1;
                	}
                	return 1;
                }

                """);
        sb.Append($$"""

            /* Every [Check] and [Deny] rule that applies to the operations in ops, in declaration order:
             * 0 to allow, else the errno of the first rule that refuses. paths: bit i when path rule i
             * matches (the daemon matches the globs). comm: the caller's process name. */
            static __always_inline int {{m.ClassName}}_rules(const struct CheckRequest *req, __u32 ops, __u64 paths, const char *comm)
            {
            	int err;

            """);
        foreach (var c in m.Checks)
            sb.Append($"\tif (ops & {Hex(c.Ops)}) {{\n\t\terr = {c.CFunction}(req);\n\t\tif (err)\n\t\t\treturn err;\n\t}}\n");
        var index = 0;
        foreach (var r in m.PathRules)
        {
            var bit = index++;
            if (r.Kind != "Deny") continue;
            var cond = new List<string> { $"(ops & {Hex(r.Ops)})" };
            if (r.Glob is not null) cond.Add($"(paths & (1ULL << {bit}))");
            if (r.Uid >= 0) cond.Add($"req->Uid == {r.Uid}U");
            if (r.Gid >= 0) cond.Add($"req->Gid == {r.Gid}U");
            if (r.Comm is not null) cond.Add($"extfuse_comm_is(comm, \"{r.Comm}\")");
            sb.Append($"\tif ({string.Join(" && ", cond)})\n\t\treturn {r.Errno}; // [Deny] {r.Glob}\n");
        }
        sb.Append("\treturn 0;\n}\n");
    }

    /// <summary>The caller's ids into req, and its process name into comm when a rule names one (a null comm otherwise, where needed).</summary>
    private static string CallerAndComm(FileSystemModel m, bool needsComm) =>
        "\t__u64 ids = bpf_get_current_uid_gid();\n\treq.Uid = (__u32)ids;\n\treq.Gid = (__u32)(ids >> 32);\n\treq.Pid = bpf_get_current_pid_tgid() >> 32;\n" +
        (UsesComm(m) ? "\tchar comm[16] = {};\n\tbpf_get_current_comm(comm, sizeof(comm));\n" : needsComm ? "\tconst char *comm = 0;\n" : "");

    public static string FileName(FileSystemModel m) => $"{m.FullName}.bpf.c";
    public static string ExtFuseFileName(FileSystemModel m) => $"{m.FullName}.extfuse.bpf.c";

    /// <summary>Stock kernels: LSM programs and the syscall test wrappers.</summary>
    public static string Stock(FileSystemModel m)
    {
        var file = FileName(m);
        var sb = new StringBuilder();
        sb.Append($"/* <auto-generated/> by ExtFuse.Generator from {m.FullName}. Do not edit: change the C# and rebuild. */\n");
        sb.Append("#include <extfuse/bpf.h>\n#include <extfuse/lsm.h>\n\n");
        Common(sb, m, file, TestContexts(m));
        var ops = RuleOps(m);
        foreach (var hook in Ops.Where(o => o.Hook is not null && (ops & o.Bit) != 0).GroupBy(o => o.Hook))
        {
            var op = hook.First();
            sb.Append($"\nSEC(\"lsm/{op.Hook}\")\nint BPF_PROG({m.ClassName}_{op.Hook}, {op.Params})\n{{\n");
            sb.Append($"\tstruct inode *inode = {op.Inode};\n\tif (!extfuse_on_mount(inode))\n\t\treturn 0;\n");
            sb.Append("\tstruct CheckRequest req = {};\n");
            if (op.Hook == "file_permission")
            {
                sb.Append("\t__u32 ops = 0;\n");
                foreach (var o in hook)
                    sb.Append($"\tif (mask & EXTFUSE_MAY_{o.Name}) {{\n\t\tops |= {Hex(o.Bit)};\n\t\treq.Opcode = {o.Opcode};\n\t}}\n");
                sb.Append("\tif (!ops)\n\t\treturn 0;\n");
            }
            else sb.Append($"\t__u32 ops = {Hex(op.Bit)};\n\treq.Opcode = {op.Opcode};\n");
            sb.Append("\treq.NodeId = inode->i_ino;\n");
            if (op.Fields.Length > 0) sb.Append('\t').Append(op.Fields).Append('\n');
            sb.Append(CallerAndComm(m, needsComm: true));
            sb.Append($"\tstruct inode *victim = {op.Victim};\n");
            sb.Append($"\treturn -{m.ClassName}_rules(&req, ops, extfuse_path_bits(victim), comm);\n}}\n");
        }
        foreach (var c in m.Checks)
            sb.Append($$"""

                SEC("syscall")
                int test_{{c.Name}}(struct extfuse_check_test *ctx)
                {
                	struct CheckRequest req = ctx->req; /* the checks read a stack copy */
                	ctx->result = {{c.CFunction}}(&req);
                	return 0;
                }

                """);
        foreach (var f in m.FastPaths)
            sb.Append($$"""

                SEC("syscall")
                int test_{{f.Name}}(struct extfuse_fastpath_test *ctx)
                {
                	struct CheckRequest req = ctx->req;
                	struct FuseAttrOut reply;
                	/* Word by word at constant offsets: the verifier refuses a copy through a moved context pointer. */
                	volatile __u64 *words = (volatile __u64 *)ctx;
                	const int at = __builtin_offsetof(struct extfuse_fastpath_test, reply) / 8;
                #pragma unroll
                	for (int i = 0; i < (int)(sizeof(reply) / 8); i++)
                		((__u64 *)&reply)[i] = words[at + i];
                	ctx->result = {{f.CFunction}}(&req, &reply);
                #pragma unroll
                	for (int i = 0; i < (int)(sizeof(reply) / 8); i++)
                		words[at + i] = ((__u64 *)&reply)[i];
                	return 0;
                }

                """);
        sb.Append($$"""

            SEC("syscall")
            int test_rules(struct extfuse_rules_test *ctx)
            {
            	struct CheckRequest req = ctx->req;
            	char comm[16];
            	__builtin_memcpy(comm, ctx->comm, sizeof(comm));
            	ctx->result = {{m.ClassName}}_rules(&req, ctx->ops, ctx->paths, comm);
            	return 0;
            }

            char LICENSE[] SEC("license") = "GPL";

            """);
        return sb.ToString();
    }

    /// <summary>The BPF_PROG_TEST_RUN contexts of the wrappers, after the generated structs.</summary>
    private static string TestContexts(FileSystemModel m)
    {
        var contexts = new StringBuilder("""
            /* BPF_PROG_TEST_RUN contexts of the syscall wrappers: inputs in, the verdict out. */
            struct extfuse_check_test {
            	struct CheckRequest req;
            	__s32 result;
            	__u32 padding;
            };
            struct extfuse_rules_test {
            	struct CheckRequest req;
            	__u32 ops;
            	__s32 result;
            	__u64 paths;
            	char comm[16];
            };

            """);
        if (m.FastPaths.Count > 0)
            contexts.Append("""
                struct extfuse_fastpath_test {
                	struct CheckRequest req;
                	struct FuseAttrOut reply;
                	__s32 result;
                	__u32 padding;
                };

                """);
        return contexts.ToString();
    }

    /// <summary>ExtFUSE kernels: per-opcode programs behind one tail-calling main program.</summary>
    public static string ExtFuse(FileSystemModel m)
    {
        var file = ExtFuseFileName(m);
        var sb = new StringBuilder();
        sb.Append($"/* <auto-generated/> by ExtFuse.Generator from {m.FullName} for ExtFUSE kernels. Do not edit: change the C# and rebuild. */\n");
        sb.Append("#include <extfuse/bpf.h>\n#include <extfuse/extfuse.h>\n#include <extfuse/verdicts.h>\n\n");
        Common(sb, m, file);
        var ops = RuleOps(m) | m.FastPaths.Aggregate(0u, (a, f) => a | f.Op);
        var handled = Ops.Where(o => (ops & o.Bit) != 0).ToList();
        foreach (var op in handled)
        {
            sb.Append($"\nSEC(\"extfuse/{op.Name}\")\nint {m.ClassName}_{op.Name.ToLowerInvariant()}(struct extfuse_req *ereq)\n{{\n");
            sb.Append($"\tstruct CheckRequest req = {{ .Opcode = {op.Opcode} }};\n");
            sb.Append("\tbpf_extfuse_read_args(ereq, NODEID, &req.NodeId, sizeof(req.NodeId));\n");
            if (op.Name == "OPEN") sb.Append("\tbpf_extfuse_read_args(ereq, IN_PARAM_0_VALUE, &req.Flags, sizeof(req.Flags)); /* fuse_open_in.flags */\n");
            if (op.Name is "CREATE" or "MKNOD" or "MKDIR") sb.Append($"\tbpf_extfuse_read_args(ereq, IN_PARAM_0_VALUE, &req.{(op.Name == "CREATE" ? "Flags" : "Mode")}, sizeof(__u32));\n");
            sb.Append(CallerAndComm(m, needsComm: false));
            if ((RuleOps(m) & op.Bit) != 0)
                sb.Append($"\tint err = {m.ClassName}_rules(&req, {Hex(op.Bit)}, extfuse_path_bits_of(req.NodeId), {(UsesComm(m) ? "comm" : "0")});\n\tif (err)\n\t\treturn -err;\n");
            if (m.FastPaths.FirstOrDefault(f => f.Op == op.Bit) is { } fast)
                sb.Append($$"""
                    	struct FuseAttrOut reply = {};
                    	int served = {{fast.CFunction}}(&req, &reply);
                    	if (served == 0) {
                    		bpf_extfuse_write_args(ereq, OUT_PARAM_0, &reply, sizeof(reply));
                    		return 0;
                    	}
                    	if (served > 0)
                    		return -served;

                    """);
            sb.Append("\treturn EXTFUSE_SLOW_PATH;\n}\n");
        }
        sb.Append("\n/* opcode -> program, filled by libbpf when the object loads */\nstruct {\n\t__uint(type, BPF_MAP_TYPE_PROG_ARRAY);\n\t__uint(max_entries, 64);\n\t__type(key, __u32);\n\t__array(values, int(struct extfuse_req *));\n} extfuse_handlers SEC(\".maps\") = {\n\t.values = {\n");
        foreach (var op in handled) sb.Append($"\t\t[{op.Opcode}] = (void *)&{m.ClassName}_{op.Name.ToLowerInvariant()},\n");
        sb.Append("\t},\n};\n");
        sb.Append("""

            SEC("extfuse")
            int extfuse_main(struct extfuse_req *ereq)
            {
            	__u32 opcode = 0;
            	bpf_extfuse_read_args(ereq, OPCODE, &opcode, sizeof(opcode));
            	bpf_tail_call(ereq, &extfuse_handlers, opcode & 63);
            	return EXTFUSE_SLOW_PATH; /* no program for this opcode */
            }

            char LICENSE[] SEC("license") = "GPL";

            """);
        return sb.ToString();
    }
}
