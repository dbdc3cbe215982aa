//! What every part of the agent shares: the clock, unix-millisecond times, observations and severities.
//!
//! A leaf: it imports nothing else of the agent, so samplers, logs, checks, telemetry, batch and
//! scheduler can all use it without importing each other.

/// Milliseconds since the unix epoch, as read once per tick by the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMs(pub i64);

/// The wall clock. Samples carry the agent's time (RELIABILITY.md decision 6).
pub fn now() -> UnixMs {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixMs(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Series name from `b24watch_proto::catalog` (without the `b24watch_` prefix).
    pub name: &'static str,
    /// Labels besides `host`, in the catalog's order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
    /// When it was taken.
    pub at: UnixMs,
}

impl Observation {
    /// An observation without labels.
    pub fn new(name: &'static str, value: f64, at: UnixMs) -> Self {
        Observation { name, labels: Vec::new(), value, at }
    }

    /// An observation with labels.
    pub fn labeled(name: &'static str, labels: Vec<(&'static str, String)>, value: f64, at: UnixMs) -> Self {
        Observation { name, labels, value, at }
    }
}

/// SLA vocabulary, numbered like the wire enum: of log rules, error groups and check results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Advice.
    Low = 1,
    /// Local problems.
    Medium = 2,
    /// Serious breakage.
    High = 3,
    /// Portal fully unavailable.
    Critical = 4,
}

impl Severity {
    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}
