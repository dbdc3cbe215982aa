//! Clients and their contracts: named plans (`[[plan]]`) and clients on a plan (`[[client]]`),
//! raw as written and validated.
//!
//! A plan is an availability target, service hours and a time zone (for availability; the
//! `[sla]` values are the defaults), support hours (the clock reaction and resolution times run
//! on) and per priority a reaction target and a resolution target. A client names its plan and
//! its hosts, and may override any of the plan's values.
//!
//! Which client a host belongs to: the config's `hosts` lists first; a host no client lists takes
//! the client recorded when it was enrolled (`enroll bx-01 --client acme`), if that client is
//! still configured ([`Contracts::assign`]).

use std::collections::BTreeMap;

use b24watch_common::config::Problems;
use serde::{Deserialize, Serialize};

use crate::sla::{Calendar, Ms};

/// Priority of an incident, highest first. The contract's targets are per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// The portal is fully unavailable.
    Critical,
    /// Serious breakage.
    High,
    /// Local problems.
    Medium,
    /// Advice.
    Low,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 4] = [Priority::Critical, Priority::High, Priority::Medium, Priority::Low];

    /// `critical`, `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    /// Parses `critical`, `high`, `medium` or `low`.
    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The one mapping from a check's severity (wire number: 4 critical, 3 high (error),
    /// 2 medium (warning), 1 and below low (info)) to the incident's priority.
    pub fn from_severity(severity: i32) -> Priority {
        match severity {
            s if s >= 4 => Priority::Critical,
            3 => Priority::High,
            2 => Priority::Medium,
            _ => Priority::Low,
        }
    }

    /// Index into per-priority arrays (critical = 0).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Per-priority durations as written: `"30m"`, `"4h"`, `"1h30m"`, `"90s"`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTargets {
    /// Critical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical: Option<String>,
    /// High.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<String>,
    /// Medium.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Low.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<String>,
}

impl RawTargets {
    fn get(&self, priority: Priority) -> Option<&str> {
        match priority {
            Priority::Critical => self.critical.as_deref(),
            Priority::High => self.high.as_deref(),
            Priority::Medium => self.medium.as_deref(),
            Priority::Low => self.low.as_deref(),
        }
    }
}

/// `[[plan]]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawPlan {
    /// Name clients refer to.
    pub name: String,
    /// Availability target; default `[sla] target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Service hours of the availability; default `[sla] service_hours`; `"24/7"` for all the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_hours: Option<String>,
    /// Time zone of the service and support hours and of the client's months; default `[sla] timezone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Support hours, the clock of reaction and resolution: `"24/7"` or weekly windows such as
    /// `"Mon-Fri 09:00-18:00"`, several joined with `;`.
    pub support_hours: String,
    /// Local dates (`YYYY-MM-DD`) without support.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
    /// Reaction targets per priority, in support time.
    pub reaction: RawTargets,
    /// Resolution targets per priority, in support time.
    pub resolution: RawTargets,
}

/// `[[client]]` as written: a name, a plan, hosts, and optional overrides of the plan.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawClient {
    /// Name: 1..=64 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// The plan's name.
    pub plan: String,
    /// Hosts (agent ids).
    pub hosts: Vec<String>,
    /// Override of the plan's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Override of the plan's service hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_hours: Option<String>,
    /// Override of the plan's time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Override of the plan's support hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_hours: Option<String>,
    /// Override of the plan's holidays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holidays: Option<Vec<String>>,
    /// Overrides of some of the plan's reaction targets.
    pub reaction: RawTargets,
    /// Overrides of some of the plan's resolution targets.
    pub resolution: RawTargets,
}

