using System;
using System.Collections.Generic;

#if EXTFUSE_GENERATOR
namespace ExtFuse.Generator;
#else
namespace ExtFuse.Declarative;
#endif

/// <summary>
/// Path globs of the rules, relative to the mount's root: <c>*</c> (within a name), <c>**</c>
/// (a whole segment: any number of directories, also none; at the end, everything inside: "a/**"
/// is what is below a, not a itself, as in .gitignore), <c>?</c>, and classes <c>[abc]</c>,
/// <c>[a-z]</c>, <c>[!x]</c>. A leading '/' is allowed and ignored. Matching runs a small automaton
/// over the path's segments, so besides "does it match" a glob can say where it stands after a
/// directory (<see cref="After"/>): which of that directory's children it matches, and whether two
/// directories are alike for every path below them (renames must not move files out of a rule's
/// reach). This file is compiled into the generator too (netstandard2.0), so a glob the build
/// accepts is one the runtime can match (internal there: EXTFUSE_GENERATOR).
/// </summary>
#if EXTFUSE_GENERATOR
internal
#else
public
#endif
sealed class Glob
{
    /// <summary>Why a glob is invalid, or null when it is valid.</summary>
    public static string? Validate(string? glob)
    {
        if (glob is null || glob.Trim().Length == 0) return "a glob cannot be empty";
        var body = glob.TrimStart('/');
        if (body.Length == 0) return "'/' alone names the root, which no rule can apply to; use \"**\" for everything";
        var segments = body.Split('/');
        if (segments.Length > MaxSegments) return $"more than {MaxSegments} segments";
        foreach (var segment in segments)
        {
            if (segment.Length == 0) return "empty path segment ('//' or a trailing '/')";
            if (segment is "." or "..") return $"'{segment}' segments are not allowed: globs name paths below the mount's root";
            if (segment.Contains("**") && segment != "**") return $"'**' must be a whole segment, not part of '{segment}'";
            for (var i = 0; i < segment.Length; i++)
            {
                if (segment[i] == ']') return $"']' without '[' in '{segment}'";
                if (segment[i] != '[') continue;
                var start = i + 1 < segment.Length && segment[i + 1] == '!' ? i + 2 : i + 1;
                var close = segment.IndexOf(']', start);
                if (close < 0) return $"'[' is not closed in '{segment}'";
                if (close == start) return $"empty class '[]' in '{segment}'";
                var cls = segment.Substring(start, close - start);
                for (var k = 1; k + 1 < cls.Length; k++)
                    if (cls[k] == '-' && cls[k - 1] > cls[k + 1]) return $"range '{cls[k - 1]}-{cls[k + 1]}' is backwards in '{segment}'";
                i = close;
            }
        }
        return null;
    }

    /// <summary>Segments a glob may have: the automaton's states are the bits of a ulong.</summary>
    public const int MaxSegments = 62;

    private readonly string[] _segments;

    private Glob(string text, string[] segments)
    {
        Text = text;
        _segments = segments;
    }

    public string Text { get; }

    /// <summary>A valid glob, ready to match; throws <see cref="ArgumentException"/> with the reason otherwise.</summary>
    public static Glob Parse(string glob)
    {
        var error = Validate(glob);
        if (error is not null) throw new ArgumentException($"invalid glob '{glob}': {error}", nameof(glob));
        return new Glob(glob, glob.TrimStart('/').Split('/'));
    }

    /// <summary>
    /// Where the automaton stands: bit p set when the first p segments of the glob can have matched
    /// what was read so far (bit <c>Count</c>: the whole glob). Two equal states match exactly the same
    /// continuations.
    /// </summary>
    public ulong Start => Closure(1UL);

    private int Count => _segments.Length;
    private ulong Accept => 1UL << Count;

    /// <summary>Adds the states a '**' may skip to: inside a glob it matches no segment too; at its end it
    /// matches one or more (so "a/**" is everything inside a, not a itself).</summary>
    private ulong Closure(ulong states)
    {
        for (var p = 0; p < Count - 1; p++)
            if ((states & (1UL << p)) != 0 && _segments[p] == "**") states |= 1UL << (p + 1);
        return states;
    }

    /// <summary>Where segment p leads after reading one name it matches.</summary>
    private ulong Next(int p) => _segments[p] == "**" ? (1UL << p) | (p == Count - 1 ? Accept : 0) : 1UL << (p + 1);

    /// <summary>The state after reading one more path segment.</summary>
    public ulong Step(ulong states, string path, int start, int length)
    {
        ulong next = 0;
        for (var p = 0; p < Count; p++)
        {
            if ((states & (1UL << p)) == 0) continue;
            if (_segments[p] == "**" || SegmentMatches(_segments[p], 0, path, start, start + length)) next |= Next(p);
        }
        return Closure(next);
    }

    /// <summary>The state after reading a whole path (segments separated by '/', no leading '/'; "" is the root).</summary>
    public ulong After(string path)
    {
        var states = Start;
        var i = 0;
        while (i < path.Length && states != 0)
        {
            var end = path.IndexOf('/', i);
            if (end < 0) end = path.Length;
            states = Step(states, path, i, end - i);
            i = end + 1;
        }
        return states;
    }

    public bool Accepts(ulong states) => (states & Accept) != 0;

    /// <summary>Whether the glob matches a path ("" is the root, which no glob matches).</summary>
    public bool IsMatch(string path) => Accepts(After(path));

    /// <summary>What a glob says of the children of a directory it stands at <paramref name="states"/> after.</summary>
    public ChildMatch Children(ulong states)
    {
        var result = ChildMatch.None;
        for (var p = 0; p < Count; p++)
        {
            if ((states & (1UL << p)) == 0) continue;
            var segment = _segments[p];
            if (!Accepts(Closure(Next(p)))) continue;
            if (segment == "**" || segment.Trim('*').Length == 0) return ChildMatch.All;
            result = ChildMatch.Some;
        }
        return result;
    }

    /// <summary>Whether a segment pattern (from index <paramref name="g"/>) matches name[start..end): '*', '?' and classes.</summary>
    private static bool SegmentMatches(string pattern, int g, string name, int start, int end)
    {
        while (g < pattern.Length)
        {
            var c = pattern[g];
            if (c == '*')
            {
                // Collapse runs of '*', then try every split; names are short.
                while (g < pattern.Length && pattern[g] == '*') g++;
                if (g == pattern.Length) return true;
                for (var k = start; k <= end; k++)
                    if (SegmentMatches(pattern, g, name, k, end)) return true;
                return false;
            }
            if (start == end) return false;
            if (c == '?') { g++; start++; continue; }
            if (c == '[')
            {
                var negate = pattern[g + 1] == '!';
                var first = g + 1 + (negate ? 1 : 0);
                var close = pattern.IndexOf(']', first);
                if (InClass(pattern, first, close, name[start]) == negate) return false;
                g = close + 1;
                start++;
                continue;
            }
            if (c != name[start]) return false;
            g++;
            start++;
        }
        return start == end;
    }

    private static bool InClass(string pattern, int first, int close, char ch)
    {
        for (var k = first; k < close; k++)
        {
            if (k + 2 < close && pattern[k + 1] == '-')
            {
                if (ch >= pattern[k] && ch <= pattern[k + 2]) return true;
                k += 2;
            }
            else if (pattern[k] == ch) return true;
        }
        return false;
    }

    public override string ToString() => Text;
}

/// <summary>Which children of a directory a glob matches: none, some names (decided per name), or every name.</summary>
#if EXTFUSE_GENERATOR
internal
#else
public
#endif
enum ChildMatch { None, Some, All }
