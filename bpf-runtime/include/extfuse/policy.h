/* The access policy in the kernel: the rules the daemon compiled (extfuse_rules, in precedence
 * order), what they say of each node's path (extfuse_verdicts: nodeid -> rule bits, computed by the
 * daemon, which matches the globs), and the engine that decides a request from them. It is the twin
 * of ExtFuse.Policy.AccessPolicy.Decide (the tests run both on the same inputs through
 * test_policy). The kernel only refuses what it can decide exactly; anything else (a node it has
 * no verdict for, a name some glob may match, a cgroup that did not exist at load) goes on to the
 * daemon, which decides every request that reaches it. */
#ifndef EXTFUSE_POLICY_H
#define EXTFUSE_POLICY_H

#include <extfuse/ops.h>

#define EXTFUSE_MAX_RULES 256

/* struct NodeVerdict / KernelRule / KernelPolicyHeader of ExtFuse.Policy (layouts checked by tests). */
struct extfuse_rule_bits {
	__u64 w[EXTFUSE_MAX_RULES / 64];
};

struct extfuse_node_verdict {
	struct extfuse_rule_bits self;       /* rules whose glob matches the node's path */
	struct extfuse_rule_bits child_all;  /* directories: rules matching every child name */
	struct extfuse_rule_bits child_some; /* directories: rules matching some child names */
	__u32 flags;
	__u32 generation;
};
#define EXTFUSE_VERDICT_UNDECIDED 1

struct extfuse_rule {
	__u32 ops; /* FuseOps bits; 0: never applies here */
	__s32 err; /* 0: allow */
	__u32 conditions;
	__u32 uid;
	__u32 gid;
	__u32 cgroup_level;
	__u64 cgroup_id; /* 0: the cgroup did not exist at load, only the daemon can tell */
	char comm[16];
};
#define EXTFUSE_RULE_PATH 1
#define EXTFUSE_RULE_UID 2
#define EXTFUSE_RULE_GID 4
#define EXTFUSE_RULE_COMM 8
#define EXTFUSE_RULE_CGROUP 16
#define EXTFUSE_RULE_HIDE 32 /* [Hide]: decided before the other rules, for names being made */

struct extfuse_policy_header {
	__u32 enabled; /* 0 while the daemon rewrites the tables: everything goes to the daemon */
	__u32 rule_count;
	__u32 default_ops;
	__s32 default_err;
	__u32 dev; /* the FUSE mount's dev_t */
	__u32 generation;
};

_Static_assert(sizeof(struct extfuse_node_verdict) == 104, "NodeVerdict is 104 bytes in .NET");
_Static_assert(sizeof(struct extfuse_rule) == 48, "KernelRule is 48 bytes in .NET");
_Static_assert(sizeof(struct extfuse_policy_header) == 24, "KernelPolicyHeader is 24 bytes in .NET");

/* A refused request, for the daemon's audit log and counters (struct AuditEvent in .NET). */
struct extfuse_audit_event {
	__u64 time_ns; /* CLOCK_BOOTTIME */
	__u64 nodeid;  /* the node, or for a name being made, its directory */
	__u32 ops;
	__s32 err;
	__s32 rule;    /* the policy's rule, -1: its default; with check: the [Check] method's index */
	__u32 check;
	__u32 pid;
	__u32 uid;
	__u32 gid;
	__u32 opcode;  /* the FUSE opcode the hook stands for */
	char comm[16];
	char name[64]; /* the name being made or removed, "" for the node itself */
};
_Static_assert(sizeof(struct extfuse_audit_event) == 128, "AuditEvent is 128 bytes in .NET");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct extfuse_policy_header);
} extfuse_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXTFUSE_MAX_RULES);
	__type(key, __u32);
	__type(value, struct extfuse_rule);
} extfuse_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, __u64);
	__type(value, struct extfuse_node_verdict);
} extfuse_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} extfuse_audit SEC(".maps");

/* Slot 0: audit events the ring buffer had no room for (the daemon's count of denials misses them). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} extfuse_audit_lost SEC(".maps");

/* What the engine returns besides 0 (allow) and a positive errno: not decidable here. */
#define EXTFUSE_DEFER (-1)

struct extfuse_caller {
	__u32 uid;
	__u32 gid;
	char comm[16];
};

/* One decision's state for the bpf_loop callback (on the caller's stack). */
struct extfuse_decide_ctx {
	__u64 match[EXTFUSE_MAX_RULES / 64];
	__u64 maybe[EXTFUSE_MAX_RULES / 64];
	__u64 comm_lo, comm_hi;
	__u32 ops;
	__u32 uid;
	__u32 gid;
	__u32 hide_pass; /* 1: only [Hide] rules; 0: only the others */
	__s32 result;
	__s32 rule;
	__u32 decided;
	__u32 deferred;
};


static __always_inline __u64 extfuse_word(const __u64 *w, __u32 i)
{
	/* Constant offsets only: the verifier bounds them without tracking the index. */
	switch ((i >> 6) & 3) {
	case 0: return w[0];
	case 1: return w[1];
	case 2: return w[2];
	default: return w[3];
	}
}

