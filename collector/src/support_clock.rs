//! The support-hours clock, pure: how much support time passed between two instants, and when
//! a number of support milliseconds will have passed (a deadline).
//!
//! Support hours are weekly windows in a time zone minus holidays ([`SupportHours::intervals`],
//! built on the service-hours calendar of [`crate::sla::Calendar`], so DST days of 23 or 25
//! hours come from the time zone). A low-priority incident opened Friday 19:00 on a
//! `Mon-Fri 09:00-18:00` plan has its clock start Monday 09:00.

use crate::contract::SupportHours;
use crate::sla::Ms;

/// Days of support hours looked at per step when searching for a deadline.
const STEP_MS: Ms = 7 * 86_400_000;
/// A deadline further than this from its start is not searched for (no support hours at all).
const HORIZON_MS: Ms = 3 * 366 * 86_400_000;

/// Support milliseconds in `[from, to)`; 0 when `to <= from`.
pub fn elapsed(hours: &SupportHours, from: Ms, to: Ms) -> Ms {
    if to <= from {
        return 0;
    }
    if hours.is_always() {
        return to - from;
    }
    hours.intervals(from, to).iter().map(|(a, b)| b - a).sum()
}

/// The earliest instant `t >= from` with `elapsed(from, t) == support_ms`; `None` if support
/// hours never add up to it within three years (for `support_ms <= 0`: `from`).
pub fn deadline(hours: &SupportHours, from: Ms, support_ms: Ms) -> Option<Ms> {
    if support_ms <= 0 {
        return Some(from);
    }
    if hours.is_always() {
        return from.checked_add(support_ms);
    }
    let mut left = support_ms;
    let mut cursor = from;
    while cursor.saturating_sub(from) < HORIZON_MS {
        let end = cursor.saturating_add(STEP_MS);
        for (a, b) in hours.intervals(cursor, end) {
            if b - a >= left {
                return Some(a + left);
            }
            left -= b - a;
        }
        cursor = end;
    }
    None
}

