//! The users a provisioning client (SCIM 2.0) created: the few attributes deprovisioning needs,
//! kept per issuer beside the index, and found by id, `userName` or `externalId`.
//!
//! Both backends enforce the same rule: within an issuer, `userName` is unique
//! case-insensitively (RFC 7643 §4.1.1, `caseExact: false`) and `externalId` is unique as given.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::StoreError;

/// A provisioned user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScimUser {
    /// The id this service gave it.
    pub id: String,
    /// The client's name for it (unique, case-insensitively).
    #[serde(rename = "userName")]
    pub user_name: String,
    /// The client's own id for it, if it sent one.
    #[serde(
        rename = "externalId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    /// Whether the user may log in.
    pub active: bool,
    /// The OIDC `sub` whose sessions it names.
    pub sub: String,
    /// When it was created and last changed, seconds since the epoch.
    pub created: u64,
    /// See `created`.
    pub modified: u64,
}

impl ScimUser {
    /// A user record.
    pub fn new(
        id: String,
        user_name: String,
        external_id: Option<String>,
        active: bool,
        sub: String,
        at: u64,
    ) -> Self {
        Self {
            id,
            user_name,
            external_id,
            active,
            sub,
            created: at,
            modified: at,
        }
    }
}

/// An attribute users are looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookup {
    /// `userName`, case-insensitively.
    UserName,
    /// `externalId`.
    ExternalId,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Written {
    /// Stored.
    Done,
    /// Another user of the issuer has this `userName` or `externalId`: nothing was written.
    Taken,
    /// The user is not there (a replace of a user deleted meanwhile): nothing was written.
    Gone,
}

