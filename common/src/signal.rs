//! Shutdown signals: one wiring for both binaries.

/// Installs SIGTERM and SIGINT handlers now and spawns a task that logs the first signal to
/// arrive and then calls `stop`. Call it inside the runtime, before the service starts.
///
/// Installing eagerly matters: a signal that arrives after `READY=1` but before a lazily spawned
/// handler first runs would otherwise kill the process with the default action.
///
/// When the handlers cannot be installed the caller must not start: it returns the error and
/// the binary exits with status 1 before it reports readiness. Running on without them would
/// make SIGTERM kill the process mid-batch (no graceful shutdown); stopping at once would make a
/// service that exits as soon as it starts. A clear startup error, retried by the unit's
/// `Restart=`, is the one behaviour of both binaries.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn on_shutdown(stop: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "signal received");
        stop();
    });
    Ok(())
}
