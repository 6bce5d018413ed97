/* In-kernel FUSE statistics: every request the kernel sends to one connection is counted
 * by opcode, and its latency (send to end) goes into a log2 histogram of microseconds.
 * Requests slower than config.slow_ns (when set) are also sent as events on `slow`.
 * `counters` holds the fast-path and rule hit counts: the daemon maps it into its memory
 * and adds to it atomically (the policy's LSM programs report their refusals to the daemon,
 * which counts them here too).
 * The user writes the connection's device number into `config` before attaching. */
#include <extfuse/bpf.h>

char LICENSE[] SEC("license") = "GPL";

/* Just the fields read here; CO-RE finds them in the running kernel's layout. */
struct fuse_in_header {
	__u32 len;
	__u32 opcode;
	__u64 unique;
	__u64 nodeid;
	__u32 uid;
	__u32 gid;
	__u32 pid;
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

/* Must match ExtFuse.Kernel.FuseStatistics.Config. */
struct config {
	__u32 dev;
	__u32 owner_pid;  /* the daemon that pinned these maps, 0 when none did */
	__u64 slow_ns;    /* 0: no slow-request events */
	__u64 since_ns;   /* CLOCK_MONOTONIC when counting began */
};

/* Must match ExtFuse.Kernel.SlowRequest. */
struct slow_request {
	__u64 unique;
	__u64 nodeid;
	__u64 latency_ns;
	__u32 opcode;
	__u32 pid;
};

#define EXTFUSE_COUNTERS 384 /* 64 opcodes, then 320 rules: 64 [Check] methods and a 256-rule policy */
#define EXTFUSE_RULE_NAME 64

struct rule_name {
	char name[EXTFUSE_RULE_NAME];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} slow SEC(".maps");

/* [0, 64): requests a fast path answered, by opcode slot; [64, 256): hits of rule i - 64. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, EXTFUSE_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXTFUSE_COUNTERS - 64);
	__type(key, __u32);
	__type(value, struct rule_name);
} rule_names SEC(".maps");

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

static __always_inline struct config *watching(const struct fuse_req *req)
{
	__u32 zero = 0;
	struct config *c = bpf_map_lookup_elem(&config, &zero);
	if (c && c->dev != 0 && req->fm && req->fm->fc && req->fm->fc->dev == c->dev)
		return c;
	return 0;
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
	struct config *c = watching(req);
	if (!c)
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
	if (c->slow_ns && ns >= c->slow_ns) {
		struct slow_request *e = bpf_ringbuf_reserve(&slow, sizeof(*e), 0);
		if (e) {
			e->unique = unique;
			e->nodeid = req->in.h.nodeid;
			e->latency_ns = ns;
			e->opcode = req->in.h.opcode;
			e->pid = req->in.h.pid;
			bpf_ringbuf_submit(e, 0);
		}
	}
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
