/* In-kernel FUSE statistics: every request the kernel sends to one connection is counted
 * by opcode, and its latency (send to end) goes into a log2 histogram of microseconds.
 * The daemon writes the connection's device number into `watched` before attaching. */
#include <extfuse/bpf.h>

char LICENSE[] SEC("license") = "GPL";

/* Just the fields read here; CO-RE finds them in the running kernel's layout. */
struct fuse_in_header {
	__u32 len;
	__u32 opcode;
	__u64 unique;
} __attribute__((preserve_access_index));

struct fuse_conn {
	__u32 dev;
} __attribute__((preserve_access_index));

struct fuse_mount {
	struct fuse_conn *fc;
} __attribute__((preserve_access_index));

struct fuse_req {
	struct {
		struct fuse_in_header h;
	} in;
	struct fuse_mount *fm;
} __attribute__((preserve_access_index));

#define EXTFUSE_STATS_BUCKETS 32

/* Must match ExtFuse.Kernel.FuseStatistics.OpStats (size checked when the map is opened). */
struct op_stats {
	__u64 count;
	__u64 completed;
	__u64 total_ns;
	__u64 buckets[EXTFUSE_STATS_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct op_stats);
} ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} started SEC(".maps");

static __always_inline int watching(const struct fuse_req *req)
{
	__u32 zero = 0;
	__u32 *dev = bpf_map_lookup_elem(&watched, &zero);
	return dev && *dev != 0 && req->fm && req->fm->fc && req->fm->fc->dev == *dev;
}

/* Opcodes past the array (CUSE_INIT, 4096) share the last slot. */
static __always_inline __u32 slot(__u32 opcode)
{
	return opcode < 63 ? opcode : 63;
}

SEC("tp_btf/fuse_request_send")
int on_request_send(unsigned long long *ctx)
{
	const struct fuse_req *req = (const struct fuse_req *)ctx[0];
	if (!watching(req))
		return 0;
	__u32 op = slot(req->in.h.opcode);
	struct op_stats *s = bpf_map_lookup_elem(&ops, &op);
	if (s)
		__sync_fetch_and_add(&s->count, 1);
	__u64 unique = req->in.h.unique, now = bpf_ktime_get_ns();
	bpf_map_update_elem(&started, &unique, &now, BPF_ANY);
	return 0;
}

SEC("tp_btf/fuse_request_end")
int on_request_end(unsigned long long *ctx)
{
	const struct fuse_req *req = (const struct fuse_req *)ctx[0];
	if (!watching(req))
		return 0;
	__u64 unique = req->in.h.unique;
	__u64 *t0 = bpf_map_lookup_elem(&started, &unique);
	if (!t0)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *t0;
	bpf_map_delete_elem(&started, &unique);
	__u32 op = slot(req->in.h.opcode);
	struct op_stats *s = bpf_map_lookup_elem(&ops, &op);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->completed, 1);
	__sync_fetch_and_add(&s->total_ns, ns);
	__u64 us = ns / 1000;
	__u32 b = 0;
	for (int i = 0; i < EXTFUSE_STATS_BUCKETS - 1; i++) {
		if (us < 2)
			break;
		us >>= 1;
		b++;
	}
	if (b < EXTFUSE_STATS_BUCKETS)
		__sync_fetch_and_add(&s->buckets[b], 1);
	return 0;
}
