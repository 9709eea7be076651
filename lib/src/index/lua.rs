//! The Lua scripts of the Redis index, one `.lua` file each in `lua/` (the reference for
//! applications in other languages, `docs/redis-schema.md`): every script but the heartbeat,
//! the event claim and the record write starts with `lua/helpers.lua`, which holds the encoding, buckets, entries and the one marker
//! merge that logout markers and denylist markers share.

use std::time::Duration;

use redis::Script;

use super::{Logout, SidLogout, Target, encode_component};

const HELPERS: &str = include_str!("lua/helpers.lua");

/// The scripts, compiled once per index.
pub(super) struct Scripts {
    pub(super) register: Script,
    pub(super) logout: Script,
    pub(super) end_session: Script,
    pub(super) state: Script,
    pub(super) sessions: Script,
    pub(super) customer: Script,
    pub(super) event: Script,
    pub(super) put_record: Script,
    #[cfg(feature = "scim")]
    pub(super) scim_write: Script,
    #[cfg(feature = "scim")]
    pub(super) scim_delete: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            register: with_helpers(include_str!("lua/register.lua")),
            logout: with_helpers(include_str!("lua/logout.lua")),
            end_session: with_helpers(include_str!("lua/end_session.lua")),
            state: with_helpers(include_str!("lua/state.lua")),
            sessions: with_helpers(include_str!("lua/sessions.lua")),
            customer: with_helpers(include_str!("lua/customer.lua")),
            event: Script::new(include_str!("lua/event.lua")),
            put_record: Script::new(include_str!("lua/put_record.lua")),
            #[cfg(feature = "scim")]
            scim_write: with_helpers(include_str!("lua/scim_write.lua")),
            #[cfg(feature = "scim")]
            scim_delete: with_helpers(include_str!("lua/scim_delete.lua")),
        }
    }
}

/// The version 1 scripts a migrating receiver runs.
pub(super) struct V1Scripts {
    pub(super) logout: Script,
    pub(super) end_session: Script,
    pub(super) sessions: Script,
}

impl V1Scripts {
    pub(super) fn new() -> Self {
        Self {
            logout: with_helpers(include_str!("lua/v1_logout.lua")),
            end_session: with_helpers(include_str!("lua/v1_end_session.lua")),
            sessions: with_helpers(include_str!("lua/v1_sessions.lua")),
        }
    }
}

/// The heartbeat a follower publishes from the issuer's node.
pub(super) fn heartbeat() -> Script {
    Script::new(include_str!("lua/heartbeat.lua"))
}

/// A script: the shared helpers, then `body`.
fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{HELPERS}\n{body}"))
}

/// Milliseconds of `d`, at least 1 (for `PX`).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The denylist field a logout writes (`""` for none). A sid belongs to one user, so a
/// (sid, sub) logout denies the sid's tokens.
pub(super) fn deny_field(l: &Logout<'_>) -> String {
    match (l.deny, l.target, l.sid_logout) {
        (None, _, _) => String::new(),
        // A sid logout that ends every session of its user denies the user's tokens.
        (Some(_), Target::Sid { sub: Some(sub), .. }, SidLogout::User)
        | (Some(_), Target::Sub { sub }, _) => format!("sub:{}", encode_component(sub)),
        (Some(_), Target::Sid { sid, .. }, _) => format!("sid:{}", encode_component(sid)),
    }
}

/// What else a sid logout ends, as the logout script takes it.
pub(super) fn also(l: &Logout<'_>) -> &'static str {
    match (l.target, l.sid_logout) {
        (Target::Sub { .. }, _) | (_, SidLogout::Session) => "",
        (Target::Sid { .. }, SidLogout::SessionAndSidless) => "ns",
        (Target::Sid { .. }, SidLogout::User) => "user",
    }
}

/// The marker a sid logout writes for the user its token names, beyond the OP session's.
pub(super) fn also_field(l: &Logout<'_>) -> Option<String> {
    let Target::Sid { sub: Some(sub), .. } = l.target else {
        return None;
    };
    match l.sid_logout {
        SidLogout::Session => None,
        SidLogout::SessionAndSidless => Some(super::markers::sidless_field(sub)),
        SidLogout::User => Some(super::markers::sub_field(sub)),
    }
}
