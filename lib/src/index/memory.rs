//! The in-memory backend of the session index, for an application that runs as one process.
//!
//! Same rules as the Redis backend, kept under one mutex; expired entries are dropped lazily
//! when touched and by a sweep at most once a minute. Nothing survives a restart and nothing is
//! shared with other processes: with more than one process, use [`RedisIndex`](super::RedisIndex).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    IndexSettings, Logout, LogoutOutcome, RecordStore, Registration, SessionIndex, SessionInfo,
    SessionRecord, SessionState, StoreError, Target,
};

/// The session index in this process's memory. Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct MemoryIndex {
    inner: Arc<Mutex<Inner>>,
    settings: Arc<IndexSettings>,
}

type IssKey = (String, String);

#[derive(Debug)]
struct Session {
    sub: String,
    sid: Option<String>,
    auth: u64,
    ended: bool,
    expires: Instant,
    created: u64,
    seen: u64,
}

#[derive(Debug, Default)]
struct SidMarker {
    /// iat of a logout of the whole sid.
    all: Option<u64>,
    /// iat of logouts of (sid, sub).
    by_sub: HashMap<String, u64>,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<IssKey, Session>,
    by_sid: HashMap<IssKey, HashSet<String>>,
    by_sub: HashMap<IssKey, HashSet<String>>,
    sid_markers: HashMap<IssKey, SidMarker>,
    sub_markers: HashMap<IssKey, (u64, Instant)>,
    jtis: HashMap<IssKey, Instant>,
    events: HashMap<IssKey, Instant>,
    records: HashMap<String, (Vec<u8>, Instant)>,
    last_sweep: Option<Instant>,
}

fn key(a: &str, b: &str) -> IssKey {
    (a.to_owned(), b.to_owned())
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.sessions.retain(|_, s| s.expires > now);
        let sessions = &self.sessions;
        for index in [&mut self.by_sid, &mut self.by_sub] {
            index.retain(|(iss, _), ids| {
                ids.retain(|id| sessions.contains_key(&key(iss, id)));
                !ids.is_empty()
            });
        }
        self.sid_markers
            .retain(|_, m| m.expires.is_some_and(|e| e > now));
        self.sub_markers.retain(|_, (_, e)| *e > now);
        self.jtis.retain(|_, e| *e > now);
        self.events.retain(|_, e| *e > now);
        self.records.retain(|_, (_, e)| *e > now);
    }

    fn live_session(&self, iss: &str, id: &str, now: Instant) -> Option<&Session> {
        self.sessions.get(&key(iss, id)).filter(|s| s.expires > now)
    }

    fn unindex(&mut self, iss: &str, id: &str, sub: &str, sid: Option<&str>) {
        if let Some(ids) = self.by_sub.get_mut(&key(iss, sub)) {
            ids.remove(id);
        }
        if let Some(sid) = sid
            && let Some(ids) = self.by_sid.get_mut(&key(iss, sid))
        {
            ids.remove(id);
        }
    }

    fn covered(&self, s: &SessionRecord, now: Instant) -> bool {
        let by_sub = self
            .sub_markers
            .get(&key(&s.issuer, &s.sub))
            .is_some_and(|(iat, exp)| *exp > now && *iat >= s.auth_time);
        let by_sid = s.sid.as_deref().is_some_and(|sid| {
            self.sid_markers.get(&key(&s.issuer, sid)).is_some_and(|m| {
                m.expires.is_some_and(|e| e > now)
                    && (m.all.is_some_and(|iat| iat >= s.auth_time)
                        || m.by_sub.get(&s.sub).is_some_and(|iat| *iat >= s.auth_time))
            })
        });
        by_sub || by_sid
    }
}

