//! The attack suite: one test per attack in SECURITY.md, each against real `kes-node`
//! processes over real TLS, with chains and identities made here. Every test here would have
//! passed for the attacker before its fix.

#[path = "../node/support.rs"]
#[allow(dead_code)] // shared with the `node` suite, which uses more of it
mod support;

mod forged_chain;
mod tenancy;
