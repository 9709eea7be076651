//! Which connections a listener keeps: what a connection must do to keep its place, and which
//! one gives way when there is no room. The rules of mature servers, in one place:
//!
//! - **Progress.** A request's head and body must arrive at `min_data_rate` bytes a second
//!   after `rate_grace` (Apache's `mod_reqtimeout` `MinRate`: each byte extends the deadline by
//!   1/rate seconds), so a sender dripping bytes is cut in about a second, not after ten. A
//!   new connection that sends nothing is such a sender too.
//! - **Per source.** One address holds at most `max_connections_per_source` (nginx's
//!   `limit_conn $binary_remote_addr`); a new connection beyond it takes the place of that
//!   source's slowest, so a flood from one address competes only with itself. Trusted senders
//!   and trusted proxies (whose address many clients share) are exempt.
//! - **When full**, a connection of the source holding the most connections gives way — of a
//!   source holding more than the arrival's, so sources take turns: a flood from many addresses
//!   evicts its own kind, never an OP's one connection however fresh, and cannot churn by
//!   evicting its equals — and of that source the one making the least progress, whatever
//!   phase it is in: first the longest idle between requests, then the slowest request (by
//!   bytes a second since its phase began), connections younger than [`YOUTH`] last; never one
//!   whose request has fully arrived and is being handled. The new connection takes its place;
//!   when nothing may give way, it is refused.
//! - **Trusted senders** (the OPs' networks) may use `reserved` places no one else can, and an
//!   untrusted arrival never takes a trusted sender's place.
//!
//! The phases of a connection: waiting for a request's first byte (`Waiting`: new, or idle
//! after an answer), receiving its head (`Head`), its body (`Body`), and handling it
//! (`Handling`, from the body's end to the answer). [`Connections::sweep`] applies the rate and
//! the idle timeout; [`Connections::admit`] the rest. Times are milliseconds since the
//! listener started, so that every field is an atomic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::Limits;

/// A connection younger than this is shed last: its first bytes may be on their way.
pub(crate) const YOUTH: Duration = Duration::from_millis(250);

/// Where a connection is in its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// New, or between requests: waiting for a request's first byte.
    Waiting = 0,
    /// Receiving a request's head.
    Head = 1,
    /// Receiving a request's body.
    Body = 2,
    /// The request has arrived and is being handled: never shed.
    Handling = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Head,
            2 => Self::Body,
            3 => Self::Handling,
            _ => Self::Waiting,
        }
    }
}

/// How a connection is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// After the request in progress (idle, shutting down).
    Graceful,
    /// At once, mid-request (too slow, or its place given to another).
    Now,
}

/// Why a connection was closed or refused, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its request arrived slower than the minimum rate.
    Slow,
    /// Idle between requests for the idle timeout.
    Idle,
    /// Its place was given to a new connection: the listener was full.
    Full,
    /// Its place was given to a new connection of its source: the source was at its limit.
    PerSource,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Slow => "slow",
            Self::Idle => "idle",
            Self::Full => "full",
            Self::PerSource => "per_source",
        }
    }
}

/// One connection, as the listener sees it.
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    source: IpAddr,
    /// From a trusted sender's network.
    trusted: bool,
    phase: AtomicU8,
    /// When the phase began (ms).
    phase_start: AtomicU64,
    /// The bytes received before the phase began.
    phase_base: AtomicU64,
    /// Every byte received.
    received: AtomicU64,
    /// 0: open; 1: asked to close gracefully; 2: to close now.
    closing: AtomicU8,
    /// Whether it still counts toward the limits (cleared once, when shed or removed).
    counted: AtomicBool,
    /// Woken when asked to close.
    pub(crate) close: Notify,
    /// A request head with both `Content-Length` and `Transfer-Encoding` came in.
    pub(crate) ambiguous: AtomicBool,
    clock: Clock,
}

