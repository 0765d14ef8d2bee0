//! Fetching images over HTTP(S) for web-download and legacy import tasks, behind Glance's
//! import URL filter and a refusal of non-public addresses (SSRF).
//!
//! The URL filter (scheme, host, port, literal addresses) runs on the URL a user gives and on
//! every redirect target; redirects are followed here rather than by reqwest so that each
//! target's raw text can be checked. Names are checked where it counts: a resolver installed
//! in the client drops refused addresses at connect time, so a name that resolved to a public
//! address when the API checked it and to 127.0.0.1 when the worker connects (DNS rebinding)
//! is still refused.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::LOCATION;
use url::{Host, Url};

use crate::config::FilteringConfig;
use crate::error::chain;
use crate::store::ByteStream;

/// Fetches images over HTTP(S) for web-download and legacy import tasks, refusing what the filter forbids.
pub struct Fetcher {
    filter: Filter,
    client: reqwest::Client,
    read_timeout: u64,
    max_redirects: usize,
    pace: Pace,
}

/// How fast a download must go: at least `min_rate` bytes a second over every `window`, and
/// done within `total` of its request.
#[derive(Clone, Copy, Debug)]
struct Pace {
    min_rate: u64,
    window: Duration,
    total: Duration,
}

/// A response whose status said the image follows.
pub struct Download {
    /// The announced size, if the server gave one (already checked against the cap).
    pub content_length: Option<u64>,
    /// The image bytes; errors wrap a [`FetchError`] (`io::Error::get_ref`) to tell retryable ones.
    pub body: ByteStream,
    /// The URL the image came from, after redirects.
    pub url: Url,
}

/// Why a URL may not or could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The filter forbids the URL, a redirect target or the address a name resolves to.
    #[error("{0}")]
    Refused(String),
    /// The server answered with a status that retrying will not change.
    #[error("{1}")]
    Status(u16, String),
    /// The image is larger than the number of bytes allowed.
    #[error("the image is larger than the {0} bytes allowed")]
    TooLarge(u64),
    /// The server could not be reached or failed in a way that may pass.
    #[error("{0}")]
    Transient(String),
}

impl FetchError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Transient(_))
    }
}

impl Fetcher {
    /// A fetcher applying `cfg`; fails only if the HTTP client cannot be set up.
    pub fn new(cfg: &FilteringConfig) -> Result<Fetcher, FetchError> {
        let filter = Filter::new(cfg);
        let client = reqwest::Client::builder()
            .user_agent(concat!("glint/", env!("CARGO_PKG_VERSION")))
            // Proxies from the environment would connect for us, out of the resolver's reach.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(FilteringResolver(filter.addresses.clone()))
            .connect_timeout(Duration::from_secs(cfg.connect_timeout))
            // No total timeout: images take as long as they take, as long as bytes keep coming.
            .read_timeout(Duration::from_secs(cfg.read_timeout))
            .build()
            .map_err(|e| FetchError::Transient(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        let pace = Pace {
            min_rate: cfg.min_transfer_rate,
            window: Duration::from_secs(cfg.min_transfer_rate_window.max(1)),
            total: Duration::from_secs(cfg.total_timeout.max(1)),
        };
        Ok(Fetcher { filter, client, read_timeout: cfg.read_timeout, max_redirects: cfg.max_redirects, pace })
    }

    /// Checks `url` as the API does before accepting an import and returns it parsed; Err(FetchError::Refused(..)) otherwise.
    pub async fn check(&self, url: &str) -> Result<Url, FetchError> {
        let parsed = self.filter.check(url, None).map_err(FetchError::Refused)?;
        let Some(Host::Domain(name)) = parsed.host() else {
            return Ok(parsed);
        };
        let port = parsed.port_or_known_default().unwrap_or(0);
        let found = tokio::net::lookup_host((name, port)).await.map_err(|e| {
            FetchError::Refused(format!(
                "refusing to fetch {}: the host {name:?} does not resolve ({e})",
                shown(&parsed)
            ))
        })?;
        match sift(name, found, &self.filter.addresses) {
            Ok(_) => Ok(parsed),
            Err(why) => Err(FetchError::Refused(format!("refusing to fetch {}: {why}", shown(&parsed)))),
        }
    }

    /// GETs `url` (checked again), following only allowed redirects; the response body streamed, refusing more than `cap` bytes.
    pub async fn get(&self, url: &str, cap: u64) -> Result<Download, FetchError> {
        self.get_as(url, cap, None).await
    }

    /// [`Fetcher::get`] with `token` sent as `X-Auth-Token` (glance-download reads another
    /// image service as its caller). Only requests to `url`'s own origin carry it: a redirect
    /// elsewhere (a store's temporary URL) goes without, as browsers drop `Authorization`.
    pub async fn get_as(&self, url: &str, cap: u64, token: Option<&str>) -> Result<Download, FetchError> {
        let started = Instant::now();
        let (url, response) = self.send(reqwest::Method::GET, url, None, token).await?;
        self.download(url, response, cap, started)
    }

    /// The JSON document at `url`, of at most `limit` bytes, fetched like [`Fetcher::get_as`].
    pub async fn json_as(&self, url: &str, limit: u64, token: Option<&str>) -> Result<serde_json::Value, FetchError> {
        let download = self.get_as(url, limit, token).await?;
        let mut text = Vec::new();
        let mut body = download.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| match e.into_inner().map(|inner| inner.downcast::<FetchError>()) {
                Some(Ok(fetch)) => *fetch,
                Some(Err(other)) => FetchError::Transient(format!("reading {} failed: {other}", redacted(url))),
                None => FetchError::Transient(format!("reading {} failed", redacted(url))),
            })?;
            text.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&text)
            .map_err(|e| FetchError::Status(200, format!("GET {} returned no JSON document: {e}", redacted(url))))
    }