/// Support hours: weekly windows in a time zone, minus holidays; no windows means 24/7.
#[derive(Debug, Clone, PartialEq)]
pub struct SupportHours {
    /// As written (`"24/7"`, `"Mon-Fri 09:00-18:00"`).
    pub spec: String,
    /// Weekly windows; empty for 24/7.
    pub windows: Vec<Calendar>,
    /// Local dates without support.
    pub holidays: Vec<jiff::civil::Date>,
    /// Time zone of the windows and holidays.
    pub tz: jiff::tz::TimeZone,
}

impl SupportHours {
    /// Parses `"24/7"` or windows `"Mon-Fri 09:00-18:00; Sat 10:00-14:00"` in `tz`, with
    /// holidays as `YYYY-MM-DD`.
    ///
    /// # Errors
    /// A message naming what did not parse.
    pub fn parse(spec: &str, tz_name: &str, holidays: &[String]) -> Result<SupportHours, String> {
        let tz = jiff::tz::TimeZone::get(tz_name).map_err(|err| format!("time zone {tz_name:?}: {err}"))?;
        let spec = spec.trim();
        let windows = if spec == "24/7" {
            Vec::new()
        } else if spec.is_empty() {
            return Err("empty: expected \"24/7\" or windows such as \"Mon-Fri 09:00-18:00\"".into());
        } else {
            spec.split(';').map(|part| Calendar::parse(part, tz_name)).collect::<Result<Vec<_>, _>>()?
        };
        let holidays = holidays
            .iter()
            .map(|d| {
                jiff::civil::Date::strptime("%Y-%m-%d", d.trim())
                    .map_err(|_| format!("holiday {d:?}: expected a date as YYYY-MM-DD"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SupportHours { spec: spec.to_owned(), windows, holidays, tz })
    }

    /// 24/7 support without holidays: support time is wall time.
    pub fn always() -> SupportHours {
        SupportHours { spec: "24/7".into(), windows: Vec::new(), holidays: Vec::new(), tz: jiff::tz::TimeZone::UTC }
    }

    /// Whether support never stops (24/7 without holidays).
    pub fn is_always(&self) -> bool {
        self.windows.is_empty() && self.holidays.is_empty()
    }

    /// The support intervals overlapping `[from, to)`, sorted and disjoint.
    pub fn intervals(&self, from: Ms, to: Ms) -> Vec<(Ms, Ms)> {
        if to <= from {
            return Vec::new();
        }
        let open: Vec<(Ms, Ms)> = if self.windows.is_empty() {
            vec![(from, to)]
        } else {
            crate::sla::normalize(self.windows.iter().flat_map(|w| w.intervals(from, to)).collect())
        };
        if self.holidays.is_empty() {
            return open;
        }
        let closed: Vec<(Ms, Ms)> = self
            .holidays
            .iter()
            .filter_map(|d| {
                let a = d.to_zoned(self.tz.clone()).ok()?.timestamp().as_millisecond();
                let b = d.tomorrow().ok()?.to_zoned(self.tz.clone()).ok()?.timestamp().as_millisecond();
                (b > from && a < to).then_some((a, b))
            })
            .collect();
        subtract(&open, &crate::sla::normalize(closed))
    }
}

/// `open` minus `closed`, both sorted and disjoint.
fn subtract(open: &[(Ms, Ms)], closed: &[(Ms, Ms)]) -> Vec<(Ms, Ms)> {
    let mut out = Vec::new();
    for &(a, b) in open {
        let mut start = a;
        for &(c, d) in closed {
            if d <= start || c >= b {
                continue;
            }
            if c > start {
                out.push((start, c));
            }
            start = start.max(d);
        }
        if start < b {
            out.push((start, b));
        }
    }
    out
}

/// A validated contract: a plan with a client's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The plan's name.
    pub plan: String,
    /// Availability target.
    pub target: f64,
    /// Service hours as written (`""` or `"24/7"`: all the time).
    pub service_hours: String,
    /// Service hours of the availability; `None`: all the time.
    pub calendar: Option<Calendar>,
    /// Time zone name.
    pub timezone_name: String,
    /// Time zone.
    pub timezone: jiff::tz::TimeZone,
    /// The reaction and resolution clock.
    pub support: SupportHours,
    /// Reaction target per priority ([`Priority::index`]), support seconds.
    pub reaction_secs: [i64; 4],
    /// Resolution target per priority, support seconds.
    pub resolution_secs: [i64; 4],
}

impl Contract {
    /// The reaction target of `priority`, support seconds.
    pub fn reaction_of(&self, priority: Priority) -> i64 {
        self.reaction_secs[priority.index()]
    }

    /// The resolution target of `priority`, support seconds.
    pub fn resolution_of(&self, priority: Priority) -> i64 {
        self.resolution_secs[priority.index()]
    }

    /// The view the API lists.
    pub fn view(&self) -> ContractView {
        let per = |secs: &[i64; 4]| Priority::ALL.iter().map(|p| (p.as_str(), secs[p.index()])).collect();
        ContractView {
            plan: self.plan.clone(),
            target: self.target,
            service_hours: if self.calendar.is_none() { "24/7".into() } else { self.service_hours.clone() },
            timezone: self.timezone_name.clone(),
            support_hours: self.support.spec.clone(),
            holidays: self.support.holidays.iter().map(ToString::to_string).collect(),
            reaction_secs: per(&self.reaction_secs),
            resolution_secs: per(&self.resolution_secs),
        }
    }
}

/// A contract as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContractView {
    /// Plan.
    pub plan: String,
    /// Availability target.
    pub target: f64,
    /// Service hours (`24/7` for all the time).
    pub service_hours: String,
    /// Time zone.
    pub timezone: String,
    /// Support hours.
    pub support_hours: String,
    /// Holidays, `YYYY-MM-DD`.
    pub holidays: Vec<String>,
    /// Reaction target per priority, support seconds.
    pub reaction_secs: BTreeMap<&'static str, i64>,
    /// Resolution target per priority, support seconds.
    pub resolution_secs: BTreeMap<&'static str, i64>,
}

/// A validated client.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Name.
    pub name: String,
    /// Hosts listed in the config.
    pub hosts: Vec<String>,
    /// Its contract.
    pub contract: Contract,
}

