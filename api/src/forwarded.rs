//! The service's base URL as its client sees it, for version links and `Location` headers:
//! `public_endpoint`, else the request's `Host`, where a trusted proxy's
//! `X-Forwarded-Proto`/`X-Forwarded-Host` win. From any other peer those headers are ignored:
//! a client must not be able to put a host of its choosing into the links others follow.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glint_core::config::Network;

use crate::AppState;
use crate::error::ApiError;

/// The base URL of this request (no trailing slash), for handlers to build links from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(pub String);

/// Middleware: works out the request's [`BaseUrl`]; a malformed `Host` (or a malformed
/// `X-Forwarded-Host` from a trusted proxy) is a 400.
pub async fn base_url(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    let base = match &state.config.server.public_endpoint {
        Some(endpoint) => Ok(endpoint.trim_end_matches('/').to_owned()),
        None => from_request(
            request.headers(),
            authority.as_deref(),
            peer,
            &state.trusted_proxies,
            &state.config.server.bind.to_string(),
        ),
    };
    match base {
        Ok(base) => {
            request.extensions_mut().insert(BaseUrl(base));
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The base URL from the request: `Host` (or the request target's authority, or `bind`
/// when there is neither), overridden by a trusted peer's forwarded headers.
fn from_request(
    headers: &HeaderMap,
    authority: Option<&str>,
    peer: Option<IpAddr>,
    trusted: &[Network],
    bind: &str,
) -> Result<String, ApiError> {
    let mut scheme = "http".to_owned();
    let mut host = match headers.get(header::HOST) {
        Some(value) => {
            let host = value.to_str().ok().filter(|h| is_host(h));
            host.ok_or_else(|| ApiError::bad_request("Invalid Host header."))?.to_owned()
        }
        None => authority.filter(|a| is_host(a)).unwrap_or(bind).to_owned(),
    };
    if peer.is_some_and(|peer| trusted.iter().any(|net| net.contains(peer))) {
        // A chain of proxies appends: the first value is what the client asked the first one.
        let first = |name: &str| -> Result<Option<String>, ApiError> {
            let Some(value) = headers.get(name) else { return Ok(None) };
            let first = value.to_str().ok().and_then(|v| v.split(',').next()).map(str::trim);
            Ok(Some(first.ok_or_else(|| ApiError::bad_request(format!("Invalid {name} header.")))?.to_owned()))
        };
        if let Some(proto) = first("x-forwarded-proto")? {
            if !matches!(proto.to_ascii_lowercase().as_str(), "http" | "https") {
                return Err(ApiError::bad_request("Invalid X-Forwarded-Proto header."));
            }
            scheme = proto.to_ascii_lowercase();
        }
        if let Some(forwarded) = first("x-forwarded-host")? {
            if !is_host(&forwarded) {
                return Err(ApiError::bad_request("Invalid X-Forwarded-Host header."));
            }
            host = forwarded;
        }
    }
    Ok(format!("{scheme}://{host}"))
}

/// Whether `text` is `host[:port]` as a URL authority has it (RFC 3986, without user info):
/// a DNS name or IPv4 address, or an IPv6 address in brackets, and a port of at most 65535.
fn is_host(text: &str) -> bool {
    let (name, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if v6.parse::<Ipv6Addr>().is_ok() => (None, port),
            _ => return false,
        },
        None => text.find(':').map_or((Some(text), ""), |i| (Some(&text[..i]), &text[i..])),
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            (1..=5).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u16>().is_ok()
        });
    port_ok && name.is_none_or(is_name)
}

/// A DNS name (or dotted IPv4 address), a final dot allowed.
fn is_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn hosts_are_names_or_addresses_with_an_optional_port() {
        for good in ["glance.example.org", "glance.example.org.", "127.0.0.1:9292", "[::1]:9292", "[fe80::1]", "a_b"] {
            assert!(is_host(good), "{good}");
        }
        for bad in [
            "",
            "evil.example/x",
            "evil.example?x",
            "user@evil.example",
            "evil.example:99999",
            "evil.example:+80",
            "evil.example:",
            "a..b",
            "[::1",
            "[evil]",
            "::1",
            "evil example",
            "evil.example\\x",
            "é.example",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let trusted = [Network::parse("10.0.0.0/8").expect("network")];
        let forged = headers(&[
            ("host", "glint.internal:9292"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ]);
        let base = |peer: &str| from_request(&forged, None, peer.parse().ok(), &trusted, "127.0.0.1:9292").ok();
        assert_eq!(base("192.0.2.7").as_deref(), Some("http://glint.internal:9292"));
        assert_eq!(base("no peer").as_deref(), Some("http://glint.internal:9292"));
        assert_eq!(base("10.1.2.3").as_deref(), Some("https://evil.example"));
        assert_eq!(base("::ffff:10.1.2.3").as_deref(), Some("https://evil.example"));
        let chained = headers(&[("host", "h"), ("x-forwarded-host", "cloud.example, proxy2.internal")]);
        let base = from_request(&chained, None, "10.0.0.1".parse().ok(), &trusted, "b").ok();
        assert_eq!(base.as_deref(), Some("http://cloud.example"));
    }

    #[test]
    fn malformed_host_or_trusted_forwarded_headers_are_refused() {
        let trusted = [Network::parse("10.0.0.0/8").expect("network")];
        let refused = |pairs: &[(&'static str, &'static str)], peer: &str| {
            from_request(&headers(pairs), None, peer.parse().ok(), &trusted, "127.0.0.1:9292").is_err()
        };
        assert!(refused(&[("host", "evil.example/path?")], "192.0.2.7"));
        assert!(refused(&[("host", "h"), ("x-forwarded-host", "evil.example/x")], "10.0.0.1"));
        assert!(refused(&[("host", "h"), ("x-forwarded-proto", "javascript")], "10.0.0.1"));
        assert!(!refused(&[("host", "h"), ("x-forwarded-proto", "javascript")], "192.0.2.7"));
        let base = from_request(&HeaderMap::new(), None, None, &trusted, "127.0.0.1:9292").ok();
        assert_eq!(base.as_deref(), Some("http://127.0.0.1:9292"));
    }
}