impl Connection {
    /// Enter `phase` now.
    pub(crate) fn enter(&self, phase: Phase) {
        self.phase_start.store(self.clock.now(), Ordering::Release);
        self.phase_base
            .store(self.received.load(Ordering::Acquire), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// `bytes` more were received: a request's first byte starts its head.
    pub(crate) fn received(&self, bytes: usize) {
        let before = self
            .received
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::AcqRel);
        if bytes > 0 && self.phase() == Phase::Waiting {
            self.phase_start.store(self.clock.now(), Ordering::Release);
            self.phase_base.store(before, Ordering::Release);
            self.phase.store(Phase::Head as u8, Ordering::Release);
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// How it was asked to close, if it was.
    pub(crate) fn closing(&self) -> Option<Close> {
        match self.closing.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Close::Graceful),
            _ => Some(Close::Now),
        }
    }

    /// Ask it to close (a `Now` overrides a `Graceful`).
    pub(crate) fn ask_to_close(&self, how: Close) {
        let mode = match how {
            Close::Graceful => 1,
            Close::Now => 2,
        };
        if self.closing.fetch_max(mode, Ordering::AcqRel) < mode {
            self.close.notify_one();
        }
    }

    fn progress(&self, now: u64) -> Progress {
        let phase = self.phase();
        let since = now.saturating_sub(self.phase_start.load(Ordering::Acquire));
        let bytes = self
            .received
            .load(Ordering::Acquire)
            .saturating_sub(self.phase_base.load(Ordering::Acquire));
        Progress {
            phase,
            since,
            bytes,
        }
    }
}

/// A connection's progress in its phase.
#[derive(Debug, Clone, Copy)]
struct Progress {
    phase: Phase,
    /// Milliseconds in the phase.
    since: u64,
    /// Bytes received in the phase.
    bytes: u64,
}

impl Progress {
    /// The shedding order: lower gives way first; `None` is never shed.
    fn rank(&self, youth: u64) -> Option<(u8, u64, u64)> {
        match self.phase {
            Phase::Handling => None,
            // The longest idle first.
            Phase::Waiting if self.bytes == 0 && self.since >= youth => {
                Some((0, u64::MAX - self.since, 0))
            }
            phase => {
                // Bytes a second since the phase began (per mille, to rank slow senders).
                let rate = self.bytes.saturating_mul(1_000_000) / self.since.max(1);
                let young = u8::from(self.since < youth || phase == Phase::Waiting);
                Some((1 + young, rate, u64::MAX - self.since))
            }
        }
    }

    /// Whether the request is behind the minimum rate: more than `grace` plus a second per
    /// `rate` bytes since its phase began.
    fn too_slow(&self, rate: u64, grace: u64) -> bool {
        if rate == 0 || !matches!(self.phase, Phase::Head | Phase::Body) {
            return false;
        }
        let earned = self.bytes.saturating_mul(1000) / rate;
        self.since > grace.saturating_add(earned)
    }
}

/// Milliseconds since the listener started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Full, and every connection is one that may not give way.
    Full,
    /// Its source is at its limit with requests that may not give way.
    PerSource,
}

impl Refused {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::PerSource => "per_source",
        }
    }
}

