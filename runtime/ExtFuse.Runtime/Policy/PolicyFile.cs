using System.Text;
using System.Text.Json;
using ExtFuse.Declarative;

namespace ExtFuse.Policy;

/// <summary>A policy file read and checked: its rules (in file order), its default, and where it came from.</summary>
public sealed record PolicyDocument(IReadOnlyList<PathRule> Rules, bool DefaultDeny, int DefaultErrno, string Source);

/// <summary>
/// Policy files: the [Deny]/[Allow]/[Hide] rules as JSON (schema: policy.schema.json, next to the
/// assembly and in runtime/ExtFuse.Runtime/Policy/). Every mistake is an error at its line and
/// column, and nothing of a bad file is used:
/// <code>
/// { "default": "allow",
///   "rules": [
///     { "effect": "allow", "ops": ["read"], "path": "secrets/public.txt" },
///     { "effect": "deny", "ops": ["read", "write"], "path": "secrets/**", "uid": 1000 },
///     { "effect": "hide", "path": "**/.git" } ] }
/// </code>
/// </summary>
public static class PolicyFile
{
    /// <summary>
    /// Operation names (the vocabulary of <see cref="ExtFuse.Protocol.Operations"/>) and the groups "all"
    /// (every operation; in a rule that depends on the caller every operation but lookup and getattr,
    /// which the kernel caches for every caller) and "modify" (every changing operation).
    /// </summary>
    public static IReadOnlyDictionary<string, FuseOps> OpNames { get; } = Vocabulary();

    private static Dictionary<string, FuseOps> Vocabulary()
    {
        var names = new Dictionary<string, FuseOps>(StringComparer.Ordinal);
        foreach (var (bit, name) in ExtFuse.Protocol.Operations.Vocabulary) names[name] = (FuseOps)bit;
        names["all"] = AccessPolicy.AllOps;
        names["modify"] = (FuseOps)ExtFuse.Protocol.Operations.Modifying;
        return names;
    }

