//! The decision: a request in, allow (with the identity headers to forward) or a refusal out.
//!
//! [`Engine::decide`] is the one path every front takes:
//!
//! 1. Without any `[[rule]]`, every request needs one valid token from a configured issuer
//!    (jwtd's behaviour before rules, so existing configurations keep working).
//! 2. With rules, the most specific rule matching the request is found
//!    ([`crate::rules::RuleSet::find`]); a path that cannot be matched safely is refused 400
//!    `bad_path`; no match takes `[rules] default` (deny: 403 `no_matching_rule`).
//! 3. A `public` rule (and a CORS preflight on a rule that bypasses it) is allowed without
//!    looking at any token. Otherwise the one token is extracted (several: 400
//!    `multiple_tokens`); none is fine only under `optional`.
//! 4. The issuer is chosen by the token's `iss` **before** anything is verified or fetched,
//!    and must be one the rule's requirement names (else 401 `wrong_issuer`: no fan-out of key
//!    fetches to issuers the rule does not take). The token is verified with that issuer's
//!    policy (with the rule's audiences instead of the issuer's, when it names some), through
//!    the verified-token cache, and revocation is checked. A rule under a `[[resource]]`
//!    ([`crate::resource`]) takes the resource URI as its audience unless it names its own.
//! 5. DPoP ([`crate::dpop`]): by the issuer's `[issuer.dpop]` mode (or the rule's `dpop`), a
//!    token bound to a key (`cnf.jkt`) presented as a bearer token is refused
//!    (`dpop_token_bound_as_bearer`), as is an unbound one presented as `DPoP`; a `DPoP` token's
//!    proof is checked against the request (method, scheme, host, target), the verified token
//!    (`ath`) and its `cnf.jkt`, and looked up in the replay cache. Its `jti` is recorded last,
//!    after step 6 and the identity headers, so a refused request never burns the proof.
//! 6. The requirement tree is evaluated, then scopes (403 `missing_scope`, with the RFC 6750
//!    `scope` parameter naming what is needed) and claim predicates (403 `claim_mismatch`).
//!    Every 401/403 of a rule under a `[[resource]]` names the resource's metadata URL and
//!    every scope the rule requires ([`Denial::resource_metadata`], [`Denial::scope`]).
//! 7. The identity headers are rendered (with `X-Auth-Jkt` and `X-Auth-Cert-Thumbprint`,
//!    whatever is configured): the union of every issuer's and every rule's identity
//!    headers, each present (empty when this decision has no value for it), so a proxy that
//!    copies the answer's headers overwrites whatever a client sent under those names.

use crate::config::{DpopMode, OnPass, TokenSources};
use crate::dpop::{DpopChallenge, DpopEngine, Passed, Presented, ProofTarget, X_AUTH_JKT};
use crate::issuers::{IdentityHeaders, Issuer, Issuers, Policy, ISSUER, PAYLOAD, SUBJECT};
use crate::mtls::{ClientCert, Forwarded, Thumbprint};
use crate::resource::{ResourceConfig, Resources};
use crate::rules::{
    is_cors_preflight, DefaultAction, Matched, PathError, Requirement, Rule, RuleSet, Target,
    TokenState,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use jwtd_core::{Error, Reason, Verified};
use serde_json::Value;
use std::sync::Arc;

/// What the engine knows of a request: borrowed, framework-free.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method, as received (matched uppercased).
    pub method: &'a str,
    /// The request URI's scheme (`http` or `https`) as the front trusts it: its own
    /// listener's, or a trusted proxy's `X-Forwarded-Proto`, or Envoy's. Only a DPoP proof's
    /// `htu` is compared with it; empty when unknown (every proof then fails `htu`).
    pub scheme: &'a str,
    /// The host (`Host` or `:authority`), perhaps with a port.
    pub host: &'a str,
    /// The request target's path and query, raw (percent-encoded) as received.
    pub path_and_query: &'a str,
    /// The request headers (the token sources, header conditions and bindings).
    pub headers: &'a HeaderMap,
    /// The client certificate, as the front knows it (RFC 8705 bound tokens, see
    /// [`crate::mtls`]).
    pub client_cert: ClientCert<'a>,
}

impl<'a> Request<'a> {
    /// The query, without `?`, when there is one.
    pub fn query(&self) -> Option<&'a str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    fn target(&self) -> Target<'a> {
        Target {
            method: self.method,
            host: self.host,
            path: self.path_and_query,
            headers: self.headers,
        }
    }
}

/// What a decision renders besides allow/deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outputs {
    /// The identity headers (forward-auth, proxy, ext_authz).
    Headers,
    /// Nothing (in-process fronts).
    None,
}

