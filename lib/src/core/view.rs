//! The read side of the core: a user's live sessions with what their applications recorded at
//! login (client, policy, customer, device), for the admin API, the CLI and the console.

use crate::index::{RecordStore, SessionIndex, SessionInfo};

use super::{Core, CoreError, Sender};

/// A live session with what its application recorded at login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionView {
    /// The application's session id.
    pub session_id: String,
    /// The OP session, when known.
    pub sid: Option<String>,
    /// The client (application) that logged the user in, when its login names one.
    pub client_id: Option<String>,
    /// When the user authenticated at the OP (seconds since the epoch).
    pub auth_time: u64,
    /// When the application established the session (seconds since the epoch), when its record
    /// is in this crate's store.
    pub logged_in_at: Option<u64>,
    /// Until when the index keeps the session unless its application extends it (seconds since
    /// the epoch; 0 for a session of the version 1 layout).
    pub indexed_until: u64,
    /// The session policy its login chose, when one was named.
    pub policy: Option<String>,
    /// The customer its login was decided to belong to, when one was.
    pub customer: Option<String>,
    /// When a request of the session last arrived (to the minute), when the application records
    /// it (`SessionDetails`).
    pub last_seen: Option<u64>,
    /// The user agent of its latest request, when the application records client details.
    pub user_agent: Option<String>,
    /// The client address of its latest request, likewise.
    pub address: Option<String>,
}

impl<S: SessionIndex + RecordStore> Core<S> {
    /// The live sessions of a user as `sender` may see them, with what their records hold: an
    /// issuer outside its scope is refused, a user outside its customer or user scope has none.
    pub async fn sessions(
        &self,
        sender: &Sender,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<SessionView>, CoreError> {
        let sessions = self.sessions_unlisted(sender, issuer, sub).await?;
        self.listed(sender, issuer, sub, sessions.len());
        Ok(sessions)
    }

    /// The audit line of a listing made with [`sessions_unlisted`](Self::sessions_unlisted):
    /// who looked at whose sessions, and how many there were.
    pub(crate) fn listed(&self, sender: &Sender, issuer: &str, sub: &str, sessions: usize) {
        super::audit::listed(sender, issuer, sub, sessions);
    }

    /// [`sessions`](Self::sessions) without the audit line: for a search, which must not log
    /// what was typed (a session id, an address), only the users it found.
    pub(crate) async fn sessions_unlisted(
        &self,
        sender: &Sender,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<SessionView>, CoreError> {
        let scope = sender.scope();
        match scope.the_issuer() {
            Some(own) if own != issuer => return Err(CoreError::OutOfScope),
            None if !self.knows(issuer) => return Err(CoreError::UnknownIssuer),
            _ => {}
        }
        let sessions = if scope.the_user().is_some_and(|user| user != sub)
            || !self.reaches(scope, issuer, sub).await?
        {
            Vec::new()
        } else {
            self.live_sessions(issuer, sub).await?
        };
        Ok(sessions)
    }

    /// Whose session `session_id` is, when its record is in this crate's store and its
    /// issuer is within `sender`'s scope: (issuer, sub).
    pub async fn session_owner(
        &self,
        sender: &Sender,
        session_id: &str,
    ) -> Result<Option<(String, String)>, CoreError> {
        let Some(record) = self.index().get_record(session_id).await? else {
            return Ok(None);
        };
        Ok(login_of(&record)
            .filter(|login| {
                sender
                    .scope()
                    .the_issuer()
                    .is_none_or(|own| own == login.issuer)
            })
            .map(|login| (login.issuer, login.sub)))
    }

    /// The live sessions of a user, with what their records hold.
    pub(super) async fn live_sessions(
        &self,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<SessionView>, CoreError> {
        let index = self.index();
        let infos = index.sessions(issuer, sub).await?;
        let ids: Vec<String> = infos.iter().map(|i| i.session_id.clone()).collect();
        let records = index.get_records(&ids).await?;
        Ok(infos
            .into_iter()
            .zip(records)
            .map(|(info, record)| view(info, record.as_deref().and_then(login_of)))
            .collect())
    }
}

/// What the login a session record holds says, if it can be read.
pub(super) struct RecordedLogin {
    pub(super) issuer: String,
    pub(super) sub: String,
    #[cfg_attr(not(feature = "session-store"), allow(dead_code))]
    recorded: Recorded,
}

#[cfg(feature = "session-store")]
use crate::session_store::Recorded;

#[cfg(not(feature = "session-store"))]
#[derive(Default)]
struct Recorded {
    client_id: Option<String>,
    policy: Option<String>,
    customer: Option<String>,
    logged_in_at: Option<u64>,
    last_seen: Option<u64>,
    user_agent: Option<String>,
    address: Option<String>,
}

/// The login a session record of this crate's store holds, if any.
pub(super) fn login_of(record: &[u8]) -> Option<RecordedLogin> {
    #[cfg(feature = "session-store")]
    {
        crate::session_store::recorded_of_bytes(record).map(|(login, recorded)| RecordedLogin {
            issuer: login.issuer,
            sub: login.sub,
            recorded,
        })
    }
    #[cfg(not(feature = "session-store"))]
    {
        let _ = record;
        None
    }
}

fn view(info: SessionInfo, login: Option<RecordedLogin>) -> SessionView {
    let recorded = login.map(|l| l.recorded).unwrap_or_default();
    SessionView {
        session_id: info.session_id,
        sid: info.sid,
        client_id: recorded.client_id,
        auth_time: info.auth_time,
        logged_in_at: recorded.logged_in_at,
        indexed_until: info.indexed_until,
        policy: recorded.policy,
        customer: recorded.customer,
        last_seen: recorded.last_seen,
        user_agent: recorded.user_agent,
        address: recorded.address,
    }
}
