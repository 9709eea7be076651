//! The in-memory backend of the session index, for an application that runs as one process.
//!
//! Same rules as the Redis backend, kept under one mutex; expired entries are dropped lazily
//! when touched and by a sweep at most once a minute. Nothing survives a restart and nothing is
//! shared with other processes: with more than one process, use [`RedisIndex`](super::RedisIndex).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::markers::{self, Marker, Markers};
use super::{
    EventClaim, IndexSettings, Logout, LogoutOutcome, RecordStore, Registration, SessionIndex,
    SessionInfo, SessionKey, SessionRecord, SessionState, SidLogout, StoreError, Target,
};
use crate::sys::unix_now;

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
    /// Seconds since the epoch.
    until: u64,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<IssKey, Session>,
    by_sid: HashMap<IssKey, HashSet<String>>,
    by_sub: HashMap<IssKey, HashSet<String>>,
    markers: HashMap<String, Markers>,
    jtis: HashMap<IssKey, Instant>,
    /// Event claims: applied (`true`) or being applied, until when.
    events: HashMap<IssKey, (bool, Instant)>,
    /// Users' customers, until when (seconds since the epoch).
    customers: HashMap<IssKey, (String, u64)>,
    leases: HashMap<IssKey, Instant>,
    records: HashMap<String, (Vec<u8>, Instant)>,
    /// The activity list, oldest first.
    activity: std::collections::VecDeque<Vec<u8>>,
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
        let secs = unix_now();
        self.sessions.retain(|_, s| s.until > secs);
        let sessions = &self.sessions;
        for index in [&mut self.by_sid, &mut self.by_sub] {
            index.retain(|(iss, _), ids| {
                ids.retain(|id| sessions.contains_key(&key(iss, id)));
                !ids.is_empty()
            });
        }
        for markers in self.markers.values_mut() {
            markers.prune(secs);
        }
        self.jtis.retain(|_, e| *e > now);
        self.events.retain(|_, (_, e)| *e > now);
        self.customers.retain(|_, (_, until)| *until > secs);
        self.records.retain(|_, (_, e)| *e > now);
    }

    fn live_session(&self, iss: &str, id: &str) -> Option<&Session> {
        self.sessions
            .get(&key(iss, id))
            .filter(|s| s.until > unix_now())
    }

    /// Remove a session's entry; returns it.
    fn remove(&mut self, iss: &str, id: &str) -> Option<Session> {
        let session = self.sessions.remove(&key(iss, id))?;
        if let Some(ids) = self.by_sub.get_mut(&key(iss, &session.sub)) {
            ids.remove(id);
        }
        if let Some(sid) = &session.sid
            && let Some(ids) = self.by_sid.get_mut(&key(iss, sid))
        {
            ids.remove(id);
        }
        Some(session)
    }

    fn covered(&self, s: &SessionKey<'_>) -> bool {
        self.markers
            .get(s.issuer)
            .is_some_and(|m| m.covers(s, unix_now()))
    }

    fn mark(&mut self, issuer: &str, field: String, marker: Marker) {
        self.markers
            .entry(issuer.to_owned())
            .or_default()
            .apply(&field, marker, unix_now());
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

    fn marker_secs(&self) -> u64 {
        self.settings.marker_ttl.as_secs().max(1)
    }
}