/// A refusal: the error (its reason picks every transport's answer, see [`crate::refusal`]),
/// the issuer that refused when one was selected, and the scopes the rule needs when the
/// token lacks them.
#[derive(Clone, Debug)]
pub struct Denial {
    /// Why.
    pub error: Error,
    /// The issuer that refused, when one was selected.
    pub issuer: Option<String>,
    /// For `missing_scope`: the scopes the rule needs (the RFC 6750 `scope` parameter); for
    /// any 401/403 of a rule under a `[[resource]]`: every scope the rule requires.
    pub scope: Option<String>,
    /// For a 401/403 of a rule under a `[[resource]]`: its metadata URL (the RFC 9728
    /// `resource_metadata` challenge parameter).
    pub resource_metadata: Option<Arc<str>>,
    /// For a DPoP refusal (`dpop_*`): the `algs` its `DPoP` challenge names, and whether a
    /// `Bearer` challenge goes beside it ([`crate::refusal::http_denial`]).
    pub dpop: Option<Box<DpopChallenge>>,
}

impl From<Error> for Denial {
    fn from(error: Error) -> Denial {
        Denial::new(error)
    }
}

impl Denial {
    /// A refusal for `error`, no issuer selected, no scope.
    pub fn new(error: Error) -> Denial {
        Denial {
            error,
            issuer: None,
            scope: None,
            resource_metadata: None,
            dpop: None,
        }
    }

    fn dpop(issuer: &str, (error, challenge): (Error, DpopChallenge)) -> Denial {
        Denial {
            error,
            issuer: Some(issuer.to_owned()),
            scope: None,
            resource_metadata: None,
            dpop: Some(Box::new(challenge)),
        }
    }
}

/// An allowed request: who (when a token was verified) and the identity headers to forward.
#[derive(Clone, Debug)]
pub struct Allowed {
    /// The issuer and the verified token, when the request carried one that was checked.
    pub identity: Option<(Arc<Issuer>, Arc<Verified>)>,
    /// Every identity header of the union, in a stable order (empty values where this
    /// decision has none).
    pub headers: HeaderMap,
    /// The DPoP proof the request passed with, if any: the proven key's thumbprint and what
    /// the front does with the `DPoP` and `Authorization` headers upstream (proxy, ext_authz).
    pub dpop: Option<Proven>,
    /// The front removes any `DPoP` header before forwarding (proxy, ext_authz): the
    /// deciding issuer's `[issuer.dpop] on_pass` is `strip` (the default), whether or not a
    /// proof was checked (an unchecked proof never reaches the upstream as if it had been).
    /// For a request allowed without a token: unless every issuer has `on_pass = "keep"`.
    pub strip_dpop: bool,
}

/// A request's DPoP proof that passed (see [`Allowed::dpop`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    /// The RFC 7638 thumbprint of the proven key (the token's `cnf.jkt`).
    pub jkt: String,
    /// `strip`: the front removes `DPoP` and forwards `Authorization: Bearer <token>`;
    /// `keep`: both as they came.
    pub on_pass: OnPass,
    /// A fresh server nonce the front sends back to the client as `DPoP-Nonce` (the issuer
    /// issues nonces and the proof's was absent or of the previous epoch).
    pub nonce: Option<String>,
}

/// The engine's answer for one request.
#[derive(Debug)]
pub struct Decision<'e> {
    /// The rule that decided (`None`: no rules configured, or none matched).
    pub rule: Option<&'e Rule>,
    /// Allowed, or refused.
    pub outcome: Result<Allowed, Denial>,
    /// The one token the decision looked at, borrowed from the request (`None`: the rule did
    /// not look at tokens, the request carried none, or several). For a log fingerprint:
    /// never log the token itself.
    pub token: Option<&'e str>,
}

impl Decision<'_> {
    /// A refusal before any rule or token was looked at.
    fn refused<'a>(error: Error) -> Decision<'a> {
        Decision {
            rule: None,
            outcome: Err(Denial::new(error)),
            token: None,
        }
    }

    /// The rule id for metrics and logs: the rule's id, `-` without rules, `default` when
    /// none matched.
    pub fn rule_id(&self, engine: &Engine) -> &str {
        match self.rule {
            Some(r) => r.id(),
            None if engine.rules.is_empty() => "-",
            None => "default",
        }
    }
}

/// Issuers, rules and token sources: everything a decision needs. Built once per
/// configuration; a reload builds a new one and swaps it whole. Cloning shares the issuers
/// (their key sources and caches).
#[derive(Clone, Debug)]
pub struct Engine {
    /// The issuers, routed by `iss`.
    pub issuers: Issuers,
    /// The rules (possibly none).
    pub rules: RuleSet,
    /// Where tokens are read from.
    pub sources: TokenSources,
    /// The identity headers every allowed answer carries: the issuers' union plus every
    /// rule's `set_headers`.
    pub identity: IdentityHeaders,
    /// The `[[resource]]`s (RFC 9728) and which rule guards which ([`Engine::with_resources`]).
    pub resources: Resources,
    /// Where a trusted proxy's client certificate is read (`[forwarded] client_cert`,
    /// [`Engine::with_client_certificates`]).
    pub forwarded_cert: Option<Forwarded>,
    /// Every issuer's DPoP settings and replay cache ([`crate::dpop`]).
    pub dpop: DpopEngine,
    /// `identity` as built, shared by the identity memos of cached tokens (one copy per
    /// engine, not one per token).
    shared_identity: Arc<IdentityHeaders>,
}

