/* One trivial program per kernel feature `extfuse caps` asks about. Each is loaded, and
 * attached where it attaches, on its own: a feature is there when its program loads and
 * attaches on the running kernel, whatever the version number says. Every program does
 * nothing and allows everything, so attaching one for a moment changes nothing. */
#include <extfuse/bpf.h>

char LICENSE[] SEC("license") = "GPL";

SEC("syscall")
int probe_syscall(void *ctx)
{
	return 7;
}

SEC("lsm/file_open")
int probe_lsm(unsigned long long *ctx)
{
	return 0;
}

SEC("fentry/vfs_getattr")
int probe_fentry(unsigned long long *ctx)
{
	return 0;
}

SEC("tp_btf/fuse_request_send")
int probe_fuse_tracepoint(unsigned long long *ctx)
{
	return 0;
}
