//! The monthly SLA report (HTML for people, CSV and JSON for machines) and the status page.
//! Server-rendered, no scripts, no front-end build.

use std::fmt::Write as _;

use serde::Serialize;

use crate::i18n::{Lang, Msg, Page};
use crate::resources::{self, Resources, Stat};
use crate::sla::{Ms, Summary};
use crate::store::Error;
use crate::store::query::CheckRow;
use crate::uptime::{IncidentRow, SignalUptime, Uptime};

/// Incidents of one severity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeverityTotals {
    /// How many.
    pub count: usize,
    /// The part of their durations inside the report's period, ms (an incident crossing the
    /// period's start or end counts only its part inside).
    pub duration_ms: Ms,
    /// How many were acknowledged.
    pub acknowledged: usize,
    /// Mean reaction time of the acknowledged ones, ms.
    pub mean_reaction_ms: Option<Ms>,
    /// Longest reaction time of the acknowledged ones, ms.
    pub worst_reaction_ms: Option<Ms>,
}

/// One host's month.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// Host (agent id).
    pub host: String,
    /// When the host was enrolled, unix ms: it is judged on time from then only.
    pub enrolled_ms: Ms,
    /// When the host was revoked, unix ms, if it was.
    pub revoked_ms: Option<Ms>,
    /// Start of the part of the period the host was monitored in (the later of the period's
    /// start and the enrolment), unix ms: the figures cover `[monitored_from_ms, monitored_to_ms)`,
    /// so time before the host was monitored is not "unknown".
    pub monitored_from_ms: Ms,
    /// End of that part (the earlier of the period's end and the revocation), unix ms.
    pub monitored_to_ms: Ms,
    /// The signal the SLA is judged on: the portal probe when the host has one, else the agent.
    pub sla_signal: String,
    /// The probe URL of that signal (empty for the agent).
    pub sla_signal_target: String,
    /// Availability of that signal; null when nothing was counted.
    pub availability: Option<f64>,
    /// Target.
    pub target: f64,
    /// availability >= target (null when unknown).
    pub met: Option<bool>,
    /// Downtime the counted up time allows at the target (`up × (1 − target) / target`), ms:
    /// availability meets the target exactly while downtime stays within it. Null when nothing
    /// was counted or the target is 0.
    pub downtime_budget_ms: Option<Ms>,
    /// The budget minus the downtime, ms; negative when the target is missed.
    pub downtime_budget_left_ms: Option<Ms>,
    /// Time per state of the SLA signal.
    pub totals: Summary,
    /// Every signal.
    pub signals: Vec<SignalUptime>,
    /// Incidents by severity.
    pub incidents_by_severity: std::collections::BTreeMap<&'static str, SeverityTotals>,
    /// Incidents.
    pub incidents: Vec<IncidentRow>,
    /// Critical log lines in the month.
    pub critical_log_lines: i64,
    /// Latest preventive-check results.
    pub checks: Vec<CheckRow>,
    /// CPU, load, memory, disks and portal response time over the period (hourly values).
    pub resources: Resources,
    /// The month's database and backup figures (issue #18).
    pub figures: Vec<FigureRow>,
}

/// One series of the preventive section over the month: its first and last daily average and
/// its extremes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureRow {
    /// Series name without the `b24watch_` prefix.
    pub series: &'static str,
    /// What it is, for people.
    pub title: &'static str,
    /// Its labels (`site`, `kind`), canonical text.
    pub labels: String,
    /// Average of the first day with data.
    pub first: f64,
    /// Average of the last day with data.
    pub last: f64,
    /// Smallest value of the month.
    pub min: f64,
    /// Largest value of the month.
    pub max: f64,
}

/// The series the preventive section summarises, in its order: database growth, then backups.
pub const FIGURES: &[(&str, &str)] = &[
    ("db_size_bytes", "Database size"),
    ("backup_last_timestamp_seconds", "Newest backup"),
    ("backup_last_size_bytes", "Newest backup size"),
    ("backup_filesystem_avail_bytes", "Free space for backups"),
];

/// The month's figures of `host` in `[from, to]`, one row per series and label set.
///
/// # Errors
/// Store errors.
fn figures(uptime: &Uptime, host: &str, from: Ms, to: Ms) -> Result<Vec<FigureRow>, Error> {
    let mut rows = Vec::new();
    for (series, title) in FIGURES {
        for s in uptime.reader().series_steps(host, series, from, to, 86_400_000)? {
            let (Some(first), Some(last)) = (s.steps.first(), s.steps.last()) else { continue };
            rows.push(FigureRow {
                series,
                title,
                labels: s.labels.clone(),
                first: first.avg,
                last: last.avg,
                min: s.steps.iter().map(|p| p.min).fold(f64::INFINITY, f64::min),
                max: s.steps.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max),
            });
        }
    }
    Ok(rows)
}

/// The heading of a figure of [`FIGURES`] for people.
fn figure_title(series: &str) -> Msg {
    match series {
        "db_size_bytes" => Msg::DatabaseSize,
        "backup_last_timestamp_seconds" => Msg::NewestBackup,
        "backup_last_size_bytes" => Msg::NewestBackupSize,
        _ => Msg::BackupSpace,
    }
}

/// A figure for people: bytes in MiB, timestamps as times.
fn figure_text(p: &Page, series: &str, value: f64) -> String {
    if series.ends_with("_timestamp_seconds") {
        p.time((value * 1000.0) as Ms)
    } else if series.ends_with("_bytes") {
        format!("{} MiB", p.number(value / 1_048_576.0, 1))
    } else {
        p.number(value, 0)
    }
}

/// The month a report covers, and when it was made: the head of the SLA report and of a
/// client's report (its fields are the reports' own in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// `YYYY-MM`.
    pub month: String,
    /// Time zone of the month.
    pub timezone: String,
    /// Start, unix ms.
    pub from_ms: Ms,
    /// End, unix ms (the month's end, or now for the current month).
    pub to_ms: Ms,
    /// Start, ISO 8601 in the report's time zone with its offset.
    pub from_iso: String,
    /// End, ISO 8601 with offset.
    pub to_iso: String,
    /// When it was made.
    pub generated_ms: Ms,
}