impl Engine {
    /// An engine over `issuers` and `rules`, reading tokens from `sources`.
    pub fn new(issuers: Issuers, rules: RuleSet, sources: TokenSources) -> Engine {
        let mut identity = issuers.identity.clone();
        for r in rules.rules() {
            for (name, _) in r.set_headers() {
                if !identity.mapped.contains(name) {
                    identity.mapped.push(name.clone());
                }
            }
        }
        let dpop = DpopEngine::new(&issuers);
        // The binding headers are jwtd's whatever is configured: always in the union (empty
        // when this decision has no value), so every front overwrites a client's own.
        for h in [X_AUTH_JKT, crate::mtls::THUMBPRINT_HEADER] {
            if !identity.mapped.contains(&h) {
                identity.mapped.push(h);
            }
        }
        identity.mapped.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Engine {
            issuers,
            rules,
            sources,
            shared_identity: Arc::new(identity.clone()),
            identity,
            resources: Resources::default(),
            forwarded_cert: None,
            dpop,
        }
    }

    /// This engine reading a trusted proxy's client certificate as `forwarded` says
    /// (`[forwarded] client_cert`). [`crate::mtls::THUMBPRINT_HEADER`] is among the identity
    /// headers of every engine (the thumbprint of the request's certificate on an allowed
    /// request, empty otherwise).
    pub fn with_client_certificates(mut self, forwarded: Option<Forwarded>) -> Engine {
        self.forwarded_cert = forwarded;
        self
    }

