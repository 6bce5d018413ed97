using System.Runtime.InteropServices;
using static ExtFuse.Bpf.LibBpf;

namespace ExtFuse.Bpf;

/// <summary>
/// A BPF object file (.bpf.o) opened through libbpf: its programs and maps, loaded into the kernel
/// on <see cref="Load"/>. Disposing closes everything the object created (programs, maps, links).
/// </summary>
public sealed unsafe class BpfObject : IDisposable
{
    /// <summary>Bytes of verifier log kept per program: enough for the verifier's last words on large programs.</summary>
    public const int LogSize = 1 << 20;

    private nint _obj;
    private readonly List<BpfProgram> _programs = [];
    private readonly List<BpfLink> _links = [];

    private BpfObject(nint obj, string name)
    {
        _obj = obj;
        Name = name;
        for (var p = bpf_object__next_program(obj, 0); p != 0; p = bpf_object__next_program(obj, p)) _programs.Add(new BpfProgram(this, p));
    }

    /// <summary>The file it came from, or the name given to <see cref="Open(ReadOnlySpan{byte}, string)"/>.</summary>
    public string Name { get; }
    public IReadOnlyList<BpfProgram> Programs => _programs;
    public bool IsLoaded { get; private set; }

    internal nint Handle => _obj != 0 ? _obj : throw new ObjectDisposedException(Name);

    /// <summary>Opens an object file; nothing reaches the kernel until <see cref="Load"/>.</summary>
    public static BpfObject Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no BPF object at {path}", path);
        nint obj;
        try
        {
            BpfLog.EnsureInstalled();
            fixed (byte* p = Z(path)) obj = bpf_object__open_file(p, null);
        }
        catch (DllNotFoundException e) { throw Missing(e); }
        if (obj == 0) throw new BpfException($"libbpf cannot open {path}: {Describe(Marshal.GetLastPInvokeError())}");
        return new BpfObject(obj, path);
    }

    /// <summary>Opens an object from memory (an embedded resource, say).</summary>
    public static BpfObject Open(ReadOnlySpan<byte> elf, string name)
    {
        nint obj;
        var objectName = Z(name);
        try
        {
            BpfLog.EnsureInstalled();
            fixed (byte* e = elf) fixed (byte* n = objectName)
            {
                var opts = new OpenOpts { Sz = (nuint)sizeof(OpenOpts), ObjectName = n };
                obj = bpf_object__open_mem(e, (nuint)elf.Length, &opts);
            }
        }
        catch (DllNotFoundException e) { throw Missing(e); }
        if (obj == 0) throw new BpfException($"libbpf cannot open {name}: {Describe(Marshal.GetLastPInvokeError())}");
        return new BpfObject(obj, name);
    }

    public BpfProgram Program(string name) =>
        _programs.FirstOrDefault(p => p.Name == name) ?? throw new KeyNotFoundException($"{Name} has no program {name} (it has: {string.Join(", ", _programs.Select(p => p.Name))})");

    /// <summary>
    /// Loads every program still set to autoload (and creates the maps). A program the verifier
    /// rejects throws <see cref="BpfVerifierException"/> with its log; nothing stays loaded then.
    /// </summary>
    public void Load()
    {
        var logs = new List<(BpfProgram Program, nint Buffer)>();
        try
        {
            foreach (var p in _programs.Where(p => p.Autoload))
            {
                var buf = (nint)NativeMemory.AllocZeroed(LogSize);
                logs.Add((p, buf));
                bpf_program__set_log_buf(p.Handle, (byte*)buf, LogSize);
                bpf_program__set_log_level(p.Handle, 1);
            }
            var err = BpfLog.Capture(() => bpf_object__load(Handle), out var libbpfLog);
            foreach (var (p, buf) in logs) p.VerifierLog = Marshal.PtrToStringUTF8(buf) ?? "";
            if (err == 0) { IsLoaded = true; return; }
            // libbpf names the failing program in its own log; the verifier log of that program says why.
            var failed = logs.Select(l => l.Program).FirstOrDefault(p => libbpfLog.Contains($"prog '{p.Name}'", StringComparison.Ordinal) && p.VerifierLog.Length > 0)
                         ?? logs.Select(l => l.Program).FirstOrDefault(p => p.VerifierLog.Length > 0 && p.Fd < 0);
            if (failed is not null) throw new BpfVerifierException(Name, failed.Name, failed.Section, failed.VerifierLog);
            throw new BpfException($"libbpf cannot load {Name}: {Describe(err)}\n{libbpfLog}".TrimEnd());
        }
        finally
        {
            foreach (var (p, buf) in logs) { bpf_program__set_log_buf(p.Handle, null, 0); NativeMemory.Free((void*)buf); }
        }
    }

    /// <summary>A map of the loaded object, typed by its generated key and value structs (sizes are checked).</summary>
    public BpfMap<TKey, TValue> Map<TKey, TValue>(string name) where TKey : unmanaged where TValue : unmanaged => new(this, FindMap(name), name);

    private nint FindMap(string name)
    {
        for (var m = bpf_object__next_map(Handle, 0); m != 0; m = bpf_object__next_map(Handle, m))
            if (Str(bpf_map__name(m)) == name) return m;
        throw new KeyNotFoundException($"{Name} has no map {name}");
    }

    /// <summary>Pins any map of the loaded object (ring buffers too) at <paramref name="path"/> under bpffs.</summary>
    public void PinMap(string name, string path) => LibBpf.Pin(MapFd(name).Fd, name, path);

    /// <summary>The descriptor and type (enum bpf_map_type) of a map of the loaded object.</summary>
    internal (int Fd, int Type) MapFd(string name)
    {
        if (!IsLoaded) throw new InvalidOperationException($"{Name} is not loaded");
        var m = FindMap(name);
        return (bpf_map__fd(m), bpf_map__type(m));
    }

    /// <summary>The names of the object's maps (libbpf's internal .bss/.data/.rodata maps included).</summary>
    public IEnumerable<string> MapNames()
    {
        var names = new List<string>();
        for (var m = bpf_object__next_map(Handle, 0); m != 0; m = bpf_object__next_map(Handle, m)) names.Add(Str(bpf_map__name(m)));
        return names;
    }

    internal BpfLink Track(BpfLink link) { _links.Add(link); return link; }

    public void Dispose()
    {
        foreach (var l in _links) l.Dispose();
        _links.Clear();
        if (_obj != 0) bpf_object__close(_obj);
        _obj = 0;
    }
}

