//! Session policies, and the rules that choose one per login.
//!
//! A [`SessionPolicy`] says how long a session may live (idle timeout, absolute lifetime), how
//! often its user's access must be confirmed at the OP (`revalidate_after`, with what to do when
//! the OP cannot answer), and how old its authentication may be (`max_auth_age`). [`Policies`]
//! holds named policies, a default, and the rules that pick one for a login from what the
//! verified ID token says — issuer, client, any claim (`tid`, `idp`, `amr`, `groups`, ...), the
//! e-mail domain — or from a function of the application's own. The choice is made once, at
//! login, and recorded in the [`Login`](super::Login) (`policy`), so every instance applies the
//! same policy to the session for its whole life.
//!
//! The rules can come from the application's configuration file: [`PoliciesConfig`] is the
//! serde shape (for example under `[session_policies]` in TOML), checked by
//! [`Policies::from_config`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Limits on how long a session lives and how often its user's access is confirmed.
///
/// ```
/// use std::time::Duration;
/// use oidc_logout::session_store::{SessionPolicy, Unreachable};
///
/// // A customer who wants a disabled user out within 5 minutes, even with the OP down.
/// let strict = SessionPolicy::default()
///     .with_idle_timeout(Duration::from_secs(30 * 60))
///     .with_absolute_lifetime(Duration::from_secs(8 * 3600))
///     .with_revalidate_after(Duration::from_secs(240))
///     .with_unreachable(Unreachable::ClosedAfter(Duration::from_secs(60)));
/// assert!(strict.checks_requests());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionPolicy {
    /// End a session not saved for this long.
    pub idle_timeout: Option<Duration>,
    /// End a session this long after the login, however active.
    pub absolute_lifetime: Option<Duration>,
    /// Confirm at the OP, before serving a request, that the user still has access when the
    /// last confirmation is older than this (the refresh grant; without a refresh token, the
    /// userinfo endpoint). A refusal ends the session. This bounds how long a user disabled at
    /// the OP keeps the session when the OP sends nothing.
    pub revalidate_after: Option<Duration>,
    /// What to do while the OP cannot be asked (network, 5xx).
    pub unreachable: Unreachable,
    /// A session whose authentication (`auth_time`) is older than this must log in again; the
    /// next authorization request carries `max_age`.
    pub max_auth_age: Option<Duration>,
    /// When a revalidation finds the user's access revoked, end every session of the user at
    /// the issuer and refuse their access tokens, as a back-channel logout of the user would
    /// (through the core: its denylist marker lasts the issuer's access-token lifetime as the
    /// core is configured, [`CoreBuilder::issuer_with_lifetime`](crate::core::CoreBuilder::issuer_with_lifetime);
    /// set this to the same). Without it only the session that was checked ends.
    pub revoke_user_for: Option<Duration>,
}

/// What a revalidation does while the OP cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unreachable {
    /// Keep serving the session, and try again on the next request.
    Open,
    /// Keep serving for this long after the revalidation fell due, then refuse the session's
    /// requests (`503`, the session is kept) until the OP answers again.
    ClosedAfter(Duration),
}

impl Default for Unreachable {
    /// Closed one minute after the revalidation fell due.
    fn default() -> Self {
        Self::ClosedAfter(Duration::from_secs(60))
    }
}

