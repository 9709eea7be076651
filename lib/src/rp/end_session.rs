//! The RP-Initiated Logout 1.0 redirect to the OP's `end_session_endpoint`.

use reqwest::Url;

use super::Client;

/// The URL to send the browser to: `end_session_endpoint` with `id_token_hint` (when known),
/// `client_id`, `post_logout_redirect_uri` (when registered) and `state`.
pub fn end_session_url(
    endpoint: &Url,
    id_token_hint: Option<&str>,
    client: &Client,
    state: &str,
) -> Url {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(hint) = id_token_hint {
            query.append_pair("id_token_hint", hint);
        }
        query.append_pair("client_id", &client.id);
        if let Some(uri) = &client.post_logout_redirect_uri {
            query.append_pair("post_logout_redirect_uri", uri);
        }
        query.append_pair("state", state);
    }
    url
}