/// <summary>One program of a <see cref="BpfObject"/>.</summary>
public sealed unsafe class BpfProgram
{
    private readonly BpfObject _owner;
    private readonly nint _prog;

    internal BpfProgram(BpfObject owner, nint prog)
    {
        _owner = owner;
        _prog = prog;
        Name = Str(bpf_program__name(prog));
        Section = Str(bpf_program__section_name(prog));
    }

    internal nint Handle { get { _ = _owner.Handle; return _prog; } }

    public string Name { get; }
    /// <summary>The ELF section, which says how the program attaches ("syscall", "lsm/file_open", "tp_btf/fuse_request_send").</summary>
    public string Section { get; }
    /// <summary>Instructions in the program as compiled.</summary>
    public int InstructionCount => (int)bpf_program__insn_cnt(Handle);
    /// <summary>The kernel's descriptor once loaded, or a negative number.</summary>
    public int Fd => bpf_program__fd(Handle);
    /// <summary>The verifier's log from the last <see cref="BpfObject.Load"/> (level 1: its verdict and, on failure, the path that failed).</summary>
    public string VerifierLog { get; internal set; } = "";

    /// <summary>Instructions the verifier walked (its "processed N insns" line), or -1 when the log does not say.</summary>
    public int VerifierProcessed
    {
        get
        {
            var m = System.Text.RegularExpressions.Regex.Match(VerifierLog, @"processed (\d+) insns");
            return m.Success ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
        }
    }

