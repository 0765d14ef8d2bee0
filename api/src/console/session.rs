//! Console sessions: who signed in to the console, kept server-side (the browser holds only an
//! opaque id in an HttpOnly cookie), with the CSRF token its state-changing requests carry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};
use glint_core::keystone::Issued;
use serde::Serialize;

/// The session cookie's name; its path is `/console`, so the API never sees it.
pub const COOKIE: &str = "glint_console";

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// One console session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The token state-changing requests must send in `X-CSRF-Token`.
    pub csrf: String,
    /// Keystone mode: the signed-in user's token and what it says; `None` in no-auth mode.
    pub signed_in: Option<Issued>,
    last_used: Instant,
}

/// What the page learns about its session (never the token).
#[derive(Serialize)]
pub struct Summary {
    /// `keystone` or `noauth`.
    pub mode: &'static str,
    /// Whether requests go out as someone (always in no-auth mode).
    pub signed_in: bool,
    /// The CSRF token for `X-CSRF-Token`, when there is a session.
    pub csrf: Option<String>,
    /// The user's name (Keystone) or configured id (no-auth).
    pub user: Option<String>,
    /// The project's name (Keystone) or configured id (no-auth).
    pub project: Option<String>,
    /// The project's id.
    pub project_id: Option<String>,
    /// The roles on it.
    pub roles: Vec<String>,
    /// Whether the console acts as an admin (it shows the tasks then; policy still decides).
    pub admin: bool,
    /// When the token expires (Keystone).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether several stores are configured (`/v2/info/stores` answers only then).
    pub multistore: bool,
}

/// Every live session of this process, bounded in number and idle time.
pub struct Sessions {
    entries: Mutex<HashMap<String, Session>>,
    idle: Duration,
    capacity: usize,
}

impl Sessions {
    /// An empty store forgetting sessions idle for `idle`, holding at most `capacity`.
    pub fn new(idle: Duration, capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), idle, capacity }
    }

    /// Starts a session (signed in as `issued`, or a no-auth one) and returns its id.
    pub fn create(&self, signed_in: Option<Issued>) -> (String, Session) {
        let now = Instant::now();
        let session = Session { csrf: secret(), signed_in, last_used: now };
        let id = secret();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, s| live(s, now, self.idle));
        }
        if entries.len() >= self.capacity
            && let Some(oldest) = entries.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The session `headers`' cookie names, if it is live; using it keeps it alive.
    pub fn find(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers)?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let session = entries.get_mut(&id)?;
        if !live(session, now, self.idle) {
            entries.remove(&id);
            return None;
        }
        session.last_used = now;
        Some((id, session.clone()))
    }

    /// Signs session `id` in as `issued` instead (a project switch), keeping its CSRF token.
    pub fn replace(&self, id: &str, issued: Issued) {
        if let Some(session) = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            session.signed_in = Some(issued);
        }
    }

    /// Forgets session `id`; returns it if it was there.
    pub fn remove(&self, id: &str) -> Option<Session> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }
}

/// Whether `session` is neither idle too long nor holding an expired token.
fn live(session: &Session, now: Instant, idle: Duration) -> bool {
    now.duration_since(session.last_used) < idle
        && session.signed_in.as_ref().is_none_or(|issued| issued.identity.expires_at > Utc::now())
}

/// 244 random bits (two v4 UUIDs, from the operating system's generator) as 64 hex digits.
fn secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The session id in the request's `Cookie` header(s).
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request's `X-CSRF-Token` is `session`'s, compared in constant time.
pub fn csrf_matches(headers: &HeaderMap, session: &Session) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes) else { return false };
    let expected = session.csrf.as_bytes();
    sent.len() == expected.len() && sent.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `Set-Cookie` for session `id`: HttpOnly, SameSite=Strict, and Secure when the client
/// reached the service over HTTPS.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("glint_console=; Path=/console; Max-Age=0"))
}

/// `Set-Cookie` that makes the browser drop the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    HeaderValue::from_static(if secure {
        "glint_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
    } else {
        "glint_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
    })
}

#[cfg(test)]
mod tests {
    use glint_core::keystone::Identity;

    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).expect("cookie"));
        headers
    }

    fn issued(expires_at: DateTime<Utc>) -> Issued {
        Issued {
            token: "t".into(),
            identity: Identity { project_id: None, user_id: "u".into(), roles: vec![], expires_at },
            user_name: "u".into(),
            project_name: None,
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_among_others() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let (id, _) = sessions.create(None);
        let found = sessions.find(&with_cookie(&format!("other=1; {COOKIE}={id}; more=2")));
        assert!(found.is_some_and(|(found, _)| found == id));
        assert!(sessions.find(&with_cookie(&format!("{COOKIE}=not-{id}"))).is_none());
    }

    #[test]
    fn a_session_whose_token_expired_is_gone() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let (id, _) = sessions.create(Some(issued(Utc::now() - chrono::Duration::seconds(1))));
        assert!(sessions.find(&with_cookie(&format!("{COOKIE}={id}"))).is_none());
    }

    #[test]
    fn the_least_recently_used_session_goes_first_when_full() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let (first, _) = sessions.create(None);
        let (second, _) = sessions.create(None);
        assert!(sessions.find(&with_cookie(&format!("{COOKIE}={first}"))).is_some());
        sessions.create(None);
        assert!(sessions.find(&with_cookie(&format!("{COOKIE}={second}"))).is_none());
        assert!(sessions.find(&with_cookie(&format!("{COOKIE}={first}"))).is_some());
    }

    #[test]
    fn the_csrf_token_must_be_sent_exactly() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let (_, session) = sessions.create(None);
        let mut headers = HeaderMap::new();
        assert!(!csrf_matches(&headers, &session));
        headers.insert(CSRF_HEADER, HeaderValue::from_str(&session.csrf[1..]).expect("value"));
        assert!(!csrf_matches(&headers, &session));
        headers.insert(CSRF_HEADER, HeaderValue::from_str(&session.csrf).expect("value"));
        assert!(csrf_matches(&headers, &session));
    }
}