/// Validated plans and clients.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contracts {
    /// Plans by name (without client overrides).
    pub plans: BTreeMap<String, Contract>,
    /// Clients by name.
    pub clients: BTreeMap<String, Client>,
}

impl Contracts {
    /// The client whose config lists `host`.
    pub fn client_of(&self, host: &str) -> Option<&Client> {
        self.clients.values().find(|c| c.hosts.iter().any(|h| h == host))
    }

    /// The client named `name`.
    pub fn client(&self, name: &str) -> Option<&Client> {
        self.clients.get(name)
    }

    /// Host → client of the enrolled hosts `(host, client recorded at enrolment)`: the config's
    /// lists win; a host no client lists takes its recorded client if that client is configured.
    /// Hosts listed in the config but not enrolled are included too (a report names them).
    pub fn assign<'a>(
        &self,
        enrolled: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for client in self.clients.values() {
            for host in &client.hosts {
                out.insert(host.clone(), client.name.clone());
            }
        }
        for (host, recorded) in enrolled {
            if let Some(name) = recorded.filter(|n| self.clients.contains_key(*n)) {
                out.entry(host.to_owned()).or_insert_with(|| name.to_owned());
            }
        }
        out
    }

    /// The hosts of `client` in an assignment from [`Contracts::assign`], sorted.
    pub fn hosts_of(assignment: &BTreeMap<String, String>, client: &str) -> Vec<String> {
        assignment.iter().filter(|(_, c)| c.as_str() == client).map(|(h, _)| h.clone()).collect()
    }
}

