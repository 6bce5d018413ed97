using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Protocol;

namespace ExtFuse.Session;

public sealed partial class FuseSession
{
    /// <summary>A request that is shorter than its opcode's fixed part, or a name without its NUL.</summary>
    private sealed class MalformedRequestException(string problem) : Exception(problem);

    /// <summary>Parses one message from the kernel and calls the file system. Never throws.</summary>
    internal void Process(ReadOnlySpan<byte> msg, IFuseChannel channel, FuseRequest r)
    {
        if (msg.Length < Unsafe.SizeOf<FuseInHeader>())
        {
            Log.Malformed(0, 0, $"message of {msg.Length} bytes is shorter than fuse_in_header");
            return;
        }
        ref readonly var h = ref MemoryMarshal.AsRef<FuseInHeader>(msg);
        r.Begin(h, channel);
        Interlocked.Increment(ref _requestCount);
        Interlocked.Increment(ref _requestsByOpcode[OpcodeSlot(h.Opcode)]);
        if (Log.Logger.IsEnabled(Microsoft.Extensions.Logging.LogLevel.Trace)) Log.Request(h.Opcode, h.Unique, h.NodeId, h.Uid, h.Pid);
        CheckOrphanInterrupt(r);
        try
        {
            if (h.Len != msg.Length) throw new MalformedRequestException($"header says {h.Len} bytes, read {msg.Length}");
            // Request extensions (security context, supplementary groups) sit at the end; we ask for none.
            var body = msg[Unsafe.SizeOf<FuseInHeader>()..(msg.Length - h.TotalExtLen * 8)];
            Dispatch(r, h.Opcode, h.NodeId, body);
        }
        catch (MalformedRequestException e)
        {
            Log.Malformed(h.Opcode, h.Unique, e.Message);
            if (!r.IsReplied && !NoReply(h.Opcode)) r.ReplyError(Errno.EIO);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(h.Opcode, h.Unique, e);
            if (!r.IsReplied && !NoReply(h.Opcode)) r.ReplyError(Errno.EIO);
        }
    }

    private static bool NoReply(FuseOpcode op) => Operations.Of((uint)op).NoReply;