impl SessionPolicy {
    /// End a session not saved for `idle` (the default: no idle limit).
    #[must_use]
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// End a session `lifetime` after the login, however active (the default: no limit).
    #[must_use]
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute_lifetime = Some(lifetime);
        self
    }

    /// Confirm the user's access at the OP when the last confirmation is older than `after`.
    #[must_use]
    pub fn with_revalidate_after(mut self, after: Duration) -> Self {
        self.revalidate_after = Some(after);
        self
    }

    /// What to do while the OP cannot be asked.
    #[must_use]
    pub fn with_unreachable(mut self, unreachable: Unreachable) -> Self {
        self.unreachable = unreachable;
        self
    }

    /// Require a new login when the authentication is older than `age`.
    #[must_use]
    pub fn with_max_auth_age(mut self, age: Duration) -> Self {
        self.max_auth_age = Some(age);
        self
    }

    /// On a refused revalidation, log the user out everywhere and refuse their access tokens
    /// for `lifetime`.
    #[must_use]
    pub fn with_revoke_user_for(mut self, lifetime: Duration) -> Self {
        self.revoke_user_for = Some(lifetime);
        self
    }

    /// Whether a request needs more than the store's checks: a revalidation or an
    /// authentication-age check.
    pub fn checks_requests(&self) -> bool {
        self.revalidate_after.is_some() || self.max_auth_age.is_some()
    }
}

/// What a rule or a chooser sees of a login: the verified ID token's claims.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// The issuer.
    pub issuer: &'a str,
    /// The client that logged the user in.
    pub client_id: Option<&'a str>,
    /// Every claim of the verified ID token.
    pub claims: &'a Map<String, Value>,
}

/// One rule: every condition it has must hold. A claim condition holds when the claim is that
/// string, or an array holding it (`amr`, `groups`). A rule names a policy, a customer, or both:
/// the first matching rule that names a policy picks the session's policy, the first matching
/// rule that names a customer decides whose user the login is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyRule {
    /// The policy to use when the rule matches.
    #[serde(default)]
    pub policy: Option<String>,
    /// The customer the login belongs to when the rule matches: senders scoped to a customer
    /// (`customer = "…"` in their configuration) reach only its users.
    #[serde(default)]
    pub customer: Option<String>,
    /// Only logins from this issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Only logins of this client.
    #[serde(default)]
    pub client: Option<String>,
    /// Claims and the value each must have (or hold).
    #[serde(default)]
    pub claims: HashMap<String, String>,
    /// Only users whose `email` claim is at this domain (case-insensitive).
    #[serde(default)]
    pub email_domain: Option<String>,
}

impl PolicyRule {
    /// A rule choosing `policy`; with no condition it matches every login.
    pub fn new(policy: impl Into<String>) -> Self {
        Self {
            policy: Some(policy.into()),
            ..Self::for_customer_only()
        }
    }

    /// A rule deciding that the logins it matches belong to `customer` (and choosing no policy).
    pub fn customer_rule(customer: impl Into<String>) -> Self {
        Self {
            customer: Some(customer.into()),
            ..Self::for_customer_only()
        }
    }

    fn for_customer_only() -> Self {
        Self {
            policy: None,
            customer: None,
            issuer: None,
            client: None,
            claims: HashMap::new(),
            email_domain: None,
        }
    }

    /// The logins it matches belong to `customer`.
    #[must_use]
    pub fn customer(mut self, customer: impl Into<String>) -> Self {
        self.customer = Some(customer.into());
        self
    }

    /// Only logins from `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Only logins of `client`.
    #[must_use]
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// Only logins whose claim `name` is `value` (or holds it).
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Only users whose `email` is at `domain`.
    #[must_use]
    pub fn email_domain(mut self, domain: impl Into<String>) -> Self {
        self.email_domain = Some(domain.into());
        self
    }

    fn matches(&self, login: &PolicyInput<'_>) -> bool {
        self.issuer.as_deref().is_none_or(|i| i == login.issuer)
            && self
                .client
                .as_deref()
                .is_none_or(|c| login.client_id == Some(c))
            && self
                .claims
                .iter()
                .all(|(name, want)| has_value(login.claims.get(name), want))
            && self.email_domain.as_deref().is_none_or(|domain| {
                login
                    .claims
                    .get("email")
                    .and_then(Value::as_str)
                    .and_then(|email| email.rsplit_once('@'))
                    .is_some_and(|(_, at)| at.eq_ignore_ascii_case(domain))
            })
    }
}

