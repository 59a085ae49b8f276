//! What a bench run measured: every latency, and the failures by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// One worker's results; merged into a [`Report`] at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Latency of every successful request, in microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// Successful requests by operation.
    pub(crate) ok_by_op: BTreeMap<&'static str, u64>,
    /// Failed requests by what failed: the HTTP status, or `connect`, `timeout`, ...
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Tally {
    pub(crate) fn ok(&mut self, op: &'static str, took: Duration) {
        self.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        *self.ok_by_op.entry(op).or_default() += 1;
    }

    pub(crate) fn failed(&mut self, why: String) {
        *self.errors.entry(why).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (op, n) in other.ok_by_op {
            *self.ok_by_op.entry(op).or_default() += n;
        }
        for (why, n) in other.errors {
            *self.errors.entry(why).or_default() += n;
        }
    }
}

/// The whole run.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) tally: Tally,
    pub(crate) elapsed: Duration,
    /// What was run, for the JSON (`conns`, `mix`, `nodes`, `rate`).
    pub(crate) setup: Value,
}

/// The percentiles reported, as (label, fraction).
const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

impl Report {
    pub(crate) fn errors(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    fn ok(&self) -> u64 {
        self.tally.latencies_us.len() as u64
    }

    fn ops_per_sec(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// `(label, milliseconds)` for each percentile and the maximum; empty without successes.
    fn latencies_ms(&self) -> Vec<(&'static str, f64)> {
        let mut sorted = self.tally.latencies_us.clone();
        sorted.sort_unstable();
        let Some(&max) = sorted.last() else {
            return Vec::new();
        };
        let at = |q: f64| {
            let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
            f64::from(sorted[rank - 1]) / 1000.0
        };
        let mut out: Vec<(&str, f64)> = PERCENTILES.iter().map(|&(l, q)| (l, at(q))).collect();
        out.push(("max", f64::from(max) / 1000.0));
        out
    }

    /// The summary for people.
    pub(crate) fn human(&self) -> String {
        let mut s = format!(
            "{} ok in {:.1} s: {:.0} ops/s\n",
            self.ok(),
            self.elapsed.as_secs_f64(),
            self.ops_per_sec()
        );
        let lat = self.latencies_ms();
        if !lat.is_empty() {
            s += &format!(
                "latency: {}\n",
                joined(lat, |(l, ms)| format!("{l} {ms:.2} ms"))
            );
        }
        let by_op = joined(&self.tally.ok_by_op, |(op, n)| format!("{op} {n}"));
        s += &format!("ok by operation: {by_op}\n");
        let errors = match self.tally.errors.is_empty() {
            true => "none".to_owned(),
            false => joined(&self.tally.errors, |(why, n)| format!("{n} × {why}")),
        };
        s += &format!("errors: {errors}\n");
        s
    }

    /// The summary for machines.
    pub(crate) fn json(&self) -> Value {
        let latency: serde_json::Map<String, Value> = self
            .latencies_ms()
            .into_iter()
            .map(|(l, ms)| (format!("{l}_ms"), json!(ms)))
            .collect();
        json!({
            "setup": self.setup,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ok": self.ok(),
            "ops_per_sec": self.ops_per_sec(),
            "latency": latency,
            "ok_by_op": self.tally.ok_by_op,
            "errors": self.tally.errors,
        })
    }
}

/// `items`, each shown by `show`, separated by commas.
fn joined<T>(items: impl IntoIterator<Item = T>, show: impl Fn(T) -> String) -> String {
    items.into_iter().map(show).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_taken_by_rank_and_errors_are_counted_by_kind() {
        let mut a = Tally::default();
        for ms in 1..=1000u64 {
            a.ok("generate", Duration::from_millis(ms));
        }
        let mut b = Tally::default();
        b.failed("503".into());
        b.failed("503".into());
        b.failed("connect".into());
        a.merge(b);
        let r = Report {
            tally: a,
            elapsed: Duration::from_secs(2),
            setup: json!({}),
        };
        let lat: BTreeMap<&str, f64> = r.latencies_ms().into_iter().collect();
        assert_eq!(lat["p50"], 500.0);
        assert_eq!(lat["p90"], 900.0);
        assert_eq!(lat["p99"], 990.0);
        assert_eq!(lat["p99.9"], 999.0);
        assert_eq!(lat["max"], 1000.0);
        assert_eq!(r.errors(), 3);
        let j = r.json();
        assert_eq!(j["ops_per_sec"], 500.0);
        assert_eq!(j["errors"]["503"], 2);
        assert_eq!(j["latency"]["p99_ms"], 990.0);
        assert!(r.human().contains("2 × 503, 1 × connect"), "{}", r.human());
    }
}