    /// The size of the data at `url` from a HEAD request (checked and redirected like
    /// [`Fetcher::get`]): the Content-Length the server announces, or an error without one.
    pub async fn size(&self, url: &str) -> Result<u64, FetchError> {
        let (url, response) = self.send(reqwest::Method::HEAD, url, None, None).await?;
        // reqwest reads HEAD's Content-Length as the length of an empty body: the header counts.
        let length = response.headers().get(reqwest::header::CONTENT_LENGTH);
        length.and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| {
            FetchError::Status(response.status().as_u16(), format!("HEAD {} announced no Content-Length", shown(&url)))
        })
    }

    /// The bytes `range` of the data at `url` (all of it when None), checked and redirected
    /// like [`Fetcher::get`]. The range is asked for with a `Range` header; a server that
    /// ignores it and sends everything is cut down to the range here.
    pub async fn get_range(&self, url: &str, range: Option<std::ops::Range<u64>>) -> Result<ByteStream, FetchError> {
        let started = Instant::now();
        let (url, response) = self.send(reqwest::Method::GET, url, range.clone(), None).await?;
        let partial = response.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let body = self.download(url, response, u64::MAX, started)?.body;
        match range {
            Some(range) if !partial => Ok(slice(body, range)),
            _ => Ok(body),
        }
    }

    /// Sends `method` to `url` (checked first), following only allowed redirects, and
    /// returns the final URL with its successful response; `token` goes to `url`'s origin only.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        range: Option<std::ops::Range<u64>>,
        token: Option<&str>,
    ) -> Result<(Url, reqwest::Response), FetchError> {
        let first = self.filter.check(url, None).map_err(FetchError::Refused)?;
        let mut url = first.clone();
        let mut redirects = 0;
        loop {
            let mut request = self.client.request(method.clone(), url.clone());
            if let Some(range) = &range {
                request = request.header(reqwest::header::RANGE, format!("bytes={}-{}", range.start, range.end - 1));
            }
            if let Some(token) = token.filter(|_| url.origin() == first.origin()) {
                request = request.header("X-Auth-Token", token);
            }
            let response = request.send().await.map_err(|e| self.failure(&url, e))?;
            let status = response.status();
            let code = status.as_u16();
            let said = || format!("{method} {} returned {status}", shown(&url));
            match code {
                200..=299 => return Ok((url, response)),
                301 | 302 | 303 | 307 | 308 => {
                    let Some(location) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
                        return Err(FetchError::Status(code, format!("{} without a usable Location header", said())));
                    };
                    if redirects == self.max_redirects {
                        return Err(FetchError::Refused(format!(
                            "{method} {} was redirected more than {} times; gave up at {} redirecting to {}",
                            shown(&first),
                            self.max_redirects,
                            shown(&url),
                            redacted(location)
                        )));
                    }
                    redirects += 1;
                    url = self
                        .filter
                        .check(location, Some(&url))
                        .map_err(|why| FetchError::Refused(format!("{method} {} redirected: {why}", shown(&url))))?;
                }
                408 | 429 | 500..=599 => return Err(FetchError::Transient(said())),
                _ => return Err(FetchError::Status(code, said())),
            }
        }
    }

    fn download(
        &self,
        url: Url,
        response: reqwest::Response,
        cap: u64,
        started: Instant,
    ) -> Result<Download, FetchError> {
        let content_length = response.content_length();
        if content_length.is_some_and(|n| n > cap) {
            return Err(FetchError::TooLarge(cap));
        }
        let body = Body {
            chunks: Box::pin(response.bytes_stream()),
            seen: 0,
            cap,
            content_length,
            url: url.clone(),
            read_timeout: self.read_timeout,
            pace: self.pace,
            deadline: started + self.pace.total,
            window_start: Instant::now(),
            window_seen: 0,
        };
        let body = futures_util::stream::unfold(Some(body), |body| async move {
            let mut body = body?;
            match body.read().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
                Ok(None) => None,
                // Ends the stream and drops the connection: nothing after an error is wanted.
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Download { content_length, body: Box::pin(body), url })
    }

    /// What a failed request means, naming the URL.
    fn failure(&self, url: &Url, e: reqwest::Error) -> FetchError {
        if let Some(refused) = find::<Forbidden>(&e) {
            return FetchError::Refused(format!("refusing to fetch {}: {refused}", shown(url)));
        }
        let what = if e.is_connect() && e.is_timeout() {
            "connecting timed out".to_owned()
        } else if e.is_timeout() {
            format!("no response within {} s", self.read_timeout)
        } else {
            // reqwest's own message alone ("error sending request") says little, and its URL
            // would show the password: the message below names the URL without it.
            chain(&e.without_url())
        };
        FetchError::Transient(format!("GET {} failed: {what}", shown(url)))
    }
}

/// A response body being counted against the cap and its announced length.
struct Body {
    chunks: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    seen: u64,
    cap: u64,
    content_length: Option<u64>,
    url: Url,
    read_timeout: u64,
    pace: Pace,
    /// When the whole download must be done.
    deadline: Instant,
    /// The current rate window: when it began and how many bytes had come by then.
    window_start: Instant,
    window_seen: u64,
}

impl Body {
    /// The next chunk, failing the download when it falls behind its [`Pace`].
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                let why = format!("not done within {} s", self.pace.total.as_secs());
                return Err(self.too_slow(why));
            }
            let window_end = self.window_start + self.pace.window;
            if now >= window_end {
                let moved = self.seen - self.window_seen;
                let wanted = self.pace.min_rate.saturating_mul(self.pace.window.as_secs());
                if moved < wanted {
                    let why = format!(
                        "{moved} bytes in the last {} s, under the minimum of {} bytes/s",
                        self.pace.window.as_secs(),
                        self.pace.min_rate
                    );
                    return Err(self.too_slow(why));
                }
                (self.window_start, self.window_seen) = (now, self.seen);
                continue;
            }
            let wake = tokio::time::Instant::from_std(window_end.min(self.deadline));
            if let Ok(next) = tokio::time::timeout_at(wake, self.chunks.next()).await {
                return self.take(next);
            }
        }
    }

    fn too_slow(&self, why: String) -> io::Error {
        let message = format!("GET {} too slow after {} bytes: {why}", shown(&self.url), self.seen);
        io::Error::new(io::ErrorKind::TimedOut, FetchError::Transient(message))
    }

    fn take(&mut self, next: Option<reqwest::Result<Bytes>>) -> io::Result<Option<Bytes>> {
        match next {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.cap {
                    return Err(io::Error::new(io::ErrorKind::FileTooLarge, FetchError::TooLarge(self.cap)));
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => {
                let (kind, what) = if e.is_timeout() {
                    (io::ErrorKind::TimedOut, format!("no data for {} s", self.read_timeout))
                } else {
                    (io::ErrorKind::Other, chain(&e.without_url()))
                };
                let message = format!("GET {} failed after {} bytes: {what}", shown(&self.url), self.seen);
                Err(io::Error::new(kind, FetchError::Transient(message)))
            }
            // hyper already fails a body cut short of its Content-Length; this keeps the
            // promise should the HTTP stack ever stop doing so.
            None => match self.content_length {
                Some(n) if self.seen < n => {
                    let message = format!(
                        "GET {}: the body ended after {} of the {n} bytes announced",
                        shown(&self.url),
                        self.seen
                    );
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, FetchError::Transient(message)))
                }
                _ => Ok(None),
            },
        }
    }
}

/// The bytes `range` of `body`, which holds everything from byte 0.
fn slice(body: ByteStream, range: std::ops::Range<u64>) -> ByteStream {
    let state = (body, 0u64);
    Box::pin(futures_util::stream::unfold(state, move |(mut body, mut at)| {
        let range = range.clone();
        async move {
            loop {
                if at >= range.end {
                    return None;
                }
                let chunk = match body.next().await? {
                    Ok(chunk) => chunk,
                    Err(e) => return Some((Err(e), (body, range.end))),
                };
                let (start, end) = (at, at + chunk.len() as u64);
                at = end;
                if end <= range.start {
                    continue;
                }
                let from = range.start.saturating_sub(start) as usize;
                let to = (range.end.min(end) - start) as usize;
                return Some((Ok(chunk.slice(from..to)), (body, at)));
            }
        }
    }))
}

/// The URL checks of `[import.filtering]`; "only the allow list counts when both are set".
struct Filter {
    schemes: Rule<String>,
    hosts: Rule<HostId>,
    ports: Rule<u16>,
    addresses: Arc<AddressFilter>,
}

/// A host as the filter compares it: an address in canonical form, or a lower-case name
/// without a trailing dot (which would otherwise slip `example.com.` past a deny list).
#[derive(Clone, Debug, PartialEq)]
enum HostId {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostId::Ip(ip) => ip.fmt(f),
            HostId::Name(name) => name.fmt(f),
        }
    }
}

