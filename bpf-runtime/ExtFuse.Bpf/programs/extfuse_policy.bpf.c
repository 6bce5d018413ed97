/* The access policy of a mount in BPF LSM programs, for file systems without generated rules (a
 * StackFs with a policy file): the hooks and the engine of extfuse/lsm.h and extfuse/policy.h,
 * filled and attached by the daemon (ExtFuse.Kernel.KernelPolicy). */
#include <extfuse/bpf.h>
#include <extfuse/lsm.h>

char LICENSE[] SEC("license") = "GPL";
