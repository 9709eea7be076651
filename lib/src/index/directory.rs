//! The users provisioning clients (SCIM 2.0) created: the few attributes deprovisioning needs,
//! kept per client beside the index, and found by id, `userName` or `externalId`.
//!
//! Every client of an issuer has users of its own ([`Owner`]): another client's user is not
//! found. Both backends keep the same rules, each write checked and done in one atomic step:
//! within a client, `userName` is unique case-insensitively (RFC 7643 §4.1.1, `caseExact:
//! false`) and `externalId` is unique as given; across the issuer's clients, an OIDC `sub`
//! belongs to one client's user, so that no client can provision another's user and revoke it.
//! A change or deletion names the record it read and is refused when the record changed
//! meanwhile ([`Written::Stale`]), so that concurrent requests never undo each other.

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
    /// The `sub`s whose revocation a change asked for and that are not confirmed done yet: the
    /// change is written first (atomically with its checks, so a refused one revokes nothing),
    /// then these are revoked, then cleared. A failure in between leaves them here, and the
    /// next request on the user (the client's retry) revokes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke_pending: Vec<String>,
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
            revoke_pending: Vec::new(),
        }
    }
}

/// Whose users: one provisioning client's of one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The issuer whose users they are.
    pub issuer: &'a str,
    /// The client's name among the issuer's clients (`""`: the first unnamed one).
    pub client: &'a str,
}

/// A user as read, with what a change or deletion must name to be sure nothing changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The user.
    pub user: ScimUser,
    /// The record as stored.
    read: String,
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
    /// Another user of the client has this `userName` or `externalId`: nothing was written.
    Taken,
    /// Another client's user has this `sub`: nothing was written.
    Claimed,
    /// The user is not there (deleted meanwhile): nothing was written.
    Gone,
    /// The user changed since it was read: nothing was written; read it again.
    Stale,
}

