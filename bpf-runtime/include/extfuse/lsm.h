/* BPF LSM programs that enforce a mount's rules in the kernel, before a request reaches FUSE:
 * the [Check] methods of a generated object (it defines EXTFUSE_CHECKS before including this file),
 * then the policy (policy.h). Limited to one mount by its dev_t; nodes are known by the nodeid the
 * daemon handed out (struct fuse_inode). Every refusal goes to the daemon as an audit event.
 *
 * The kernel structs are the few fields read here, relocated to the running kernel's layout (CO-RE).
 * Hooks whose arguments changed across kernels (inode_setattr gained an idmap in 6.8) read them by
 * position at run time. */
#ifndef EXTFUSE_LSM_H
#define EXTFUSE_LSM_H

#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <extfuse/policy.h>

typedef __u32 dev_t;
typedef unsigned short umode_t;
typedef struct { __u32 val; } kuid_t;
typedef struct { __u32 val; } kgid_t;

struct super_block { dev_t s_dev; } __attribute__((preserve_access_index));
struct inode { umode_t i_mode; struct super_block *i_sb; } __attribute__((preserve_access_index));
struct qstr { const unsigned char *name; } __attribute__((preserve_access_index));
struct dentry { struct inode *d_inode; struct qstr d_name; } __attribute__((preserve_access_index));
struct path { struct dentry *dentry; } __attribute__((preserve_access_index));
struct file { struct inode *f_inode; unsigned int f_flags; unsigned int f_mode; } __attribute__((preserve_access_index));
struct iattr { unsigned int ia_valid; umode_t ia_mode; } __attribute__((preserve_access_index));
struct cred { kuid_t fsuid; kgid_t fsgid; } __attribute__((preserve_access_index));
struct task_struct { const struct cred *cred; } __attribute__((preserve_access_index));
struct mnt_idmap;
/* FUSE's own inode: the nodeid the daemon handed out (i_ino is the inode number it reported, which
 * is not the nodeid for a file system that passes its backing store's through, as StackFs does).
 * In the fuse module's BTF, or vmlinux's where FUSE is built in; CO-RE finds it in either. */
struct fuse_inode { struct inode inode; __u64 nodeid; } __attribute__((preserve_access_index));

#define EXTFUSE_S_IFMT 0170000
#define EXTFUSE_S_IFDIR 0040000
#define EXTFUSE_FMODE_READ 1
#define EXTFUSE_FMODE_WRITE 2
#define EXTFUSE_O_TRUNC 01000
#define EXTFUSE_ATTR_MODE 1
#define EXTFUSE_ATTR_SIZE 8
#define EXTFUSE_ATTR_FILE 8192
#define EXTFUSE_MAY_WRITE 2
#define EXTFUSE_MAY_READ 4

/* One request as the hooks see it. */
struct extfuse_lsm_req {
	__u64 nodeid;          /* what a [Check] sees as req->NodeId (FUSE's nodeid of the request) */
	__u32 opcode;          /* FUSE opcode, for [Check] methods */
	__u32 check_ops;       /* the FuseOps bit [Check] methods are selected by */
	__u32 flags, mode;     /* open flags; file mode */
	struct dentry *named;  /* the name made or removed (audit), or 0 */
};

/* One decision of the policy: ops on the bits of a node (child: a name in that directory). */
struct extfuse_lsm_step {
	__u64 node;
	__u32 ops;
	__u32 child; /* the node's child bits (a name not yet made) rather than its own */
	__u32 names; /* the request finds, makes or removes a name: [Hide] rules apply */
};

static __always_inline void extfuse_lsm_audit(const struct extfuse_lsm_req *q, const struct extfuse_caller *who, __u32 ops, int err, __s32 rule, __u32 check)
{
	struct extfuse_audit_event *e = bpf_ringbuf_reserve(&extfuse_audit, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&extfuse_audit_lost, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return;
	}
	e->time_ns = bpf_ktime_get_boot_ns();
	e->nodeid = q->nodeid;
	e->ops = ops;
	e->err = err;
	e->rule = rule;
	e->check = check;
	e->pid = bpf_get_current_pid_tgid(); /* the thread, as FUSE's in.h.pid */
	e->uid = who->uid;
	e->gid = who->gid;
	e->opcode = q->opcode;
	__builtin_memcpy(e->comm, who->comm, sizeof(e->comm));
	e->name[0] = 0;
	struct dentry *named = q->named;
	if (named)
		bpf_probe_read_kernel_str(e->name, sizeof(e->name), BPF_CORE_READ(named, d_name.name));
	bpf_ringbuf_submit(e, 0);
}