    private void Dispatch(FuseRequest r, FuseOpcode op, ulong node, ReadOnlySpan<byte> body)
    {
        if (Denied(r, op, node, body)) return;
        var fs = _fs;
        switch (op)
        {
            case FuseOpcode.Init: HandleInit(r, body); break;
            case FuseOpcode.Destroy: RunDestroy(); r.ReplyOk(); break;
            case FuseOpcode.Lookup: fs.Lookup(r, node, Name(body)); break;
            case FuseOpcode.Forget:
                fs.Forget(node, Arg<FuseForgetIn>(body).Nlookup);
                r.CompleteWithoutReply();
                break;
            case FuseOpcode.BatchForget:
            {
                var count = Arg<FuseBatchForgetIn>(body).Count;
                var rest = body[Unsafe.SizeOf<FuseBatchForgetIn>()..];
                if ((ulong)rest.Length < count * (ulong)Unsafe.SizeOf<FuseForgetOne>())
                    throw new MalformedRequestException($"BATCH_FORGET of {count} entries carries {rest.Length} bytes");
                fs.BatchForget(MemoryMarshal.Cast<byte, FuseForgetOne>(rest)[..(int)count]);
                r.CompleteWithoutReply();
                break;
            }
            case FuseOpcode.GetAttr:
            {
                ref readonly var a = ref Arg<FuseGetattrIn>(body);
                if (_fastGetAttr is { } fast && ServedFast(r, fast, node)) break;
                fs.GetAttr(r, node, (a.GetattrFlags & FuseFlags.GetattrFh) != 0 ? a.Fh : null);
                break;
            }
            case FuseOpcode.SetAttr: fs.SetAttr(r, node, in Arg<FuseSetattrIn>(body)); break;
            case FuseOpcode.ReadLink: fs.ReadLink(r, node); break;
            case FuseOpcode.Symlink:
            {
                var name = Name(body);
                fs.Symlink(r, node, name, Name(body[(name.Length + 1)..]));
                break;
            }
            case FuseOpcode.MkNod:
            {
                ref readonly var a = ref Arg<FuseMknodIn>(body);
                fs.MkNod(r, node, Name(After<FuseMknodIn>(body)), a.Mode, a.Rdev, a.Umask);
                break;
            }
            case FuseOpcode.MkDir:
            {
                ref readonly var a = ref Arg<FuseMkdirIn>(body);
                fs.MkDir(r, node, Name(After<FuseMkdirIn>(body)), a.Mode, a.Umask);
                break;
            }
            case FuseOpcode.Unlink: fs.Unlink(r, node, Name(body)); break;
            case FuseOpcode.RmDir: fs.RmDir(r, node, Name(body)); break;
            case FuseOpcode.Rename:
            {
                var names = After<FuseRenameIn>(body);
                var from = Name(names);
                fs.Rename(r, node, from, Arg<FuseRenameIn>(body).NewDir, Name(names[(from.Length + 1)..]), 0);
                break;
            }
            case FuseOpcode.Rename2:
            {
                ref readonly var a = ref Arg<FuseRename2In>(body);
                var names = After<FuseRename2In>(body);
                var from = Name(names);
                fs.Rename(r, node, from, a.NewDir, Name(names[(from.Length + 1)..]), a.Flags);
                break;
            }
            case FuseOpcode.Link: fs.Link(r, Arg<FuseLinkIn>(body).OldNodeId, node, Name(After<FuseLinkIn>(body))); break;
            case FuseOpcode.Open: fs.Open(r, node, in Arg<FuseOpenIn>(body)); break;
            case FuseOpcode.Read: fs.Read(r, node, in Arg<FuseReadIn>(body)); break;
            case FuseOpcode.Write:
            {
                ref readonly var a = ref Arg<FuseWriteIn>(body);
                var data = After<FuseWriteIn>(body);
                if (data.Length < a.Size) throw new MalformedRequestException($"WRITE of {a.Size} bytes carries {data.Length}");
                fs.Write(r, node, in a, data[..(int)a.Size]);
                break;
            }
            case FuseOpcode.StatFs: fs.StatFs(r, node); break;
            case FuseOpcode.Release: fs.Release(r, node, in Arg<FuseReleaseIn>(body)); break;
            case FuseOpcode.Fsync:
            {
                ref readonly var a = ref Arg<FuseFsyncIn>(body);
                fs.Fsync(r, node, a.Fh, (a.FsyncFlags & FuseFlags.FsyncFdatasync) != 0);
                break;
            }
            case FuseOpcode.SetXattr:
            {
                ref readonly var a = ref Arg<FuseSetxattrIn>(body);
                var rest = After<FuseSetxattrIn>(body);
                var name = Name(rest);
                var value = rest[(name.Length + 1)..];
                if (value.Length < a.Size) throw new MalformedRequestException($"SETXATTR value of {a.Size} bytes carries {value.Length}");
                fs.SetXattr(r, node, name, value[..(int)a.Size], a.Flags);
                break;
            }
            case FuseOpcode.GetXattr: fs.GetXattr(r, node, Name(After<FuseGetxattrIn>(body)), Arg<FuseGetxattrIn>(body).Size); break;
            case FuseOpcode.ListXattr: fs.ListXattr(r, node, Arg<FuseGetxattrIn>(body).Size); break;
            case FuseOpcode.RemoveXattr: fs.RemoveXattr(r, node, Name(body)); break;
            case FuseOpcode.Flush:
            {
                ref readonly var a = ref Arg<FuseFlushIn>(body);
                fs.Flush(r, node, a.Fh, a.LockOwner);
                break;
            }
            case FuseOpcode.OpenDir: fs.OpenDir(r, node, in Arg<FuseOpenIn>(body)); break;
            case FuseOpcode.ReadDir: fs.ReadDir(r, node, in Arg<FuseReadIn>(body)); break;
            case FuseOpcode.ReadDirPlus: fs.ReadDirPlus(r, node, in Arg<FuseReadIn>(body)); break;
            case FuseOpcode.ReleaseDir: fs.ReleaseDir(r, node, in Arg<FuseReleaseIn>(body)); break;
            case FuseOpcode.FsyncDir:
            {
                ref readonly var a = ref Arg<FuseFsyncIn>(body);
                fs.FsyncDir(r, node, a.Fh, (a.FsyncFlags & FuseFlags.FsyncFdatasync) != 0);
                break;
            }
            case FuseOpcode.GetLk: fs.GetLk(r, node, in Arg<FuseLkIn>(body)); break;
            case FuseOpcode.SetLk: fs.SetLk(r, node, in Arg<FuseLkIn>(body), wait: false); break;
            case FuseOpcode.SetLkW: fs.SetLk(r, node, in Arg<FuseLkIn>(body), wait: true); break;
            case FuseOpcode.Access: fs.Access(r, node, Arg<FuseAccessIn>(body).Mask); break;
            case FuseOpcode.Create: fs.Create(r, node, Name(After<FuseCreateIn>(body)), in Arg<FuseCreateIn>(body)); break;
            case FuseOpcode.Interrupt:
                Interrupt(Arg<FuseInterruptIn>(body).Unique);
                r.CompleteWithoutReply();
                break;
            case FuseOpcode.Bmap:
            {
                ref readonly var a = ref Arg<FuseBmapIn>(body);
                fs.Bmap(r, node, a.Block, a.BlockSize);
                break;
            }
            case FuseOpcode.FAllocate: fs.FAllocate(r, node, in Arg<FuseFallocateIn>(body)); break;
            case FuseOpcode.Lseek:
            {
                ref readonly var a = ref Arg<FuseLseekIn>(body);
                fs.Lseek(r, node, a.Fh, (long)a.Offset, (int)a.Whence);
                break;
            }
            case FuseOpcode.CopyFileRange:
            case FuseOpcode.CopyFileRange64:
                fs.CopyFileRange(r, node, in Arg<FuseCopyFileRangeIn>(body));
                break;
            case FuseOpcode.SyncFs: fs.SyncFs(r, node); break;
            case FuseOpcode.TmpFile: fs.TmpFile(r, node, in Arg<FuseCreateIn>(body)); break;
            case FuseOpcode.Statx: fs.Statx(r, node, in Arg<FuseStatxIn>(body)); break;
            case FuseOpcode.NotifyReply: HandleRetrieveReply(r, body); break;
            default:
                // IOCTL, POLL, SETUPMAPPING/REMOVEMAPPING (DAX) and opcodes newer than this runtime.
                r.ReplyError(Errno.ENOSYS);
                break;
        }
    }

