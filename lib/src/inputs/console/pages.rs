//! The console's pages, rendered on the server as plain HTML: no script anywhere (the
//! Content-Security-Policy forbids it), every value escaped, one style sheet. Session ids
//! never appear: they are the applications' cookies; a session is shown and named by its
//! handle, a digest of its id.

use std::fmt::Write as _;

pub(super) use crate::core::session_handle as handle;
use crate::core::{Activity, SessionView};
use crate::sys::rfc3339;

/// The style sheet, served at `/console/style.css`.
pub(super) const STYLE: &str = include_str!("style.css");

/// `value` escaped for HTML text and attribute values.
pub(super) fn esc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `value` percent-encoded for a query string.
fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn when(secs: u64) -> String {
    rfc3339(secs).replace('T', " ").replace('Z', " UTC")
}

/// Who is signed in, for the header.
pub(super) struct Chrome<'a> {
    pub(super) admin: &'a str,
    pub(super) csrf: &'a str,
}

/// A whole page: `title`, the header (with the signed-in person when there is one), `body`.
pub(super) fn page(title: &str, chrome: Option<&Chrome<'_>>, body: &str) -> String {
    let nav = match chrome {
        Some(c) => format!(
            r#"<nav><a href="/console">Search</a><a href="/console/activity">Activity</a></nav>
<form class="who" method="post" action="/console/sign-out"><span>{}</span><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form>"#,
            esc(c.admin),
            esc(c.csrf)
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · oidc-logout console</title><link rel="stylesheet" href="/console/style.css"></head>
<body><header><a class="brand" href="/console">oidc-logout <span>console</span></a>{nav}</header>
<main>{body}</main></body></html>"#,
        esc(title)
    )
}

/// The sign-in page: through the OP when configured, and with an admin token.
pub(super) fn sign_in(csrf: &str, oidc: bool, problem: Option<&str>) -> String {
    let mut body = String::from(r#"<section class="card narrow"><h1>Sign in</h1>"#);
    if let Some(problem) = problem {
        let _ = write!(body, r#"<p class="problem">{}</p>"#, esc(problem));
    }
    if oidc {
        body.push_str(
            r#"<p><a class="button primary" href="/console/sign-in/oidc">Sign in with your identity provider</a></p><p class="or">or, when it is down</p>"#,
        );
    }
    let _ = write!(
        body,
        r#"<form method="post" action="/console/sign-in/token"><input type="hidden" name="csrf" value="{}">
<label for="token">Admin token</label><input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in with a token</button></form></section>"#,
        esc(csrf)
    );
    page("Sign in", None, &body)
}

/// The OIDC callback's hop: a same-site navigation, so the browser sends the `SameSite=Strict`
/// cookie that a cross-site redirect from the OP would not carry.
pub(super) fn hop(to: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={0}"><title>Signing in</title></head><body><p><a href="{0}">Continue</a></p></body></html>"#,
        esc(to)
    )
}

/// A user found by a search.
pub(super) struct Match {
    pub(super) issuer: String,
    pub(super) sub: String,
    /// How: `sub`, `SCIM userName (client)`, `session`.
    pub(super) by: String,
    pub(super) sessions: usize,
}

/// The search page, with its results when `q` was given.
pub(super) fn search(chrome: &Chrome<'_>, q_value: &str, found: Option<&[Match]>) -> String {
    let mut body = format!(
        r#"<section class="card"><h1>Find a user</h1>
<form class="search" method="get" action="/console"><input name="q" value="{}" placeholder="sub, e-mail, SCIM userName or session id" aria-label="search" autofocus><button type="submit">Search</button></form>"#,
        esc(q_value)
    );
    match found {
        None => {}
        Some([]) => body.push_str(r#"<p class="empty">No user matches.</p>"#),
        Some(found) => {
            body.push_str(
                "<table><thead><tr><th>User</th><th>Issuer</th><th>Found by</th><th>Live sessions</th></tr></thead><tbody>",
            );
            for m in found {
                let _ = write!(
                    body,
                    r#"<tr><td><a href="/console/user?issuer={}&amp;sub={}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    q(&m.issuer),
                    q(&m.sub),
                    esc(&m.sub),
                    esc(&m.issuer),
                    esc(&m.by),
                    m.sessions
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    body.push_str("</section>");
    page("Search", Some(chrome), &body)
}

fn hidden(csrf: &str, fields: &[(&str, &str)]) -> String {
    let mut out = format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf));
    for (name, value) in fields {
        let _ = write!(
            out,
            r#"<input type="hidden" name="{}" value="{}">"#,
            esc(name),
            esc(value)
        );
    }
    out
}

fn action_form(csrf: &str, fields: &[(&str, &str)], label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="/console/act">{}<button type="submit" class="{class}">{}</button></form>"#,
        hidden(csrf, fields),
        esc(label)
    )
}

/// A user's page: their live sessions, and the actions on them.
pub(super) fn user(
    chrome: &Chrome<'_>,
    issuer: &str,
    sub: &str,
    sessions: &[SessionView],
    done: Option<&str>,
) -> String {
    let mut body = String::new();
    if let Some(done) = done {
        let _ = write!(body, r#"<p class="done">{}</p>"#, esc(done));
    }
    let _ = write!(
        body,
        r#"<section class="card"><div class="title"><div><h1>{}</h1><p class="muted">{}</p></div>{}</div>"#,
        esc(sub),
        esc(issuer),
        action_form(
            chrome.csrf,
            &[("action", "revoke"), ("issuer", issuer), ("sub", sub)],
            "Revoke everywhere",
            "danger"
        )
    );
    if sessions.is_empty() {
        body.push_str(r#"<p class="empty">No live session.</p></section>"#);
        return page(sub, Some(chrome), &body);
    }
    body.push_str(
        "<table><thead><tr><th>Session</th><th>Application</th><th>Policy · customer</th><th>Created</th><th>Last seen</th><th>Device</th><th>Address</th><th></th></tr></thead><tbody>",
    );
    let dash = || "—".to_owned();
    for s in sessions {
        let handle = handle(&s.session_id);
        let app = s.client_id.clone().unwrap_or_else(dash);
        let policy = match (&s.policy, &s.customer) {
            (None, None) => dash(),
            (p, c) => format!(
                "{} · {}",
                p.as_deref().unwrap_or("default"),
                c.as_deref().unwrap_or("—")
            ),
        };
        let created = when(s.logged_in_at.unwrap_or(s.auth_time));
        let seen = s.last_seen.map(when).unwrap_or_else(dash);
        let _ = write!(
            body,
            r#"<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="device">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&handle),
            esc(&app),
            esc(&policy),
            esc(&created),
            esc(&seen),
            esc(s.user_agent.as_deref().unwrap_or("—")),
            esc(s.address.as_deref().unwrap_or("—")),
            action_form(
                chrome.csrf,
                &[
                    ("action", "end-session"),
                    ("issuer", issuer),
                    ("sub", sub),
                    ("session", &handle)
                ],
                "End",
                ""
            )
        );
    }
    body.push_str("</tbody></table>");
    let mut clients: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s.client_id.as_deref())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    if !clients.is_empty() {
        body.push_str(r#"<div class="apps"><span class="muted">End every session in</span>"#);
        for client in clients {
            body.push_str(&action_form(
                chrome.csrf,
                &[
                    ("action", "end-app"),
                    ("issuer", issuer),
                    ("sub", sub),
                    ("client", client),
                ],
                client,
                "",
            ));
        }
        body.push_str("</div>");
    }
    body.push_str("</section>");
    page(sub, Some(chrome), &body)
}

/// The confirmation of an action: what it will do, and the form that does it.
pub(super) fn confirm(
    chrome: &Chrome<'_>,
    what: &str,
    fields: &[(&str, &str)],
    back: &str,
) -> String {
    let mut fields = fields.to_vec();
    fields.push(("confirmed", "yes"));
    let body = format!(
        r#"<section class="card narrow"><h1>Confirm</h1><p>{}</p><form method="post" action="/console/act">{}<button type="submit" class="danger">Yes, do it</button> <a class="button" href="{}">Cancel</a></form></section>"#,
        esc(what),
        hidden(chrome.csrf, &fields),
        esc(back)
    );
    page("Confirm", Some(chrome), &body)
}

/// The latest activity.
pub(super) fn activity(chrome: &Chrome<'_>, entries: &[Activity]) -> String {
    let mut body = String::from(r#"<section class="card"><h1>Activity</h1>"#);
    if entries.is_empty() {
        body.push_str(r#"<p class="empty">Nothing yet.</p></section>"#);
        return page("Activity", Some(chrome), &body);
    }
    body.push_str("<table><thead><tr><th>When</th><th>Input</th><th>Who</th><th>What</th><th>Whom</th><th>Ended</th><th>Outcome</th></tr></thead><tbody>");
    for e in entries {
        let _ = write!(
            body,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="device">{}</td><td>{}</td><td><span class="tag {}">{}</span></td></tr>"#,
            esc(&when(e.at)),
            esc(&e.input),
            esc(&e.sender),
            esc(&e.action),
            esc(&e.whom),
            e.ended,
            if e.outcome == "applied" {
                "ok"
            } else {
                "other"
            },
            esc(&e.outcome)
        );
    }
    body.push_str("</tbody></table></section>");
    page("Activity", Some(chrome), &body)
}

/// A page saying what went wrong.
pub(super) fn problem(chrome: Option<&Chrome<'_>>, title: &str, message: &str) -> String {
    let body = format!(
        r#"<section class="card narrow"><h1>{}</h1><p class="problem">{}</p><p><a href="/console">Back</a></p></section>"#,
        esc(title),
        esc(message)
    );
    page(title, chrome, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            esc(r#"<script>"x"&'y'</script>"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
        let page = problem(None, "<b>", "\"onload=x");
        assert!(!page.contains("<b>") && !page.contains("\"onload"));
    }

    #[test]
    fn handles_name_sessions_without_showing_their_ids() {
        let h = handle("the-session-id");
        assert_eq!(h.len(), 16);
        assert_ne!(h, handle("another-session-id"));
        assert!(!h.contains("session"));
    }
}
