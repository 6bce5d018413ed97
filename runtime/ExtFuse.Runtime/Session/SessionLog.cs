using ExtFuse.Protocol;
using Microsoft.Extensions.Logging;

namespace ExtFuse.Session;

/// <summary>Every message the session logs, in one place.</summary>
internal sealed partial class SessionLog
{
    private readonly ILogger _logger;

    public SessionLog(ILogger logger) => _logger = logger;

    public ILogger Logger => _logger;

    [LoggerMessage(1, LogLevel.Error, "{Opcode} request {Unique} failed in the handler; answered EIO")]
    private partial void HandlerFailedCore(FuseOpcode opcode, ulong unique, Exception ex);
    public void HandlerFailed(FuseOpcode opcode, ulong unique, Exception ex) => HandlerFailedCore(opcode, unique, ex);

    [LoggerMessage(2, LogLevel.Error, "{Opcode} request {Unique}: the asynchronous handler finished without replying; answered EIO")]
    public partial void HandlerDidNotReply(FuseOpcode opcode, ulong unique);

    [LoggerMessage(3, LogLevel.Debug, "{Opcode} reply to {Unique} not delivered: errno {Errno} (request interrupted or connection gone)")]
    public partial void ReplyFailed(FuseOpcode opcode, ulong unique, int errno);

    [LoggerMessage(4, LogLevel.Warning, "malformed {Opcode} request {Unique} from the kernel: {Problem}; answered EIO")]
    public partial void Malformed(FuseOpcode opcode, ulong unique, string problem);

    [LoggerMessage(5, LogLevel.Information, "FUSE {Major}.{Minor} negotiated: max_write={MaxWrite} max_readahead={MaxReadahead} flags={Flags}")]
    public partial void Negotiated(uint major, uint minor, uint maxWrite, uint maxReadahead, InitFlags flags);

    [LoggerMessage(6, LogLevel.Error, "the kernel speaks FUSE {Major}.{Minor}; this runtime needs 7.{Needed} or newer")]
    public partial void KernelTooOld(uint major, uint minor, uint needed);

    [LoggerMessage(7, LogLevel.Error, "reading /dev/fuse failed: {Message} (errno {Errno}); reader stops")]
    public partial void ReadFailed(string message, int errno);

    [LoggerMessage(8, LogLevel.Trace, "{Opcode} unique={Unique} node={NodeId} uid={Uid} pid={Pid}")]
    public partial void Request(FuseOpcode opcode, ulong unique, ulong nodeId, uint uid, uint pid);

    [LoggerMessage(9, LogLevel.Debug, "session ended: {Reason}")]
    public partial void Ended(string reason);

    [LoggerMessage(11, LogLevel.Debug, "rule {Rule} denied {Opcode} request {Unique} of uid {Uid}: errno {Errno}")]
    public partial void RuleDenied(string rule, FuseOpcode opcode, ulong unique, uint uid, int errno);

    [LoggerMessage(10, LogLevel.Error, "Destroy() of the file system failed")]
    public partial void DestroyFailed(Exception ex);

    [LoggerMessage(13, LogLevel.Information, "fast path: {Plan}")]
    public partial void Offload(string plan);

    [LoggerMessage(14, LogLevel.Warning, "no BPF on this kernel for this daemon ({Reason}): the managed path serves everything; {Plan}")]
    public partial void NoBpf(string reason, string plan);

    [LoggerMessage(12, LogLevel.Warning, "[Passthrough]: the kernel refused a backing file (errno {Errno}: passthrough needs CAP_SYS_ADMIN and a file system it can stack on); the daemon serves reads and writes")]
    public partial void PassthroughRefused(int errno);

    [LoggerMessage(15, LogLevel.Warning, "io_uring was asked for, but the kernel did not offer FUSE over io_uring at INIT ({Hint}): requests go through /dev/fuse")]
    public partial void UringNotOffered(string hint);

    [LoggerMessage(17, LogLevel.Information, "requests over io_uring: {Queues} queues (one per CPU) of {Depth} entries, {Payload} bytes each")]
    public partial void UringStarted(int queues, int depth, int payload);

    [LoggerMessage(16, LogLevel.Warning, "FUSE over io_uring could not be set up ({Reason}): requests go through /dev/fuse")]
    public partial void UringFailed(string reason);
}
