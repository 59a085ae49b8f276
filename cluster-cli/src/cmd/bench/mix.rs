//! `--mix`: which operations the bench sends, and in what proportion.

use std::fmt;
use std::str::FromStr;

/// One kind of request the bench sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    /// `POST /v1/key/generate/KEY`.
    Generate,
    /// `POST /v1/key/decrypt/KEY` of a DEK generated before the run.
    Decrypt,
    /// `POST /v1/key/encrypt/KEY` of 32 bytes.
    Encrypt,
    /// `PUT /v1/key/create/NAME`, a new name each time (a replicated write).
    Create,
    /// `DELETE /v1/key/delete/NAME` of a key this run created (a create when there is none).
    Delete,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Generate,
        Op::Decrypt,
        Op::Encrypt,
        Op::Create,
        Op::Delete,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Generate => "generate",
            Op::Decrypt => "decrypt",
            Op::Encrypt => "encrypt",
            Op::Create => "create",
            Op::Delete => "delete",
        }
    }
}

/// Operations with integer weights; an operation is drawn with probability weight / total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mix {
    weights: Vec<(Op, u32)>,
    total: u32,
}

impl Mix {
    /// The operation for a uniform draw `r` in `0..total`.
    pub(crate) fn pick(&self, mut r: u32) -> Op {
        for &(op, w) in &self.weights {
            if r < w {
                return op;
            }
            r -= w;
        }
        self.weights[self.weights.len() - 1].0
    }

    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// Whether the mix holds `op` at all.
    pub(crate) fn has(&self, op: Op) -> bool {
        self.weights.iter().any(|&(o, _)| o == op)
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `generate=70,decrypt=25,create=5`: names from [`Op::name`], weights ≥ 0, each name at
    /// most once, and at least one weight above zero.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not NAME=WEIGHT"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
                    format!("unknown operation '{name}'; use {}", names.join(", "))
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("the weight of {name} must be a whole number"))?;
            if weights.iter().any(|&(o, _)| o == op) {
                return Err(format!("{name} is given twice"));
            }
            if weight > 0 {
                weights.push((op, weight));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |t, &(_, w)| t.checked_add(w))
            .ok_or("the weights add up to more than 4294967295")?;
        if total == 0 {
            return Err("give at least one operation a weight above 0".into());
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(op, w)| format!("{}={w}", op.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_draws_each_operation_in_proportion() {
        let mix: Mix = "generate=70, decrypt=25,create=5".parse().unwrap();
        assert_eq!(mix.total(), 100);
        let mut seen = std::collections::BTreeMap::new();
        for r in 0..mix.total() {
            *seen.entry(mix.pick(r)).or_insert(0) += 1;
        }
        let want = [(Op::Generate, 70), (Op::Decrypt, 25), (Op::Create, 5)];
        assert_eq!(seen, want.into_iter().collect());
        assert_eq!(mix.to_string(), "generate=70,decrypt=25,create=5");
        assert!(!mix.has(Op::Delete));
    }

    #[test]
    fn a_bad_mix_is_refused_with_the_reason() {
        for (mix, why) in [
            ("", "at least one"),
            ("generate=0", "at least one"),
            ("generate", "NAME=WEIGHT"),
            ("rotate=5", "unknown operation 'rotate'"),
            ("generate=-1", "whole number"),
            ("generate=1,generate=2", "twice"),
            ("generate=4294967295,decrypt=1", "more than"),
        ] {
            let err = mix.parse::<Mix>().unwrap_err();
            assert!(err.contains(why), "{mix}: {err}");
        }
    }
}
