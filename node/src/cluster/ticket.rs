//! The joiner's side of admission: the one join this node has pending, and the ticket that the
//! leader's challenge for that join gives it.
//!
//! ```text
//!  join_through: begin() ─nonce─▶ join-request (over TLS to a member) ─▶ leader's challenge
//!  challenge with that nonce ─▶ claim() once ─▶ unwrap ─▶ grant(members) ─▶ Raft RPCs accepted
//!  join_through returns (admitted or not) ─▶ end(): the ticket is gone
//! ```
//! Nobody but the leader this node asked learns the nonce, so a holder of a node certificate
//! cannot hand this node a challenge of its own; and a node that never asked to join (every
//! member) has no pending join, so it takes no challenge at all.

use rand::RngCore;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// This node's pending join, if any.
#[derive(Debug, Default)]
pub struct JoinGate(Mutex<Option<Pending>>);

#[derive(Debug)]
struct Pending {
    nonce: [u8; 32],
    /// A challenge for this join was taken (answered or not): no second one is.
    claimed: bool,
    /// The members named by the challenge, once it was answered.
    members: Vec<String>,
}

/// Why a challenge is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This node asked nobody to add it.
    NoJoinPending,
    /// The challenge does not carry the nonce of this node's join request.
    WrongNonce,
    /// A challenge for this join was already taken.
    AlreadyAnswered,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NoJoinPending => "this node has no join pending",
            Refusal::WrongNonce => "the challenge does not answer this node's join request",
            Refusal::AlreadyAnswered => "this node's join request was already challenged",
        })
    }
}

impl JoinGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a join: a fresh nonce for the join request. A join started earlier is abandoned
    /// (its challenge would no longer be accepted).
    pub fn begin(&self) -> [u8; 32] {
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        *self.lock() = Some(Pending {
            nonce,
            claimed: false,
            members: Vec::new(),
        });
        nonce
    }

    /// Ends the join started with `nonce`, admitted or not: its ticket no longer admits anyone.
    pub fn end(&self, nonce: &[u8; 32]) {
        let mut pending = self.lock();
        if pending.as_ref().is_some_and(|p| p.nonce == *nonce) {
            *pending = None;
        }
    }

    /// Takes the one challenge of the pending join, if it carries that join's nonce.
    pub fn claim(&self, join_nonce: &[u8]) -> Result<(), Refusal> {
        let mut pending = self.lock();
        let p = pending.as_mut().ok_or(Refusal::NoJoinPending)?;
        if !bool::from(p.nonce.as_slice().ct_eq(join_nonce)) {
            return Err(Refusal::WrongNonce);
        }
        if p.claimed {
            return Err(Refusal::AlreadyAnswered);
        }
        p.claimed = true;
        Ok(())
    }

    /// After the claimed challenge was answered: accept Raft RPCs from `members` until the join
    /// ends. Does nothing if that join has ended meanwhile.
    pub fn grant(&self, join_nonce: &[u8], members: Vec<String>) {
        let mut pending = self.lock();
        if let Some(p) = pending.as_mut() {
            if p.claimed && bool::from(p.nonce.as_slice().ct_eq(join_nonce)) {
                p.members = members;
            }
        }
    }

    /// Whether the pending join's ticket names `spki`.
    pub fn allows(&self, spki: &str) -> bool {
        !spki.is_empty()
            && self
                .lock()
                .as_ref()
                .is_some_and(|p| p.members.iter().any(|m| m == spki))
    }
}

#[cfg(test)]
mod tests {
    use super::{JoinGate, Refusal};

    fn members() -> Vec<String> {
        vec!["leader-spki".into(), "follower-spki".into()]
    }

    /// A node that never asked to join (every member) takes no challenge and admits nobody.
    #[test]
    fn without_a_pending_join_no_challenge_is_taken() {
        let gate = JoinGate::default();
        assert_eq!(gate.claim(&[0u8; 32]), Err(Refusal::NoJoinPending));
        gate.grant(&[0u8; 32], vec!["attacker".into()]);
        assert!(!gate.allows("attacker"));
    }

    /// Only the challenge carrying this join's nonce is taken, and only once.
    #[test]
    fn only_the_nonce_of_this_join_and_only_once() {
        let gate = JoinGate::default();
        let nonce = gate.begin();
        let mut other = nonce;
        other[0] ^= 1;
        assert_eq!(gate.claim(&other), Err(Refusal::WrongNonce));
        assert_eq!(gate.claim(&nonce[..16]), Err(Refusal::WrongNonce));
        assert_eq!(gate.claim(&[]), Err(Refusal::WrongNonce));
        gate.claim(&nonce).expect("the join's own challenge");
        assert_eq!(gate.claim(&nonce), Err(Refusal::AlreadyAnswered));
        gate.grant(&other, vec!["attacker".into()]);
        assert!(!gate.allows("attacker"), "a grant for another nonce");
        gate.grant(&nonce, members());
        assert!(gate.allows("leader-spki") && gate.allows("follower-spki"));
        assert!(!gate.allows("attacker") && !gate.allows(""));
    }

    /// The ticket is gone when the join ends, whether or not it was admitted; ending an
    /// abandoned join leaves the newer one alone.
    #[test]
    fn every_ticket_is_cleared_when_its_join_ends() {
        let gate = JoinGate::default();
        let first = gate.begin();
        gate.claim(&first).unwrap();
        gate.grant(&first, members());
        gate.end(&first);
        assert!(!gate.allows("leader-spki"));
        assert_eq!(gate.claim(&first), Err(Refusal::NoJoinPending));

        let abandoned = gate.begin();
        let current = gate.begin();
        assert_eq!(gate.claim(&abandoned), Err(Refusal::WrongNonce));
        gate.claim(&current).unwrap();
        gate.grant(&current, members());
        gate.end(&abandoned);
        assert!(
            gate.allows("leader-spki"),
            "only the current join's end clears it"
        );
        gate.end(&current);
        assert!(!gate.allows("leader-spki"));
    }

    /// A claimed challenge whose answer failed admits nobody, and no second challenge is taken.
    #[test]
    fn a_failed_answer_admits_nobody() {
        let gate = JoinGate::default();
        let nonce = gate.begin();
        gate.claim(&nonce).unwrap();
        assert!(!gate.allows("leader-spki"));
        assert_eq!(gate.claim(&nonce), Err(Refusal::AlreadyAnswered));
    }
}
