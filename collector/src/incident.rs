//! The incident lifecycle measured on the contract's clock: reaction (open → acknowledgement)
//! and resolution (open → resolved) in support hours against the targets of the incident's
//! priority, breaches (also while still open), and the series Alertmanager pages on before a
//! target is passed.
//!
//! Rules:
//! - An incident opens at its first failed check result (or when an agent falls silent, or by
//!   hand) and is resolved by the next ok result (or by hand for one opened by hand).
//! - Reaction ends at the acknowledgement; an incident resolved before anyone acknowledged it
//!   has its reaction end at the resolution (it was dealt with). Until then it runs.
//! - A target is breached when the support time measured (so far, while running) is over it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::contract::{Contract, Priority};
use crate::sla::Ms;
use crate::store::Error;
use crate::support_clock::{deadline, elapsed};
use crate::uptime::{Uptime, escape};

/// The wire severity an incident opened by hand with `priority` gets (the inverse of
/// [`Priority::from_severity`]).
pub fn severity_of(priority: Priority) -> i32 {
    match priority {
        Priority::Critical => 4,
        Priority::High => 3,
        Priority::Medium => 2,
        Priority::Low => 1,
    }
}

/// An incident on its contract's clock; support times in ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clock {
    /// Reaction target of the priority, support ms.
    pub reaction_target_ms: Ms,
    /// Support time from the opening to the reaction (or to now while none), ms.
    pub reaction_support_ms: Ms,
    /// When the reaction target is passed, unix ms (null if support hours never reach it).
    pub reaction_deadline_ms: Option<Ms>,
    /// Whether the reaction happened (acknowledged, or resolved first).
    pub reacted: bool,
    /// Reaction support time over the target (also while waiting).
    pub reaction_breached: bool,
    /// Resolution target of the priority, support ms.
    pub resolution_target_ms: Ms,
    /// Support time from the opening to the resolution (or to now while open), ms.
    pub resolution_support_ms: Ms,
    /// When the resolution target is passed, unix ms.
    pub resolution_deadline_ms: Option<Ms>,
    /// Whether it is resolved.
    pub resolved: bool,
    /// Resolution support time over the target (also while open).
    pub resolution_breached: bool,
}

/// The clock of an incident of `priority` opened at `start`, acknowledged at `ack`, resolved at
/// `end`, as of `now`.
pub fn clock(contract: &Contract, priority: Priority, start: Ms, ack: Option<Ms>, end: Option<Ms>, now: Ms) -> Clock {
    let hours = &contract.support;
    let reaction_target_ms = contract.reaction_of(priority).saturating_mul(1000);
    let resolution_target_ms = contract.resolution_of(priority).saturating_mul(1000);
    let reacted_at = match (ack, end) {
        (Some(a), Some(e)) => Some(a.min(e)),
        (a, e) => a.or(e),
    };
    let reaction_support_ms = elapsed(hours, start, reacted_at.unwrap_or(now).max(start));
    let resolution_support_ms = elapsed(hours, start, end.unwrap_or(now).max(start));
    Clock {
        reaction_target_ms,
        reaction_support_ms,
        reaction_deadline_ms: deadline(hours, start, reaction_target_ms),
        reacted: reacted_at.is_some(),
        reaction_breached: reaction_support_ms > reaction_target_ms,
        resolution_target_ms,
        resolution_support_ms,
        resolution_deadline_ms: deadline(hours, start, resolution_target_ms),
        resolved: end.is_some(),
        resolution_breached: resolution_support_ms > resolution_target_ms,
    }
}

/// Start of the calendar month containing `now` in `tz`.
pub fn month_start(now: Ms, tz: &jiff::tz::TimeZone) -> Ms {
    jiff::Timestamp::from_millisecond(now)
        .ok()
        .and_then(|t| t.to_zoned(tz.clone()).first_of_month().ok()?.start_of_day().ok())
        .map_or(now, |z| z.timestamp().as_millisecond())
}

/// Per host and priority: the earliest pending deadlines and the month's breaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pending {
    reaction_deadline: Option<Ms>,
    resolution_deadline: Option<Ms>,
    reaction_breached: usize,
    resolution_breached: usize,
}

