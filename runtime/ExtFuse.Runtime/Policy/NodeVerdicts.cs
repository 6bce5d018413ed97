using System.Collections.Concurrent;

namespace ExtFuse.Policy;

/// <summary>Where verdicts go besides the daemon's cache: the kernel's map, when LSM programs enforce the policy.</summary>
public interface IVerdictSink
{
    void Set(ulong nodeId, in NodeVerdict verdict);
    void Remove(ulong nodeId);
}

/// <summary>
/// nodeid -> what the policy says of the node's paths, decided when the node is resolved and kept
/// until its names change, it is forgotten, or the policy is reloaded. A request on a node then
/// costs bit tests, not a path and a glob match.
/// </summary>
internal sealed class NodeVerdicts(RawFileSystem fs)
{
    private readonly ConcurrentDictionary<ulong, NodeVerdict> _known = new();

    public IVerdictSink? Kernel { get; set; }

    public NodeVerdict Get(AccessPolicy policy, ulong node) =>
        _known.TryGetValue(node, out var v) && v.Generation == policy.Generation ? v : Compute(policy, node);

    private NodeVerdict Compute(AccessPolicy policy, ulong node)
    {
        var v = policy.VerdictOf(fs.PathsOf(node), fs.IsDirectory(node));
        _known[node] = v;
        Kernel?.Set(node, v);
        return v;
    }

    /// <summary>A node got or lost a name, or was forgotten. A directory already known may have moved: everything below it with it.</summary>
    public void NamesChanged(AccessPolicy policy, ulong node)
    {
        if (fs.Knows(node) && fs.IsDirectory(node) && _known.ContainsKey(node)) RecomputeAll(policy);
        else Refresh(policy, node);
    }

    /// <summary>Every kept verdict again (a reload, or a directory renamed).</summary>
    public void RecomputeAll(AccessPolicy policy)
    {
        foreach (var id in _known.Keys) Refresh(policy, id);
    }

    /// <summary>The node's verdict again, or gone with the node.</summary>
    private void Refresh(AccessPolicy policy, ulong node)
    {
        if (fs.Knows(node)) Compute(policy, node);
        else if (_known.TryRemove(node, out _)) Kernel?.Remove(node);
    }

    /// <summary>The kernel gets a copy of every kept verdict (its programs were just attached).</summary>
    public void Replay()
    {
        if (Kernel is not { } k) return;
        foreach (var (id, v) in _known) k.Set(id, v);
    }
}