impl Period {
    /// `month` in the time zone of `uptime`'s SLA settings (named `timezone` in the report), up
    /// to its end or, for the current month, to `now`.
    ///
    /// # Errors
    /// `Err(message)` for a bad month.
    pub(crate) fn of_month(uptime: &Uptime, month: &str, timezone: String, now: Ms) -> Result<Period, String> {
        let (from, month_end) = uptime.month_bounds(month)?;
        let to = month_end.min(now.max(from));
        let tz = &uptime.cfg.timezone;
        Ok(Period {
            month: month.to_owned(),
            timezone,
            from_ms: from,
            to_ms: to,
            from_iso: crate::i18n::iso(from, tz),
            to_iso: crate::i18n::iso(to, tz),
            generated_ms: now,
        })
    }

    /// The time zone of the month (UTC if the name no longer resolves).
    pub(crate) fn zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The month, its time zone and bounds.
    #[serde(flatten)]
    pub period: Period,
    /// Service hours, if any.
    pub service_hours: Option<String>,
    /// Hosts.
    pub hosts: Vec<HostReport>,
}

/// Builds the report of `month` for `host` (or every host).
///
/// # Errors
/// `Err(message)` for a bad month or unknown host; SQLite errors as text.
pub fn build(uptime: &Uptime, month: &str, host: Option<&str>, now: Ms) -> Result<Report, String> {
    let timezone = uptime.cfg.timezone.iana_name().unwrap_or("UTC").to_owned();
    let period = Period::of_month(uptime, month, timezone, now)?;
    let (from, to) = (period.from_ms, period.to_ms);
    // Hosts enrolled before the period's end and not revoked before its start: revoking a host
    // later does not change a past month's report.
    let all: Vec<crate::store::query::AgentRow> = uptime
        .reader()
        .agents()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| a.created_ms < to.max(from + 1) && a.revoked_ms.is_none_or(|r| r > from))
        .collect();
    let hosts: Vec<&crate::store::query::AgentRow> = match host {
        Some(h) => match all.iter().find(|a| a.id == h) {
            Some(a) => vec![a],
            None => return Err(format!("unknown host {h:?} (or not monitored in {month})")),
        },
        None => all.iter().collect(),
    };
    let mut out = Vec::new();
    for agent in hosts {
        // Only the time the host was monitored: before its enrolment and after its revocation
        // there was nothing to know, which is not "unknown".
        let monitored_from = from.max(agent.created_ms).min(to);
        let monitored_to = agent.revoked_ms.map_or(to, |r| r.min(to)).max(monitored_from);
        let mut report =
            host_report(uptime, &agent.id, monitored_from, monitored_to, now).map_err(|e| e.to_string())?;
        report.enrolled_ms = agent.created_ms;
        report.revoked_ms = agent.revoked_ms;
        out.push(report);
    }
    Ok(Report { period, service_hours: uptime.cfg.calendar.as_ref().map(|_| "configured".to_owned()), hosts: out })
}

/// The downtime `up` allows at `target` and what is left of it after `down`, ms.
pub fn downtime_budget(up: Ms, down: Ms, target: f64) -> Option<(Ms, Ms)> {
    if up + down == 0 || target <= 0.0 {
        return None;
    }
    let allowed = (up as f64 * (1.0 - target) / target).floor() as Ms;
    Some((allowed, allowed - down))
}

fn host_report(uptime: &Uptime, host: &str, from: Ms, to: Ms, now: Ms) -> Result<HostReport, Error> {
    let signals = uptime.host_uptime(host, from, to, now, false)?;
    let contract = uptime.cfg.contract_targets.get(host).map(String::as_str);
    let (sla_signal, sla_signal_target, availability, totals) = match judged(&signals, contract) {
        Some(s) => (s.signal.clone(), s.target.clone(), s.availability, s.summary),
        None if contract.is_some() => {
            ("portal".to_owned(), contract.unwrap_or_default().to_owned(), None, Summary::default())
        }
        None => ("agent".to_owned(), String::new(), None, Summary::default()),
    };
    let target = uptime.cfg.target_of(host);
    let budget = downtime_budget(totals.up_ms, totals.down_ms, target);
    let incidents = uptime.incidents(host, from, to, now)?;
    let mut by_severity: std::collections::BTreeMap<&'static str, SeverityTotals> = std::collections::BTreeMap::new();
    for severity in ["critical", "high", "medium", "low"] {
        let of: Vec<&IncidentRow> = incidents.iter().filter(|i| i.severity == severity).collect();
        let reactions: Vec<Ms> = of.iter().filter_map(|i| i.reaction_ms).collect();
        by_severity.insert(
            severity,
            SeverityTotals {
                count: of.len(),
                duration_ms: of.iter().map(|i| i.in_window_ms).sum(),
                acknowledged: reactions.len(),
                mean_reaction_ms: (!reactions.is_empty()).then(|| reactions.iter().sum::<Ms>() / reactions.len() as Ms),
                worst_reaction_ms: reactions.iter().copied().max(),
            },
        );
    }
    Ok(HostReport {
        host: host.to_owned(),
        enrolled_ms: 0,
        revoked_ms: None,
        monitored_from_ms: from,
        monitored_to_ms: to,
        sla_signal,
        sla_signal_target,
        availability,
        target,
        met: availability.map(|a| a >= target),
        downtime_budget_ms: budget.map(|b| b.0),
        downtime_budget_left_ms: budget.map(|b| b.1),
        totals,
        signals,
        incidents_by_severity: by_severity,
        incidents,
        critical_log_lines: uptime.reader().critical_log_lines(host, from, to)?,
        checks: uptime.reader().checks(host)?,
        resources: resources::of_host(uptime.reader(), host, from, to)?,
        figures: figures(uptime, host, from, to)?,
    })
}

/// The signal a host's SLA is judged on: the portal probe of the contract's URL when one is
/// configured (none: no data), else the first probe URL alphabetically, else the agent.
pub fn judged<'a>(signals: &'a [SignalUptime], contract: Option<&str>) -> Option<&'a SignalUptime> {
    match contract {
        Some(url) => signals.iter().find(|s| s.signal == "portal" && s.target == url),
        None => signals.iter().find(|s| s.signal == "portal").or_else(|| signals.iter().find(|s| s.signal == "agent")),
    }
}

