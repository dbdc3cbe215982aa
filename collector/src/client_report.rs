//! The monthly report of one client against its contract (HTML for people, print-friendly on
//! A4; CSV; JSON) and the fleet summary for the contractor: one row per client.
//!
//! The pages share the report's stylesheet ([`crate::report::STYLE`], the one the
//! Content-Security-Policy allows by hash), which prints on A4.
//!
//! A client's report is the SLA report of its hosts computed with its contract (target, service
//! hours, time zone), plus incidents by priority with reaction and resolution times in support
//! hours against the targets, breaches counted, and the maintenance windows of its hosts. The
//! host sections (incidents, error log, preventive checks, resources) are those of
//! [`crate::report`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::contract::{ContractView, Priority};
use crate::i18n::{Lang, Msg, Page};
use crate::report::{HostReport, Period, against, field, foot, heading_row, html_escape};
use crate::sla::Ms;
use crate::store::query::MaintenanceRow;
use crate::uptime::{IncidentRow, Uptime};

/// Incidents of one priority in the month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriorityRow {
    /// critical, high, medium or low.
    pub priority: &'static str,
    /// Incidents overlapping the month.
    pub incidents: usize,
    /// Acknowledged ones.
    pub acknowledged: usize,
    /// Still open at the report's end.
    pub open: usize,
    /// Reaction target, support ms.
    pub reaction_target_ms: Ms,
    /// Resolution target, support ms.
    pub resolution_target_ms: Ms,
    /// Longest reaction, support ms (running ones so far).
    pub worst_reaction_ms: Option<Ms>,
    /// Longest resolution, support ms (open ones so far).
    pub worst_resolution_ms: Option<Ms>,
    /// Incidents whose reaction target is breached.
    pub reaction_breached: usize,
    /// Incidents whose resolution target is breached.
    pub resolution_breached: usize,
}

/// A client's month against its contract in figures: its report's summary and its row of the
/// fleet summary (its fields are theirs in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Availability over every host: Σ up / Σ (up + down) of the signals the SLA is judged on.
    pub availability: Option<f64>,
    /// The contract's target.
    pub target: f64,
    /// availability >= target (null when unknown).
    pub met: Option<bool>,
    /// Incidents whose reaction target is breached.
    pub reaction_breaches: usize,
    /// Incidents whose resolution target is breached.
    pub resolution_breaches: usize,
    /// Incidents still open at the report's end.
    pub open_incidents: usize,
}

/// One client's month.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// Client.
    pub client: String,
    /// Its contract.
    pub contract: ContractView,
    /// The month, in the contract's time zone.
    #[serde(flatten)]
    pub period: Period,
    /// Its figures.
    #[serde(flatten)]
    pub totals: Totals,
    /// Per priority, critical first.
    pub by_priority: Vec<PriorityRow>,
    /// Every incident of its hosts, by start.
    pub incidents: Vec<IncidentRow>,
    /// Maintenance windows of its hosts (and those for all hosts) overlapping the month.
    pub maintenance: Vec<MaintenanceRow>,
    /// Hosts of the client not monitored in the month (not enrolled, or revoked before it).
    pub not_monitored: Vec<String>,
    /// The host sections.
    pub hosts: Vec<HostReport>,
}

