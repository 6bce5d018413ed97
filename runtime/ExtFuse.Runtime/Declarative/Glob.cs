using System;
using System.Text;
using System.Text.RegularExpressions;

namespace ExtFuse.Declarative;

/// <summary>
/// Path globs of the rules, relative to the mount's root: <c>*</c> (within a name), <c>**</c>
/// (a whole segment: any number of directories, also none), <c>?</c>, and classes <c>[abc]</c>,
/// <c>[a-z]</c>, <c>[!x]</c>. A leading '/' is allowed and ignored. This file is compiled into the
/// generator too (netstandard2.0), so a glob the build accepts is one the runtime can match.
/// </summary>
public static class Glob
{
    /// <summary>Why a glob is invalid, or null when it is valid.</summary>
    public static string? Validate(string? glob)
    {
        if (glob is null || glob.Trim().Length == 0) return "a glob cannot be empty";
        var body = glob.TrimStart('/');
        if (body.Length == 0) return "'/' alone names the root, which no rule can apply to; use \"**\" for everything";
        foreach (var segment in body.Split('/'))
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

    /// <summary>The anchored regular expression for a valid glob, over paths without a leading '/'.</summary>
    public static string ToRegex(string glob)
    {
        var error = Validate(glob);
        if (error is not null) throw new ArgumentException($"invalid glob '{glob}': {error}", nameof(glob));
        var segments = glob.TrimStart('/').Split('/');
        var sb = new StringBuilder("^");
        for (var s = 0; s < segments.Length; s++)
        {
            var segment = segments[s];
            var last = s == segments.Length - 1;
            if (segment == "**")
            {
                // Any number of whole segments, each followed by '/' (or everything, at the end).
                sb.Append(last ? ".*" : "(?:[^/]+/)*");
                continue;
            }
            for (var i = 0; i < segment.Length; i++)
            {
                var c = segment[i];
                switch (c)
                {
                    case '*': sb.Append("[^/]*"); break;
                    case '?': sb.Append("[^/]"); break;
                    case '[':
                    {
                        var negate = segment[i + 1] == '!';
                        var start = i + 1 + (negate ? 1 : 0);
                        var close = segment.IndexOf(']', start);
                        sb.Append(negate ? "[^/" : "[");
                        foreach (var ch in segment.Substring(start, close - start))
                            sb.Append(ch == '-' ? "-" : Regex.Escape(ch.ToString()).Replace("]", "\\]"));
                        sb.Append(']');
                        i = close;
                        break;
                    }
                    default: sb.Append(Regex.Escape(c.ToString())); break;
                }
            }
            if (!last) sb.Append('/');
        }
        return sb.Append('$').ToString();
    }
}
