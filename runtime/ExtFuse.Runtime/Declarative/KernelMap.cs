using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExtFuse.Bpf;

namespace ExtFuse.Declarative;

/// <summary>
/// A typed map that [Check] and [FastPath] code reads and writes: declare it as a static readonly
/// field of a [FileSystem] class (<c>static readonly KernelMap&lt;ulong, Quota&gt; Quotas = new(1024);</c>)
/// and the generator emits the matching BPF hash map, the C structs of its key and value with
/// size and offset checks, and translates TryGet/GetValueOrDefault/Set/Remove to the map helpers.
/// Until <see cref="Bind"/> it keeps its entries in the daemon; once bound, every operation goes to
/// the kernel's map, so the daemon and the BPF programs share one table.
/// Keys compare by their bytes, as the kernel's hash maps compare them.
/// </summary>
public sealed class KernelMap<TKey, TValue> : INodeKeyedMap where TKey : unmanaged where TValue : unmanaged
{
    private event Action<ulong>? NodeChanged;

    /// <summary>With node ids for keys (ulong): raised after the daemon changed or removed an entry.</summary>
    event Action<ulong>? INodeKeyedMap.NodeChanged { add => NodeChanged += value; remove => NodeChanged -= value; }

    private void Changed(TKey key)
    {
        if (typeof(TKey) == typeof(ulong) && NodeChanged is { } handlers) handlers(Unsafe.As<TKey, ulong>(ref key));
    }

    private readonly Dictionary<TKey, TValue> _entries = new(BytewiseComparer.Instance);
    private BpfMap<TKey, TValue>? _kernel;

    public KernelMap(int maxEntries)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxEntries);
        MaxEntries = maxEntries;
    }

    public int MaxEntries { get; }
    public bool IsBound => _kernel is not null;

    /// <summary>The value for a key; false (and default) when there is none, as bpf_map_lookup_elem's NULL.</summary>
    public bool TryGet(TKey key, out TValue value)
    {
        if (_kernel is { } k) return k.TryLookup(key, out value);
        lock (_entries) return _entries.TryGetValue(key, out value);
    }

    public TValue GetValueOrDefault(TKey key) => TryGet(key, out var v) ? v : default;

    /// <summary>Adds or replaces; false when the key is new and the map is full (the kernel's E2BIG).</summary>
    public bool Set(TKey key, TValue value)
    {
        bool done;
        if (_kernel is { } k) done = k.Set(key, value);
        else
            lock (_entries)
            {
                done = _entries.Count < MaxEntries || _entries.ContainsKey(key);
                if (done) _entries[key] = value;
            }
        if (done) Changed(key);
        return done;
    }

    /// <summary>Removes a key; false when it was not there.</summary>
    public bool Remove(TKey key)
    {
        bool done;
        if (_kernel is { } k) done = k.Delete(key);
        else lock (_entries) done = _entries.Remove(key);
        if (done) Changed(key);
        return done;
    }

    public int Count
    {
        get
        {
            if (_kernel is { } k) return k.Keys().Count;
            lock (_entries) return _entries.Count;
        }
    }

    /// <summary>A snapshot of the entries, ordered by key bytes so two maps compare as lists.</summary>
    public List<KeyValuePair<TKey, TValue>> Entries()
    {
        List<KeyValuePair<TKey, TValue>> list;
        if (_kernel is { } k) list = k.Entries();
        else lock (_entries) list = [.. _entries];
        list.Sort((a, b) => BytesOf(a.Key).SequenceCompareTo(BytesOf(b.Key)));
        return list;
    }

    public void Clear()
    {
        foreach (var (key, _) in Entries()) Remove(key);
    }

    /// <summary>
    /// Routes every operation to a loaded kernel map (the generated one of the same name), first
    /// moving this map's entries into it.
    /// </summary>
    public void Bind(BpfMap<TKey, TValue> kernel)
    {
        if (kernel.MaxEntries != MaxEntries)
            throw new ArgumentException($"kernel map {kernel.Name} holds {kernel.MaxEntries} entries, this one {MaxEntries}");
        lock (_entries)
        {
            foreach (var (key, value) in _entries)
                if (!kernel.Update(key, value)) throw new InvalidOperationException($"kernel map {kernel.Name} refused an entry");
            _entries.Clear();
            _kernel = kernel;
        }
    }

    /// <summary>Back to the daemon's own table, keeping the kernel map's entries.</summary>
    public void Unbind()
    {
        lock (_entries)
        {
            if (_kernel is not { } k) return;
            foreach (var (key, value) in k.Entries()) _entries[key] = value;
            _kernel = null;
        }
    }

    private static ReadOnlySpan<byte> BytesOf(in TKey key) => MemoryMarshal.AsBytes(new ReadOnlySpan<TKey>(in key));

    private sealed class BytewiseComparer : IEqualityComparer<TKey>
    {
        public static readonly BytewiseComparer Instance = new();
        public bool Equals(TKey a, TKey b) => BytesOf(a).SequenceEqual(BytesOf(b));
        public int GetHashCode(TKey key)
        {
            var h = new HashCode();
            h.AddBytes(BytesOf(key));
            return h.ToHashCode();
        }
    }
}

/// <summary>A KernelMap seen by the session: keys that are node ids, and a change notice for each.</summary>
public interface INodeKeyedMap
{
    event Action<ulong>? NodeChanged;
}
