//! The one audit line of every event the core handles (target `oidc_logout::audit`): which
//! input and sender, the event id, what each action named, how many sessions ended, and the
//! outcome. Inputs write none: whatever way a session ends, the line is the same.

use super::{Action, CoreError, Event, Outcome, Sender};

/// The tracing target of audit lines.
pub const TARGET: &str = "oidc_logout::audit";

/// Write the line for `event`, which came to `result`: `action` names the kinds of its
/// actions, `actions` what each named.
pub(super) fn line(event: &Event, result: &Result<Outcome, CoreError>) {
    let sender = event.sender();
    let id = event.id.as_ref().map(|(id, _)| id.as_str());
    let kinds = kinds(event);
    let actions = named_actions(event);
    let (outcome, ended) = outcome(result);
    match (outcome, result) {
        (_, Err(error)) => tracing::warn!(
            target: TARGET,
            input = sender.input(),
            sender = ?sender.name(),
            event = ?id,
            action = %kinds,
            actions = %actions,
            outcome,
            %error,
            "event not applied"
        ),
        ("no_session", _) => {
            // Nothing to end: already logged out, never logged in here, or sessions the
            // logout does not reach (a sid logout and sessions registered without a sid).
            let (sid, sub) = named(event);
            tracing::info!(
                target: TARGET,
                input = sender.input(),
                sender = ?sender.name(),
                event = ?id,
                action = %kinds,
                actions = %actions,
                ended,
                named_sid = sid,
                named_sub = sub,
                outcome,
                "logout matched no session"
            );
        }
        ("duplicate", _) => tracing::info!(
            target: TARGET,
            input = sender.input(),
            sender = ?sender.name(),
            event = ?id,
            action = %kinds,
            actions = %actions,
            ended,
            outcome,
            "event applied before"
        ),
        _ => tracing::info!(
            target: TARGET,
            input = sender.input(),
            sender = ?sender.name(),
            event = ?id,
            action = %kinds,
            actions = %actions,
            ended,
            outcome,
            "logout applied"
        ),
    }
}

/// The kinds of an event's actions, comma-separated.
pub(super) fn kinds(event: &Event) -> String {
    event
        .actions()
        .iter()
        .map(|a| a.kind())
        .collect::<Vec<_>>()
        .join(",")
}

/// What each of an event's actions named, `; `-separated.
fn named_actions(event: &Event) -> String {
    event
        .actions()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The outcome's label (`applied`, `no_session`, `out_of_scope`, `duplicate`, or the error's)
/// and how many sessions the event ended.
pub(super) fn outcome(result: &Result<Outcome, CoreError>) -> (&'static str, usize) {
    match result {
        Ok(Outcome::Applied(done)) => {
            let ended: usize = done.iter().map(|d| d.ended.len()).sum();
            if done.iter().any(|d| d.out_of_scope) {
                ("out_of_scope", ended)
            } else if ended == 0 {
                ("no_session", 0)
            } else {
                ("applied", ended)
            }
        }
        Ok(Outcome::Duplicate) => ("duplicate", 0),
        Err(error) => (error.label(), 0),
    }
}

/// Whether an event's actions named an OP session (`sid`) and a user (`sub`).
fn named(event: &Event) -> (bool, bool) {
    event
        .actions()
        .iter()
        .fold((false, false), |(sid, sub), action| match action {
            Action::Logout(token) => (sid || token.sid.is_some(), sub || token.sub.is_some()),
            Action::RevokeOpSession { .. } => (true, sub),
            Action::EndSession { sub: named, .. } => (sid, sub || named.is_some()),
            Action::EndUserSessions { .. } | Action::RevokeUser { .. } => (sid, true),
        })
}

/// The line of a listing: who read whose sessions (reads change nothing, but who looked is
/// worth knowing).
pub(super) fn listed(sender: &Sender, issuer: &str, sub: &str, sessions: usize) {
    tracing::info!(
        target: TARGET,
        input = sender.input(),
        sender = ?sender.name(),
        action = "list",
        issuer = ?issuer,
        sub = ?sub,
        sessions,
        "sessions listed"
    );
}
