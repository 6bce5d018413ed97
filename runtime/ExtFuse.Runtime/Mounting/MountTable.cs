namespace ExtFuse.Mounting;

/// <summary>One line of mountinfo.</summary>
public sealed record MountEntry(string MountPoint, uint Major, uint Minor, string FsType, string Source);

/// <summary>Reads the calling thread's mountinfo: what is mounted where, and which FUSE connection serves it.</summary>
public static class MountTable
{
    public static IReadOnlyList<MountEntry> Read()
    {
        var list = new List<MountEntry>();
        // The calling thread's view: a thread that unshared its mount namespace (the sandbox launcher) sees its own mounts.
        foreach (var line in File.ReadLines("/proc/thread-self/mountinfo"))
        {
            var f = line.Split(' ');
            var sep = Array.IndexOf(f, "-");
            if (f.Length < 7 || sep < 6 || sep + 2 >= f.Length) continue;
            var dev = f[2].Split(':');
            if (dev.Length != 2 || !uint.TryParse(dev[0], out var major) || !uint.TryParse(dev[1], out var minor)) continue;
            list.Add(new MountEntry(Unescape(f[4]), major, minor, f[sep + 1], Unescape(f[sep + 2])));
        }
        return list;
    }

    /// <summary>The top-most mount exactly at <paramref name="path"/>, if any.</summary>
    public static MountEntry? At(string path)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        if (full.Length == 0) full = "/";
        MountEntry? found = null;
        foreach (var e in Read()) if (e.MountPoint == full) found = e;
        return found;
    }

    public static bool IsFuse(MountEntry e) => e.FsType == "fuse" || e.FsType.StartsWith("fuse.", StringComparison.Ordinal);

    // mountinfo escapes space, tab, newline and backslash as octal \ooo.
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new System.Text.StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && IsOctal(s, i + 1))
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }

    private static bool IsOctal(string s, int i) =>
        i + 3 <= s.Length && s[i] is >= '0' and <= '7' && s[i + 1] is >= '0' and <= '7' && s[i + 2] is >= '0' and <= '7';
}
