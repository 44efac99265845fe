//! Who may act: the holder of the operator's bearer token. A script sends it in
//! `Authorization: Bearer …`; a browser trades it once (the login form) for a session cookie
//! (`HttpOnly`, `SameSite=Strict`), and every action form carries the session's CSRF token,
//! which a cross-site page cannot read. Tokens are compared in constant time and never logged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom as _, SystemRandom};

/// The session cookie's name.
pub const COOKIE: &str = "sup_console_session";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading the console's token file {path}: {message}")]
    Read { path: String, message: String },
    #[error("the console's token in {path} is {len} characters; use at least 16")]
    TooShort { path: String, len: usize },
}

/// The operator's bearer token. Its Debug prints nothing of it.
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token in `path` (surrounding whitespace ignored), at least 16 characters.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::new(text.trim(), &path.display().to_string())
    }

    pub fn new(token: &str, source: &str) -> Result<Self, AuthError> {
        let len = token.chars().count();
        if len < 16 {
            return Err(AuthError::TooShort {
                path: source.to_string(),
                len,
            });
        }
        Ok(Self(token.to_string()))
    }

    pub fn matches(&self, offered: &str) -> bool {
        equal(self.0.as_bytes(), offered.as_bytes())
    }
}

/// Constant time for equal lengths (the token's length is not a secret worth hiding).
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The system's random source failing is not something a console can work around.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the system random number generator failed");
    }
    data_encoding::HEXLOWER.encode(&bytes)
}

struct Session {
    csrf: String,
    expires: Instant,
}

/// The token and the browser sessions opened with it.
pub struct Guard {
    token: Token,
    lifetime: Duration,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Guard {
    pub fn new(token: Token, session_hours: u64) -> Self {
        Self {
            token,
            lifetime: Duration::from_secs(session_hours.max(1) * 3600),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an `Authorization` header value is `Bearer <the token>`.
    pub fn bearer(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| self.token.matches(t.trim()))
    }

    /// A new session for whoever offers the token: its id (the cookie's value).
    pub fn login(&self, offered: &str) -> Option<String> {
        if !self.token.matches(offered.trim()) {
            return None;
        }
        let id = random_hex();
        let now = Instant::now();
        let mut sessions = self.sessions();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                csrf: random_hex(),
                expires: now + self.lifetime,
            },
        );
        Some(id)
    }

    pub fn logout(&self, session: &str) {
        self.sessions().remove(session);
    }

    /// The CSRF token of a live session.
    pub fn csrf(&self, session: &str) -> Option<String> {
        let sessions = self.sessions();
        sessions
            .get(session)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    /// Whether a form came from a page of a live session: the session exists and the form's
    /// CSRF token is that session's.
    pub fn form_allowed(&self, session: Option<&str>, csrf: &str) -> bool {
        session
            .and_then(|s| self.csrf(s))
            .is_some_and(|expected| equal(expected.as_bytes(), csrf.as_bytes()))
    }
}

/// The session id in a `Cookie` header, if any.
pub fn session_of(cookie_header: Option<&str>) -> Option<String> {
    cookie_header?.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_string())
    })
}

/// Whether a request's `Origin` (when the browser sent one) is the console itself: a form
/// posted from another site is refused even before its CSRF token is looked at.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(
            Token::new("s3cret-operator-token", "test").expect("token"),
            8,
        )
    }

    #[test]
    fn a_short_token_is_refused_and_debug_hides_it() {
        let e = Token::new("short", "/etc/sup/token").expect_err("short");
        assert_eq!(
            e.to_string(),
            "the console's token in /etc/sup/token is 5 characters; use at least 16"
        );
        let t = Token::new("s3cret-operator-token", "x").expect("token");
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn bearer_needs_the_exact_token() {
        let g = guard();
        assert!(g.bearer(Some("Bearer s3cret-operator-token")));
        assert!(!g.bearer(Some("Bearer s3cret-operator-toke")));
        assert!(!g.bearer(Some("Bearer s3cret-operator-tokenX")));
        assert!(!g.bearer(Some("Basic s3cret-operator-token")));
        assert!(!g.bearer(None));
    }

    #[test]
    fn a_form_needs_a_live_session_and_its_own_csrf_token() {
        let g = guard();
        assert!(g.login("wrong-token-wrong-token").is_none());
        let a = g.login("s3cret-operator-token").expect("session a");
        let b = g.login(" s3cret-operator-token\n").expect("session b");
        assert_ne!(a, b);
        let csrf_a = g.csrf(&a).expect("csrf a");
        let csrf_b = g.csrf(&b).expect("csrf b");
        assert_ne!(csrf_a, csrf_b);
        assert!(g.form_allowed(Some(&a), &csrf_a));
        assert!(
            !g.form_allowed(Some(&a), &csrf_b),
            "another session's token"
        );
        assert!(!g.form_allowed(Some(&a), ""));
        assert!(!g.form_allowed(None, &csrf_a), "no session");
        assert!(!g.form_allowed(Some("forged"), &csrf_a));
        g.logout(&a);
        assert!(!g.form_allowed(Some(&a), &csrf_a), "after logout");
        assert!(g.form_allowed(Some(&b), &csrf_b));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            session_of(Some("theme=dark; sup_console_session=abc123; x=y")).as_deref(),
            Some("abc123")
        );
        assert_eq!(session_of(Some("sup_console_session=")), None);
        assert_eq!(session_of(Some("other=1")), None);
        assert_eq!(session_of(None), None);
    }

    #[test]
    fn only_the_console_own_origin_may_post() {
        assert!(same_origin(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
        assert!(same_origin(None, Some("127.0.0.1:8080")));
        assert!(!same_origin(
            Some("https://evil.example"),
            Some("127.0.0.1:8080")
        ));
        assert!(!same_origin(Some("null"), Some("127.0.0.1:8080")));
        assert!(!same_origin(Some("http://127.0.0.1:8080"), None));
    }
}
