//! Reading tokens, keys and secrets; writing key files with safe modes.

use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest key, JWKS or claims file read (key material is small; this bounds mistakes).
const MAX_FILE: u64 = 1024 * 1024;

/// The token from the argument, or stdin when absent or `-`. Surrounding whitespace is removed,
/// and so is a leading `Bearer ` (any case) pasted from an `Authorization` header, with a note
/// on stderr.
pub fn read_token(arg: Option<&str>) -> Result<String, String> {
    let raw = match arg {
        Some(t) if t != "-" => t.to_owned(),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .take(MAX_FILE)
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
            s
        }
    };
    token_text(&raw, "no token given (pass it as an argument or on stdin)")
}

/// The token in `raw` (a file's or stdin's text, an argument): surrounding whitespace and a
/// pasted `Bearer ` prefix removed (with a note on stderr); `empty` is the message when
/// nothing is left.
pub fn token_text(raw: &str, empty: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(empty.into());
    }
    if let Some(rest) = strip_bearer(t) {
        eprintln!(
            "jwtd: note: removed a leading \"Bearer \" (an Authorization header value); using the token after it"
        );
        if rest.is_empty() {
            return Err("no token given after \"Bearer \"".into());
        }
        return Ok(rest.to_owned());
    }
    Ok(t.to_owned())
}

/// What follows a leading `Bearer` (any case) and whitespace, if `t` starts with one.
fn strip_bearer(t: &str) -> Option<&str> {
    if !t.get(..6)?.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let rest = &t[6..];
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim_start())
}

/// Reads a whole file of at most 1 MiB.
pub fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    Ok(buf)
}

/// An HMAC secret from a file (one trailing newline dropped) or an environment variable.
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<Zeroizing<Vec<u8>>, String> {
    if let Some(path) = file {
        let mut s = read_file(path)?;
        let keep = if s.ends_with(b"\r\n") {
            s.len() - 2
        } else if s.ends_with(b"\n") {
            s.len() - 1
        } else {
            s.len()
        };
        s.truncate(keep);
        return Ok(s);
    }
    let var = env.ok_or("no secret source given")?;
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => Ok(Zeroizing::new(v.into_encoded_bytes())),
        _ => Err(format!("environment variable {var} is not set or empty")),
    }
}

/// Writes `data` to a file with `mode`, atomically (temporary file, sync, then link or rename):
/// an existing file is refused unless `force`, and a failed write never leaves a partial one.
pub fn write_new(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), String> {
    let replace = if force {
        jwtd_store::Replace::Always
    } else {
        jwtd_store::Replace::Never
    };
    jwtd_store::write_atomic(path, data, mode, replace).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} exists; pass --force to replace it", path.display())
        } else {
            format!("cannot write {}: {e}", path.display())
        }
    })
}