/// CSV: one row per host and signal, then one row per incident (a `kind` column tells them apart).
/// The last columns repeat figures for people opening the file: availability and target as
/// percentages (rounded down, like the HTML), and times as ISO 8601 with the offset of the
/// report's time zone. Identifiers (`check`, `reason`, ...) are never translated. The preventive
/// section follows each host's resources: one `check` row per latest check result (`status` in
/// the last column, since when in `start_ms`/`start_at`) and one `figure` row per database or
/// backup series of the month (`figure` .. `max`).
pub fn csv(report: &Report) -> String {
    let tz = report.period.zone();
    let mut out = String::from(
        "kind,month,host,signal,target,availability,sla_target,met,up_ms,down_ms,unknown_ms,maintenance_ms,\
         check,severity,reason,start_ms,end_ms,duration_ms,ack_ms,reaction_ms,in_period_ms,id,\
         availability_percent,sla_target_percent,start_at,end_at,ack_at,\
         resource,mountpoint,avg,median,p95,max,hours,start_value,end_value,growth,growth_per_day,days_until_full,forecast,\
         figure,labels,first,last,change,min,max,status\n",
    );
    let opt = |v: Option<Ms>| v.map(|v| v.to_string()).unwrap_or_default();
    let iso = |v: Option<Ms>| v.map(|v| crate::i18n::iso(v, &tz)).unwrap_or_default();
    let pct = |r: Option<f64>| r.map(|r| format!("{:.3}", (r * 100_000.0 + 1e-9).floor() / 1000.0)).unwrap_or_default();
    for h in &report.hosts {
        for s in &h.signals {
            let _ = writeln!(
                out,
                "uptime,{},{},{},{},{},{},{},{},{},{},{},,,,,,,,,,,{},{},,,{RESOURCE_EMPTY}{PREVENTIVE_EMPTY}",
                field(&report.period.month),
                field(&h.host),
                field(&s.signal),
                field(&s.target),
                s.availability.map(|a| format!("{a:.6}")).unwrap_or_default(),
                h.target,
                if s.signal == h.sla_signal { h.met.map(|m| m.to_string()).unwrap_or_default() } else { String::new() },
                s.summary.up_ms,
                s.summary.down_ms,
                s.summary.unknown_ms,
                s.summary.maintenance_ms,
                pct(s.availability),
                pct(Some(h.target)),
            );
        }
        for i in &h.incidents {
            let _ = writeln!(
                out,
                "incident,{},{},,{},,,,,,,,{},{},{},{},{},{},{},{},{},{},,,{},{},{}{RESOURCE_EMPTY}{PREVENTIVE_EMPTY}",
                field(&report.period.month),
                field(&h.host),
                field(&i.target),
                field(&i.check),
                i.severity,
                field(&i.reason),
                i.start_ms,
                opt(i.end_ms),
                i.duration_ms,
                opt(i.ack_ms),
                opt(i.reaction_ms),
                i.in_window_ms,
                i.id,
                iso(Some(i.start_ms)),
                iso(i.end_ms),
                iso(i.ack_ms),
            );
        }
        resource_rows(&mut out, &report.period.month, h);
        preventive_rows(&mut out, &report.period.month, h, &tz);
    }
    out
}

/// The resource columns of a row that is not a resource.
const RESOURCE_EMPTY: &str = ",,,,,,,,,,,,,";

/// The preventive columns (40 on) of a row that is not a check or a figure.
const PREVENTIVE_EMPTY: &str = ",,,,,,,,";

/// Columns of the CSV: 22 base, 5 for people, 13 resource, 8 preventive.
const CSV_COLUMNS: usize = 48;

/// Canonical label text (`kind="bitrix",site="default"`) as one CSV cell: `kind=bitrix;site=default`
/// (quotes dropped, pairs separated by `;`; a value's own characters are kept). Pure.
fn csv_labels(labels: &str) -> String {
    let mut out = String::with_capacity(labels.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in labels.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(';'),
            _ => out.push(c),
        }
    }
    out
}

/// CSV rows of kinds `check` (latest result of each check: `status` in the last column; the
/// message is left to the HTML, the reason is its machine form) and `figure` (the month's
/// database and backup figures), as in the preventive section of the HTML.
fn preventive_rows(out: &mut String, month: &str, h: &HostReport, tz: &jiff::tz::TimeZone) {
    let base = |kind: &str| {
        let mut cells = vec![String::new(); CSV_COLUMNS];
        cells[0] = kind.to_owned();
        cells[1] = field(month);
        cells[2] = field(&h.host);
        cells
    };
    for c in &h.checks {
        let mut cells = base("check");
        cells[4] = field(&c.target);
        cells[12] = field(&c.check);
        cells[13] = c.severity.to_owned();
        cells[14] = field(&c.reason);
        cells[15] = c.since_ms.to_string();
        cells[25] = crate::i18n::iso(c.since_ms, tz);
        cells[47] = c.status.to_owned();
        let _ = writeln!(out, "{}", cells.join(","));
    }
    for f in &h.figures {
        let mut cells = base("figure");
        cells[40] = f.series.to_owned();
        cells[41] = field(&csv_labels(&f.labels));
        cells[42] = format!("{}", f.first);
        cells[43] = format!("{}", f.last);
        // A change of a point in time means nothing; sizes and free space change.
        if !f.series.ends_with("_timestamp_seconds") {
            cells[44] = format!("{}", f.last - f.first);
        }
        cells[45] = format!("{}", f.min);
        cells[46] = format!("{}", f.max);
        let _ = writeln!(out, "{}", cells.join(","));
    }
}