/* The policy when inode (the node, or the directory a name is in) is on the guarded mount, else 0.
 * Every hook asks this first and reads nothing more of the file otherwise: they run for every
 * file of the system. */
static __always_inline const struct extfuse_policy_header *extfuse_mounted(struct inode *inode)
{
	const struct extfuse_policy_header *h = extfuse_policy_header();
	return h && h->dev && inode && BPF_CORE_READ(inode, i_sb, s_dev) == h->dev ? h : 0;
}

/* The [Check] methods, then each policy step in order; the first refusal answers (-errno). */
static __always_inline int extfuse_lsm_decide(const struct extfuse_policy_header *h, const struct extfuse_lsm_req *q,
					      const struct extfuse_lsm_step *s1, const struct extfuse_lsm_step *s2)
{
	struct extfuse_caller who = {};
	struct task_struct *task = bpf_get_current_task_btf();
	who.uid = BPF_CORE_READ(task, cred, fsuid.val);
	who.gid = BPF_CORE_READ(task, cred, fsgid.val);
	bpf_get_current_comm(who.comm, sizeof(who.comm));
	__s32 rule = -1;
	int err = 0;
#ifdef EXTFUSE_CHECKS
	struct CheckRequest req = {};
	req.Opcode = q->opcode;
	req.Uid = who.uid;
	req.Gid = who.gid;
	req.Pid = bpf_get_current_pid_tgid();
	req.NodeId = q->nodeid;
	req.Flags = q->flags;
	req.Mode = q->mode;
	err = EXTFUSE_CHECKS(&req, q->check_ops, &rule);
	if (err) {
		extfuse_lsm_audit(q, &who, q->check_ops, err, rule, 1);
		return -err;
	}
#endif
	if (!h->enabled)
		return 0;
	const struct extfuse_lsm_step *steps[2] = { s1, s2 };
#pragma unroll
	for (int i = 0; i < 2; i++) {
		const struct extfuse_lsm_step *s = steps[i];
		if (!s || !s->ops)
			continue;
		struct extfuse_decide_ctx c = {};
		extfuse_policy_bits(&c, s->node, s->child);
		extfuse_policy_caller(&c, &who);
		c.ops = s->ops;
		err = extfuse_policy_decide(h, &c, s->names, &rule);
		if (err) {
			extfuse_lsm_audit(q, &who, s->ops, err, rule, 0);
			return -err;
		}
	}
	return 0;
}

/* The nodeid of an inode of this mount (0 for none). */
static __always_inline __u64 extfuse_ino(struct inode *inode)
{
	if (!inode)
		return 0;
	struct fuse_inode *fi = (void *)((char *)inode - bpf_core_field_offset(struct fuse_inode, inode));
	return BPF_CORE_READ(fi, nodeid);
}

SEC("lsm/file_open")
int BPF_PROG(extfuse_file_open, struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	const struct extfuse_policy_header *h = extfuse_mounted(inode);
	if (!h)
		return 0;
	__u32 fmode = BPF_CORE_READ(file, f_mode), fflags = BPF_CORE_READ(file, f_flags);
	int dir = (BPF_CORE_READ(inode, i_mode) & EXTFUSE_S_IFMT) == EXTFUSE_S_IFDIR;
	/* Reads and writes are granted here, with the descriptor (the page cache and passthrough serve them without the daemon). */
	__u32 ops = dir ? EXTFUSE_OP_READDIR
		: EXTFUSE_OP_OPEN | ((fmode & EXTFUSE_FMODE_READ) ? EXTFUSE_OP_READ : 0)
		  | ((fmode & EXTFUSE_FMODE_WRITE) || (fflags & EXTFUSE_O_TRUNC) ? EXTFUSE_OP_WRITE : 0);
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(inode), .opcode = dir ? EXTFUSE_OPENDIR : EXTFUSE_OPEN,
				     .check_ops = dir ? EXTFUSE_OP_READDIR : EXTFUSE_OP_OPEN, .flags = fflags };
	struct extfuse_lsm_step s = { .node = q.nodeid, .ops = ops };
	return extfuse_lsm_decide(h, &q, &s, 0);
}

