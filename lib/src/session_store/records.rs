//! This crate's own session record store: tower-sessions records as JSON in the index's backend
//! (`docs/redis-schema.md`, the `d:` keys), with nothing about logouts in it — [`LogoutAware`]
//! adds that, and [`OidcSessionStore`](super::OidcSessionStore) is the two together.
//!
//! [`LogoutAware`]: super::LogoutAware

use std::time::Duration;

use time::OffsetDateTime;

use crate::index::{RecordStore, StoreError};

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
                let data = serde_json::to_vec(record)
                    .map_err(|e| $ts::session_store::Error::Encode(e.to_string()))?;
                self.backend
                    .put_record(&id, &data, ttl)
                    .await
                    .map_err(|e| $ts::session_store::Error::Backend(unavailable(e)))
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
