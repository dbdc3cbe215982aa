//! Logging setup: human-readable on a terminal, without colours and timestamps under journald.

/// Installs the global tracing subscriber. `B24WATCH_LOG` sets the filter (default `info`).
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("B24WATCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if journald {
        builder.with_ansi(false).without_time().init();
    } else {
        builder.init();
    }
}
