using ExtFuse.Protocol;

namespace ExtFuse.Session;

/// <summary>Tuning of a session; most of it can also be given as -o options (see MountOptions).</summary>
public sealed record FuseSessionOptions
{
    /// <summary>Reader threads, each with its own cloned /dev/fuse descriptor.</summary>
    public int Threads { get; init; } = Math.Clamp(Environment.ProcessorCount, 2, 8);
    /// <summary>Largest WRITE the kernel sends; capped by /proc/sys/fs/fuse/max_pages_limit.</summary>
    public uint MaxWrite { get; init; } = 1 << 20;
    public uint MaxReadahead { get; init; } = 1 << 20;
    public ushort MaxBackground { get; init; } = 64;
    public ushort CongestionThreshold { get; init; } = 48;
    /// <summary>Kernel write-back caching of writes (opt-in: the file system must cope with writes from any handle).</summary>
    public bool WritebackCache { get; init; }
    /// <summary>Handle "." and ".." lookups (needed for NFS export and open_by_handle_at).</summary>
    public bool ExportSupport { get; init; }
    /// <summary>Use BPF where the kernel allows (in-kernel statistics, shared counters); false: the managed path only (-o no_bpf).</summary>
    public bool Bpf { get; init; } = true;
    /// <summary>FUSE over io_uring (kernel 6.14+ with fuse.enable_uring=Y) instead of read/writev on /dev/fuse (-o io_uring).</summary>
    public bool IoUring { get; init; }
    /// <summary>Registered entries per io_uring queue (one queue per CPU): requests each CPU can have in the daemon at once.</summary>
    public int IoUringQueueDepth { get; init; } = 8;
    /// <summary>
    /// Answer READs of files with a backing descriptor by splice(2), not pread + writev (-o splice_read).
    /// Off by default: the bench measures it against plain copies (README, Benchmarks).
    /// </summary>
    public bool SpliceRead { get; init; }
    /// <summary>A policy file (JSON, policy.schema.json) whose rules follow the file system's own; reloadable while mounted (-o policy=FILE).</summary>
    public string? PolicyFile { get; init; }
    /// <summary>Attach the in-kernel statistics on another thread: the mount serves sooner, and the kernel counts from a moment later (the sandbox launcher).</summary>
    public bool StatisticsInBackground { get; init; }
    /// <summary>Where every denial is recorded, one JSON object per line (-o audit=FILE).</summary>
    public string? AuditLog { get; init; }
}

/// <summary>What INIT negotiated. A file system may adjust Flags and the limits in RawFileSystem.Init.</summary>
public sealed class FuseConnection
{
    public uint ProtocolMajor { get; internal set; }
    public uint ProtocolMinor { get; internal set; }
    /// <summary>Everything the kernel offered.</summary>
    public InitFlags KernelFlags { get; internal set; }
    /// <summary>What will be enabled (always a subset of KernelFlags).</summary>
    public InitFlags Flags { get; set; }
    public uint MaxReadahead { get; set; }
    public uint MaxWrite { get; set; }
    public ushort MaxPages { get; set; }
    public ushort MaxBackground { get; set; }
    public ushort CongestionThreshold { get; set; }
    public uint TimeGranularity { get; set; } = 1;
    public bool Has(InitFlags f) => (Flags & f) == f;
}