/// CSV rows of kind `resource`: one per figure (CPU, load, memory, each mount, each probed URL).
fn resource_rows(out: &mut String, month: &str, h: &HostReport) {
    // Cells by column: kind, month, host, target (3), then the resource columns from 27 on.
    let mut row = |target: &str, resource: [String; 13]| {
        let mut cells = vec![String::new(); CSV_COLUMNS];
        cells[0] = "resource".to_owned();
        cells[1] = field(month);
        cells[2] = field(&h.host);
        cells[4] = field(target);
        for (cell, value) in cells[27..].iter_mut().zip(resource) {
            *cell = value;
        }
        let _ = writeln!(out, "{}", cells.join(","));
    };
    let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    let stat = |name: &str, s: &Stat| -> [String; 13] {
        let v = |x: f64| format!("{x}");
        let e = String::new;
        [
            name.to_owned(),
            e(),
            v(s.avg),
            v(s.median),
            v(s.p95),
            v(s.max),
            s.hours.to_string(),
            e(),
            e(),
            e(),
            e(),
            e(),
            e(),
        ]
    };
    let r = &h.resources;
    let stats = [
        ("cpu_usage_ratio", r.cpu_usage_ratio),
        ("load1", r.load1),
        ("memory_used_bytes", r.memory_used_bytes),
        ("memory_used_ratio", r.memory_used_ratio),
    ];
    for (name, s) in stats {
        if let Some(s) = s {
            row("", stat(name, &s));
        }
    }
    for p in &r.response {
        row(&p.target, stat("probe_duration_seconds", &p.seconds));
    }
    for d in &r.disks {
        row(
            &d.device,
            [
                "disk_used_bytes".to_owned(),
                field(&d.mountpoint),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                d.hours.to_string(),
                d.used_start_bytes.to_string(),
                d.used_end_bytes.to_string(),
                d.growth_bytes.to_string(),
                num(d.growth_bytes_per_day),
                num(d.days_until_full),
                d.forecast.text().replace(' ', "_"),
            ],
        );
    }
}

/// A CSV cell. Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
/// or carriage return; OWASP "CSV injection") gets a leading `'` and is quoted, so it is shown as
/// text; cells with separators, quotes or line breaks are quoted.
pub fn field(value: &str) -> String {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", value.replace('"', "\"\""))
    } else if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// HTML-escapes text.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Duration as `1d 2h 3m 4s` / `4m 5s`: whole seconds always (milliseconds are dropped). English,
/// for text outside the pages; pages use [`Page::duration`].
pub fn human(ms: Ms) -> String {
    crate::i18n::duration(Lang::En, ms)
}

/// A ratio as a percentage with three decimals, rounded *down*: a printed figure never reaches
/// a target (given to 0.001 %) that the exact figure misses, so "99.499 %" stands next to
/// "met: no" for 0.9949996 and a target of 99.5 %.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(
        || "no data".to_owned(),
        |r| {
            let thousandths = (r * 100_000.0 + 1e-9).floor() as i64;
            format!("{}.{:03} %", thousandths / 1000, thousandths % 1000)
        },
    )
}

/// A time in the report's time zone, with its offset (`2026-11-01 03:00:00 +03:00`).
pub fn time_in(ms: Ms, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %:z").to_string())
}