/// Builds `client`'s report of `month`.
///
/// # Errors
/// `Err(message)` for an unknown client or a bad month; SQLite errors as text.
pub fn build(uptime: &Uptime, client: &str, month: &str, now: Ms) -> Result<ClientReport, String> {
    let Some(c) = uptime.cfg.contracts.client(client) else {
        let known: Vec<&str> = uptime.cfg.contracts.clients.keys().map(String::as_str).collect();
        return Err(format!("unknown client {client:?}; configured: {known:?}"));
    };
    let hosts = uptime.hosts_of_client(client).map_err(|e| e.to_string())?.unwrap_or_default();
    let contract = &c.contract;
    let service = uptime.with_config(on_contract(&uptime.cfg, contract, &hosts));
    let period = Period::of_month(&service, month, contract.timezone_name.clone(), now)?;
    let (from, to) = (period.from_ms, period.to_ms);
    let mut reports = Vec::new();
    let mut not_monitored = Vec::new();
    for host in &hosts {
        match crate::report::build(&service, month, Some(host), now) {
            Ok(mut r) => reports.append(&mut r.hosts),
            Err(_) => not_monitored.push(host.clone()),
        }
    }
    let (up, down) = reports.iter().fold((0, 0), |(u, d), h| (u + h.totals.up_ms, d + h.totals.down_ms));
    let availability = (up + down > 0).then(|| up as f64 / (up + down) as f64);
    let mut incidents: Vec<IncidentRow> = reports.iter().flat_map(|h| h.incidents.iter().cloned()).collect();
    incidents
        .sort_by(|a, b| (a.start_ms, &a.host, &a.check, &a.target).cmp(&(b.start_ms, &b.host, &b.check, &b.target)));
    let mut by: BTreeMap<Priority, PriorityRow> = Priority::ALL
        .iter()
        .map(|p| {
            (
                *p,
                PriorityRow {
                    priority: p.as_str(),
                    reaction_target_ms: contract.reaction_of(*p) * 1000,
                    resolution_target_ms: contract.resolution_of(*p) * 1000,
                    ..PriorityRow::default()
                },
            )
        })
        .collect();
    for i in &incidents {
        let row = by.entry(i.priority).or_default();
        row.incidents += 1;
        row.acknowledged += usize::from(i.ack_ms.is_some());
        row.open += usize::from(i.end_ms.is_none());
        if let Some(clock) = &i.clock {
            row.worst_reaction_ms = row.worst_reaction_ms.max(Some(clock.reaction_support_ms));
            row.worst_resolution_ms = row.worst_resolution_ms.max(Some(clock.resolution_support_ms));
            row.reaction_breached += usize::from(clock.reaction_breached);
            row.resolution_breached += usize::from(clock.resolution_breached);
        }
    }
    let by_priority: Vec<PriorityRow> = by.into_values().collect();
    let maintenance = service
        .maintenance_windows(from, to.max(from + 1))
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|m| m.host.is_empty() || hosts.contains(&m.host))
        .collect();
    Ok(ClientReport {
        client: client.to_owned(),
        contract: contract.view(),
        period,
        totals: Totals {
            availability,
            target: contract.target,
            met: availability.map(|a| a >= contract.target),
            reaction_breaches: by_priority.iter().map(|p| p.reaction_breached).sum(),
            resolution_breaches: by_priority.iter().map(|p| p.resolution_breached).sum(),
            open_incidents: by_priority.iter().map(|p| p.open).sum(),
        },
        by_priority,
        incidents,
        maintenance,
        not_monitored,
        hosts: reports,
    })
}

/// The SLA settings of `hosts` under `contract`: its target, service hours and time zone.
pub(crate) fn on_contract(
    sla: &crate::config::SlaConfig,
    contract: &crate::contract::Contract,
    hosts: &[String],
) -> crate::config::SlaConfig {
    let mut cfg = sla.clone();
    cfg.target = contract.target;
    cfg.targets = hosts.iter().map(|h| (h.clone(), contract.target)).collect();
    cfg.calendar.clone_from(&contract.calendar);
    cfg.timezone = contract.timezone.clone();
    cfg
}

