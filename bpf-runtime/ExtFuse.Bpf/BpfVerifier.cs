namespace ExtFuse.Bpf;

/// <summary>What the kernel verifier said about one program.</summary>
/// <param name="Reason">Why it was rejected (or could not be tried); empty when accepted.</param>
/// <param name="SourceLocation">The C# (or C) line the verifier stopped at, from the object's line info.</param>
/// <param name="Skipped">Not verified because this kernel cannot load the program type (ExtFUSE, or LSM where the kernel refuses it): not a rejection.</param>
public sealed record ProgramVerdict(string Object, string Program, string Section, bool Accepted, int Instructions, int Processed,
    string Reason, string? SourceLocation, string Log, bool Skipped = false);

/// <summary>Loads each program of an object on its own, so one rejection does not hide the others' verdicts.</summary>
public static class BpfVerifier
{
    /// <summary>The objects <paramref name="path"/> names: the file itself, or every *.bpf.o in a directory (a build's output).</summary>
    public static IReadOnlyList<string> Objects(string path) =>
        Directory.Exists(path) ? Directory.GetFiles(path, "*.bpf.o").Order(StringComparer.Ordinal).ToList()
        : File.Exists(path) ? [path]
        : throw new FileNotFoundException($"{path} is neither a .bpf.o file nor a directory", path);

    public static IReadOnlyList<ProgramVerdict> VerifyEach(string objectPath)
    {
        List<(string Name, string Section, int Insns)> programs;
        using (var listing = BpfObject.Open(objectPath))
            programs = listing.Programs.Select(p => (p.Name, p.Section, p.InstructionCount)).ToList();
        var verdicts = new List<ProgramVerdict>();
        foreach (var (name, section, insns) in programs)
        {
            if (section == "extfuse" || section.StartsWith("extfuse/", StringComparison.Ordinal))
            {
                verdicts.Add(new(objectPath, name, section, false, insns, -1,
                    "an ExtFUSE program: it loads only on an ExtFUSE-patched kernel (BPF_PROG_TYPE_EXTFUSE); its logic is verified here through the syscall wrappers", null, "", Skipped: true));
                continue;
            }
            using var obj = BpfObject.Open(objectPath);
            foreach (var p in obj.Programs) p.Autoload = p.Name == name;
            var prog = obj.Program(name);
            try
            {
                obj.Load();
                verdicts.Add(new(objectPath, name, section, true, insns, prog.VerifierProcessed, "", null, prog.VerifierLog));
            }
            catch (BpfVerifierException e)
            {
                verdicts.Add(new(objectPath, name, section, false, insns, prog.VerifierProcessed, e.Reason, e.SourceLocation, e.Log));
            }
            catch (BpfException e)
            {
                var policy = e.Message.Contains("Operation not permitted", StringComparison.Ordinal) && Environment.IsPrivilegedProcess;
                var reason = !e.Message.Contains("Operation not permitted", StringComparison.Ordinal) ? e.Message
                    : policy ? $"the kernel refuses to load {section} programs even for root (EPERM; see extfuse caps): verify them on a kernel that has them, such as the kernel lab"
                    : "not permitted: loading BPF programs needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)";
                verdicts.Add(new(objectPath, name, section, false, insns, -1, reason, null, "", Skipped: policy));
            }
        }
        return verdicts;
    }
}
