using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using ExtFuse.Interop;

namespace ExtFuse.Cli.Fsx;

/// <summary>One generated operation on paths relative to a run directory.</summary>
public sealed record FsOp(string Kind, string Path, string Path2 = "", long Offset = 0, long Length = 0, int Seed = 0)
{
    public override string ToString() => Kind switch
    {
        "write" or "mmap" => $"{Kind} {Path} @{Offset} +{Length} (pattern {Seed})",
        "read" or "fallocate" => $"{Kind} {Path} @{Offset} +{Length}{(Kind == "fallocate" && Seed != 0 ? " KEEP_SIZE" : "")}",
        "truncate" => $"truncate {Path} {Length}",
        "rename" or "link" or "symlink" => $"{Kind} {Path} {Path2}",
        "setxattr" => $"setxattr {Path} {Path2} (pattern {Seed})",
        "getxattr" or "removexattr" => $"{Kind} {Path} {Path2}",
        _ => $"{Kind} {Path}",
    };
}

/// <summary>The outcome of a run: where the two trees first disagreed, if they did.</summary>
public sealed record FsxResult(int Seed, int Operations, int Succeeded, int? FailedAt, string? Difference, IReadOnlyList<FsOp> ShortestFailingPrefix)
{
    public bool Passed => FailedAt is null;

    public string Report()
    {
        if (Passed) return $"fsx: seed {Seed}: {Operations} operations ({Succeeded} succeeded, the rest failed alike on both sides), the trees agree";
        var sb = new StringBuilder();
        sb.AppendLine($"fsx: seed {Seed}: MISMATCH at operation {FailedAt}: {Difference}");
        sb.AppendLine($"fsx: shortest failing prefix ({ShortestFailingPrefix.Count} operations; rerun with --seed {Seed} --ops {ShortestFailingPrefix.Count}):");
        for (var i = 0; i < ShortestFailingPrefix.Count; i++) sb.AppendLine($"  {i,5}: {ShortestFailingPrefix[i]}");
        return sb.ToString();
    }
}

/// <summary>
/// fsx-style model checking of a directory against a native one: a seeded sequence of operations
/// is applied to both, every result (errno or data) compared, and the final trees compared. On a
/// mismatch it replays ever shorter prefixes in fresh directories to find the shortest that fails.
/// </summary>
public sealed partial class ModelChecker(string underTest, string reference)
{
    private static readonly string[] Names = ["a", "b", "c", "d0", "d1", "d0/x", "d0/y", "d1/x", "d0/e/z"];
    private static readonly string[] Dirs = ["d0", "d1", "d0/e", "d1/e"];
    private static readonly string[] XattrNames = ["user.k0", "user.k1"];
    private int _run;

    public static IReadOnlyList<FsOp> Generate(int seed, int count)
    {
        var rng = new Random(seed);
        var ops = new List<FsOp>(count);
        string Name() => Names[rng.Next(Names.Length)];
        string Dir() => Dirs[rng.Next(Dirs.Length)];
        for (var i = 0; i < count; i++)
        {
            var k = rng.Next(100);
            ops.Add(k switch
            {
                < 12 => new FsOp("create", Name()),
                < 30 => new FsOp("write", Name(), Offset: rng.Next(4) == 0 ? rng.Next(1 << 20) : rng.Next(70_000), Length: rng.Next(1, 20_000), Seed: rng.Next()),
                < 37 => new FsOp("read", Name(), Offset: rng.Next(80_000), Length: rng.Next(1, 30_000)),
                < 43 => new FsOp("truncate", Name(), Length: rng.Next(3) == 0 ? 0 : rng.Next(100_000)),
                < 50 => new FsOp("rename", rng.Next(3) == 0 ? Dir() : Name(), rng.Next(3) == 0 ? Dir() : Name()),
                < 54 => new FsOp("link", Name(), Name()),
                < 60 => new FsOp("unlink", Name()),
                < 66 => new FsOp("mkdir", Dir()),
                < 69 => new FsOp("rmdir", Dir()),
                < 74 => new FsOp("readdir", rng.Next(3) == 0 ? "." : Dir()),
                < 78 => new FsOp("setxattr", Name(), XattrNames[rng.Next(2)], Seed: rng.Next()),
                < 81 => new FsOp("getxattr", Name(), XattrNames[rng.Next(2)]),
                < 83 => new FsOp("removexattr", Name(), XattrNames[rng.Next(2)]),
                < 87 => new FsOp("fallocate", Name(), Offset: rng.Next(100_000), Length: rng.Next(1, 50_000), Seed: rng.Next(2)),
                < 91 => new FsOp("mmap", Name(), Offset: rng.Next(8192), Length: rng.Next(1, 4096), Seed: rng.Next()),
                < 94 => new FsOp("symlink", "target-" + rng.Next(3), Name()),
                _ => new FsOp("stat", Name()),
            });
        }
        return ops;
    }