/// Seconds with up to three decimals (`600`, `600.5`).
fn secs(ms: Ms) -> String {
    let text = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Columns of the report's CSV, in order.
const COLUMNS: [&str; 29] = [
    "kind",
    "client",
    "month",
    "host",
    "priority",
    "id",
    "check",
    "reason",
    "start_ms",
    "end_ms",
    "ack_ms",
    "ack_by",
    "start_at",
    "end_at",
    "ack_at",
    "reaction_s",
    "reaction_target_s",
    "reaction_breached",
    "resolution_s",
    "resolution_target_s",
    "resolution_breached",
    "incidents",
    "acknowledged",
    "open",
    "availability",
    "target",
    "met",
    "source",
    "declared_by",
];

/// One line of CSV: each cell through [`field`].
fn csv_line(out: &mut String, cells: &[String]) {
    out.push_str(&cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
    out.push('\n');
}

/// A row of the report's CSV: its `kind`, the client and the month; every other cell empty
/// until [`Row::set`].
struct Row([String; COLUMNS.len()]);

impl Row {
    fn new(kind: &str, r: &ClientReport) -> Row {
        Row(std::array::from_fn(|_| String::new()))
            .set("kind", kind)
            .set("client", r.client.as_str())
            .set("month", r.period.month.as_str())
    }

    /// The row with `value` in `column`.
    ///
    /// # Panics
    /// When `column` is not one of [`COLUMNS`] (a typo in this file, which the tests would show).
    fn set(mut self, column: &str, value: impl Into<String>) -> Row {
        let idx = COLUMNS.iter().position(|c| *c == column).expect("a column of COLUMNS");
        self.0[idx] = value.into();
        self
    }

    fn write(self, out: &mut String) {
        csv_line(out, &self.0);
    }
}

/// The report as CSV: one `kind` per row: `client` (the totals), `host`, `priority`,
/// `incident`, `maintenance` (with `source` and `declared_by`). Times as unix ms and ISO 8601 in
/// the contract's time zone; support times and targets in seconds.
pub fn csv(r: &ClientReport) -> String {
    let tz = r.period.zone();
    let iso = |v: Ms| crate::i18n::iso(v, &tz);
    let opt = |v: Option<Ms>| v.map(|v| v.to_string()).unwrap_or_default();
    let ratio = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let met = |m: Option<bool>| m.map(|m| m.to_string()).unwrap_or_default();
    let mut out = COLUMNS.join(",");
    out.push('\n');
    let t = &r.totals;
    Row::new("client", r)
        .set("start_ms", r.period.from_ms.to_string())
        .set("end_ms", r.period.to_ms.to_string())
        .set("start_at", r.period.from_iso.as_str())
        .set("end_at", r.period.to_iso.as_str())
        .set("reaction_breached", t.reaction_breaches.to_string())
        .set("resolution_breached", t.resolution_breaches.to_string())
        .set("incidents", r.by_priority.iter().map(|p| p.incidents).sum::<usize>().to_string())
        .set("acknowledged", r.by_priority.iter().map(|p| p.acknowledged).sum::<usize>().to_string())
        .set("open", t.open_incidents.to_string())
        .set("availability", ratio(t.availability))
        .set("target", t.target.to_string())
        .set("met", met(t.met))
        .write(&mut out);
    for h in &r.hosts {
        Row::new("host", r)
            .set("host", h.host.as_str())
            .set("check", h.sla_signal.as_str())
            .set("start_ms", h.monitored_from_ms.to_string())
            .set("end_ms", h.monitored_to_ms.to_string())
            .set("incidents", h.incidents.len().to_string())
            .set("availability", ratio(h.availability))
            .set("target", h.target.to_string())
            .set("met", met(h.met))
            .write(&mut out);
    }
    for p in &r.by_priority {
        Row::new("priority", r)
            .set("priority", p.priority)
            .set("reaction_s", p.worst_reaction_ms.map(secs).unwrap_or_default())
            .set("reaction_target_s", secs(p.reaction_target_ms))
            .set("reaction_breached", p.reaction_breached.to_string())
            .set("resolution_s", p.worst_resolution_ms.map(secs).unwrap_or_default())
            .set("resolution_target_s", secs(p.resolution_target_ms))
            .set("resolution_breached", p.resolution_breached.to_string())
            .set("incidents", p.incidents.to_string())
            .set("acknowledged", p.acknowledged.to_string())
            .set("open", p.open.to_string())
            .write(&mut out);
    }
    for i in &r.incidents {
        let mut row = Row::new("incident", r)
            .set("host", i.host.as_str())
            .set("priority", i.priority.as_str())
            .set("id", i.id.as_str())
            .set("check", i.check.as_str())
            .set("reason", i.reason.as_str())
            .set("start_ms", i.start_ms.to_string())
            .set("end_ms", opt(i.end_ms))
            .set("ack_ms", opt(i.ack_ms))
            .set("ack_by", i.ack_by.clone().unwrap_or_default())
            .set("start_at", iso(i.start_ms))
            .set("end_at", i.end_ms.map(iso).unwrap_or_default())
            .set("ack_at", i.ack_ms.map(iso).unwrap_or_default())
            .set("open", usize::from(i.end_ms.is_none()).to_string());
        if let Some(c) = &i.clock {
            row = row
                .set("reaction_s", secs(c.reaction_support_ms))
                .set("reaction_target_s", secs(c.reaction_target_ms))
                .set("reaction_breached", c.reaction_breached.to_string())
                .set("resolution_s", secs(c.resolution_support_ms))
                .set("resolution_target_s", secs(c.resolution_target_ms))
                .set("resolution_breached", c.resolution_breached.to_string());
        }
        row.write(&mut out);
    }
    for m in &r.maintenance {
        Row::new("maintenance", r)
            .set("host", m.host.as_str())
            .set("id", m.id.to_string())
            .set("reason", m.reason.as_str())
            .set("start_ms", m.from_ms.to_string())
            .set("end_ms", m.to_ms.to_string())
            .set("start_at", iso(m.from_ms))
            .set("end_at", iso(m.to_ms))
            .set("source", m.source)
            .set("declared_by", m.declared_by.as_str())
            .write(&mut out);
    }
    out
}

/// The report as an HTML page in `lang`, for the screen and for print on A4.
pub fn html(r: &ClientReport, lang: Lang) -> String {
    let p = Page::new(lang, r.period.zone());
    let mut out = String::new();
    let title = p.f(Msg::ClientReportTitle, &[&r.client, &crate::i18n::month(lang, &r.period.month)]);
    crate::report::head(&mut out, &p, &title, false);
    let _ = write!(
        out,
        "<p class=\"period\">{} {}</p><p>{}: <b>{}</b>. {}</p>",
        p.f(Msg::Period, &[&p.time(r.period.from_ms), &p.time(r.period.to_ms)]),
        p.f(Msg::TimesIn, &[&html_escape(&r.period.timezone)]),
        p.t(Msg::Plan),
        html_escape(&r.contract.plan),
        p.f(Msg::SupportHoursAre, &[&html_escape(&r.contract.support_hours)]),
    );
    let t = &r.totals;
    let _ = write!(
        out,
        "<table id=\"client-summary\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>\
         <tr><td class=\"availability {class}\">{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        p.t(Msg::Availability),
        p.t(Msg::Target),
        p.t(Msg::Met),
        p.t(Msg::ReactionBreaches),
        p.t(Msg::ResolutionBreaches),
        p.t(Msg::OpenIncidents),
        p.percent(t.availability),
        p.percent(Some(t.target)),
        p.met(t.met),
        t.reaction_breaches,
        t.resolution_breaches,
        t.open_incidents,
        class = against(t.availability, t.target),
    );
    if !r.not_monitored.is_empty() {
        let _ = write!(
            out,
            "<p class=\"detail\">{}</p>",
            p.f(Msg::NotMonitored, &[&html_escape(&r.not_monitored.join(", "))])
        );
    }
    out.push_str("<table id=\"hosts\">");
    heading_row(&mut out, &p, &[Msg::Host, Msg::Signal, Msg::Availability, Msg::Target, Msg::Met, Msg::Downtime]);
    for h in &r.hosts {
        let _ = write!(
            out,
            "<tr class=\"host\" data-host=\"{host}\"><td><a href=\"#host-{host}\">{host}</a></td><td>{signal}</td><td class=\"{class}\">{avail}</td><td>{target}</td><td class=\"{class}\">{met}</td><td>{down}</td></tr>",
            host = html_escape(&h.host),
            signal = html_escape(&p.signal(&h.sla_signal, &h.sla_signal_target)),
            class = against(h.availability, h.target),
            avail = p.percent(h.availability),
            target = p.percent(Some(h.target)),
            met = p.met(h.met),
            down = p.duration(h.totals.down_ms),
        );
    }
    out.push_str("</table>");
    let _ = write!(out, "<h2>{}</h2><table id=\"priorities\">", p.t(Msg::ReactionByPriority));
    heading_row(
        &mut out,
        &p,
        &[
            Msg::Severity,
            Msg::Incidents,
            Msg::Acknowledged,
            Msg::OpenIncidents,
            Msg::ReactionTarget,
            Msg::WorstReaction,
            Msg::ReactionBreaches,
            Msg::ResolutionTarget,
            Msg::WorstResolution,
            Msg::ResolutionBreaches,
        ],
    );
    let dur = |ms: Option<Ms>| ms.map_or_else(|| "—".to_owned(), |ms| p.duration(ms));
    for row in &r.by_priority {
        let _ = write!(
            out,
            "<tr data-priority=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            row.priority,
            p.severity(row.priority),
            row.incidents,
            row.acknowledged,
            row.open,
            p.duration(row.reaction_target_ms),
            dur(row.worst_reaction_ms),
            if row.reaction_breached > 0 { "breached" } else { "ok" },
            row.reaction_breached,
            p.duration(row.resolution_target_ms),
            dur(row.worst_resolution_ms),
            if row.resolution_breached > 0 { "breached" } else { "ok" },
            row.resolution_breached,
        );
    }
    out.push_str("</table>");
    if !r.incidents.is_empty() {
        let _ = write!(out, "<h2>{}</h2><table id=\"incidents\">", p.t(Msg::Incidents));
        heading_row(
            &mut out,
            &p,
            &[
                Msg::Host,
                Msg::Severity,
                Msg::Check,
                Msg::Reason,
                Msg::Start,
                Msg::End,
                Msg::Acknowledged,
                Msg::Reaction,
                Msg::Resolution,
            ],
        );
        for i in &r.incidents {
            let measure = |support: Ms, target: Ms, breached: bool| {
                format!(
                    "<span class=\"{}\">{} / {}{}</span>",
                    if breached { "breached" } else { "ok" },
                    p.duration(support),
                    p.duration(target),
                    if breached { format!(" — {}", p.t(Msg::Breached)) } else { String::new() }
                )
            };
            let (reaction, resolution) = i.clock.as_ref().map_or((String::new(), String::new()), |c| {
                (
                    measure(c.reaction_support_ms, c.reaction_target_ms, c.reaction_breached),
                    measure(c.resolution_support_ms, c.resolution_target_ms, c.resolution_breached),
                )
            });
            let _ = write!(
                out,
                "<tr class=\"incident\" data-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&i.id),
                html_escape(&i.host),
                p.severity(i.priority.as_str()),
                html_escape(&p.check(&i.check)),
                html_escape(&i.reason),
                p.time(i.start_ms),
                i.end_ms.map_or_else(|| p.t(Msg::Open).to_owned(), |e| p.time(e)),
                match (i.ack_ms, &i.ack_by) {
                    (Some(at), by) => format!("{} {}", p.time(at), html_escape(by.as_deref().unwrap_or_default())),
                    (None, _) => p.t(Msg::NotAcknowledged).to_owned(),
                },
                reaction,
                resolution,
            );
        }
        out.push_str("</table>");
    }
    if !r.maintenance.is_empty() {
        let _ = write!(out, "<h2>{}</h2><table id=\"maintenance\">", p.t(Msg::MaintenanceWindows));
        heading_row(&mut out, &p, &[Msg::Host, Msg::Start, Msg::End, Msg::Reason, Msg::DeclaredIn, Msg::DeclaredBy]);
        for m in &r.maintenance {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if m.host.is_empty() { "*".to_owned() } else { html_escape(&m.host) },
                p.time(m.from_ms),
                p.time(m.to_ms),
                html_escape(&m.reason),
                m.source,
                html_escape(&m.declared_by),
            );
        }
        out.push_str("</table>");
    }
    for h in &r.hosts {
        crate::report::host_html(&mut out, &p, h);
    }
    foot(&mut out, &p, r.period.generated_ms);
    out
}

/// One client in the fleet summary.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    /// Client.
    pub client: String,
    /// Plan.
    pub plan: String,
    /// Hosts.
    pub hosts: Vec<String>,
    /// Its figures.
    #[serde(flatten)]
    pub totals: Totals,
}

