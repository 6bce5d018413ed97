using System.Text;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse.Tests.Support;

/// <summary>
/// A tiny file system whose contents the test changes behind the kernel's back, with hour-long
/// cache timeouts (so only notifications can make the kernel see changes), a file whose READ
/// throws, and a file whose READ waits asynchronously until INTERRUPT.
///   /f (2): Content   /boom (3): throws   /g (5): present when GPresent
///   /slow0, /slow1...: wait (direct I/O, so the caller's own request is what INTERRUPT targets)
/// </summary>
public sealed class ScriptedFs : RawFileSystem
{
    public const ulong F = 2, Boom = 3, G = 5, SlowBase = 100;
    private static readonly TimeSpan Long = TimeSpan.FromHours(1);

    public volatile string Content = "v1";
    public volatile bool GPresent;
    public int SlowPending;
    public int SlowCancelled;
    public int Destroyed;

    private FuseAttr Attr(ulong ino) => ino switch
    {
        1 => new FuseAttr { Ino = 1, Mode = 0x41ED, Nlink = 2 },
        F => new FuseAttr { Ino = F, Mode = 0x81A4, Nlink = 1, Size = (ulong)Encoding.UTF8.GetByteCount(Content) },
        _ => new FuseAttr { Ino = ino, Mode = 0x81A4, Nlink = 1, Size = 100 },
    };

    private FuseEntryOut Entry(ulong ino) => new()
    {
        NodeId = ino, EntryValid = (ulong)Long.TotalSeconds, AttrValid = (ulong)Long.TotalSeconds, Attr = ino == 0 ? default : Attr(ino),
    };

    public override void Lookup(FuseRequest r, ulong parent, ReadOnlySpan<byte> name)
    {
        ulong ino = name.SequenceEqual("f"u8) ? F : name.SequenceEqual("boom"u8) ? Boom
            : name.SequenceEqual("g"u8) && GPresent ? G
            : name.StartsWith("slow"u8) && name.Length == 5 ? SlowBase + (ulong)(name[4] - '0') : 0;
        r.ReplyEntry(Entry(ino)); // nodeid 0: a negative entry the kernel caches for an hour
    }

    public override void GetAttr(FuseRequest r, ulong nodeId, ulong? fh) =>
        r.ReplyAttr(new FuseAttrOut { AttrValid = (ulong)Long.TotalSeconds, Attr = Attr(nodeId) });

    public override void Open(FuseRequest r, ulong nodeId, in FuseOpenIn open) =>
        r.ReplyOpen(new FuseOpenOut { OpenFlags = nodeId >= SlowBase ? OpenReplyFlags.DirectIo : OpenReplyFlags.KeepCache });

    public override void Read(FuseRequest r, ulong nodeId, in FuseReadIn read)
    {
        if (nodeId >= SlowBase) { r.Run(WaitForInterrupt(r)); return; }
        switch (nodeId)
        {
            case Boom: throw new InvalidOperationException("this handler is broken on purpose");
            default:
                var bytes = Encoding.UTF8.GetBytes(Content);
                var off = (int)Math.Min(read.Offset, (ulong)bytes.Length);
                r.ReplyData(bytes.AsSpan(off, Math.Min((int)read.Size, bytes.Length - off)));
                return;
        }
    }

    private async Task WaitForInterrupt(FuseRequest r)
    {
        Interlocked.Increment(ref SlowPending);
        try { await Task.Delay(Timeout.Infinite, r.CancellationToken); }
        catch (OperationCanceledException) { Interlocked.Increment(ref SlowCancelled); throw; }
        finally { Interlocked.Decrement(ref SlowPending); }
    }

    public override void Destroy() => Interlocked.Increment(ref Destroyed);
}
