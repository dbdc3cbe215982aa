//! Uptime and SLA arithmetic: pure functions over time intervals. Nothing here reads the clock or
//! the database; callers pass `now` and the evidence.
//!
//! Evidence per host and signal (agent reporting, portal probe, MySQL up) is a set of disjoint
//! intervals known `up` or `down` (built by the store as batches arrive, in any order). Time with
//! no evidence is *silence*. The rule for silence (DESIGN.md §5, RELIABILITY.md T40):
//! - silence while the collector itself was not running is `unknown`, never down;
//! - silence no longer than `silence_grace` is `unknown` (an agent cut off and about to backfill
//!   from its spool: once it does, the time is computed from the real samples);
//! - a longer silence counts as `silence_counts_as` (default `down`: a host gone for good);
//! - time before a signal's first evidence is `unknown` (not monitored yet).
//!
//! Declared maintenance windows turn any state into `maintenance`; service hours limit which time
//! counts at all. Availability = up / (up + down): unknown and maintenance time are reported but
//! excluded.

/// Milliseconds since the unix epoch.
pub type Ms = i64;

/// State of a signal over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Evidence says up.
    Up,
    /// Evidence says down, or silence counted as down.
    Down,
    /// No evidence and not counted.
    Unknown,
    /// Inside a declared maintenance window.
    Maintenance,
}

impl State {
    /// Up or down, as evidence records it.
    #[must_use]
    pub fn of_up(up: bool) -> State {
        if up { State::Up } else { State::Down }
    }
}

/// A half-open interval `[from, to)` in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    /// Start (inclusive).
    pub from: Ms,
    /// End (exclusive).
    pub to: Ms,
    /// State.
    pub state: State,
}

/// How silence is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Silence up to this long is unknown.
    pub silence_grace: Ms,
    /// What longer silence counts as (`Down` or `Unknown`).
    pub silence_counts_as: State,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { silence_grace: 15 * 60_000, silence_counts_as: State::Down }
    }
}

/// Time per state, and the availability ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Up time, ms.
    pub up_ms: Ms,
    /// Down time, ms.
    pub down_ms: Ms,
    /// Unknown time, ms.
    pub unknown_ms: Ms,
    /// Maintenance time, ms.
    pub maintenance_ms: Ms,
}

impl Summary {
    /// up / (up + down); `None` when nothing counted.
    pub fn ratio(&self) -> Option<f64> {
        let counted = self.up_ms.saturating_add(self.down_ms);
        (counted > 0).then(|| self.up_ms as f64 / counted as f64)
    }

    /// Adds another summary (of a disjoint window).
    pub fn add(&mut self, other: &Summary) {
        for state in [State::Up, State::Down, State::Unknown, State::Maintenance] {
            self.count(state, other.get(state));
        }
    }

    fn get(&self, state: State) -> Ms {
        match state {
            State::Up => self.up_ms,
            State::Down => self.down_ms,
            State::Unknown => self.unknown_ms,
            State::Maintenance => self.maintenance_ms,
        }
    }

    /// Adds `ms` to `state`; saturating, so a window as wide as the whole `i64` range cannot wrap.
    fn count(&mut self, state: State, ms: Ms) {
        let total = match state {
            State::Up => &mut self.up_ms,
            State::Down => &mut self.down_ms,
            State::Unknown => &mut self.unknown_ms,
            State::Maintenance => &mut self.maintenance_ms,
        };
        *total = total.saturating_add(ms);
    }
}