/// Whether `name` is a valid client or plan name: 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses a duration such as `"30m"`, `"4h"`, `"1h30m"` or `"90s"` to seconds (1 s to 1000 h).
///
/// # Errors
/// A message when it is not such a duration.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let refused = || format!("{text:?}: expected a duration such as \"15m\", \"4h\" or \"1h30m\" (units h, m, s)");
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut any = false;
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(refused()),
        };
        let n: i64 = number.parse().map_err(|_| refused())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(refused)?;
        number.clear();
        any = true;
    }
    if !any || !number.is_empty() {
        return Err(refused());
    }
    if !(1..=1000 * 3600).contains(&total) {
        return Err(format!("{text:?}: expected from 1s to 1000h"));
    }
    Ok(total)
}

/// The `[sla]` values plans inherit.
#[derive(Debug, Clone)]
pub struct Defaults<'a> {
    /// `[sla] target`.
    pub target: f64,
    /// `[sla] service_hours`.
    pub service_hours: &'a str,
    /// `[sla] timezone`.
    pub timezone: &'a str,
}

/// Validates plans and clients, reporting every problem under `plan[i].key` / `client[i].key`.
pub fn validate(
    plans: &[RawPlan],
    clients: &[RawClient],
    defaults: &Defaults<'_>,
    problems: &mut Problems,
) -> Contracts {
    let mut out = Contracts::default();
    for (idx, raw) in plans.iter().enumerate() {
        let key = format!("plan[{idx}]");
        if !valid_name(&raw.name) {
            problems
                .bad(format!("{key}.name"), format!("{:?}: expected 1..=64 characters of [A-Za-z0-9._-]", raw.name));
            continue;
        }
        if out.plans.contains_key(&raw.name) {
            problems.bad(format!("{key}.name"), format!("{:?}: a plan of that name is already defined", raw.name));
            continue;
        }
        let layer = Layer {
            target: raw.target,
            service_hours: raw.service_hours.as_deref(),
            timezone: raw.timezone.as_deref(),
            support_hours: Some(raw.support_hours.as_str()),
            holidays: Some(&raw.holidays),
            reaction: &raw.reaction,
            resolution: &raw.resolution,
        };
        if let Some(contract) = build(&raw.name, None, &layer, defaults, &key, problems) {
            out.plans.insert(raw.name.clone(), contract);
        }
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (idx, raw) in clients.iter().enumerate() {
        let key = format!("client[{idx}]");
        if !valid_name(&raw.name) {
            problems
                .bad(format!("{key}.name"), format!("{:?}: expected 1..=64 characters of [A-Za-z0-9._-]", raw.name));
            continue;
        }
        if out.clients.contains_key(&raw.name) {
            problems.bad(format!("{key}.name"), format!("{:?}: a client of that name is already defined", raw.name));
            continue;
        }
        for host in &raw.hosts {
            if !crate::auth::valid_agent_id(host) {
                problems.bad(
                    format!("{key}.hosts"),
                    format!("{host:?}: expected an agent id (1..=128 characters of [A-Za-z0-9._-])"),
                );
            } else if let Some(other) = owner.insert(host, &raw.name) {
                problems.bad(
                    format!("{key}.hosts"),
                    format!("{host:?} is already a host of client {other:?}: a host belongs to one client"),
                );
            }
        }
        let Some(plan_idx) = plans.iter().position(|p| p.name == raw.plan) else {
            let known: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
            problems.bad(format!("{key}.plan"), format!("{:?}: no such plan; defined: {known:?}", raw.plan));
            continue;
        };
        let plan = &plans[plan_idx];
        let merged_reaction = merge_targets(&plan.reaction, &raw.reaction);
        let merged_resolution = merge_targets(&plan.resolution, &raw.resolution);
        let layer = Layer {
            target: raw.target.or(plan.target),
            service_hours: raw.service_hours.as_deref().or(plan.service_hours.as_deref()),
            timezone: raw.timezone.as_deref().or(plan.timezone.as_deref()),
            support_hours: Some(raw.support_hours.as_deref().unwrap_or(&plan.support_hours)),
            holidays: Some(raw.holidays.as_ref().unwrap_or(&plan.holidays)),
            reaction: &merged_reaction,
            resolution: &merged_resolution,
        };
        // The plan's own problems are reported once, under plan[i]; a client whose plan is
        // invalid is left out without repeating them.
        if !out.plans.contains_key(&raw.plan) {
            continue;
        }
        if let Some(contract) = build(&raw.plan, Some(raw), &layer, defaults, &key, problems) {
            out.clients.insert(raw.name.clone(), Client { name: raw.name.clone(), hosts: raw.hosts.clone(), contract });
        }
    }
    out
}

fn merge_targets(plan: &RawTargets, client: &RawTargets) -> RawTargets {
    RawTargets {
        critical: client.critical.clone().or_else(|| plan.critical.clone()),
        high: client.high.clone().or_else(|| plan.high.clone()),
        medium: client.medium.clone().or_else(|| plan.medium.clone()),
        low: client.low.clone().or_else(|| plan.low.clone()),
    }
}

/// The values a contract is built from (a plan, or a plan under a client's overrides).
struct Layer<'a> {
    target: Option<f64>,
    service_hours: Option<&'a str>,
    timezone: Option<&'a str>,
    support_hours: Option<&'a str>,
    holidays: Option<&'a Vec<String>>,
    reaction: &'a RawTargets,
    resolution: &'a RawTargets,
}

