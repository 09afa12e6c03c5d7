//! `jwtd dpop proof` and `jwtd dpop verify`: DPoP (RFC 9449) proofs from the command line,
//! made and checked by jwtd-core.

use crate::args::{DpopProofArgs, DpopVerifyArgs};
use crate::cmd::{print_json, Failure, Result};
use crate::io;
use jwtd_core::{
    DpopError, DpopPolicy, DpopProof, DpopRequest, Family, Htu, Jwk, ProofClaims, SigningKey,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A `jwtd dpop proof` whose arguments were checked.
struct ProofJob {
    key: SigningKey,
    method: String,
    url: String,
    token: Option<String>,
    nonce: Option<String>,
    jti: Option<String>,
    iat: u64,
}

/// A `jwtd dpop verify` whose arguments were checked.
struct VerifyJob {
    proof: String,
    method: String,
    url: String,
    token: Option<String>,
    policy: DpopPolicy,
    now: u64,
    json: bool,
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

/// `--method`: an HTTP method token, kept as given (RFC 9110 methods are case-sensitive).
fn method(m: &str) -> Result<String> {
    if !jwtd_gate::rules::is_method_token(m) {
        return Err(usage(format!("--method {m:?} is not an HTTP method")));
    }
    Ok(m.to_owned())
}

/// `--url`: an absolute http(s) URL that normalises for the `htu` comparison.
fn url(u: &str) -> Result<String> {
    jwtd_core::normalize_htu(u, Htu::Request)
        .map_err(|why| usage(format!("--url {u:?} {why}; give an absolute http(s) URL")))?;
    Ok(u.to_owned())
}

/// The token of `--token` or `--token-file`, if any.
fn token(arg: Option<&str>, file: Option<&PathBuf>) -> Result<Option<String>> {
    if let Some(t) = arg {
        return Ok(Some(io::read_token(Some(t)).map_err(Failure::Usage)?));
    }
    if let Some(f) = file {
        let raw = io::read_file(f).map_err(Failure::Usage)?;
        let text =
            std::str::from_utf8(&raw).map_err(|_| usage(format!("{} is not text", f.display())))?;
        let empty = format!("{} holds no token", f.display());
        return Ok(Some(io::token_text(text, &empty).map_err(Failure::Usage)?));
    }
    Ok(None)
}

/// The private key of `--key`: a JWK file or a PEM; asymmetric only.
fn private_key(path: &Path, alg: Option<jwtd_core::Algorithm>) -> Result<SigningKey> {
    let bytes = io::read_file(path)?;
    let bad = |e: jwtd_core::KeyError| usage(format!("{}: {e}", path.display()));
    let key = if bytes.trim_ascii_start().starts_with(b"{") {
        let jwk = Jwk::from_json(&bytes).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        if jwk.kty == "oct" {
            return Err(usage(format!(
                "{}: an HMAC secret cannot sign a DPoP proof; use an asymmetric key \
                 (jwtd keygen --alg ES256 --out client.pem)",
                path.display()
            )));
        }
        SigningKey::from_jwk(&jwk, alg).map_err(bad)?
    } else {
        SigningKey::from_pem(&bytes, alg, None).map_err(bad)?
    };
    if let Some(alg) = alg.filter(|a| *a != key.algorithm()) {
        return Err(usage(format!(
            "{}: the key is for {}, not {alg}",
            path.display(),
            key.algorithm()
        )));
    }
    if key.algorithm().family() == Family::Hmac {
        return Err(usage(format!(
            "{}: an HMAC secret cannot sign a DPoP proof",
            path.display()
        )));
    }
    Ok(key)
}

impl ProofJob {
    fn from_args(a: &DpopProofArgs) -> Result<ProofJob> {
        Ok(ProofJob {
            method: method(&a.method)?,
            url: url(&a.url)?,
            token: token(a.token.as_deref(), a.token_file.as_ref())?,
            key: private_key(&a.key, a.alg)?,
            nonce: a.nonce.clone(),
            jti: a.jti.clone(),
            iat: a.now.unwrap_or_else(jwtd_core::unix_now),
        })
    }
}

impl VerifyJob {
    fn from_args(a: &DpopVerifyArgs) -> Result<VerifyJob> {
        let proof = io::read_token(Some(&a.proof)).map_err(|e| usage(format!("--proof: {e}")))?;
        let policy = if a.algs.is_empty() {
            DpopPolicy::default()
        } else {
            DpopPolicy::new(&a.algs).map_err(|e| usage(format!("--alg: {}", e.message())))?
        };
        Ok(VerifyJob {
            proof,
            method: method(&a.method)?,
            url: url(&a.url)?,
            token: token(a.token.as_deref(), a.token_file.as_ref())?,
            policy: policy.max_age(a.max_age).leeway(a.leeway),
            now: a.now.unwrap_or_else(jwtd_core::unix_now),
            json: a.json,
        })
    }
}

/// `jwtd dpop proof`.
pub fn proof(a: DpopProofArgs) -> Result<()> {
    let job = ProofJob::from_args(&a)?;
    let proof = jwtd_core::make_proof(
        &job.key,
        &ProofClaims {
            method: &job.method,
            url: &job.url,
            access_token: job.token.as_deref(),
            nonce: job.nonce.as_deref(),
            iat: job.iat,
            jti: job.jti.as_deref(),
        },
    )
    .map_err(|e| usage(e.to_string()))?;
    println!("{proof}");
    Ok(())
}

/// `jwtd dpop verify`: exit 0 valid, 1 refused (printed), 2 usage.
pub fn verify(a: DpopVerifyArgs) -> Result<()> {
    let job = VerifyJob::from_args(&a)?;
    let result = job.policy.verify(
        &DpopRequest {
            proofs: &[job.proof.as_bytes()],
            method: &job.method,
            uri: &job.url,
            access_token: job.token.as_deref(),
        },
        job.now,
    );
    if job.json {
        print_json(&as_json(&result));
    } else {
        print!("{}", as_text(&result));
    }
    match result {
        Ok(_) => Ok(()),
        Err(_) => Err(Failure::Denied),
    }
}

fn as_json(r: &std::result::Result<DpopProof, DpopError>) -> Value {
    match r {
        Ok(p) => json!({
            "valid": true, "jkt": p.jkt, "jti": p.jti, "iat": iat(p.iat), "alg": p.alg.as_str(),
            "nonce": p.nonce, "reason": null, "error": null, "message": null,
        }),
        Err(e) => json!({
            "valid": false, "jkt": null, "jti": null, "iat": null, "alg": null, "nonce": null,
            "reason": e.reason().as_str(), "error": e.reason().error_code(),
            "message": e.message(),
        }),
    }
}

/// `iat` as JSON: an integer when it is one (as proofs write it).
fn iat(v: f64) -> Value {
    if v.fract() == 0.0 {
        Value::from(v as u64)
    } else {
        Value::from(v)
    }
}

fn as_text(r: &std::result::Result<DpopProof, DpopError>) -> String {
    match r {
        Ok(p) => format!(
            "proof:   valid\njkt:     {}\njti:     {}\niat:     {}\nalg:     {}\nnonce:   {}\n",
            p.jkt,
            shown(&p.jti),
            p.iat,
            p.alg,
            p.nonce.as_deref().map_or_else(|| "-".to_owned(), shown)
        ),
        Err(e) => format!(
            "proof:   refused\nreason:  {}\nerror:   {}\nmessage: {}\n",
            e.reason(),
            e.reason().error_code(),
            e.message()
        ),
    }
}

/// A proof's own text (`jti`, `nonce`: the client's) as printed: control characters, bidi
/// overrides and `\` escaped (Rust `escape_debug` form), so a proof cannot write terminal
/// escapes or extra lines.
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if bidi {
            out.extend(c.escape_unicode());
        } else if c.is_control() || c == '\\' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}
