//! SCIM PATCH (RFC 7644 §3.5.2) applied to the attributes kept: `active`, `userName`,
//! `externalId` and the attribute mapped to `sub`. Operations on other attributes are valid and
//! change nothing kept. Both forms clients send are read: with a `path` (Entra ID:
//! `{"op": "Replace", "path": "active", "value": "False"}`) and without one, the value an object
//! of attributes (Okta: `{"op": "replace", "value": {"active": false}}`).

use serde_json::{Map, Value};

use axum::http::StatusCode;

use super::path::{member, names, strip_core, value_at};
use crate::response::Refusal;

/// The PatchOp message schema.
pub(crate) const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What a user's kept attributes become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Draft {
    pub(crate) user_name: String,
    pub(crate) external_id: Option<String>,
    pub(crate) active: bool,
    pub(crate) sub: String,
}

/// Why a request cannot be applied: a 400 with a SCIM `scimType` and a fixed description.
pub(crate) fn invalid(scim_type: &'static str, detail: &'static str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
}

/// A boolean as clients send it: `false`, or Entra ID's `"False"`.
pub(crate) fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Apply a PatchOp message to `draft`; `sub_attribute` is the path mapped to `sub`.
pub(crate) fn apply(body: &Value, draft: &mut Draft, sub_attribute: &str) -> Result<(), Refusal> {
    let message = body.as_object().ok_or(invalid(
        "invalidSyntax",
        "the body must be a PatchOp object",
    ))?;
    let is_patch = member(message, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|s| s.as_str() == Some(PATCH_OP)));
    if !is_patch {
        return Err(invalid(
            "invalidSyntax",
            "schemas must hold urn:ietf:params:scim:api:messages:2.0:PatchOp",
        ));
    }
    let operations = member(message, "Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or(invalid(
            "invalidSyntax",
            "Operations must be a non-empty array",
        ))?;
    for operation in operations {
        let operation = operation
            .as_object()
            .ok_or(invalid("invalidSyntax", "each operation must be an object"))?;
        let op = member(operation, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or(invalid("invalidSyntax", "each operation needs an op"))?;
        let value = member(operation, "value");
        match (
            op.as_str(),
            member(operation, "path").and_then(Value::as_str),
        ) {
            ("add" | "replace", Some(path)) => {
                let value = value.ok_or(invalid("invalidValue", "add and replace need a value"))?;
                set(draft, path, value, sub_attribute)?;
            }
            ("add" | "replace", None) => {
                let attributes = value.and_then(Value::as_object).ok_or(invalid(
                    "invalidValue",
                    "without a path, the value must be an object",
                ))?;
                set_all(draft, attributes, sub_attribute)?;
            }
            ("remove", Some(path)) => remove(draft, path, sub_attribute)?,
            ("remove", None) => return Err(invalid("noTarget", "remove needs a path")),
            _ => {
                return Err(invalid(
                    "invalidSyntax",
                    "op must be add, replace or remove",
                ));
            }
        }
    }
    if draft.user_name.is_empty() {
        return Err(invalid("invalidValue", "userName must not be empty"));
    }
    Ok(())
}

fn text(value: &Value) -> Result<String, Refusal> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(
            "invalidValue",
            "the value must be a non-empty string",
        )),
    }
}

/// One attribute set by path.
fn set(draft: &mut Draft, path: &str, value: &Value, sub_attribute: &str) -> Result<(), Refusal> {
    if strip_core(path).eq_ignore_ascii_case(strip_core(sub_attribute)) {
        draft.sub = text(value)?;
    }
    if names(path, "active") {
        draft.active =
            boolean(value).ok_or(invalid("invalidValue", "active must be true or false"))?;
    } else if names(path, "userName") {
        draft.user_name = text(value)?;
    } else if names(path, "externalId") {
        draft.external_id = Some(text(value)?);
    }
    Ok(())
}

/// Attributes set from a value object (a PATCH without a path).
fn set_all(
    draft: &mut Draft,
    attributes: &Map<String, Value>,
    sub_attribute: &str,
) -> Result<(), Refusal> {
    for (name, value) in attributes {
        if names(name, "active") || names(name, "userName") || names(name, "externalId") {
            set(draft, name, value, "")?;
        }
    }
    // The mapped attribute by its path as a key (Entra ID with `aadOptscim062020`:
    // `"name.givenName"`, `"urn:…:enterprise:2.0:User:employeeNumber"`), or nested.
    let wanted = strip_core(sub_attribute);
    let keyed = attributes
        .iter()
        .find(|(key, _)| strip_core(key).eq_ignore_ascii_case(wanted))
        .map(|(_, value)| value);
    if let Some(value) = keyed.or_else(|| value_at(attributes, sub_attribute)) {
        draft.sub = text(value)?;
    }
    Ok(())
}

