//! The monthly SLA report (HTML for people, CSV and JSON for machines) and the status page.
//! Server-rendered, no scripts, no front-end build.

use std::fmt::Write as _;

use serde::Serialize;

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
    /// The signal the SLA is judged on: the portal probe when the host has one, else the agent.
    pub sla_signal: String,
    /// Availability of that signal; null when nothing was counted.
    pub availability: Option<f64>,
    /// Target.
    pub target: f64,
    /// availability >= target (null when unknown).
    pub met: Option<bool>,
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
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `YYYY-MM`.
    pub month: String,
    /// Time zone of the month.
    pub timezone: String,
    /// Start, unix ms.
    pub from_ms: Ms,
    /// End, unix ms (the month's end, or now for the current month).
    pub to_ms: Ms,
    /// When it was made.
    pub generated_ms: Ms,
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
    let (from, month_end) = uptime.month_bounds(month)?;
    let to = month_end.min(now.max(from));
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
        let mut report = host_report(uptime, &agent.id, from, to, now).map_err(|e| e.to_string())?;
        report.enrolled_ms = agent.created_ms;
        report.revoked_ms = agent.revoked_ms;
        out.push(report);
    }
    Ok(Report {
        month: month.to_owned(),
        timezone: uptime.cfg.timezone.iana_name().unwrap_or("UTC").to_owned(),
        from_ms: from,
        to_ms: to,
        generated_ms: now,
        service_hours: uptime.cfg.calendar.as_ref().map(|_| "configured".to_owned()),
        hosts: out,
    })
}

fn host_report(uptime: &Uptime, host: &str, from: Ms, to: Ms, now: Ms) -> Result<HostReport, Error> {
    let signals = uptime.host_uptime(host, from, to, now, false)?;
    let contract = uptime.cfg.contract_targets.get(host).map(String::as_str);
    let (sla_signal, availability, totals) = match judged(&signals, contract) {
        Some(s) => (s.signal.clone(), s.availability, s.summary),
        None if contract.is_some() => ("portal".to_owned(), None, Summary::default()),
        None => ("agent".to_owned(), None, Summary::default()),
    };
    let target = uptime.cfg.target_of(host);
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
            },
        );
    }
    Ok(HostReport {
        host: host.to_owned(),
        enrolled_ms: 0,
        revoked_ms: None,
        sla_signal,
        availability,
        target,
        met: availability.map(|a| a >= target),
        totals,
        signals,
        incidents_by_severity: by_severity,
        incidents,
        critical_log_lines: uptime.reader().critical_log_lines(host, from, to)?,
        checks: uptime.reader().checks(host)?,
        resources: resources::of_host(uptime.reader(), host, from, to)?,
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
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "kind,month,host,signal,target,availability,sla_target,met,up_ms,down_ms,unknown_ms,maintenance_ms,\
         check,severity,reason,start_ms,end_ms,duration_ms,ack_ms,reaction_ms,in_period_ms,id,\
         resource,mountpoint,avg,median,p95,max,hours,start_value,end_value,growth,growth_per_day,days_until_full,forecast\n",
    );
    let opt = |v: Option<Ms>| v.map(|v| v.to_string()).unwrap_or_default();
    for h in &report.hosts {
        for s in &h.signals {
            let _ = writeln!(
                out,
                "uptime,{},{},{},{},{},{},{},{},{},{},{},,,,,,,,,,{RESOURCE_EMPTY}",
                field(&report.month),
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
            );
        }
        for i in &h.incidents {
            let _ = writeln!(
                out,
                "incident,{},{},,{},,,,,,,,{},{},{},{},{},{},{},{},{},{}{RESOURCE_EMPTY}",
                field(&report.month),
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
            );
        }
        resource_rows(&mut out, &report.month, h);
    }
    out
}

/// The resource columns of a row that is not a resource.
const RESOURCE_EMPTY: &str = ",,,,,,,,,,,,,";