/// Appends the contract series of every host that has a client: per host, client and
/// priority, the earliest deadline of the incidents still waiting for a reaction or a
/// resolution (absent when none waits), and the incidents of the client's current month (its
/// time zone) whose reaction or resolution target is breached, open ones included.
///
/// # Errors
/// SQLite errors.
pub fn render_metrics(uptime: &Uptime, hosts: &[String], now: Ms, out: &mut String) -> Result<(), Error> {
    let assignment = uptime.client_assignment()?;
    let mut rows: Vec<(String, String, Priority, Pending)> = Vec::new();
    for host in hosts {
        let Some(client) = assignment.get(host).and_then(|c| uptime.cfg.contracts.client(c)) else { continue };
        let from = month_start(now, &client.contract.timezone);
        let incidents = uptime.incidents(host, from, now.max(from + 1), now)?;
        let mut per: BTreeMap<Priority, Pending> = Priority::ALL.iter().map(|p| (*p, Pending::default())).collect();
        for i in &incidents {
            let Some(c) = &i.clock else { continue };
            let p = per.entry(i.priority).or_default();
            if !c.reacted {
                p.reaction_deadline = min_some(p.reaction_deadline, c.reaction_deadline_ms);
            }
            if !c.resolved {
                p.resolution_deadline = min_some(p.resolution_deadline, c.resolution_deadline_ms);
            }
            p.reaction_breached += usize::from(c.reaction_breached);
            p.resolution_breached += usize::from(c.resolution_breached);
        }
        for (priority, p) in per {
            rows.push((host.clone(), client.name.clone(), priority, p));
        }
    }
    let series: [(&str, &str, fn(&Pending) -> Option<f64>); 4] = [
        (
            "b24watch_incident_reaction_deadline_timestamp_seconds",
            "Earliest time the reaction target of an incident not yet acknowledged is passed, per host, client and priority (support hours of the client's contract); absent when none waits.",
            |p| p.reaction_deadline.map(|d| d as f64 / 1000.0),
        ),
        (
            "b24watch_incident_resolution_deadline_timestamp_seconds",
            "Earliest time the resolution target of an open incident is passed, per host, client and priority; absent when none is open.",
            |p| p.resolution_deadline.map(|d| d as f64 / 1000.0),
        ),
        (
            "b24watch_incident_reaction_breached",
            "Incidents of the client's current month whose reaction target is breached (still waiting ones included), per host, client and priority.",
            |p| Some(p.reaction_breached as f64),
        ),
        (
            "b24watch_incident_resolution_breached",
            "Incidents of the client's current month whose resolution target is breached (open ones included), per host, client and priority.",
            |p| Some(p.resolution_breached as f64),
        ),
    ];
    for (name, help, value) in series {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
        for (host, client, priority, p) in &rows {
            if let Some(v) = value(p) {
                let _ = writeln!(
                    out,
                    "{name}{{host=\"{}\",client=\"{}\",priority=\"{}\"}} {v}",
                    escape(host),
                    escape(client),
                    priority.as_str()
                );
            }
        }
    }
    Ok(())
}

fn min_some(a: Option<Ms>, b: Option<Ms>) -> Option<Ms> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::SupportHours;

    fn contract(spec: &str) -> Contract {
        Contract {
            plan: "p".into(),
            target: 0.99,
            service_hours: String::new(),
            calendar: None,
            timezone_name: "UTC".into(),
            timezone: jiff::tz::TimeZone::UTC,
            support: SupportHours::parse(spec, "UTC", &[]).expect("valid"),
            reaction_secs: [900, 3600, 4 * 3600, 24 * 3600],
            resolution_secs: [4 * 3600, 8 * 3600, 16 * 3600, 40 * 3600],
        }
    }

    fn at(text: &str) -> Ms {
        text.parse::<jiff::Timestamp>().expect("ts").as_millisecond()
    }

    #[test]
    fn a_low_incident_opened_friday_evening_starts_its_clock_on_monday() {
        let basic = contract("Mon-Fri 09:00-18:00");
        let opened = at("2026-11-27T19:00:00Z");
        let monday = at("2026-11-30T12:00:00Z");
        let c = clock(&basic, Priority::Low, opened, None, None, monday);
        assert_eq!(c.reaction_support_ms, 3 * 3_600_000, "Monday 09:00 to 12:00");
        assert!(!c.reacted && !c.reaction_breached);
        // 24 h of support: Mon 9 h, Tue 9 h, Wed 6 h -> Wednesday 15:00.
        assert_eq!(c.reaction_deadline_ms, Some(at("2026-12-02T15:00:00Z")));
        let late = clock(&basic, Priority::Low, opened, None, None, at("2026-12-02T15:00:01Z"));
        assert!(late.reaction_breached, "breached while still open");
        let acked =
            clock(&basic, Priority::Low, opened, Some(at("2026-12-01T10:00:00Z")), None, at("2026-12-09T00:00:00Z"));
        assert_eq!(acked.reaction_support_ms, 10 * 3_600_000);
        assert!(acked.reacted && !acked.reaction_breached);
        assert!(acked.resolution_breached, "40 h of support passed without a resolution");
    }

    #[test]
    fn resolution_before_acknowledgement_ends_the_reaction() {
        let premium = contract("24/7");
        let start = at("2026-11-10T10:00:00Z");
        let c = clock(&premium, Priority::Critical, start, None, Some(start + 600_000), start + 7_200_000);
        assert_eq!(c.reaction_support_ms, 600_000);
        assert_eq!(c.resolution_support_ms, 600_000);
        assert!(c.reacted && c.resolved && !c.reaction_breached && !c.resolution_breached);
        let c = clock(&premium, Priority::Critical, start, Some(start + 900_001), None, start + 7_200_000);
        assert!(c.reaction_breached, "15 min and 1 ms");
        assert_eq!(c.reaction_deadline_ms, Some(start + 900_000));
    }
}
