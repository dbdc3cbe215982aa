//! Domain observations to the wire `Batch`: points of the same series are grouped together.

use std::collections::HashMap;

use b24watch_proto::catalog;
use b24watch_proto::v1::{Batch, CheckResult, CheckStatus, Label, LogGroup, MetricKind, Series};

use crate::checks::{Check, Status};

use crate::logs::Group;

use crate::observation::{Observation, UnixMs};

/// Version of this agent, sent in every batch.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds a batch (without epoch and seq: the spool assigns those).
pub fn build(
    agent_id: &str,
    created: UnixMs,
    observations: Vec<Observation>,
    telemetry: Vec<Observation>,
    groups: Vec<Group>,
    checks: Vec<Check>,
) -> Batch {
    Batch {
        checks: checks
            .into_iter()
            .map(|c| CheckResult {
                check: c.check.to_owned(),
                target: c.target,
                status: match c.status {
                    Status::Ok => CheckStatus::Ok,
                    Status::Failed => CheckStatus::Failed,
                    Status::Error => CheckStatus::Error,
                } as i32,
                severity: c.severity as i32,
                reason: c.reason.to_owned(),
                message: c.message,
                at_unix_ms: c.at.0,
            })
            .collect(),
        log_groups: groups
            .into_iter()
            .map(|g| LogGroup {
                log: g.log,
                fingerprint: g.fingerprint,
                severity: g.severity as i32,
                count: g.count,
                first_seen_unix_ms: g.first.0,
                last_seen_unix_ms: g.last.0,
                example: g.example,
                file: g.file,
            })
            .collect(),
        agent_id: agent_id.to_owned(),
        created_unix_ms: created.0,
        series: group(observations),
        telemetry: group(telemetry),
        agent_version: AGENT_VERSION.to_owned(),
        ..Batch::default()
    }
}

/// Identity of a series within a batch: name and labels.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// Groups observations into series, keeping first-seen order.
fn group(observations: Vec<Observation>) -> Vec<Series> {
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    let mut series: Vec<Series> = Vec::new();
    for obs in observations {
        let idx = *index.entry((obs.name, obs.labels.clone())).or_insert_with(|| {
            let kind = catalog::lookup(obs.name).map_or(MetricKind::Unspecified, |d| d.kind);
            series.push(Series {
                name: obs.name.to_owned(),
                labels: obs.labels.iter().map(|(n, v)| Label { name: (*n).to_owned(), value: v.clone() }).collect(),
                kind: kind as i32,
                ..Series::default()
            });
            series.len() - 1
        });
        series[idx].timestamps_unix_ms.push(obs.at.0);
        series[idx].values.push(obs.value);
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_of_one_series_share_one_entry_with_catalog_kind() {
        let at = UnixMs(1000);
        let obs = vec![
            Observation::new("load1", 0.5, at),
            Observation::labeled("disk_read_bytes_total", vec![("device", "vda".into())], 10.0, at),
            Observation::new("load1", 0.7, UnixMs(2000)),
            Observation::labeled("disk_read_bytes_total", vec![("device", "vdb".into())], 20.0, at),
        ];
        let batch = build("web-1", at, obs, Vec::new(), Vec::new(), Vec::new());
        assert_eq!(batch.series.len(), 3);
        assert_eq!(batch.series[0].values, [0.5, 0.7]);
        assert_eq!(batch.series[0].timestamps_unix_ms, [1000, 2000]);
        assert_eq!(batch.series[0].kind, MetricKind::Gauge as i32);
        assert_eq!(batch.series[1].kind, MetricKind::Counter as i32);
        assert_eq!(batch.series[2].labels[0].value, "vdb");
        assert_eq!(batch.agent_id, "web-1");
    }
}
