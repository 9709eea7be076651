//! The activity the console shows: every event's audit line, also kept in the index as a
//! capped list (a Redis stream of the latest [`KEPT`] entries), so the central view answers
//! "who ended what, whose, when, from which input" without a log pipeline. An entry is written
//! before the event's answer (one more round trip to Redis), so the page shows an action as soon
//! as it is done; a failure to write one changes nothing else: the log line stays the record of
//! truth.

use serde::{Deserialize, Serialize};

use super::audit;
use super::{Action, CoreError, Event, Outcome, Sender};
use crate::index::SessionIndex;
use crate::sys::unix_now;

/// How many entries the index keeps (Redis trims the stream to about this many).
pub(super) const KEPT: usize = 10_000;

/// One event as the activity list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Activity {
    /// When the core handled it, seconds since the epoch.
    pub at: u64,
    /// The input it came through (`backchannel`, `admin`, `console`, `scim`, …).
    pub input: String,
    /// Its sender (an issuer, a token's fingerprint, an operator).
    pub sender: String,
    /// The issuer its actions name (`*` when they name several: then only viewers of every
    /// issuer see it).
    pub issuer: String,
    /// The kinds of its actions, comma-separated.
    pub action: String,
    /// Whom each action named (a user, an OP session, a session by its handle, never its id),
    /// `; `-separated.
    pub whom: String,
    /// How many sessions it ended.
    pub ended: usize,
    /// `applied`, `no_session`, `out_of_scope`, `duplicate` or why it was not applied.
    pub outcome: String,
}

/// The entry of `event`, which came to `result`; `None` for an event without actions.
pub(super) fn of(event: &Event, result: &Result<Outcome, CoreError>) -> Option<Activity> {
    let first = event.actions().first()?;
    let (outcome, ended) = audit::outcome(result);
    Some(Activity {
        at: unix_now(),
        input: event.sender().input().to_owned(),
        sender: event.sender().name().to_owned(),
        issuer: if event.actions().iter().all(|a| a.issuer() == first.issuer()) {
            first.issuer().to_owned()
        } else {
            "*".to_owned()
        },
        action: audit::kinds(event),
        whom: event
            .actions()
            .iter()
            .map(whom)
            .collect::<Vec<_>>()
            .join("; "),
        ended,
        outcome: outcome.to_owned(),
    })
}

/// Whom `action` named, for people to read.
fn whom(action: &Action) -> String {
    match action {
        Action::Logout(token) => match (&token.sub, &token.sid) {
            (Some(sub), Some(sid)) => format!("{sub} (OP session {sid})"),
            (Some(sub), None) => sub.clone(),
            (None, Some(sid)) => format!("OP session {sid}"),
            (None, None) => String::new(),
        },
        Action::EndSession {
            session_id, sub, ..
        } => match sub {
            Some(sub) => format!("{sub} (session {})", session_handle(session_id)),
            None => format!("session {}", session_handle(session_id)),
        },
        Action::EndUserSessions { sub, clients, .. } => match clients {
            Some(clients) => format!("{sub} in {}", clients.join(", ")),
            None => sub.clone(),
        },
        Action::RevokeUser { sub, .. } => sub.clone(),
        Action::RevokeOpSession { sid, .. } => format!("OP session {sid}"),
    }
}

/// A session's handle: the first 16 hex digits of its id's SHA-256. Session ids are the
/// applications' cookies, so what people see and name is this.
pub(crate) fn session_handle(session_id: &str) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session_id.as_bytes());
    digest
        .as_ref()
        .iter()
        .take(8)
        .fold(String::new(), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Whether `viewer` may see `entry`: every entry for a sender acting on every issuer, its
/// issuer's for one scoped to an issuer, and only its own for one scoped to a customer or a
/// user (entries do not say whose customer a user was).
pub(super) fn visible_to(viewer: &Sender, entry: &Activity) -> bool {
    let scope = viewer.scope();
    if scope.customer().is_some() || scope.the_user().is_some() {
        return entry.input == viewer.input() && entry.sender == viewer.name();
    }
    scope.the_issuer().is_none_or(|own| own == entry.issuer)
}

/// Write `entry` to the index.
pub(super) async fn keep<S: SessionIndex>(index: &S, entry: Activity) {
    let Ok(bytes) = serde_json::to_vec(&entry) else {
        return;
    };
    if let Err(error) = index.record_activity(&bytes, KEPT).await {
        tracing::warn!(%error, "could not keep the activity entry (the audit line has it)");
    }
}

impl<S: SessionIndex> super::Core<S> {
    /// The latest `count` entries of the activity list that `viewer` may see, newest first.
    pub async fn activity(
        &self,
        viewer: &Sender,
        count: usize,
    ) -> Result<Vec<Activity>, CoreError> {
        // Read more than asked when the viewer sees a part: the list is short and capped.
        let read = if viewer.scope().the_issuer().is_some() {
            KEPT.min(count.saturating_mul(20))
        } else {
            count
        };
        let entries = self.index().activity(read).await?;
        Ok(entries
            .iter()
            .filter_map(|bytes| serde_json::from_slice::<Activity>(bytes).ok())
            .filter(|entry| visible_to(viewer, entry))
            .take(count)
            .collect())
    }
}
