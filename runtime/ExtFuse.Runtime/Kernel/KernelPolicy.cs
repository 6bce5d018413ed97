using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Bpf;
using ExtFuse.Policy;

namespace ExtFuse.Kernel;

/// <summary>A refusal by an LSM program, as the kernel reports it (struct extfuse_audit_event in policy.h).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KernelAuditEvent
{
    public ulong TimeNs;
    /// <summary>The node, or for a name (<see cref="Name"/>) the directory it is in.</summary>
    public ulong NodeId;
    public uint Ops;
    public int Errno;
    /// <summary>The policy rule (-1: its default), or with <see cref="Check"/> the [Check] method's index.</summary>
    public int Rule;
    public uint Check;
    public uint Pid;
    public uint Uid;
    public uint Gid;
    /// <summary>The FUSE opcode the hook stands for (OPEN, CREATE, ...).</summary>
    public uint Opcode;
    public Comm Comm;
    public EventName Name;

    [InlineArray(64)]
    public struct EventName { private byte _b; }
}

/// <summary>
/// The mount's rules in the kernel, where it has BPF LSM: the LSM programs of the file system's
/// generated object (its [Check] methods) or of the runtime's generic extfuse_policy.bpf.o, the
/// policy's rule table and the per-node verdicts the session computes, and the programs' refusals
/// turned into audit records. A denied request then gets its errno without reaching the daemon.
/// </summary>
public sealed class KernelPolicy : IVerdictSink, IDisposable
{
    private readonly BpfObject _obj;
    private readonly BpfMap<uint, KernelPolicyHeader> _header;
    private readonly BpfMap<uint, KernelRule> _rules;
    private readonly BpfMap<ulong, NodeVerdict> _verdicts;
    private readonly BpfMap<uint, ulong> _lost;
    private readonly BpfRingBuffer _audit;
    private readonly Thread _reader;
    private readonly uint _dev;
    private readonly Action<KernelAuditEvent> _denied;
    private volatile bool _stopping;

    private KernelPolicy(BpfObject obj, uint dev, Action<KernelAuditEvent> denied)
    {
        _obj = obj;
        _dev = dev;
        _denied = denied;
        _header = obj.Map<uint, KernelPolicyHeader>("extfuse_policy");
        _rules = obj.Map<uint, KernelRule>("extfuse_rules");
        _verdicts = obj.Map<ulong, NodeVerdict>("extfuse_verdicts");
        _lost = obj.Map<uint, ulong>("extfuse_audit_lost");
        _audit = BpfRingBuffer.Open(obj, "extfuse_audit", OnRecord);
        _reader = new Thread(ReadAudit) { IsBackground = true, Name = "extfuse-lsm-audit" };
    }

    /// <summary>The object whose LSM programs serve a file system: its generated one, else the generic policy programs.</summary>
    public static string ObjectFor(RawFileSystem fs)
    {
        // The build copies generated objects next to every project that references the file system.
        if (fs.BpfObjectName is { } name && File.Exists(Path.Combine(AppContext.BaseDirectory, name))) return Path.Combine(AppContext.BaseDirectory, name);
        return Path.Combine(AppContext.BaseDirectory, "extfuse_policy.bpf.o");
    }

    /// <summary>
    /// Loads and attaches the programs for the mount of dev_t <paramref name="dev"/> with <paramref name="policy"/> in force.
    /// Throws <see cref="BpfException"/> (or FileNotFoundException) when the kernel or the build cannot.
    /// </summary>
    public static KernelPolicy Start(RawFileSystem fs, uint dev, AccessPolicy policy, Action<KernelAuditEvent> denied)
    {
        var obj = BpfObject.Open(ObjectFor(fs));
        try
        {
            foreach (var p in obj.Programs) p.Autoload = p.Section.StartsWith("lsm/", StringComparison.Ordinal);
            obj.Load();
            fs.BindKernelObject(obj);
            var k = new KernelPolicy(obj, dev, denied);
            k.Load(policy);   // enabled by the caller once it has written the verdicts it keeps
            foreach (var p in obj.Programs.Where(p => p.Autoload)) p.Attach();
            k._reader.Start();
            return k;
        }
        catch
        {
            obj.Dispose();
            throw;
        }
    }

    /// <summary>Programs attached (one per hook).</summary>
    public int Programs => _obj.Programs.Count(p => p.Autoload);

    public string ObjectName => Path.GetFileName(_obj.Name);

    /// <summary>Audit events the ring buffer had no room for.</summary>
    public ulong LostEvents => _lost.TryLookup(0, out var n) ? n : 0;

    /// <summary>
    /// Writes a policy's rule table with the programs letting everything through to the daemon (which
    /// decides alike) until <see cref="Enable"/>; the session rewrites the per-node verdicts in between
    /// through <see cref="Set"/>.
    /// </summary>
    public void Load(AccessPolicy policy)
    {
        _header.Update(0, new KernelPolicyHeader { Dev = _dev });
        var rules = policy.KernelRules;
        if (rules.Length > 0)
        {
            var keys = new uint[rules.Length];
            for (var i = 0; i < keys.Length; i++) keys[i] = (uint)i;
            _rules.UpdateBatch(keys, rules);
        }
    }

    /// <summary>The programs use the table <see cref="Load"/> wrote (once the verdicts for it are in).</summary>
    public void Enable(AccessPolicy policy) => _header.Update(0, policy.Header(_dev));

    public void Set(ulong nodeId, in NodeVerdict verdict) => _verdicts.Update(nodeId, verdict);

    public void Remove(ulong nodeId) => _verdicts.Delete(nodeId);

    private void OnRecord(ReadOnlySpan<byte> record)
    {
        if (record.Length < Unsafe.SizeOf<KernelAuditEvent>()) return;
        _denied(MemoryMarshal.Read<KernelAuditEvent>(record));
    }

    private void ReadAudit()
    {
        while (!_stopping)
        {
            try { _audit.Poll(TimeSpan.FromMilliseconds(100)); }
            catch (BpfException) when (_stopping) { }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // An audit consumer that fails must not take the daemon down; the denials still happen.
                Console.Error.WriteLine($"extfuse: kernel audit reader stopped: {e.Message}");
                return;
            }
        }
    }

    /// <summary>Detaches the programs (the kernel stops enforcing; the daemon still does) and drains the audit ring.</summary>
    public void Dispose()
    {
        _stopping = true;
        if (_reader.IsAlive) _reader.Join(TimeSpan.FromSeconds(2));
        try { _audit.Consume(); } catch (BpfException) { }
        _audit.Dispose();
        _obj.Dispose();
    }

    /// <summary>CLOCK_BOOTTIME now, in ns: the clock of <see cref="KernelAuditEvent.TimeNs"/>.</summary>
    public static unsafe ulong BootTimeNs()
    {
        long* ts = stackalloc long[2];
        clock_gettime(7 /* CLOCK_BOOTTIME */, ts);
        return (ulong)(ts[0] * 1_000_000_000 + ts[1]);
    }

    [DllImport("libc")]
    private static extern unsafe int clock_gettime(int clock, long* ts);
}