impl HostId {
    fn of<S: AsRef<str>>(host: &Host<S>) -> HostId {
        match host {
            Host::Domain(name) => HostId::Name(name.as_ref().trim_end_matches('.').to_ascii_lowercase()),
            Host::Ipv4(ip) => HostId::Ip(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => HostId::Ip(IpAddr::V6(*ip).to_canonical()),
        }
    }

    /// A configured host, written as a name or an address (IPv6 with or without brackets).
    fn configured(entry: &str) -> HostId {
        let entry = entry.trim();
        if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return HostId::Ip(ip.to_canonical());
        }
        match Host::parse(entry) {
            Ok(host) => HostId::of(&host),
            Err(_) => HostId::Name(entry.to_ascii_lowercase()),
        }
    }
}

enum Rule<T> {
    Only(Vec<T>),
    Except(Vec<T>),
}

impl<T: PartialEq + fmt::Display> Rule<T> {
    fn new(allowed: Vec<T>, disallowed: Vec<T>) -> Rule<T> {
        if allowed.is_empty() { Rule::Except(disallowed) } else { Rule::Only(allowed) }
    }

    /// None if `value` passes, else why not (`what` names the kind, e.g. "port").
    fn refusal(&self, what: &str, value: &T) -> Option<String> {
        match self {
            Rule::Only(allowed) if !allowed.contains(value) => {
                let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                Some(format!("the {what} {value} is not allowed (allowed: {})", allowed.join(", ")))
            }
            Rule::Except(denied) if denied.contains(value) => Some(format!("the {what} {value} is disallowed")),
            _ => None,
        }
    }
}

impl Filter {
    fn new(cfg: &FilteringConfig) -> Filter {
        let lower = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        let hosts = |v: &[String]| v.iter().map(|h| HostId::configured(h)).collect();
        let hosts = Rule::new(hosts(&cfg.allowed_hosts), hosts(&cfg.disallowed_hosts));
        // Addresses in the deny list also hold for what names resolve to.
        let denied = match &hosts {
            Rule::Except(denied) => {
                denied.iter().filter_map(|h| if let HostId::Ip(ip) = h { Some(*ip) } else { None }).collect()
            }
            Rule::Only(_) => Vec::new(),
        };
        Filter {
            schemes: Rule::new(lower(&cfg.allowed_schemes), lower(&cfg.disallowed_schemes)),
            hosts,
            ports: Rule::new(cfg.allowed_ports.clone(), cfg.disallowed_ports.clone()),
            addresses: Arc::new(AddressFilter { allow_private: cfg.allow_private_addresses, denied }),
        }
    }

    /// Parses `raw` (relative to `base` for a redirect's Location) and applies every check
    /// that needs no DNS; the error is a whole sentence naming the URL.
    fn check(&self, raw: &str, base: Option<&Url>) -> Result<Url, String> {
        let refuse = |target: &str, why: String| format!("refusing to fetch {target}: {why}");
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let target = format!("{:?}", redacted(raw));
            return Err(refuse(&target, "the URL contains spaces or control characters".into()));
        }
        let url = Url::options()
            .base_url(base)
            .parse(raw)
            .map_err(|e| refuse(&redacted(raw), format!("not a valid URL ({e})")))?;
        self.refusal(raw, &url).map_or(Ok(url.clone()), |why| Err(refuse(&shown(&url), why)))
    }

    fn refusal(&self, raw: &str, url: &Url) -> Option<String> {
        let scheme = url.scheme().to_owned();
        if let Some(why) = self.schemes.refusal("scheme", &scheme) {
            return Some(why);
        }
        if scheme != "http" && scheme != "https" {
            return Some(format!("only http and https URLs can be fetched, not {scheme}"));
        }
        let written = written_authority(raw);
        let Some(host) = url.host() else {
            return Some("the URL names no host".into());
        };
        let id = HostId::of(&host);
        if id == HostId::Name(String::new()) {
            return Some("the URL names no host".into());
        }
        // The url crate reads `2130706433`, `127.1`, `0x7f000001` and `0177.0.0.1` as
        // 127.0.0.1; such spellings only serve to hide an address, so they are refused.
        if let (Host::Ipv4(ip), Some((as_written, _))) = (&host, written)
            && as_written != ip.to_string()
        {
            return Some(format!("the host {as_written} is not an IPv4 address in dotted-decimal form (write {ip})"));
        }
        if let Some(why) = self.hosts.refusal("host", &id) {
            return Some(why);
        }
        if let HostId::Ip(ip) = id
            && let Some(why) = self.addresses.refusal(ip)
        {
            return Some(why);
        }
        // A URL without a port is always fine; `http://h:80/` names one, though the url crate
        // drops it, and so does a relative redirect inheriting its base's non-default port.
        let explicit = url.port().is_some() || written.is_some_and(|(_, port)| !port.is_empty());
        match url.port_or_known_default() {
            Some(port) if explicit => self.ports.refusal("port", &port),
            _ => None,
        }
    }
}