impl MemoryIndex {
    /// An empty index.
    pub fn new(settings: IndexSettings) -> Self {
        Self {
            inner: Arc::default(),
            settings: Arc::new(settings),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the whole index, so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SessionIndex for MemoryIndex {
    async fn register(&self, s: &SessionRecord) -> Result<Registration, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        let old = inner
            .live_session(&s.issuer, &s.session_id, now)
            .map(|o| (o.ended, o.sub.clone(), o.sid.clone(), o.created));
        if let Some((true, ..)) = old {
            return Ok(Registration::LoggedOut);
        }
        if let Some((_, sub, sid, _)) = &old {
            inner.unindex(&s.issuer, &s.session_id, sub, sid.as_deref());
        }
        let seen = crate::sys::unix_now();
        let created = old.as_ref().map_or(seen, |o| o.3);
        let covered = inner.covered(s, now);
        let expires = now + s.ttl;
        inner.sessions.insert(
            key(&s.issuer, &s.session_id),
            Session {
                sub: s.sub.clone(),
                sid: s.sid.clone(),
                auth: s.auth_time,
                ended: covered,
                expires,
                created,
                seen,
            },
        );
        if covered {
            return Ok(Registration::LoggedOut);
        }
        inner
            .by_sub
            .entry(key(&s.issuer, &s.sub))
            .or_default()
            .insert(s.session_id.clone());
        if let Some(sid) = &s.sid {
            inner
                .by_sid
                .entry(key(&s.issuer, sid))
                .or_default()
                .insert(s.session_id.clone());
        }
        Ok(Registration::Registered)
    }

    async fn logout(&self, l: &Logout<'_>) -> Result<LogoutOutcome, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        if let Some((jti, _)) = l.jti
            && inner
                .jtis
                .get(&key(l.issuer, jti))
                .is_some_and(|e| *e > now)
        {
            return Ok(LogoutOutcome::Replayed);
        }
        let (index_key, only_sub) = match l.target {
            Target::Sid { sid, sub } => (key(l.issuer, sid), sub),
            Target::Sub { sub } => (key(l.issuer, sub), None),
        };
        let index = match l.target {
            Target::Sid { .. } => &inner.by_sid,
            Target::Sub { .. } => &inner.by_sub,
        };
        let candidates: Vec<String> = index
            .get(&index_key)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        let mut ended = Vec::new();
        for id in candidates {
            let Some(s) = inner.sessions.get_mut(&key(l.issuer, &id)) else {
                continue;
            };
            if s.expires <= now || s.auth > l.issued_at || only_sub.is_some_and(|sub| sub != s.sub)
            {
                continue;
            }
            if !s.ended {
                s.ended = true;
                ended.push(id.clone());
            }
            let (sub, sid) = (s.sub.clone(), s.sid.clone());
            inner.unindex(l.issuer, &id, &sub, sid.as_deref());
        }
        let marker_expires = now + self.settings.marker_ttl;
        match l.target {
            Target::Sub { sub } => {
                let m = inner
                    .sub_markers
                    .entry(key(l.issuer, sub))
                    .or_insert((0, marker_expires));
                m.0 = m.0.max(l.issued_at);
                m.1 = m.1.max(marker_expires);
            }
            Target::Sid { sid, sub } => {
                let m = inner.sid_markers.entry(key(l.issuer, sid)).or_default();
                let slot = match sub {
                    None => m.all.get_or_insert(0),
                    Some(sub) => m.by_sub.entry(sub.to_owned()).or_insert(0),
                };
                *slot = (*slot).max(l.issued_at);
                m.expires = Some(m.expires.map_or(marker_expires, |e| e.max(marker_expires)));
            }
        }
        if let Some((jti, until_ms)) = l.jti {
            let ttl = super::millis_until(until_ms, crate::sys::unix_now_ms());
            inner
                .jtis
                .insert(key(l.issuer, jti), now + Duration::from_millis(ttl));
        }
        Ok(LogoutOutcome::Applied { ended })
    }

    async fn end_session(&self, issuer: &str, session_id: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        let live = inner
            .live_session(issuer, session_id, now)
            .map(|s| (s.ended, s.sub.clone(), s.sid.clone()));
        match live {
            Some((true, _, _)) => Ok(false),
            Some((false, sub, sid)) => {
                inner.unindex(issuer, session_id, &sub, sid.as_deref());
                if let Some(s) = inner.sessions.get_mut(&key(issuer, session_id)) {
                    s.ended = true;
                }
                Ok(true)
            }
            None => {
                let tombstone = Session {
                    sub: String::new(),
                    sid: None,
                    auth: 0,
                    ended: true,
                    expires: now + self.settings.marker_ttl,
                    created: 0,
                    seen: 0,
                };
                inner.sessions.insert(key(issuer, session_id), tombstone);
                Ok(false)
            }
        }
    }

    async fn state(&self, issuer: &str, session_id: &str) -> Result<SessionState, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(match inner.live_session(issuer, session_id, now) {
            Some(s) if s.ended => SessionState::Ended,
            Some(_) => SessionState::Active,
            None => SessionState::Unknown,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn event_seen(&self, issuer: &str, id: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .events
            .get(&key(issuer, id))
            .is_some_and(|expires| *expires > now))
    }

    async fn remember_event(
        &self,
        issuer: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        inner.events.insert(key(issuer, id), now + ttl);
        Ok(())
    }

    async fn sessions(&self, issuer: &str, sub: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        let mut found: Vec<SessionInfo> = inner
            .by_sub
            .get(&key(issuer, sub))
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let s = inner.live_session(issuer, id, now)?;
                (!s.ended && s.sub == sub).then(|| SessionInfo {
                    session_id: id.clone(),
                    sid: s.sid.clone(),
                    auth_time: s.auth,
                    created: s.created,
                    seen: s.seen,
                })
            })
            .collect();
        found.sort_by(|a, b| (a.auth_time, &a.session_id).cmp(&(b.auth_time, &b.session_id)));
        Ok(found)
    }
}

impl RecordStore for MemoryIndex {
    async fn create_record(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        if inner.records.get(id).is_some_and(|(_, e)| *e > now) {
            return Ok(false);
        }
        inner
            .records
            .insert(id.to_owned(), (data.to_vec(), now + ttl));
        Ok(true)
    }

    async fn put_record(&self, id: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        inner
            .records
            .insert(id.to_owned(), (data.to_vec(), now + ttl));
        Ok(())
    }

    async fn get_record(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .records
            .get(id)
            .filter(|(_, e)| *e > now)
            .map(|(d, _)| d.clone()))
    }

    async fn get_records(&self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(ids
            .iter()
            .map(|id| {
                inner
                    .records
                    .get(id)
                    .filter(|(_, e)| *e > now)
                    .map(|(d, _)| d.clone())
            })
            .collect())
    }

    async fn delete_record(&self, id: &str) -> Result<(), StoreError> {
        self.lock().records.remove(id);
        Ok(())
    }
}