static long extfuse_rule_step(__u32 i, void *data)
{
	struct extfuse_decide_ctx *c = data;
	struct extfuse_rule *r = bpf_map_lookup_elem(&extfuse_rules, &i);
	if (!r)
		return 1;
	if (!(r->ops & c->ops) || !!(r->conditions & EXTFUSE_RULE_HIDE) != c->hide_pass)
		return 0;
	if ((r->conditions & EXTFUSE_RULE_UID) && r->uid != c->uid)
		return 0;
	if ((r->conditions & EXTFUSE_RULE_GID) && r->gid != c->gid)
		return 0;
	if (r->conditions & EXTFUSE_RULE_COMM) {
		__u64 lo, hi;
		__builtin_memcpy(&lo, r->comm, 8);
		__builtin_memcpy(&hi, r->comm + 8, 8);
		if (lo != c->comm_lo || hi != c->comm_hi)
			return 0;
	}
	if (r->conditions & EXTFUSE_RULE_CGROUP) {
		if (!r->cgroup_id) {
			c->result = EXTFUSE_DEFER;
			c->rule = i;
			c->decided = 1;
			return 1;
		}
		if (bpf_get_current_ancestor_cgroup_id(r->cgroup_level) != r->cgroup_id)
			return 0;
	}
	if (r->conditions & EXTFUSE_RULE_PATH) {
		__u64 bit = 1ULL << (i & 63);
		if (extfuse_word(c->maybe, i) & bit) {
			c->result = EXTFUSE_DEFER;
			c->rule = i;
			c->decided = 1;
			return 1;
		}
		if (!(extfuse_word(c->match, i) & bit))
			return 0;
	}
	c->result = r->err;
	c->rule = i;
	c->decided = 1;
	return 1;
}

/* The policy's answer for ops by this caller, from the rule bits of the path (match: the glob
 * matches; maybe: it may, only the daemon can tell). A request performing several operations is
 * allowed when each of them is: each is decided by the first rule that names it and matches, names
 * being made (names) first meeting the [Hide] rules, and the first refused one answers. 0: allow,
 * or go on to the daemon (c->deferred: the bits could not tell); a positive errno: refuse, with
 * *rule the rule that did (-1: the default). */
static __always_inline int extfuse_policy_decide(const struct extfuse_policy_header *h, struct extfuse_decide_ctx *c, int names, __s32 *rule)
{
	__u32 n = h->rule_count < EXTFUSE_MAX_RULES ? h->rule_count : EXTFUSE_MAX_RULES;
	__u32 ops = c->ops;
	*rule = -1;
	c->deferred = 0;
	for (int b = 0; b < EXTFUSE_OPS; b++) {
		__u32 bit = 1u << b;
		if (!(ops & bit))
			continue;
		c->ops = bit;
		c->result = 0;
		c->decided = 0;
		if (names) {
			c->hide_pass = 1;
			bpf_loop(n, extfuse_rule_step, c, 0);
		}
		if (!c->decided) {
			c->hide_pass = 0;
			bpf_loop(n, extfuse_rule_step, c, 0);
		}
		if (c->decided && c->result == EXTFUSE_DEFER) {
			/* A later refusal might not be the daemon's first: leave the whole request to it. */
			c->deferred = 1;
			return 0;
		}
		int err = c->decided ? c->result : (bit & h->default_ops) ? h->default_err : 0;
		if (err > 0) {
			*rule = c->decided ? c->rule : -1;
			return err;
		}
	}
	return 0;
}

/* Fills the decision's path bits from a node's verdict: for the node itself, or for a name in it
 * (a directory). No verdict, or an undecided one: every path rule is a "maybe". */
static __always_inline void extfuse_policy_bits(struct extfuse_decide_ctx *c, __u64 nodeid, int child)
{
	struct extfuse_node_verdict *v = nodeid ? bpf_map_lookup_elem(&extfuse_verdicts, &nodeid) : 0;
	if (!v || (v->flags & EXTFUSE_VERDICT_UNDECIDED)) {
#pragma unroll
		for (int i = 0; i < EXTFUSE_MAX_RULES / 64; i++) {
			c->match[i] = 0;
			c->maybe[i] = ~0ULL;
		}
		return;
	}
#pragma unroll
	for (int i = 0; i < EXTFUSE_MAX_RULES / 64; i++) {
		c->match[i] = child ? v->child_all.w[i] : v->self.w[i];
		c->maybe[i] = child ? v->child_some.w[i] : 0;
	}
}

static __always_inline void extfuse_policy_caller(struct extfuse_decide_ctx *c, const struct extfuse_caller *who)
{
	c->uid = who->uid;
	c->gid = who->gid;
	__builtin_memcpy(&c->comm_lo, who->comm, 8);
	__builtin_memcpy(&c->comm_hi, who->comm + 8, 8);
}

static __always_inline const struct extfuse_policy_header *extfuse_policy_header(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&extfuse_policy, &zero);
}

/* BPF_PROG_TEST_RUN context of test_policy: the engine on given bits and caller (no cgroup rules). */
struct extfuse_policy_test {
	struct extfuse_rule_bits match;
	struct extfuse_rule_bits maybe;
	struct extfuse_caller caller;
	__u32 ops;
	__u32 child;
	__s32 result;
	__s32 rule;
};

/* The engine on a test context: what ExtFuse.Policy.AccessPolicy.DecideLikeKernel must agree with. */
SEC("syscall")
int test_policy(struct extfuse_policy_test *ctx)
{
	const struct extfuse_policy_header *h = extfuse_policy_header();
	if (!h)
		return 0;
	struct extfuse_decide_ctx c = {};
#pragma unroll
	for (int i = 0; i < EXTFUSE_MAX_RULES / 64; i++) {
		c.match[i] = ctx->match.w[i];
		c.maybe[i] = ctx->maybe.w[i];
	}
	struct extfuse_caller who = ctx->caller;
	extfuse_policy_caller(&c, &who);
	c.ops = ctx->ops;
	__s32 rule = -1;
	int err = extfuse_policy_decide(h, &c, ctx->child, &rule);
	ctx->result = c.deferred ? EXTFUSE_DEFER : err;
	ctx->rule = rule;
	return 0;
}

#endif