impl SessionIndex for MemoryIndex {
    async fn register(&self, s: &SessionRecord) -> Result<Registration, StoreError> {
        super::check_record(s)?;
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        if inner.covered(&s.key()) {
            return Ok(Registration::LoggedOut);
        }
        // Never shorten an entry: a record written with the longer lifetime may be in the store.
        let previous = inner
            .sessions
            .get(&key(&s.issuer, &s.session_id))
            .map_or(0, |old| old.until);
        inner.remove(&s.issuer, &s.session_id);
        let until = unix_now()
            .saturating_add(super::ceil_secs(s.ttl))
            .max(previous);
        inner.sessions.insert(
            key(&s.issuer, &s.session_id),
            Session {
                sub: s.sub.clone(),
                sid: s.sid.clone(),
                auth: s.auth_time,
                until,
            },
        );
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
        if let Some(customer) = &s.customer {
            let remembered = until.saturating_add(self.marker_secs());
            let entry = inner
                .customers
                .entry(key(&s.issuer, &s.sub))
                .or_insert_with(|| (customer.clone(), 0));
            *entry = (customer.clone(), entry.1.max(remembered));
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
        let secs = unix_now();
        let (mut ended, mut latest) = (Vec::new(), 0);
        // The users a sid logout reaches: its sub, or every user of the OP session.
        let mut named: Vec<String> = only_sub.map(str::to_owned).into_iter().collect();
        let mut end = |inner: &mut Inner, id: String, wanted: &dyn Fn(&Session) -> bool| {
            let Some(s) = inner.sessions.get(&key(l.issuer, &id)) else {
                return;
            };
            if s.until <= secs {
                inner.remove(l.issuer, &id);
                return;
            }
            if s.auth > l.issued_at || !wanted(s) {
                return;
            }
            latest = latest.max(s.until);
            inner.remove(l.issuer, &id);
            ended.push(id);
        };
        for id in candidates {
            if let Some(s) = inner.sessions.get(&key(l.issuer, &id))
                && only_sub.is_none()
                && !named.contains(&s.sub)
            {
                named.push(s.sub.clone());
            }
            end(&mut inner, id, &|s| only_sub.is_none_or(|sub| sub == s.sub));
        }
        let mut fields = vec![match l.target {
            Target::Sub { sub } => markers::sub_field(sub),
            Target::Sid { sid, sub: None } => markers::sid_field(sid),
            Target::Sid {
                sid,
                sub: Some(sub),
            } => markers::sid_sub_field(sid, sub),
        }];
        if matches!(l.target, Target::Sid { .. }) && l.sid_logout != SidLogout::Session {
            let sidless = l.sid_logout == SidLogout::SessionAndSidless;
            for sub in &named {
                let ids: Vec<String> = inner
                    .by_sub
                    .get(&key(l.issuer, sub))
                    .map(|ids| ids.iter().cloned().collect())
                    .unwrap_or_default();
                for id in ids {
                    end(&mut inner, id, &|s| !sidless || s.sid.is_none());
                }
                fields.push(if sidless {
                    markers::sidless_field(sub)
                } else {
                    markers::sub_field(sub)
                });
            }
        }
        let marker = Marker {
            iat: l.issued_at,
            expires_at: (secs + self.marker_secs()).max(latest + 60),
        };
        for field in fields {
            inner.mark(l.issuer, field, marker);
        }
        if let Some((jti, until_ms)) = l.jti {
            let ttl = super::millis_until(until_ms, crate::sys::unix_now_ms());
            inner
                .jtis
                .insert(key(l.issuer, jti), now + Duration::from_millis(ttl));
        }
        Ok(LogoutOutcome::Applied { ended })
    }

    async fn end_session(
        &self,
        issuer: &str,
        session_id: &str,
        sub: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        let secs = unix_now();
        let found = match inner.sessions.get(&key(issuer, session_id)) {
            Some(s) if sub.is_some_and(|sub| sub == s.sub) => {
                inner.remove(issuer, session_id).filter(|s| s.until > secs)
            }
            _ => None,
        };
        let expires_at = found
            .as_ref()
            .map_or(0, |s| s.until + 60)
            .max(secs + self.marker_secs());
        inner.mark(
            issuer,
            markers::id_field(session_id),
            Marker {
                iat: secs,
                expires_at,
            },
        );
        Ok(found.is_some())
    }

    async fn state(&self, s: &SessionKey<'_>) -> Result<SessionState, StoreError> {
        Ok(self.known(s))
    }

    fn known_state(&self, s: &SessionKey<'_>) -> Option<SessionState> {
        Some(self.known(s))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim(&self, issuer: &str, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.leases.retain(|_, until| *until > now);
        let lease = key(issuer, name);
        if inner.leases.contains_key(&lease) {
            return Ok(false);
        }
        inner.leases.insert(lease, now + ttl);
        Ok(true)
    }

    async fn leased(&self, issuer: &str, name: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .leases
            .get(&key(issuer, name))
            .is_some_and(|until| *until > now))
    }

    async fn claim_event(
        &self,
        issuer: &str,
        event: &str,
        lease: Duration,
    ) -> Result<EventClaim, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        let k = key(issuer, event);
        Ok(match inner.events.get(&k) {
            Some((true, until)) if *until > now => EventClaim::Done,
            Some((false, until)) if *until > now => EventClaim::Busy,
            _ => {
                inner.events.insert(k, (false, now + lease));
                EventClaim::Claimed
            }
        })
    }