    // ---- [Check] rules: the managed twins of the BPF checks ----

    private static ExtFuse.Declarative.FuseOps OpsOf(FuseOpcode op) => (ExtFuse.Declarative.FuseOps)Operations.Of((uint)op).Ops;

    /// <summary>
    /// Runs the [Check] methods that apply to this opcode, then the policy (attributes and policy
    /// file); the first refusal answers the request.
    /// </summary>
    private bool Denied(FuseRequest r, FuseOpcode op, ulong node, ReadOnlySpan<byte> body)
    {
        var ops = OpsOf(op);
        if ((ops & _checkOps) != 0 && CheckDenied(r, op, ops, node, body)) return true;
        var policy = _policy;
        if (policy.Count == 0 && !policy.DefaultDeny) return false;
        var (verdict, path) = PolicyVerdict(policy, r, op, node, body);
        if (!verdict.Denied) return false;
        Refuse(r, op, verdict, verdict.Rule >= 0 ? _rules.Length + verdict.Rule : -1, RuleName(policy, verdict), path);
        return true;
    }

    private bool CheckDenied(FuseRequest r, FuseOpcode op, ExtFuse.Declarative.FuseOps ops, ulong node, ReadOnlySpan<byte> body)
    {
        var req = new ExtFuse.Declarative.CheckRequest { Opcode = (uint)op, Uid = r.Uid, Gid = r.Gid, Pid = r.Pid, NodeId = node };
        switch (op)
        {
            case FuseOpcode.Open: req.Flags = Arg<FuseOpenIn>(body).Flags; break;
            case FuseOpcode.Create:
                ref readonly var create = ref Arg<FuseCreateIn>(body);
                (req.Flags, req.Mode) = (create.Flags, create.Mode);
                break;
            case FuseOpcode.MkDir: req.Mode = Arg<FuseMkdirIn>(body).Mode | 0x4000; break;
            case FuseOpcode.MkNod: req.Mode = Arg<FuseMknodIn>(body).Mode; break;
            case FuseOpcode.SetAttr:
                ref readonly var set = ref Arg<FuseSetattrIn>(body);
                if ((set.Valid & SetAttrValid.Mode) != 0) req.Mode = set.Mode;
                break;
        }
        for (var i = 0; i < _rules.Length; i++)
        {
            var rule = _rules[i];
            if ((rule.Ops & ops) == 0) continue;
            var err = rule.Check(in req);
            if (err == 0) continue;
            Refuse(r, op, new ExtFuse.Policy.Verdict(err, i), i, rule.Name, (ops & CheckPathOps) != 0 ? _fs.PathOf(node) : null);
            return true;
        }
        return false;
    }

