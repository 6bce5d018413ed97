using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Protocol;
using ExtFuse.Session;

namespace ExtFuse;

/// <summary>
/// Builds a READDIR or READDIRPLUS reply in the request's own buffer: fuse_dirent records (with a
/// fuse_entry_out before each for READDIRPLUS), 8-byte aligned, never more than the kernel asked for.
/// </summary>
public ref struct DirectoryListing
{
    private readonly FuseRequest _request;
    private readonly Span<byte> _buffer;
    private int _length;

    public DirectoryListing(FuseRequest request, uint size)
    {
        _request = request;
        _buffer = request.GetReplyBuffer((int)size);
    }

    public readonly int Length => _length;

    /// <summary>Directory entry type (DT_*) from a mode.</summary>
    public static uint TypeOf(uint mode) => (mode & 0xF000) >> 12;

    /// <summary>Adds a READDIR entry; false (and nothing added) when it does not fit.</summary>
    public bool Add(ulong ino, scoped ReadOnlySpan<byte> name, uint mode, ulong nextOffset) =>
        Advance(Encode(_buffer[_length..], ino, name, mode, nextOffset));

    /// <summary>Adds a READDIRPLUS entry. An entry with NodeId 0 carries no lookup reference.</summary>
    public bool AddPlus(scoped in FuseEntryOut entry, scoped ReadOnlySpan<byte> name, ulong nextOffset) =>
        Advance(EncodePlus(_buffer[_length..], entry, name, nextOffset));

    public readonly void Reply() => _request.ReplyBuffer(_length);

    private bool Advance(int written)
    {
        if (written == 0) return false;
        _length += written;
        return true;
    }

    /// <summary>Size of a READDIR (or, with plus, READDIRPLUS) record for a name.</summary>
    public static int RecordSize(int nameLength, bool plus) =>
        ((24 + nameLength + 7) & ~7) + (plus ? Unsafe.SizeOf<FuseEntryOut>() : 0);

    /// <summary>Writes one fuse_dirent at the start of <paramref name="dest"/>; returns its size, or 0 if it does not fit.</summary>
    public static int Encode(Span<byte> dest, ulong ino, scoped ReadOnlySpan<byte> name, uint mode, ulong nextOffset)
    {
        var size = RecordSize(name.Length, plus: false);
        if (size > dest.Length) return 0;
        var d = new FuseDirent { Ino = ino, Off = nextOffset, NameLen = (uint)name.Length, Type = TypeOf(mode) };
        MemoryMarshal.Write(dest, in d);
        name.CopyTo(dest[24..]);
        dest[(24 + name.Length)..size].Clear();
        return size;
    }

    /// <summary>Writes one fuse_direntplus; returns its size, or 0 if it does not fit.</summary>
    public static int EncodePlus(Span<byte> dest, scoped in FuseEntryOut entry, scoped ReadOnlySpan<byte> name, ulong nextOffset)
    {
        var entrySize = Unsafe.SizeOf<FuseEntryOut>();
        if (RecordSize(name.Length, plus: true) > dest.Length) return 0;
        MemoryMarshal.Write(dest, in entry);
        return entrySize + Encode(dest[entrySize..], entry.Attr.Ino, name, entry.Attr.Mode, nextOffset);
    }
}