/// CSV rows of kind `resource`: one per figure (CPU, load, memory, each mount, each probed URL).
fn resource_rows(out: &mut String, month: &str, h: &HostReport) {
    // Cells by column: kind, month, host, target (3), then the resource columns from 22 on.
    let mut row = |target: &str, resource: [String; 13]| {
        let mut cells = vec![String::new(); 35];
        cells[0] = "resource".to_owned();
        cells[1] = field(month);
        cells[2] = field(&h.host);
        cells[4] = field(target);
        for (cell, value) in cells[22..].iter_mut().zip(resource) {
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

/// Duration as `1d 2h 3m 4s` / `4m 5s`: whole seconds always (milliseconds are dropped).
pub fn human(ms: Ms) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m {sec}s"),
        _ => format!("{d}d {h}h {m}m {sec}s"),
    }
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

fn time(ms: Ms) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A time in the report's time zone, with its offset (`2026-11-01 03:00:00 +03:00`).
pub fn time_in(ms: Ms, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %:z").to_string())
}

/// The stylesheet of every page (inline, so saved reports keep it; the CSP allows it by hash).
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f4f4f4}.bad{color:#b00}.ok{color:#070}\
.unknown{color:#777}h2{margin-top:2em}";

/// The report as an HTML page.
pub fn html(report: &Report) -> String {
    let tz = jiff::tz::TimeZone::get(&report.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let time = |ms: Ms| time_in(ms, &tz);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>SLA report {month}</title>\
         <style>{STYLE}</style></head><body><h1>SLA report {month}</h1>\
         <p>Period {from} to {to} ({tz}). Availability = up / (up + down), time-weighted; time without data \
         (unknown) and maintenance are shown but not counted.</p>\
         <table id=\"summary\"><tr><th>Host</th><th>Signal</th><th>Availability</th><th>Target</th><th>Met</th>\
         <th>Downtime</th><th>Unknown</th><th>Maintenance</th><th>Incidents (critical/high/medium/low)</th>\
         <th>Critical log lines</th></tr>",
        month = html_escape(&report.month),
        from = time(report.from_ms),
        to = time(report.to_ms),
        tz = html_escape(&report.timezone),
    );
    for h in &report.hosts {
        let count = |s: &str| h.incidents_by_severity.get(s).map_or(0, |t| t.count);
        let _ = write!(
            out,
            "<tr class=\"host\" data-host=\"{host}\"><td>{host}</td><td>{signal}</td><td class=\"availability\">{avail}</td>\
             <td>{target:.3} %</td><td class=\"{class}\">{met}</td><td>{down}</td><td>{unknown}</td><td>{maint}</td>\
             <td>{c}/{hi}/{m}/{l}</td><td>{logs}</td></tr>",
            host = html_escape(&h.host),
            signal = html_escape(&h.sla_signal),
            avail = percent(h.availability),
            target = h.target * 100.0,
            class = match h.met {
                Some(true) => "ok",
                Some(false) => "bad",
                None => "unknown",
            },
            met = match h.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "no data",
            },
            down = human(h.totals.down_ms),
            unknown = human(h.totals.unknown_ms),
            maint = human(h.totals.maintenance_ms),
            c = count("critical"),
            hi = count("high"),
            m = count("medium"),
            l = count("low"),
            logs = h.critical_log_lines,
        );
    }
    out.push_str("</table>");
    for h in &report.hosts {
        let _ = write!(
            out,
            "<h2 id=\"host-{0}\">{0}</h2><p class=\"monitored\">Monitored since {1}{2}; judged on the {3} signal.</p>\
             <h3>Signals</h3><table><tr><th>Signal</th><th>Target</th><th>Availability</th><th>Up</th><th>Down</th><th>Unknown</th><th>Maintenance</th></tr>",
            html_escape(&h.host),
            time(h.enrolled_ms),
            h.revoked_ms.map_or_else(String::new, |r| format!(", revoked {}", time(r))),
            html_escape(&h.sla_signal),
        );
        for s in &h.signals {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&s.signal),
                html_escape(&s.target),
                percent(s.availability),
                human(s.summary.up_ms),
                human(s.summary.down_ms),
                human(s.summary.unknown_ms),
                human(s.summary.maintenance_ms)
            );
        }
        out.push_str("</table><h3>Incidents</h3>");
        if h.incidents.is_empty() {
            out.push_str("<p>None.</p>");
        } else {
            out.push_str("<table class=\"incidents\"><tr><th>Severity</th><th>Check</th><th>Target</th><th>Reason</th><th>Start</th><th>End</th><th>Duration</th><th>In this period</th><th>Reaction</th></tr>");
            for i in &h.incidents {
                let _ = write!(
                    out,
                    "<tr class=\"incident {sev}\"><td>{sev}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    html_escape(&i.check),
                    html_escape(&i.target),
                    html_escape(&i.reason),
                    time(i.start_ms),
                    i.end_ms.map_or_else(|| "open".to_owned(), time),
                    human(i.duration_ms),
                    human(i.in_window_ms),
                    i.reaction_ms.map_or_else(|| "not acknowledged".to_owned(), human),
                    sev = i.severity,
                );
            }
            out.push_str("</table>");
        }
        out.push_str("<h3>Preventive checks (latest)</h3>");
        if h.checks.is_empty() {
            out.push_str("<p>No check results.</p>");
        } else {
            out.push_str("<table><tr><th>Check</th><th>Target</th><th>Status</th><th>Severity</th><th>Message</th><th>Since</th></tr>");
            for c in &h.checks {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    html_escape(&c.check),
                    html_escape(&c.target),
                    if c.status == "ok" { "ok" } else { "bad" },
                    c.status,
                    c.severity,
                    html_escape(&c.message),
                    time(c.since_ms)
                );
            }
            out.push_str("</table>");
        }
        resources_html(&mut out, &h.resources, &time);
    }
    let _ = writeln!(out, "<p>Generated {} by b24watch.</p></body></html>", time(report.generated_ms));
    out
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
type StatRow<'a> = (&'a str, Option<Stat>, fn(f64) -> String);