/// Where provisioned users are kept.
pub trait UserDirectory: Clone + Send + Sync + 'static {
    /// Store a new user.
    fn create(
        &self,
        issuer: &str,
        user: &ScimUser,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
    /// The user with this id.
    fn user(
        &self,
        issuer: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ScimUser>, StoreError>> + Send;
    /// The user with this `userName` or `externalId`.
    fn find(
        &self,
        issuer: &str,
        by: Lookup,
        value: &str,
    ) -> impl Future<Output = Result<Option<ScimUser>, StoreError>> + Send;
    /// Replace a user (same id), keeping names unique.
    fn replace(
        &self,
        issuer: &str,
        user: &ScimUser,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
    /// Users in the order they were created: `count` of them from the `start`th (0-based),
    /// and how many there are in all.
    fn page(
        &self,
        issuer: &str,
        start: usize,
        count: usize,
    ) -> impl Future<Output = Result<(usize, Vec<ScimUser>), StoreError>> + Send;
    /// Delete a user; returns what it was.
    fn delete(
        &self,
        issuer: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ScimUser>, StoreError>> + Send;
}

/// The case-insensitive form of a `userName`.
pub(crate) fn folded(user_name: &str) -> String {
    user_name.to_lowercase()
}

/// Users in this process's memory (tests, one instance).
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    users: Arc<Mutex<HashMap<(String, String), ScimUser>>>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), ScimUser>> {
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether another user of `issuer` than `id` holds `user`'s names.
fn clashes(users: &HashMap<(String, String), ScimUser>, issuer: &str, user: &ScimUser) -> bool {
    let name = folded(&user.user_name);
    users.iter().any(|((iss, id), other)| {
        iss == issuer
            && *id != user.id
            && (folded(&other.user_name) == name
                || (user.external_id.is_some() && other.external_id == user.external_id))
    })
}

impl UserDirectory for MemoryDirectory {
    async fn create(&self, issuer: &str, user: &ScimUser) -> Result<Written, StoreError> {
        let mut users = self.lock();
        if clashes(&users, issuer, user) {
            return Ok(Written::Taken);
        }
        users.insert((issuer.to_owned(), user.id.clone()), user.clone());
        Ok(Written::Done)
    }

    async fn user(&self, issuer: &str, id: &str) -> Result<Option<ScimUser>, StoreError> {
        Ok(self
            .lock()
            .get(&(issuer.to_owned(), id.to_owned()))
            .cloned())
    }

    async fn find(
        &self,
        issuer: &str,
        by: Lookup,
        value: &str,
    ) -> Result<Option<ScimUser>, StoreError> {
        let folded_value = folded(value);
        Ok(self
            .lock()
            .iter()
            .find(|((iss, _), user)| {
                iss == issuer
                    && match by {
                        Lookup::UserName => folded(&user.user_name) == folded_value,
                        Lookup::ExternalId => user.external_id.as_deref() == Some(value),
                    }
            })
            .map(|(_, user)| user.clone()))
    }

    async fn replace(&self, issuer: &str, user: &ScimUser) -> Result<Written, StoreError> {
        let mut users = self.lock();
        let key = (issuer.to_owned(), user.id.clone());
        if !users.contains_key(&key) {
            return Ok(Written::Gone);
        }
        if clashes(&users, issuer, user) {
            return Ok(Written::Taken);
        }
        users.insert(key, user.clone());
        Ok(Written::Done)
    }

    async fn page(
        &self,
        issuer: &str,
        start: usize,
        count: usize,
    ) -> Result<(usize, Vec<ScimUser>), StoreError> {
        let users = self.lock();
        let mut all: Vec<&ScimUser> = users
            .iter()
            .filter(|((iss, _), _)| iss == issuer)
            .map(|(_, user)| user)
            .collect();
        all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        let total = all.len();
        Ok((
            total,
            all.into_iter().skip(start).take(count).cloned().collect(),
        ))
    }

    async fn delete(&self, issuer: &str, id: &str) -> Result<Option<ScimUser>, StoreError> {
        Ok(self.lock().remove(&(issuer.to_owned(), id.to_owned())))
    }
}

#[cfg(feature = "redis")]
mod redis_directory {
    use super::{Lookup, ScimUser, UserDirectory, Written, folded};
    use crate::index::keys::encode_component;
    use crate::index::{OrUnavailable as _, RedisIndex, StoreError};

    /// KEYS: user, name index, external id index, old name index, old external id index (the
    /// new ones again when creating), all users (a sorted set by creation). ARGV: user JSON,
    /// id, mode (`create`/`replace`), whether the user has an external id, whether the old one
    /// had, created (s). Returns 'done', 'taken' or 'gone'.
    const LUA_WRITE: &str = r#"
local user, name, ext, oldname, oldext = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local json, id, mode = ARGV[1], ARGV[2], ARGV[3]
local exists = redis.call('EXISTS', user) == 1
if mode == 'create' and exists then return 'taken' end
if mode == 'replace' and not exists then return 'gone' end
local holder = redis.call('GET', name)
if holder and holder ~= id then return 'taken' end
if ARGV[4] == '1' then
  local h = redis.call('GET', ext)
  if h and h ~= id then return 'taken' end
end
if mode == 'replace' then
  if oldname ~= name and redis.call('GET', oldname) == id then redis.call('DEL', oldname) end
  if ARGV[5] == '1' and oldext ~= ext and redis.call('GET', oldext) == id then redis.call('DEL', oldext) end
end
redis.call('SET', user, json)
redis.call('SET', name, id)
if ARGV[4] == '1' then redis.call('SET', ext, id) end
redis.call('ZADD', KEYS[6], tonumber(ARGV[6]), id)
return 'done'
"#;

    impl RedisIndex {
        fn scim_key(&self, issuer: &str, kind: &str, value: &str) -> String {
            format!(
                "{}scim:{kind}:{}",
                self.issuer_base(issuer),
                encode_component(value)
            )
        }

        async fn write(
            &self,
            issuer: &str,
            user: &ScimUser,
            old: Option<&ScimUser>,
            mode: &str,
        ) -> Result<Written, StoreError> {
            let json =
                serde_json::to_string(user).map_err(|e| StoreError::Unexpected(e.to_string()))?;
            let name = self.scim_key(issuer, "n", &folded(&user.user_name));
            let ext_value = user.external_id.as_deref().unwrap_or_default();
            let ext = self.scim_key(issuer, "e", ext_value);
            let old = old.unwrap_or(user);
            let old_name = self.scim_key(issuer, "n", &folded(&old.user_name));
            let old_ext_value = old.external_id.as_deref().unwrap_or_default();
            let old_ext = self.scim_key(issuer, "e", old_ext_value);
            let answer: String = redis::Script::new(LUA_WRITE)
                .key(self.scim_key(issuer, "u", &user.id))
                .key(name)
                .key(ext)
                .key(old_name)
                .key(old_ext)
                .key(self.scim_key(issuer, "all", ""))
                .arg(json)
                .arg(&user.id)
                .arg(mode)
                .arg(if user.external_id.is_some() { "1" } else { "0" })
                .arg(if old.external_id.is_some() { "1" } else { "0" })
                .arg(user.created)
                .invoke_async(&mut self.connection())
                .await
                .or_unavailable()?;
            match answer.as_str() {
                "done" => Ok(Written::Done),
                "taken" => Ok(Written::Taken),
                "gone" => Ok(Written::Gone),
                other => Err(StoreError::Unexpected(format!(
                    "user write answered {other:?}"
                ))),
            }
        }

        async fn read(&self, key: String) -> Result<Option<ScimUser>, StoreError> {
            let json: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            json.map(|j| {
                serde_json::from_str(&j).map_err(|e| StoreError::Unexpected(e.to_string()))
            })
            .transpose()
        }
    }

    impl UserDirectory for RedisIndex {
        async fn create(&self, issuer: &str, user: &ScimUser) -> Result<Written, StoreError> {
            self.write(issuer, user, None, "create").await
        }

        async fn user(&self, issuer: &str, id: &str) -> Result<Option<ScimUser>, StoreError> {
            self.read(self.scim_key(issuer, "u", id)).await
        }

        async fn find(
            &self,
            issuer: &str,
            by: Lookup,
            value: &str,
        ) -> Result<Option<ScimUser>, StoreError> {
            let key = match by {
                Lookup::UserName => self.scim_key(issuer, "n", &folded(value)),
                Lookup::ExternalId => self.scim_key(issuer, "e", value),
            };
            let id: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            match id {
                Some(id) => self.user(issuer, &id).await,
                None => Ok(None),
            }
        }

        async fn replace(&self, issuer: &str, user: &ScimUser) -> Result<Written, StoreError> {
            let Some(old) = self.user(issuer, &user.id).await? else {
                return Ok(Written::Gone);
            };
            self.write(issuer, user, Some(&old), "replace").await
        }

        async fn page(
            &self,
            issuer: &str,
            start: usize,
            count: usize,
        ) -> Result<(usize, Vec<ScimUser>), StoreError> {
            let all = self.scim_key(issuer, "all", "");
            let total: usize = redis::cmd("ZCARD")
                .arg(&all)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            if count == 0 || start >= total {
                return Ok((total, Vec::new()));
            }
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&all)
                .arg(start)
                .arg(start.saturating_add(count) - 1)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            let mut users = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(user) = self.user(issuer, &id).await? {
                    users.push(user);
                }
            }
            Ok((total, users))
        }

        async fn delete(&self, issuer: &str, id: &str) -> Result<Option<ScimUser>, StoreError> {
            let Some(user) = self.user(issuer, id).await? else {
                return Ok(None);
            };
            let _: i64 = redis::cmd("ZREM")
                .arg(self.scim_key(issuer, "all", ""))
                .arg(id)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            let mut keys = vec![
                self.scim_key(issuer, "u", id),
                self.scim_key(issuer, "n", &folded(&user.user_name)),
            ];
            if let Some(ext) = &user.external_id {
                keys.push(self.scim_key(issuer, "e", ext));
            }
            // One issuer's keys share a hash tag: one DEL on one node.
            let _: i64 = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            Ok(Some(user))
        }
    }
}
