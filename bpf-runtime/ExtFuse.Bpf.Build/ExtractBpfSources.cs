using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace ExtFuse.Bpf.Build;

/// <summary>
/// Writes out the BPF C that ExtFuse.Generator placed in the compiled assembly as
/// [assembly: ExtFuse.Declarative.BpfSource(fileName, text)] attributes (read with
/// System.Reflection.Metadata, without loading the assembly). Files are rewritten only when their
/// text changed, so the clang step stays incremental.
/// </summary>
public sealed class ExtractBpfSources : Microsoft.Build.Utilities.Task
{
    [Required] public string Assembly { get; set; } = "";
    [Required] public string OutputDirectory { get; set; } = "";
    [Output] public ITaskItem[] Sources { get; private set; } = [];

    public override bool Execute()
    {
        var written = new List<ITaskItem>();
        using (var stream = File.OpenRead(Assembly))
        using (var pe = new PEReader(stream))
        {
            var md = pe.GetMetadataReader();
            foreach (var handle in md.GetAssemblyDefinition().GetCustomAttributes())
            {
                var attr = md.GetCustomAttribute(handle);
                if (!IsBpfSource(md, attr)) continue;
                var blob = md.GetBlobReader(attr.Value);
                if (blob.ReadUInt16() != 1) continue; // custom attribute prolog
                var name = blob.ReadSerializedString();
                var text = blob.ReadSerializedString();
                if (string.IsNullOrEmpty(name) || name!.IndexOfAny(['/', '\\']) >= 0 || text is null)
                {
                    Log.LogError($"{Assembly}: malformed BpfSource attribute '{name}'");
                    return false;
                }
                Directory.CreateDirectory(OutputDirectory);
                var path = Path.Combine(OutputDirectory, name);
                if (!File.Exists(path) || File.ReadAllText(path) != text) File.WriteAllText(path, text);
                written.Add(new TaskItem(path));
            }
        }
        // Generated files whose class is gone would otherwise be compiled forever.
        if (Directory.Exists(OutputDirectory))
            foreach (var stale in Directory.GetFiles(OutputDirectory, "*.bpf.c"))
                if (!written.Any(w => Path.GetFullPath(w.ItemSpec) == Path.GetFullPath(stale))) File.Delete(stale);
        Sources = [.. written];
        return !Log.HasLoggedErrors;
    }

    private static bool IsBpfSource(MetadataReader md, CustomAttribute attr)
    {
        if (attr.Constructor.Kind != HandleKind.MemberReference) return false;
        var ctor = md.GetMemberReference((MemberReferenceHandle)attr.Constructor);
        if (ctor.Parent.Kind != HandleKind.TypeReference) return false;
        var type = md.GetTypeReference((TypeReferenceHandle)ctor.Parent);
        return md.GetString(type.Name) == "BpfSourceAttribute" && md.GetString(type.Namespace) == "ExtFuse.Declarative";
    }
}