    /// This engine with the `[[resource]]` tables `configs` checked and built against its
    /// issuers and rules ([`Resources::build`]); `text` is the (interpolated) file the spans
    /// point into, for lines in errors. Every error, one per line.
    pub fn with_resources(
        mut self,
        configs: &[ResourceConfig],
        text: Option<&str>,
    ) -> Result<Engine, String> {
        let issuers: Vec<(&str, Option<&str>)> = self
            .issuers
            .list
            .iter()
            .map(|i| (i.name.as_str(), i.iss.as_deref()))
            .collect();
        let built = Resources::build(
            configs,
            &issuers,
            &self.rules,
            &self.sources,
            text.unwrap_or(""),
        )
        .map_err(|errors| {
            errors
                .iter()
                .map(|(line, m)| match line {
                    0 => m.clone(),
                    l => format!("line {l}: {m}"),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        self.resources = built.with_dpop(configs, &self.dpop);
        self.mark_bound_resources();
        self.mark_dpop_resources();
        Ok(self)
    }

    /// The engine of a parsed configuration (`[[issuer]]`, `[cache]`, `[tokens]`, `[rules]`,
    /// `[[rule]]`), its secrets read from the environment it was parsed in
    /// ([`GateConfig::env`](crate::config::GateConfig)). Must run inside a tokio runtime:
    /// remote key sources start fetching. An issuer with `replay_store = "shared"` is an
    /// error here: this engine has no shared store (`jwtd serve` wires its `[dpop_replay]`
    /// table; an embedder calls [`crate::dpop::DpopEngine::with_shared_replay`] on an engine
    /// it builds otherwise).
    pub fn from_config(config: &crate::config::GateConfig) -> Result<Engine, String> {
        let issuers =
            Issuers::build_with_env(&config.issuers, &config.cache, None, None, &config.env)?;
        let forwarded = config.forwarded.compile()?;
        let engine =
            Engine::with_rules(issuers, &config.rules, &config.rule, config.tokens.clone())?
                .with_resources(&config.resource, None)?
                .with_client_certificates(forwarded);
        if let Some(name) = engine.dpop.unwired_shared() {
            return Err(format!(
                "issuer {name:?}: [issuer.dpop] replay_store = \"shared\" needs a shared replay \
                 store, and this front has none (jwtd serve's [dpop_replay] table provides one)"
            ));
        }
        Ok(engine)
    }

    /// An engine over `issuers` with the rules of `options` and `rules` compiled against them
    /// (the issuers' names, [`Engine::reserved_headers`]); every rule error, one per line.
    pub fn with_rules(
        issuers: Issuers,
        options: &crate::rules::RuleOptions,
        rules: &[crate::rules::RuleConfig],
        sources: TokenSources,
    ) -> Result<Engine, String> {
        Engine::with_rules_in(issuers, options, rules, sources, None)
    }

    /// [`Engine::with_rules`], given the (interpolated) configuration text the rules' spans
    /// point into: the rules then carry their lines ([`Rule::line`]), for errors, lint
    /// warnings and `jwtd rules explain`. `None` (or an empty text): no lines.
    pub fn with_rules_in(
        issuers: Issuers,
        options: &crate::rules::RuleOptions,
        rules: &[crate::rules::RuleConfig],
        sources: TokenSources,
        text: Option<&str>,
    ) -> Result<Engine, String> {
        let names: Vec<&str> = issuers.list.iter().map(|i| i.name.as_str()).collect();
        let reserved = Engine::reserved_headers(&issuers);
        let built = match text.filter(|t| !t.is_empty()) {
            Some(t) => RuleSet::build_with_source(t, options.clone(), rules, &names, &reserved),
            None => RuleSet::build(options.clone(), rules, &names, &reserved),
        };
        let set = built.map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        Ok(Engine::new(issuers, set, sources))
    }

    /// The header names a rule's `set_headers` may not use: jwtd's reserved headers and
    /// every issuer's identity headers (each header has one source), as
    /// [`IdentityHeaders::reserved`] computes them.
    pub fn reserved_headers(issuers: &Issuers) -> Vec<HeaderName> {
        issuers.identity.reserved()
    }

    /// Decides about `req` at `now` (see the module docs), with the identity headers a
    /// forward-auth answer carries.
    pub async fn decide<'a>(&'a self, req: &Request<'a>, now: u64) -> Decision<'a> {
        self.decide_as(req, now, Outputs::Headers).await
    }

    /// [`Engine::decide`] for a front that forwards no identity headers (the tower layer
    /// hands the verified token to the handler): none are rendered, and a claim that could not
    /// be a header value refuses nothing. Rule `set_headers` are not rendered either.
    pub async fn decide_in_process<'a>(&'a self, req: &Request<'a>, now: u64) -> Decision<'a> {
        self.decide_as(req, now, Outputs::None).await
    }

    async fn decide_as<'a>(&'a self, req: &Request<'a>, now: u64, out: Outputs) -> Decision<'a> {
        let mut token = None;
        if self.rules.is_empty() {
            let outcome = self.any_issuer(req, now, out, &mut token).await;
            return Decision {
                rule: None,
                outcome,
                token,
            };
        }
        let matched = match self.rules.find(&req.target()) {
            Ok(m) => m,
            Err(e) => return Decision::refused(bad_path(&e)),
        };
        let Some(m) = matched else {
            let outcome = match self.rules.default_action() {
                DefaultAction::Deny => Err(Denial::new(Error::new(
                    Reason::NoMatchingRule,
                    "no rule allows this request",
                ))),
                DefaultAction::Public => Ok(self.anonymous(out)),
                DefaultAction::Authenticated => self.any_issuer(req, now, out, &mut token).await,
            };
            return Decision {
                rule: None,
                outcome,
                token,
            };
        };
        let outcome = self
            .by_rule(&m, req, now, out, &mut token)
            .await
            .map_err(|d| self.under_resource(m.rule, d));
        Decision {
            rule: Some(m.rule),
            outcome,
            token,
        }
    }

    /// Decides by the rule named `id` (Envoy's `context_extensions`), skipping the matcher
    /// but not the rule's conditions; an unknown id is `no_matching_rule`.
    pub async fn decide_by_rule<'a>(
        &'a self,
        id: &str,
        req: &Request<'a>,
        now: u64,
    ) -> Decision<'a> {
        match self.rules.find_named(id, &req.target()) {
            Ok(Some(m)) => {
                let mut token = None;
                let outcome = self
                    .by_rule(&m, req, now, Outputs::Headers, &mut token)
                    .await
                    .map_err(|d| self.under_resource(m.rule, d));
                Decision {
                    rule: Some(m.rule),
                    outcome,
                    token,
                }
            }
            Ok(None) => Decision::refused(Error::new(
                Reason::NoMatchingRule,
                "the named rule does not take this request",
            )),
            Err(e) => Decision::refused(bad_path(&e)),
        }
    }

    /// A 401/403 of a rule under a `[[resource]]` names the resource's metadata and every
    /// scope the rule requires (MCP: all of them in one challenge, so a client asking for
    /// them does not lose the ones it had).
    fn under_resource(&self, rule: &Rule, mut d: Denial) -> Denial {
        let Some(r) = self.resources.of_rule(rule.index()) else {
            return d;
        };
        if !matches!(d.error.reason().http_status(), 401 | 403) {
            return d;
        }
        d.resource_metadata = Some(r.metadata_url.clone());
        if let Some(s) = rule.scopes() {
            d.scope = Some(s.scopes.join(" "));
        }
        d
    }

    /// Every request needs a valid token from some configured issuer.
    async fn any_issuer<'a>(
        &self,
        req: &Request<'a>,
        now: u64,
        out: Outputs,
        seen: &mut Option<&'a str>,
    ) -> Result<Allowed, Denial> {
        let (token, presented) = self.token(req)?.ok_or_else(|| Denial::new(missing()))?;
        *seen = Some(token);
        match self.issuers.verify(token, now).await {
            Ok((issuer, v)) => {
                // RFC 8705 first: the DPoP jti is consumed last, once everything passed.
                let cert = match self.binding(req, &issuer, None, &v) {
                    Ok(cert) => cert,
                    Err(error) => {
                        return Err(Denial {
                            error,
                            issuer: Some(issuer.name.clone()),
                            scope: None,
                            resource_metadata: None,
                            dpop: None,
                        })
                    }
                };
                let passed = self.dpop_check(&issuer.name, None, req, presented, token, &v, now)?;
                let name = issuer.name.clone();
                let allowed = self.allowed(issuer, v, None, out, cert);
                self.dpop_finish(&name, allowed, passed, out, now).await
            }
            Err((issuer, error)) => Err(Denial {
                error,
                issuer,
                scope: None,
                resource_metadata: None,
                dpop: None,
            }),
        }
    }

    async fn by_rule<'a>(
        &self,
        m: &Matched<'_, '_>,
        req: &Request<'a>,
        now: u64,
        out: Outputs,
        seen: &mut Option<&'a str>,
    ) -> Result<Allowed, Denial> {
        let rule = m.rule;
        let requirement = rule.requirement();
        if matches!(requirement, Requirement::Public)
            || (rule.cors_preflight_bypass() && is_cors_preflight(req.method, req.headers))
        {
            return Ok(self.anonymous(out));
        }
        let Some((token, presented)) = self.token(req)? else {
            return match requirement.evaluate(TokenState::Absent) {
                Ok(()) => Ok(self.anonymous(out)),
                Err(_) => Err(Denial::new(missing())),
            };
        };
        *seen = Some(token);
        // A rule under a resource takes only tokens issued for it (RFC 8707), unless it
        // names its own audiences. From the rule itself, not the resource table: an engine
        // built without `with_resources` must not fall back to the issuer's audiences.
        let audiences = rule.audiences().or_else(|| rule.resource_audience());
        let policy = match audiences {
            Some(_) => Policy::RuleAudiences,
            None => Policy::Issuer,
        };
        // The issuer by `iss` (or by a cache that holds the token), before anything is
        // verified or fetched.
        let selected = self
            .issuers
            .select_for(token, policy, now)
            .map_err(Denial::new)?;
        let issuer = selected.issuer.clone();
        let refuse = |error: Error| Denial {
            error,
            issuer: Some(issuer.name.clone()),
            scope: None,
            resource_metadata: None,
            dpop: None,
        };
        if !rule.takes_issuer(&issuer.name) {
            return Err(refuse(Error::new(
                Reason::WrongIssuer,
                format!(
                    "this route does not take tokens of issuer {:?}",
                    issuer.name
                ),
            )));
        }
        let verified = self
            .issuers
            .verify_selected(selected, policy, token, now)
            .await
            .map_err(refuse)?;
        if let Some(auds) = audiences {
            if !audience_matches(&verified, auds) {
                return Err(refuse(Error::new(
                    Reason::WrongAudience,
                    "aud names none of this route's audiences",
                )));
            }
        }
        // RFC 8705: a certificate-bound token only with its certificate.
        let cert = self
            .binding(req, &issuer, Some(rule), &verified)
            .map_err(refuse)?;
        // DPoP: the mode, the proof and its binding, the replay look-up; its jti is consumed
        // last, once everything else passed.
        let passed = self.dpop_check(
            &issuer.name,
            rule.dpop(),
            req,
            presented,
            token,
            &verified,
            now,
        )?;
        // The requirement holds: for a verified token it holds exactly when the rule takes
        // its issuer (checked above, before anything was verified).
        debug_assert!(requirement
            .evaluate(TokenState::Verified {
                issuer: &issuer.name
            })
            .is_ok());
        let binding = m.binding(req.headers);
        if let Some(scopes) = rule.scopes() {
            if let Err(missing) = scopes.check(verified.as_ref()) {
                let needed = missing.join(" ");
                return Err(Denial {
                    error: Error::new(
                        Reason::MissingScope,
                        format!("this route needs scope {needed:?}"),
                    ),
                    issuer: Some(issuer.name.clone()),
                    scope: Some(needed),
                    resource_metadata: None,
                    dpop: None,
                });
            }
        }
        if let Some(p) = rule.failing_claim(verified.as_ref(), &binding) {
            return Err(refuse(Error::new(
                Reason::ClaimMismatch,
                format!("claim {:?} does not satisfy this route", p.path),
            )));
        }
        let allowed = self.allowed(issuer.clone(), verified, Some((rule, &binding)), out, cert);
        self.dpop_finish(&issuer.name, allowed, passed, out, now)
            .await
    }

