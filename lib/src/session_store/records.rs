//! This crate's own session record store: tower-sessions records as JSON in the index's backend
//! (`docs/redis-schema.md`, the `d:` keys), with nothing about logouts in it — [`LogoutAware`]
//! adds that, and [`OidcSessionStore`](super::OidcSessionStore) is the two together.
//!
//! One rule of its own: a save never replaces a login holding a refresh token with an older
//! generation of itself ([`Login::update_in`](super::Login::update_in)). The backend compares
//! generations as it writes (atomically, in Redis); a save that lost keeps the stored login and
//! writes the rest.
//!
//! [`LogoutAware`]: super::LogoutAware

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::{CHECK_KEY, LOGIN_KEY, generation_of_login};
use crate::index::{RecordStore, StoreError};

/// How many times a save retries when refreshes keep replacing the login under it.
const SAVE_ATTEMPTS: usize = 4;

/// The generation of the login in a session's data; `None` when it holds no login.
pub(super) fn login_generation(data: &HashMap<String, Value>) -> Option<u64> {
    data.get(LOGIN_KEY).map(generation_of_login)
}

/// Whether a save of `data` could write back a spent refresh token: its login holds one (which
/// a refresh rotates). Other saves are written as they are.
pub(super) fn holds_refresh_token(data: &HashMap<String, Value>) -> bool {
    data.get(LOGIN_KEY)
        .is_some_and(|login| login.get("refresh_token").is_some())
}

/// When `stored` (the session's data in the store) holds a later generation of the login than
/// `data` (about to be saved by a request that loaded it earlier), put the stored login and its
/// check facts in `data`: the newer tokens stay, the request's other changes are saved. Returns
/// whether `data` changed.
pub(super) fn keep_newer_login(
    data: &mut HashMap<String, Value>,
    stored: &HashMap<String, Value>,
) -> bool {
    let (Some(mine), Some(theirs)) = (login_generation(data), login_generation(stored)) else {
        return false;
    };
    if theirs <= mine {
        return false;
    }
    for key in [LOGIN_KEY, CHECK_KEY] {
        match stored.get(key) {
            Some(value) => data.insert(key.to_owned(), value.clone()),
            None => data.remove(key),
        };
    }
    true
}

/// The session data of a stored record.
fn data_of(record: &[u8]) -> Option<HashMap<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Stored {
        data: HashMap<String, Value>,
    }
    serde_json::from_slice::<Stored>(record)
        .ok()
        .map(|s| s.data)
}

/// tower-sessions records in a [`RecordStore`] (the Redis or memory backend of the index), as
/// JSON. Clones share the backend.
#[derive(Clone, Debug)]
pub struct Records<B> {
    backend: B,
}

impl<B> Records<B> {
    /// Records in `backend`.
    pub fn new(backend: B) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

/// How long a record expiring at `expiry` may still be kept; `None` once it expired.
fn remaining(expiry: OffsetDateTime) -> Option<Duration> {
    Duration::try_from(expiry - OffsetDateTime::now_utc())
        .ok()
        .filter(|d| !d.is_zero())
}

fn unavailable(error: StoreError) -> String {
    error.to_string()
}

macro_rules! implement {
    ($ts:ident) => {
        #[async_trait::async_trait]
        impl<B: RecordStore + std::fmt::Debug> $ts::session_store::SessionStore for Records<B> {
            async fn create(
                &self,
                record: &mut $ts::session::Record,
            ) -> $ts::session_store::Result<()> {
                let Some(ttl) = remaining(record.expiry_date) else {
                    return Ok(());
                };
                // Never overwrite an existing session: on an id collision, draw another id.
                loop {
                    let data = serde_json::to_vec(&*record)
                        .map_err(|e| $ts::session_store::Error::Encode(e.to_string()))?;
                    let created = self
                        .backend
                        .create_record(&record.id.to_string(), &data, ttl)
                        .await
                        .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)))?;
                    if created {
                        return Ok(());
                    }
                    record.id = $ts::session::Id::default();
                }
            }

            async fn save(&self, record: &$ts::session::Record) -> $ts::session_store::Result<()> {
                let id = record.id.to_string();
                let Some(ttl) = remaining(record.expiry_date) else {
                    return self
                        .backend
                        .delete_record(&id)
                        .await
                        .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)));
                };
                let encode = |record: &$ts::session::Record| {
                    serde_json::to_vec(record)
                        .map_err(|e| $ts::session_store::Error::Encode(e.to_string()))
                };
                let generation =
                    login_generation(&record.data).filter(|_| holds_refresh_token(&record.data));
                let Some(mut generation) = generation else {
                    return self
                        .backend
                        .put_record(&id, &encode(record)?, ttl)
                        .await
                        .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)));
                };
                let mut record = std::borrow::Cow::Borrowed(record);
                for _ in 0..SAVE_ATTEMPTS {
                    let stored = self
                        .backend
                        .put_record_unless_newer(&id, &encode(&record)?, ttl, generation)
                        .await
                        .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)))?;
                    let Some(stored) = stored else {
                        return Ok(());
                    };
                    // A refresh saved newer tokens since this request loaded the session.
                    let kept = data_of(&stored)
                        .is_some_and(|stored| keep_newer_login(&mut record.to_mut().data, &stored));
                    if !kept {
                        return Err($ts::session_store::Error::Decode(
                            "the stored session's login cannot be read".into(),
                        ));
                    }
                    generation = login_generation(&record.data).unwrap_or(generation);
                }
                Err($ts::session_store::Error::Backend(
                    "the session's login kept changing while it was saved".into(),
                ))
            }

            async fn load(
                &self,
                id: &$ts::session::Id,
            ) -> $ts::session_store::Result<Option<$ts::session::Record>> {
                let Some(data) = self
                    .backend
                    .get_record(&id.to_string())
                    .await
                    .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)))?
                else {
                    return Ok(None);
                };
                let record: $ts::session::Record = serde_json::from_slice(&data)
                    .map_err(|e| $ts::session_store::Error::Decode(e.to_string()))?;
                Ok(remaining(record.expiry_date).map(|_| record))
            }

            async fn delete(&self, id: &$ts::session::Id) -> $ts::session_store::Result<()> {
                self.backend
                    .delete_record(&id.to_string())
                    .await
                    .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)))
            }
        }
    };
}

for_each_tower_sessions!(implement);
