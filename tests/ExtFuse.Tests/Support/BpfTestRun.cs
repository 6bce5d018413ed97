using System.Runtime.InteropServices;
using ExtFuse.Declarative;

namespace ExtFuse.Tests.Support;

/// <summary>
/// Just enough of libbpf.so.1 to load an object into the kernel verifier and run its syscall
/// programs with BPF_PROG_TEST_RUN (the full typed loader belongs to the BPF runtime issue).
/// </summary>
public sealed unsafe partial class BpfTestRun : IDisposable
{
    private nint _obj;

    [StructLayout(LayoutKind.Sequential)]
    private struct TestRunOpts
    {
        public nuint Sz;
        public void* DataIn, DataOut;
        public uint DataSizeIn, DataSizeOut;
        public void* CtxIn, CtxOut;
        public uint CtxSizeIn, CtxSizeOut;
        public uint Retval;
        public int Repeat;
        public uint Duration, Flags, Cpu, BatchSize;
    }

    public BpfTestRun(string objectPath)
    {
        _obj = bpf_object__open_file(objectPath, 0);
        if (_obj == 0 || _obj > -4096 && _obj < 0) throw new InvalidOperationException($"libbpf cannot open {objectPath}: errno {Marshal.GetLastPInvokeError()}");
        var err = bpf_object__load(_obj);
        if (err != 0) throw new InvalidOperationException($"the kernel rejected {objectPath}: {err}");
    }

    /// <summary>Runs a syscall program on a context; the kernel writes the context back into it.</summary>
    public void Run<T>(string program, ref T ctx) where T : unmanaged
    {
        var prog = bpf_object__find_program_by_name(_obj, program);
        if (prog == 0) throw new InvalidOperationException($"no program {program}");
        var fd = bpf_program__fd(prog);
        fixed (T* c = &ctx)
        {
            var opts = new TestRunOpts { Sz = (nuint)sizeof(TestRunOpts), CtxIn = c, CtxSizeIn = (uint)sizeof(T) };
            var err = bpf_prog_test_run_opts(fd, &opts);
            if (err != 0) throw new InvalidOperationException($"BPF_PROG_TEST_RUN of {program} failed: {err}");
        }
    }

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

    public void Dispose()
    {
        if (_obj != 0) bpf_object__close(_obj);
        _obj = 0;
    }

    [LibraryImport("libbpf.so.1", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial nint bpf_object__open_file(string path, nint opts);
    [LibraryImport("libbpf.so.1")] private static partial int bpf_object__load(nint obj);
    [LibraryImport("libbpf.so.1", StringMarshalling = StringMarshalling.Utf8)] private static partial nint bpf_object__find_program_by_name(nint obj, string name);
    [LibraryImport("libbpf.so.1")] private static partial int bpf_program__fd(nint prog);
    [LibraryImport("libbpf.so.1")] private static partial int bpf_prog_test_run_opts(int fd, TestRunOpts* opts);
    [LibraryImport("libbpf.so.1")] private static partial void bpf_object__close(nint obj);
}
