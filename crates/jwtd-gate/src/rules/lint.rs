//! Warnings about rule sets that load but probably do not do what was meant.

use super::{cmp_order, path_covers, DefaultAction, HostPattern, MethodSet, Rule, RuleSet};
use std::cmp::Ordering;

fn named(r: &Rule) -> String {
    match r.line() {
        Some(l) => format!("rule {:?} (line {l})", r.id()),
        None => format!("rule {:?}", r.id()),
    }
}

/// Could `p` take every host `r` takes (for requests that fail `r`'s other conditions)?
fn hosts_cover(p: &Rule, r: &Rule) -> bool {
    if p.hosts().is_empty() {
        return true;
    }
    if r.hosts().is_empty() {
        return false;
    }
    r.hosts().iter().any(|h| {
        p.hosts().iter().any(|q| match (q, h) {
            (q, h) if q == h => true,
            (HostPattern::Wildcard(_), HostPattern::Exact(e)) => q.matches(e),
            (HostPattern::Wildcard(s), HostPattern::Wildcard(t)) => {
                t.len() > s.len()
                    && t.ends_with(s.as_str())
                    && t.as_bytes()[t.len() - s.len() - 1] == b'.'
            }
            _ => false,
        })
    })
}

impl RuleSet {
    /// Warnings, each naming the rules concerned (with lines when the text was given). What
    /// they catch:
    ///
    /// - **Public fallback**: a rule that needs a token but narrows its requests by methods,
    ///   hosts or header conditions, whose path is also matched by a less specific `public`
    ///   rule: requests to that path that miss the narrowing (another method, another host, a
    ///   missing header) fall back to the public rule and pass without a token. (`POST
    ///   /admin/**` needs `corp`, `/**` is public: `GET /admin/users` is public.)
    /// - `default = "public"` while rules exist: every request no rule matches passes.
    /// - `optional` requirements with scopes or claim predicates: these are checked only when
    ///   a token is present, so a request without one skips them.
    ///
    /// Rules that can never be reached at all are load errors, not warnings: two rules of equal
    /// specificity that overlap (ambiguity), dot or empty segments, `%2F` under `reject`, a CORS
    /// bypass on a rule that does not take `OPTIONS`. A more specific rule never takes every
    /// request of a less specific one (a literal or parameter covers fewer requests than a
    /// parameter or rest; a host, method or header condition narrows), so "shadowed" rules
    /// reduce to the ambiguity check.
    pub fn lint(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.rules.is_empty() && self.options.default == DefaultAction::Public {
            out.push(
                "[rules] default = \"public\": every request no rule matches passes without a token".to_owned(),
            );
        }
        let publics: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.requirement().is_public())
            .collect();
        for r in &self.rules {
            if r.requirement().is_public() {
                continue;
            }
            let narrowed = !r.hosts().is_empty()
                || !matches!(r.methods(), MethodSet::All)
                || !r.when_headers().is_empty();
            if narrowed {
                for p in &publics {
                    if path_covers(p.path(), r.path())
                        && hosts_cover(p, r)
                        && cmp_order(r, p) == Ordering::Less
                    {
                        let mut what = Vec::new();
                        if !matches!(r.methods(), MethodSet::All) {
                            what.push(format!("other methods than {}", r.methods()));
                        }
                        if !r.hosts().is_empty() {
                            what.push("other hosts".to_owned());
                        }
                        if !r.when_headers().is_empty() {
                            what.push("requests without its header conditions".to_owned());
                        }
                        out.push(format!(
                            "{} needs a token for {:?}, but {} on that path fall back to the public {} ({:?}) and pass without a token",
                            named(r),
                            r.path().source,
                            what.join(", "),
                            named(p),
                            p.path().source,
                        ));
                    }
                }
            }
            if !r.requirement().needs_token() && (r.scopes().is_some() || !r.claims().is_empty()) {
                out.push(format!(
                    "{} has an optional token requirement: its scopes and claim predicates apply only when a token is present",
                    named(r)
                ));
            }
        }
        out
    }
}