fn build(
    plan: &str,
    client: Option<&RawClient>,
    layer: &Layer<'_>,
    defaults: &Defaults<'_>,
    key: &str,
    problems: &mut Problems,
) -> Option<Contract> {
    // Keys of values the client overrides are reported under the client; the rest were checked
    // with the plan.
    let own = |set: bool| client.is_none() || set;
    let mut ok = true;
    let target = layer.target.unwrap_or(defaults.target);
    if !(0.0..=1.0).contains(&target) {
        if own(client.is_some_and(|c| c.target.is_some())) {
            problems.bad(format!("{key}.target"), format!("{target}: expected a ratio from 0 to 1, e.g. 0.995"));
        }
        ok = false;
    }
    let timezone_name = layer.timezone.unwrap_or(defaults.timezone).to_owned();
    let timezone = match jiff::tz::TimeZone::get(&timezone_name) {
        Ok(tz) => tz,
        Err(err) => {
            if own(client.is_some_and(|c| c.timezone.is_some())) {
                problems.bad(format!("{key}.timezone"), format!("{timezone_name:?}: {err}"));
            }
            return None;
        }
    };
    let service_hours = layer.service_hours.unwrap_or(defaults.service_hours).trim().to_owned();
    let calendar = if service_hours.is_empty() || service_hours == "24/7" {
        None
    } else {
        match Calendar::parse(&service_hours, &timezone_name) {
            Ok(cal) => Some(cal),
            Err(err) => {
                if own(client.is_some_and(|c| c.service_hours.is_some() || c.timezone.is_some())) {
                    problems.bad(format!("{key}.service_hours"), err);
                }
                ok = false;
                None
            }
        }
    };
    let empty = Vec::new();
    let support = match SupportHours::parse(
        layer.support_hours.unwrap_or_default(),
        &timezone_name,
        layer.holidays.unwrap_or(&empty),
    ) {
        Ok(s) => Some(s),
        Err(err) => {
            if own(client.is_some_and(|c| c.support_hours.is_some() || c.holidays.is_some() || c.timezone.is_some())) {
                problems.bad(format!("{key}.support_hours"), err);
            }
            ok = false;
            None
        }
    };
    let mut targets = |which: &str, raw: &RawTargets, overridden: Option<&RawTargets>| -> [i64; 4] {
        let mut secs = [0; 4];
        for p in Priority::ALL {
            let k = format!("{key}.{which}.{}", p.as_str());
            let mine = overridden.is_none_or(|o| o.get(p).is_some());
            match raw.get(p) {
                None => {
                    if mine {
                        problems.bad(k, "missing: every priority needs a target, e.g. \"4h\"");
                    }
                    ok = false;
                }
                Some(text) => match parse_duration(text) {
                    Ok(s) => secs[p.index()] = s,
                    Err(err) => {
                        if mine {
                            problems.bad(k, err);
                        }
                        ok = false;
                    }
                },
            }
        }
        secs
    };
    let reaction_secs = targets("reaction", layer.reaction, client.map(|c| &c.reaction));
    let resolution_secs = targets("resolution", layer.resolution, client.map(|c| &c.resolution));
    let support = support?;
    ok.then(|| Contract {
        plan: plan.to_owned(),
        target,
        service_hours,
        calendar,
        timezone_name,
        timezone,
        support,
        reaction_secs,
        resolution_secs,
    })
}