/// Sorts and merges intervals into disjoint, non-touching ones.
pub fn normalize(mut intervals: Vec<(Ms, Ms)>) -> Vec<(Ms, Ms)> {
    intervals.retain(|(a, b)| b > a);
    intervals.sort_unstable();
    let mut out: Vec<(Ms, Ms)> = Vec::with_capacity(intervals.len());
    for (a, b) in intervals {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The evidence a set of samples of one signal gives: each sample `(at, up)` proves its state
/// from `at` until the next sample (of either state) or for `span`, whichever ends first. Two
/// samples at the same instant count as one, down when either says down. The result is sorted,
/// disjoint, and touching intervals of one state are merged: a pure function of the *set*, so
/// the order in which samples arrive cannot change it.
pub fn point_evidence(points: &[(Ms, bool)], span: Ms) -> Vec<Span> {
    let mut sorted: Vec<(Ms, bool)> = points.to_vec();
    // Down first at equal times, then dedup keeps it.
    sorted.sort_unstable_by_key(|&(at, up)| (at, up));
    sorted.dedup_by_key(|p| p.0);
    let mut out: Vec<Span> = Vec::with_capacity(sorted.len());
    for (idx, &(at, up)) in sorted.iter().enumerate() {
        let mut end = at.saturating_add(span);
        if let Some(next) = sorted.get(idx + 1) {
            end = end.min(next.0);
        }
        push_merged(&mut out, Span { from: at, to: end, state: State::of_up(up) });
    }
    out
}

/// Appends `span` to sorted, disjoint `spans`, merging it into the last one when they touch in
/// the same state.
pub fn push_merged(spans: &mut Vec<Span>, span: Span) {
    if span.to <= span.from {
        return;
    }
    match spans.last_mut() {
        Some(last) if last.state == span.state && last.to >= span.from => last.to = last.to.max(span.to),
        _ => spans.push(span),
    }
}

/// When the collector was not running, judged at `now`, from its runs `(started, last
/// heartbeat, clean stop)` sorted by start: all time before the first run (nothing could be
/// received, so nothing is known); between runs, from a run's clean stop (or, after a crash, its
/// last heartbeat) to the next start; after the last run, from its stop, or from its last
/// heartbeat when that is older than `stale_ms` (the collector is not running now), to
/// `Ms::MAX`. Without any run, all time.
pub fn collector_down(runs: &[(Ms, Ms, Option<Ms>)], now: Ms, stale_ms: Ms) -> Vec<(Ms, Ms)> {
    let Some(first) = runs.first() else { return vec![(Ms::MIN, Ms::MAX)] };
    let end_of = |run: &(Ms, Ms, Option<Ms>)| run.2.unwrap_or(run.1);
    let mut out = vec![(Ms::MIN, first.0)];
    out.extend(runs.windows(2).map(|w| (end_of(&w[0]), w[1].0)));
    if let Some(last) = runs.last() {
        match last.2 {
            Some(stopped) => out.push((stopped, Ms::MAX)),
            None if now.saturating_sub(last.1) > stale_ms => out.push((last.1, Ms::MAX)),
            None => {}
        }
    }
    normalize(out)
}

/// Everything the timeline of one signal needs. Interval lists must be sorted and disjoint
/// ([`normalize`] them); `evidence` sorted by start and disjoint.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Known up/down intervals of the signal.
    pub evidence: &'a [Span],
    /// When the collector was not running (nothing could be received).
    pub collector_down: &'a [(Ms, Ms)],
    /// Declared maintenance.
    pub maintenance: &'a [(Ms, Ms)],
    /// The rule for silence.
    pub rules: Rules,
    /// The current time: silence reaching it is judged by its length so far.
    pub now: Ms,
}

/// The complete timeline of `[from, to)`: every instant in exactly one state, in order.
pub fn timeline(inputs: &Inputs<'_>, from: Ms, to: Ms) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let to = to.min(inputs.now.max(from));
    if to <= from {
        return out;
    }
    let mut push = |from: Ms, to: Ms, state: State| {
        if to <= from {
            return;
        }
        match out.last_mut() {
            Some(last) if last.state == state && last.to == from => last.to = to,
            _ => out.push(Span { from, to, state }),
        }
    };
    // The evidence intervals overlapping the window, and the silences between them. A silence is
    // judged by its whole length, not just the part inside the window (splitting a window must
    // not change the totals).
    let first = inputs.evidence.partition_point(|s| s.to <= from);
    let mut cursor = from;
    let mut prev_end = if first > 0 { inputs.evidence[first - 1].to } else { Ms::MIN };
    for span in &inputs.evidence[first..] {
        if span.from >= to {
            break;
        }
        if span.from > cursor {
            silence(inputs, prev_end, span.from, cursor, span.from, &mut push);
        }
        let (a, b) = (span.from.max(cursor), span.to.min(to));
        with_maintenance(inputs.maintenance, a, b, span.state, &mut push);
        cursor = cursor.max(b);
        prev_end = span.to;
    }
    if cursor < to {
        let next_start = inputs
            .evidence
            .iter()
            .find(|s| s.from >= to)
            .map_or(inputs.now.max(to), |s| s.from.min(inputs.now.max(to)));
        silence(inputs, prev_end, next_start, cursor, to, &mut push);
    }
    out
}

/// Emits the part `[a, b)` of the silence `[start, end)` (`start` may be `Ms::MIN`: no evidence
/// before it ever).
fn silence(inputs: &Inputs<'_>, start: Ms, end: Ms, a: Ms, b: Ms, push: &mut impl FnMut(Ms, Ms, State)) {
    let base = if is_long(inputs, start, end) { inputs.rules.silence_counts_as } else { State::Unknown };
    // Collector downtime inside the silence is unknown whatever the rule says.
    let mut cursor = a;
    for &(da, db) in inputs.collector_down {
        if db <= cursor || da >= b {
            continue;
        }
        with_maintenance(inputs.maintenance, cursor, da.max(cursor), base, push);
        with_maintenance(inputs.maintenance, da.max(cursor), db.min(b), State::Unknown, push);
        cursor = db.min(b);
    }
    with_maintenance(inputs.maintenance, cursor, b, base, push);
}

/// Whether the silence `[start, end)` is longer than the grace. Only time the collector was
/// running counts: nobody could have heard the agent while the collector was down, so its
/// downtime does not push a silence past the grace. Before the first evidence ever
/// (`start == Ms::MIN`) the signal was not monitored yet: never long.
fn is_long(inputs: &Inputs<'_>, start: Ms, end: Ms) -> bool {
    if start == Ms::MIN {
        return false;
    }
    let deaf: Ms = inputs
        .collector_down
        .iter()
        .map(|&(da, db)| db.min(end).saturating_sub(da.max(start)).max(0))
        .fold(0, Ms::saturating_add);
    end.saturating_sub(start).saturating_sub(deaf) > inputs.rules.silence_grace
}

/// The silences of a signal counted as down that overlap `[from, to)`, each whole: from the
/// first instant of the silence the collector was running (the silence's start, or the end of
/// the collector downtime it began in) to the next evidence, `None` when it still lasts at
/// `inputs.now`. These are the silent-agent incidents: one per silence, never cut by a query
/// window, a maintenance window or collector downtime inside it (those are only not charged).
/// `evidence` must reach past `to` (up to `now`) for the true ends to be known.
pub fn down_silences(inputs: &Inputs<'_>, from: Ms, to: Ms) -> Vec<(Ms, Option<Ms>)> {
    let mut out = Vec::new();
    if inputs.rules.silence_counts_as != State::Down {
        return out;
    }
    let mut prev_end = Ms::MIN;
    let ends = inputs.evidence.iter().map(|s| (s.from, s.to)).chain([(inputs.now, inputs.now)]);
    for (next_from, next_to) in ends {
        let (start, end) = (prev_end, next_from.min(inputs.now));
        if end > start && start != Ms::MIN && is_long(inputs, start, end) {
            let mut first = start;
            for &(da, db) in inputs.collector_down {
                if da <= first && db > first {
                    first = db;
                }
            }
            if first < end && first < to && end > from {
                out.push((first, (next_from < inputs.now).then_some(end)));
            }
        }
        prev_end = prev_end.max(next_to);
        if next_from >= inputs.now || prev_end >= inputs.now {
            break;
        }
    }
    out
}

/// Emits `[a, b)` in `state`, with maintenance windows overriding it.
fn with_maintenance(maintenance: &[(Ms, Ms)], a: Ms, b: Ms, state: State, push: &mut impl FnMut(Ms, Ms, State)) {
    let mut cursor = a;
    let first = maintenance.partition_point(|m| m.1 <= a);
    for &(ma, mb) in &maintenance[first..] {
        if ma >= b {
            break;
        }
        push(cursor, ma.max(cursor), state);
        push(ma.max(cursor), mb.min(b), State::Maintenance);
        cursor = mb.min(b).max(cursor);
    }
    push(cursor, b, state);
}

/// Totals of a timeline, counting only time inside `hours` (sorted, disjoint; `None`: all time).
pub fn summarize(spans: &[Span], hours: Option<&[(Ms, Ms)]>) -> Summary {
    let mut summary = Summary::default();
    for span in spans {
        match hours {
            None => summary.count(span.state, span.to.saturating_sub(span.from)),
            Some(hours) => {
                let first = hours.partition_point(|h| h.1 <= span.from);
                for &(ha, hb) in &hours[first..] {
                    if ha >= span.to {
                        break;
                    }
                    summary.count(span.state, hb.min(span.to).saturating_sub(ha.max(span.from)));
                }
            }
        }
    }
    summary
}

/// Service hours: weekdays (0 = Monday) and a daily local time range, in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// Days that have service hours, Monday = 0.
    pub days: [bool; 7],
    /// Start of the day's service, minutes after local midnight.
    pub start_min: u32,
    /// End of the day's service (exclusive), minutes after local midnight; 1440 = midnight.
    pub end_min: u32,
    /// Time zone.
    pub tz: jiff::tz::TimeZone,
}

