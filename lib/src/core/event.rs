//! What reaches the core: an [`Event`] from a [`Sender`], asking for [`Action`]s, and what came
//! of it ([`Outcome`]).

use std::fmt;

use crate::logout_token::LogoutToken;

/// Who sent an event: the input it came through, which of that input's configured senders, and
/// what it may touch. Inputs build it from what they authenticated (a signature, a token, the
/// session of the user); the core checks every action against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    input: &'static str,
    name: String,
    scope: Scope,
}

impl Sender {
    /// A sender of `input` (e.g. `"scim"`), named `name` among that input's senders (a SCIM
    /// client's name, a transmitter's issuer, an admin token's fingerprint), acting within
    /// `scope`. Event ids are namespaced by input and name.
    pub fn new(input: &'static str, name: impl Into<String>, scope: Scope) -> Self {
        Self {
            input,
            name: name.into(),
            scope,
        }
    }

    /// The input it came through.
    pub fn input(&self) -> &'static str {
        self.input
    }

    /// Its name among the input's senders.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it may touch.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

/// What a sender may touch: sessions of one issuer (or of any issuer the core knows), of one
/// customer's users only when a customer is set, of one user only when a user is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    issuer: Option<String>,
    customer: Option<String>,
    user: Option<String>,
}

impl Scope {
    /// The sessions of `issuer`.
    pub fn issuer(issuer: impl Into<String>) -> Self {
        Self {
            issuer: Some(issuer.into()),
            customer: None,
            user: None,
        }
    }

    /// The sessions of every issuer the core is configured for (an operator's).
    pub fn any_issuer() -> Self {
        Self {
            issuer: None,
            customer: None,
            user: None,
        }
    }

    /// The sessions of one user of `issuer` (the user's own actions, the application's logout).
    pub fn user(issuer: impl Into<String>, sub: impl Into<String>) -> Self {
        Self {
            issuer: Some(issuer.into()),
            customer: None,
            user: Some(sub.into()),
        }
    }

    /// Only the users of `customer` (as their logins recorded it), when `Some`.
    #[must_use]
    pub fn with_customer(mut self, customer: Option<String>) -> Self {
        self.customer = customer;
        self
    }

    /// The one issuer, if the scope has one.
    pub fn the_issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The customer, if the scope is limited to one.
    pub fn customer(&self) -> Option<&str> {
        self.customer.as_deref()
    }

    /// The user, if the scope is limited to one.
    pub fn the_user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// One thing an event asks for. Every action names its issuer; the core refuses an issuer
/// outside the sender's scope before anything happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Apply a verified back-channel logout token: end the sessions it names that were
    /// authenticated at or before its `iat`, and refuse their late registration.
    Logout(LogoutToken),
    /// End one session by its id. `sub` finds its index entry; without it the login its record
    /// holds in this crate's store does.
    EndSession {
        /// The session's issuer.
        issuer: String,
        /// The application's session id.
        session_id: String,
        /// The session's user, when known.
        sub: Option<String>,
    },
    /// End a user's sessions authenticated until now (only those of these clients, when
    /// given), without a denylist marker: "log out everywhere".
    EndUserSessions {
        /// The user's issuer.
        issuer: String,
        /// The user.
        sub: String,
        /// Only the sessions whose login names one of these clients.
        clients: Option<Vec<String>>,
    },
    /// Revoke a user: end every session authenticated until now, refuse the late registration
    /// of such sessions, write the user's denylist marker, revoke the sessions' refresh tokens.
    RevokeUser {
        /// The user's issuer.
        issuer: String,
        /// The user.
        sub: String,
    },
    /// End an OP session's sessions as of now, with its denylist marker.
    RevokeOpSession {
        /// The OP session's issuer.
        issuer: String,
        /// The OP session.
        sid: String,
    },
}

impl Action {
    /// The issuer the action names.
    pub fn issuer(&self) -> &str {
        match self {
            Self::Logout(token) => &token.issuer,
            Self::EndSession { issuer, .. }
            | Self::EndUserSessions { issuer, .. }
            | Self::RevokeUser { issuer, .. }
            | Self::RevokeOpSession { issuer, .. } => issuer,
        }
    }

