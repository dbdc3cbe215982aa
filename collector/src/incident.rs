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

use serde::Serialize;

use crate::contract::{Contract, Priority};
use crate::sla::Ms;
use crate::support_clock::{deadline, elapsed};

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
