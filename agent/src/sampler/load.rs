//! Load averages from `/proc/loadavg`.

use b24watch_proto::catalog::{LOAD1, LOAD5, LOAD15};

use super::{Observation, SampleError, Sampler, UnixMs, read_proc};

/// Stateless: `/proc/loadavg` is a snapshot.
#[derive(Debug)]
pub(super) struct LoadSampler;

/// Parses the first three fields of `/proc/loadavg`.
pub(super) fn parse_loadavg(text: &str) -> Result<[f64; 3], SampleError> {
    let mut fields = text.split_ascii_whitespace();
    let mut loads = [0.0; 3];
    for load in &mut loads {
        let field = fields.next().ok_or_else(|| SampleError::Parse(format!("short /proc/loadavg: {text:?}")))?;
        *load = field.parse().map_err(|_| SampleError::Parse(format!("bad load {field:?}")))?;
    }
    Ok(loads)
}

#[async_trait::async_trait]
impl Sampler for LoadSampler {
    fn name(&self) -> &'static str {
        "load"
    }

    async fn sample(&mut self, at: UnixMs, out: &mut Vec<Observation>) -> Result<(), SampleError> {
        let mut buf = String::new();
        read_proc("/proc/loadavg", &mut buf)?;
        let [l1, l5, l15] = parse_loadavg(&buf)?;
        out.extend([
            Observation::new(LOAD1, l1, at),
            Observation::new(LOAD5, l5, at),
            Observation::new(LOAD15, l15, at),
        ]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_parses_three_averages() {
        assert_eq!(parse_loadavg("0.52 1.07 2.00 3/712 123456\n").expect("parses"), [0.52, 1.07, 2.0]);
    }

    #[test]
    fn short_or_bad_loadavg_is_a_parse_error() {
        assert!(parse_loadavg("0.52 1.07").is_err());
        assert!(parse_loadavg("a b c").is_err());
    }
}