fn has_value(claim: Option<&Value>, want: &str) -> bool {
    match claim {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
        Some(Value::Bool(b)) => want == if *b { "true" } else { "false" },
        Some(Value::Number(n)) => n.to_string() == want,
        _ => false,
    }
}

/// A function that picks a policy by name for a login (`None`: let the rules decide).
pub type Chooser = dyn Fn(&PolicyInput<'_>) -> Option<String> + Send + Sync;

/// Named policies, a default, and what chooses between them. Cheap to clone.
///
/// ```
/// use oidc_logout::session_store::{Policies, PoliciesConfig, PolicyInput};
///
/// // What a deployment writes (APP_SESSION_POLICIES in examples/app): customers' limits, and the
/// // rules that choose them per login.
/// let config: PoliciesConfig = toml::from_str(r#"
///     [policies.acme]
///     idle_timeout_secs = 1800
///     revalidate_after_secs = 300
///     unreachable = "closed"
///
///     [[rules]]
///     policy = "acme"
///     customer = "acme"
///     claims = { tid = "acme" }
/// "#)?;
/// let policies = Policies::from_config(config)?;
/// assert!(policies.checks_requests());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Policies {
    default: SessionPolicy,
    named: HashMap<String, SessionPolicy>,
    /// Sessions that recorded no policy (logged in before policies were named) use their
    /// issuer's, if any.
    by_issuer: HashMap<String, SessionPolicy>,
    rules: Vec<PolicyRule>,
    chooser: Option<Arc<Chooser>>,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("default", &self.default)
            .field("named", &self.named)
            .field("by_issuer", &self.by_issuer)
            .field("rules", &self.rules)
            .field("chooser", &self.chooser.is_some())
            .finish()
    }
}

/// A policy configuration that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session policies: {0}")]
pub struct PolicyError(String);

impl Policies {
    /// No limits and no rules: every session gets `default`.
    pub fn new(default: SessionPolicy) -> Self {
        Self {
            default,
            ..Self::default()
        }
    }

    /// The policy for logins no rule picks.
    #[must_use]
    pub fn with_default(mut self, policy: SessionPolicy) -> Self {
        self.default = policy;
        self
    }

    /// A policy rules can pick by `name`.
    #[must_use]
    pub fn with_policy(mut self, name: impl Into<String>, policy: SessionPolicy) -> Self {
        self.named.insert(name.into(), policy);
        self
    }

    /// The policy of every session from `issuer` that no rule picks a policy for (and of
    /// sessions recorded before their login named one).
    #[must_use]
    pub fn with_issuer_policy(mut self, issuer: impl Into<String>, policy: SessionPolicy) -> Self {
        self.by_issuer.insert(issuer.into(), policy);
        self
    }

