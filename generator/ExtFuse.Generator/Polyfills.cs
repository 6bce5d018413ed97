// netstandard2.0 lacks the type behind init accessors and records.
namespace System.Runtime.CompilerServices
{
    internal static class IsExternalInit { }
}