fn remove(draft: &mut Draft, path: &str, sub_attribute: &str) -> Result<(), Refusal> {
    if strip_core(path).eq_ignore_ascii_case(strip_core(sub_attribute)) {
        return Err(invalid(
            "mutability",
            "the attribute mapped to the user's sub cannot be removed",
        ));
    }
    if names(path, "userName") {
        return Err(invalid("mutability", "userName cannot be removed"));
    }
    // RFC 7644 §3.5.2.2: a removed single-valued attribute is unassigned; for `active` that
    // means not active (Okta and Entra ID deprovision this way too).
    if names(path, "active") {
        draft.active = false;
    }
    if names(path, "externalId") {
        draft.external_id = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft() -> Draft {
        Draft {
            user_name: "bjensen@example.com".into(),
            external_id: Some("e-1".into()),
            active: true,
            sub: "e-1".into(),
        }
    }

    fn patch(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": operations})
    }

    #[test]
    fn entra_and_okta_deactivations_are_read() {
        for ops in [
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            json!([{"op": "replace", "path": "active", "value": false}]),
            json!([{"op": "replace", "value": {"active": false}}]),
            json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y"},
                   {"op": "Replace", "path": "active", "value": "false"}]),
        ] {
            let mut d = draft();
            apply(&patch(ops.clone()), &mut d, "externalId").expect("valid");
            assert!(!d.active, "{ops}");
            assert_eq!(d.sub, "e-1");
        }
    }

    #[test]
    fn the_sub_attribute_follows_its_path_in_either_form() {
        let mut d = draft();
        apply(
            &patch(json!([{"op": "replace", "path": "externalId", "value": "e-2"}])),
            &mut d,
            "externalId",
        )
        .expect("valid");
        assert_eq!(
            (d.external_id.as_deref(), d.sub.as_str()),
            (Some("e-2"), "e-2")
        );
        let enterprise =
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";
        let mut d = draft();
        apply(
            &patch(json!([{"op": "replace", "value": {
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"}
            }}])),
            &mut d,
            enterprise,
        )
        .expect("valid");
        assert_eq!(d.sub, "701984");
        // Entra ID's flagged form: the path itself as the key.
        let mut d = draft();
        apply(
            &patch(json!([{"op": "replace", "value": {
                "displayName": "Bjfe",
                "name.givenName": "Kkom",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"
            }}])),
            &mut d,
            enterprise,
        )
        .expect("valid");
        assert_eq!(d.sub, "Aklq");
        let mut d = draft();
        apply(
            &patch(json!([{"op": "replace", "path": "userName", "value": "new@example.com"}])),
            &mut d,
            "userName",
        )
        .expect("valid");
        assert_eq!(
            (d.user_name.as_str(), d.sub.as_str()),
            ("new@example.com", "new@example.com")
        );
    }

    #[test]
    fn removing_active_deactivates() {
        let mut d = draft();
        apply(
            &patch(json!([{"op": "Remove", "path": "active"}])),
            &mut d,
            "externalId",
        )
        .expect("valid");
        assert!(!d.active);
    }

    #[test]
    fn malformed_patches_are_refused_and_change_nothing() {
        for body in [
            json!([]),
            json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
            patch(json!([])),
            patch(json!([{"op": "move", "path": "active", "value": false}])),
            patch(json!([{"op": "replace", "path": "active", "value": "maybe"}])),
            patch(json!([{"op": "replace", "path": "active"}])),
            patch(json!([{"op": "replace", "value": "active"}])),
            patch(json!([{"op": "remove", "path": "userName"}])),
            patch(json!([{"op": "remove", "path": "externalId"}, {"op": "remove"}])),
            patch(json!([{"op": "replace", "path": "userName", "value": ""}])),
            patch(json!([{"op": "replace", "path": "externalId", "value": 7}])),
        ] {
            let mut d = draft();
            assert!(apply(&body, &mut d, "externalId").is_err(), "{body}");
        }
    }
}