/// The stylesheet of every page (inline, so saved reports keep it; the CSP allows it by hash).
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f4f4f4}.bad{color:#b00}.ok{color:#070}\
.unknown{color:#777}.detail{color:#777;font-size:.9em}h2{margin-top:2em}.breached{color:#b00;font-weight:bold}\
form.inline{display:inline;margin-left:.5em}\
.notice{background:#eef6ee;border:1px solid #9c9;padding:.5em}.refused{background:#fbeeee;border:1px solid #c99;padding:.5em}\
@page{size:A4;margin:14mm}@media print{body{margin:0;font-size:9pt}table{width:100%;page-break-inside:auto}\
tr{break-inside:avoid}h2{break-after:avoid}form,.actions{display:none}}";

/// The class of a figure against its target: `ok` (met), `bad` (missed), `unknown` (no data).
pub fn against(ratio: Option<f64>, target: f64) -> &'static str {
    match ratio {
        Some(r) if r >= target => "ok",
        Some(_) => "bad",
        None => "unknown",
    }
}

/// The page head: `<html lang>`, title and style, then the body's heading.
pub(crate) fn head(out: &mut String, page: &Page, title: &str, refresh: bool) {
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">{refresh}<title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>",
        lang = page.lang.code(),
        refresh = if refresh { "<meta http-equiv=\"refresh\" content=\"30\">" } else { "" },
        title = html_escape(title),
    );
}

/// A table's heading row: one `<th>` per message, in order.
pub(crate) fn heading_row(out: &mut String, p: &Page, headings: &[Msg]) {
    out.push_str("<tr>");
    for msg in headings {
        let _ = write!(out, "<th>{}</th>", p.t(*msg));
    }
    out.push_str("</tr>");
}

/// The page foot: when the page was made, then the end of the page.
pub(crate) fn foot(out: &mut String, p: &Page, generated_ms: Ms) {
    let _ = writeln!(out, "<p class=\"generated\">{}</p></body></html>", p.f(Msg::Generated, &[&p.time(generated_ms)]));
}

/// The report as an HTML page in `lang`, times in the report's time zone with the zone named.
pub fn html(report: &Report, lang: Lang) -> String {
    let p = Page::new(lang, report.period.zone());
    let mut out = String::new();
    head(&mut out, &p, &p.f(Msg::ReportTitle, &[&crate::i18n::month(lang, &report.period.month)]), false);
    let _ = write!(
        out,
        "<p class=\"period\">{} {}{}</p><p>{} {} {}</p>",
        p.f(Msg::Period, &[&p.time(report.period.from_ms), &p.time(report.period.to_ms)]),
        p.f(Msg::TimesIn, &[&html_escape(&report.period.timezone)]),
        report.service_hours.as_ref().map_or(String::new(), |_| format!(" {}", p.t(Msg::ServiceHours))),
        p.t(Msg::AvailabilityRule),
        p.t(Msg::ColoursNote),
        p.t(Msg::BudgetNote),
    );
    out.push_str("<table id=\"summary\">");
    heading_row(
        &mut out,
        &p,
        &[
            Msg::Host,
            Msg::Signal,
            Msg::Availability,
            Msg::Target,
            Msg::Met,
            Msg::Downtime,
            Msg::DowntimeBudget,
            Msg::Unknown,
            Msg::Maintenance,
            Msg::IncidentsBySeverity,
            Msg::CriticalLogLines,
        ],
    );
    for h in &report.hosts {
        let count = |s: &str| h.incidents_by_severity.get(s).map_or(0, |t| t.count);
        let since = if h.monitored_from_ms > report.period.from_ms {
            format!(
                "<br><span class=\"detail monitored\">{}</span>",
                p.f(Msg::MonitoredSince, &[&p.time(h.monitored_from_ms)])
            )
        } else {
            String::new()
        };
        let budget = match (h.downtime_budget_ms, h.downtime_budget_left_ms) {
            (Some(allowed), Some(left)) if left >= 0 => {
                format!(
                    "<td class=\"budget ok\">{}</td>",
                    p.f(Msg::BudgetLeft, &[&p.duration(left), &p.duration(allowed)])
                )
            }
            (Some(allowed), Some(left)) => format!(
                "<td class=\"budget bad\">{}</td>",
                p.f(Msg::BudgetExceeded, &[&p.duration(-left), &p.duration(allowed)])
            ),
            _ => format!("<td class=\"budget unknown\">{}</td>", p.t(Msg::NoData)),
        };
        let _ = write!(
            out,
            "<tr class=\"host\" data-host=\"{host}\" data-signal=\"{signal_id}\"><td>{host}{since}</td><td>{signal}</td>\
             <td class=\"availability {class}\">{avail}</td><td>{target}</td><td class=\"{class}\">{met}</td><td>{down}</td>\
             {budget}<td>{unknown}</td><td>{maint}</td><td>{c}/{hi}/{m}/{l}</td><td>{logs}</td></tr>",
            host = html_escape(&h.host),
            signal_id = html_escape(&h.sla_signal),
            signal = html_escape(&p.signal(&h.sla_signal, &h.sla_signal_target)),
            avail = p.percent(h.availability),
            target = p.percent(Some(h.target)),
            class = against(h.availability, h.target),
            met = p.met(h.met),
            down = p.duration(h.totals.down_ms),
            unknown = p.duration(h.totals.unknown_ms),
            maint = p.duration(h.totals.maintenance_ms),
            c = count("critical"),
            hi = count("high"),
            m = count("medium"),
            l = count("low"),
            logs = p.integer(h.critical_log_lines),
        );
    }
    out.push_str("</table>");
    for h in &report.hosts {
        host_html(&mut out, &p, h);
    }
    foot(&mut out, &p, report.period.generated_ms);
    out
}

/// One host's sections of the report.
pub(crate) fn host_html(out: &mut String, p: &Page, h: &HostReport) {
    let _ = write!(
        out,
        "<h2 id=\"host-{0}\">{0}</h2><p class=\"monitored\">{1}{2}</p>",
        html_escape(&h.host),
        p.f(
            Msg::MonitoredFromTo,
            &[
                &p.time(h.monitored_from_ms),
                &p.time(h.monitored_to_ms),
                &html_escape(&p.signal(&h.sla_signal, &h.sla_signal_target))
            ]
        ),
        h.revoked_ms.map_or_else(String::new, |r| format!(" {}", p.f(Msg::Revoked, &[&p.time(r)]))),
    );
    let _ = write!(out, "<h3>{}</h3><table class=\"signals\">", p.t(Msg::Signals));
    heading_row(out, p, &[Msg::Signal, Msg::Availability, Msg::Up, Msg::Downtime, Msg::Unknown, Msg::Maintenance]);
    for s in &h.signals {
        let _ = write!(
            out,
            "<tr data-signal=\"{}\"><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&s.signal),
            html_escape(&p.signal(&s.signal, &s.target)),
            against(s.availability, h.target),
            p.percent(s.availability),
            p.duration(s.summary.up_ms),
            p.duration(s.summary.down_ms),
            p.duration(s.summary.unknown_ms),
            p.duration(s.summary.maintenance_ms)
        );
    }
    let _ = write!(out, "</table><h3>{}</h3><table class=\"reaction\">", p.t(Msg::ReactionByPriority));
    heading_row(
        out,
        p,
        &[Msg::Severity, Msg::Count, Msg::InPeriod, Msg::Acknowledged, Msg::MeanReaction, Msg::WorstReaction],
    );
    for severity in ["critical", "high", "medium", "low"] {
        let t = h.incidents_by_severity.get(severity).cloned().unwrap_or_default();
        let reaction = |ms: Option<Ms>| ms.map_or_else(|| "—".to_owned(), |ms| p.duration(ms));
        let _ = write!(
            out,
            "<tr class=\"{severity}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mean\">{}</td><td class=\"worst\">{}</td></tr>",
            p.severity(severity),
            t.count,
            p.duration(t.duration_ms),
            t.acknowledged,
            reaction(t.mean_reaction_ms),
            reaction(t.worst_reaction_ms),
        );
    }
    let _ = write!(out, "</table><h3>{}</h3>", p.t(Msg::Incidents));
    if h.incidents.is_empty() {
        let _ = write!(out, "<p>{}</p>", p.t(Msg::NoIncidents));
    } else {
        out.push_str("<table class=\"incidents\">");
        heading_row(
            out,
            p,
            &[
                Msg::Severity,
                Msg::Check,
                Msg::CheckTarget,
                Msg::Reason,
                Msg::Start,
                Msg::End,
                Msg::Duration,
                Msg::InPeriod,
                Msg::Reaction,
            ],
        );
        for i in &h.incidents {
            let _ = write!(
                out,
                "<tr class=\"incident {sev}\" data-check=\"{check_id}\" data-reason=\"{reason_id}\"><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td class=\"start\">{}</td><td class=\"end\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.severity(i.severity),
                html_escape(&p.check(&i.check)),
                html_escape(&i.target),
                html_escape(&p.reason(&i.reason)),
                p.time(i.start_ms),
                i.end_ms.map_or_else(|| p.t(Msg::Open).to_owned(), |e| p.time(e)),
                p.duration(i.duration_ms),
                p.duration(i.in_window_ms),
                i.reaction_ms.map_or_else(|| p.t(Msg::NotAcknowledged).to_owned(), |r| p.duration(r)),
                sev = i.severity,
                check_id = html_escape(&i.check),
                reason_id = html_escape(&i.reason),
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(out, "<h3>{}</h3>", p.t(Msg::Checks));
    if h.checks.is_empty() {
        let _ = write!(out, "<p>{}</p>", p.t(Msg::NoChecks));
    } else {
        out.push_str("<table class=\"checks\">");
        heading_row(out, p, &[Msg::Check, Msg::CheckTarget, Msg::Status, Msg::Severity, Msg::Message, Msg::Since]);
        for c in &h.checks {
            let _ = write!(
                out,
                "<tr data-check=\"{}\"><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&c.check),
                html_escape(&p.check(&c.check)),
                html_escape(&c.target),
                if c.status == "ok" { "ok" } else { "bad" },
                p.status(c.status),
                p.severity(c.severity),
                check_message(p, c),
                p.time(c.since_ms)
            );
        }
        out.push_str("</table>");
    }
    resources_html(out, p, &h.resources);
    figures_html(out, p, h);
}

/// The month's database and backup figures of one host (preventive section).
fn figures_html(out: &mut String, p: &Page, h: &HostReport) {
    let _ = write!(out, "<h3>{}</h3>", p.t(Msg::Figures));
    if h.figures.is_empty() {
        let _ = write!(out, "<p>{}</p>", p.t(Msg::NoFigures));
    } else {
        out.push_str("<table>");
        heading_row(
            out,
            p,
            &[Msg::Figure, Msg::Of, Msg::MonthStart, Msg::MonthEnd, Msg::Change, Msg::Lowest, Msg::Highest],
        );
        for f in &h.figures {
            let change = if f.series.ends_with("_timestamp_seconds") {
                String::new()
            } else {
                figure_text(p, f.series, f.last - f.first)
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.t(figure_title(f.series)),
                html_escape(&f.labels),
                figure_text(p, f.series, f.first),
                figure_text(p, f.series, f.last),
                change,
                figure_text(p, f.series, f.min),
                figure_text(p, f.series, f.max),
            );
        }
        out.push_str("</table>");
    }
}

/// A check's message for people: the reason as a sentence (and the raw error's meaning when
/// known), then the agent's own text (English) as a detail.
pub fn check_message(p: &Page, c: &CheckRow) -> String {
    let mut sentence = if c.reason.is_empty() { String::new() } else { p.reason(&c.reason) };
    if let Some(meaning) = p.error(&c.message).filter(|m| *m != sentence) {
        if !sentence.is_empty() {
            sentence.push_str(": ");
        }
        sentence.push_str(meaning);
    }
    match (sentence.is_empty(), c.message.is_empty()) {
        // The agent writes its messages in English: a detail on a page in another language.
        (true, _) if p.lang != Lang::En && !c.message.is_empty() => {
            format!("<span class=\"detail\">{}</span>", html_escape(&c.message))
        }
        (true, _) => html_escape(&c.message),
        (false, true) => html_escape(&sentence),
        (false, false) => {
            format!("{}<br><span class=\"detail\">{}</span>", html_escape(&sentence), html_escape(&c.message))
        }
    }
}

/// Bytes as `12.3 GiB`.
pub fn bytes(value: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = value;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", units[unit]) }
}

/// A resource row of the page: its name, figures and how a value is printed.
type StatRow = (Msg, Option<Stat>, fn(&Page, f64) -> String);

/// The resources section of one host.
fn resources_html(out: &mut String, p: &Page, r: &Resources) {
    let _ = write!(out, "<h3>{}</h3><p>{}</p>", p.t(Msg::Resources), p.t(Msg::ResourcesNote));
    let share = |p: &Page, v: f64| format!("{} %", p.number(v * 100.0, 1));
    let rows: Vec<StatRow> = vec![
        (Msg::CpuBusy, r.cpu_usage_ratio, share),
        (Msg::Load1, r.load1, |p, v| p.number(v, 2)),
        (Msg::MemoryUsed, r.memory_used_bytes, |_, v| bytes(v)),
        (Msg::MemoryUsedShare, r.memory_used_ratio, share),
    ];
    if rows.iter().all(|r| r.1.is_none()) && r.disks.is_empty() && r.response.is_empty() {
        let _ = write!(out, "<p class=\"resources\">{}</p>", p.t(Msg::NoResources));
        return;
    }
    out.push_str("<table class=\"resources\">");
    heading_row(out, p, &[Msg::Resource, Msg::Average, Msg::Median, Msg::P95, Msg::HighestHour, Msg::Hours]);
    let stat_row = |out: &mut String, name: &str, s: &Stat, fmt: &dyn Fn(f64) -> String| {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(name),
            fmt(s.avg),
            fmt(s.median),
            fmt(s.p95),
            fmt(s.max),
            s.hours
        );
    };
    for (name, s, fmt) in &rows {
        match s {
            Some(s) => stat_row(out, p.t(*name), s, &|v| fmt(p, v)),
            None => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td colspan=\"5\" class=\"unknown\">{}</td></tr>",
                    p.t(*name),
                    p.t(Msg::NoData)
                );
            }
        }
    }
    let ms = if p.lang == Lang::Ru { "мс" } else { "ms" };
    for probe in &r.response {
        stat_row(out, &p.f(Msg::ResponseTime, &[&probe.target]), &probe.seconds, &|v| {
            format!("{} {ms}", p.number(v * 1000.0, 0))
        });
    }
    if let Some(total) = r.memory_total_bytes {
        let _ = write!(out, "<tr><td>{}</td><td colspan=\"5\">{}</td></tr>", p.t(Msg::MemorySize), bytes(total));
    }
    out.push_str("</table>");
    if r.disks.is_empty() {
        let _ = write!(out, "<p>{}</p>", p.t(Msg::NoDisks));
        return;
    }
    out.push_str("<table class=\"disks\">");
    heading_row(
        out,
        p,
        &[
            Msg::Mount,
            Msg::Device,
            Msg::Size,
            Msg::UsedAtStart,
            Msg::UsedAtEnd,
            Msg::Growth,
            Msg::PerDay,
            Msg::DaysUntilFull,
        ],
    );
    for d in &r.disks {
        let _ = write!(
            out,
            "<tr class=\"disk\" data-mount=\"{mount}\"><td>{mount}</td><td>{device}</td><td>{size}</td>\
             <td title=\"{start_at}\">{start}</td><td title=\"{end_at}\">{end}</td><td>{growth}</td><td>{per_day}</td>\
             <td class=\"days-until-full\">{days}</td></tr>",
            mount = html_escape(&d.mountpoint),
            device = html_escape(&d.device),
            size = bytes(d.size_bytes),
            start_at = p.time(d.start_ms),
            start = bytes(d.used_start_bytes),
            end_at = p.time(d.end_ms),
            end = bytes(d.used_end_bytes),
            growth = bytes(d.growth_bytes),
            per_day = d.growth_bytes_per_day.map_or_else(|| "—".to_owned(), bytes),
            days = match (d.forecast, d.days_until_full) {
                (crate::resources::Forecast::Growing, Some(days)) => p.number(days, 0),
                (crate::resources::Forecast::Growing, None) => "—".to_owned(),
                (crate::resources::Forecast::NotGrowing, _) => p.t(Msg::NotGrowing).to_owned(),
                (crate::resources::Forecast::Full, _) => p.t(Msg::DiskFull).to_owned(),
                (crate::resources::Forecast::TooLittleData, _) => p.t(Msg::TooLittleData).to_owned(),
            },
        );
    }
    out.push_str("</table>");
}

/// One host's line on the status page.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Host.
    pub host: String,
    /// Whether its agent reports now.
    pub up: bool,
    /// When its last batch arrived, unix ms.
    pub last_seen_ms: Option<Ms>,
    /// When it was enrolled, unix ms (windows start no earlier).
    pub enrolled_ms: Ms,
    /// The signal the percentages are for (`portal`, `agent`).
    pub signal: String,
    /// Its probe URL (empty for the agent).
    pub signal_target: String,
    /// The host's availability target.
    pub target: f64,
    /// Availability of the SLA signal over 1d, 7d, 30d and the current month.
    pub availability: [Option<f64>; 4],
    /// Open incidents.
    pub open: Vec<IncidentRow>,
}

