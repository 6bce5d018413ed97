using System.Runtime.InteropServices;

namespace ExtFuse.Sandbox;

/// <summary>
/// Landlock (Linux 5.13+): confines the calling thread, and every process it starts, to the paths
/// given. Everything else is refused by the kernel, whatever the file permissions say. Rights the
/// running kernel's Landlock ABI knows are handled; newer ones are left alone.
/// </summary>
public static unsafe class Landlock
{
    // LANDLOCK_ACCESS_FS_*
    private const ulong Execute = 1 << 0, WriteFile = 1 << 1, ReadFile = 1 << 2, ReadDir = 1 << 3, RemoveDir = 1 << 4, RemoveFile = 1 << 5,
        MakeChar = 1 << 6, MakeDir = 1 << 7, MakeReg = 1 << 8, MakeSock = 1 << 9, MakeFifo = 1 << 10, MakeBlock = 1 << 11, MakeSym = 1 << 12,
        Refer = 1 << 13, Truncate = 1 << 14, IoctlDev = 1 << 15;
    private const ulong ReadOnly = Execute | ReadFile | ReadDir;

    private const long SysCreateRuleset = 444, SysAddRule = 445, SysRestrictSelf = 446;

    [StructLayout(LayoutKind.Sequential)]
    private struct RulesetAttr { public ulong HandledAccessFs; }

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private struct PathBeneath { public ulong AllowedAccess; public int ParentFd; }

    /// <summary>The kernel's Landlock ABI version, or 0 when it has none (not built in, or not in the LSM list).</summary>
    public static int Abi
    {
        get
        {
            var v = syscall(SysCreateRuleset, 0, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
            return v < 0 ? 0 : (int)v;
        }
    }

    private static ulong Handled(int abi) => abi switch
    {
        <= 0 => 0,
        1 => (1UL << 13) - 1,
        2 => (1UL << 14) - 1,
        3 or 4 => (1UL << 15) - 1,
        _ => (1UL << 16) - 1,
    };

    /// <summary>
    /// Restricts the calling thread (and what it starts): <paramref name="readWrite"/> paths may be
    /// used in every way, <paramref name="readOnly"/> ones read and executed. Paths that do not exist
    /// are skipped. Throws <see cref="FuseException"/> when the kernel has no Landlock.
    /// </summary>
    public static void RestrictThread(IEnumerable<string> readWrite, IEnumerable<string> readOnly)
    {
        var abi = Abi;
        if (abi == 0) throw new FuseException("this kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, and 'landlock' in the lsm= boot list)", Errno.EOPNOTSUPP);
        var handled = Handled(abi);
        var attr = new RulesetAttr { HandledAccessFs = handled };
        var ruleset = (int)syscall(SysCreateRuleset, (long)&attr, sizeof(RulesetAttr), 0);
        if (ruleset < 0) throw new FuseException($"landlock_create_ruleset: {Errno.Describe(Marshal.GetLastPInvokeError())}", Marshal.GetLastPInvokeError());
        try
        {
            foreach (var (path, rights) in readWrite.Select(p => (p, handled)).Concat(readOnly.Select(p => (p, ReadOnly & handled))))
            {
                var fd = open(path, 0x200000 /* O_PATH */ | 0x80000 /* O_CLOEXEC */);
                if (fd < 0) continue;
                try
                {
                    // A file (not a directory) can only be given file rights.
                    var isDir = Directory.Exists(path);
                    var rule = new PathBeneath { AllowedAccess = isDir ? rights : rights & (Execute | WriteFile | ReadFile | Truncate | IoctlDev), ParentFd = fd };
                    if (syscall(SysAddRule, ruleset, 1 /* LANDLOCK_RULE_PATH_BENEATH */, (long)&rule, 0) < 0)
                        throw new FuseException($"landlock_add_rule {path}: {Errno.Describe(Marshal.GetLastPInvokeError())}", Marshal.GetLastPInvokeError());
                }
                finally { close(fd); }
            }
            if (syscall(SysRestrictSelf, ruleset, 0, 0) < 0)
                throw new FuseException($"landlock_restrict_self: {Errno.Describe(Marshal.GetLastPInvokeError())}", Marshal.GetLastPInvokeError());
        }
        finally { close(ruleset); }
    }

    [DllImport("libc", SetLastError = true)] private static extern long syscall(long number, long a, long b, long c);
    [DllImport("libc", SetLastError = true, EntryPoint = "syscall")] private static extern long syscall(long number, long a, long b, long c, long d);
    [DllImport("libc", SetLastError = true)] private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
    [DllImport("libc")] private static extern int close(int fd);
}
