//! SCIM attribute paths and filters (RFC 7644 §3.4.2.2, §3.5.2), the subset provisioning
//! clients use: `attr eq "value"` filters on `userName`, `externalId` or `id`, and attribute
//! paths such as `externalId`, `name.givenName`, `emails[type eq "work"].value` or an extension
//! attribute `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
//! Attribute names compare case-insensitively, as RFC 7643 §2.1 says.

use serde_json::{Map, Value};

/// The core User schema; an attribute path may carry it as a prefix.
pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// `attr eq "value"`: which attribute, and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Equals {
    pub(crate) attribute: String,
    pub(crate) value: Value,
}

/// Parse a filter of the one form supported: `attrPath eq value` (a JSON string, number,
/// boolean or null). Anything else is refused with a reason.
pub(crate) fn parse_filter(filter: &str) -> Result<Equals, &'static str> {
    let filter = filter.trim();
    let (attribute, rest) = filter
        .split_once(char::is_whitespace)
        .ok_or("the filter must be `attribute eq \"value\"`")?;
    let rest = rest.trim_start();
    let (op, value) = rest
        .split_once(char::is_whitespace)
        .ok_or("the filter must be `attribute eq \"value\"`")?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err("only the eq operator is supported");
    }
    if attribute.is_empty() || !attribute.chars().all(is_path_char) {
        return Err("the filter's attribute is not an attribute name");
    }
    let value = value.trim();
    // Entra ID's documentation also shows the value unquoted (`externalId eq jyoung`).
    let value: Value = serde_json::from_str(value).unwrap_or_else(|_| {
        if !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            Value::String(value.to_owned())
        } else {
            Value::Null
        }
    });
    if value.is_null() {
        return Err("the filter's value must be a JSON string, number or boolean");
    }
    if value.is_array() || value.is_object() {
        return Err("the filter's value must be a JSON string, number or boolean");
    }
    Ok(Equals {
        attribute: strip_core(attribute).to_owned(),
        value,
    })
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
}

/// An attribute path without the core schema's prefix.
pub(crate) fn strip_core(path: &str) -> &str {
    path.get(..USER_SCHEMA.len())
        .filter(|p| p.eq_ignore_ascii_case(USER_SCHEMA))
        .and_then(|_| path.get(USER_SCHEMA.len()..))
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(path)
}

/// An object's member by name, case-insensitively.
pub(crate) fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// The value at an attribute path in a resource, if there is one. Supported: `attr`,
/// `attr.sub`, `attr[sub eq value].sub2` (the first matching element of a multi-valued
/// attribute), each optionally under an extension schema URN (`urn:…:User:attr`).
pub(crate) fn value_at<'a>(resource: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let path = strip_core(path);
    let (object, path) = match path.rsplit_once(':') {
        Some((urn, attr)) if urn.starts_with("urn:") => (member(resource, urn)?.as_object()?, attr),
        _ => (resource, path),
    };
    let (head, tail) = match path.find(['[', '.']) {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let mut value = member(object, head)?;
    let mut tail = tail;
    if let Some(rest) = tail.strip_prefix('[') {
        let (condition, after) = rest.split_once(']')?;
        let wanted = parse_filter(condition).ok()?;
        value = value.as_array()?.iter().find(|element| {
            element
                .as_object()
                .and_then(|e| member(e, &wanted.attribute))
                .is_some_and(|v| same(v, &wanted.value))
        })?;
        tail = after;
    }
    if let Some(sub) = tail.strip_prefix('.') {
        value = member(value.as_object()?, sub)?;
    } else if !tail.is_empty() {
        return None;
    }
    Some(value)
}

/// Whether two attribute values are equal as a filter compares them (strings
/// case-insensitively, as for `caseExact: false` attributes).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// A path's attribute compared with `name` (`externalId` against `EXTERNALID` or
/// `urn:…:core:2.0:User:externalId`).
pub(crate) fn names(path: &str, name: &str) -> bool {
    strip_core(path).eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_of_the_supported_form_are_read_and_others_refused() {
        let parsed = parse_filter(r#"userName eq "Test_User_dfeef4c5@contoso.com""#).expect("ok");
        assert_eq!(parsed.attribute, "userName");
        assert_eq!(parsed.value, json!("Test_User_dfeef4c5@contoso.com"));
        let escaped = parse_filter(r#"externalId  EQ  "a \"quoted\" id""#).expect("ok");
        assert_eq!(escaped.value, json!("a \"quoted\" id"));
        let urn = parse_filter(&format!("{USER_SCHEMA}:userName eq \"x\"")).expect("ok");
        assert_eq!(urn.attribute, "userName");
        let bare = parse_filter("externalId eq jyoung").expect("ok");
        assert_eq!(bare.value, json!("jyoung"));
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName co "x""#,
            r#"userName eq "x" and active eq true"#,
            r#"userName eq ["x"]"#,
            r#"userName eq "unterminated"#,
            "userName eq a b",
            r#"user;Name eq "x""#,
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_found_at_attribute_paths() {
        let user = json!({
            "userName": "bjensen",
            "externalId": "e-1",
            "name": {"givenName": "Barbara"},
            "emails": [
                {"type": "home", "value": "b@home.example"},
                {"type": "work", "value": "b@work.example", "primary": true}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"}
        });
        let user = user.as_object().expect("object");
        let at = |path: &str| value_at(user, path).cloned();
        assert_eq!(at("EXTERNALID"), Some(json!("e-1")));
        assert_eq!(
            at(&format!("{USER_SCHEMA}:userName")),
            Some(json!("bjensen"))
        );
        assert_eq!(at("name.givenName"), Some(json!("Barbara")));
        assert_eq!(
            at(r#"emails[type eq "work"].value"#),
            Some(json!("b@work.example"))
        );
        assert_eq!(
            at("emails[primary eq true].value"),
            Some(json!("b@work.example"))
        );
        assert_eq!(
            at("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
            Some(json!("701984"))
        );
        for missing in [
            "nickName",
            "name.familyName",
            r#"emails[type eq "other"].value"#,
            "emails[",
            "name.givenName.x",
        ] {
            assert_eq!(at(missing), None, "{missing}");
        }
    }
}
