//! `report.html`: one self-contained page (inline SVG, no script) that shows each scenario as
//! people read a history: a timeline of operations per client (ok, fail, unknown) with the
//! fault window shaded, latency over time, and, for a violation, the operations of the
//! checker's witness drawn as bars.

use crate::checker::{Report, Verdict};
use crate::history::{History, Outcome};
use std::fmt::Debug;
use std::fmt::Write;

/// At most this many operations per timeline: every fail and unknown, and ok ones thinned out.
const MAX_DRAWN: usize = 4000;
const WIDTH: f64 = 1100.0;
const LANE: f64 = 9.0;

/// One operation, as drawn.
#[derive(Clone, Debug)]
pub struct DrawnOp {
    lane: usize,
    start: f64,
    end: f64,
    class: &'static str,
    title: String,
}

/// What the page shows of one scenario.
#[derive(Clone, Debug, Default)]
pub struct Drawing {
    lanes: Vec<String>,
    ops: Vec<DrawnOp>,
    latency: Vec<(f64, f64)>,
    witness: Vec<DrawnOp>,
    end_s: f64,
}

impl Drawing {
    /// Adds `history`'s operations on lanes named `lane_name(process)`, and the first
    /// violation's witness from `checked`.
    pub fn add<I: Debug, O: Debug>(
        &mut self,
        history: &History<I, O>,
        checked: &Report,
        lane_name: impl Fn(u64) -> String,
    ) {
        let drawn = |op: &crate::history::Op<I, O>, lanes: &mut Vec<String>| {
            let name = lane_name(op.process);
            let lane = lanes.iter().position(|l| *l == name).unwrap_or_else(|| {
                lanes.push(name);
                lanes.len() - 1
            });
            let start = op.invoke_ns as f64 / 1e9;
            let end = op.complete_ns.map(|t| t as f64 / 1e9).unwrap_or(start);
            let (class, answer) = match &op.outcome {
                Outcome::Ok(o) => ("ok", format!("{o:?}")),
                Outcome::Fail(why) => ("fail", why.clone()),
                Outcome::Info(why) => ("info", why.clone()),
            };
            let node = op
                .node
                .map(|n| format!(" on node{}", n + 1))
                .unwrap_or_default();
            DrawnOp {
                lane,
                start,
                end,
                class,
                title: format!("#{} {} {:?}{node} → {answer}", op.id, op.key, op.input),
            }
        };
        let ok = history.ops.iter().filter(|o| o.is_ok()).count();
        let stride = ok.div_ceil(MAX_DRAWN).max(1);
        for (i, op) in history.ops.iter().enumerate() {
            if op.is_ok() && i % stride != 0 {
                continue;
            }
            let d = drawn(op, &mut self.lanes);
            self.end_s = self.end_s.max(d.end);
            if op.is_ok() {
                self.latency.push((d.start, (d.end - d.start) * 1e3));
            }
            self.ops.push(d);
        }
        let witness = checked.partitions.iter().find_map(|p| match &p.verdict {
            Verdict::Violation(v) => Some(v.ops.clone()),
            _ => None,
        });
        for id in witness.unwrap_or_default() {
            let d = drawn(&history.ops[id], &mut self.lanes);
            self.witness.push(d);
        }
    }
}

/// The whole page: one section per scenario.
pub fn page(scenarios: &[super::report::ScenarioReport], seed: u64) -> String {
    let mut out = String::from(
        "<!doctype html><meta charset=utf-8><title>jepsen-lite report</title><style>\
         body{font:13px sans-serif;margin:20px}h2{margin:24px 0 4px}\
         .ok{fill:#2e7d32}.fail{fill:#9e9e9e}.info{fill:#ef6c00}.fault{fill:#e53935;opacity:.15}\
         .lane{font:9px monospace;fill:#555}.axis{stroke:#999}.pass{color:#2e7d32}.FAIL{color:#c62828}\
         </style>",
    );
    let _ = write!(
        out,
        "<h1>jepsen-lite</h1><p>seed {seed}. Each row is a client; each bar one operation from \
         invoke to answer: <b style=color:#2e7d32>ok</b>, <b style=color:#9e9e9e>fail</b> \
         (certainly not applied), <b style=color:#ef6c00>unknown</b>. The red band is the fault. \
         Hover a bar for the operation.</p>"
    );
    for r in scenarios {
        let (name, d, faults) = (&r.name, &r.drawing, &r.faults);
        let verdict = if r.passed() { "pass" } else { "FAIL" };
        let _ = write!(
            out,
            "<h2>{name} <span class={verdict}>{verdict}</span></h2><p>Faults: {}</p>",
            escape(&r.fault_names.join("; "))
        );
        out.push_str(&timeline(d, faults));
        out.push_str(&latency(d, faults));
        if !d.witness.is_empty() {
            out.push_str("<p>The smallest history the checker could not linearize:</p>");
            out.push_str(&witness(d));
        }
    }
    out
}

fn scale(d: &Drawing) -> f64 {
    (WIDTH - 110.0) / d.end_s.max(1.0)
}