    /// <summary>Operations on a node itself, whose path an audit record of a refused [Check] names.</summary>
    private const ExtFuse.Declarative.FuseOps CheckPathOps = ExtFuse.Declarative.FuseOps.Open | ExtFuse.Declarative.FuseOps.SetAttr
        | ExtFuse.Declarative.FuseOps.Read | ExtFuse.Declarative.FuseOps.Write | ExtFuse.Declarative.FuseOps.SetXattr | ExtFuse.Declarative.FuseOps.RemoveXattr;

    /// <summary>Runs the [FastPath] twin for GETATTR: true when it answered (served or refused).</summary>
    private bool ServedFast(FuseRequest r, ExtFuse.Declarative.FastPathRule fast, ulong node)
    {
        var req = new ExtFuse.Declarative.CheckRequest { Opcode = (uint)FuseOpcode.GetAttr, Uid = r.Uid, Gid = r.Gid, Pid = r.Pid, NodeId = node };
        var reply = default(FuseAttrOut);
        var result = fast.Handle(in req, ref reply);
        if (result == ExtFuse.Declarative.FastPath.Continue) return false;
        _offload?.CountFastPath(FuseOpcode.GetAttr);
        if (result == ExtFuse.Declarative.FastPath.Served) r.ReplyAttr(reply);
        else r.ReplyError(result > 0 ? result : Errno.EIO);
        return true;
    }

    /// <summary>Requests a [FastPath] twin answered without the handler.</summary>
    public long FastPathServed => (long)(_offload?.FastPathServed(FuseOpcode.GetAttr) ?? 0);

    private static ref readonly T Arg<T>(ReadOnlySpan<byte> body) where T : unmanaged
    {
        if (body.Length < Unsafe.SizeOf<T>())
            throw new MalformedRequestException($"{typeof(T).Name} needs {Unsafe.SizeOf<T>()} bytes, got {body.Length}");
        return ref MemoryMarshal.AsRef<T>(body);
    }

    private static ReadOnlySpan<byte> After<T>(ReadOnlySpan<byte> body) where T : unmanaged
    {
        _ = Arg<T>(body);
        return body[Unsafe.SizeOf<T>()..];
    }

    /// <summary>A NUL-terminated name at the start of <paramref name="s"/>, without the NUL.</summary>
    private static ReadOnlySpan<byte> Name(ReadOnlySpan<byte> s)
    {
        var end = s.IndexOf((byte)0);
        if (end < 0) throw new MalformedRequestException("name is not NUL-terminated");
        return s[..end];
    }

    // ---- INIT ----