/// The limits as admission applies them.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) cap: usize,
    pub(crate) reserved: usize,
    pub(crate) per_source: Option<usize>,
    pub(crate) min_rate: u64,
    pub(crate) grace: u64,
    pub(crate) idle: u64,
    pub(crate) youth: u64,
    limits: Limits,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Rules {
    /// The rules of a listener of `cap` connections under `limits`.
    pub(crate) fn new(cap: usize, limits: &Limits) -> Self {
        let reserved = match (
            limits.trusted_senders.is_empty(),
            limits.reserved_connections,
        ) {
            (true, _) => 0,
            (false, Some(reserved)) => reserved.min(cap.saturating_sub(1)),
            (false, None) => cap / 10,
        };
        Self {
            cap,
            reserved,
            per_source: limits.max_connections_per_source,
            min_rate: limits.min_data_rate,
            grace: millis(limits.rate_grace),
            idle: millis(limits.idle_timeout),
            youth: millis(YOUTH),
            limits: limits.clone(),
        }
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct Connections {
    rules: Rules,
    clock: Clock,
    open: Mutex<Registry>,
    next: AtomicU64,
    empty: Notify,
}

#[derive(Debug, Default)]
struct Registry {
    all: HashMap<u64, Arc<Connection>>,
    /// Counted connections per source.
    per_source: HashMap<IpAddr, usize>,
    /// The sources among them that are trusted senders.
    trusted_sources: std::collections::HashSet<IpAddr>,
    /// Counted connections, and those of untrusted sources.
    counted: usize,
    untrusted: usize,
}

impl Registry {
    /// Stop counting `connection` toward the limits (once).
    fn uncount(&mut self, connection: &Connection) {
        if !connection.counted.swap(false, Ordering::AcqRel) {
            return;
        }
        self.counted = self.counted.saturating_sub(1);
        if !connection.trusted {
            self.untrusted = self.untrusted.saturating_sub(1);
        }
        if let Some(n) = self.per_source.get_mut(&connection.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&connection.source);
                self.trusted_sources.remove(&connection.source);
            }
        }
    }

    /// The counted connection of `source` that gives way first, if any may.
    fn least_progress_of(&self, source: IpAddr, now: u64, youth: u64) -> Option<Arc<Connection>> {
        self.all
            .values()
            .filter(|c| c.source == source && c.counted.load(Ordering::Acquire))
            .filter_map(|c| c.progress(now).rank(youth).map(|rank| (rank, c)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, c)| Arc::clone(c))
    }

    /// The connection that gives way to an arrival from a source holding `held`: of a source
    /// holding more (any, for a trusted arrival, untrusted first), the heaviest first, the one
    /// making the least progress. Sources take turns this way: a flood from some addresses
    /// evicts its own kind, never the one connection of a sender elsewhere, however fresh,
    /// and a source cannot take the place of one holding no more than it does.
    fn give_way(
        &self,
        held: usize,
        trusted: bool,
        now: u64,
        youth: u64,
    ) -> Option<Arc<Connection>> {
        let mut sources: Vec<(usize, bool, IpAddr)> = self
            .per_source
            .iter()
            .filter(|(_, count)| trusted || **count > held)
            .map(|(source, count)| {
                let theirs_trusted = self.trusted_sources.contains(source);
                (*count, theirs_trusted, *source)
            })
            .filter(|(_, theirs_trusted, _)| trusted || !theirs_trusted)
            .collect();
        // Untrusted before trusted, then the most held first.
        sources
            .sort_by_key(|(count, theirs_trusted, _)| (*theirs_trusted, std::cmp::Reverse(*count)));
        sources
            .into_iter()
            .find_map(|(_, _, source)| self.least_progress_of(source, now, youth))
    }
}

