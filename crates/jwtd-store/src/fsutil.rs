//! Files jwtd writes: atomically (a temporary file in the same directory, flushed to disk, then
//! moved into place), so a crash, a full disk or a failed write never leaves an empty or partial
//! file that the next start would trust.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Whether [`write_atomic`] may replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    /// Fail with [`std::io::ErrorKind::AlreadyExists`] when the file exists (checked atomically:
    /// two writers racing cannot both succeed).
    Never,
    /// Replace the file atomically: readers see the old or the new content, never a mix.
    Always,
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    let mut nonce = [0u8; 6];
    // A random suffix keeps concurrent writers apart; the pid alone would not across threads.
    let _ = jwtd_core::fill_random(&mut nonce);
    name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        jwtd_core::b64::encode(nonce)
    ));
    path.with_file_name(name)
}

/// Writes `data` to `path` with permission bits `mode` (e.g. `0o600` for secrets), atomically.
///
/// The data goes to a new temporary file beside `path` (created with `mode`, never wider), is
/// synced, then linked (`Replace::Never`) or renamed (`Replace::Always`) into place, and the
/// directory is synced. On any failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, replace: Replace) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        match replace {
            // link(2) fails when the target exists: no check-then-write race.
            Replace::Never => std::fs::hard_link(&tmp, path),
            Replace::Always => std::fs::rename(&tmp, path),
        }
    })();
    // After a rename the temporary name is gone already; after a link it is a second name.
    let _ = std::fs::remove_file(&tmp);
    result?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> PathBuf {
        let mut n = [0u8; 8];
        jwtd_core::fill_random(&mut n).unwrap();
        let d = std::env::temp_dir().join(format!("jwtd-fsutil-{}", jwtd_core::b64::encode(n)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_writes_leave_no_partial_or_temporary_files() {
        let d = dir();
        let p = d.join("admin.key");
        write_atomic(&p, b"first\n", 0o600, Replace::Never).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_atomic(&p, b"second\n", 0o600, Replace::Never).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"first\n", "never clobbered");
        write_atomic(&p, b"third\n", 0o600, Replace::Always).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"third\n");
        // A write into a missing directory fails and leaves nothing behind.
        assert!(write_atomic(&d.join("no/such"), b"x", 0o600, Replace::Always).is_err());
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("admin.key")],
            "no temporary file left"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