    /// <summary>Errno names a rule may answer with (or a number from 1 to 4095).</summary>
    public static IReadOnlyDictionary<string, int> ErrnoNames { get; } = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["EPERM"] = 1, ["ENOENT"] = 2, ["EIO"] = 5, ["EACCES"] = 13, ["EBUSY"] = 16, ["EEXIST"] = 17, ["EXDEV"] = 18,
        ["EINVAL"] = 22, ["ETXTBSY"] = 26, ["EROFS"] = 30, ["ENOSYS"] = 38, ["EOPNOTSUPP"] = 95, ["EDQUOT"] = 122,
    };

    /// <summary>Keys of the file and of each rule (the schema lists the same).</summary>
    public static IReadOnlyList<string> FileKeys { get; } = ["$schema", "default", "errno", "rules"];
    public static IReadOnlyList<string> RuleKeys { get; } = ["name", "effect", "ops", "path", "uid", "gid", "comm", "cgroup", "errno"];

    /// <summary>Reads and checks a policy file; <see cref="PolicyException"/> says what is wrong and where.</summary>
    public static PolicyDocument Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PolicyException(path, $"cannot read the policy file: {e.Message}"); }
        return Parse(bytes, path);
    }

    public static PolicyDocument Parse(string json, string source = "policy") => Parse(Encoding.UTF8.GetBytes(json), source);

    public static PolicyDocument Parse(byte[] utf8, string source)
    {
        var p = new Parser(utf8, source);
        try { return p.File(); }
        catch (JsonException e) { throw new PolicyException(source, $"{(e.LineNumber ?? 0) + 1}:{(e.BytePositionInLine ?? 0) + 1}: not valid JSON: {FirstLine(e.Message)}"); }
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Split(" LineNumber:")[0];

    private ref struct Parser(byte[] utf8, string source)
    {
        private Utf8JsonReader _r = new(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        private readonly byte[] _utf8 = utf8;

        private readonly PolicyException Error(string where, string problem, long at = -1)
        {
            at = at < 0 ? _r.TokenStartIndex : at;
            var line = 1;
            var lineStart = 0L;
            for (var i = 0; i < at && i < _utf8.Length; i++)
                if (_utf8[i] == '\n') (line, lineStart) = (line + 1, i + 1);
            return new PolicyException(source, $"{line}:{at - lineStart + 1}: {where}: {problem}");
        }

        private void Read()
        {
            if (!_r.Read()) throw Error("file", "ends too early");
        }

        public PolicyDocument File()
        {
            Read();
            if (_r.TokenType != JsonTokenType.StartObject) throw Error("file", "a policy is a JSON object with \"rules\"");
            var defaultDeny = false;
            var errno = 13;
            List<PathRule>? rules = null;
            var seen = new HashSet<string>();
            while (true)
            {
                Read();
                if (_r.TokenType == JsonTokenType.EndObject) break;
                var key = _r.GetString()!;
                var at = _r.TokenStartIndex;
                if (!seen.Add(key)) throw Error(key, "appears twice", at);
                Read();
                switch (key)
                {
                    case "$schema": String(key); break;
                    case "default":
                        defaultDeny = String(key) switch
                        {
                            "allow" => false,
                            "deny" => true,
                            var other => throw Error(key, $"is \"allow\" or \"deny\", not \"{other}\""),
                        };
                        break;
                    case "errno": errno = Errno(key); break;
                    case "rules": rules = Rules(); break;
                    default: throw Error(key, $"unknown key (a policy has {string.Join(", ", FileKeys)})", at);
                }
            }
            if (rules is null) throw Error("file", "has no \"rules\" array", 0);
            if (_r.Read()) throw Error("file", "has more after the policy object");
            if (rules.Count > AccessPolicy.MaxRules) throw Error("rules", $"{rules.Count} rules; a policy has at most {AccessPolicy.MaxRules}", 0);
            return new PolicyDocument(rules, defaultDeny, errno, source);
        }

        private List<PathRule> Rules()
        {
            if (_r.TokenType != JsonTokenType.StartArray) throw Error("rules", "is an array of rule objects");
            var rules = new List<PathRule>();
            while (true)
            {
                Read();
                if (_r.TokenType == JsonTokenType.EndArray) return rules;
                rules.Add(Rule($"rules[{rules.Count}]"));
            }
        }

        private PathRule Rule(string where)
        {
            if (_r.TokenType != JsonTokenType.StartObject) throw Error(where, "a rule is an object with \"effect\"");
            var start = _r.TokenStartIndex;
            string? name = null, effect = null, path = null, comm = null, cgroup = null;
            FuseOps? ops = null;
            (_namedAll, _named) = (false, 0);
            long uid = -1, gid = -1;
            int? errno = null;
            var seen = new HashSet<string>();
            while (true)
            {
                Read();
                if (_r.TokenType == JsonTokenType.EndObject) break;
                var key = _r.GetString()!;
                var at = _r.TokenStartIndex;
                var here = $"{where}.{key}";
                if (!seen.Add(key)) throw Error(here, "appears twice", at);
                Read();
                switch (key)
                {
                    case "name": name = String(here); break;
                    case "effect":
                        effect = String(here);
                        if (effect is not ("deny" or "allow" or "hide")) throw Error(here, $"is \"deny\", \"allow\" or \"hide\", not \"{effect}\"");
                        break;
                    case "ops": ops = Ops(here); break;
                    case "path":
                        path = String(here);
                        if (Glob.Validate(path) is { } bad) throw Error(here, $"invalid glob \"{path}\": {bad}");
                        break;
                    case "uid": uid = Id(here); break;
                    case "gid": gid = Id(here); break;
                    case "comm": comm = String(here); break;
                    case "cgroup": cgroup = String(here); break;
                    case "errno": errno = Errno(here); break;
                    default: throw Error(here, $"unknown key (a rule has {string.Join(", ", RuleKeys)})", at);
                }
            }
            if (effect is null) throw Error(where, "has no \"effect\" (\"deny\", \"allow\" or \"hide\")", start);
            if (effect == "hide")
            {
                if (path is null) throw Error(where, "a hide rule needs a \"path\"", start);
                if (ops is not null || errno is not null || uid >= 0 || gid >= 0 || comm is not null || cgroup is not null)
                    throw Error(where, "a hide rule has only a \"path\" (and a \"name\"): a hidden name does not exist for anyone", start);
                return new PathRule(PathRuleKind.Hide, 0, path, Errno: 2, Name: name);
            }
            if (effect == "allow" && errno is not null) throw Error(where, "an allow rule has no \"errno\"", start);
            var kind = effect == "deny" ? PathRuleKind.Deny : PathRuleKind.Allow;
            var callerDependent = uid >= 0 || gid >= 0 || comm is not null || cgroup is not null;
            // "all" (or no "ops") of a rule that depends on the caller leaves out what the kernel caches for every caller.
            var all = ops is null || _namedAll;
            var effective = ops ?? AccessPolicy.AllOps;
            if (all && callerDependent) effective &= ~(FuseOps.Lookup | FuseOps.GetAttr) | (_named & (FuseOps.Lookup | FuseOps.GetAttr));
            var rule = new PathRule(kind, effective, path, uid, gid, comm, errno ?? 13, cgroup, name);
            if (RuleValidation.Problem(kind == PathRuleKind.Allow, (uint)rule.Ops, uid, gid, comm, cgroup, rule.Errno) is { } problem)
                throw Error(where, problem.Replace("Uid", "uid").Replace("Gid", "gid").Replace("Comm", "comm").Replace("Cgroup", "cgroup").Replace("Errno", "errno"), start);
            return rule;
        }

        /// <summary>Of the rule being read: whether its ops say "all", and the operations it names one by one.</summary>
        private bool _namedAll;
        private FuseOps _named;

        private FuseOps Ops(string where)
        {
            _namedAll = false;
            _named = 0;
            if (_r.TokenType == JsonTokenType.String) return Op(where);
            if (_r.TokenType != JsonTokenType.StartArray) throw Error(where, "is an operation name or an array of them");
            FuseOps ops = 0;
            for (var i = 0; ; i++)
            {
                Read();
                if (_r.TokenType == JsonTokenType.EndArray) break;
                ops |= Op($"{where}[{i}]");
            }
            if (ops == 0) throw Error(where, "names no operation");
            return ops;
        }

        private FuseOps Op(string where)
        {
            var name = String(where);
            if (!OpNames.TryGetValue(name, out var op)) throw Error(where, $"unknown operation \"{name}\" (known: {string.Join(", ", OpNames.Keys)})");
            if (name == "all") _namedAll = true;
            else if (name != "modify") _named |= op;
            return op;
        }

        private int Errno(string where)
        {
            if (_r.TokenType == JsonTokenType.Number)
                return _r.TryGetInt32(out var n) && n is > 0 and <= 4095 ? n : throw Error(where, "an errno number is 1 to 4095");
            var name = String(where);
            return ErrnoNames.TryGetValue(name, out var e) ? e
                : throw Error(where, $"unknown errno \"{name}\" (known: {string.Join(", ", ErrnoNames.Keys)}, or a number)");
        }

        private long Id(string where) =>
            _r.TokenType == JsonTokenType.Number && _r.TryGetInt64(out var v) && v is >= 0 and <= uint.MaxValue ? v
                : throw Error(where, "is a uid or gid: a number from 0 to 4294967295");

        private string String(string where) =>
            _r.TokenType == JsonTokenType.String ? _r.GetString()! : throw Error(where, $"is a string, not {_r.TokenType}");
    }
}
