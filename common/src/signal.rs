//! Shutdown signals.

/// Waits for SIGTERM or SIGINT and says which arrived.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn shutdown() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