/// The fleet summary: one row per client.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// `YYYY-MM`.
    pub month: String,
    /// When it was made.
    pub generated_ms: Ms,
    /// Clients by name.
    pub clients: Vec<FleetRow>,
}

/// Builds the fleet summary of `month` (each client's month in its contract's time zone).
///
/// # Errors
/// `Err(message)` for a bad month; SQLite errors as text.
pub fn fleet(uptime: &Uptime, month: &str, now: Ms) -> Result<Fleet, String> {
    uptime.month_bounds(month)?;
    let mut clients = Vec::new();
    for name in uptime.cfg.contracts.clients.keys() {
        let r = build(uptime, name, month, now)?;
        clients.push(FleetRow {
            client: r.client,
            plan: r.contract.plan,
            hosts: r.hosts.iter().map(|h| h.host.clone()).collect(),
            totals: r.totals,
        });
    }
    Ok(Fleet { month: month.to_owned(), generated_ms: now, clients })
}

/// The fleet summary as CSV.
pub fn fleet_csv(f: &Fleet) -> String {
    let mut out = String::from(
        "client,month,plan,hosts,availability,target,met,reaction_breaches,resolution_breaches,open_incidents\n",
    );
    for c in &f.clients {
        let t = &c.totals;
        let cells = [
            c.client.clone(),
            f.month.clone(),
            c.plan.clone(),
            c.hosts.join(" "),
            t.availability.map(|a| a.to_string()).unwrap_or_default(),
            t.target.to_string(),
            t.met.map(|m| m.to_string()).unwrap_or_default(),
            t.reaction_breaches.to_string(),
            t.resolution_breaches.to_string(),
            t.open_incidents.to_string(),
        ];
        csv_line(&mut out, &cells);
    }
    out
}