    /// The certificate-binding check (RFC 8705, [`crate::mtls::check`]) of a verified token
    /// under the rule's `mtls` or else the issuer's `[issuer.mtls] mode`: the request's
    /// certificate thumbprint when it has one (and the policy is not `off`).
    fn binding(
        &self,
        req: &Request<'_>,
        issuer: &Issuer,
        rule: Option<&Rule>,
        v: &Verified,
    ) -> Result<Option<Thumbprint>, Error> {
        let mode = rule
            .and_then(Rule::mtls)
            .unwrap_or_else(|| issuer.config.mtls_mode());
        if mode == crate::mtls::Mode::Off {
            return Ok(None);
        }
        let cert =
            crate::mtls::resolve(req.client_cert, req.headers, self.forwarded_cert.as_ref())?;
        crate::mtls::check(mode, v, cert.as_ref())?;
        Ok(cert)
    }

    /// The rules that guard resource `r` (one of `self.resources`).
    fn rules_of_resource(&self, r: &crate::resource::Resource) -> Vec<&Rule> {
        self.rules
            .rules()
            .iter()
            .filter(|rule| {
                self.resources
                    .of_rule(rule.index())
                    .is_some_and(|of| std::ptr::eq(of, r))
            })
            .collect()
    }

    /// RFC 9728 `tls_client_certificate_bound_access_tokens`: true for a resource whose every
    /// issuer has `[issuer.mtls] mode = "require"` and whose every rule keeps that (no rule
    /// under it sets another `mtls`), or whose every rule sets `mtls = "require"`.
    fn mark_bound_resources(&mut self) {
        let n = self.resources.list().len();
        for i in 0..n {
            let r = &self.resources.list()[i];
            let rules = self.rules_of_resource(r);
            let issuers_require = !r.issuers.is_empty()
                && r.issuers.iter().all(|name| {
                    self.issuers.list.iter().any(|i| {
                        i.name == *name && i.config.mtls_mode() == crate::mtls::Mode::Require
                    })
                });
            let required = if rules.is_empty() {
                issuers_require
            } else {
                rules.iter().all(|rule| match rule.mtls() {
                    Some(m) => m == crate::mtls::Mode::Require,
                    None => issuers_require,
                })
            };
            if required {
                self.resources.set_tls_bound(i);
            }
        }
    }

