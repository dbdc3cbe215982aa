//! b24watch-agent: samples a Bitrix24 box server and streams batches to the collector.
//!
//! # Layout
//! - [`config`]: TOML config, raw and validated: the `[agent]` section and the assembly of the
//!   sections, each defined beside its user.
//! - [`observation`]: the clock, `UnixMs`, `Observation`, `Severity`: a leaf every module may use.
//! - [`sampler`]: the `Sampler` trait and every sampler (one file each).
//! - [`scheduler`]: runs samplers each interval and spools one batch per tick.
//! - [`batch`]: observations to the wire `Batch` (with [`shipper`] and [`spool`], the only
//!   places that name proto types).
//! - [`spool`]: bounded on-disk queue; batches leave it only when acked.
//! - [`shipper`]: gRPC stream to the collector, backoff, acks.
//! - [`telemetry`]: the agent's self-telemetry counters.
#![warn(missing_docs)]

pub mod batch;
pub mod checks;
pub mod config;
pub mod logs;
pub mod observation;
pub mod sampler;
pub mod scheduler;
pub mod shipper;
pub mod spool;
pub mod telemetry;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::config::Config;

/// The agent id inside a token (`<agent id>.<secret>`).
pub fn token_agent_id(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(id, _)| id).filter(|id| config::valid_agent_id(id))
}

/// Runs the agent until `shutdown` is cancelled, then stops sampling, sends what it can within the
/// grace period and returns. Every observation is either acknowledged or left in the spool.
///
/// # Errors
/// Startup failures only (spool cannot be opened, token unusable).
pub async fn run(cfg: Config, token: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    let agent_id = match &cfg.id {
        Some(id) => id.clone(),
        None => token_agent_id(&token)
            .context(
                "the token has no agent id before its last '.': use the token printed by `b24watch-collector enroll`",
            )?
            .to_owned(),
    };
    let (spool, moved_aside) = spool::Spool::open(&cfg.state_dir, &cfg.spool)
        .with_context(|| format!("opening the spool in {}", cfg.state_dir.display()))?;
    if let Some(aside) = moved_aside {
        error!(path = %aside.display(), "spool was damaged: moved aside, starting a new one; its pending batches are lost");
    }
    info!(
        agent_id = %agent_id,
        collector = %cfg.collector_url,
        epoch = spool.epoch(),
        pending = spool.pending_batches(),
        interval_secs = cfg.interval.as_secs(),
        "agent started"
    );
    let tls = if cfg.collector_url.starts_with("https://") {
        Some(shipper::load_tls(&cfg.tls).context("loading TLS files ([tls] section)")?)
    } else {
        None
    };
    let sites = if cfg.checks.bitrix.enabled || cfg.checks.mysql.enabled {
        checks::discover::discover(&cfg.checks.bitrix.site_roots)
    } else {
        Vec::new()
    };
    for site in &sites {
        info!(
            site = %site.name,
            root = %site.root.display(),
            database = site.db.as_ref().map_or("-", |db| db.database.as_str()),
            exception_log = %site.exception_log.as_ref().map_or("-".into(), |p| p.display().to_string()),
            "Bitrix site found"
        );
        for problem in &site.problems {
            tracing::warn!(site = %site.name, "{problem}");
        }
    }
    let tailer = if cfg.logs.enabled {
        let offsets = spool.log_offsets().context("reading log offsets from the spool")?;
        let mut files = cfg.logs.files.clone();
        add_exception_logs(&mut files, &sites);
        let specs = files.iter().map(logs::LogFileConfig::spec).collect();
        Some(logs::tail::Tailer::new(
            specs,
            offsets,
            cfg.logs.read_from_end,
            cfg.logs.max_line_bytes,
            cfg.logs.max_read_bytes_per_tick,
        ))
    } else {
        None
    };
    let telemetry = Arc::new(telemetry::Telemetry::default());
    telemetry.spool_depth(spool.pending_batches(), spool.pending_bytes());
    telemetry.known_rejections(&shipper::reject_reason_names());
    let spool = Arc::new(Mutex::new(spool));
    let pushed = Arc::new(Notify::new());
    let inbox = Arc::new(checks::Inbox::default());
    let checkers = checks::build_checkers(&cfg.checks, &sites);
    let samplers = sampler::build_samplers(&cfg.host);
    for sampler in &samplers {
        telemetry.known_sampler_errors(sampler.name(), &["unavailable", "parse", "timeout"]);
    }
    for checker in &checkers {
        telemetry.known_sampler_errors(checker.name(), &["timeout", "inbox_full"]);
    }
    let scheduler = scheduler::Scheduler {
        samplers,
        agent_id,
        interval: cfg.interval,
        sampler_timeout: cfg.sampler_timeout,
        spool: Arc::clone(&spool),
        pushed: Arc::clone(&pushed),
        telemetry: Arc::clone(&telemetry),
        tailer,
        inbox: Arc::clone(&inbox),
    };
    let scheduler_telemetry = Arc::clone(&telemetry);
    let shipper = shipper::Shipper {
        url: cfg.collector_url.clone(),
        token,
        spool,
        pushed,
        telemetry,
        grace: cfg.shutdown_grace,
        tls,
    };
    let tracker = TaskTracker::new();
    // The scheduler stops first; the shipper gets the grace period to deliver what is pending.
    tracker.spawn(scheduler.run(shutdown.child_token()));
    tracker.spawn(shipper.run(shutdown.child_token()));
    for checker in checkers {
        tracker.spawn(checks::run_checker(
            checker,
            Arc::clone(&inbox),
            Arc::clone(&scheduler_telemetry),
            shutdown.child_token(),
        ));
    }
    tracker.close();
    if let Err(err) = b24watch_common::systemd::notify("READY=1") {
        tracing::warn!(error = %err, "could not notify systemd of readiness");
    }
    shutdown.cancelled().await;
    let _ = b24watch_common::systemd::notify("STOPPING=1");
    tracker.wait().await;
    info!("agent stopped");
    Ok(())
}

/// Adds each discovered site's exception log to the `bitrix_exceptions` log unless a pattern
/// there already names it.
fn add_exception_logs(files: &mut [logs::LogFileConfig], sites: &[checks::discover::Site]) {
    let Some(log) = files.iter_mut().find(|f| f.preset == logs::classify::Preset::BitrixExceptions) else { return };
    for path in sites.iter().filter_map(|s| s.exception_log.as_ref()) {
        let path = path.display().to_string();
        if !log.paths.contains(&path) {
            info!(path = %path, log = %log.name, "watching the exception log named in the site's settings");
            log.paths.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_is_everything_before_the_last_dot() {
        assert_eq!(token_agent_id("web-1.example.com.c0ffee"), Some("web-1.example.com"));
        assert_eq!(token_agent_id("nodot"), None);
        assert_eq!(token_agent_id("bad id.c0ffee"), None);
    }
}
