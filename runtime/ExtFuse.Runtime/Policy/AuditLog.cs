using System.Collections.Concurrent;
using System.Text.Json;

namespace ExtFuse.Policy;

/// <summary>One refused request: when, what, on which path, by whom, which rule, and who refused it (the daemon or the kernel's LSM program).</summary>
public sealed record AuditRecord(DateTimeOffset Time, string Op, string? Path, uint Pid, string? Comm, uint Uid, uint Gid, string Rule, int Errno, string By);

/// <summary>
/// Every denial of a mount: counted per rule, and, with a file, written to it as one JSON object per
/// line (<c>{"time":...,"op":"OPEN","path":"secret/a","pid":..,"comm":"cat","uid":..,"gid":..,"rule":..,"errno":13,"by":"daemon"}</c>).
/// </summary>
public sealed class AuditLog : IDisposable
{
    private readonly ConcurrentDictionary<string, long> _byRule = new(StringComparer.Ordinal);
    private readonly FileStream? _file;
    private readonly Utf8JsonWriter? _writer;
    private long _total;

    /// <param name="path">The file records are appended to; null to count only.</param>
    public AuditLog(string? path)
    {
        Path = path;
        if (path is null) return;
        try { _file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PolicyException(path, $"cannot open the audit log: {e.Message}"); }
        _writer = new Utf8JsonWriter(_file);
    }

    public string? Path { get; }
    public long Total => Interlocked.Read(ref _total);
    /// <summary>Denials so far, by rule name.</summary>
    public IReadOnlyDictionary<string, long> ByRule => _byRule;

    /// <summary>Raised after each record (for the sandbox's live view and tests).</summary>
    public event Action<AuditRecord>? Recorded;

    public void Record(AuditRecord r)
    {
        Interlocked.Increment(ref _total);
        _byRule.AddOrUpdate(r.Rule, 1, (_, n) => n + 1);
        if (_writer is { } w)
        {
            lock (w)
            {
                w.WriteStartObject();
                w.WriteString("time", r.Time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture));
                w.WriteString("op", r.Op);
                w.WriteString("path", r.Path);
                w.WriteNumber("pid", r.Pid);
                w.WriteString("comm", r.Comm);
                w.WriteNumber("uid", r.Uid);
                w.WriteNumber("gid", r.Gid);
                w.WriteString("rule", r.Rule);
                w.WriteNumber("errno", r.Errno);
                w.WriteString("by", r.By);
                w.WriteEndObject();
                w.Flush();
                _file!.WriteByte((byte)'\n');
                _file.Flush();
                w.Reset();
            }
        }
        Recorded?.Invoke(r);
    }

    /// <summary>Reads an audit log back (one record per line; lines that do not parse are skipped).</summary>
    public static IEnumerable<AuditRecord> Read(string path)
    {
        foreach (var line in File.ReadLines(path))
        {
            AuditRecord? record = null;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var e = doc.RootElement;
                record = new AuditRecord(DateTimeOffset.Parse(e.GetProperty("time").GetString()!, System.Globalization.CultureInfo.InvariantCulture),
                    e.GetProperty("op").GetString()!, e.GetProperty("path").GetString(), e.GetProperty("pid").GetUInt32(), e.GetProperty("comm").GetString(),
                    e.GetProperty("uid").GetUInt32(), e.GetProperty("gid").GetUInt32(), e.GetProperty("rule").GetString()!, e.GetProperty("errno").GetInt32(),
                    e.GetProperty("by").GetString()!);
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException) { }
            if (record is not null) yield return record;
        }
    }

    /// <summary>"N denials: rule (count), ..." for the end of a sandbox run.</summary>
    public string Summary() => Total == 0 ? "no denials"
        : $"{Total} denial{(Total == 1 ? "" : "s")}: " + string.Join(", ", _byRule.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} ({kv.Value})"));

    public void Dispose()
    {
        _writer?.Dispose();
        _file?.Dispose();
    }
}