    /// RFC 9449 `dpop_bound_access_tokens_required`, from the rules too (review L9): true for a
    /// resource whose every rule requires DPoP (its `dpop = "require"`, or, without a `dpop`
    /// of its own, every issuer of the resource has `[issuer.dpop] mode = "require"`); without
    /// a rule under it, the issuers decide ([`Resources::with_dpop`]).
    fn mark_dpop_resources(&mut self) {
        for i in 0..self.resources.list().len() {
            let r = &self.resources.list()[i];
            let rules = self.rules_of_resource(r);
            if rules.is_empty() {
                continue;
            }
            let issuers_require = !r.issuers.is_empty()
                && r.issuers.iter().all(|name| {
                    self.dpop
                        .of(name)
                        .is_some_and(|d| d.mode == DpopMode::Require)
                });
            let required = rules.iter().all(|rule| match rule.dpop() {
                Some(m) => m == DpopMode::Require,
                None => issuers_require,
            });
            self.resources.set_dpop_required(i, required);
        }
    }

    /// The DPoP step for a token of issuer `issuer` ([`crate::dpop::check`]).
    #[allow(clippy::too_many_arguments)]
    fn dpop_check(
        &self,
        issuer: &str,
        rule_mode: Option<DpopMode>,
        req: &Request<'_>,
        presented: Presented,
        token: &str,
        verified: &Verified,
        now: u64,
    ) -> Result<Option<Passed>, Denial> {
        let d = self.dpop.of_or_default(issuer);
        let target = ProofTarget {
            method: req.method,
            scheme: req.scheme,
            host: req.host,
            path_and_query: req.path_and_query,
            headers: req.headers,
        };
        crate::dpop::check(d, rule_mode, &target, presented, token, verified, now)
            .map_err(|e| Denial::dpop(issuer, e))
    }

    /// An allowed request with a proof: its `jti` consumed (last), `X-Auth-Jkt` set.
    async fn dpop_finish(
        &self,
        issuer: &str,
        allowed: Result<Allowed, Denial>,
        passed: Option<Passed>,
        out: Outputs,
        now: u64,
    ) -> Result<Allowed, Denial> {
        let mut a = allowed?;
        let Some(p) = passed else {
            return Ok(a);
        };
        p.consume(now).await.map_err(|e| Denial::dpop(issuer, e))?;
        if out == Outputs::Headers {
            if let Ok(v) = HeaderValue::from_str(&p.jkt) {
                a.headers.insert(X_AUTH_JKT, v);
            }
        }
        a.dpop = Some(Proven {
            jkt: p.jkt,
            on_pass: p.on_pass,
            nonce: p.nonce,
        });
        Ok(a)
    }

    /// The request's one token and how it was presented, if any (several:
    /// `multiple_tokens`).
    fn token<'r>(&self, req: &Request<'r>) -> Result<Option<(&'r str, Presented)>, Denial> {
        crate::extract::extract_presented(req.headers, req.query(), &self.sources, true)
            .map_err(Denial::new)
    }

    /// Allowed without an identity: every identity header present and empty.
    fn anonymous(&self, out: Outputs) -> Allowed {
        let strip_dpop = self.dpop.strips_without_issuer();
        if out == Outputs::None {
            return Allowed {
                identity: None,
                headers: HeaderMap::new(),
                dpop: None,
                strip_dpop,
            };
        }
        let mut h = HeaderMap::with_capacity(self.identity.mapped.len() + 3);
        for name in self.identity.names() {
            h.insert(name, HeaderValue::from_static(""));
        }
        Allowed {
            identity: None,
            headers: h,
            dpop: None,
            strip_dpop,
        }
    }

    fn allowed(
        &self,
        issuer: Arc<Issuer>,
        v: Arc<Verified>,
        rule: Option<(&Rule, &crate::rules::Binding<'_>)>,
        out: Outputs,
        cert: Option<Thumbprint>,
    ) -> Result<Allowed, Denial> {
        let strip_dpop = self.dpop.of_or_default(&issuer.name).on_pass == OnPass::Strip;
        if out == Outputs::None {
            return Ok(Allowed {
                identity: Some((issuer, v)),
                headers: HeaderMap::new(),
                dpop: None,
                strip_dpop,
            });
        }
        let extra = match rule {
            Some((rule, binding)) => rule.render_headers(v.as_ref(), binding),
            None => Vec::new(),
        };
        match self.identity_of(&issuer, &v, &extra) {
            Ok(mut headers) => {
                if let (Some(t), Some(slot)) =
                    (cert, headers.get_mut(crate::mtls::THUMBPRINT_HEADER))
                {
                    *slot = HeaderValue::from_str(&crate::mtls::encode_thumbprint(&t))
                        .expect("base64url is visible ASCII");
                }
                Ok(Allowed {
                    identity: Some((issuer, v)),
                    headers,
                    dpop: None,
                    strip_dpop,
                })
            }
            Err(error) => Err(Denial {
                error,
                issuer: Some(issuer.name.clone()),
                scope: None,
                resource_metadata: None,
                dpop: None,
            }),
        }
    }
}

