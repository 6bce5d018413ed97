/* The ExtFUSE ABI (USENIX ATC'19; kernel branch extfuse/linux ExtFUSE-1.0): the program context,
 * the argument selectors, and the two helpers that read a request's arguments and write its reply.
 * Programs built against it attach only to a patched kernel (program type BPF_PROG_TYPE_EXTFUSE,
 * handed over at FUSE_INIT); on stock kernels the same logic is tested through SEC("syscall")
 * wrappers. The helper ids are those of the patched kernel's helper enum; override them with
 * -DEXTFUSE_HELPER_READ_ARGS=N -DEXTFUSE_HELPER_WRITE_ARGS=N for another build of it. */
#ifndef EXTFUSE_EXTFUSE_H
#define EXTFUSE_EXTFUSE_H

#ifndef EXTFUSE_HELPER_READ_ARGS
#define EXTFUSE_HELPER_READ_ARGS 80
#endif
#ifndef EXTFUSE_HELPER_WRITE_ARGS
#define EXTFUSE_HELPER_WRITE_ARGS 81
#endif

typedef enum {
	OPCODE = 0,
	NODEID,
	NUM_IN_ARGS,
	NUM_OUT_ARGS,
	IN_PARAM_0_SIZE,
	IN_PARAM_0_VALUE,
	IN_PARAM_1_SIZE,
	IN_PARAM_1_VALUE,
	IN_PARAM_2_SIZE,
	IN_PARAM_2_VALUE,
	OUT_PARAM_0,
	OUT_PARAM_1,
} extfuse_arg_t;

/* Opaque here: programs reach it only through the helpers. */
struct extfuse_req;

static long (*bpf_extfuse_read_args)(void *req, extfuse_arg_t type, void *out, __u32 size) = (void *)EXTFUSE_HELPER_READ_ARGS;
static long (*bpf_extfuse_write_args)(void *req, extfuse_arg_t type, const void *in, __u32 size) = (void *)EXTFUSE_HELPER_WRITE_ARGS;

/* Return values: 0 served in the kernel, -ENOSYS on to the daemon, other negative an errno. */
#define EXTFUSE_SLOW_PATH (-38)

#endif