/// The status page for people: hosts, state, uptime per window, open incidents.
///
/// # Errors
/// SQLite errors.
pub fn status_rows(uptime: &Uptime, agents_up: &dyn Fn(&str) -> bool, now: Ms) -> Result<Vec<StatusRow>, Error> {
    status_rows_of(uptime, agents_up, &|_| true, now)
}

/// [`status_rows`] of the hosts `keep` accepts (a client link's page: its client's hosts).
///
/// # Errors
/// SQLite errors.
pub fn status_rows_of(
    uptime: &Uptime,
    agents_up: &dyn Fn(&str) -> bool,
    keep: &dyn Fn(&str) -> bool,
    now: Ms,
) -> Result<Vec<StatusRow>, Error> {
    const DAY: Ms = 86_400_000;
    let mut rows = Vec::new();
    for agent in uptime.reader().agents()?.into_iter().filter(|a| a.revoked_ms.is_none() && keep(&a.id)) {
        let host = agent.id;
        let mut availability = [None; 4];
        let contract = uptime.cfg.contract_targets.get(&host).map(String::as_str);
        let (mut signal, mut signal_target) = match contract {
            Some(url) => ("portal".to_owned(), url.to_owned()),
            None => ("agent".to_owned(), String::new()),
        };
        for (idx, from) in [now - DAY, now - 7 * DAY, now - 30 * DAY, uptime.month_start(now)].into_iter().enumerate() {
            // Time before the host was enrolled is not part of its figures.
            let from = from.max(agent.created_ms).min(now);
            let signals = uptime.host_uptime(&host, from, now, now, false)?;
            if let Some(judged) = judged(&signals, contract) {
                availability[idx] = judged.availability;
                if idx == 2 {
                    (signal, signal_target) = (judged.signal.clone(), judged.target.clone());
                }
            }
        }
        let open = uptime.open_incidents(&host, now)?;
        rows.push(StatusRow {
            up: agents_up(&host),
            last_seen_ms: agent.last_seen_ms,
            enrolled_ms: agent.created_ms,
            target: uptime.cfg.target_of(&host),
            signal,
            signal_target,
            host,
            availability,
            open,
        });
    }
    Ok(rows)
}