impl Engine {
    /// [`identity_headers`] for `v` from `issuer`, reusing the values rendered for the same
    /// token before when the token is shared (held by the verified-token cache): a cache hit
    /// then clones the values instead of reading, validating and copying each claim again.
    /// The memo holds the values without the rule's `extra` (which depend on the request),
    /// and is used only under the issuer instance and the union of headers it was made for.
    fn identity_of(
        &self,
        issuer: &Issuer,
        v: &Arc<Verified>,
        extra: &[(HeaderName, Option<HeaderValue>)],
    ) -> Result<HeaderMap, Error> {
        let union = &self.identity;
        if let Some(m) = v.memo::<RenderedIdentity>() {
            if m.issuer == issuer.id && *m.union == *union {
                return Ok(assemble(union, issuer, m.values.iter().cloned(), extra));
            }
            // Made under another engine or issuer (never by this one's cache).
            return identity_headers(union, issuer, v, extra);
        }
        let values = identity_values(union, issuer, v)?;
        // A token nobody else holds (no verified-token cache) is dropped after this request.
        if Arc::strong_count(v) < 2 {
            return Ok(assemble(union, issuer, values, extra));
        }
        // The engine's shared copy of the union (unless `identity` was changed since).
        let shared = if *self.shared_identity == *union {
            self.shared_identity.clone()
        } else {
            Arc::new(union.clone())
        };
        let rendered = RenderedIdentity {
            issuer: issuer.id,
            union: shared,
            values,
        };
        let bytes = rendered.weight();
        match v.keep_memo(rendered, bytes) {
            Some(m) if m.issuer == issuer.id && *m.union == *union => {
                Ok(assemble(union, issuer, m.values.iter().cloned(), extra))
            }
            _ => identity_headers(union, issuer, v, extra),
        }
    }
}

/// The identity header values rendered for a token (without a rule's extra headers, in the
/// order of [`IdentityHeaders::names`]), kept with it ([`Verified::keep_memo`]) under the
/// issuer instance and the union they were rendered for.
struct RenderedIdentity {
    issuer: u64,
    union: Arc<IdentityHeaders>,
    values: Vec<HeaderValue>,
}

impl RenderedIdentity {
    /// About what this memo weighs, inline and on the heap (the union is the engine's, shared
    /// by every memo it made).
    fn weight(&self) -> usize {
        std::mem::size_of::<RenderedIdentity>()
            + 16
            + self.values.capacity() * std::mem::size_of::<HeaderValue>()
            + self.values.iter().map(HeaderValue::len).sum::<usize>()
    }
}

fn missing() -> Error {
    Error::new(Reason::MissingToken, "no bearer token in the request")
}

fn bad_path(e: &PathError) -> Error {
    Error::new(Reason::BadPath, format!("the request path is refused: {e}"))
}

/// True when the token's `aud` (a string or an array of strings) names one of `auds`.
fn audience_matches(v: &Verified, auds: &[String]) -> bool {
    match v.claim("aud") {
        Some(Value::String(s)) => auds.contains(&s),
        Some(Value::Array(a)) => a
            .iter()
            .any(|x| x.as_str().is_some_and(|s| auds.iter().any(|w| w == s))),
        _ => false,
    }
}

/// The identity headers of an allowed request: `X-Auth-Subject`, `X-Auth-Issuer`,
/// `X-Auth-Payload` (when some issuer forwards it), then every mapped header of the union,
/// from the issuer's `[issuer.headers]` or the rule's `set_headers`, empty where neither gives
/// a value. A subject, issuer or mapped claim that cannot be sent as a header value under the
/// documented encoding refuses the request (`unrepresentable_claim`).
pub fn identity_headers(
    union: &IdentityHeaders,
    issuer: &Issuer,
    v: &Verified,
    extra: &[(HeaderName, Option<HeaderValue>)],
) -> Result<HeaderMap, Error> {
    Ok(assemble(
        union,
        issuer,
        identity_values(union, issuer, v)?,
        extra,
    ))
}