    /// The user the action names, if it names one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Logout(token) => token.sub.as_deref(),
            Self::EndSession { sub, .. } => sub.as_deref(),
            Self::EndUserSessions { sub, .. } | Self::RevokeUser { sub, .. } => Some(sub),
            Self::RevokeOpSession { .. } => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Logout(_) => "logout",
            Self::EndSession { .. } => "end_session",
            Self::EndUserSessions { .. } => "end_sessions",
            Self::RevokeUser { .. } => "revoke_user",
            Self::RevokeOpSession { .. } => "revoke_op_session",
        }
    }
}

/// Writes what an action names, for the audit line: values as Rust string literals, so that
/// nothing a sender chose can forge a field or a line.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} iss={:?}", self.kind(), self.issuer())?;
        match self {
            Self::Logout(token) => {
                if let Some(sid) = &token.sid {
                    write!(f, " sid={sid:?}")?;
                }
                if let Some(sub) = &token.sub {
                    write!(f, " sub={sub:?}")?;
                }
                write!(f, " iat={}", token.issued_at)
            }
            Self::EndSession {
                session_id, sub, ..
            } => {
                write!(f, " session={session_id:?}")?;
                match sub {
                    Some(sub) => write!(f, " sub={sub:?}"),
                    None => Ok(()),
                }
            }
            Self::EndUserSessions { sub, clients, .. } => {
                write!(f, " sub={sub:?}")?;
                match clients {
                    Some(clients) => write!(f, " clients={clients:?}"),
                    None => Ok(()),
                }
            }
            Self::RevokeUser { sub, .. } => write!(f, " sub={sub:?}"),
            Self::RevokeOpSession { sid, .. } => write!(f, " sid={sid:?}"),
        }
    }
}

/// How an event's id is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Once {
    /// Applied once; a failure gives the id back, so the sender's retry applies the event.
    UntilApplied,
    /// Spent by its first delivery, whatever happens (the id of a one-time credential).
    SingleUse,
}

/// An event: who sent it, its id if it has one, the actions it asks for (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub(crate) sender: Sender,
    pub(crate) id: Option<(String, Once)>,
    pub(crate) actions: Vec<Action>,
}

impl Event {
    /// An event without an id (an operator's request, a user's).
    pub fn new(sender: Sender, actions: Vec<Action>) -> Self {
        Self {
            sender,
            id: None,
            actions,
        }
    }

    /// A verified logout token: applied once by its `jti`, which is remembered in the same
    /// atomic step that ends the sessions (an OP's retry after a failure is applied, a replay
    /// after a success is refused).
    pub fn logout(sender: Sender, token: LogoutToken) -> Self {
        let jti = token.jti.clone();
        Self {
            sender,
            id: Some((jti, Once::UntilApplied)),
            actions: vec![Action::Logout(token)],
        }
    }

    /// Apply it once under the sender's id `id`: a delivery after it was applied is a
    /// [`Outcome::Duplicate`]; a failure leaves it to the sender's retry.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some((id.into(), Once::UntilApplied));
        self
    }

    /// Like [`with_id`](Self::with_id), but the id is spent by its first delivery whatever
    /// happens: for the id of a one-time credential (a signed request a sender never resends).
    #[must_use]
    pub fn with_single_use_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some((id.into(), Once::SingleUse));
        self
    }

    /// Who sent it.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// What it asks for.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
}

/// What came of one action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Done {
    /// The ids of the sessions it ended.
    pub ended: Vec<String>,
    /// Whether it named someone outside the sender's customer, so that nothing (or only what
    /// was the customer's) was done.
    pub out_of_scope: bool,
}

/// What came of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Applied: what came of each action, in order.
    Applied(Vec<Done>),
    /// Its id was applied before: nothing was done.
    Duplicate,
}

impl Outcome {
    /// How many sessions the event ended.
    pub fn ended(&self) -> usize {
        match self {
            Self::Applied(done) => done.iter().map(|d| d.ended.len()).sum(),
            Self::Duplicate => 0,
        }
    }

    /// The ids of the sessions the event ended.
    pub fn ended_ids(&self) -> Vec<String> {
        match self {
            Self::Applied(done) => done.iter().flat_map(|d| d.ended.iter().cloned()).collect(),
            Self::Duplicate => Vec::new(),
        }
    }
}
