//! Uptime, incidents and reports over the stored evidence: the database side of [`crate::sla`].
//!
//! Reads go through the shared [`Reader`] and feed the pure SLA code; nothing here writes (the
//! collector's run record, maintenance windows and acknowledgements are written by
//! [`crate::store::admin`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::SlaConfig;
use crate::sla::{self, Ms, Span, State, Summary};
use crate::store::Error;
use crate::store::query::{MaintenanceRow, Reader, severity_name};

const DAY: Ms = 86_400_000;

/// A collector run whose last heartbeat is older than this is not running (heartbeats come
/// every 10 s): the time since that heartbeat is collector downtime, unknown for the SLA.
pub const RUN_STALE_MS: Ms = 60_000;

/// The id of an incident: a hash of what identifies it (host, check, target, start).
pub fn incident_id(host: &str, check: &str, target: &str, start_ms: Ms) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for part in [host, check, target, &start_ms.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What an acknowledgement names: an incident id, or (older clients) the incident's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentRef {
    /// An id from the incidents API.
    Id(String),
    /// Host, check, target and the incident's true start.
    Key {
        /// Host.
        host: String,
        /// Check.
        check: String,
        /// Target.
        target: String,
        /// Start, unix ms.
        start_ms: Ms,
    },
}

/// Uptime of one signal of one host over a window.
#[derive(Debug, Clone, Serialize)]
pub struct SignalUptime {
    /// `agent`, `portal` or `mysql`.
    pub signal: String,
    /// Probe URL for `portal`; empty otherwise.
    pub target: String,
    /// Time per state within the window (service hours only, when configured).
    #[serde(flatten)]
    pub summary: Summary,
    /// up / (up + down); `null` when nothing counted.
    pub availability: Option<f64>,
    /// The timeline (all time, not only service hours), when asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Span>,
}

/// An incident with its acknowledgement. Its start, end and duration are the incident's own,
/// whatever window it was asked for in; `in_window_ms` is the part inside that window (what
/// a report's totals sum).
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    /// Stable id (host, check, target and start): what `POST /api/v1/incidents/ack` takes.
    pub id: String,
    /// Host.
    pub host: String,
    /// Check (`portal_probe`, `mysql_up`, `bitrix_cron`, ...; `agent` for a silent agent).
    pub check: String,
    /// Target of the check.
    pub target: String,
    /// critical, high, medium or low.
    pub severity: &'static str,
    /// Reason of the first failure.
    pub reason: String,
    /// Start, unix ms.
    pub start_ms: Ms,
    /// End, unix ms; null while open.
    pub end_ms: Option<Ms>,
    /// Duration (to the end, or so far while open), ms.
    pub duration_ms: Ms,
    /// The part of the duration inside the window asked for, ms.
    pub in_window_ms: Ms,
    /// When it was acknowledged, unix ms.
    pub ack_ms: Option<Ms>,
    /// Who acknowledged it.
    pub ack_by: Option<String>,
    /// ack − start, ms.
    pub reaction_ms: Option<Ms>,
    /// Priority: from the check's severity ([`crate::contract::Priority::from_severity`]), or as
    /// opened by hand.
    pub priority: crate::contract::Priority,
    /// Who opened it by hand (check `manual`); null for one opened by a check or a silent agent.
    pub opened_by: Option<String>,
    /// Who resolved it by hand.
    pub resolved_by: Option<String>,
    /// Client of the host; null when it has none.
    pub client: Option<String>,
    /// Reaction and resolution in the contract's support hours against its targets; null when
    /// the host has no client.
    pub clock: Option<crate::incident::Clock>,
}

/// Inputs every host's computation shares.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// When the collector was not running.
    pub collector_down: Vec<(Ms, Ms)>,
    /// Maintenance windows (config and API).
    pub maintenance: Vec<MaintenanceRow>,
}

/// The uptime service of a running collector (or of the `report` command).
#[derive(Debug)]
pub struct Uptime {
    /// SLA settings.
    pub cfg: SlaConfig,
    reader: Arc<Reader>,
    metrics: Mutex<String>,
}

