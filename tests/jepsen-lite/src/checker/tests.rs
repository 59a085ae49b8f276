//! Hand-written histories with a known verdict: the classic anomalies the harness is there to
//! catch, and the legal behaviours it must not flag.

use super::{Budget, Report, Verdict, check};
use crate::history::{History, OpId, Outcome};
use crate::model::{
    AuthInput, AuthOutput, KeyInput, KeyOutput, KeyRegister, Revocation, create_race_winners,
};
use std::time::Duration;

type KeyHistory = History<KeyInput, KeyOutput>;

/// Adds an `ok` operation on key "k", invoked and completed at `span`.
fn ok<I, O>(h: &mut History<I, O>, process: u64, input: I, span: (u64, u64), output: O) -> OpId {
    h.push(
        process,
        "k",
        input,
        span.0,
        Some(span.1),
        Outcome::Ok(output),
    )
}

fn import(m: &str) -> KeyInput {
    KeyInput::Import(m.to_string())
}

fn found(m: &str) -> KeyOutput {
    KeyOutput::Found(m.to_string())
}

fn check_keys(h: &KeyHistory) -> Report {
    check(&KeyRegister, h, &Budget::default())
}

fn the_violation(report: &Report) -> &super::Violation {
    let bad: Vec<_> = report.violations().collect();
    assert_eq!(bad.len(), 1, "{report:#?}");
    match &bad[0].verdict {
        Verdict::Violation(v) => v,
        _ => unreachable!(),
    }
}

