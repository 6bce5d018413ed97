using Microsoft.Extensions.Logging;

namespace ExtFuse.Cli;

/// <summary>
/// One line per message on stderr, synchronously: the sandbox launcher's logger. Microsoft's console
/// logger costs about 10 ms to set up (options, a queue and its thread), a fifth of the launcher's
/// start-to-command budget, for the few lines a sandbox prints.
/// </summary>
internal sealed class StderrLog(LogLevel minimum) : ILoggerFactory, ILoggerProvider
{
    private sealed class Logger(string category, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel level) => level >= minimum && level != LogLevel.None;

        public void Log<TState>(LogLevel level, EventId id, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(level)) return;
            var name = level switch
            {
                LogLevel.Trace => "trce", LogLevel.Debug => "dbug", LogLevel.Information => "info",
                LogLevel.Warning => "warn", LogLevel.Error => "fail", _ => "crit",
            };
            Console.Error.WriteLine($"{DateTime.Now:HH:mm:ss.fff} {name}: {category} {formatter(state, exception)}" + (exception is null ? "" : $"\n{exception}"));
        }
    }

    public ILogger CreateLogger(string category) => new Logger(category, minimum);
    public void AddProvider(ILoggerProvider provider) { }
    public void Dispose() { }
}
