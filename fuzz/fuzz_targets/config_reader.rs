//! The config reader: YAML text in, a validated `Config` and warnings out.
//!
//! Invariants: no panic (on any text, with `${NAME}` references that expand to more
//! references); a config that loads validates again and loads the same way twice; every error
//! renders a message.
#![no_main]

use kes_node::config::Config;
use libfuzzer_sys::fuzz_target;

/// A fixed environment, so `${NAME}` references expand (to values, to nothing, and to text
/// that looks like another reference).
fn env(name: &str) -> Option<String> {
    match name {
        "KES_ADDR" => Some("127.0.0.1:7373".into()),
        "KES_ADMIN" => {
            Some("3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22".into())
        }
        "EMPTY" => Some(String::new()),
        "NESTED" => Some("${KES_ADMIN}".into()),
        "BOOL" => Some("true".into()),
        "DURATION" => Some("5m30s".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text, &env) {
        Ok(loaded) => {
            loaded
                .config
                .validate()
                .expect("a loaded config validates again");
            let _ = loaded.config.listen_address();
            let again = Config::from_yaml(text, &env).expect("loads twice");
            assert_eq!(again.config, loaded.config);
            assert_eq!(again.warnings, loaded.warnings);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