/// Renders the status page.
pub fn status_html(
    rows: &[StatusRow],
    remote_write: &[std::sync::Arc<crate::metrics::RemoteWriteStats>],
    now: Ms,
    p: &Page,
) -> String {
    status_html_with(rows, remote_write, now, p, &StatusView::default())
}

/// How the status page is shown: to the collector's users (with the forms of `crate::forms`
/// for an operator), or read-only through a client link (`crate::client_link`).
#[derive(Default)]
pub struct StatusView<'a> {
    /// Prefix of the page's own links: empty on the collector, `/c/<token>` through a client link.
    pub base: &'a str,
    /// Through a client link: no links to the operators' API, no remote-write state.
    pub client_link: bool,
    /// HTML placed above the hosts table (a notice, who is signed in, actions).
    pub top: String,
    /// HTML after each open incident (its acknowledge form), or nothing.
    pub incident_actions: Option<&'a dyn Fn(&IncidentRow) -> String>,
}

/// Renders the status page as `view` says.
pub fn status_html_with(
    rows: &[StatusRow],
    remote_write: &[std::sync::Arc<crate::metrics::RemoteWriteStats>],
    now: Ms,
    p: &Page,
    view: &StatusView<'_>,
) -> String {
    const MONTH: Ms = 30 * 86_400_000;
    let base = html_escape(view.base);
    let mut out = String::new();
    head(&mut out, p, p.t(Msg::StatusTitle), true);
    out.push_str(&view.top);
    let tz = p.tz.iana_name().unwrap_or("UTC");
    let _ =
        write!(out, "<p>{} {}</p><table id=\"hosts\">", p.f(Msg::TimesIn, &[&html_escape(tz)]), p.t(Msg::ColoursNote));
    heading_row(
        &mut out,
        p,
        &[
            Msg::Host,
            Msg::State,
            Msg::LastSeen,
            Msg::Signal,
            Msg::Target,
            Msg::Day1,
            Msg::Days7,
            Msg::Days30,
            Msg::ThisMonth,
            Msg::OpenIncidents,
        ],
    );
    let lang = p.lang.code();
    for r in rows {
        let open = if r.open.is_empty() {
            p.t(Msg::NoneOpen).to_owned()
        } else {
            r.open
                .iter()
                .map(|i| {
                    format!(
                        "{}: {} {} ({}, {}){}",
                        p.severity(i.severity),
                        html_escape(&p.check(&i.check)),
                        html_escape(&i.target),
                        html_escape(&p.reason(&i.reason)),
                        p.duration(i.duration_ms),
                        view.incident_actions.map_or_else(String::new, |actions| actions(i)),
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let since = if now - r.enrolled_ms < MONTH {
            format!(
                "<br><span class=\"detail monitored\">{}</span>",
                p.f(Msg::MonitoredSince, &[&p.time(r.enrolled_ms)])
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr class=\"host\" data-host=\"{host}\" data-signal=\"{signal_id}\"><td><a href=\"{base}/reports/sla?host={host}&amp;format=html&amp;lang={lang}\">{host}</a>{since}</td>\
             <td class=\"{class}\">{state}</td><td class=\"last-seen\">{seen}</td><td>{signal}</td><td>{target}</td>",
            host = html_escape(&r.host),
            signal_id = html_escape(&r.signal),
            class = if r.up { "ok" } else { "bad" },
            state = p.t(if r.up { Msg::Reporting } else { Msg::NotReporting }),
            seen = r.last_seen_ms.map_or_else(|| p.t(Msg::Never).to_owned(), |ms| p.time(ms)),
            signal = html_escape(&p.signal(&r.signal, &r.signal_target)),
            target = p.percent(Some(r.target)),
        );
        for ratio in r.availability {
            let _ = write!(out, "<td class=\"{}\">{}</td>", against(ratio, r.target), p.percent(ratio));
        }
        let _ = write!(out, "<td class=\"open\">{open}</td></tr>");
    }
    out.push_str("</table>");
    if view.client_link {
        let _ = writeln!(
            out,
            "<p>{} <a href=\"{base}/reports/sla?format=html&amp;lang={lang}\">{}</a> · \
             <a href=\"{base}/api/v1/hosts\">/api/v1/hosts</a> · <a href=\"{base}/api/v1/incidents\">/api/v1/incidents</a></p>\
             </body></html>",
            p.f(Msg::Updated, &[&p.time(now)]),
            p.t(Msg::MonthlyReport),
        );
        return out;
    }
    remote_write_html(&mut out, remote_write, now, p);
    let _ = writeln!(
        out,
        "<p>{} <a href=\"/reports/sla?format=html&amp;lang={lang}\">{}</a> · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/hosts\">/api/v1/hosts</a> · \
         <a href=\"/api/v1/incidents\">/api/v1/incidents</a> · <a href=\"/api/v1/maintenance\">/api/v1/maintenance</a></p></body></html>",
        p.f(Msg::Updated, &[&p.time(now)]),
        p.t(Msg::MonthlyReport),
    );
    out
}

/// The remote-write targets' state: ok (last request accepted), retrying (with the error),
/// waiting (nothing sent yet); backlog and last success.
fn remote_write_html(
    out: &mut String,
    targets: &[std::sync::Arc<crate::metrics::RemoteWriteStats>],
    now: Ms,
    p: &Page,
) {
    use std::sync::atomic::Ordering;
    if targets.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Remote write</h2><table id=\"remote-write\"><tr><th>Target</th><th>State</th><th>Pending samples</th>\
         <th>Oldest unsent</th><th>Last success</th><th>Sent</th></tr>",
    );
    for t in targets {
        let error = t.last_error();
        let last = t.last_success_ms.load(Ordering::Relaxed);
        let (class, state) = if !error.is_empty() {
            ("bad", format!("retrying: {}", html_escape(&error)))
        } else if last > 0 {
            ("ok", "ok".to_owned())
        } else {
            ("", "waiting".to_owned())
        };
        let oldest = t.oldest_unsent_ms.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "<tr class=\"target\" data-target=\"{name}\"><td title=\"{url}\">{name}</td><td class=\"{class}\">{state}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.pending.load(Ordering::Relaxed),
            if oldest > 0 { p.duration((now - oldest).max(0)) } else { "none".to_owned() },
            if last > 0 { p.time(last) } else { p.t(Msg::Never).to_owned() },
            t.sent.load(Ordering::Relaxed),
            name = html_escape(&t.name),
            url = html_escape(&t.url),
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::{check_message, csv_labels, field};
    use crate::i18n::{Lang, Page};
    use crate::store::query::CheckRow;

    fn check_row(reason: &str, message: &str) -> CheckRow {
        CheckRow {
            check: "portal_probe".into(),
            target: "https://bx.example/".into(),
            status: if reason.is_empty() { "ok" } else { "failed" },
            severity: "critical",
            reason: reason.into(),
            message: message.into(),
            since_ms: 0,
            at_ms: 0,
        }
    }

    /// Issue 19 item 8: reasons and raw OS errors read as sentences, the agent's text stays as a
    /// detail, and nothing in it is markup.
    #[test]
    fn check_messages_are_sentences_with_the_raw_text_as_a_detail() {
        let ru = Page::new(Lang::Ru, jiff::tz::TimeZone::UTC);
        let en = Page::new(Lang::En, jiff::tz::TimeZone::UTC);
        let refused = check_row("down", "HTTP request: tcp connect error: Connection refused (os error 111)");
        assert_eq!(
            check_message(&ru, &refused),
            "недоступен: сервер отклонил подключение (порт никто не слушает)<br><span class=\"detail\">HTTP request: \
             tcp connect error: Connection refused (os error 111)</span>"
        );
        let timeout = check_row("timeout", "no answer within 2s");
        assert_eq!(
            check_message(&en, &timeout),
            "no answer in time<br><span class=\"detail\">no answer within 2s</span>",
            "the same meaning is not said twice"
        );
        let status = check_row("http_status", "HTTP 502 <b>");
        assert!(check_message(&en, &status).ends_with("HTTP 502 &lt;b&gt;</span>"));
        let ok = check_row("", "HTTP 200 in 0.004 s");
        assert_eq!(check_message(&en, &ok), "HTTP 200 in 0.004 s");
        assert_eq!(check_message(&ru, &ok), "<span class=\"detail\">HTTP 200 in 0.004 s</span>");
    }

    #[test]
    fn figure_labels_are_one_plain_csv_cell() {
        assert_eq!(csv_labels(r#"kind="bitrix",site="default""#), "kind=bitrix;site=default");
        assert_eq!(csv_labels(r#"site="a,b",table="x\"y""#), r#"site=a,b;table=x"y"#);
        assert_eq!(field(&csv_labels(r#"site="a,b""#)), "\"site=a,b\"");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_text() {
        assert_eq!(field("=HYPERLINK(\"http://x\",\"y\")"), "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"");
        for cell in ["+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"] {
            assert!(field(cell).starts_with("\"'"), "{cell:?} -> {}", field(cell));
        }
        assert_eq!(field("https://bx.example/"), "https://bx.example/");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("a\rb"), "\"a\rb\"");
    }
}