/// The values of [`identity_headers`] without the rule's `extra`, in the order of
/// [`IdentityHeaders::names`].
fn identity_values(
    union: &IdentityHeaders,
    issuer: &Issuer,
    v: &Verified,
) -> Result<Vec<HeaderValue>, Error> {
    let mut out = Vec::with_capacity(union.mapped.len() + 3);
    let id_header = |found: Option<&str>, claim: &str, name: &HeaderName| {
        match found {
            Some(s) if plain_text(s) => HeaderValue::from_str(s).map_err(|_| "not a header value"),
            Some(_) => Err(NOT_PLAIN),
            None => header_value(v.claim(claim).as_ref()),
        }
        .map_err(|why| unrepresentable(claim, name.as_str(), why))
    };
    out.push(id_header(v.sub(), "sub", &SUBJECT)?);
    out.push(id_header(v.iss(), "iss", &ISSUER)?);
    if union.payload {
        out.push(if issuer.forward_payload {
            HeaderValue::from_str(&jwtd_core::b64::encode(v.claims_json()))
                .expect("base64url is visible ASCII")
        } else {
            HeaderValue::from_static("")
        });
    }
    for name in &union.mapped {
        out.push(match issuer.headers.iter().find(|(n, _)| n == name) {
            Some((_, path)) => header_value(v.claim(path).as_ref())
                .map_err(|why| unrepresentable(path, name.as_str(), why))?,
            None => HeaderValue::from_static(""),
        });
    }
    Ok(out)
}

/// The header map of [`identity_values`] `values` (in the order of [`IdentityHeaders::names`]):
/// a mapped header the issuer does not map takes the rule's `extra` value when it has one.
fn assemble(
    union: &IdentityHeaders,
    issuer: &Issuer,
    values: impl IntoIterator<Item = HeaderValue>,
    extra: &[(HeaderName, Option<HeaderValue>)],
) -> HeaderMap {
    let mut values = values.into_iter();
    let mut next = || {
        values
            .next()
            .unwrap_or_else(|| HeaderValue::from_static(""))
    };
    let mut h = HeaderMap::with_capacity(union.mapped.len() + 4);
    h.insert(SUBJECT, next());
    h.insert(ISSUER, next());
    if union.payload {
        h.insert(PAYLOAD, next());
    }
    for name in &union.mapped {
        let value = next();
        let value = match extra.iter().find(|(n, _)| n == name) {
            Some((_, rule)) if !issuer.headers.iter().any(|(n, _)| n == name) => {
                rule.clone().unwrap_or_else(|| HeaderValue::from_static(""))
            }
            _ => value,
        };
        h.insert(name.clone(), value);
    }
    h
}

/// A string that can be an identity header value as it is: visible ASCII and inner spaces only
/// (no control characters, no bytes past ASCII), no leading or trailing space (HTTP drops it,
/// so the upstream would read another value).
fn plain_text(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().all(|c| (0x20..=0x7e).contains(c))
        && b.first() != Some(&b' ')
        && b.last() != Some(&b' ')
}

/// Why a string is refused.
const NOT_PLAIN: &str =
    "a string must be visible ASCII and spaces, without leading or trailing spaces";

/// The largest magnitude of an RFC 8941 Integer.
const SF_INTEGER_MAX: i64 = 999_999_999_999_999;

/// Appends `item` as an RFC 8941 Item (sf-string, sf-boolean or sf-integer); false when it
/// has none of those forms.
fn push_sf_item(out: &mut String, item: &Value) -> bool {
    match item {
        Value::String(s) if s.bytes().all(|c| (0x20..=0x7e).contains(&c)) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Value::Bool(b) => out.push_str(if *b { "?1" } else { "?0" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) if (-SF_INTEGER_MAX..=SF_INTEGER_MAX).contains(&i) => {
                out.push_str(&i.to_string())
            }
            _ => return false,
        },
        _ => return false,
    }
    true
}

/// A claim as an identity header value (see docs/security.md, "Identity headers"):
/// - absent, `null`, `""` or `[]`: the empty value (the header is sent, empty: "absent");
/// - a string: as it is, when [`plain_text`] (else refused);
/// - a number or a boolean: its JSON text;
/// - an array: an RFC 8941 List of its items, `, `-separated: strings as sf-strings (quoted,
///   `"` and `\` escaped, visible ASCII and space only), booleans as `?1`/`?0`, integers up to
///   15 digits as sf-integers; any other item refuses the array;
/// - an object: refused.
///
/// A refusal (`Err`, why) makes `/auth` answer 401 `unrepresentable_claim`: an identity is
/// never forwarded empty or altered.
fn header_value(v: Option<&Value>) -> Result<HeaderValue, &'static str> {
    let text = match v {
        None | Some(Value::Null) => return Ok(HeaderValue::from_static("")),
        Some(Value::String(s)) if plain_text(s) => s.clone(),
        Some(Value::String(_)) => return Err(NOT_PLAIN),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(items)) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !push_sf_item(&mut out, item) {
                    return Err(
                        "an array may hold only strings of visible ASCII and spaces, \
                                booleans and integers of up to 15 digits",
                    );
                }
            }
            out
        }
        Some(Value::Object(_)) => {
            return Err("an object has no header encoding (forward_payload sends all claims)")
        }
    };
    HeaderValue::from_str(&text).map_err(|_| "not a header value")
}

/// Refuses a verified token whose claim at `path` cannot be the header `name`.
fn unrepresentable(path: &str, name: &str, why: &str) -> Error {
    Error::new(
        Reason::UnrepresentableClaim,
        format!("claim {path:?} cannot be sent as {name}: {why}"),
    )
}
