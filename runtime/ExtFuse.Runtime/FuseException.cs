namespace ExtFuse;

/// <summary>A FUSE failure with the errno behind it and a message meant for people.</summary>
public sealed class FuseException(string message, int errno = 0, Exception? inner = null) : Exception(message, inner)
{
    public int Errno { get; } = errno;
}