    /// A rule, tried after the ones added before it; the first that matches wins.
    #[must_use]
    pub fn with_rule(mut self, rule: PolicyRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// A function tried before the rules (for business rules the rules cannot say); it names a
    /// policy added with [`with_policy`](Self::with_policy), or `None` to let the rules decide.
    #[must_use]
    pub fn with_chooser(
        mut self,
        chooser: impl Fn(&PolicyInput<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.chooser = Some(Arc::new(chooser));
        self
    }

    /// Policies from the application's configuration. Every rule must name a configured policy.
    pub fn from_config(config: PoliciesConfig) -> Result<Self, PolicyError> {
        let mut policies = Self::new(config.default.into_policy()?);
        for (name, policy) in config.policies {
            if name.is_empty() {
                return Err(PolicyError("a policy needs a name".into()));
            }
            let policy = policy
                .into_policy()
                .map_err(|PolicyError(why)| PolicyError(format!("policy {name:?}: {why}")))?;
            policies.named.insert(name, policy);
        }
        for (i, rule) in config.rules.into_iter().enumerate() {
            match (&rule.policy, &rule.customer) {
                (None, None) => {
                    return Err(PolicyError(format!(
                        "rule {} names neither a policy nor a customer",
                        i + 1
                    )));
                }
                (Some(policy), _) if !policies.named.contains_key(policy) => {
                    return Err(PolicyError(format!(
                        "rule {} names the policy {policy:?}, which is not configured",
                        i + 1
                    )));
                }
                (_, Some(customer)) if customer.trim().is_empty() => {
                    return Err(PolicyError(format!(
                        "rule {} names an empty customer",
                        i + 1
                    )));
                }
                _ => {}
            }
            policies.rules.push(rule);
        }
        Ok(policies)
    }

    /// The name of the policy for a login: the chooser's, else the first matching rule's;
    /// `None` for the issuer's or the default policy.
    pub fn choose(&self, login: &PolicyInput<'_>) -> Option<String> {
        if let Some(name) = self.chooser.as_ref().and_then(|choose| choose(login)) {
            if self.named.contains_key(&name) {
                return Some(name);
            }
            tracing::warn!(
                "the policy chooser named a policy that is not configured; using the rules"
            );
        }
        self.rules
            .iter()
            .filter(|rule| rule.policy.is_some())
            .find(|rule| rule.matches(login))
            .and_then(|rule| rule.policy.clone())
    }

    /// The customer a login belongs to: the first matching rule that names one's; `None` when
    /// no rule does (only senders scoped to no customer reach the user).
    pub fn customer_for(&self, login: &PolicyInput<'_>) -> Option<String> {
        self.rules
            .iter()
            .filter(|rule| rule.customer.is_some())
            .find(|rule| rule.matches(login))
            .and_then(|rule| rule.customer.clone())
    }

    /// The policy a session runs under: the one its login recorded (`name`), else its
    /// issuer's, else the default. A recorded name no longer configured falls back the same
    /// way.
    pub fn get(&self, name: Option<&str>, issuer: &str) -> &SessionPolicy {
        name.and_then(|name| self.named.get(name))
            .or_else(|| self.by_issuer.get(issuer))
            .unwrap_or(&self.default)
    }

    /// Whether any policy needs per-request checks (revalidation, authentication age).
    pub fn checks_requests(&self) -> bool {
        self.default.checks_requests()
            || self.named.values().any(SessionPolicy::checks_requests)
            || self.by_issuer.values().any(SessionPolicy::checks_requests)
    }
}

/// The serde shape of [`Policies`] in an application's configuration, e.g. in TOML:
///
/// ```toml
/// [session_policies.default]
/// idle_timeout_secs = 28800
///
/// [session_policies.policies.strict]
/// idle_timeout_secs = 1800
/// absolute_lifetime_secs = 28800
/// revalidate_after_secs = 300
/// unreachable = "closed"          # or "open"
/// unreachable_grace_secs = 60
/// max_auth_age_secs = 43200
/// revoke_user_for_secs = 600
///
/// [[session_policies.rules]]
/// policy = "strict"
/// issuer = "https://idp.example.com"
/// claims = { tid = "acme" }
///
/// [[session_policies.rules]]
/// policy = "strict"
/// email_domain = "acme.example"
///
/// # Whose users logins are: the customer that scoped senders may reach.
/// [[session_policies.rules]]
/// customer = "acme"
/// claims = { tid = "acme" }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoliciesConfig {
    /// The policy for logins no rule picks.
    #[serde(default)]
    pub default: PolicyConfig,
    /// Policies by name.
    #[serde(default)]
    pub policies: HashMap<String, PolicyConfig>,
    /// Rules, in order; the first that matches wins.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// One policy in configuration (durations in seconds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// [`SessionPolicy::idle_timeout`].
    pub idle_timeout_secs: Option<u64>,
    /// [`SessionPolicy::absolute_lifetime`].
    pub absolute_lifetime_secs: Option<u64>,
    /// [`SessionPolicy::revalidate_after`].
    pub revalidate_after_secs: Option<u64>,
    /// `"open"` or `"closed"` (the default): [`SessionPolicy::unreachable`].
    pub unreachable: Option<String>,
    /// How long `"closed"` keeps serving after the revalidation fell due (default 60).
    pub unreachable_grace_secs: Option<u64>,
    /// [`SessionPolicy::max_auth_age`].
    pub max_auth_age_secs: Option<u64>,
    /// [`SessionPolicy::revoke_user_for`].
    pub revoke_user_for_secs: Option<u64>,
}

impl PolicyConfig {
    fn into_policy(self) -> Result<SessionPolicy, PolicyError> {
        let positive = |name: &str, secs: Option<u64>| match secs {
            Some(0) => Err(PolicyError(format!("{name} must be at least 1"))),
            other => Ok(other.map(Duration::from_secs)),
        };
        let grace = positive("unreachable_grace_secs", self.unreachable_grace_secs)?;
        let unreachable = match self.unreachable.as_deref() {
            None | Some("closed") => {
                Unreachable::ClosedAfter(grace.unwrap_or(Duration::from_secs(60)))
            }
            Some("open") if grace.is_none() => Unreachable::Open,
            Some("open") => {
                return Err(PolicyError(
                    "unreachable_grace_secs applies to unreachable = \"closed\" only".into(),
                ));
            }
            Some(_) => {
                return Err(PolicyError(
                    "unreachable must be \"open\" or \"closed\"".into(),
                ));
            }
        };
        Ok(SessionPolicy {
            idle_timeout: positive("idle_timeout_secs", self.idle_timeout_secs)?,
            absolute_lifetime: positive("absolute_lifetime_secs", self.absolute_lifetime_secs)?,
            revalidate_after: positive("revalidate_after_secs", self.revalidate_after_secs)?,
            unreachable,
            max_auth_age: positive("max_auth_age_secs", self.max_auth_age_secs)?,
            revoke_user_for: positive("revoke_user_for_secs", self.revoke_user_for_secs)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input<'a>(claims: &'a Map<String, Value>, client: Option<&'a str>) -> PolicyInput<'a> {
        PolicyInput {
            issuer: "https://idp.example",
            client_id: client,
            claims,
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn strict() -> SessionPolicy {
        SessionPolicy::default().with_revalidate_after(Duration::from_secs(300))
    }

    #[test]
    fn the_first_matching_rule_wins_and_every_condition_must_hold() {
        let policies = Policies::default()
            .with_policy("acme", strict())
            .with_policy("mfa", SessionPolicy::default())
            .with_rule(
                PolicyRule::new("acme")
                    .issuer("https://idp.example")
                    .claim("tid", "acme"),
            )
            .with_rule(PolicyRule::new("mfa").claim("amr", "mfa").client("web"));
        let acme = claims(json!({"tid": "acme", "amr": ["pwd", "mfa"]}));
        assert_eq!(
            policies.choose(&input(&acme, Some("web"))).as_deref(),
            Some("acme")
        );
        let other = claims(json!({"tid": "globex", "amr": ["pwd", "mfa"]}));
        assert_eq!(
            policies.choose(&input(&other, Some("web"))).as_deref(),
            Some("mfa")
        );
        assert_eq!(policies.choose(&input(&other, Some("api"))), None);
        assert_eq!(policies.choose(&input(&claims(json!({})), None)), None);
    }

    #[test]
    fn email_domains_match_case_insensitively_and_only_after_the_last_at() {
        let policies = Policies::default()
            .with_policy("acme", strict())
            .with_rule(PolicyRule::new("acme").email_domain("acme.example"));
        for (email, chosen) in [
            ("bob@ACME.example", true),
            ("bob@acme.example.evil", false),
            ("acme.example@evil.example", false),
            ("\"x@acme.example\"@evil.example", false),
        ] {
            let c = claims(json!({ "email": email }));
            assert_eq!(
                policies.choose(&input(&c, None)).is_some(),
                chosen,
                "{email}"
            );
        }
        let no_email = claims(json!({"email": 7}));
        assert_eq!(policies.choose(&input(&no_email, None)), None);
    }

    #[test]
    fn a_chooser_goes_first_and_a_recorded_name_is_kept() {
        let policies = Policies::default()
            .with_policy("weekend", strict())
            .with_policy("acme", SessionPolicy::default())
            .with_rule(PolicyRule::new("acme"))
            .with_chooser(|login| {
                (login.claims.get("weekend").is_some()).then(|| "weekend".into())
            });
        let weekend = claims(json!({"weekend": true}));
        assert_eq!(
            policies.choose(&input(&weekend, None)).as_deref(),
            Some("weekend")
        );
        assert_eq!(
            policies.choose(&input(&claims(json!({})), None)).as_deref(),
            Some("acme")
        );
        assert_eq!(policies.get(Some("weekend"), "x"), &strict());
        // A name no longer configured falls back to the issuer's, then the default policy.
        let idle = SessionPolicy::default().with_idle_timeout(Duration::from_secs(5));
        let policies = policies.with_issuer_policy("https://idp.example", idle);
        assert_eq!(policies.get(Some("gone"), "https://idp.example"), &idle);
        assert_eq!(policies.get(None, "other"), &SessionPolicy::default());
    }

    #[test]
    fn rules_decide_the_customer_too() {
        let policies = Policies::default()
            .with_policy("strict", strict())
            .with_rule(
                PolicyRule::new("strict")
                    .claim("tid", "acme")
                    .customer("acme"),
            )
            .with_rule(PolicyRule::customer_rule("globex").claim("tid", "globex"));
        let acme = claims(json!({"tid": "acme"}));
        let globex = claims(json!({"tid": "globex"}));
        assert_eq!(
            policies.customer_for(&input(&acme, None)).as_deref(),
            Some("acme")
        );
        assert_eq!(
            policies.choose(&input(&acme, None)).as_deref(),
            Some("strict")
        );
        assert_eq!(
            policies.customer_for(&input(&globex, None)).as_deref(),
            Some("globex")
        );
        assert_eq!(
            policies.choose(&input(&globex, None)),
            None,
            "a customer rule picks no policy"
        );
        assert_eq!(
            policies.customer_for(&input(&claims(json!({})), None)),
            None
        );
    }

    #[test]
    fn configuration_is_checked() {
        let config: PoliciesConfig = serde_json::from_value(json!({
            "default": {"idle_timeout_secs": 28800},
            "policies": {"strict": {"revalidate_after_secs": 300, "unreachable": "open"}},
            "rules": [{"policy": "strict", "claims": {"tid": "acme"}}]
        }))
        .expect("config");
        let policies = Policies::from_config(config).expect("valid");
        let strict = policies.get(Some("strict"), "x");
        assert_eq!(strict.revalidate_after, Some(Duration::from_secs(300)));
        assert_eq!(strict.unreachable, Unreachable::Open);
        assert!(policies.checks_requests());

        for (bad, why) in [
            (json!({"rules": [{"policy": "nope"}]}), "not configured"),
            (json!({"rules": [{"claims": {"tid": "x"}}]}), "neither"),
            (
                json!({"policies": {"p": {"revalidate_after_secs": 0}}}),
                "at least 1",
            ),
            (json!({"policies": {"p": {"unreachable": "maybe"}}}), "open"),
            (
                json!({"policies": {"p": {"unreachable": "open", "unreachable_grace_secs": 5}}}),
                "closed",
            ),
        ] {
            let config: PoliciesConfig = serde_json::from_value(bad).expect("shape");
            let error = Policies::from_config(config).expect_err("refused");
            assert!(error.to_string().contains(why), "{error}");
        }
        let unknown: Result<PoliciesConfig, _> =
            serde_json::from_value(json!({"policies": {"p": {"idle": 5}}}));
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