impl Uptime {
    /// The service over `reader`.
    pub fn new(cfg: SlaConfig, reader: Arc<Reader>) -> Self {
        Uptime { cfg, reader, metrics: Mutex::new(String::new()) }
    }

    /// Every maintenance window (config and API) overlapping `[from, to)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn maintenance_windows(&self, from: Ms, to: Ms) -> Result<Vec<MaintenanceRow>, Error> {
        let mut rows: Vec<MaintenanceRow> = self
            .cfg
            .maintenance
            .iter()
            .filter(|(_, a, b, _)| *b > from && *a < to)
            .map(|(host, a, b, reason)| MaintenanceRow {
                id: 0,
                host: host.clone(),
                from_ms: *a,
                to_ms: *b,
                reason: reason.clone(),
                source: "config",
                declared_by: String::new(),
            })
            .collect();
        rows.extend(self.reader.maintenance(from, to)?);
        Ok(rows)
    }

    /// What every host's computation over `[from, to)` shares: read once per fleet.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn shared(&self, from: Ms, to: Ms, now: Ms) -> Result<Shared, Error> {
        Ok(Shared {
            collector_down: self.reader.collector_down(now, RUN_STALE_MS)?,
            maintenance: self.maintenance_windows(from, to)?,
        })
    }

    /// Uptime of every signal of `host` over `[from, to)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn host_uptime(
        &self,
        host: &str,
        from: Ms,
        to: Ms,
        now: Ms,
        with_timeline: bool,
    ) -> Result<Vec<SignalUptime>, Error> {
        let shared = self.shared(from, to, now)?;
        self.host_uptime_with(&shared, host, from, to, now, with_timeline)
    }

    /// [`Uptime::host_uptime`] with the shared inputs already read.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn host_uptime_with(
        &self,
        shared: &Shared,
        host: &str,
        from: Ms,
        to: Ms,
        now: Ms,
        with_timeline: bool,
    ) -> Result<Vec<SignalUptime>, Error> {
        let by_signal = self.host_evidence(host, from, to, now)?;
        Ok(self.compute(shared, host, by_signal, from, to, now, with_timeline))
    }

    /// The evidence of every signal of `host` from `from` to `now` (past `to`: a silence at the
    /// window's end is judged by its whole length), each led by an empty span at the end of the
    /// newest evidence before `from` (a silence at the window's start likewise).
    fn host_evidence(
        &self,
        host: &str,
        from: Ms,
        to: Ms,
        now: Ms,
    ) -> Result<BTreeMap<(String, String), Vec<Span>>, Error> {
        let (rows, before) = self.reader.window_evidence(host, from, now.max(to))?;
        let mut by_signal: BTreeMap<(String, String), Vec<Span>> = BTreeMap::new();
        for (signal, target, end) in before {
            by_signal.entry((signal, target)).or_default().push(Span { from: end, to: end, state: State::Unknown });
        }
        for (signal, target, span) in rows {
            by_signal.entry((signal, target)).or_default().push(span);
        }
        Ok(by_signal)
    }

    /// The silence rule of a signal. Only the agent's own silence can count as down: what the
    /// agent could not observe (its probes, MySQL) while it was silent is the agent's outage,
    /// not the portal's, so their silences are unknown.
    fn rules_of(&self, signal: &str) -> sla::Rules {
        if signal == "agent" {
            self.cfg.rules
        } else {
            sla::Rules { silence_counts_as: State::Unknown, ..self.cfg.rules }
        }
    }

    /// Uptime of every signal of every host in `hosts` over `[from, to)`, with two scans of the
    /// evidence for the whole fleet.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn fleet_uptime(
        &self,
        hosts: &[String],
        from: Ms,
        to: Ms,
        now: Ms,
    ) -> Result<BTreeMap<String, Vec<SignalUptime>>, Error> {
        let shared = self.shared(from, to, now)?;
        let mut evidence: BTreeMap<String, BTreeMap<(String, String), Vec<Span>>> =
            hosts.iter().map(|h| (h.clone(), BTreeMap::new())).collect();
        for (host, signal, target, spans) in self.reader.evidence_all(from, now.max(to))? {
            if let Some(signals) = evidence.get_mut(&host) {
                signals.insert((signal, target), spans);
            }
        }
        // A silence at the window's start is judged by its whole length: find where it began.
        for (host, signals) in &mut evidence {
            signals.entry(("agent".into(), String::new())).or_default();
            for ((signal, target), spans) in signals.iter_mut() {
                if spans.first().is_none_or(|s| s.from > from)
                    && let Some(end) = self.reader.last_end_before(host, signal, target, from)?
                {
                    spans.insert(0, Span { from: end, to: end, state: State::Unknown });
                }
            }
        }
        Ok(evidence
            .into_iter()
            .map(|(host, signals)| {
                let computed = self.compute(&shared, &host, signals, from, to, now, false);
                (host, computed)
            })
            .collect())
    }

    /// The maintenance windows that apply to `host`, normalized.
    fn maintenance_of(&self, shared: &Shared, host: &str) -> Vec<(Ms, Ms)> {
        sla::normalize(
            shared
                .maintenance
                .iter()
                .filter(|m| m.host.is_empty() || m.host == host)
                .map(|m| (m.from_ms, m.to_ms))
                .collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn compute(
        &self,
        shared: &Shared,
        host: &str,
        mut by_signal: BTreeMap<(String, String), Vec<Span>>,
        from: Ms,
        to: Ms,
        now: Ms,
        with_timeline: bool,
    ) -> Vec<SignalUptime> {
        by_signal.entry(("agent".into(), String::new())).or_default();
        let maintenance = self.maintenance_of(shared, host);
        let hours = self.cfg.calendar.as_ref().map(|cal| cal.intervals(from, to));
        let mut out = Vec::new();
        for ((signal, target), evidence) in by_signal {
            let inputs = sla::Inputs {
                evidence: &evidence,
                collector_down: &shared.collector_down,
                maintenance: &maintenance,
                rules: self.rules_of(&signal),
                now,
            };
            let spans = sla::timeline(&inputs, from, to);
            let summary = sla::summarize(&spans, hours.as_deref());
            out.push(SignalUptime {
                signal,
                target,
                availability: summary.ratio(),
                summary,
                timeline: if with_timeline { spans } else { Vec::new() },
            });
        }
        out
    }

    /// Incidents of `host` overlapping `[from, to)`, oldest first, each with its true start,
    /// end (`None`: still open at `now`) and duration, and the part inside the window.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn incidents(&self, host: &str, from: Ms, to: Ms, now: Ms) -> Result<Vec<IncidentRow>, Error> {
        self.incidents_reading(host, from, to, now, from)
    }

    /// Incidents of `host` still open at `now` (those of the last 30 days' timeline for a silent
    /// agent); reads only the check runs in progress, not the window's history.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_incidents(&self, host: &str, now: Ms) -> Result<Vec<IncidentRow>, Error> {
        let mut open = self.incidents_reading(host, now.saturating_sub(30 * DAY), now, now, now)?;
        open.retain(|i| i.end_ms.is_none());
        Ok(open)
    }

    /// Incidents overlapping `[from, to)`, with check history read from `history_from`.
    fn incidents_reading(
        &self,
        host: &str,
        from: Ms,
        to: Ms,
        now: Ms,
        history_from: Ms,
    ) -> Result<Vec<IncidentRow>, Error> {
        // The window, the run in progress at its start and the result that ended a run still
        // failing at its end: an incident that ends after `to` ends where it ends.
        let history = self.reader.check_history(host, history_from, to)?;
        let acks = self.reader.acks(host)?;
        let mut found: Vec<sla::Incident> = Vec::new();
        let mut start = 0;
        while start < history.len() {
            let key = (&history[start].0, &history[start].1);
            let end = start + history[start..].iter().take_while(|r| (&r.0, &r.1) == key).count();
            let results: Vec<(Ms, Option<bool>, i32, String)> =
                history[start..end].iter().filter(|r| r.2 <= now).map(|r| (r.2, r.3, r.4, r.5.clone())).collect();
            found.extend(sla::incidents_of(host, key.0, key.1, &results));
            start = end;
        }
        // A silent agent counted as down is an incident of its own: one per silence, whole.
        let shared = self.shared(from, to, now)?;
        let maintenance = self.maintenance_of(&shared, host);
        let evidence = self.host_evidence(host, from, to, now)?.remove(&("agent".to_owned(), String::new()));
        let inputs = sla::Inputs {
            evidence: evidence.as_deref().unwrap_or_default(),
            collector_down: &shared.collector_down,
            maintenance: &maintenance,
            rules: self.rules_of("agent"),
            now,
        };
        for (start_ms, end_ms) in sla::down_silences(&inputs, from, to) {
            found.push(sla::Incident {
                host: host.to_owned(),
                check: "agent".into(),
                target: String::new(),
                severity: 3,
                reason: "silent".into(),
                start_ms,
                end_ms,
            });
        }
        // Opened by hand: check `manual`, the id as target.
        let manual = self.reader.manual_incidents(host, from, to)?;
        for m in &manual {
            let priority = crate::contract::Priority::parse(&m.priority).unwrap_or(crate::contract::Priority::Low);
            found.push(sla::Incident {
                host: host.to_owned(),
                check: "manual".into(),
                target: m.id.to_string(),
                severity: crate::incident::severity_of(priority),
                reason: m.title.clone(),
                start_ms: m.opened_ms,
                end_ms: m.resolved_ms.filter(|r| *r <= now),
            });
        }
        let client = self.client_of_host(host)?;
        let mut out: Vec<IncidentRow> = found
            .into_iter()
            .filter(|i| i.start_ms < to && i.end_ms.is_none_or(|e| e > from))
            .map(|i| {
                let ack = acks.get(&(i.check.clone(), i.target.clone(), i.start_ms));
                let end = i.end_ms.unwrap_or(now);
                let priority = crate::contract::Priority::from_severity(i.severity);
                let by_hand =
                    (i.check == "manual").then(|| manual.iter().find(|m| m.id.to_string() == i.target)).flatten();
                IncidentRow {
                    priority,
                    opened_by: by_hand.map(|m| m.opened_by.clone()),
                    resolved_by: by_hand.and_then(|m| m.resolved_by.clone()),
                    client: client.map(|c| c.name.clone()),
                    clock: client.map(|c| {
                        crate::incident::clock(&c.contract, priority, i.start_ms, ack.map(|a| a.0), i.end_ms, now)
                    }),
                    id: incident_id(&i.host, &i.check, &i.target, i.start_ms),
                    duration_ms: end.saturating_sub(i.start_ms),
                    in_window_ms: end.min(to).saturating_sub(i.start_ms.max(from)).max(0),
                    ack_ms: ack.map(|a| a.0),
                    ack_by: ack.map(|a| a.1.clone()),
                    reaction_ms: ack.map(|a| a.0.saturating_sub(i.start_ms)),
                    severity: severity_name(i.severity),
                    host: i.host,
                    check: i.check,
                    target: i.target,
                    reason: i.reason,
                    start_ms: i.start_ms,
                    end_ms: i.end_ms,
                }
            })
            .collect();
        out.sort_by_key(|i| (i.start_ms, i.check.clone(), i.target.clone()));
        Ok(out)
    }

    /// The incident an acknowledgement names, if there is one: an id must be one the incidents
    /// API lists; a key must name an incident's true start exactly.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn find_incident(&self, named: &IncidentRef, now: Ms) -> Result<Option<IncidentRow>, Error> {
        match named {
            IncidentRef::Key { host, check, target, start_ms } => {
                if !self.hosts()?.contains(host) {
                    return Ok(None);
                }
                Ok(self
                    .incidents(host, *start_ms, start_ms.saturating_add(1), now)?
                    .into_iter()
                    .find(|i| i.check == *check && i.target == *target && i.start_ms == *start_ms))
            }
            IncidentRef::Id(id) => {
                for host in self.hosts()? {
                    let found = self.incidents(&host, Ms::MIN / 2, now.saturating_add(1), now)?;
                    if let Some(incident) = found.into_iter().find(|i| i.id == *id) {
                        return Ok(Some(incident));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Start of the calendar month containing `now`, in the SLA time zone.
    pub fn month_start(&self, now: Ms) -> Ms {
        jiff::Timestamp::from_millisecond(now)
            .ok()
            .and_then(|t| t.to_zoned(self.cfg.timezone.clone()).first_of_month().ok()?.start_of_day().ok())
            .map_or(now - 30 * DAY, |z| z.timestamp().as_millisecond())
    }

    /// `[from, to)` of a month written `YYYY-MM` (year 1970 to 9999), in the SLA time zone.
    ///
    /// # Errors
    /// A message when the text is not such a month.
    pub fn month_bounds(&self, month: &str) -> Result<(Ms, Ms), String> {
        let refused = || format!("{month:?}: expected a month as YYYY-MM, from 1970-01 to 9999-11");
        let bytes = month.as_bytes();
        let digits = |r: std::ops::Range<usize>| bytes[r].iter().all(u8::is_ascii_digit);
        if !(bytes.len() == 7 && bytes[4] == b'-' && digits(0..4) && digits(5..7)) {
            return Err(refused());
        }
        let (year, number): (u16, u8) =
            (month[..4].parse().map_err(|_| refused())?, month[5..].parse().map_err(|_| refused())?);
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&number) || (year, number) == (9999, 12) {
            return Err(refused());
        }
        let date = jiff::civil::Date::strptime("%Y-%m-%d", format!("{month}-01"))
            .map_err(|_| format!("{month:?}: expected a month as YYYY-MM"))?;
        let start = date.to_zoned(self.cfg.timezone.clone()).map_err(|e| e.to_string())?;
        let next = start.checked_add(jiff::Span::new().months(1)).map_err(|e| e.to_string())?;
        Ok((start.timestamp().as_millisecond(), next.timestamp().as_millisecond()))
    }

    /// Recomputes `b24watch_uptime_ratio` and `b24watch_incidents_open` for `hosts`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn refresh_metrics(&self, hosts: &[String], now: Ms) -> Result<(), Error> {
        let mut out = String::with_capacity(256 * hosts.len());
        out.push_str(
            "# HELP b24watch_uptime_ratio Time-weighted availability up / (up + down) per host, signal and window; unknown and maintenance time excluded.\n\
             # TYPE b24watch_uptime_ratio gauge\n",
        );
        let windows =
            [("1d", now - DAY), ("7d", now - 7 * DAY), ("30d", now - 30 * DAY), ("month", self.month_start(now))];
        let mut open: Vec<(String, &'static str, usize)> = Vec::new();
        // Downtime as a duration: what budget alerts compare with the contract's allowance, so a
        // short outage on a young install is not read as a burn rate.
        let mut down = String::from(
            "# HELP b24watch_uptime_down_seconds Downtime per host, signal and window (maintenance excluded), seconds.\n\
             # TYPE b24watch_uptime_down_seconds gauge\n",
        );
        let mut by_window = Vec::new();
        for (window, from) in windows {
            by_window.push((window, self.fleet_uptime(hosts, from, now, now)?));
        }
        for host in hosts {
            for (window, fleet) in &by_window {
                for s in fleet.get(host).into_iter().flatten() {
                    let _ = writeln!(
                        down,
                        "b24watch_uptime_down_seconds{{host=\"{}\",signal=\"{}\",target=\"{}\",window=\"{window}\"}} {}",
                        escape(host),
                        escape(&s.signal),
                        escape(&s.target),
                        s.summary.down_ms as f64 / 1000.0
                    );
                    if let Some(ratio) = s.availability {
                        let _ = writeln!(
                            out,
                            "b24watch_uptime_ratio{{host=\"{}\",signal=\"{}\",target=\"{}\",window=\"{window}\"}} {ratio}",
                            escape(host),
                            escape(&s.signal),
                            escape(&s.target)
                        );
                    }
                }
            }
            let incidents = self.open_incidents(host, now)?;
            for severity in ["critical", "high", "medium", "low"] {
                let n = incidents.iter().filter(|i| i.severity == severity).count();
                open.push((host.clone(), severity, n));
            }
        }
        out.push_str(&down);
        out.push_str("# HELP b24watch_sla_target_ratio Availability target of the host ([sla] target or targets).\n# TYPE b24watch_sla_target_ratio gauge\n");
        for host in hosts {
            let _ =
                writeln!(out, "b24watch_sla_target_ratio{{host=\"{}\"}} {}", escape(host), self.cfg.target_of(host));
        }
        out.push_str("# HELP b24watch_incidents_open Incidents not yet over, by host and severity.\n# TYPE b24watch_incidents_open gauge\n");
        for (host, severity, n) in open {
            let _ = writeln!(out, "b24watch_incidents_open{{host=\"{}\",severity=\"{severity}\"}} {n}", escape(&host));
        }
        contract_metrics(self, hosts, now, &mut out)?;
        *self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = out;
        Ok(())
    }

    /// Appends the last computed uptime metrics.
    pub fn render(&self, out: &mut String) {
        out.push_str(&self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Hosts known to the collector (enrolled, not revoked).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn hosts(&self) -> Result<Vec<String>, Error> {
        Ok(self.reader.agents()?.into_iter().filter(|a| a.revoked_ms.is_none()).map(|a| a.id).collect())
    }

    /// The service over the same store with other SLA settings (a client's contract).
    pub fn with_config(&self, cfg: SlaConfig) -> Uptime {
        Uptime::new(cfg, Arc::clone(&self.reader))
    }

    /// The reader.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}

impl Uptime {
    /// Host → client of every host that has one: the config's `[[client]]` lists, then the
    /// client recorded at enrolment for enrolled, unrevoked hosts no client lists.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn client_assignment(&self) -> Result<BTreeMap<String, String>, Error> {
        let agents = self.reader().agents()?;
        Ok(self
            .cfg
            .contracts
            .assign(agents.iter().filter(|a| a.revoked_ms.is_none()).map(|a| (a.id.as_str(), a.client.as_deref()))))
    }

    /// The client of `host`, if it has one.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn client_of_host(&self, host: &str) -> Result<Option<&crate::contract::Client>, Error> {
        Ok(self.client_assignment()?.get(host).and_then(|name| self.cfg.contracts.client(name)))
    }

    /// The hosts of `client`, sorted; `None` for a client not configured.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn hosts_of_client(&self, client: &str) -> Result<Option<Vec<String>>, Error> {
        if self.cfg.contracts.client(client).is_none() {
            return Ok(None);
        }
        Ok(Some(crate::contract::Contracts::hosts_of(&self.client_assignment()?, client)))
    }

    /// Every configured client with its hosts and contract, by name.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn client_views(&self) -> Result<Vec<crate::contract::ClientView>, Error> {
        let assignment = self.client_assignment()?;
        Ok(self
            .cfg
            .contracts
            .clients
            .values()
            .map(|c| crate::contract::ClientView {
                name: c.name.clone(),
                hosts: crate::contract::Contracts::hosts_of(&assignment, &c.name),
                contract: c.contract.view(),
            })
            .collect())
    }
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
fn contract_metrics(uptime: &Uptime, hosts: &[String], now: Ms, out: &mut String) -> Result<(), Error> {
    let assignment = uptime.client_assignment()?;
    let mut rows: Vec<(String, String, crate::contract::Priority, Pending)> = Vec::new();
    for host in hosts {
        let Some(client) = assignment.get(host).and_then(|c| uptime.cfg.contracts.client(c)) else { continue };
        let from = crate::incident::month_start(now, &client.contract.timezone);
        let incidents = uptime.incidents(host, from, now.max(from + 1), now)?;
        let mut per: BTreeMap<crate::contract::Priority, Pending> =
            crate::contract::Priority::ALL.iter().map(|p| (*p, Pending::default())).collect();
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
    let series: [(&str, &str, Value); 4] = [
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

/// The value one series takes from a host's and priority's figures (`None`: no sample).
type Value = fn(&Pending) -> Option<f64>;

fn min_some(a: Option<Ms>, b: Option<Ms>) -> Option<Ms> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Escapes a label value for the exposition format.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