fn timeline(d: &Drawing, faults: &[(f64, f64)]) -> String {
    let x = |t: f64| 100.0 + t * scale(d);
    let height = d.lanes.len() as f64 * LANE + 20.0;
    let mut s = format!("<svg width={WIDTH} height={height}>");
    for (a, b) in faults {
        let _ = write!(
            s,
            "<rect class=fault x={:.1} y=0 width={:.1} height={height} />",
            x(*a),
            (x(*b) - x(*a)).max(1.0)
        );
    }
    for (i, lane) in d.lanes.iter().enumerate() {
        let _ = write!(
            s,
            "<text class=lane x=0 y={:.1}>{}</text>",
            i as f64 * LANE + 8.0,
            escape(lane)
        );
    }
    for op in &d.ops {
        bar(
            &mut s,
            op,
            x(op.start),
            x(op.end),
            op.lane as f64 * LANE + 1.0,
        );
    }
    axis(&mut s, d, height - 12.0);
    s.push_str("</svg>");
    s
}

fn latency(d: &Drawing, faults: &[(f64, f64)]) -> String {
    let x = |t: f64| 100.0 + t * scale(d);
    let max = d.latency.iter().map(|l| l.1).fold(1.0f64, f64::max);
    let (top, height) = (10.0, 100.0);
    let mut s = format!("<svg width={WIDTH} height={}>", height + 30.0);
    for (a, b) in faults {
        let _ = write!(
            s,
            "<rect class=fault x={:.1} y={top} width={:.1} height={height} />",
            x(*a),
            (x(*b) - x(*a)).max(1.0)
        );
    }
    let _ = write!(
        s,
        "<text class=lane x=0 y={}>latency</text><text class=lane x=0 y={}>{max:.0} ms</text>",
        top + 40.0,
        top + 8.0
    );
    for (t, ms) in &d.latency {
        let y = top + height - ms / max * height;
        let _ = write!(s, "<circle class=ok cx={:.1} cy={y:.1} r=1 />", x(*t));
    }
    axis(&mut s, d, top + height + 12.0);
    s.push_str("</svg>");
    s
}

fn witness(d: &Drawing) -> String {
    let start = d.witness.iter().map(|o| o.start).fold(f64::MAX, f64::min);
    let end = d.witness.iter().map(|o| o.end).fold(0.0f64, f64::max);
    let k = (WIDTH - 420.0) / (end - start).max(1e-6);
    let height = d.witness.len() as f64 * 16.0 + 10.0;
    let mut s = format!("<svg width={WIDTH} height={height}>");
    for (row, op) in d.witness.iter().enumerate() {
        let y = row as f64 * 16.0 + 2.0;
        let (a, b) = (10.0 + (op.start - start) * k, 10.0 + (op.end - start) * k);
        let _ = write!(
            s,
            "<rect class={} x={a:.1} y={y:.1} width={:.1} height=12><title>{}</title></rect>\
             <text class=lane x={:.1} y={:.1}>{}</text>",
            op.class,
            (b - a).max(2.0),
            escape(&op.title),
            WIDTH - 400.0,
            y + 10.0,
            escape(&op.title)
        );
    }
    s.push_str("</svg>");
    s
}

fn bar(s: &mut String, op: &DrawnOp, a: f64, b: f64, y: f64) {
    let _ = write!(
        s,
        "<rect class={} x={a:.1} y={y:.1} width={:.1} height={}><title>{}</title></rect>",
        op.class,
        (b - a).max(0.8),
        LANE - 2.0,
        escape(&op.title)
    );
}

fn axis(s: &mut String, d: &Drawing, y: f64) {
    let k = scale(d);
    let _ = write!(
        s,
        "<line class=axis x1=100 x2={WIDTH} y1={y:.1} y2={y:.1} />"
    );
    let mut t = 0.0;
    while t <= d.end_s {
        let _ = write!(
            s,
            "<text class=lane x={:.1} y={:.1}>{t:.0}s</text>",
            100.0 + t * k,
            y + 10.0
        );
        t += 2.0;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{Budget, check};
    use crate::model::{KeyInput, KeyOutput, KeyRegister};
    use crate::scenario::report::ScenarioReport;

    /// A stale read after an acknowledged import: the page shows the scenario failed, and
    /// draws the witness with each operation's node and answer, escaped.
    #[test]
    fn a_violation_is_drawn_with_its_operations() {
        let mut h = History::new();
        let created = Outcome::Ok(KeyOutput::Created);
        h.push(
            0,
            "k<1>",
            KeyInput::Import("m".into()),
            0,
            Some(10),
            created,
        );
        let id = h.push(
            1,
            "k<1>",
            KeyInput::Describe,
            20,
            Some(30),
            Outcome::Ok(KeyOutput::NotFound),
        );
        h.ops[id].node = Some(2);
        let checked = check(&KeyRegister, &h, &Budget::default());
        let mut r = ScenarioReport::new("demo", "netns");
        r.violations = checked.violations().count();
        r.faults.push((0.0, 0.1));
        r.drawing.add(&h, &checked, |p| format!("client {p}"));
        let page = page(&[r], 7);
        assert!(page.contains("demo <span class=FAIL>FAIL</span>"), "{page}");
        assert!(page.contains("The smallest history the checker could not linearize"));
        assert!(
            page.contains("k&lt;1&gt; Describe on node3 → NotFound"),
            "{page}"
        );
        assert!(!page.contains("k<1>"));
    }
}
