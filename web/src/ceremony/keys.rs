//! Key files the server creates on first use: the organiser's Ed25519 key and the key
//! that seals children's records. Created with `create_new` and mode 0600, so two nodes
//! (or two requests) racing to create one end up reading the same file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lottery::KeyFile;

use super::records::RecordsKey;

/// Reads the organiser key at `path`, creating it (0600) when it does not exist.
pub fn organiser_key(path: &Path) -> anyhow::Result<KeyFile> {
    let bytes = read_or_create(path, || KeyFile::generate(&mut rand_core::OsRng).to_bytes())?;
    KeyFile::parse(&bytes).with_context(|| format!("organiser key file {}", path.display()))
}

/// Reads the records key at `path`, creating it (0600) when it does not exist.
pub fn records_key(path: &Path) -> anyhow::Result<RecordsKey> {
    let bytes = read_or_create(path, || {
        format!("{}\n", hex::encode(rand::random::<[u8; 32]>())).into_bytes()
    })?;
    RecordsKey::parse(&bytes).with_context(|| format!("records key file {}", path.display()))
}

fn read_or_create(path: &Path, make: impl FnOnce() -> Vec<u8>) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => return Ok(bytes),
        Ok(_) => anyhow::bail!("key file {} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Written under a temporary name and linked into place: a reader never sees a
    // half-written key, and of two racing creators exactly one wins.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let bytes = make();
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created key file");
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/organiser.key");
        let first = organiser_key(&path).unwrap();
        let again = organiser_key(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let records = records_key(&dir.path().join("records.key")).unwrap();
        let records_again = records_key(&dir.path().join("records.key")).unwrap();
        assert_eq!(
            records.child_key("d", "x"),
            records_again.child_key("d", "x")
        );
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("organiser.key");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(organiser_key(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"garbage");
    }
}