/* A name made in dir: the [Check] sees the directory's nodeid, the policy the directory's child bits. */
static __always_inline int extfuse_make(struct inode *dir, struct dentry *dentry, __u32 opcode, __u32 op, __u32 mode)
{
	const struct extfuse_policy_header *h = extfuse_mounted(dir);
	if (!h)
		return 0;
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(dir), .opcode = opcode, .check_ops = op, .mode = mode, .named = dentry };
	struct extfuse_lsm_step s = { .node = q.nodeid, .ops = op, .child = 1, .names = 1 };
	return extfuse_lsm_decide(h, &q, &s, 0);
}

SEC("lsm/inode_create")
int BPF_PROG(extfuse_inode_create, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return extfuse_make(dir, dentry, EXTFUSE_CREATE, EXTFUSE_OP_CREATE, mode);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(extfuse_inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return extfuse_make(dir, dentry, EXTFUSE_MKDIR, EXTFUSE_OP_MKDIR, mode | EXTFUSE_S_IFDIR);
}

SEC("lsm/inode_mknod")
int BPF_PROG(extfuse_inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev)
{
	return extfuse_make(dir, dentry, EXTFUSE_MKNOD, EXTFUSE_OP_MKNOD, mode);
}

SEC("lsm/inode_symlink")
int BPF_PROG(extfuse_inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name)
{
	return extfuse_make(dir, dentry, EXTFUSE_SYMLINK, EXTFUSE_OP_SYMLINK, 0);
}

/* A name removed from dir: the policy decides on the node it names. */
static __always_inline int extfuse_remove(struct inode *dir, struct dentry *dentry, __u32 opcode, __u32 op)
{
	const struct extfuse_policy_header *h = extfuse_mounted(dir);
	if (!h)
		return 0;
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(dir), .opcode = opcode, .check_ops = op, .named = dentry };
	struct extfuse_lsm_step s = { .node = extfuse_ino(BPF_CORE_READ(dentry, d_inode)), .ops = op, .names = 1 };
	return extfuse_lsm_decide(h, &q, &s, 0);
}

SEC("lsm/inode_unlink")
int BPF_PROG(extfuse_inode_unlink, struct inode *dir, struct dentry *dentry)
{
	return extfuse_remove(dir, dentry, EXTFUSE_UNLINK, EXTFUSE_OP_UNLINK);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(extfuse_inode_rmdir, struct inode *dir, struct dentry *dentry)
{
	return extfuse_remove(dir, dentry, EXTFUSE_RMDIR, EXTFUSE_OP_RMDIR);
}

/* Both names of a rename; whether the move changes which rules apply below it is the daemon's to say. */
SEC("lsm/inode_rename")
int BPF_PROG(extfuse_inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir, struct dentry *new_dentry)
{
	const struct extfuse_policy_header *h = extfuse_mounted(old_dir);
	if (!h)
		return 0;
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(old_dir), .opcode = EXTFUSE_RENAME, .check_ops = EXTFUSE_OP_RENAME, .named = old_dentry };
	struct extfuse_lsm_step from = { .node = extfuse_ino(BPF_CORE_READ(old_dentry, d_inode)), .ops = EXTFUSE_OP_RENAME, .names = 1 };
	struct extfuse_lsm_step to = { .node = extfuse_ino(new_dir), .ops = EXTFUSE_OP_RENAME, .child = 1, .names = 1 };
	return extfuse_lsm_decide(h, &q, &from, &to);
}