/// The resources section of one host.
fn resources_html(out: &mut String, r: &Resources, time: &dyn Fn(Ms) -> String) {
    out.push_str(
        "<h3>Resources</h3><p>From hourly averages: average, median and 95th percentile (nearest rank) \
         of the hours with data.</p>",
    );
    let rows: Vec<StatRow<'_>> = vec![
        ("CPU busy", r.cpu_usage_ratio, |v| format!("{:.1} %", v * 100.0)),
        ("Load (1 min)", r.load1, |v| format!("{v:.2}")),
        ("Memory used", r.memory_used_bytes, bytes),
        ("Memory used (share)", r.memory_used_ratio, |v| format!("{:.1} %", v * 100.0)),
    ];
    if rows.iter().all(|r| r.1.is_none()) && r.disks.is_empty() && r.response.is_empty() {
        out.push_str("<p class=\"resources\">No resource data in this period.</p>");
        return;
    }
    out.push_str(
        "<table class=\"resources\"><tr><th>Resource</th><th>Average</th><th>Median</th><th>95th percentile</th>\
         <th>Highest hour</th><th>Hours</th></tr>",
    );
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
            Some(s) => stat_row(out, name, s, fmt),
            None => {
                let _ = write!(out, "<tr><td>{name}</td><td colspan=\"5\" class=\"unknown\">no data</td></tr>");
            }
        }
    }
    for p in &r.response {
        stat_row(out, &format!("Response time {}", p.target), &p.seconds, &|v| format!("{:.0} ms", v * 1000.0));
    }
    if let Some(total) = r.memory_total_bytes {
        let _ = write!(out, "<tr><td>Memory size</td><td colspan=\"5\">{}</td></tr>", bytes(total));
    }
    out.push_str("</table>");
    if r.disks.is_empty() {
        out.push_str("<p>No disk data in this period.</p>");
        return;
    }
    out.push_str(
        "<table class=\"disks\"><tr><th>Mount</th><th>Device</th><th>Size</th><th>Used at start</th><th>Used at end</th>\
         <th>Growth</th><th>Per day</th><th>Days until full</th></tr>",
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
            start_at = time(d.start_ms),
            start = bytes(d.used_start_bytes),
            end_at = time(d.end_ms),
            end = bytes(d.used_end_bytes),
            growth = bytes(d.growth_bytes),
            per_day = d.growth_bytes_per_day.map_or_else(|| "—".to_owned(), bytes),
            days = match (d.forecast, d.days_until_full) {
                (crate::resources::Forecast::Growing, Some(days)) => format!("{days:.0}"),
                (f, _) => f.text().to_owned(),
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
    const DAY: Ms = 86_400_000;
    let mut rows = Vec::new();
    for host in uptime.hosts()? {
        let mut availability = [None; 4];
        for (idx, from) in [now - DAY, now - 7 * DAY, now - 30 * DAY, uptime.month_start(now)].into_iter().enumerate() {
            let signals = uptime.host_uptime(&host, from, now, now, false)?;
            let contract = uptime.cfg.contract_targets.get(&host).map(String::as_str);
            availability[idx] = judged(&signals, contract).and_then(|s| s.availability);
        }
        let open = uptime.open_incidents(&host, now)?;
        rows.push(StatusRow { up: agents_up(&host), host, availability, open });
    }
    Ok(rows)
}

/// Renders the status page.
pub fn status_html(rows: &[StatusRow], now: Ms) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">\
         <title>b24watch status</title><style>{STYLE}</style></head><body><h1>b24watch status</h1>\
         <table id=\"hosts\"><tr><th>Host</th><th>State</th><th>1 day</th><th>7 days</th><th>30 days</th>\
         <th>This month</th><th>Open incidents</th></tr>"
    );
    for r in rows {
        let open = if r.open.is_empty() {
            "none".to_owned()
        } else {
            r.open
                .iter()
                .map(|i| {
                    format!(
                        "{} {} {} ({})",
                        i.severity,
                        html_escape(&i.check),
                        html_escape(&i.target),
                        human(i.duration_ms)
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            out,
            "<tr class=\"host\" data-host=\"{host}\"><td><a href=\"/reports/sla?host={host}&amp;format=html\">{host}</a></td>\
             <td class=\"{class}\">{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"open\">{open}</td></tr>",
            percent(r.availability[0]),
            percent(r.availability[1]),
            percent(r.availability[2]),
            percent(r.availability[3]),
            host = html_escape(&r.host),
            class = if r.up { "ok" } else { "bad" },
            state = if r.up { "up" } else { "not reporting" },
        );
    }
    let _ = writeln!(
        out,
        "</table><p>Updated {}. <a href=\"/reports/sla?format=html\">Monthly SLA report</a> · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/hosts\">/api/v1/hosts</a> · \
         <a href=\"/api/v1/incidents\">/api/v1/incidents</a> · <a href=\"/api/v1/maintenance\">/api/v1/maintenance</a></p></body></html>",
        time(now)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::field;

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
