using System.Runtime.InteropServices;
using static ExtFuse.Bpf.LibBpf;

namespace ExtFuse.Bpf;

/// <summary>Flags of BPF_MAP_UPDATE_ELEM.</summary>
public enum BpfUpdate : ulong { Any = 0, NoExist = 1, Exist = 2 }

/// <summary>
/// A map of a loaded object, or one pinned under bpffs, typed by the C# structs its schema was
/// generated from. The key and value sizes are checked against the kernel's map when it is
/// opened, so a schema that drifted from the C fails there, not as corrupt data.
/// </summary>
public sealed unsafe class BpfMap<TKey, TValue> : IDisposable where TKey : unmanaged where TValue : unmanaged
{
    private const int ENOENT = 2, EEXIST = 17, E2BIG = 7, EINVAL = 22, EOPNOTSUPP = 95, ENOTSUPP = 524;

    /// <summary>Set for maps of an object (their descriptor is the object's), else the pinned map's own descriptor.</summary>
    private readonly BpfObject? _owner;
    private readonly nint _map;
    private int _ownFd = -1;
    /// <summary>Null until the first batch call shows whether this kernel and map type have batch operations.</summary>
    private bool? _batch;

    internal BpfMap(BpfObject owner, nint map, string name)
    {
        _owner = owner;
        _map = map;
        Name = name;
        Check(bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map));
        MaxEntries = (int)bpf_map__max_entries(map);
    }

    private BpfMap(int fd, string name, in MapInfo info)
    {
        _ownFd = fd;
        Name = name;
        Check((int)info.Type, info.KeySize, info.ValueSize);
        MaxEntries = (int)info.MaxEntries;
    }

    private void Check(int type, uint keySize, uint valueSize)
    {
        // Per-CPU maps hand back one value per possible CPU: a TValue buffer would overflow.
        if (type is 5 or 6 or 10 or 21)
            throw new BpfException($"map {Name} is per-CPU (type {type}); read it with a per-CPU array of values, not BpfMap");
        if (keySize != sizeof(TKey) || valueSize != sizeof(TValue))
            throw new BpfException($"map {Name} has {keySize}-byte keys and {valueSize}-byte values; {typeof(TKey).Name} is {sizeof(TKey)} bytes and {typeof(TValue).Name} {sizeof(TValue)}");
    }

    /// <summary>Opens a map pinned at <paramref name="path"/> (by this or another process); dispose it to close its descriptor.</summary>
    public static BpfMap<TKey, TValue> OpenPinned(string path)
    {
        int fd;
        try { fixed (byte* p = Z(path)) fd = bpf_obj_get(p); }
        catch (DllNotFoundException e) { throw Missing(e); }
        if (fd < 0) throw new BpfException($"cannot open the map pinned at {path}: {Describe(fd)}");
        var err = Info(fd, out var info);
        if (err != 0) { LibBpf.close(fd); throw new BpfException($"{path} is not a map: {Describe(err)}"); }
        try { return new BpfMap<TKey, TValue>(fd, Path.GetFileName(path), info); }
        catch { LibBpf.close(fd); throw; }
    }

    private static int Info(int fd, out MapInfo info)
    {
        info = default;
        var len = (uint)sizeof(MapInfo);
        fixed (MapInfo* p = &info) return bpf_obj_get_info_by_fd(fd, p, &len);
    }

    public string Name { get; }
    public int MaxEntries { get; }

    /// <summary>The kernel's id of the map: two descriptors (or a map and a pin) with one id are the same map.</summary>
    public uint Id
    {
        get
        {
            var err = Info(Fd, out var info);
            return err == 0 ? info.Id : throw new BpfException($"cannot read map {Name}'s id: {Describe(err)}");
        }
    }

    internal int Fd => _owner is not null
        ? _owner.IsLoaded && _owner.Handle != 0 ? bpf_map__fd(_map) : throw new InvalidOperationException($"{_owner.Name} is not loaded")
        : _ownFd >= 0 ? _ownFd : throw new ObjectDisposedException(Name);

    public bool TryLookup(in TKey key, out TValue value)
    {
        value = default;
        fixed (TKey* k = &key) fixed (TValue* v = &value)
        {
            var err = bpf_map_lookup_elem(Fd, k, v);
            if (err == -ENOENT) return false;
            if (err != 0) throw new BpfException($"lookup in {Name} failed: {Describe(err)}");
            return true;
        }
    }

    public TValue this[in TKey key] => TryLookup(key, out var v) ? v : throw new KeyNotFoundException($"{Name} has no such key");

    /// <summary>Inserts or replaces; <see cref="BpfUpdate.NoExist"/> fails with false on an existing key, <see cref="BpfUpdate.Exist"/> on a missing one.
    /// A full hash map throws (E2BIG).</summary>
    public bool Update(in TKey key, in TValue value, BpfUpdate flags = BpfUpdate.Any)
    {
        var err = UpdateElement(key, value, flags);
        if (err == -EEXIST && flags == BpfUpdate.NoExist || err == -ENOENT && flags == BpfUpdate.Exist) return false;
        return err == 0 ? true : throw UpdateFailed(err);
    }

    /// <summary>Inserts or replaces, as a program's bpf_map_update_elem: false when the key is new and the map is full (E2BIG).</summary>
    public bool Set(in TKey key, in TValue value)
    {
        var err = UpdateElement(key, value, BpfUpdate.Any);
        if (err == -E2BIG) return false;
        return err == 0 ? true : throw UpdateFailed(err);
    }

    private int UpdateElement(in TKey key, in TValue value, BpfUpdate flags)
    {
        fixed (TKey* k = &key) fixed (TValue* v = &value) return bpf_map_update_elem(Fd, k, v, (ulong)flags);
    }

    private BpfException UpdateFailed(int err) => new($"update of {Name} failed: {Describe(err)}");

    /// <summary>Removes a key; false when it was not there.</summary>
    public bool Delete(in TKey key)
    {
        fixed (TKey* k = &key)
        {
            var err = bpf_map_delete_elem(Fd, k);
            if (err == -ENOENT) return false;
            if (err != 0) throw new BpfException($"delete from {Name} failed: {Describe(err)}");
            return true;
        }
    }

    /// <summary>A snapshot of the keys (BPF_MAP_GET_NEXT_KEY from the start).</summary>
    public List<TKey> Keys()
    {
        var keys = new List<TKey>();
        TKey next;
        var err = bpf_map_get_next_key(Fd, null, &next);
        while (err == 0)
        {
            keys.Add(next);
            var prev = next;
            err = bpf_map_get_next_key(Fd, &prev, &next);
        }
        if (err != -ENOENT) throw new BpfException($"iterating {Name} failed: {Describe(err)}");
        return keys;
    }

    /// <summary>True when the last batch call ran as one BPF_MAP_*_BATCH command; false when this kernel
    /// or map type has none and the call went element by element; null before any batch call.</summary>
    public bool? UsedBatch => _batch;

    /// <summary>Every entry, as a snapshot: BPF_MAP_LOOKUP_BATCH where the kernel has it, else key by key.</summary>
    public List<KeyValuePair<TKey, TValue>> Entries()
    {
        if (_batch != false && LookupBatch() is { } batch) return batch;
        return Keys().Select(k => TryLookup(k, out var v) ? new KeyValuePair<TKey, TValue>(k, v) : (KeyValuePair<TKey, TValue>?)null)
                     .OfType<KeyValuePair<TKey, TValue>>().ToList();
    }

    private List<KeyValuePair<TKey, TValue>>? LookupBatch()
    {
        var keys = new TKey[MaxEntries];
        var values = new TValue[MaxEntries];
        // The position token is the map's own: a bucket number (u32) for hashes, a key for arrays.
        var tokenSize = Math.Max(sizeof(TKey), 8);
        var tokens = stackalloc byte[2 * tokenSize];
        byte* inToken = tokens, outToken = tokens + tokenSize;
        var opts = new BatchOpts { Sz = (nuint)sizeof(BatchOpts) };
        var got = 0;
        fixed (TKey* k = keys) fixed (TValue* v = values)
        {
            for (var first = true; got < MaxEntries; first = false)
            {
                var count = (uint)(MaxEntries - got);
                var err = bpf_map_lookup_batch(Fd, first ? null : inToken, outToken, k + got, v + got, &count, &opts);
                got += (int)count;
                if (err == -ENOENT) break;
                if (err != 0)
                {
                    if (first && err is -EINVAL or -EOPNOTSUPP or -ENOTSUPP) { _batch = false; return null; }
                    throw new BpfException($"batch lookup in {Name} failed: {Describe(err)}");
                }
                var swap = inToken;
                inToken = outToken;
                outToken = swap;
            }
        }
        _batch = true;
        var list = new List<KeyValuePair<TKey, TValue>>(got);
        for (var i = 0; i < got; i++) list.Add(new(keys[i], values[i]));
        return list;
    }

    /// <summary>
    /// Writes many entries in one BPF_MAP_UPDATE_BATCH where the kernel has it (else one by one):
    /// the number written. Stops at the first entry the map refuses (full: E2BIG; flags) and says
    /// how many went in before it.
    /// </summary>
    public int UpdateBatch(ReadOnlySpan<TKey> keys, ReadOnlySpan<TValue> values, BpfUpdate flags = BpfUpdate.Any)
    {
        if (keys.Length != values.Length) throw new ArgumentException($"{keys.Length} keys but {values.Length} values");
        if (keys.IsEmpty) return 0;
        if (_batch != false)
        {
            var count = (uint)keys.Length;
            var opts = new BatchOpts { Sz = (nuint)sizeof(BatchOpts), ElemFlags = (ulong)flags };
            int err;
            fixed (TKey* k = keys) fixed (TValue* v = values) err = bpf_map_update_batch(Fd, k, v, &count, &opts);
            if (err == 0) { _batch = true; return (int)count; }
            if (!(count == 0 && err is -EINVAL or -EOPNOTSUPP or -ENOTSUPP))
                throw new BpfException($"batch update of {Name} stopped after {count} of {keys.Length} entries: {Describe(err)}");
            _batch = false;
        }
        for (var i = 0; i < keys.Length; i++)
        {
            var err = UpdateElement(keys[i], values[i], flags);
            if (err != 0) throw new BpfException($"batch update of {Name} stopped after {i} of {keys.Length} entries: {Describe(err)}");
        }
        return keys.Length;
    }

    /// <summary>Removes many keys in one BPF_MAP_DELETE_BATCH where the kernel has it (else one by one); every key must exist.</summary>
    public int DeleteBatch(ReadOnlySpan<TKey> keys)
    {
        if (keys.IsEmpty) return 0;
        if (_batch != false)
        {
            var count = (uint)keys.Length;
            var opts = new BatchOpts { Sz = (nuint)sizeof(BatchOpts) };
            int err;
            fixed (TKey* k = keys) err = bpf_map_delete_batch(Fd, k, &count, &opts);
            if (err == 0) { _batch = true; return (int)count; }
            if (!(count == 0 && err is -EINVAL or -EOPNOTSUPP or -ENOTSUPP))
                throw new BpfException($"batch delete from {Name} stopped after {count} of {keys.Length} keys: {Describe(err)}");
            _batch = false;
        }
        for (var i = 0; i < keys.Length; i++)
            if (!Delete(keys[i])) throw new BpfException($"batch delete from {Name} stopped after {i} of {keys.Length} keys: {Describe(-ENOENT)}");
        return keys.Length;
    }

    /// <summary>
    /// The values of an array map created with BPF_F_MMAPABLE, mapped into this process: reads
    /// and atomic updates go straight to the kernel's memory, with no system call per access.
    /// </summary>
    public BpfMappedArray<TValue> MapValues()
    {
        // Array maps keep values 8-byte aligned; a stride other than the struct's would misplace them.
        if (sizeof(TValue) % 8 != 0) throw new BpfException($"map {Name}: {typeof(TValue).Name} is {sizeof(TValue)} bytes; mapped values must be a multiple of 8");
        var length = (nuint)((long)sizeof(TValue) * MaxEntries + Environment.SystemPageSize - 1) & ~(nuint)(Environment.SystemPageSize - 1);
        var addr = mmap(null, length, 3 /* PROT_READ|PROT_WRITE */, 1 /* MAP_SHARED */, Fd, 0);
        if (addr == (void*)-1)
            throw new BpfException($"cannot map {Name} into memory: {Describe(-Marshal.GetLastPInvokeError())} (it must be an array created with BPF_F_MMAPABLE)");
        return new BpfMappedArray<TValue>(addr, length, MaxEntries);
    }

    /// <summary>Pins the map at <paramref name="path"/> (under a mounted bpffs, /sys/fs/bpf) so it outlives this process.</summary>
    public void Pin(string path) => LibBpf.Pin(Fd, Name, path);

    /// <summary>Removes a pin (any pinned object's file under bpffs); the map lives on while something holds it.</summary>
    public static void Unpin(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }

    public void Dispose()
    {
        if (_ownFd >= 0) LibBpf.close(_ownFd);
        _ownFd = -1;
    }
}

/// <summary>The values of an mmap-able BPF array in this process's memory; unmapped on dispose.</summary>
public sealed unsafe class BpfMappedArray<T> : IDisposable where T : unmanaged
{
    private void* _addr;
    private readonly nuint _length;

    internal BpfMappedArray(void* addr, nuint length, int count) { _addr = addr; _length = length; Length = count; }

    public int Length { get; }

    /// <summary>Element i, by reference: use Interlocked on it for counters the kernel also adds to.</summary>
    public ref T this[int i]
    {
        get
        {
            if ((uint)i >= (uint)Length) throw new IndexOutOfRangeException($"{i} is outside 0..{Length - 1}");
            if (_addr == null) throw new ObjectDisposedException(nameof(BpfMappedArray<T>));
            return ref ((T*)_addr)[i];
        }
    }

    public void Dispose()
    {
        if (_addr != null) LibBpf.munmap(_addr, _length);
        _addr = null;
    }
}
