//! Listen and advertise addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A listen address as KES takes it: `ip:port`, where the IP must be a literal and an empty host
/// (`:7373`) means every interface. Names are refused because a name can resolve to several
/// addresses, or to a different one after a restart, and a listener binds exactly one.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "'{text}' has no port; write it as ip:port, for example 0.0.0.0:7373"
        ));
    };
    let port: u16 = port.parse().map_err(|_| {
        format!(
            "'{port}' is not a port number; write the address as ip:port, for example 0.0.0.0:7373"
        )
    })?;
    let ip = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| {
                format!(
                    "the host '{host}' is not an IP address; listen on an IP such as 127.0.0.1 or 0.0.0.0 (all interfaces), or leave the host empty"
                )
            })?
    };
    Ok(SocketAddr::new(ip, port))
}

/// An address other nodes dial: `host:port`, where the host may be a name (`node1:7473`).
pub(crate) fn check_advertise(text: &str) -> Result<(), String> {
    let hint = "write it as host:port, for example node1:7473";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("'{text}' has no port; {hint}"));
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!("'{text}' has no usable host; {hint}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("'{port}' is not a port number; {hint}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let ok = |s: &str| parse_listen(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("0.0.0.0:7373"), "0.0.0.0:7373".parse().expect("literal"));
        assert_eq!(ok(":7373"), "0.0.0.0:7373".parse().expect("literal"));
        assert_eq!(ok("[::1]:7373"), "[::1]:7373".parse().expect("literal"));
        assert_eq!(ok("127.0.0.1:0").port(), 0);
        for bad in [
            "localhost:7373",
            "0.0.0.0",
            "0.0.0.0:http",
            "1.2.3.4:70000",
            "",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn advertise_forms() {
        assert!(check_advertise("node1:7473").is_ok());
        assert!(check_advertise("[fd00::1]:7473").is_ok());
        for bad in ["node1", ":7473", "node1:0", "https://node1:7473"] {
            assert!(check_advertise(bad).is_err(), "{bad}");
        }
    }
}
