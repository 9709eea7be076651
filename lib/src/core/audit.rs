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
    let kinds = event
        .actions()
        .iter()
        .map(|a| a.kind())
        .collect::<Vec<_>>()
        .join(",");
    let actions = event
        .actions()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    match result {
        Ok(Outcome::Applied(done)) => {
            let ended: usize = done.iter().map(|d| d.ended.len()).sum();
            if done.iter().any(|d| d.out_of_scope) {
                tracing::info!(
                    target: TARGET,
                    input = sender.input(),
                    sender = ?sender.name(),
                    event = ?id,
                    action = %kinds,
                    actions = %actions,
                    ended,
                    outcome = "out_of_scope",
                    "logout applied"
                );
            } else if ended == 0 {
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
                    outcome = "no_session",
                    "logout matched no session"
                );
            } else {
                tracing::info!(
                    target: TARGET,
                    input = sender.input(),
                    sender = ?sender.name(),
                    event = ?id,
                    action = %kinds,
                    actions = %actions,
                    ended,
                    outcome = "applied",
                    "logout applied"
                );
            }
        }
        Ok(Outcome::Duplicate) => tracing::info!(
            target: TARGET,
            input = sender.input(),
            sender = ?sender.name(),
            event = ?id,
            action = %kinds,
            actions = %actions,
            ended = 0,
            outcome = "duplicate",
            "event applied before"
        ),
        Err(error) => tracing::warn!(
            target: TARGET,
            input = sender.input(),
            sender = ?sender.name(),
            event = ?id,
            action = %kinds,
            actions = %actions,
            outcome = error.label(),
            %error,
            "event not applied"
        ),
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