    private void HandleInit(FuseRequest r, ReadOnlySpan<byte> body)
    {
        // Older kernels send the 16-byte fuse_init_in; flags2 exists only with INIT_EXT.
        if (body.Length < 16) throw new MalformedRequestException($"INIT body of {body.Length} bytes");
        ref readonly var init = ref MemoryMarshal.AsRef<FuseInitIn>(body.Length >= Unsafe.SizeOf<FuseInitIn>() ? body : Pad<FuseInitIn>(body));
        if (init.Major > FuseConstants.KernelVersion)
        {
            // The kernel will retry with our major.
            r.Reply(new FuseInitOut { Major = FuseConstants.KernelVersion, Minor = FuseConstants.KernelMinorVersion });
            return;
        }
        if (init.Major < FuseConstants.KernelVersion || init.Minor < FuseConstants.MinimumMinorVersion)
        {
            Log.KernelTooOld(init.Major, init.Minor, FuseConstants.MinimumMinorVersion);
            r.ReplyError(Errno.EPROTO);
            _initialized.TrySetException(new FuseException($"kernel FUSE protocol {init.Major}.{init.Minor} is older than 7.{FuseConstants.MinimumMinorVersion}", Errno.EPROTO));
            return;
        }

        var kernelFlags = (InitFlags)init.Flags;
        if ((kernelFlags & InitFlags.InitExt) != 0) kernelFlags |= (InitFlags)((ulong)init.Flags2 << 32);

        var c = Connection;
        c.ProtocolMajor = FuseConstants.KernelVersion;
        c.ProtocolMinor = Math.Min(init.Minor, FuseConstants.KernelMinorVersion);
        c.KernelFlags = kernelFlags;
        var maxWrite = EffectiveMaxWrite();
        c.MaxWrite = maxWrite;
        c.MaxPages = (ushort)((maxWrite + 4095) / 4096);
        c.MaxReadahead = Math.Min(init.MaxReadahead, _options.MaxReadahead);
        c.MaxBackground = _options.MaxBackground;
        c.CongestionThreshold = _options.CongestionThreshold;
        c.Flags = WantedFlags() & kernelFlags;
        _fs.Init(c);
        c.Flags &= kernelFlags;
        if ((c.Flags & InitFlags.WritebackCache) != 0) c.Flags &= ~InitFlags.Passthrough;

        var flags = (ulong)c.Flags;
        var reply = new FuseInitOut
        {
            Major = FuseConstants.KernelVersion,
            Minor = c.ProtocolMinor,
            MaxReadahead = c.MaxReadahead,
            Flags = (uint)flags,
            Flags2 = (uint)(flags >> 32),
            MaxBackground = c.MaxBackground,
            CongestionThreshold = c.CongestionThreshold,
            MaxWrite = c.MaxWrite,
            TimeGran = c.TimeGranularity,
            MaxPages = c.MaxPages,
            // Backing files may themselves be stacked once (overlayfs, another FUSE); the kernel
            // turns passthrough on only with a depth, and never together with writeback caching.
            MaxStackDepth = (c.Flags & InitFlags.Passthrough) != 0 ? FuseConstants.MaxStackDepth : 0,
        };
        r.Reply(reply);
        Log.Negotiated(c.ProtocolMajor, c.ProtocolMinor, c.MaxWrite, c.MaxReadahead, c.Flags);
        if (_options.IoUring)
        {
            // The ring can be registered only once the kernel has taken the INIT reply.
            if (c.Has(InitFlags.OverIoUring)) StartUring();
            else
            {
                Log.UringNotOffered(File.Exists("/sys/module/fuse/parameters/enable_uring")
                    ? "enable it with: echo Y > /sys/module/fuse/parameters/enable_uring" : "this kernel has no FUSE over io_uring (6.14+, CONFIG_FUSE_IO_URING)");
                AddReaders(Math.Max(1, _options.Threads) - 1);
            }
        }
        if (_offload is { } offload)
        {
            var plan = ExtFuse.Kernel.KernelOffload.Format(offload.Plan(c));
            if (offload.NoBpf) Log.NoBpf(offload.NoBpfReason, plan);
            else Log.Offload(plan);
        }
        _initialized.TrySetResult();
    }

    private static ReadOnlySpan<byte> Pad<T>(ReadOnlySpan<byte> body) where T : unmanaged
    {
        var padded = new byte[Unsafe.SizeOf<T>()];
        body.CopyTo(padded);
        return padded;
    }

    /// <summary>The INIT flags we ask for, derived from the options and from what the file system implements.</summary>
    internal InitFlags WantedFlags()
    {
        var f = _fs.RuleInitFlags | InitFlags.AsyncRead | InitFlags.AtomicOTrunc | InitFlags.BigWrites | InitFlags.ParallelDirops
              | InitFlags.AutoInvalData | InitFlags.HandleKillprivV2 | InitFlags.CacheSymlinks | InitFlags.MaxPages
              | InitFlags.InitExt | InitFlags.AsyncDio;
        if (_fs.Implements(nameof(RawFileSystem.ReadDirPlus))) f |= InitFlags.DoReaddirplus | InitFlags.ReaddirplusAuto;
        if (_fs.Implements(nameof(RawFileSystem.GetLk)) && _fs.Implements(nameof(RawFileSystem.SetLk))) f |= InitFlags.PosixLocks | InitFlags.FlockLocks;
        if (!_fs.Implements(nameof(RawFileSystem.Open))) f |= InitFlags.NoOpenSupport;
        if (!_fs.Implements(nameof(RawFileSystem.OpenDir))) f |= InitFlags.NoOpendirSupport;
        if (_options.WritebackCache) f |= InitFlags.WritebackCache;
        if (_options.ExportSupport) f |= InitFlags.ExportSupport;
        if (_options.IoUring) f |= InitFlags.OverIoUring;
        return f;
    }
}