/// Where provisioned users are kept.
pub trait UserDirectory: Clone + Send + Sync + 'static {
    /// Store a new user.
    fn create(
        &self,
        owner: Owner<'_>,
        user: &ScimUser,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
    /// The user with this id.
    fn user(
        &self,
        owner: Owner<'_>,
        id: &str,
    ) -> impl Future<Output = Result<Option<Found>, StoreError>> + Send;
    /// The user with this `userName` or `externalId`.
    fn find(
        &self,
        owner: Owner<'_>,
        by: Lookup,
        value: &str,
    ) -> impl Future<Output = Result<Option<Found>, StoreError>> + Send;
    /// Replace the user `was` with `user` (same id), keeping the rules, unless it changed since.
    fn replace(
        &self,
        owner: Owner<'_>,
        was: &Found,
        user: &ScimUser,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
    /// Users in the order they were created: `count` of them from the `start`th (0-based),
    /// and how many there are in all.
    fn page(
        &self,
        owner: Owner<'_>,
        start: usize,
        count: usize,
    ) -> impl Future<Output = Result<(usize, Vec<ScimUser>), StoreError>> + Send;
    /// Delete the user `was` and free its names and `sub`, unless it changed since.
    fn delete(
        &self,
        owner: Owner<'_>,
        was: &Found,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
}

/// The case-insensitive form of a `userName`.
pub(crate) fn folded(user_name: &str) -> String {
    user_name.to_lowercase()
}

fn to_json(user: &ScimUser) -> Result<String, StoreError> {
    serde_json::to_string(user).map_err(|e| StoreError::Unexpected(e.to_string()))
}

fn from_json(read: String) -> Result<Found, StoreError> {
    let user = serde_json::from_str(&read).map_err(|e| StoreError::Unexpected(e.to_string()))?;
    Ok(Found { user, read })
}

type Key = (String, String);

/// Users in this process's memory (tests, one instance): the same rules as in Redis, under one
/// lock.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    /// (issuer, client) -> id -> the user as stored.
    users: HashMap<Key, HashMap<String, String>>,
    /// (issuer, client) -> "n:<folded userName>" or "e:<externalId>" -> id.
    names: HashMap<Key, HashMap<String, String>>,
    /// (issuer, sub) -> (client, id).
    subs: HashMap<Key, Key>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn space(owner: Owner<'_>) -> Key {
    (owner.issuer.to_owned(), owner.client.to_owned())
}

fn names_of(user: &ScimUser) -> Vec<String> {
    let mut names = vec![format!("n:{}", folded(&user.user_name))];
    if let Some(external) = &user.external_id {
        names.push(format!("e:{external}"));
    }
    names
}

impl Memory {
    /// The write of scim_write.lua: checks, then frees the old names and sub, then stores.
    fn write(
        &mut self,
        owner: Owner<'_>,
        was: Option<&Found>,
        user: &ScimUser,
    ) -> Result<Written, StoreError> {
        let at = space(owner);
        let current = self.users.get(&at).and_then(|u| u.get(&user.id));
        match (was, current) {
            (None, Some(_)) => return Ok(Written::Taken),
            (Some(_), None) => return Ok(Written::Gone),
            (Some(was), Some(current)) if *current != was.read => return Ok(Written::Stale),
            _ => {}
        }
        let names = self.names.entry(at.clone()).or_default();
        if names_of(user)
            .iter()
            .any(|n| names.get(n).is_some_and(|holder| *holder != user.id))
        {
            return Ok(Written::Taken);
        }
        let me = (owner.client.to_owned(), user.id.clone());
        let sub_key = (owner.issuer.to_owned(), user.sub.clone());
        if self.subs.get(&sub_key).is_some_and(|holder| *holder != me) {
            return Ok(Written::Claimed);
        }
        if let Some(was) = was {
            for old in names_of(&was.user) {
                if names.get(&old) == Some(&user.id) {
                    names.remove(&old);
                }
            }
            let old_sub = (owner.issuer.to_owned(), was.user.sub.clone());
            if self.subs.get(&old_sub) == Some(&me) {
                self.subs.remove(&old_sub);
            }
        }
        for name in names_of(user) {
            names.insert(name, user.id.clone());
        }
        self.subs.insert(sub_key, me);
        self.users
            .entry(at)
            .or_default()
            .insert(user.id.clone(), to_json(user)?);
        Ok(Written::Done)
    }
}

impl UserDirectory for MemoryDirectory {
    async fn create(&self, owner: Owner<'_>, user: &ScimUser) -> Result<Written, StoreError> {
        self.lock().write(owner, None, user)
    }

    async fn user(&self, owner: Owner<'_>, id: &str) -> Result<Option<Found>, StoreError> {
        self.lock()
            .users
            .get(&space(owner))
            .and_then(|users| users.get(id))
            .cloned()
            .map(from_json)
            .transpose()
    }

    async fn find(
        &self,
        owner: Owner<'_>,
        by: Lookup,
        value: &str,
    ) -> Result<Option<Found>, StoreError> {
        let name = match by {
            Lookup::UserName => format!("n:{}", folded(value)),
            Lookup::ExternalId => format!("e:{value}"),
        };
        let id = self
            .lock()
            .names
            .get(&space(owner))
            .and_then(|names| names.get(&name))
            .cloned();
        match id {
            Some(id) => self.user(owner, &id).await,
            None => Ok(None),
        }
    }

    async fn replace(
        &self,
        owner: Owner<'_>,
        was: &Found,
        user: &ScimUser,
    ) -> Result<Written, StoreError> {
        self.lock().write(owner, Some(was), user)
    }

    async fn page(
        &self,
        owner: Owner<'_>,
        start: usize,
        count: usize,
    ) -> Result<(usize, Vec<ScimUser>), StoreError> {
        let stored: Vec<String> = self
            .lock()
            .users
            .get(&space(owner))
            .map(|users| users.values().cloned().collect())
            .unwrap_or_default();
        let mut all = stored
            .into_iter()
            .map(|json| from_json(json).map(|found| found.user))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        let total = all.len();
        Ok((total, all.into_iter().skip(start).take(count).collect()))
    }

    async fn delete(&self, owner: Owner<'_>, was: &Found) -> Result<Written, StoreError> {
        let mut memory = self.lock();
        let at = space(owner);
        let Some(current) = memory.users.get(&at).and_then(|u| u.get(&was.user.id)) else {
            return Ok(Written::Gone);
        };
        if *current != was.read {
            return Ok(Written::Stale);
        }
        let id = &was.user.id;
        if let Some(names) = memory.names.get_mut(&at) {
            for name in names_of(&was.user) {
                if names.get(&name) == Some(id) {
                    names.remove(&name);
                }
            }
        }
        let sub = (owner.issuer.to_owned(), was.user.sub.clone());
        if memory.subs.get(&sub) == Some(&(owner.client.to_owned(), id.clone())) {
            memory.subs.remove(&sub);
        }
        if let Some(users) = memory.users.get_mut(&at) {
            users.remove(id);
        }
        Ok(Written::Done)
    }
}

#[cfg(feature = "redis")]
mod redis_directory {
    use super::{
        Found, Lookup, Owner, ScimUser, UserDirectory, Written, folded, from_json, to_json,
    };
    use crate::index::keys::encode_component;
    use crate::index::{OrUnavailable as _, RedisIndex, StoreError};

    /// The key prefix of a client's users under the issuer's base: `scim:` for the first
    /// unnamed client (the layout before clients had names), `scim@<enc name>:` otherwise.
    fn namespace(client: &str) -> String {
        if client.is_empty() {
            "scim:".to_owned()
        } else {
            format!("scim@{}:", encode_component(client))
        }
    }

    impl RedisIndex {
        fn scim_key(&self, owner: Owner<'_>, kind: &str, value: &str) -> String {
            format!(
                "{}{}{kind}:{}",
                self.issuer_base(owner.issuer),
                namespace(owner.client),
                encode_component(value)
            )
        }

        async fn write(
            &self,
            owner: Owner<'_>,
            user: &ScimUser,
            was: Option<&Found>,
        ) -> Result<Written, StoreError> {
            let old = was.map_or(user, |w| &w.user);
            let mut inv = self.scripts().scim_write.prepare_invoke();
            inv.key(self.scim_key(owner, "u", &user.id))
                .arg(self.issuer_base(owner.issuer))
                .arg(namespace(owner.client))
                .arg(if was.is_some() { "replace" } else { "create" })
                .arg(&user.id)
                .arg(to_json(user)?)
                .arg(was.map(|w| w.read.as_str()).unwrap_or_default())
                .arg(folded(&user.user_name))
                .arg(user.external_id.as_deref().unwrap_or_default())
                .arg(&user.sub)
                .arg(folded(&old.user_name))
                .arg(old.external_id.as_deref().unwrap_or_default())
                .arg(&old.sub)
                .arg(user.created);
            let answer: String = inv
                .invoke_async(&mut self.connection())
                .await
                .or_unavailable()?;
            written(&answer)
        }

        async fn read(&self, key: String) -> Result<Option<Found>, StoreError> {
            let json: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            json.map(from_json).transpose()
        }
    }

    fn written(answer: &str) -> Result<Written, StoreError> {
        match answer {
            "done" => Ok(Written::Done),
            "taken" => Ok(Written::Taken),
            "claimed" => Ok(Written::Claimed),
            "gone" => Ok(Written::Gone),
            "stale" => Ok(Written::Stale),
            other => Err(StoreError::Unexpected(format!(
                "user write answered {other:?}"
            ))),
        }
    }

    impl UserDirectory for RedisIndex {
        async fn create(&self, owner: Owner<'_>, user: &ScimUser) -> Result<Written, StoreError> {
            self.write(owner, user, None).await
        }

        async fn user(&self, owner: Owner<'_>, id: &str) -> Result<Option<Found>, StoreError> {
            self.read(self.scim_key(owner, "u", id)).await
        }

        async fn find(
            &self,
            owner: Owner<'_>,
            by: Lookup,
            value: &str,
        ) -> Result<Option<Found>, StoreError> {
            let key = match by {
                Lookup::UserName => self.scim_key(owner, "n", &folded(value)),
                Lookup::ExternalId => self.scim_key(owner, "e", value),
            };
            let id: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            match id {
                Some(id) => self.user(owner, &id).await,
                None => Ok(None),
            }
        }

        async fn replace(
            &self,
            owner: Owner<'_>,
            was: &Found,
            user: &ScimUser,
        ) -> Result<Written, StoreError> {
            self.write(owner, user, Some(was)).await
        }

        async fn page(
            &self,
            owner: Owner<'_>,
            start: usize,
            count: usize,
        ) -> Result<(usize, Vec<ScimUser>), StoreError> {
            let all = self.scim_key(owner, "all", "");
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
            if ids.is_empty() {
                return Ok((total, Vec::new()));
            }
            // One MGET: a client's keys share the issuer's hash tag.
            let mut mget = redis::cmd("MGET");
            for id in &ids {
                mget.arg(self.scim_key(owner, "u", id));
            }
            let stored: Vec<Option<String>> = mget
                .query_async(&mut self.connection())
                .await
                .or_unavailable()?;
            let users = stored
                .into_iter()
                .flatten()
                .map(|json| from_json(json).map(|found| found.user))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((total, users))
        }

        async fn delete(&self, owner: Owner<'_>, was: &Found) -> Result<Written, StoreError> {
            let user = &was.user;
            let mut inv = self.scripts().scim_delete.prepare_invoke();
            inv.key(self.scim_key(owner, "u", &user.id))
                .arg(self.issuer_base(owner.issuer))
                .arg(namespace(owner.client))
                .arg(&user.id)
                .arg(&was.read)
                .arg(folded(&user.user_name))
                .arg(user.external_id.as_deref().unwrap_or_default())
                .arg(&user.sub);
            let answer: String = inv
                .invoke_async(&mut self.connection())
                .await
                .or_unavailable()?;
            written(&answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: Owner<'static> = Owner {
        issuer: "https://op.example",
        client: "acme",
    };
    const GLOBEX: Owner<'static> = Owner {
        issuer: "https://op.example",
        client: "globex",
    };

    fn user(id: &str, name: &str, sub: &str) -> ScimUser {
        ScimUser::new(id.into(), name.into(), None, true, sub.into(), 1)
    }

    #[tokio::test]
    async fn clients_keep_their_own_users_and_subs_belong_to_one() {
        let d = MemoryDirectory::new();
        assert_eq!(
            d.create(ACME, &user("1", "Alice", "alice")).await.ok(),
            Some(Written::Done)
        );
        // The other client does not see it, may reuse its userName, not its sub.
        assert_eq!(d.user(GLOBEX, "1").await.ok(), Some(None));
        assert_eq!(
            d.create(GLOBEX, &user("2", "alice", "other")).await.ok(),
            Some(Written::Done)
        );
        assert_eq!(
            d.create(GLOBEX, &user("3", "decoy", "alice")).await.ok(),
            Some(Written::Claimed)
        );
        assert_eq!(
            d.create(ACME, &user("4", "ALICE", "x")).await.ok(),
            Some(Written::Taken)
        );
    }

    #[tokio::test]
    async fn a_change_names_what_it_read() {
        let d = MemoryDirectory::new();
        d.create(ACME, &user("1", "alice", "alice")).await.ok();
        let read = d.user(ACME, "1").await.ok().flatten().expect("read");
        let mut renamed = read.user.clone();
        renamed.user_name = "alicia".into();
        renamed.modified = 2;
        assert_eq!(
            d.replace(ACME, &read, &renamed).await.ok(),
            Some(Written::Done)
        );
        let mut inactive = read.user.clone();
        inactive.active = false;
        assert_eq!(
            d.replace(ACME, &read, &inactive).await.ok(),
            Some(Written::Stale),
            "a change read before another is refused"
        );
        // The old name is free again, and a deletion frees the new one and the sub.
        assert_eq!(
            d.find(ACME, Lookup::UserName, "alice").await.ok(),
            Some(None)
        );
        let now = d.user(ACME, "1").await.ok().flatten().expect("read");
        assert_eq!(d.delete(ACME, &now).await.ok(), Some(Written::Done));
        assert_eq!(
            d.create(GLOBEX, &user("2", "x", "alice")).await.ok(),
            Some(Written::Done)
        );
        assert_eq!(
            d.create(ACME, &user("3", "alicia", "y")).await.ok(),
            Some(Written::Done)
        );
    }
}