impl Calendar {
    /// Parses `"Mon-Fri 09:00-20:00"` (days: a range or a comma list of Mon..Sun) in `tz`.
    ///
    /// # Errors
    /// A message naming what did not parse.
    pub fn parse(spec: &str, tz: &str) -> Result<Calendar, String> {
        let tz = jiff::tz::TimeZone::get(tz).map_err(|err| format!("time zone {tz:?}: {err}"))?;
        let (days_text, hours_text) =
            spec.trim().split_once(' ').ok_or_else(|| format!("{spec:?}: expected e.g. \"Mon-Fri 09:00-20:00\""))?;
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let day = |name: &str| {
            NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| format!("{name:?}: expected Mon, Tue, Wed, Thu, Fri, Sat or Sun"))
        };
        let mut days = [false; 7];
        for part in days_text.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(part)?] = true,
            }
        }
        let minutes = |text: &str| -> Result<u32, String> {
            let (h, m) = text.trim().split_once(':').ok_or_else(|| format!("{text:?}: expected HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| format!("{text:?}: bad hour"))?,
                m.parse().map_err(|_| format!("{text:?}: bad minute"))?,
            );
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(format!("{text:?}: expected 00:00 to 24:00"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = hours_text.split_once('-').ok_or_else(|| format!("{hours_text:?}: expected HH:MM-HH:MM"))?;
        let (start_min, end_min) = (minutes(a)?, minutes(b)?);
        if end_min <= start_min {
            return Err(format!("{hours_text:?}: the end must be after the start"));
        }
        Ok(Calendar { days, start_min, end_min, tz })
    }

    /// The service-hour intervals overlapping `[from, to)`, sorted and disjoint. Days are local
    /// calendar days, so a day of 23 or 25 hours (DST) is handled by the time zone.
    pub fn intervals(&self, from: Ms, to: Ms) -> Vec<(Ms, Ms)> {
        let mut out = Vec::new();
        let Ok(start) = jiff::Timestamp::from_millisecond(from) else { return out };
        let mut date =
            start.to_zoned(self.tz.clone()).date().yesterday().unwrap_or(start.to_zoned(self.tz.clone()).date());
        loop {
            let Ok(midnight) = date.to_zoned(self.tz.clone()) else { break };
            let day_start = midnight.timestamp().as_millisecond();
            if day_start >= to {
                break;
            }
            let weekday = date.weekday().to_monday_zero_offset() as usize;
            if self.days[weekday] {
                let at = |min: u32| -> Option<Ms> {
                    let time = jiff::civil::Time::new((min / 60) as i8, (min % 60) as i8, 0, 0).ok()?;
                    Some(date.to_datetime(time).to_zoned(self.tz.clone()).ok()?.timestamp().as_millisecond())
                };
                let a = at(self.start_min);
                let b = if self.end_min == 1440 {
                    date.tomorrow()
                        .ok()
                        .and_then(|d| d.to_zoned(self.tz.clone()).ok())
                        .map(|z| z.timestamp().as_millisecond())
                } else {
                    at(self.end_min)
                };
                if let (Some(a), Some(b)) = (a, b) {
                    let (a, b) = (a.max(from), b.min(to));
                    if b > a {
                        out.push((a, b));
                    }
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        normalize(out)
    }
}

/// A bad stretch of one check: from its first failed result to the next ok one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    /// Host.
    pub host: String,
    /// Check name (`portal_probe`, `bitrix_cron`, ... or `agent` for a silent agent).
    pub check: String,
    /// Target of the check.
    pub target: String,
    /// Highest severity seen during the incident (wire number: 1 low .. 4 critical).
    pub severity: i32,
    /// Reason of the first failure.
    pub reason: String,
    /// Start, ms.
    pub start_ms: Ms,
    /// End, ms; `None` while open.
    pub end_ms: Option<Ms>,
}

/// Builds incidents from the results of one check, sorted by time: `(at, verdict, severity,
/// reason)` where the verdict is `Some(true)` for failed, `Some(false)` for ok and `None` for a
/// result without a verdict (status `error`: the check could not run). An incident lasts from
/// the first failed result to the next ok one; results without a verdict neither open nor end
/// one.
pub fn incidents_of(
    host: &str,
    check: &str,
    target: &str,
    results: &[(Ms, Option<bool>, i32, String)],
) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    let mut open: Option<Incident> = None;
    for (at, verdict, severity, reason) in results {
        let Some(failed) = verdict else { continue };
        match (&mut open, failed) {
            (None, true) => {
                open = Some(Incident {
                    host: host.to_owned(),
                    check: check.to_owned(),
                    target: target.to_owned(),
                    severity: *severity,
                    reason: reason.clone(),
                    start_ms: *at,
                    end_ms: None,
                });
            }
            (Some(incident), true) => incident.severity = incident.severity.max(*severity),
            (Some(_), false) => {
                let mut incident = open.take().expect("open");
                incident.end_ms = Some(*at);
                out.push(incident);
            }
            (None, false) => {}
        }
    }
    out.extend(open);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Ms = 60_000;

    fn inputs<'a>(evidence: &'a [Span], down: &'a [(Ms, Ms)], maint: &'a [(Ms, Ms)], now: Ms) -> Inputs<'a> {
        Inputs { evidence, collector_down: down, maintenance: maint, rules: Rules::default(), now }
    }

    fn up(from: Ms, to: Ms) -> Span {
        Span { from, to, state: State::Up }
    }

    #[test]
    fn short_silence_is_unknown_long_silence_is_down_and_collector_downtime_is_unknown() {
        let ev = [up(0, 10 * MIN), up(15 * MIN, 60 * MIN), up(100 * MIN, 120 * MIN), up(150 * MIN, 200 * MIN)];
        let collector_down = [(125 * MIN, 150 * MIN)];
        let i = inputs(&ev, &collector_down, &[], 200 * MIN);
        let t = timeline(&i, 0, 200 * MIN);
        let s = summarize(&t, None);
        // 5 min gap: unknown; 40 min gap: down; 30 min gap of which 25 collector down: only 5 min
        // of it was heard, within the grace, so all 30 are unknown.
        assert_eq!(s.unknown_ms, 5 * MIN + 30 * MIN);
        assert_eq!(s.down_ms, 40 * MIN);
        assert_eq!(s.up_ms, 10 * MIN + 45 * MIN + 20 * MIN + 50 * MIN);
    }

    #[test]
    fn trailing_silence_is_unknown_until_the_grace_passes() {
        let ev = [up(0, 10 * MIN)];
        let soon = timeline(&inputs(&ev, &[], &[], 20 * MIN), 0, 30 * MIN);
        assert_eq!(summarize(&soon, None).unknown_ms, 10 * MIN);
        let later = timeline(&inputs(&ev, &[], &[], 40 * MIN), 0, 40 * MIN);
        assert_eq!(summarize(&later, None).down_ms, 30 * MIN);
    }

    #[test]
    fn service_hours_follow_the_time_zone_and_weekdays() {
        let cal = Calendar::parse("Mon-Fri 09:00-18:00", "Europe/Moscow").expect("calendar");
        // 2026-11-23 is a Monday; the week in Moscow (UTC+3).
        let from =
            jiff::civil::date(2026, 11, 23).to_zoned(cal.tz.clone()).expect("zoned").timestamp().as_millisecond();
        let to = from + 7 * 24 * 60 * MIN;
        let hours = cal.intervals(from, to);
        assert_eq!(hours.len(), 5);
        assert_eq!(hours[0].0 - from, 9 * 60 * MIN);
        assert_eq!(hours.iter().map(|(a, b)| b - a).sum::<Ms>(), 5 * 9 * 60 * MIN);
        assert!(Calendar::parse("Mon-Fri 18:00-09:00", "UTC").is_err());
        assert!(Calendar::parse("Mon-Fri 09:00-18:00", "Mars/Olympus").is_err());
        let weekend = Calendar::parse("Sat,Sun 00:00-24:00", "UTC").expect("weekend");
        assert_eq!(weekend.intervals(from, to).iter().map(|(a, b)| b - a).sum::<Ms>(), 2 * 24 * 60 * MIN);
    }

    #[test]
    fn incidents_run_from_first_failure_to_recovery() {
        let r =
            |at, failed, sev| (at, Some(failed), sev, if failed { "http_status".to_owned() } else { String::new() });
        let results = [r(0, false, 4), r(10, true, 4), r(20, true, 4), r(35, false, 4), r(50, true, 4)];
        let incidents = incidents_of("h", "portal_probe", "u", &results);
        assert_eq!(incidents.len(), 2);
        assert_eq!((incidents[0].start_ms, incidents[0].end_ms), (10, Some(35)));
        assert_eq!((incidents[1].start_ms, incidents[1].end_ms), (50, None));
    }

    fn arb_evidence() -> impl Strategy<Value = Vec<Span>> {
        proptest::collection::vec((0i64..500, 1i64..60, prop::bool::ANY), 0..30).prop_map(|items| {
            let mut out: Vec<Span> = Vec::new();
            let mut cursor = 0;
            for (gap, len, is_up) in items {
                let from = cursor + gap * MIN / 10;
                let to = from + len * MIN / 2;
                out.push(Span { from, to, state: State::of_up(is_up) });
                cursor = to;
            }
            out
        })
    }

    fn arb_intervals() -> impl Strategy<Value = Vec<(Ms, Ms)>> {
        proptest::collection::vec((0i64..4000, 1i64..200), 0..6)
            .prop_map(|v| normalize(v.into_iter().map(|(a, l)| (a * MIN / 2, (a + l) * MIN / 2)).collect()))
    }

    proptest! {
        #[test]
        fn ratio_is_a_ratio_and_totals_cover_the_window(
            ev in arb_evidence(), down in arb_intervals(), maint in arb_intervals(), end in 1i64..3000,
        ) {
            let now = end * MIN;
            let t = timeline(&inputs(&ev, &down, &maint, now), 0, now);
            let s = summarize(&t, None);
            prop_assert_eq!(s.up_ms + s.down_ms + s.unknown_ms + s.maintenance_ms, now);
            if let Some(r) = s.ratio() { prop_assert!((0.0..=1.0).contains(&r)); }
            for w in t.windows(2) { prop_assert!(w[0].to == w[1].from); }
        }

        #[test]
        fn splitting_a_window_preserves_totals(
            ev in arb_evidence(), down in arb_intervals(), maint in arb_intervals(), end in 2i64..3000, cut in 1i64..3000,
        ) {
            let now = end * MIN;
            let cut = (cut * MIN).min(now - 1);
            let i = inputs(&ev, &down, &maint, now);
            let whole = summarize(&timeline(&i, 0, now), None);
            let mut parts = summarize(&timeline(&i, 0, cut), None);
            parts.add(&summarize(&timeline(&i, cut, now), None));
            prop_assert_eq!(whole, parts);
        }

        #[test]
        fn adding_downtime_never_raises_availability(
            ev in arb_evidence(), idx in 0usize..30, end in 1i64..3000,
        ) {
            let now = end * MIN;
            let before = summarize(&timeline(&inputs(&ev, &[], &[], now), 0, now), None).ratio();
            let mut worse = ev.clone();
            if let Some(span) = worse.get_mut(idx) { span.state = State::Down; }
            let after = summarize(&timeline(&inputs(&worse, &[], &[], now), 0, now), None).ratio();
            if let (Some(b), Some(a)) = (before, after) { prop_assert!(a <= b + 1e-12); }
        }

        #[test]
        fn maintenance_time_is_never_up_or_down(
            ev in arb_evidence(), maint in arb_intervals(), end in 1i64..3000,
        ) {
            let now = end * MIN;
            let t = timeline(&inputs(&ev, &[], &maint, now), 0, now);
            let inside: Ms = maint.iter().map(|(a, b)| (*b).min(now) - (*a).min(now)).sum();
            prop_assert_eq!(summarize(&t, None).maintenance_ms, inside);
            let in_maint = summarize(&t, Some(&maint));
            prop_assert_eq!(in_maint.up_ms + in_maint.down_ms + in_maint.unknown_ms, 0);
        }

        #[test]
        fn every_minute_of_silence_downtime_lies_in_one_listed_silence(
            ev in arb_evidence(), down in arb_intervals(), maint in arb_intervals(), end in 1i64..3000, cut in 0i64..3000,
        ) {
            // The agent signal: only ever up.
            let ev: Vec<Span> = ev.into_iter().map(|s| Span { state: State::Up, ..s }).collect();
            let now = end * MIN;
            let cut = (cut * MIN).min(now);
            let i = inputs(&ev, &down, &maint, now);
            for (from, to) in [(0, now), (0, cut), (cut, now)] {
                let listed = down_silences(&i, from, to);
                for span in timeline(&i, from, to).iter().filter(|s| s.state == State::Down) {
                    let covered = listed.iter().any(|(a, b)| *a <= span.from && b.unwrap_or(now) >= span.to);
                    prop_assert!(covered, "{:?} not inside {:?}", span, listed);
                }
                for w in listed.windows(2) {
                    prop_assert!(w[0].1.is_some_and(|e| e <= w[1].0), "overlapping silences {:?}", listed);
                }
            }
        }

        #[test]
        fn only_service_hours_count(ev in arb_evidence(), hours in arb_intervals(), end in 1i64..3000) {
            let now = end * MIN;
            let t = timeline(&inputs(&ev, &[], &[], now), 0, now);
            let s = summarize(&t, Some(&hours));
            let inside: Ms = hours.iter().map(|(a, b)| (*b).min(now) - (*a).min(now)).sum();
            prop_assert_eq!(s.up_ms + s.down_ms + s.unknown_ms + s.maintenance_ms, inside);
        }
    }
}
