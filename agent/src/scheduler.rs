//! Runs every sampler once per interval under a timeout, and spools the result as one batch.
//!
//! The only caller of `Sampler::sample`. A failing sampler is counted and logged on state change;
//! it never stops the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::batch;
use crate::observation::{Observation, now};
use crate::sampler::Sampler;
use crate::spool::Spool;
use crate::telemetry::Telemetry;

/// Everything one scheduler needs.
#[derive(Debug)]
pub struct Scheduler {
    /// The samplers, run in order each tick.
    pub samplers: Vec<Box<dyn Sampler>>,
    /// Agent id written into each batch.
    pub agent_id: String,
    /// Time between ticks.
    pub interval: Duration,
    /// Time one sampler may take.
    pub sampler_timeout: Duration,
    /// Where batches go.
    pub spool: Arc<Mutex<Spool>>,
    /// Woken after each push.
    pub pushed: Arc<Notify>,
    /// Shared self-telemetry.
    pub telemetry: Arc<Telemetry>,
    /// The log tailer, when logs are enabled.
    pub tailer: Option<crate::logs::tail::Tailer>,
    /// Findings of the checkers (MySQL, Bitrix, probes, services), running in their own tasks.
    pub inbox: Arc<crate::checks::Inbox>,
}

impl Scheduler {
    /// Ticks until `shutdown` is cancelled. A tick in progress completes and is spooled first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = vec![false; self.samplers.len()];
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.tick(&mut failing).await;
        }
        debug!("scheduler stopped");
    }

    async fn tick(&mut self, failing: &mut [bool]) {
        let at = now();
        let mut observations: Vec<Observation> = Vec::with_capacity(128);
        for (idx, sampler) in self.samplers.iter_mut().enumerate() {
            let name = sampler.name();
            let result = timeout(self.sampler_timeout, sampler.sample(at, &mut observations)).await;
            let reason = match result {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some((err.reason(), err.to_string())),
                Err(_) => Some(("timeout", format!("no result within {:?}", self.sampler_timeout))),
            };
            match (reason, failing[idx]) {
                (Some((reason, message)), was_failing) => {
                    self.telemetry.sampler_error(name, reason);
                    if !was_failing {
                        warn!(sampler = name, reason, error = %message, "sampler failing");
                    }
                    failing[idx] = true;
                }
                (None, true) => {
                    info!(sampler = name, "sampler recovered");
                    failing[idx] = false;
                }
                (None, false) => {}
            }
        }
        let (groups, offsets, forget) = match &mut self.tailer {
            Some(tailer) => {
                let poll = tailer.poll(at);
                observations.extend(crate::logs::observe(tailer, at));
                let mut groups: Vec<_> = poll.groups.into_values().collect();
                groups.sort_by(|a, b| (&a.log, &a.fingerprint).cmp(&(&b.log, &b.fingerprint)));
                (groups, poll.checkpoints, poll.forget)
            }
            None => Default::default(),
        };
        let findings = self.inbox.take();
        observations.extend(findings.observations);
        let telemetry = self.telemetry.observe(at);
        let batch = batch::build(&self.agent_id, at, observations, telemetry, groups, findings.checks);
        let pushed = {
            let mut spool = self.spool.lock().expect("spool lock is never poisoned");
            let result = spool.push_with_offsets(batch, &offsets, &forget);
            self.telemetry.spool_depth(spool.pending_batches(), spool.pending_bytes());
            result
        };
        match pushed {
            Ok((seq, dropped)) => {
                if dropped.batches > 0 {
                    self.telemetry.spool_dropped(dropped.reason, dropped.batches);
                    error!(
                        batches = dropped.batches,
                        points = dropped.points,
                        reason = dropped.reason,
                        "spool bound reached: dropped the oldest batches"
                    );
                }
                debug!(seq, "batch spooled");
                self.pushed.notify_one();
            }
            Err(err) => error!(error = %err, "batch lost: could not write it to the spool"),
        }
    }
}