    public FsxResult Run(int seed, int count)
    {
        var ops = Generate(seed, count);
        var (failedAt, difference, succeeded) = Replay(ops);
        if (failedAt is null) return new FsxResult(seed, count, succeeded, null, null, []);
        // The first divergence is at failedAt; look for a shorter prefix whose final trees already differ.
        int lo = 1, hi = failedAt.Value + 1;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (Replay(ops.Take(mid).ToList()).FailedAt is not null) hi = mid; else lo = mid + 1;
        }
        return new FsxResult(seed, count, succeeded, failedAt, difference, ops.Take(lo).ToList());
    }

    /// <summary>Applies the operations to fresh directories on both sides; returns the first step that differs.</summary>
    internal (int? FailedAt, string? Difference, int Succeeded) Replay(IReadOnlyList<FsOp> ops)
    {
        var run = $"fsx-run-{Environment.ProcessId}-{Interlocked.Increment(ref _run)}";
        var a = Directory.CreateDirectory(Path.Combine(underTest, run)).FullName;
        var b = Directory.CreateDirectory(Path.Combine(reference, run)).FullName;
        try
        {
            var succeeded = 0;
            for (var i = 0; i < ops.Count; i++)
            {
                var ra = Apply(a, ops[i]);
                var rb = Apply(b, ops[i]);
                if (ra != rb) return (i, $"{ops[i]}: under test {ra}, native {rb}", succeeded);
                if (!ra.StartsWith("errno", StringComparison.Ordinal)) succeeded++;
            }
            var ta = Snapshot(a);
            var tb = Snapshot(b);
            if (ta != tb) return (ops.Count - 1, $"final trees differ:\n--- under test\n{ta}\n--- native\n{tb}", succeeded);
            return (null, null, succeeded);
        }
        finally
        {
            Remove(a);
            Remove(b);
        }
    }

    private static void Remove(string dir)
    {
        try { Directory.Delete(dir, recursive: true); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    private static byte[] Pattern(int seed, long length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Runs one operation; the result is the errno (0) and what it read, as text.</summary>
    internal static string Apply(string root, FsOp op)
    {
        var p = Path.Combine(root, op.Path);
        var p2 = Path.Combine(root, op.Path2);
        switch (op.Kind)
        {
            case "create": return Ret(Sys.Close(Sys.Open(p, Sys.O_CREAT | Sys.O_WRONLY, 0x1A4)));
            case "write":
            {
                var fd = Sys.Open(p, Sys.O_WRONLY, 0);
                if (fd < 0) return Ret(fd);
                var data = Pattern(op.Seed, op.Length);
                var n = Sys.PWrite(fd, data, op.Offset);
                Sys.Close(fd);
                return n < 0 ? Ret(n) : $"wrote {n}";
            }
            case "read":
            {
                var fd = Sys.Open(p, Sys.O_RDONLY, 0);
                if (fd < 0) return Ret(fd);
                var buf = new byte[op.Length];
                var n = Sys.PRead(fd, buf, op.Offset);
                Sys.Close(fd);
                return n < 0 ? Ret(n) : $"read {n} {Hash(buf.AsSpan(0, n))}";
            }
            case "truncate": return Ret(Sys.Truncate(p, op.Length));
            case "rename": return Ret(Sys.Rename(p, p2));
            case "link": return Ret(Sys.Link(p, p2));
            case "symlink": return Ret(Sys.Symlink(op.Path, p2));
            case "unlink": return Ret(Sys.Unlink(p));
            case "mkdir": return Ret(Sys.MkDir(p, 0x1ED));
            case "rmdir": return Ret(Sys.RmDir(p));
            case "readdir":
                try { return "entries " + string.Join(",", Directory.EnumerateFileSystemEntries(p).Select(Path.GetFileName).Order(StringComparer.Ordinal)); }
                catch (DirectoryNotFoundException) { return "error ENOENT"; }
                catch (IOException ex) { return $"error {ex.HResult & 0xFFFF}"; }
            case "setxattr": return Ret(Sys.SetXattr(p, op.Path2, Pattern(op.Seed, 16)));
            case "getxattr":
            {
                var buf = new byte[256];
                var n = Sys.GetXattr(p, op.Path2, buf);
                return n < 0 ? Ret(n) : $"xattr {Hash(buf.AsSpan(0, n))}";
            }
            case "removexattr": return Ret(Sys.RemoveXattr(p, op.Path2));
            case "fallocate":
            {
                var fd = Sys.Open(p, Sys.O_WRONLY, 0);
                if (fd < 0) return Ret(fd);
                var r = Sys.FAllocate(fd, op.Seed != 0 ? 1 : 0, op.Offset, op.Length);
                Sys.Close(fd);
                return Ret(r);
            }
            case "mmap": return MmapWrite(p, op);
            case "stat":
                return Sys.LStat(p, out var st) is var e and < 0 ? Ret(e)
                    : $"type {st.Mode & 0xF000:x} mode {Convert.ToString(st.Mode & 0xFFF, 8)} size {((st.Mode & 0xF000) == 0x4000 ? 0 : st.Size)} nlink {st.Nlink}";
            default: throw new ArgumentException($"unknown operation {op.Kind}");
        }
    }

    /// <summary>Writes through a shared mapping of the file's existing bytes (no mapping past EOF).</summary>
    private static string MmapWrite(string p, FsOp op)
    {
        if (Sys.LStat(p, out var st) is var e and < 0) return Ret(e);
        if ((st.Mode & 0xF000) != 0x8000) return "not a regular file";
        var size = st.Size;
        if (size == 0) return "empty";
        var offset = op.Offset % size;
        var length = Math.Min(op.Length, size - offset);
        var fd = Sys.Open(p, Sys.O_RDWR, 0);
        if (fd < 0) return Ret(fd);
        try
        {
            // MappedFile copies with native memcpy: safe even when the daemon is in this process.
            var pageStart = offset & ~4095L;
            using var map = MappedFile.Map(fd, pageStart, offset - pageStart + length, writable: true);
            map.Write(offset - pageStart, Pattern(op.Seed, length));
            map.Flush();
        }
        finally { Sys.Close(fd); }
        return $"mapped {length}";
    }

    private static string Ret(int rc) => rc >= 0 ? "ok" : $"errno {-rc}";
    private static string Hash(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data))[..16];

    /// <summary>Names, types, modes, sizes, link counts, contents, symlink targets and user xattrs of a tree.</summary>
    internal static string Snapshot(string root)
    {
        var sb = new StringBuilder();
        foreach (var path in Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
                     .Order(StringComparer.Ordinal))
        {
            var rel = Path.GetRelativePath(root, path);
            if (Sys.LStat(path, out var st) < 0) { sb.AppendLine($"{rel}: vanished"); continue; }
            var type = st.Mode & 0xF000;
            sb.Append($"{rel}: type {type:x} mode {Convert.ToString(st.Mode & 0xFFF, 8)} nlink {st.Nlink}");
            if (type == 0x8000) sb.Append($" size {st.Size} data {Hash(File.ReadAllBytes(path))}");
            if (type == 0xA000) sb.Append($" -> {Sys.ReadLink(path)}");
            if (type != 0xA000)
                foreach (var x in XattrNames)
                {
                    var buf = new byte[256];
                    var n = Sys.GetXattr(path, x, buf);
                    if (n >= 0) sb.Append($" {x}={Hash(buf.AsSpan(0, n))}");
                }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>System calls with -errno results, as the model needs exact error codes.</summary>
    private static unsafe partial class Sys
    {
        private const string L = "libc";
        public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40;
        private static int E(long rc) => rc < 0 ? -Marshal.GetLastPInvokeError() : (int)rc;

        [LibraryImport(L, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int open_(string p, int f, uint m);
        // O_CLOEXEC: the checker may run inside a process that spawns others meanwhile.
        public static int Open(string p, int f, uint m) => E(open_(p, f | 0x80000, m));
        [LibraryImport(L, EntryPoint = "close", SetLastError = true)] private static partial int close_(int fd);
        public static int Close(int fd) => fd < 0 ? fd : E(close_(fd));
        [LibraryImport(L, EntryPoint = "pwrite", SetLastError = true)] private static partial nint pwrite_(int fd, byte* b, nuint n, long o);
        public static int PWrite(int fd, ReadOnlySpan<byte> d, long o) { fixed (byte* b = d) return E(pwrite_(fd, b, (nuint)d.Length, o)); }
        [LibraryImport(L, EntryPoint = "pread", SetLastError = true)] private static partial nint pread_(int fd, byte* b, nuint n, long o);
        public static int PRead(int fd, Span<byte> d, long o) { fixed (byte* b = d) return E(pread_(fd, b, (nuint)d.Length, o)); }
        [LibraryImport(L, EntryPoint = "truncate", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int truncate_(string p, long n);
        public static int Truncate(string p, long n) => E(truncate_(p, n));
        [LibraryImport(L, EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int rename_(string a, string b);
        public static int Rename(string a, string b) => E(rename_(a, b));
        [LibraryImport(L, EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int link_(string a, string b);
        public static int Link(string a, string b) => E(link_(a, b));
        [LibraryImport(L, EntryPoint = "symlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int symlink_(string a, string b);
        public static int Symlink(string a, string b) => E(symlink_(a, b));
        [LibraryImport(L, EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int unlink_(string p);
        public static int Unlink(string p) => E(unlink_(p));
        [LibraryImport(L, EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int mkdir_(string p, uint m);
        public static int MkDir(string p, uint m) => E(mkdir_(p, m));
        [LibraryImport(L, EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int rmdir_(string p);
        public static int RmDir(string p) => E(rmdir_(p));
        [LibraryImport(L, EntryPoint = "fallocate", SetLastError = true)] private static partial int fallocate_(int fd, int mode, long o, long n);
        public static int FAllocate(int fd, int mode, long o, long n) => E(fallocate_(fd, mode, o, n));
        [LibraryImport(L, EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int setxattr_(string p, string n, byte* v, nuint s, int f);
        public static int SetXattr(string p, string n, ReadOnlySpan<byte> v) { fixed (byte* b = v) return E(setxattr_(p, n, b, (nuint)v.Length, 0)); }
        [LibraryImport(L, EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial nint getxattr_(string p, string n, byte* v, nuint s);
        public static int GetXattr(string p, string n, Span<byte> v) { fixed (byte* b = v) return E(getxattr_(p, n, b, (nuint)v.Length)); }
        [LibraryImport(L, EntryPoint = "lremovexattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int removexattr_(string p, string n);
        public static int RemoveXattr(string p, string n) => E(removexattr_(p, n));
        [LibraryImport(L, EntryPoint = "readlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial nint readlink_(string p, byte* b, nuint n);
        public static string ReadLink(string p) { var buf = new byte[4096]; fixed (byte* b = buf) { var n = readlink_(p, b, 4096); return n < 0 ? "?" : Encoding.UTF8.GetString(buf, 0, (int)n); } }

        [LibraryImport(L, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int lstat_(string p, Stat* s);
        public static int LStat(string p, out Stat s) { fixed (Stat* sp = &s) return E(lstat_(p, sp)); }
    }
}