    async fn finish_event(
        &self,
        issuer: &str,
        event: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        self.lock()
            .events
            .insert(key(issuer, event), (true, now + ttl));
        Ok(())
    }

    async fn release_event(&self, issuer: &str, event: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let k = key(issuer, event);
        if inner.events.get(&k).is_some_and(|(done, _)| !done) {
            inner.events.remove(&k);
        }
        Ok(())
    }

    async fn customer_of(&self, issuer: &str, sub: &str) -> Result<Option<String>, StoreError> {
        let secs = unix_now();
        Ok(self
            .lock()
            .customers
            .get(&key(issuer, sub))
            .filter(|(_, until)| *until > secs)
            .map(|(customer, _)| customer.clone()))
    }

    async fn op_session_users(&self, issuer: &str, sid: &str) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        let mut users: Vec<String> = inner
            .by_sid
            .get(&key(issuer, sid))
            .into_iter()
            .flatten()
            .filter_map(|id| inner.live_session(issuer, id).map(|s| s.sub.clone()))
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    async fn sessions(&self, issuer: &str, sub: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<SessionInfo> = inner
            .by_sub
            .get(&key(issuer, sub))
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let s = inner.live_session(issuer, id)?;
                let info = SessionInfo {
                    session_id: id.clone(),
                    sid: s.sid.clone(),
                    auth_time: s.auth,
                    indexed_until: s.until,
                };
                let ended_by_id = inner.covered(&SessionKey {
                    issuer,
                    session_id: id,
                    sub,
                    sid: None,
                    auth_time: u64::MAX,
                });
                (s.sub == sub && !ended_by_id).then_some(info)
            })
            .collect();
        found.sort_by(|a, b| (a.auth_time, &a.session_id).cmp(&(b.auth_time, &b.session_id)));
        Ok(found)
    }

    async fn record_activity(&self, entry: &[u8], keep: usize) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.activity.push_back(entry.to_vec());
        while inner.activity.len() > keep.max(1) {
            inner.activity.pop_front();
        }
        Ok(())
    }

    async fn activity(&self, count: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .activity
            .iter()
            .rev()
            .take(count)
            .cloned()
            .collect())
    }
}

impl MemoryIndex {
    fn known(&self, s: &SessionKey<'_>) -> SessionState {
        let inner = self.lock();
        if inner.covered(s) {
            return SessionState::Ended;
        }
        match inner.live_session(s.issuer, s.session_id) {
            Some(_) => SessionState::Active,
            None => SessionState::Unknown,
        }
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

    async fn put_record_unless_newer(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
        generation: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        if let Some((stored, _)) = inner.records.get(id).filter(|(_, e)| *e > now)
            && super::stored_generation(stored) > generation
        {
            return Ok(Some(stored.clone()));
        }
        inner
            .records
            .insert(id.to_owned(), (data.to_vec(), now + ttl));
        Ok(None)
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
