//! Shutdown signals.

/// Installs SIGTERM and SIGINT handlers now and returns a future that resolves with the name of
/// the first to arrive.
///
/// Installing eagerly matters: a signal that arrives after `READY=1` but before a lazily spawned
/// handler first runs would otherwise kill the process with the default action.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