/// The fleet summary as an HTML page.
pub fn fleet_html(f: &Fleet, lang: Lang, tz: jiff::tz::TimeZone) -> String {
    let p = Page::new(lang, tz);
    let mut out = String::new();
    crate::report::head(&mut out, &p, &p.f(Msg::FleetTitle, &[&crate::i18n::month(lang, &f.month)]), false);
    out.push_str("<table id=\"fleet\">");
    heading_row(
        &mut out,
        &p,
        &[
            Msg::Client,
            Msg::Plan,
            Msg::Hosts,
            Msg::Availability,
            Msg::Target,
            Msg::Met,
            Msg::ReactionBreaches,
            Msg::ResolutionBreaches,
            Msg::OpenIncidents,
        ],
    );
    for c in &f.clients {
        let _ = write!(
            out,
            "<tr class=\"client\" data-client=\"{client}\"><td>{client}</td><td>{plan}</td><td>{hosts}</td><td class=\"{class}\">{avail}</td><td>{target}</td><td class=\"{class}\">{met}</td><td>{rb}</td><td>{sb}</td><td>{open}</td></tr>",
            client = html_escape(&c.client),
            plan = html_escape(&c.plan),
            hosts = html_escape(&c.hosts.join(", ")),
            class = against(c.totals.availability, c.totals.target),
            avail = p.percent(c.totals.availability),
            target = p.percent(Some(c.totals.target)),
            met = p.met(c.totals.met),
            rb = c.totals.reaction_breaches,
            sb = c.totals.resolution_breaches,
            open = c.totals.open_incidents,
        );
    }
    out.push_str("</table>");
    foot(&mut out, &p, f.generated_ms);
    out
}