/// The host and port text of `raw` as written, before the url crate rewrites them; None for
/// a reference without an authority, which keeps its base's. Odd spellings only make the
/// result differ from what the url crate reads, and the caller refuses on a difference.
fn written_authority(raw: &str) -> Option<(&str, &str)> {
    let scheme_end = raw.find(':').filter(|&i| {
        let mut chars = raw[..i].chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let rest = scheme_end.map_or(raw, |i| &raw[i + 1..]);
    let after = rest.trim_start_matches(['/', '\\']);
    if scheme_end.is_none() && rest.len() - after.len() < 2 {
        return None;
    }
    let authority = &after[..after.find(['/', '\\', '?', '#']).unwrap_or(after.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.starts_with('[') {
        let end = host_port.find(']').map_or(host_port.len(), |i| i + 1);
        let port = host_port[end..].strip_prefix(':').unwrap_or(&host_port[end..]);
        Some((&host_port[..end], port))
    } else {
        Some(host_port.split_once(':').unwrap_or((host_port, "")))
    }
}

/// Which addresses may be connected to: public ones unless private ones are allowed, never
/// those in the host deny list. An IPv6 address that carries an IPv4 address (see
/// [`carried_v4`]) is judged by that address too, as that is where its packets may end up.
#[derive(Debug)]
struct AddressFilter {
    allow_private: bool,
    denied: Vec<IpAddr>,
}

impl AddressFilter {
    fn refusal(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        let carried = match ip {
            IpAddr::V6(v6) => carried_v4(v6),
            IpAddr::V4(_) => None,
        };
        let inner = carried.as_ref().map_or(&[][..], |c| &c.addresses[..]);
        for candidate in std::iter::once(ip).chain(inner.iter().map(|v4| IpAddr::V4(*v4))) {
            if self.denied.contains(&candidate) {
                return Some(format!("the address {candidate} is disallowed"));
            }
        }
        if self.allow_private {
            return None;
        }
        let why =
            |kind: &str| format!("{ip} is {kind}; only public addresses may be fetched (see allow_private_addresses)");
        match (ip, carried) {
            (IpAddr::V4(v4), _) => special_v4(v4).map(why),
            (IpAddr::V6(_), Some(carried)) => {
                if let Some((v4, kind)) = carried.addresses.iter().find_map(|v4| special_v4(*v4).map(|k| (v4, k))) {
                    return Some(why(&format!("{}, carrying {v4}, which is {kind}", carried.form)));
                }
                (!carried.public).then(|| why(carried.form))
            }
            (IpAddr::V6(v6), None) => special_v6(v6).map(why),
        }
    }
}

/// Whether `ip` lies in `prefix`/`len`.
fn in_v4(ip: Ipv4Addr, prefix: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    ip.to_bits() & mask == u32::from_be_bytes(prefix) & mask
}

/// Whether `ip` lies in `prefix`/`len`.
fn in_v6(ip: Ipv6Addr, prefix: &str, len: u32) -> bool {
    let Ok(prefix) = prefix.parse::<Ipv6Addr>() else { return false };
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip.to_bits() & mask == prefix.to_bits() & mask
}

/// The blocks of IANA's IPv4 Special-Purpose Address Registry (2025), plus multicast: all of
/// them, globally reachable or not, as no image is served from an anycast or AS112 address.
const SPECIAL_V4: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "in 0.0.0.0/8 (this host on this network)"),
    ([10, 0, 0, 0], 8, "a private (RFC 1918) address"),
    ([100, 64, 0, 0], 10, "a shared (carrier-grade NAT) address"),
    ([127, 0, 0, 0], 8, "a loopback address"),
    ([169, 254, 0, 0], 16, "a link-local address"),
    ([172, 16, 0, 0], 12, "a private (RFC 1918) address"),
    ([192, 0, 0, 0], 24, "in 192.0.0.0/24 (IETF protocol assignments)"),
    ([192, 0, 2, 0], 24, "a documentation address"),
    ([192, 31, 196, 0], 24, "an AS112 address"),
    ([192, 52, 193, 0], 24, "an AMT address"),
    ([192, 88, 99, 0], 24, "a 6to4 relay anycast address"),
    ([192, 168, 0, 0], 16, "a private (RFC 1918) address"),
    ([192, 175, 48, 0], 24, "an AS112 address"),
    ([198, 18, 0, 0], 15, "a benchmarking address"),
    ([198, 51, 100, 0], 24, "a documentation address"),
    ([203, 0, 113, 0], 24, "a documentation address"),
    ([224, 0, 0, 0], 4, "a multicast address"),
    ([240, 0, 0, 0], 4, "a reserved or broadcast address"),
];

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    SPECIAL_V4.iter().find(|(prefix, len, _)| in_v4(ip, *prefix, *len)).map(|(_, _, kind)| *kind)
}

/// The blocks of IANA's IPv6 Special-Purpose Address Registry (2025) that do not carry an
/// IPv4 address, and the non-unicast ranges; the forms carrying one are judged by
/// [`embedded_v4`]. Only global unicast (2000::/3) is public at all.
const SPECIAL_V6: &[(&str, u32, &str)] = &[
    ("::", 128, "the unspecified address"),
    ("::1", 128, "a loopback address"),
    // Local-use translation: the operator picks where the IPv4 address sits in it.
    ("64:ff9b:1::", 48, "a local-use IPv4/IPv6 translation address"),
    ("100::", 64, "a discard-only address"),
    ("100:0:0:1::", 64, "a dummy address"),
    ("2001::", 23, "in 2001::/23 (IETF protocol assignments)"),
    ("2001:db8::", 32, "a documentation address"),
    ("2620:4f:8000::", 48, "an AS112 address"),
    ("3fff::", 20, "a documentation address"),
    ("5f00::", 16, "a segment routing (SRv6) address"),
    ("fc00::", 7, "a unique local address"),
    ("fe80::", 10, "a link-local address"),
    ("fec0::", 10, "a site-local address"),
    ("ff00::", 8, "a multicast address"),
];

/// IPv4-mapped addresses arrive here already as IPv4 (`to_canonical`), and the other forms
/// carrying an IPv4 address are [`carried_v4`]'s.
fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    match SPECIAL_V6.iter().find(|(prefix, len, _)| in_v6(ip, prefix, *len)) {
        Some((_, _, kind)) => Some(kind),
        None if !in_v6(ip, "2000::", 3) => Some("not a global unicast address"),
        None => None,
    }
}

/// An IPv6 address that carries IPv4 addresses: the form's name, the addresses, and whether
/// the form itself may be fetched from when they are public.
struct Carried {
    form: &'static str,
    addresses: Vec<Ipv4Addr>,
    public: bool,
}

/// The IPv4 addresses an IPv6 address carries: IPv4-compatible (::a.b.c.d), SIIT
/// (::ffff:0:a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:aabb:ccdd::) and Teredo (server
/// and client of 2001:0::/32). Only NAT64's well-known prefix is used for public addresses
/// (DNS64 hands it out for IPv4-only names); the others are deprecated or special-purpose
/// and refused whatever they carry.
fn carried_v4(ip: Ipv6Addr) -> Option<Carried> {
    let bits = ip.to_bits();
    let low = Ipv4Addr::from_bits(bits as u32);
    let carried = |form, addresses, public| Some(Carried { form, addresses, public });
    if ip.is_unspecified() || ip.is_loopback() {
        None
    } else if in_v6(ip, "64:ff9b::", 96) {
        carried("a NAT64 address", vec![low], true)
    } else if in_v6(ip, "::", 96) {
        carried("an IPv4-compatible address", vec![low], false)
    } else if in_v6(ip, "::ffff:0:0:0", 96) {
        carried("an IPv4-translated (SIIT) address", vec![low], false)
    } else if in_v6(ip, "2002::", 16) {
        carried("a 6to4 address", vec![Ipv4Addr::from_bits((bits >> 80) as u32)], false)
    } else if in_v6(ip, "2001::", 32) {
        let server = Ipv4Addr::from_bits((bits >> 64) as u32);
        carried("a Teredo address", vec![server, Ipv4Addr::from_bits(!(bits as u32))], false)
    } else {
        None
    }
}

/// The addresses of `host` that may be connected to, or why none may.
fn sift(
    host: &str,
    found: impl Iterator<Item = SocketAddr>,
    filter: &AddressFilter,
) -> Result<Vec<SocketAddr>, Forbidden> {
    let mut kept = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for addr in found {
        match filter.refusal(addr.ip()) {
            None => kept.push(addr),
            Some(why) if !refused.contains(&why) => refused.push(why),
            Some(_) => {}
        }
    }
    if kept.is_empty() && !refused.is_empty() {
        return Err(Forbidden(format!("the host {host:?} resolves only to refused addresses: {}", refused.join("; "))));
    }
    Ok(kept)
}

/// The resolver's refusal, found again in reqwest's error chain to report it as such.
#[derive(Debug)]
struct Forbidden(String);

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Forbidden {}