    /// <summary>Whether <see cref="BpfObject.Load"/> loads it; set before loading to leave programs out.</summary>
    public bool Autoload
    {
        get => _autoload;
        set { var err = bpf_program__set_autoload(Handle, value); if (err != 0) throw new BpfException($"cannot change autoload of {Name}: {Describe(err)}"); _autoload = value; }
    }
    private bool _autoload = true;

    /// <summary>Attaches by section type (lsm/, fentry/, tp_btf/ ...); detached when the object is disposed or the link is.</summary>
    public BpfLink Attach()
    {
        var link = bpf_program__attach(Handle);
        if (link == 0) throw new BpfException($"cannot attach {Name} ({Section}): {Describe(Marshal.GetLastPInvokeError())}");
        return _owner.Track(new BpfLink(link, Name));
    }

    /// <summary>BPF_PROG_TEST_RUN with <paramref name="ctx"/> as the context (syscall programs write it back); returns the program's return value.</summary>
    public int TestRun<TContext>(ref TContext ctx) where TContext : unmanaged
    {
        if (Fd < 0) throw new InvalidOperationException($"{Name} is not loaded");
        fixed (TContext* c = &ctx)
        {
            // Syscall programs get the context copied back into ctx_in (ctx_out must stay empty for them).
            var opts = new TestRunOpts { Sz = (nuint)sizeof(TestRunOpts), CtxIn = c, CtxSizeIn = (uint)sizeof(TContext) };
            var err = bpf_prog_test_run_opts(Fd, &opts);
            if (err != 0) throw new BpfException($"BPF_PROG_TEST_RUN of {Name} failed: {Describe(err)}");
            return (int)opts.Retval;
        }
    }

    public override string ToString() => $"{Name} ({Section})";
}

/// <summary>An attachment of a program; detaches on dispose.</summary>
public sealed class BpfLink : IDisposable
{
    private nint _link;
    internal BpfLink(nint link, string program) { _link = link; Program = program; }
    public string Program { get; }
    public void Dispose()
    {
        if (_link != 0) LibBpf.bpf_link__destroy(_link);
        _link = 0;
    }
}

public class BpfException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The kernel verifier refused a program. <see cref="Log"/> is its log; <see cref="SourceLocation"/> the
/// C# line it stopped at, when the object carries line info (the generated C keeps #line to the C# source).</summary>
public sealed class BpfVerifierException(string objectName, string program, string section, string log)
    : BpfException(Format(objectName, program, section, log))
{
    public string ObjectName { get; } = objectName;
    public string Program { get; } = program;
    public string Section { get; } = section;
    public string Log { get; } = log;
    public string? SourceLocation { get; } = LastSourceLine(log);
    /// <summary>The verifier's reason: the last line of its log that is not its statistics.</summary>
    public string Reason { get; } = ReasonOf(log);

    private static string Format(string obj, string program, string section, string log)
    {
        var at = LastSourceLine(log);
        return $"the kernel verifier rejected {program} ({section}) of {obj}: {ReasonOf(log)}" + (at is null ? "" : $" at {at}") + "\nverifier log:\n" + log.TrimEnd();
    }

    internal static string ReasonOf(string log)
    {
        var lines = log.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.LastOrDefault(l => !l.StartsWith("processed ", StringComparison.Ordinal) && !l.StartsWith("verification time", StringComparison.Ordinal)
                                        && !l.StartsWith("stack depth", StringComparison.Ordinal) && !l.StartsWith(';') && !l.StartsWith("-- END", StringComparison.Ordinal))
               ?? "no verifier log";
    }

    /// <summary>BTF line info lines look like "; return x; @ File.cs:12".</summary>
    internal static string? LastSourceLine(string log)
    {
        var m = System.Text.RegularExpressions.Regex.Matches(log, @"^;.* @ (\S+:\d+)\s*$", System.Text.RegularExpressions.RegexOptions.Multiline);
        return m.Count == 0 ? null : m[^1].Groups[1].Value;
    }
}