SEC("lsm/inode_link")
int BPF_PROG(extfuse_inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
{
	const struct extfuse_policy_header *h = extfuse_mounted(dir);
	if (!h)
		return 0;
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(dir), .opcode = EXTFUSE_LINK, .check_ops = EXTFUSE_OP_LINK, .named = new_dentry };
	struct extfuse_lsm_step to = { .node = q.nodeid, .ops = EXTFUSE_OP_LINK, .child = 1, .names = 1 };
	struct extfuse_lsm_step from = { .node = extfuse_ino(BPF_CORE_READ(old_dentry, d_inode)), .ops = EXTFUSE_OP_LINK, .names = 1 };
	return extfuse_lsm_decide(h, &q, &to, &from);
}

/* Arguments by position: (dentry, iattr) before 6.8, (idmap, dentry, iattr) since. */
SEC("lsm/inode_setattr")
int BPF_PROG(extfuse_inode_setattr)
{
	__u64 nargs = bpf_get_func_arg_cnt(ctx), d = 0, a = 0;
	bpf_get_func_arg(ctx, nargs >= 3 ? 1 : 0, &d);
	bpf_get_func_arg(ctx, nargs >= 3 ? 2 : 1, &a);
	struct inode *inode = BPF_CORE_READ((struct dentry *)d, d_inode);
	const struct extfuse_policy_header *h = extfuse_mounted(inode);
	if (!h)
		return 0;
	__u32 valid = BPF_CORE_READ((struct iattr *)a, ia_valid);
	/* truncate(2) by path writes; ftruncate (ATTR_FILE) was granted with its descriptor. */
	__u32 ops = EXTFUSE_OP_SETATTR | ((valid & EXTFUSE_ATTR_SIZE) && !(valid & EXTFUSE_ATTR_FILE) ? EXTFUSE_OP_WRITE : 0);
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(inode), .opcode = EXTFUSE_SETATTR, .check_ops = EXTFUSE_OP_SETATTR,
				     .mode = (valid & EXTFUSE_ATTR_MODE) ? BPF_CORE_READ((struct iattr *)a, ia_mode) : 0 };
	struct extfuse_lsm_step s = { .node = q.nodeid, .ops = ops };
	return extfuse_lsm_decide(h, &q, &s, 0);
}

static __always_inline int extfuse_on_node(struct dentry *dentry, __u32 opcode, __u32 op)
{
	struct inode *inode = BPF_CORE_READ(dentry, d_inode);
	const struct extfuse_policy_header *h = extfuse_mounted(inode);
	if (!h)
		return 0;
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(inode), .opcode = opcode, .check_ops = op };
	struct extfuse_lsm_step s = { .node = q.nodeid, .ops = op };
	return extfuse_lsm_decide(h, &q, &s, 0);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(extfuse_inode_setxattr, struct mnt_idmap *idmap, struct dentry *dentry, const char *name, const void *value, __u64 size, int flags)
{
	return extfuse_on_node(dentry, EXTFUSE_SETXATTR, EXTFUSE_OP_SETXATTR);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(extfuse_inode_removexattr, struct mnt_idmap *idmap, struct dentry *dentry, const char *name)
{
	return extfuse_on_node(dentry, EXTFUSE_REMOVEXATTR, EXTFUSE_OP_REMOVEXATTR);
}

SEC("lsm/inode_getattr")
int BPF_PROG(extfuse_inode_getattr, const struct path *path)
{
	return extfuse_on_node(BPF_CORE_READ(path, dentry), EXTFUSE_GETATTR, EXTFUSE_OP_GETATTR);
}

#ifdef EXTFUSE_CHECKS_READ_WRITE
/* [Check] methods of Read or Write see every read(2) and write(2), cached ones too. */
SEC("lsm/file_permission")
int BPF_PROG(extfuse_file_permission, struct file *file, int mask)
{
	int write = mask & EXTFUSE_MAY_WRITE;
	if (!(mask & (EXTFUSE_MAY_READ | EXTFUSE_MAY_WRITE)))
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	const struct extfuse_policy_header *h = extfuse_mounted(inode);
	if (!h)
		return 0;
	struct extfuse_lsm_req q = { .nodeid = extfuse_ino(inode), .opcode = write ? EXTFUSE_WRITE : EXTFUSE_READ,
				     .check_ops = write ? EXTFUSE_OP_WRITE : EXTFUSE_OP_READ };
	return extfuse_lsm_decide(h, &q, 0, 0);
}
#endif

#endif