impl Connections {
    pub(crate) fn new(rules: Rules) -> Self {
        Self {
            rules,
            clock: Clock(Instant::now()),
            open: Mutex::default(),
            next: AtomicU64::new(0),
            empty: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().all.len()
    }

    /// Admit a connection from `source`, making room if need be: the connections that gave
    /// way (asked to close now) with why, or why the new one is refused.
    pub(crate) fn admit(&self, source: IpAddr) -> Result<(Arc<Connection>, Vec<Reason>), Refused> {
        let source = crate::net::canonical(source);
        let limits = &self.rules.limits;
        let trusted = limits.trusted_senders.contains(source);
        let exempt = trusted || limits.trusted_proxies.contains(source);
        let now = self.clock.now();
        let youth = self.rules.youth;
        let mut open = self.lock();
        let mut shed = Vec::new();
        if let Some(limit) = self.rules.per_source.filter(|_| !exempt)
            && open.per_source.get(&source).copied().unwrap_or(0) >= limit
        {
            let victim = open
                .least_progress_of(source, now, youth)
                .ok_or(Refused::PerSource)?;
            victim.ask_to_close(Close::Now);
            open.uncount(&victim);
            shed.push(Reason::PerSource);
        }
        let cap = self.rules.cap;
        let full = if trusted {
            open.counted >= cap
        } else {
            open.counted >= cap || open.untrusted >= cap.saturating_sub(self.rules.reserved)
        };
        if full {
            let held = open.per_source.get(&source).copied().unwrap_or(0);
            let victim = open
                .give_way(held, trusted, now, youth)
                .ok_or(Refused::Full)?;
            victim.ask_to_close(Close::Now);
            open.uncount(&victim);
            shed.push(Reason::Full);
        }
        let connection = Arc::new(Connection {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            source,
            trusted,
            phase: AtomicU8::new(Phase::Waiting as u8),
            phase_start: AtomicU64::new(now),
            phase_base: AtomicU64::new(0),
            received: AtomicU64::new(0),
            closing: AtomicU8::new(0),
            counted: AtomicBool::new(true),
            close: Notify::new(),
            ambiguous: AtomicBool::new(false),
            clock: self.clock,
        });
        open.counted += 1;
        if trusted {
            open.trusted_sources.insert(source);
        } else {
            open.untrusted += 1;
        }
        *open.per_source.entry(source).or_default() += 1;
        open.all.insert(connection.id, Arc::clone(&connection));
        // A new connection that sends nothing is as slow as can be: its head phase begins
        // now (the grace applies from here).
        connection.enter(Phase::Head);
        Ok((connection, shed))
    }

    pub(crate) fn remove(&self, connection: &Connection) {
        let mut open = self.lock();
        open.uncount(connection);
        open.all.remove(&connection.id);
        if open.all.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Close the requests behind the minimum rate (now) and the connections idle for the idle
    /// timeout (gracefully); why each was closed.
    pub(crate) fn sweep(&self) -> Vec<Reason> {
        let now = self.clock.now();
        let rules = &self.rules;
        let mut open = self.lock();
        let mut closed = Vec::new();
        let mut gone = Vec::new();
        for connection in open.all.values() {
            if connection.closing().is_some() {
                continue;
            }
            let progress = connection.progress(now);
            if progress.too_slow(rules.min_rate, rules.grace) {
                connection.ask_to_close(Close::Now);
                gone.push(Arc::clone(connection));
                closed.push(Reason::Slow);
            } else if progress.phase == Phase::Waiting && progress.since >= rules.idle {
                connection.ask_to_close(Close::Graceful);
                closed.push(Reason::Idle);
            }
        }
        for connection in gone {
            open.uncount(&connection);
        }
        closed
    }

    pub(crate) fn close_all(&self) {
        for connection in self.lock().all.values() {
            connection.ask_to_close(Close::Graceful);
        }
    }

    pub(crate) async fn wait_empty(&self) {
        loop {
            let notified = self.empty.notified();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerConfig;

    fn limits(toml: &str) -> Limits {
        let config: ListenerConfig = toml::from_str(toml).expect("listener settings");
        let origins = crate::config::Origins::default();
        let mut check = crate::config::Check::for_tests(&origins);
        config.validate(&mut check).expect("valid").limits
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 1, last])
    }

    fn connections(cap: usize, toml: &str) -> Connections {
        let mut rules = Rules::new(cap, &limits(toml));
        rules.youth = 0;
        Connections::new(rules)
    }

    fn admit(c: &Connections, source: IpAddr) -> Arc<Connection> {
        c.admit(source).map(|(conn, _)| conn).expect("admitted")
    }

    #[test]
    fn a_full_listener_sheds_the_least_progress_never_a_request_being_handled() {
        let c = connections(3, "");
        let handled = admit(&c, ip(1));
        handled.enter(Phase::Handling);
        let idle = admit(&c, ip(1));
        idle.enter(Phase::Waiting);
        let slow = admit(&c, ip(1));
        slow.enter(Phase::Body);
        // Full: the idle one goes first, then the slow body; the handled request stays.
        let (fresh, shed) = c.admit(ip(4)).expect("room made");
        assert_eq!(shed, vec![Reason::Full]);
        assert_eq!(idle.closing(), Some(Close::Now));
        fresh.received(100);
        let (_, _) = c.admit(ip(5)).expect("room made");
        assert_eq!(slow.closing(), Some(Close::Now));
        assert_eq!(handled.closing(), None);
    }

    #[test]
    fn the_slowest_request_gives_way() {
        let c = connections(2, "");
        let fast = admit(&c, ip(1));
        fast.received(4000);
        let slow = admit(&c, ip(1));
        slow.received(1);
        std::thread::sleep(Duration::from_millis(5));
        c.admit(ip(3)).expect("room made");
        assert_eq!(slow.closing(), Some(Close::Now));
        assert_eq!(fast.closing(), None);
    }

    #[test]
    fn the_source_holding_the_most_gives_way_first() {
        let c = connections(4, "");
        let op = admit(&c, ip(9));
        let flood: Vec<_> = (0..3).map(|_| admit(&c, ip(1))).collect();
        for f in &flood {
            f.received(500);
        }
        // Full: the flood's source holds the most, so its arrivals are refused, and the OP's
        // connection (the freshest and slowest) stays.
        for _ in 0..5 {
            assert_eq!(c.admit(ip(1)).err(), Some(Refused::Full));
        }
        assert_eq!(op.closing(), None);
        // Another sender's arrival takes a place of the flood's.
        let (_, shed) = c.admit(ip(8)).expect("room made");
        assert_eq!(shed, vec![Reason::Full]);
        assert_eq!(op.closing(), None);
        assert_eq!(
            flood
                .iter()
                .filter(|f| f.closing() == Some(Close::Now))
                .count(),
            1
        );
    }

    #[test]
    fn a_source_at_its_limit_competes_with_itself() {
        let c = connections(100, "max_connections_per_source = 2");
        let first = admit(&c, ip(1));
        admit(&c, ip(1)).received(100);
        let other = admit(&c, ip(2));
        let (_, shed) = c.admit(ip(1)).expect("room made in its own share");
        assert_eq!(shed, vec![Reason::PerSource]);
        assert_eq!(first.closing(), Some(Close::Now));
        assert_eq!(other.closing(), None);
        // A source whose requests are all being handled is refused instead.
        let c = connections(100, "max_connections_per_source = 1");
        admit(&c, ip(1)).enter(Phase::Handling);
        assert_eq!(c.admit(ip(1)).err(), Some(Refused::PerSource));
    }

    #[test]
    fn trusted_senders_have_places_of_their_own() {
        let c = connections(
            10,
            r#"trusted_senders = ["127.0.2.0/24"]
               reserved_connections = 2"#,
        );
        let attackers: Vec<_> = (0..8).map(|i| admit(&c, ip(i))).collect();
        for a in &attackers {
            a.enter(Phase::Handling);
        }
        // Untrusted sources are full at 8 of 10 and may not shed a handled request.
        assert_eq!(c.admit(ip(50)).err(), Some(Refused::Full));
        let op = IpAddr::from([127, 0, 2, 1]);
        let mine = admit(&c, op);
        admit(&c, op).enter(Phase::Handling);
        // A trusted sender at the cap sheds an untrusted one, never the other way round.
        attackers[0].enter(Phase::Waiting);
        let (_, shed) = c.admit(op).expect("room made");
        assert_eq!(shed, vec![Reason::Full]);
        assert_eq!(attackers[0].closing(), Some(Close::Now));
        mine.enter(Phase::Waiting);
        assert_eq!(c.admit(ip(51)).err(), Some(Refused::Full));
        assert_eq!(mine.closing(), None);
    }

    #[test]
    fn a_request_behind_the_minimum_rate_is_cut() {
        let progress = |phase, since, bytes| Progress {
            phase,
            since,
            bytes,
        };
        // 500 B/s after a second: 1 byte a second is cut just after the grace.
        assert!(!progress(Phase::Body, 900, 1).too_slow(500, 1000));
        assert!(progress(Phase::Body, 1100, 1).too_slow(500, 1000));
        // Each byte extends the deadline by 2 ms: 4,000 bytes earn 8 s.
        assert!(!progress(Phase::Body, 8900, 4000).too_slow(500, 1000));
        assert!(progress(Phase::Head, 1100, 0).too_slow(500, 1000));
        // Idle between requests and handling are not rated; rate 0 rates nothing.
        assert!(!progress(Phase::Waiting, 60_000, 0).too_slow(500, 1000));
        assert!(!progress(Phase::Handling, 60_000, 0).too_slow(500, 1000));
        assert!(!progress(Phase::Body, 60_000, 0).too_slow(0, 1000));
    }

    #[test]
    fn the_sweep_cuts_slow_requests_and_idle_connections() {
        let c = connections(
            10,
            "rate_grace_secs = 1\nidle_timeout_secs = 1\nmin_data_rate = 500",
        );
        let silent = admit(&c, ip(1));
        let idle = admit(&c, ip(2));
        idle.enter(Phase::Waiting);
        let busy = admit(&c, ip(3));
        busy.enter(Phase::Handling);
        std::thread::sleep(Duration::from_millis(1100));
        let mut closed = c.sweep();
        closed.sort_by_key(|r| r.label());
        assert_eq!(closed, vec![Reason::Idle, Reason::Slow]);
        assert_eq!(silent.closing(), Some(Close::Now));
        assert_eq!(idle.closing(), Some(Close::Graceful));
        assert_eq!(busy.closing(), None);
    }
}
