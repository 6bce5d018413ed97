using System.Runtime.InteropServices;
using static ExtFuse.Bpf.LibBpf;

namespace ExtFuse.Bpf;

/// <summary>Flags of BPF_MAP_UPDATE_ELEM.</summary>
public enum BpfUpdate : ulong { Any = 0, NoExist = 1, Exist = 2 }

/// <summary>
/// A map of a loaded object, typed by the C# structs its schema was generated from. The key and
/// value sizes are checked against the kernel's map when it is opened, so a schema that drifted
/// from the C fails there, not as corrupt data.
/// </summary>
public sealed unsafe class BpfMap<TKey, TValue> where TKey : unmanaged where TValue : unmanaged
{
    private readonly BpfObject _owner;
    private readonly nint _map;

    internal BpfMap(BpfObject owner, nint map, string name)
    {
        _owner = owner;
        _map = map;
        Name = name;
        var (k, v) = (bpf_map__key_size(map), bpf_map__value_size(map));
        if (k != sizeof(TKey) || v != sizeof(TValue))
            throw new BpfException($"map {name} has {k}-byte keys and {v}-byte values; {typeof(TKey).Name} is {sizeof(TKey)} bytes and {typeof(TValue).Name} {sizeof(TValue)}");
    }

    public string Name { get; }
    public int MaxEntries => (int)bpf_map__max_entries(_map);
    private int Fd => _owner.IsLoaded && _owner.Handle != 0 ? bpf_map__fd(_map) : throw new InvalidOperationException($"{_owner.Name} is not loaded");

    public bool TryLookup(in TKey key, out TValue value)
    {
        value = default;
        fixed (TKey* k = &key) fixed (TValue* v = &value)
        {
            var err = bpf_map_lookup_elem(Fd, k, v);
            if (err == -2) return false; // ENOENT
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
        if (err == -17 && flags == BpfUpdate.NoExist || err == -2 && flags == BpfUpdate.Exist) return false; // EEXIST, ENOENT
        return err == 0 ? true : throw UpdateFailed(err);
    }

    /// <summary>Inserts or replaces, as a program's bpf_map_update_elem: false when the key is new and the map is full (E2BIG).</summary>
    public bool Set(in TKey key, in TValue value)
    {
        var err = UpdateElement(key, value, BpfUpdate.Any);
        if (err == -7) return false; // E2BIG
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
            if (err == -2) return false;
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
        if (err != -2) throw new BpfException($"iterating {Name} failed: {Describe(err)}");
        return keys;
    }

    /// <summary>Every entry, as a snapshot.</summary>
    public List<KeyValuePair<TKey, TValue>> Entries() =>
        Keys().Select(k => TryLookup(k, out var v) ? new KeyValuePair<TKey, TValue>(k, v) : (KeyValuePair<TKey, TValue>?)null)
              .OfType<KeyValuePair<TKey, TValue>>().ToList();

    /// <summary>Pins the map at <paramref name="path"/> (under a mounted bpffs, /sys/fs/bpf) so it outlives this process.</summary>
    public void Pin(string path)
    {
        int err;
        fixed (byte* p = Z(path)) err = bpf_map__pin(_map, p);
        if (err != 0) throw new BpfException($"cannot pin {Name} at {path}: {Describe(err)}" + (File.Exists("/sys/fs/bpf") || Directory.Exists("/sys/fs/bpf") ? "" : " (is bpffs mounted at /sys/fs/bpf?)"));
    }

    public void Unpin(string path)
    {
        int err;
        fixed (byte* p = Z(path)) err = bpf_map__unpin(_map, p);
        if (err != 0) throw new BpfException($"cannot unpin {Name} at {path}: {Describe(err)}");
    }
}
