/* The path verdicts the daemon keeps for the kernel side of the rules, shared by the LSM and the
 * ExtFUSE targets: nodeid -> bit i set when path rule i matches that node's path (the daemon
 * matches the globs; BPF cannot). */
#ifndef EXTFUSE_VERDICTS_H
#define EXTFUSE_VERDICTS_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} extfuse_verdicts SEC(".maps");

static __always_inline __u64 extfuse_path_bits_of(__u64 nodeid)
{
	__u64 *bits = nodeid ? bpf_map_lookup_elem(&extfuse_verdicts, &nodeid) : 0;
	return bits ? *bits : 0;
}

#endif
