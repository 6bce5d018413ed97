/* What generated BPF LSM programs need: the few kernel structs they read (CO-RE, relocated to the
 * running kernel's layout), the mount they are limited to, and the path verdicts the daemon keeps.
 * On a FUSE inode, i_ino is the nodeid the daemon handed out. */
#ifndef EXTFUSE_LSM_H
#define EXTFUSE_LSM_H

#include <bpf/bpf_tracing.h>
#include <extfuse/verdicts.h>

typedef __u32 dev_t;
typedef unsigned short umode_t;

struct super_block { dev_t s_dev; } __attribute__((preserve_access_index));
struct inode { umode_t i_mode; unsigned long i_ino; struct super_block *i_sb; } __attribute__((preserve_access_index));
struct dentry { struct inode *d_inode; } __attribute__((preserve_access_index));
struct path { struct dentry *dentry; } __attribute__((preserve_access_index));
struct file { struct inode *f_inode; unsigned int f_flags; } __attribute__((preserve_access_index));
struct iattr { unsigned int ia_valid; umode_t ia_mode; } __attribute__((preserve_access_index));
struct mnt_idmap;

#define EXTFUSE_S_IFMT 0170000
#define EXTFUSE_S_IFDIR 0040000
#define EXTFUSE_ATTR_MODE 1
#define EXTFUSE_MAY_WRITE 2
#define EXTFUSE_MAY_READ 4

/* Slot 0: the kernel dev_t of the FUSE connection these programs guard (0: none yet, allow all). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} extfuse_mount SEC(".maps");

static __always_inline int extfuse_on_mount(struct inode *inode)
{
	__u32 zero = 0;
	__u32 *dev = bpf_map_lookup_elem(&extfuse_mount, &zero);
	return inode && dev && *dev && inode->i_sb->s_dev == *dev;
}

static __always_inline __u64 extfuse_path_bits(struct inode *inode)
{
	return extfuse_path_bits_of(inode ? inode->i_ino : 0);
}

#endif