/// Resolves names for the client, keeping only addresses the filter allows: the check on
/// the address actually connected to. Literal addresses in URLs never come here.
struct FilteringResolver(Arc<AddressFilter>);

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let filter = self.0.clone();
        Box::pin(async move {
            let host = name.as_str();
            let found = tokio::net::lookup_host((host, 0)).await?;
            let kept = sift(host, found, &filter)?;
            Ok::<_, Box<dyn StdError + Send + Sync>>(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

fn find<'a, E: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// `url` for messages, which are stored and shown: without its user name and password.
fn shown(url: &Url) -> String {
    if !url.has_host() {
        // `user:secret@host/x` parses as a URL of scheme `user`: its text is all there is.
        return masked(url.as_str());
    }
    let mut url = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        // Only fails for URLs that cannot have credentials, and this one has some. A user name
        // alone may be the secret (`https://TOKEN@host/`), so it goes too.
        url.set_username("***").ok();
        if url.password().is_some() {
            url.set_password(Some("***")).ok();
        }
    }
    url.to_string()
}

/// `raw`, a URL as a caller wrote it, fit for logs and responses: its credentials (user
/// name and password) replaced by `***`, whether or not it parses.
pub fn redacted(raw: &str) -> String {
    Url::parse(raw).map_or_else(|_| masked(raw), |url| shown(&url))
}

/// `text` with whatever precedes an `@` in its authority (after `scheme://`, or from the
/// start) replaced by `***`.
fn masked(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let authority_end = text[start..].find(['/', '\\', '?', '#']).map_or(text.len(), |i| start + i);
    match text[start..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &text[..start], &text[start + at + 1..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn fetcher(cfg: &FilteringConfig) -> Fetcher {
        Fetcher::new(cfg).expect("fetcher")
    }

    /// The filter settings for talking to the test server on `port`.
    fn local(port: u16) -> FilteringConfig {
        FilteringConfig {
            allow_private_addresses: true,
            allowed_ports: vec![port],
            read_timeout: 1,
            ..Default::default()
        }
    }

    async fn refusal(fetcher: &Fetcher, url: &str) -> String {
        match fetcher.check(url).await {
            Err(FetchError::Refused(why)) => why,
            other => panic!("{url}: expected a refusal, got {:?}", other.map(|u| u.to_string())),
        }
    }

    async fn accepted(fetcher: &Fetcher, url: &str) -> String {
        match fetcher.check(url).await {
            Ok(url) => url.to_string(),
            Err(e) => panic!("{url}: expected acceptance, got {e}"),
        }
    }

    async fn get_err(fetcher: &Fetcher, url: &str, cap: u64) -> FetchError {
        match fetcher.get(url, cap).await {
            Ok(download) => panic!("{url}: expected an error, got a download from {}", download.url),
            Err(e) => e,
        }
    }

    /// The body's bytes, or the error that ended it.
    async fn read(mut body: ByteStream) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
        }
        Ok(data)
    }

    fn inner(e: &io::Error) -> &FetchError {
        e.get_ref().and_then(|e| e.downcast_ref::<FetchError>()).expect("a FetchError inside the io::Error")
    }

    /// An HTTP/1.1 server on 127.0.0.1 answering by path (see `answer`); returns its port.
    async fn serve() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket));
            }
        });
        port
    }

    async fn answer(mut socket: TcpStream) {
        let mut request = Vec::new();
        let mut buf = [0; 2048];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
            // Not HTTP (a TLS ClientHello): answer in plain HTTP and hang up, as a server would.
            if !request.starts_with(b"GET ") && !request.starts_with(b"HEAD ") {
                socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await.ok();
                return;
            }
        }
        let request = String::from_utf8_lossy(&request);
        let head = request.starts_with("HEAD ");
        let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
        let reply = |status: &str, headers: &str, body: &[u8]| {
            let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes();
            if !head {
                out.extend_from_slice(body);
            }
            out
        };
        let hundred = [b'x'; 100];
        let out = if path == "/ok" {
            reply("200 OK", "Content-Length: 5\r\n", b"hello")
        } else if path == "/token" {
            let token = request
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("x-auth-token: ").map(str::to_owned))
                .unwrap_or_default();
            reply("200 OK", &format!("Content-Length: {}\r\n", token.len()), token.as_bytes())
        } else if path == "/json" {
            reply("200 OK", "Content-Length: 11\r\n", br#"{"id": "x"}"#)
        } else if let Some(n) = path.strip_prefix("/redirect/") {
            let n: u32 = n.parse().expect("redirect count");
            let next = if n <= 1 { "/ok".to_owned() } else { format!("/redirect/{}", n - 1) };
            reply("302 Found", &format!("Location: {next}\r\nContent-Length: 0\r\n"), b"")
        } else if let Some(target) = path.strip_prefix("/to/") {
            reply("302 Found", &format!("Location: {target}\r\nContent-Length: 0\r\n"), b"")
        } else if let Some(code) = path.strip_prefix("/status/") {
            reply(&format!("{code} Whatever"), "Content-Length: 0\r\n", b"")
        } else if path == "/big" {
            reply("200 OK", "Content-Length: 100\r\n", &hundred)
        } else if path == "/unsized" {
            // No length: the body ends when the connection closes.
            reply("200 OK", "", &hundred)
        } else if path == "/short" {
            reply("200 OK", "Content-Length: 10\r\n", b"hello")
        } else if path == "/stall" {
            socket.write_all(&reply("200 OK", "Content-Length: 10\r\n", b"he")).await.ok();
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        } else if path == "/trickle" {
            // A byte every 200 ms: never silent for long, never fast.
            socket.write_all(&reply("200 OK", "Content-Length: 100\r\n", b"")).await.ok();
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if socket.write_all(b"x").await.is_err() {
                    return;
                }
            }
            return;
        } else if path == "/silent" {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        } else {
            reply("404 Not Found", "Content-Length: 0\r\n", b"")
        };
        socket.write_all(&out).await.ok();
    }

    #[tokio::test]
    async fn size_is_the_content_length_of_a_head_request_after_allowed_redirects() {
        let port = serve().await;
        let f = fetcher(&local(port));
        assert_eq!(f.size(&format!("http://127.0.0.1:{port}/redirect/2")).await.expect("size"), 5);
        assert!(matches!(f.size(&format!("http://127.0.0.1:{port}/missing")).await, Err(FetchError::Status(404, _))));
        let elsewhere = fetcher(&FilteringConfig { allowed_ports: vec![port + 1], ..local(port) });
        assert!(matches!(elsewhere.size(&format!("http://127.0.0.1:{port}/ok")).await, Err(FetchError::Refused(_))));
    }

    #[tokio::test]
    async fn a_token_goes_to_the_url_s_own_origin_and_not_past_a_redirect_elsewhere() {
        let (port, other) = (serve().await, serve().await);
        let f = fetcher(&FilteringConfig { allowed_ports: vec![port, other], ..local(port) });
        let sent = async |url: String| read(f.get_as(&url, 100, Some("t0k")).await.expect("get").body).await;
        assert_eq!(sent(format!("http://127.0.0.1:{port}/token")).await.expect("body"), b"t0k");
        assert_eq!(sent(format!("http://127.0.0.1:{port}/to//token")).await.expect("body"), b"t0k");
        let away = format!("http://127.0.0.1:{port}/to/http://127.0.0.1:{other}/token");
        assert_eq!(sent(away).await.expect("body"), b"");
        let document = f.json_as(&format!("http://127.0.0.1:{port}/json"), 100, None).await.expect("json");
        assert_eq!(document["id"], "x");
        let not_json = f.json_as(&format!("http://127.0.0.1:{port}/ok"), 100, None).await;
        assert!(matches!(not_json, Err(FetchError::Status(200, _))));
        let refused = fetcher(&FilteringConfig { allowed_ports: vec![other], ..local(port) });
        let url = format!("http://127.0.0.1:{port}/json");
        assert!(matches!(refused.json_as(&url, 100, Some("t0k")).await, Err(FetchError::Refused(_))));
    }

    #[tokio::test]
    async fn a_range_is_cut_out_of_a_whole_body_when_the_server_ignores_it() {
        let port = serve().await;
        let f = fetcher(&local(port));
        let url = format!("http://127.0.0.1:{port}/big");
        let part = read(f.get_range(&url, Some(10..13)).await.expect("range")).await.expect("body");
        assert_eq!(part, b"xxx");
        let whole = read(f.get_range(&format!("http://127.0.0.1:{port}/ok"), None).await.expect("get")).await;
        assert_eq!(whole.expect("body"), b"hello");
        let chunks = futures_util::stream::iter([&b"0123"[..], b"4567", b"89"].map(|c| Ok(Bytes::from_static(c))));
        let sliced = read(slice(Box::pin(chunks), 3..9)).await.expect("slice");
        assert_eq!(sliced, b"345678");
    }

    #[tokio::test]
    async fn accepts_public_http_and_https_urls() {
        let f = fetcher(&FilteringConfig::default());
        assert_eq!(
            accepted(&f, "http://93.184.216.34/images/cirros.img").await,
            "http://93.184.216.34/images/cirros.img"
        );
        assert_eq!(accepted(&f, "HTTPS://93.184.216.34/x?y=1").await, "https://93.184.216.34/x?y=1");
    }

    #[tokio::test]
    async fn refuses_malformed_urls() {
        let f = fetcher(&FilteringConfig::default());
        for url in [
            "",
            "not a url",
            "/relative/path",
            "http://",
            "http://exa mple.com/",
            "http://8.8.8.8/a\tb",
            "http://99999999999/",
        ] {
            refusal(&f, url).await;
        }
    }

    #[tokio::test]
    async fn refuses_schemes_not_allowed_or_disallowed() {
        let f = fetcher(&FilteringConfig::default());
        let why = refusal(&f, "ftp://93.184.216.34/x").await;
        assert!(why.contains("scheme ftp is not allowed (allowed: http, https)"), "{why}");
        refusal(&f, "file:///etc/passwd").await;
        refusal(&f, "gopher://93.184.216.34/x").await;
        let f = fetcher(&FilteringConfig {
            allowed_schemes: vec![],
            disallowed_schemes: vec!["HTTP".into()],
            ..Default::default()
        });
        let why = refusal(&f, "http://93.184.216.34/x").await;
        assert!(why.contains("scheme http is disallowed"), "{why}");
        accepted(&f, "https://93.184.216.34/x").await;
    }

    #[tokio::test]
    async fn refuses_schemes_that_cannot_be_fetched_even_if_allowed() {
        let f = fetcher(&FilteringConfig { allowed_schemes: vec!["ftp".into()], ..Default::default() });
        let why = refusal(&f, "ftp://93.184.216.34/x").await;
        assert!(why.contains("only http and https"), "{why}");
    }

    #[tokio::test]
    async fn allow_lists_win_over_deny_lists() {
        let f = fetcher(&FilteringConfig {
            allowed_schemes: vec!["http".into()],
            disallowed_schemes: vec!["http".into()],
            allowed_hosts: vec!["93.184.216.34".into()],
            disallowed_hosts: vec!["93.184.216.34".into()],
            allowed_ports: vec![8080],
            disallowed_ports: vec![8080],
            ..Default::default()
        });
        accepted(&f, "http://93.184.216.34:8080/x").await;
        refusal(&f, "https://93.184.216.34/x").await;
        refusal(&f, "http://8.8.8.8/x").await;
        refusal(&f, "http://93.184.216.34:8081/x").await;
    }

    #[tokio::test]
    async fn refuses_numeric_shorthands_for_addresses() {
        // Allowing private addresses, so only the spelling is refused.
        let f = fetcher(&FilteringConfig { allow_private_addresses: true, ..Default::default() });
        for url in [
            "http://2130706433/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.000.000.001/",
            "http://0x7f.0.0.1/",
            "http://127.0.0.1./",
            "http:/\\127.1/",
            "http://user@127.1:80/",
        ] {
            let why = refusal(&f, url).await;
            assert!(why.contains("not an IPv4 address in dotted-decimal form (write 127.0.0.1)"), "{url}: {why}");
        }
        let why = refusal(&fetcher(&FilteringConfig::default()), "http://134744072/").await;
        assert!(why.contains("(write 8.8.8.8)"), "{why}");
        accepted(&f, "http://127.0.0.1/").await;
    }

    #[tokio::test]
    async fn rewrites_ipv6_literals_to_canonical_form_before_matching() {
        let f = fetcher(&FilteringConfig::default());
        let url = accepted(&f, "http://[2606:2800:0220:0001:0248:1893:25C8:1946]/x").await;
        assert_eq!(url, "http://[2606:2800:220:1:248:1893:25c8:1946]/x");
        let f = fetcher(&FilteringConfig {
            disallowed_hosts: vec!["[2606:2800:220:1:248:1893:25c8:1946]".into()],
            ..Default::default()
        });
        let why = refusal(&f, "http://[2606:2800:0220:0001:0248:1893:25C8:1946]/x").await;
        assert!(why.contains("host 2606:2800:220:1:248:1893:25c8:1946 is disallowed"), "{why}");
    }

    #[tokio::test]
    async fn refuses_private_and_special_addresses_unless_allowed() {
        let refused = [
            ("0.0.0.0", "0.0.0.0/8"),
            ("0.1.2.3", "0.0.0.0/8"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.254", "carrier-grade NAT"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("[::]", "unspecified"),
            ("[::1]", "loopback"),
            ("[0:0:0:0:0:0:0:1]", "loopback"),
            ("[::ffff:127.0.0.1]", "loopback"),
            ("[::ffff:a9fe:a9fe]", "link-local"),
            ("[::127.0.0.1]", "loopback"),
            ("[::10.0.0.1]", "private"),
            ("[64:ff9b::192.168.0.1]", "private"),
            ("[fc00::1]", "unique local"),
            ("[fd12:3456::1]", "unique local"),
            ("[fe80::1]", "link-local"),
            ("[febf::1]", "link-local"),
            ("[fec0::1]", "site-local"),
            ("[ff02::1]", "multicast"),
            ("[2001:db8::1]", "documentation"),
            // Every other block of IANA's special-purpose registries.
            ("192.0.0.1", "192.0.0.0/24"),
            ("192.0.0.170", "192.0.0.0/24"),
            ("192.31.196.1", "AS112"),
            ("192.52.193.1", "AMT"),
            ("192.88.99.1", "6to4 relay"),
            ("192.175.48.1", "AS112"),
            ("198.19.255.255", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("[100::1]", "discard-only"),
            ("[100:0:0:1::1]", "dummy"),
            ("[2001:1::1]", "2001::/23"),
            ("[2001:2::1]", "2001::/23"),
            ("[2001:3::1]", "2001::/23"),
            ("[2001:20::1]", "2001::/23"),
            ("[2001:1ff::1]", "2001::/23"),
            ("[2620:4f:8000::1]", "AS112"),
            ("[3fff::1]", "documentation"),
            ("[5f00::1]", "SRv6"),
            ("[64:ff9b:1::808:808]", "local-use IPv4/IPv6 translation"),
            ("[400::1]", "not a global unicast"),
            ("[fbff::1]", "not a global unicast"),
            // IPv6 forms that carry an IPv4 address: judged by that address...
            ("[2002:7f00:1::]", "6to4 address, carrying 127.0.0.1, which is a loopback"),
            ("[2002:a9fe:a9fe::1]", "carrying 169.254.169.254, which is a link-local"),
            ("[::ffff:0:127.0.0.1]", "SIIT) address, carrying 127.0.0.1"),
            ("[::ffff:0:a00:1]", "carrying 10.0.0.1, which is a private"),
            ("[64:ff9b::127.0.0.1]", "NAT64 address, carrying 127.0.0.1"),
            ("[64:ff9b::c000:aa]", "carrying 192.0.0.170, which is in 192.0.0.0/24"),
            ("[::0.0.0.2]", "IPv4-compatible address, carrying 0.0.0.2"),
            ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "Teredo address, carrying 127.0.0.1"),
            ("[2001:0:7f00:1:8000:63bf:f7f7:f7f7]", "Teredo address, carrying 127.0.0.1"),
            // ... and refused anyway unless NAT64's, deprecated or special-purpose as they are.
            ("[2002:808:808::1]", "a 6to4 address;"),
            ("[::ffff:0:8.8.8.8]", "an IPv4-translated (SIIT) address;"),
            ("[::8.8.8.8]", "an IPv4-compatible address;"),
            ("[2001:0:4136:e378:8000:63bf:f7f7:f7f7]", "a Teredo address;"),
        ];
        let strict = fetcher(&FilteringConfig::default());
        let lenient = fetcher(&FilteringConfig { allow_private_addresses: true, ..Default::default() });
        for (host, kind) in refused {
            let url = format!("http://{host}/x");
            let why = refusal(&strict, &url).await;
            assert!(why.contains(kind) && why.contains("allow_private_addresses"), "{url}: {why}");
            accepted(&lenient, &url).await;
        }
    }

    #[test]
    fn public_addresses_are_not_special() {
        let filter = AddressFilter { allow_private: false, denied: Vec::new() };
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2a00:1450:4001::1",
            "3ffe::1",
            "3fff:1000::1",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(filter.refusal(ip.parse().expect("address")), None, "{ip}");
        }
    }

    #[test]
    fn the_deny_list_holds_for_the_ipv4_address_an_ipv6_one_carries() {
        let filter = AddressFilter { allow_private: true, denied: vec!["8.8.8.8".parse().expect("address")] };
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "::ffff:0:808:808"] {
            let why = filter.refusal(ip.parse().expect("address"));
            assert_eq!(why.as_deref(), Some("the address 8.8.8.8 is disallowed"), "{ip}");
        }
    }

    #[tokio::test]
    async fn refuses_hosts_in_the_deny_list() {
        let f = fetcher(&FilteringConfig {
            disallowed_hosts: vec!["Evil.Example".into(), "8.8.8.8".into()],
            ..Default::default()
        });
        for url in ["http://evil.example/x", "http://EVIL.example./x", "http://8.8.8.8/x", "http://[::ffff:8.8.8.8]/x"]
        {
            let why = refusal(&f, url).await;
            assert!(why.contains("is disallowed"), "{url}: {why}");
        }
        accepted(&f, "http://8.8.4.4/x").await;
    }

    #[tokio::test]
    async fn refuses_hosts_outside_a_non_empty_allow_list() {
        let f = fetcher(&FilteringConfig { allowed_hosts: vec!["93.184.216.34".into()], ..Default::default() });
        accepted(&f, "http://93.184.216.34/x").await;
        let why = refusal(&f, "http://8.8.8.8/x").await;
        assert!(why.contains("host 8.8.8.8 is not allowed (allowed: 93.184.216.34)"), "{why}");
    }

    #[tokio::test]
    async fn checks_the_port_only_when_the_url_names_one() {
        let f = fetcher(&FilteringConfig::default());
        accepted(&f, "http://93.184.216.34/x").await;
        accepted(&f, "http://93.184.216.34:80/x").await;
        accepted(&f, "https://93.184.216.34:443/x").await;
        let why = refusal(&f, "http://93.184.216.34:8080/x").await;
        assert!(why.contains("port 8080 is not allowed (allowed: 80, 443)"), "{why}");
        // Port 80 is https's non-default port: named, and allowed.
        accepted(&f, "https://93.184.216.34:80/x").await;
        let f = fetcher(&FilteringConfig { allowed_ports: vec![], disallowed_ports: vec![80], ..Default::default() });
        accepted(&f, "http://93.184.216.34/x").await;
        let why = refusal(&f, "http://93.184.216.34:80/x").await;
        assert!(why.contains("port 80 is disallowed"), "{why}");
        refusal(&f, "http://93.184.216.34:0080/x").await;
    }

    #[tokio::test]
    async fn refuses_names_that_do_not_resolve() {
        let f = fetcher(&FilteringConfig::default());
        let why = refusal(&f, "http://no-such-host.invalid/image.qcow2").await;
        assert!(why.contains("no-such-host.invalid") && why.contains("does not resolve"), "{why}");
    }

    #[tokio::test]
    async fn refuses_names_resolving_only_to_refused_addresses() {
        let why = refusal(&fetcher(&FilteringConfig::default()), "http://localhost/x").await;
        assert!(why.contains("\"localhost\" resolves only to refused addresses") && why.contains("loopback"), "{why}");
        accepted(
            &fetcher(&FilteringConfig { allow_private_addresses: true, ..Default::default() }),
            "http://localhost/x",
        )
        .await;
        let f = fetcher(&FilteringConfig {
            allow_private_addresses: true,
            disallowed_hosts: vec!["127.0.0.1".into(), "::1".into()],
            ..Default::default()
        });
        let why = refusal(&f, "http://localhost/x").await;
        assert!(why.contains("the address 127.0.0.1 is disallowed"), "{why}");
    }

    #[tokio::test]
    async fn messages_do_not_show_credentials() {
        let f = fetcher(&FilteringConfig::default());
        let why = refusal(&f, "http://user:s3cret@93.184.216.34:8080/x").await;
        assert!(why.contains("http://***:***@93.184.216.34:8080/x") && !why.contains("s3cret"), "{why}");
        let why = refusal(&f, "http://t0ken@127.0.0.1/x").await;
        assert!(why.contains("http://***@127.0.0.1/x") && !why.contains("t0ken"), "{why}");
        for unparsable in ["http://user:s3cret@exa mple.com/x", "http://user:s3cret@[::1/x", "user:s3cret@host/x"] {
            let why = refusal(&f, unparsable).await;
            assert!(!why.contains("s3cret") && why.contains("***@"), "{why}");
        }
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_credentials() {
        assert_eq!(redacted("https://u:p@h.example:8443/a?b=c#d"), "https://***:***@h.example:8443/a?b=c#d");
        assert_eq!(redacted("http://h.example/a@b"), "http://h.example/a@b");
        assert_eq!(redacted("http://u:p@h ost/a@b"), "http://***@h ost/a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[tokio::test]
    async fn downloads_from_loopback_only_when_private_addresses_are_allowed() {
        let port = serve().await;
        let url = format!("http://127.0.0.1:{port}/ok");
        let strict = fetcher(&FilteringConfig { allowed_ports: vec![port], ..Default::default() });
        let FetchError::Refused(why) = get_err(&strict, &url, 100).await else { panic!("not refused") };
        assert!(why.contains("127.0.0.1 is a loopback address"), "{why}");
        let download = fetcher(&local(port)).get(&url, 100).await.expect("download");
        assert_eq!(download.content_length, Some(5));
        assert_eq!(download.url.as_str(), url);
        assert_eq!(read(download.body).await.expect("body"), b"hello");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_when_connecting() {
        let port = serve().await;
        let url = format!("http://localhost:{port}/ok");
        let strict = fetcher(&FilteringConfig { allowed_ports: vec![port], ..Default::default() });
        // No check() first: get() leaves names to the resolver, so this is the connect-time path.
        let FetchError::Refused(why) = get_err(&strict, &url, 100).await else { panic!("not refused") };
        assert!(why.contains(&url) && why.contains("\"localhost\" resolves only to refused addresses"), "{why}");
        let denied =
            fetcher(&FilteringConfig { disallowed_hosts: vec!["127.0.0.1".into(), "::1".into()], ..local(port) });
        let FetchError::Refused(why) = get_err(&denied, &url, 100).await else { panic!("not refused") };
        assert!(why.contains("the address 127.0.0.1 is disallowed"), "{why}");
        let download = fetcher(&local(port)).get(&url, 100).await.expect("download through the resolver");
        assert_eq!(read(download.body).await.expect("body"), b"hello");
    }

    #[tokio::test]
    async fn follows_redirects_up_to_max_redirects() {
        let port = serve().await;
        let f = fetcher(&FilteringConfig { max_redirects: 2, ..local(port) });
        let download = f.get(&format!("http://127.0.0.1:{port}/redirect/2"), 100).await.expect("download");
        assert_eq!(download.url.as_str(), format!("http://127.0.0.1:{port}/ok"));
        assert_eq!(read(download.body).await.expect("body"), b"hello");
        let FetchError::Refused(why) = get_err(&f, &format!("http://127.0.0.1:{port}/redirect/3"), 100).await else {
            panic!("not refused")
        };
        assert!(why.contains("redirected more than 2 times"), "{why}");
    }

    #[tokio::test]
    async fn refuses_redirects_to_targets_the_filter_forbids() {
        let port = serve().await;
        let f = fetcher(&FilteringConfig { disallowed_hosts: vec!["localhost".into()], ..local(port) });
        for (target, reason) in [
            ("http://127.0.0.1:9/x", "port 9 is not allowed"),
            ("//127.0.0.1:9/x", "port 9 is not allowed"),
            ("ftp://127.0.0.1/x", "scheme ftp is not allowed"),
            (&format!("http://localhost:{port}/ok"), "host localhost is disallowed"),
            ("http://2130706433/x", "dotted-decimal"),
        ] {
            let url = format!("http://127.0.0.1:{port}/to/{target}");
            let FetchError::Refused(why) = get_err(&f, &url, 100).await else { panic!("{target}: not refused") };
            assert!(why.contains(&format!("GET {url} redirected: refusing to fetch")) && why.contains(reason), "{why}");
        }
        let strict = fetcher(&FilteringConfig { allowed_ports: vec![port], ..Default::default() });
        let why = strict.filter.check("http://[::1]/x", None).expect_err("loopback redirect target");
        assert!(why.contains("loopback"), "{why}");
    }

    #[tokio::test]
    async fn a_server_stalling_after_headers_fails_transiently_within_read_timeout() {
        let port = serve().await;
        let started = Instant::now();
        let download =
            fetcher(&local(port)).get(&format!("http://127.0.0.1:{port}/stall"), 100).await.expect("headers");
        let e = read(download.body).await.expect_err("stalled body");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(inner(&e).is_transient(), "{e}");
        assert!(e.to_string().contains("after 2 bytes: no data for 1 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_trickling_server_fails_transiently_under_the_minimum_rate() {
        let port = serve().await;
        let slow = FilteringConfig { min_transfer_rate: 10, min_transfer_rate_window: 1, ..local(port) };
        let started = Instant::now();
        let download = fetcher(&slow).get(&format!("http://127.0.0.1:{port}/trickle"), 100).await.expect("headers");
        let e = read(download.body).await.expect_err("too slow");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(inner(&e).is_transient(), "{e}");
        assert!(e.to_string().contains("in the last 1 s, under the minimum of 10 bytes/s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let lenient = FilteringConfig { min_transfer_rate: 4, min_transfer_rate_window: 1, ..local(port) };
        let download = fetcher(&lenient).get(&format!("http://127.0.0.1:{port}/ok"), 100).await.expect("headers");
        assert_eq!(read(download.body).await.expect("fast enough"), b"hello");
    }

    #[tokio::test]
    async fn a_download_fails_transiently_past_its_total_time() {
        let port = serve().await;
        let capped = FilteringConfig { min_transfer_rate: 0, total_timeout: 1, ..local(port) };
        let started = Instant::now();
        let download = fetcher(&capped).get(&format!("http://127.0.0.1:{port}/trickle"), 100).await.expect("headers");
        let e = read(download.body).await.expect_err("too long");
        assert!(inner(&e).is_transient() && e.to_string().contains("not done within 1 s"), "{e}");
        assert!(started.elapsed() < Duration::from_millis(1800), "{:?}", started.elapsed());
    }

    #[test]
    fn the_default_pace_lets_20_gib_through_a_1_mbit_link() {
        let cfg = FilteringConfig::default();
        let (size, rate) = (20u64 << 30, 1_000_000 / 8);
        assert!(size / rate < cfg.total_timeout && rate > cfg.min_transfer_rate);
    }

    #[tokio::test]
    async fn a_server_silent_before_headers_fails_transiently_within_read_timeout() {
        let port = serve().await;
        let started = Instant::now();
        let e = get_err(&fetcher(&local(port)), &format!("http://127.0.0.1:{port}/silent"), 100).await;
        assert!(e.is_transient() && e.to_string().contains("no response within 1 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_content_length_above_the_cap_is_too_large_before_reading() {
        let port = serve().await;
        let f = fetcher(&local(port));
        let url = format!("http://127.0.0.1:{port}/big");
        assert!(matches!(get_err(&f, &url, 99).await, FetchError::TooLarge(99)));
        let download = f.get(&url, 100).await.expect("exactly the cap");
        assert_eq!(read(download.body).await.expect("body").len(), 100);
    }

    #[tokio::test]
    async fn a_body_longer_than_the_cap_without_content_length_fails_the_stream() {
        let port = serve().await;
        let f = fetcher(&local(port));
        let url = format!("http://127.0.0.1:{port}/unsized");
        let download = f.get(&url, 99).await.expect("headers");
        assert_eq!(download.content_length, None);
        let e = read(download.body).await.expect_err("over the cap");
        assert!(matches!(inner(&e), FetchError::TooLarge(99)), "{e}");
        let download = f.get(&url, 100).await.expect("headers");
        assert_eq!(read(download.body).await.expect("exactly the cap").len(), 100);
    }

    #[tokio::test]
    async fn a_truncated_body_fails_the_stream_transiently() {
        let port = serve().await;
        let download =
            fetcher(&local(port)).get(&format!("http://127.0.0.1:{port}/short"), 100).await.expect("headers");
        assert_eq!(download.content_length, Some(10));
        let e = read(download.body).await.expect_err("truncated");
        assert!(inner(&e).is_transient(), "{e}");
    }

    #[tokio::test]
    async fn client_errors_are_permanent_and_server_errors_transient() {
        let port = serve().await;
        let f = fetcher(&local(port));
        let url = |code: u16| format!("http://127.0.0.1:{port}/status/{code}");
        match get_err(&f, &url(404), 100).await {
            FetchError::Status(404, message) => assert_eq!(message, format!("GET {} returned 404 Not Found", url(404))),
            other => panic!("404: {other:?}"),
        }
        assert!(matches!(get_err(&f, &url(403), 100).await, FetchError::Status(403, _)));
        match get_err(&f, &url(302), 100).await {
            FetchError::Status(302, message) => assert!(message.contains("without a usable Location"), "{message}"),
            other => panic!("302 without Location: {other:?}"),
        }
        for code in [503, 500, 429, 408] {
            let e = get_err(&f, &url(code), 100).await;
            assert!(e.is_transient() && e.to_string().contains(&format!("returned {code}")), "{code}: {e}");
        }
    }

    #[tokio::test]
    async fn https_sets_up_and_fails_cleanly_against_a_server_without_tls() {
        let port = serve().await;
        // Builds the rustls configuration and runs a handshake: a crypto provider mix-up
        // would panic here rather than fail.
        let e = get_err(&fetcher(&local(port)), &format!("https://127.0.0.1:{port}/ok"), 100).await;
        assert!(e.is_transient(), "{e}");
    }
}
