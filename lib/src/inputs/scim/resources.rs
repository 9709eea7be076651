//! The SCIM documents this endpoint serves: User resources and list responses, and the
//! discovery documents clients read first (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`;
//! RFC 7643 §5–7), saying exactly what is supported.

use serde_json::{Map, Value, json};

use super::PREFIX;
use super::path::{USER_SCHEMA, strip_core};
use crate::index::ScimUser;
use crate::sys::rfc3339;

const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Where a user lives.
pub(super) fn location(id: &str) -> String {
    format!("{PREFIX}/Users/{}", crate::index::encode_component(id))
}

/// A user as a User resource: the attributes kept.
pub(super) fn user(user: &ScimUser) -> Value {
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "id": user.id,
        "userName": user.user_name,
        "active": user.active,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(user.created),
            "lastModified": rfc3339(user.modified),
            "location": location(&user.id),
        },
    });
    if let (Some(external), Some(map)) = (&user.external_id, resource.as_object_mut()) {
        map.insert("externalId".into(), external.clone().into());
    }
    resource
}

/// Which attributes an answer holds (RFC 7644 §3.4.2.5): `attributes` (only these, besides
/// `id` and `schemas`, which are always returned) or `excludedAttributes` (all but these).
/// Names compare case-insensitively, with or without the core schema's URN; `meta.created`
/// names a sub-attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Projection {
    only: Option<Vec<String>>,
    excluded: Vec<String>,
}

impl Projection {
    /// From the comma-separated query parameters.
    pub(super) fn from_query(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        let split = |list: &str| -> Vec<String> {
            list.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| strip_core(a).to_ascii_lowercase())
                .collect()
        };
        Self {
            only: attributes.map(split).filter(|a| !a.is_empty()),
            excluded: excluded.map(split).unwrap_or_default(),
        }
    }

    /// From the arrays of a `SearchRequest` body.
    pub(super) fn from_lists(attributes: &[String], excluded: &[String]) -> Self {
        Self::from_query(Some(&attributes.join(",")), Some(&excluded.join(",")))
    }

    /// `resource` holding only what was asked for.
    pub(super) fn apply(&self, resource: Value) -> Value {
        let Value::Object(object) = resource else {
            return resource;
        };
        let always = |key: &str| key == "id" || key == "schemas";
        let mut kept = Map::new();
        for (key, value) in object {
            let name = key.to_ascii_lowercase();
            if always(&key) {
                kept.insert(key, value);
                continue;
            }
            let subs = |list: &[String]| -> Vec<String> {
                list.iter()
                    .filter_map(|a| a.strip_prefix(&format!("{name}.")).map(str::to_owned))
                    .collect()
            };
            let value = match &self.only {
                Some(only) if only.contains(&name) => value,
                Some(only) => {
                    let wanted = subs(only);
                    match value {
                        Value::Object(inner) if !wanted.is_empty() => Value::Object(
                            inner
                                .into_iter()
                                .filter(|(k, _)| wanted.contains(&k.to_ascii_lowercase()))
                                .collect(),
                        ),
                        _ => continue,
                    }
                }
                None => value,
            };
            if self.excluded.contains(&name) {
                continue;
            }
            let dropped = subs(&self.excluded);
            let value = match value {
                Value::Object(inner) if !dropped.is_empty() => Value::Object(
                    inner
                        .into_iter()
                        .filter(|(k, _)| !dropped.contains(&k.to_ascii_lowercase()))
                        .collect(),
                ),
                other => other,
            };
            kept.insert(key, value);
        }
        Value::Object(kept)
    }
}

/// A list response holding `resources` (all of them: a filter finds at most one user).
pub(super) fn list(resources: Vec<Value>) -> Value {
    let total = resources.len();
    page(resources, total, 1)
}

/// A list response: one page of `total` results, starting at `start` (1-based).
pub(super) fn page(resources: Vec<Value>, total: usize, start: usize) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

pub(super) fn service_provider_config() -> Value {
    let off = json!({ "supported": false });
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/oidc-logout/oidc-logout/blob/main/docs/deprovisioning.md",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": 100 },
        "changePassword": off,
        "sort": off,
        "etag": off,
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A bearer token configured for this SCIM client",
            "primary": true,
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{PREFIX}/ServiceProviderConfig") },
    })
}

pub(super) fn user_resource_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [],
        "meta": { "resourceType": "ResourceType", "location": format!("{PREFIX}/ResourceTypes/User") },
    })
}

pub(super) fn resource_types() -> Value {
    list(vec![user_resource_type()])
}

fn attribute(name: &str, kind: &str, required: bool, uniqueness: &str, case_exact: bool) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "required": required,
        "caseExact": case_exact,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": uniqueness,
    })
}

fn user_schema() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User Account (the attributes kept for deprovisioning; others are accepted and not stored)",
        "attributes": [
            attribute("userName", "string", true, "server", false),
            attribute("externalId", "string", false, "server", true),
            attribute("active", "boolean", false, "none", false),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{PREFIX}/Schemas/{USER_SCHEMA}") },
    })
}

pub(super) fn schemas() -> Value {
    list(vec![user_schema()])
}

pub(super) fn schema(id: &str) -> Option<Value> {
    (id == USER_SCHEMA).then(user_schema)
}

#[cfg(test)]
mod tests {
    use super::{Projection, rfc3339};
    use serde_json::json;

    #[test]
    fn answers_hold_what_was_asked_for() {
        let resource = json!({
            "schemas": ["s"], "id": "1", "userName": "alice", "active": false,
            "meta": {"created": "c", "location": "l"},
        });
        let only = Projection::from_query(
            Some("userName, urn:ietf:params:scim:schemas:core:2.0:User:meta.created"),
            None,
        );
        assert_eq!(
            only.apply(resource.clone()),
            json!({"schemas": ["s"], "id": "1", "userName": "alice", "meta": {"created": "c"}})
        );
        let without = Projection::from_query(None, Some("ACTIVE,meta.location,id"));
        assert_eq!(
            without.apply(resource.clone()),
            json!({"schemas": ["s"], "id": "1", "userName": "alice", "meta": {"created": "c"}})
        );
        assert_eq!(Projection::default().apply(resource.clone()), resource);
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_009_488), "2026-11-30T03:31:28Z");
    }
}
