namespace ExtFuse.Policy;

/// <summary>
/// Who asks: the ids the kernel put in the request (fsuid, fsgid, thread id), and, read from /proc
/// only when a rule that otherwise matches needs them, the process's name and cgroup.
/// </summary>
public struct Caller(uint uid, uint gid, uint pid)
{
    public readonly uint Uid = uid, Gid = gid, Pid = pid;
    private string? _comm, _cgroup;
    private bool _commRead, _cgroupRead;

    /// <summary>A caller whose process name is already known (the kernel reported it).</summary>
    public Caller(uint uid, uint gid, uint pid, string? comm) : this(uid, gid, pid) => (_comm, _commRead) = (comm, true);

    /// <summary>The kernel's name for the calling thread (/proc/PID/comm), or null when it is gone.</summary>
    public string? Comm
    {
        get
        {
            if (!_commRead) (_comm, _commRead) = (Read($"/proc/{Pid}/comm")?.TrimEnd('\n'), true);
            return _comm;
        }
    }

    /// <summary>The caller's cgroup v2 path ("/" for the root), or null when it is gone.</summary>
    public string? Cgroup
    {
        get
        {
            if (_cgroupRead) return _cgroup;
            _cgroupRead = true;
            foreach (var line in (Read($"/proc/{Pid}/cgroup") ?? "").Split('\n'))
                if (line.StartsWith("0::", StringComparison.Ordinal)) return _cgroup = line[3..];
            return null;
        }
    }

    /// <summary>Whether the caller is in <paramref name="cgroup"/> or below it.</summary>
    public bool InCgroup(string cgroup) =>
        Cgroup is { } mine && (cgroup == "/" || mine == cgroup || mine.StartsWith(cgroup, StringComparison.Ordinal) && mine.Length > cgroup.Length && mine[cgroup.Length] == '/');

    private static string? Read(string path)
    {
        try { return File.ReadAllText(path); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
