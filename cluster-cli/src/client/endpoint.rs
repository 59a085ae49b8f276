//! Turning the configured server string into what TCP, TLS and HTTP need.

use std::net::IpAddr;

use rustls_pki_types::ServerName;

use crate::error::{Error, Result};

/// A parsed server address.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `https://host:port`, as shown in messages.
    pub(crate) url: String,
    /// Host to resolve and connect to (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host:port` for the HTTP `Host` header (IPv6 in brackets).
    pub(crate) authority: String,
    /// What the server's certificate must name.
    pub(crate) server_name: ServerName<'static>,
}

impl Endpoint {
    /// Parses `https://host:port`, `host:port` or `host`.
    ///
    /// Like the kes CLI, `http://` is taken to mean the same server over
    /// HTTPS (KES only speaks TLS), and a missing port means 443.
    pub(crate) fn parse(server: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "invalid KES server address {server:?}: {why} (expected https://HOST:PORT, e.g. https://127.0.0.1:7373)"
            ))
        };
        let trimmed = server.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(bad(&format!("unsupported scheme '{scheme}'"))),
            None => trimmed,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(bad("a path is not allowed"));
        }
        if rest.contains('@') {
            return Err(bad("user information is not allowed"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("cannot read host and port"))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad(&format!("port '{p}' is not a number from 1 to 65535")))?,
        };
        if port == 0 {
            return Err(bad("port 0 is not a valid server port"));
        }
        let (server_name, authority) = match host.parse::<IpAddr>() {
            Ok(ip) => {
                let authority = match ip {
                    IpAddr::V6(_) => format!("[{host}]:{port}"),
                    IpAddr::V4(_) => format!("{host}:{port}"),
                };
                (ServerName::IpAddress(ip.into()), authority)
            }
            Err(_) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|_| bad(&format!("'{host}' is not a valid host name")))?;
                (name, format!("{host}:{port}"))
            }
        };
        Ok(Endpoint {
            url: format!("https://{authority}"),
            host: host.to_string(),
            port,
            authority,
            server_name,
        })
    }
}

/// Splits `host[:port]`, with IPv6 hosts in brackets.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        // A second colon means a bare IPv6 address: it needs brackets to carry a port.
        Some((host, _)) if host.contains(':') => s.parse::<IpAddr>().ok().map(|_| (s, None)),
        Some((host, port)) => Some((host, Some(port))),
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let e = Endpoint::parse("https://127.0.0.1:7373").unwrap();
        assert_eq!(
            (e.url.as_str(), e.host.as_str(), e.port),
            ("https://127.0.0.1:7373", "127.0.0.1", 7373)
        );
        assert!(matches!(e.server_name, ServerName::IpAddress(_)));
        let e = Endpoint::parse("localhost:7373/").unwrap();
        assert_eq!(e.url, "https://localhost:7373");
        assert!(matches!(e.server_name, ServerName::DnsName(_)));
        let e = Endpoint::parse("http://kes.example.com").unwrap();
        assert_eq!(
            (e.url.as_str(), e.port),
            ("https://kes.example.com:443", 443)
        );
        let e = Endpoint::parse("https://[::1]:7373").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority.as_str()),
            ("::1", "[::1]:7373")
        );
        let e = Endpoint::parse("::1").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 443));
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "https://",
            "ftp://x:1",
            "https://x:99999",
            "https://x:0",
            "https://x:1/v1",
            "x:y",
            "u@x:1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }
}