/// A client as `GET /api/v1/clients` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientView {
    /// Name.
    pub name: String,
    /// Its hosts: those the config lists and those enrolled for it, sorted.
    pub hosts: Vec<String>,
    /// Its contract.
    pub contract: ContractView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<crate::config::Config, b24watch_common::config::ConfigErrors> {
        crate::config::Config::parse(text, Path::new("/etc/b24watch/collector.toml"))
    }

    const PLANS: &str = r#"
[sla]
target = 0.99
timezone = "Europe/Moscow"
service_hours = "Mon-Fri 08:00-20:00"

[[plan]]
name = "basic"
support_hours = "Mon-Fri 09:00-18:00"
holidays = ["2026-12-31"]
reaction = { critical = "4h", high = "4h", medium = "8h", low = "24h" }
resolution = { critical = "8h", high = "16h", medium = "40h", low = "80h" }

[[plan]]
name = "premium"
target = 0.999
service_hours = "24/7"
support_hours = "24/7"
reaction = { critical = "30m", high = "1h", medium = "2h", low = "8h" }
resolution = { critical = "4h", high = "8h", medium = "1h30m", low = "48h" }
"#;

    #[test]
    fn plans_give_defaults_and_clients_are_one_line_each() {
        let text = format!(
            "{PLANS}\n[[client]]\nname = \"acme\"\nplan = \"premium\"\nhosts = [\"bx-01\", \"bx-02\"]\n\n\
             [[client]]\nname = \"globex\"\nplan = \"basic\"\nhosts = [\"gx-01\"]\ntarget = 0.98\nreaction = {{ critical = \"2h\" }}\n"
        );
        let cfg = parse(&text).expect("valid");
        let c = &cfg.sla.contracts;
        assert_eq!(c.plans.len(), 2);
        let acme = c.client("acme").expect("acme");
        assert_eq!(acme.contract.target, 0.999);
        assert!(acme.contract.calendar.is_none(), "24/7 service hours");
        assert!(acme.contract.support.is_always());
        assert_eq!(acme.contract.reaction_of(Priority::Critical), 1800);
        assert_eq!(acme.contract.resolution_of(Priority::Medium), 5400);
        let globex = c.client("globex").expect("globex");
        assert_eq!(globex.contract.target, 0.98, "client override");
        assert_eq!(globex.contract.reaction_of(Priority::Critical), 7200, "client override");
        assert_eq!(globex.contract.reaction_of(Priority::High), 4 * 3600, "from the plan");
        assert_eq!(globex.contract.timezone_name, "Europe/Moscow", "from [sla]");
        assert!(globex.contract.calendar.is_some(), "[sla] service hours inherited");
        assert_eq!(globex.contract.support.holidays.len(), 1);
        assert_eq!(c.client_of("gx-01").map(|c| c.name.as_str()), Some("globex"));
        assert!(c.client_of("zz").is_none());
        let assigned =
            c.assign([("bx-01", None), ("new-01", Some("globex")), ("gx-01", Some("acme")), ("old", Some("gone"))]);
        assert_eq!(assigned.get("gx-01").map(String::as_str), Some("globex"), "the config wins");
        assert_eq!(assigned.get("new-01").map(String::as_str), Some("globex"), "recorded at enrolment");
        assert!(!assigned.contains_key("old"), "a recorded client no longer configured");
        assert_eq!(Contracts::hosts_of(&assigned, "globex"), ["gx-01", "new-01"]);
        assert_eq!(Contracts::hosts_of(&assigned, "acme"), ["bx-01", "bx-02"]);
    }

    #[test]
    fn every_contract_problem_is_reported_with_its_key() {
        let text = format!(
            "{PLANS}\n[[plan]]\nname = \"bad\"\ntimezone = \"Mars/Olympus\"\nsupport_hours = \"Mon-Fri 9-18\"\n\
             reaction = {{ critical = \"soon\", high = \"1h\", medium = \"1h\" }}\nresolution = {{ critical = \"0s\", high = \"1h\", medium = \"1h\", low = \"1h\" }}\n\
             [[plan]]\nname = \"odd\"\nsupport_hours = \"Mon-Fri 09:00-18:00\"\nholidays = [\"31.12.2026\"]\n\
             reaction = {{ critical = \"1h\", high = \"1h\", medium = \"1h\", low = \"1x\" }}\nresolution = {{ critical = \"4h\", high = \"1h\", medium = \"1h\", low = \"1h\" }}\n\
             [[client]]\nname = \"acme\"\nplan = \"premium\"\nhosts = [\"bx-01\"]\n\
             [[client]]\nname = \"globex\"\nplan = \"platinum\"\nhosts = [\"bx-01\"]\n\
             [[client]]\nname = \"acme\"\nplan = \"basic\"\n\
             [[client]]\nname = \"init\"\nplan = \"basic\"\ntimezone = \"Nowhere\"\n"
        );
        let err = parse(&text).expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plan[2].timezone",
                "plan[3].support_hours",
                "plan[3].reaction.low",
                "client[1].hosts",
                "client[1].plan",
                "client[2].name",
                "client[3].timezone",
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("\"platinum\": no such plan"), "{text}");
        assert!(text.contains("\"bx-01\" is already a host of client \"acme\""), "{text}");
        let err = parse(&format!(
            "{PLANS}\n[[plan]]\nname = \"x\"\nsupport_hours = \"Mon-Fri 9-18\"\nreaction = {{ critical = \"soon\" }}\n"
        ))
        .expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plan[2].support_hours",
                "plan[2].reaction.critical",
                "plan[2].reaction.high",
                "plan[2].reaction.medium",
                "plan[2].reaction.low",
                "plan[2].resolution.critical",
                "plan[2].resolution.high",
                "plan[2].resolution.medium",
                "plan[2].resolution.low",
            ],
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        for bad in ["", "4", "h", "1d", "0m", "1001h", "-1h", "1.5h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn priority_follows_the_check_severity() {
        assert_eq!(Priority::from_severity(4), Priority::Critical);
        assert_eq!(Priority::from_severity(3), Priority::High);
        assert_eq!(Priority::from_severity(2), Priority::Medium);
        assert_eq!(Priority::from_severity(1), Priority::Low);
        assert_eq!(Priority::from_severity(0), Priority::Low);
    }

    #[test]
    fn holidays_remove_whole_local_days() {
        let s = SupportHours::parse("24/7", "Europe/Moscow", &["2026-12-31".into()]).expect("valid");
        let day = |d: &str| d.parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        let got = s.intervals(day("2026-12-30T00:00:00Z"), day("2027-01-02T00:00:00Z"));
        assert_eq!(
            got,
            [
                (day("2026-12-30T00:00:00Z"), day("2026-12-30T21:00:00Z")),
                (day("2026-12-31T21:00:00Z"), day("2027-01-02T00:00:00Z"))
            ]
        );
    }
}
