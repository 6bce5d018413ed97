using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ExtFuse.Session;

/// <summary>
/// A daemon's control socket, one per mount (<see cref="PathFor"/>): `extfuse policy reload` and
/// `extfuse stats` talk to it. One command per connection, one line in, the answer out:
/// <c>reload</c> (the policy file again: "ok ..." or "error ..."), <c>status</c> (JSON: the
/// daemon, its rules with their refusals, and where they run). Only root and the daemon's own
/// user may connect (SO_PEERCRED).
/// </summary>
public sealed class ControlSocket : IDisposable
{
    private readonly Socket _listener;
    private readonly FuseSession _session;
    private readonly Thread _thread;
    private volatile bool _stopping;

    private ControlSocket(FuseSession session, Socket listener, string path)
    {
        _session = session;
        _listener = listener;
        Path = path;
        _thread = new Thread(Serve) { IsBackground = true, Name = "extfuse-control" };
        _thread.Start();
    }

    public string Path { get; }

    /// <summary>Where the daemon serving FUSE connection <paramref name="connectionId"/> listens: /run/extfuse for root, else a per-user directory.</summary>
    public static string PathFor(uint connectionId, uint uid) =>
        uid == 0 ? $"/run/extfuse/{connectionId}.sock"
            : System.IO.Path.Combine(Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } x ? System.IO.Path.Combine(x, "extfuse") : $"/tmp/extfuse-{uid}", $"{connectionId}.sock");

    /// <summary>Starts listening for a started session's mount.</summary>
    public static ControlSocket Serve(FuseSession session)
    {
        var mount = session.Mount ?? throw new InvalidOperationException("the session is not started");
        var path = PathFor(mount.ConnectionId, Libc.GetEuid());
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.Delete(path);   // a daemon that died left it; connection ids are reused
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(4);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        return new ControlSocket(session, listener, path);
    }

    private void Serve()
    {
        while (!_stopping)
        {
            Socket client;
            try { client = _listener.Accept(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; }
            using (client)
            {
                try
                {
                    client.ReceiveTimeout = client.SendTimeout = 5000;
                    if (!Allowed(client)) { Send(client, "error permission denied: only root and the daemon's user may control it"); continue; }
                    Send(client, Answer(ReadLine(client)));
                }
                catch (Exception e) when (e is SocketException or IOException) { }
            }
        }
    }

    private static bool Allowed(Socket client)
    {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        Span<byte> cred = stackalloc byte[12];
        if (client.GetRawSocketOption(1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, cred) < 12) return false;
        var uid = BitConverter.ToUInt32(cred[4..]);
        return uid == 0 || uid == Libc.GetEuid();
    }

    private string Answer(string command)
    {
        switch (command.Trim())
        {
            case "reload":
                try
                {
                    var policy = _session.ReloadPolicy();
                    return $"ok {policy.Count} rules from {policy.Source} in force";
                }
                catch (ExtFuse.Policy.PolicyException e) { return $"error {e.Message}"; }
            case "status": return Status();
            default: return $"error unknown command '{command.Trim()}' (commands: reload, status)";
        }
    }

    private string Status()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteNumber("pid", Environment.ProcessId);
            w.WriteString("mountPoint", _session.Mount?.MountPoint);
            w.WriteNumber("requests", _session.RequestCount);
            w.WriteString("policy", _session.Policy.Source);
            w.WriteNumber("denials", _session.Audit.Total);
            // Refusals the kernel made but could not report (its ring buffer was full): not in the counts.
            w.WriteNumber("unreported", _session.Offload?.LsmPolicy?.LostEvents ?? 0);
            w.WriteString("audit", _session.Audit.Path);
            w.WriteStartArray("rules");
            foreach (var r in _session.Offload?.RuleHits() ?? [])
            {
                w.WriteStartObject();
                w.WriteString("rule", r.Rule);
                w.WriteNumber("refused", r.Hits);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("plan");
            foreach (var c in _session.Offload?.Plan(_session.Connection) ?? [])
                w.WriteStringValue($"{c.Rules} -> {c.Where}");
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string ReadLine(Socket s)
    {
        var buf = new byte[256];
        var n = 0;
        while (n < buf.Length)
        {
            var got = s.Receive(buf, n, buf.Length - n, SocketFlags.None);
            if (got == 0) break;
            n += got;
            if (Array.IndexOf(buf, (byte)'\n', 0, n) >= 0) break;
        }
        return Encoding.UTF8.GetString(buf, 0, n);
    }

    private static void Send(Socket s, string text) => s.Send(Encoding.UTF8.GetBytes(text + "\n"));

    /// <summary>Sends one command to the daemon serving <paramref name="connectionId"/> and returns its answer.</summary>
    public static string Request(uint connectionId, string command, TimeSpan timeout)
    {
        var candidates = new[] { PathFor(connectionId, 0), PathFor(connectionId, Libc.GetUid()) }.Distinct().Where(File.Exists).ToList();
        if (candidates.Count == 0) throw new FuseException($"no ExtFuse.NET daemon listens for FUSE connection {connectionId} (looked for {PathFor(connectionId, Libc.GetUid())})", Errno.ENOENT);
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = (int)timeout.TotalMilliseconds, SendTimeout = (int)timeout.TotalMilliseconds };
        try
        {
            s.Connect(new UnixDomainSocketEndPoint(candidates[0]));
            Send(s, command);
            using var reply = new MemoryStream();
            var buf = new byte[4096];
            for (int n; (n = s.Receive(buf)) > 0; ) reply.Write(buf, 0, n);
            return Encoding.UTF8.GetString(reply.ToArray()).TrimEnd('\n');
        }
        catch (SocketException e) { throw new FuseException($"cannot reach the daemon at {candidates[0]}: {e.Message}", Errno.ECONNREFUSED); }
    }

    public void Dispose()
    {
        _stopping = true;
        _listener.Dispose();
        try { File.Delete(Path); } catch (IOException) { }
        _thread.Join(TimeSpan.FromSeconds(2));
    }
}
