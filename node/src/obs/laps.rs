//! How long each step of a long, rare operation took (a snapshot install), for the one log
//! line that reports it, so that a slow one can be taken apart from the node's log alone.

use std::fmt;
use std::time::{Duration, Instant};

/// The steps of an operation so far, each with the time since the step before.
#[derive(Debug)]
pub struct Laps {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Laps {
    /// Starts timing the first step now.
    pub fn started() -> Laps {
        Laps {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Ends step `name` now, and starts the next.
    pub fn done(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.push((name, now - self.last));
        self.last = now;
    }
}

/// `checked 1.20s, filled 9.87s, ...`, in the order the steps were done.
impl fmt::Display for Laps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, took)) in self.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {:.2}s", took.as_secs_f64())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Laps;

    #[test]
    fn each_step_is_named_with_its_own_time_in_order() {
        let mut laps = Laps::started();
        laps.done("first");
        std::thread::sleep(std::time::Duration::from_millis(30));
        laps.done("second");
        let line = laps.to_string();
        let (first, second) = line.split_once(", ").expect("two steps");
        assert!(first.starts_with("first 0.0"), "{line}");
        let secs: f64 = second
            .strip_prefix("second ")
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(secs >= 0.03, "{line}");
    }
}
