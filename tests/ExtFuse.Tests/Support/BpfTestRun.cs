using System.Runtime.InteropServices;
using ExtFuse.Bpf;
using ExtFuse.Declarative;

namespace ExtFuse.Tests.Support;

/// <summary>A generated object loaded into the kernel, for running its syscall wrappers with BPF_PROG_TEST_RUN.</summary>
public sealed class BpfTestRun : IDisposable
{
    private readonly BpfObject _obj;

    public BpfTestRun(string objectPath)
    {
        _obj = BpfObject.Open(objectPath);
        // Only the syscall wrappers: LSM programs need a kernel with BPF LSM (the kernel lab).
        foreach (var p in _obj.Programs) p.Autoload = p.Section == "syscall";
        _obj.Load();
    }

    /// <summary>Runs a syscall program on a context; the kernel writes the context back into it.</summary>
    public void Run<T>(string program, ref T ctx) where T : unmanaged => _obj.Program(program).TestRun(ref ctx);

    /// <summary>
    /// Runs a [Check] rule's generated syscall wrapper (test_&lt;name&gt;) on a request and returns the
    /// kernel's verdict. The result starts as a value no check returns, so a wrapper that never
    /// writes it cannot pass for one that agrees.
    /// </summary>
    public int Check(CheckRule rule, in CheckRequest request)
    {
        var ctx = new CheckTestContext { Request = request, Result = int.MinValue };
        Run($"test_{rule.Name}", ref ctx);
        return ctx.Result;
    }

    /// <summary>struct extfuse_check_test of the generated C: the request in, the verdict out.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct CheckTestContext
    {
        public CheckRequest Request;
        public int Result;
        public uint Padding;
    }

    /// <summary>A map of the loaded object, typed (sizes checked against the kernel's).</summary>
    public BpfMap<TKey, TValue> Map<TKey, TValue>(string name) where TKey : unmanaged where TValue : unmanaged => _obj.Map<TKey, TValue>(name);

    public void Dispose() => _obj.Dispose();
}
