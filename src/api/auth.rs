//! Who is asking: a key in a header, or a browser session cookie; and the
//! lock-out of addresses that keep presenting wrong keys.
//!
//! A key is only ever read from the `exeio-api-key` or `Authorization:
//! Bearer` header, never from a URL. Sessions (`POST /session`) live in
//! memory for 12 h; each remembers the id of the key it was opened with, so
//! revoking the key ends its sessions too. Called by HTTP threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::keys::{Identity, Keys};

pub const COOKIE: &str = "exeio_session";
pub const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 10_000;
/// Open sessions of one key: a new one ends that key's oldest (SPEC 3a), so
/// no key holder can fill the table.
pub const SESSIONS_PER_KEY: usize = 32;
const MAX_TRACKED: usize = 65_536;

/// A caller that proved who it is.
#[derive(Clone, Debug)]
pub struct Caller {
    pub who: Identity,
    /// Came with the session cookie (state changes need the CSRF header).
    pub by_cookie: bool,
}

/// What a request presented.
pub enum Presented<'a> {
    Nothing,
    Key(&'a str),
    Session(&'a str),
}

/// The credentials in a request's headers (`header` looks one up). A key
/// header wins over a cookie.
pub fn presented<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Presented<'a> {
    if let Some(k) = header("exeio-api-key") {
        return Presented::Key(k.trim());
    }
    if let Some(v) = header("authorization") {
        let v = v.trim();
        let token = v
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| v[7..].trim());
        return Presented::Key(token.unwrap_or("\u{0}not a bearer token"));
    }
    match header("cookie").and_then(session_cookie) {
        Some(token) => Presented::Session(token),
        None => Presented::Nothing,
    }
}

/// The value of our cookie in a `Cookie` header.
pub fn session_cookie(cookies: &str) -> Option<&str> {
    cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

struct Session {
    who: Identity,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Open a session for `who`; its token, or `None` when too many are open.
    pub fn open(&self, who: Identity, now: Instant) -> Option<String> {
        let token = crate::keys::random_hex(32).ok()?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = || map.iter().filter(|(_, s)| s.who.kid == who.kid);
        if mine().count() >= SESSIONS_PER_KEY {
            let oldest = mine()
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                map.remove(&t);
            }
        }
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                return None;
            }
        }
        map.insert(
            token.clone(),
            Session {
                who,
                expires: now + SESSION_LIFE,
            },
        );
        Some(token)
    }

    /// Who holds `token`, if the session is open and its key still valid.
    pub fn check(&self, token: &str, keys: &Keys, now: Instant) -> Option<Identity> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let s = map.get(token)?;
        if s.expires <= now || !keys.still_valid(&s.who.kid) {
            map.remove(token);
            return None;
        }
        Some(s.who.clone())
    }

    pub fn close(&self, token: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token)
            .is_some()
    }
}

struct Failures {
    since: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

/// Failed authentications per address.
pub struct Throttle {
    limit: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Throttle {
        Throttle {
            limit,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// If `ip` is locked out: for how many more seconds.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let until = map.get(&ip)?.locked_until?;
        (until > now).then(|| until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// `ip` presented a wrong key.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, f| {
                f.locked_until.is_some_and(|t| t > now) || now.duration_since(f.since) < window
            });
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            since: now,
            count: 0,
            locked_until: None,
        });
        if now.duration_since(f.since) >= self.window || f.locked_until.is_some_and(|t| t <= now) {
            *f = Failures {
                since: now,
                count: 0,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.limit {
            f.locked_until = Some(now + self.window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_headers_only() {
        let hs = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            }
        };
        assert!(matches!(
            presented(hs(&[("exeio-api-key", " k ")])),
            Presented::Key("k")
        ));
        assert!(matches!(
            presented(hs(&[("Authorization", "Bearer  k")])),
            Presented::Key("k")
        ));
        assert!(matches!(
            presented(hs(&[("Authorization", "bearer k")])),
            Presented::Key("k")
        ));
        assert!(matches!(
            presented(hs(&[("Authorization", "Basic azp4")])),
            Presented::Key(k) if k.starts_with('\u{0}')
        ));
        assert!(matches!(
            presented(hs(&[("Cookie", "a=1; exeio_session=t0k; b=2")])),
            Presented::Session("t0k")
        ));
        assert!(matches!(
            presented(hs(&[("Cookie", "exeio_session=")])),
            Presented::Nothing
        ));
        assert!(matches!(presented(hs(&[])), Presented::Nothing));
    }

    #[test]
    fn a_key_holds_at_most_32_sessions_and_a_new_one_ends_the_oldest() {
        let who = |kid: &str| Identity {
            name: kid.into(),
            role: crate::keys::Role::Read,
            kid: kid.into(),
        };
        let s = Sessions::default();
        let t0 = Instant::now();
        let tokens: Vec<String> = (0..SESSIONS_PER_KEY as u64 + 1)
            .map(|i| s.open(who("a"), t0 + Duration::from_secs(i)).unwrap())
            .collect();
        let other = s.open(who("b"), t0).unwrap();
        let open = |t: &str| s.map.lock().unwrap().contains_key(t);
        assert!(!open(&tokens[0]), "the oldest of 'a' ended");
        assert!(tokens[1..].iter().all(|t| open(t)));
        assert!(open(&other), "another key's session is untouched");
        assert_eq!(s.map.lock().unwrap().len(), SESSIONS_PER_KEY + 1);
    }

    #[test]
    fn lockout_after_the_limit_then_release() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..2 {
            t.failed(a, t0 + Duration::from_secs(i));
            assert_eq!(t.locked(a, t0 + Duration::from_secs(i)), None);
        }
        t.failed(a, t0 + Duration::from_secs(2));
        assert_eq!(t.locked(a, t0 + Duration::from_secs(2)), Some(60));
        assert_eq!(
            t.locked(b, t0 + Duration::from_secs(2)),
            None,
            "others unaffected"
        );
        assert_eq!(t.locked(a, t0 + Duration::from_secs(62)), None, "released");
        // failures spread over more than the window never lock
        let t = Throttle::new(3, Duration::from_secs(60));
        for i in 0..10 {
            t.failed(b, t0 + Duration::from_secs(40 * i));
        }
        assert_eq!(t.locked(b, t0 + Duration::from_secs(400)), None);
    }
}
