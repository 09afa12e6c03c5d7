//! Reading tokens, keys and secrets; writing key files with safe modes.

use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// Largest key, JWKS or claims file read (key material is small; this bounds mistakes).
const MAX_FILE: u64 = 1024 * 1024;

/// The token from the argument, or stdin when absent or `-`. Surrounding whitespace is removed.
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
    let t = raw.trim();
    if t.is_empty() {
        return Err("no token given (pass it as an argument or on stdin)".into());
    }
    Ok(t.to_owned())
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

/// Writes `data` to a new file with `mode` (refusing to replace an existing file unless
/// `force`). With `force` the old file is replaced atomically via a temporary file.
pub fn write_new(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let target = if force {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp{}", std::process::id()));
        path.with_file_name(name)
    } else {
        path.to_path_buf()
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&target)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("{} exists; pass --force to replace it", path.display())
            } else {
                fail(e)
            }
        })?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(fail)?;
    if force {
        std::fs::rename(&target, path).map_err(fail)?;
    }
    Ok(())
}