/// The first instant at or after `at` inside support hours (when the clock of an incident opened
/// at `at` starts); `None` if there is none within three years.
pub fn clock_start(hours: &SupportHours, at: Ms) -> Option<Ms> {
    if hours.is_always() {
        return Some(at);
    }
    let mut cursor = at;
    while cursor.saturating_sub(at) < HORIZON_MS {
        let end = cursor.saturating_add(STEP_MS);
        if let Some((a, _)) = hours.intervals(cursor, end).first() {
            return Some(*a);
        }
        cursor = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: Ms = 3_600_000;

    fn at(text: &str) -> Ms {
        text.parse::<jiff::Timestamp>().expect("timestamp").as_millisecond()
    }

    fn hours(spec: &str, tz: &str) -> SupportHours {
        SupportHours::parse(spec, tz, &[]).expect("valid")
    }

    #[test]
    fn friday_evening_waits_for_monday_morning() {
        let basic = hours("Mon-Fri 09:00-18:00", "Europe/Moscow");
        // Friday 2026-11-27 19:00 MSK (16:00 UTC).
        let opened = at("2026-11-27T16:00:00Z");
        assert_eq!(clock_start(&basic, opened), Some(at("2026-11-30T06:00:00Z")), "Monday 09:00 MSK");
        // 4 h of support: Monday 13:00 MSK.
        assert_eq!(deadline(&basic, opened, 4 * H), Some(at("2026-11-30T10:00:00Z")));
        // 24 h of support: 9 h Mon, 9 h Tue, 6 h Wed -> Wednesday 15:00 MSK.
        assert_eq!(deadline(&basic, opened, 24 * H), Some(at("2026-12-02T12:00:00Z")));
        assert_eq!(elapsed(&basic, opened, at("2026-12-02T12:00:00Z")), 24 * H);
        assert_eq!(elapsed(&basic, opened, at("2026-11-30T05:59:00Z")), 0, "nothing over the weekend");
    }

    #[test]
    fn dst_days_follow_the_time_zone() {
        // Berlin springs forward on 2026-03-29 (Sunday) and falls back on 2026-10-25 (Sunday).
        let daily = hours("Mon-Sun 00:00-24:00", "Europe/Berlin");
        assert_eq!(elapsed(&daily, at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z")), 23 * H, "23-hour day");
        assert_eq!(elapsed(&daily, at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z")), 25 * H, "25-hour day");
        // A window that crosses the jump: 01:00-04:00 local on the spring day is 2 h of wall time.
        let night = hours("Sun 01:00-04:00", "Europe/Berlin");
        assert_eq!(elapsed(&night, at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z")), 2 * H);
        assert_eq!(elapsed(&night, at("2026-10-24T00:00:00Z"), at("2026-10-26T00:00:00Z")), 4 * H);
        // Working hours keep their local times across the change: 09:00 CET = 08:00 UTC after it.
        let basic = hours("Mon-Fri 09:00-18:00", "Europe/Berlin");
        assert_eq!(deadline(&basic, at("2026-10-23T15:00:00Z"), 2 * H), Some(at("2026-10-26T09:00:00Z")));
    }

    #[test]
    fn an_incident_spanning_several_windows_counts_only_their_time() {
        let extended = hours("Mon-Fri 08:00-20:00; Sat 10:00-14:00", "UTC");
        // Friday 2026-11-27 18:00 to Monday 2026-11-30 09:00: 2 h Fri + 4 h Sat + 1 h Mon.
        assert_eq!(elapsed(&extended, at("2026-11-27T18:00:00Z"), at("2026-11-30T09:00:00Z")), 7 * H);
        let holidays = SupportHours::parse("Mon-Fri 09:00-18:00", "UTC", &["2026-11-30".into()]).expect("valid");
        assert_eq!(deadline(&holidays, at("2026-11-27T17:30:00Z"), H), Some(at("2026-12-01T09:30:00Z")));
    }

    fn arb_hours() -> impl Strategy<Value = SupportHours> {
        let zones = prop::sample::select(vec![
            "UTC",
            "Europe/Moscow",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
        ]);
        let windows = prop::sample::select(vec![
            "24/7",
            "Mon-Fri 09:00-18:00",
            "Mon-Fri 08:00-20:00; Sat 10:00-14:00",
            "Sun 01:00-04:00",
            "Mon-Sun 00:00-24:00",
            "Tue,Thu 23:30-24:00",
        ]);
        (zones, windows, prop::bool::ANY).prop_map(|(tz, spec, holiday)| {
            let holidays = if holiday { vec!["2026-03-30".to_owned(), "2026-11-02".to_owned()] } else { Vec::new() };
            SupportHours::parse(spec, tz, &holidays).expect("valid")
        })
    }

    /// Instants through 2026, around both DST changes of most zones.
    fn arb_instant() -> impl Strategy<Value = Ms> {
        at("2026-01-01T00:00:00Z")..at("2027-01-01T00:00:00Z")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn the_deadline_of_n_support_ms_is_where_n_have_elapsed(
            // Up to 100 h: the sparsest hours here (1 h a week) reach it within the three-year horizon.
            h in arb_hours(), from in arb_instant(), n in 1..(100 * H),
        ) {
            let due = deadline(&h, from, n).expect("support hours exist");
            prop_assert_eq!(elapsed(&h, from, due), n);
            // And not earlier: a millisecond before, less had elapsed.
            prop_assert_eq!(elapsed(&h, from, due - 1), n - 1);
        }

        #[test]
        fn elapsed_is_monotonic_and_additive(
            h in arb_hours(), a in arb_instant(), d1 in 0..(30 * 24 * H), d2 in 0..(30 * 24 * H),
        ) {
            let (b, c) = (a + d1, a + d1 + d2);
            let (ab, bc, ac) = (elapsed(&h, a, b), elapsed(&h, b, c), elapsed(&h, a, c));
            prop_assert_eq!(ab + bc, ac);
            prop_assert!(ab <= d1 && bc <= d2);
            prop_assert!(ac >= ab);
        }

        #[test]
        fn around_the_clock_support_is_wall_time(tz in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York"]),
            a in arb_instant(), d in 0..(90 * 24 * H), n in 0..(90 * 24 * H)) {
            let always = SupportHours::parse("24/7", tz, &[]).expect("valid");
            let daily = SupportHours::parse("Mon-Sun 00:00-24:00", tz, &[]).expect("valid");
            prop_assert_eq!(elapsed(&always, a, a + d), d);
            prop_assert_eq!(elapsed(&daily, a, a + d), d, "every local day in full is all the time, DST or not");
            prop_assert_eq!(deadline(&always, a, n), Some(a + n));
            prop_assert_eq!(deadline(&daily, a, n.max(1)), Some(a + n.max(1)));
        }

        #[test]
        fn the_clock_starts_inside_support_hours(h in arb_hours(), at in arb_instant()) {
            let start = clock_start(&h, at).expect("support hours exist");
            prop_assert!(start >= at);
            prop_assert_eq!(elapsed(&h, at, start), 0);
            prop_assert_eq!(elapsed(&h, start, start + 1), 1);
        }
    }
}