#[test]
fn a_stale_read_is_caught_with_a_small_witness() {
    let mut h = KeyHistory::new();
    let created = ok(&mut h, 1, import("a"), (0, 10), KeyOutput::Created);
    let early_read = ok(&mut h, 2, KeyInput::Describe, (5, 15), found("a"));
    let deleted = ok(&mut h, 1, KeyInput::Delete, (20, 30), KeyOutput::Done);
    // Unrelated noise on another key, and a read of a value that is still current.
    h.push(
        3,
        "other",
        import("x"),
        0,
        Some(100),
        Outcome::Ok(KeyOutput::Created),
    );
    let stale = ok(&mut h, 3, KeyInput::Describe, (40, 50), found("a"));
    ok(&mut h, 2, KeyInput::Describe, (60, 70), KeyOutput::NotFound);

    let report = check_keys(&h);
    assert!(!report.passed());
    let v = the_violation(&report);
    assert_eq!(v.stuck, stale);
    // An acknowledged delete, then a read that still sees the key: wrong whenever the import
    // took effect, so the import is context, and so is the early read.
    assert_eq!(v.ops, vec![deleted, stale], "{v:#?}");
    assert_eq!(v.context, vec![created, early_read]);
    assert!(v.minimal);
    assert_eq!(report.partitions.len(), 2);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_but_not_go_back() {
    for seen in [KeyOutput::NotFound, found("a")] {
        let mut h = KeyHistory::new();
        ok(&mut h, 1, import("a"), (0, 10), KeyOutput::Created);
        ok(&mut h, 2, KeyInput::Describe, (5, 15), seen.clone());
        assert!(check_keys(&h).passed(), "a concurrent read saw {seen:?}");
    }
    // Two concurrent reads, one old and one new value: fine while they overlap...
    let mut h = KeyHistory::new();
    ok(&mut h, 1, import("a"), (0, 30), KeyOutput::Created);
    ok(&mut h, 2, KeyInput::Describe, (5, 15), found("a"));
    ok(&mut h, 3, KeyInput::Describe, (10, 20), KeyOutput::NotFound);
    assert!(check_keys(&h).passed());
    // ...but once a read saw the new value, a later read must not see the old one.
    let mut h = KeyHistory::new();
    ok(&mut h, 1, import("a"), (0, 30), KeyOutput::Created);
    ok(&mut h, 2, KeyInput::Describe, (5, 15), found("a"));
    let back = ok(&mut h, 3, KeyInput::Describe, (16, 20), KeyOutput::NotFound);
    assert_eq!(the_violation(&check_keys(&h)).stuck, back);
}

#[test]
fn equal_times_overlap() {
    // The read is invoked at the very nanosecond the import completed: they may be ordered
    // either way, so the read may still see no key.
    let mut h = KeyHistory::new();
    ok(&mut h, 1, import("a"), (0, 10), KeyOutput::Created);
    ok(&mut h, 2, KeyInput::Describe, (10, 12), KeyOutput::NotFound);
    assert!(check_keys(&h).passed());
}

#[test]
fn an_unknown_import_may_take_effect_late_or_never_but_not_undo_itself() {
    // An import that timed out, then a read that did not see it.
    let timed_out_then_not_seen = || {
        let mut h = KeyHistory::new();
        let timeout = Outcome::Info("timeout".into());
        h.push(1, "k", import("a"), 0, Some(5), timeout);
        ok(
            &mut h,
            2,
            KeyInput::Describe,
            (100, 110),
            KeyOutput::NotFound,
        );
        h
    };
    // It took effect long after the client gave up.
    let mut h = timed_out_then_not_seen();
    ok(&mut h, 2, KeyInput::Describe, (200, 210), found("a"));
    ok(
        &mut h,
        2,
        KeyInput::Decrypt("a".into()),
        (300, 310),
        KeyOutput::Done,
    );
    assert!(check_keys(&h).passed());
    // It never took effect.
    assert!(check_keys(&timed_out_then_not_seen()).passed());
    // Seen, then gone without a delete: not an unknown outcome, a lost key.
    let mut h = timed_out_then_not_seen();
    ok(&mut h, 2, KeyInput::Describe, (150, 160), found("a"));
    let lost = ok(
        &mut h,
        2,
        KeyInput::Describe,
        (200, 210),
        KeyOutput::NotFound,
    );
    assert_eq!(the_violation(&check_keys(&h)).stuck, lost);
    // An unknown op cannot take effect before it was invoked.
    let mut h = KeyHistory::new();
    ok(&mut h, 2, KeyInput::Describe, (0, 10), found("a"));
    h.push(
        1,
        "k",
        import("a"),
        20,
        None,
        Outcome::Info("timeout".into()),
    );
    assert!(!check_keys(&h).passed());
}

#[test]
fn a_failed_op_took_no_effect() {
    let mut h = KeyHistory::new();
    h.push(
        1,
        "k",
        import("a"),
        0,
        Some(10),
        Outcome::Fail("503 not applied".into()),
    );
    ok(&mut h, 2, KeyInput::Describe, (20, 30), found("a"));
    assert!(!check_keys(&h).passed());
}

#[test]
fn a_create_race_has_one_winner() {
    let race = |answers: [KeyOutput; 4]| {
        let mut h = KeyHistory::new();
        for (p, answer) in answers.into_iter().enumerate() {
            let m = format!("m{p}");
            h.push(
                p as u64,
                "new",
                import(&m),
                p as u64,
                Some(50),
                Outcome::Ok(answer),
            );
        }
        h
    };
    use KeyOutput::{AlreadyExists as Lost, Created as Won};
    let fair = race([Lost, Won, Lost, Lost]);
    assert!(check_keys(&fair).passed());
    assert_eq!(create_race_winners(&fair)["new"].len(), 1);

    let double = race([Lost, Won, Lost, Won]);
    assert_eq!(create_race_winners(&double)["new"], vec![1, 3]);
    let v = check_keys(&double);
    assert_eq!(the_violation(&v).ops, vec![1, 3]);

    // Nobody won, yet the name exists: also a violation.
    let nobody = race([Lost, Lost, Lost, Lost]);
    assert!(!check_keys(&nobody).passed());

    // The winner's material is the one a later read sees.
    let mut h = race([Lost, Won, Lost, Lost]);
    ok(
        &mut h,
        9,
        KeyInput::Decrypt("m3".into()),
        (60, 70),
        KeyOutput::Done,
    );
    assert!(!check_keys(&h).passed());
}

#[test]
fn a_request_after_an_acknowledged_revoke_is_denied() {
    let mut h: History<AuthInput, AuthOutput> = History::new();
    let p = || "p".to_string();
    ok(&mut h, 0, AuthInput::Grant(p()), (0, 10), AuthOutput::Done);
    ok(
        &mut h,
        1,
        AuthInput::Request(p()),
        (20, 30),
        AuthOutput::Allowed,
    );
    ok(
        &mut h,
        0,
        AuthInput::Revoke(p()),
        (40, 50),
        AuthOutput::Done,
    );
    // Concurrent with the revoke: may go either way.
    ok(
        &mut h,
        1,
        AuthInput::Request(p()),
        (45, 55),
        AuthOutput::Allowed,
    );
    assert!(check(&Revocation, &h, &Budget::default()).passed());
    // After the revoke was acknowledged: must be denied.
    let stale = ok(
        &mut h,
        1,
        AuthInput::Request(p()),
        (60, 70),
        AuthOutput::Allowed,
    );
    let report = check(&Revocation, &h, &Budget::default());
    assert_eq!(the_violation(&report).stuck, stale);
}

#[test]
fn a_spent_budget_is_unknown_not_a_pass() {
    // Many concurrent unknown imports and deletes, and a read nobody can explain: proving it
    // wrong needs every subset of them, far more than 1000 steps.
    let mut h = KeyHistory::new();
    for p in 0..20 {
        let input = if p % 2 == 0 {
            import(&format!("m{p}"))
        } else {
            KeyInput::Delete
        };
        h.push(p, "k", input, 0, None, Outcome::Info("timeout".into()));
    }
    ok(
        &mut h,
        99,
        KeyInput::Describe,
        (10, 20),
        found("never written"),
    );
    let tight = Budget {
        max_steps: 1000,
        max_time: Duration::from_secs(10),
        shrink_time: Duration::from_secs(1),
    };
    let report = check(&KeyRegister, &h, &tight);
    assert!(!report.passed());
    assert_eq!(report.unknown().count(), 1, "{report:#?}");
}

#[test]
fn the_report_serialises_for_report_json() {
    let mut h = KeyHistory::new();
    ok(&mut h, 1, import("a"), (0, 10), KeyOutput::Created);
    ok(&mut h, 1, KeyInput::Delete, (20, 30), KeyOutput::Done);
    ok(&mut h, 2, KeyInput::Describe, (40, 50), found("a"));
    h.push(
        3,
        "fine",
        import("b"),
        0,
        None,
        Outcome::Info("timeout".into()),
    );
    let report = check_keys(&h);
    let json = serde_json::to_value(&report).expect("report serialises");
    let partitions = json["partitions"].as_array().expect("partitions");
    assert_eq!(partitions[0]["key"], "fine");
    assert_eq!(partitions[0]["verdict"], "linearizable");
    assert_eq!(partitions[0]["unknown_ops"], 1);
    assert_eq!(partitions[1]["verdict"], "violation");
    assert_eq!(partitions[1]["stuck"], 2);
    assert_eq!(partitions[1]["ops"], serde_json::json!([1, 2]));
}
