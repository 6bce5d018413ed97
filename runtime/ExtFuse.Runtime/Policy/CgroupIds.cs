namespace ExtFuse.Policy;

/// <summary>cgroup v2 paths to the ids the kernel compares (bpf_get_current_ancestor_cgroup_id): a cgroup's id is its directory's inode number.</summary>
public static class CgroupIds
{
    private static readonly Lazy<string?> Root = new(FindRoot);

    /// <summary>Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified beside v1), or null.</summary>
    public static string? MountPoint => Root.Value;

    /// <summary>The depth of <paramref name="cgroup"/> ("/a/b": 2) and its id, 0 when it does not exist.</summary>
    public static (uint Level, ulong Id) Resolve(string cgroup)
    {
        var level = (uint)cgroup.Split('/', StringSplitOptions.RemoveEmptyEntries).Length;
        if (Root.Value is not { } root) return (level, 0);
        try
        {
            var dir = root + (cgroup == "/" ? "" : cgroup);
            return (level, Directory.Exists(dir) ? Inode(dir) : 0);
        }
        catch (IOException) { return (level, 0); }
    }

    private static unsafe ulong Inode(string path)
    {
        ExtFuse.Interop.Stat st;
        return Libc.Stat(path, &st) == 0 ? st.Ino : 0;
    }

    private static string? FindRoot()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
                var dash = line.IndexOf(" - ", StringComparison.Ordinal);
                if (dash < 0 || !line[(dash + 3)..].StartsWith("cgroup2 ", StringComparison.Ordinal)) continue;
                return line.Split(' ')[4];
            }
        }
        catch (IOException) { }
        return null;
    }
}
