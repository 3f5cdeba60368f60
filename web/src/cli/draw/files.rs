//! File input and output for the draw tools. Secrets (key files, the private application
//! file) are created with mode 0600 from the start, never chmod-ed after the fact.

use std::io::Write;
use std::path::Path;

use super::Failure;

/// Reads a whole input file; failure is a usage error (exit 2).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Writes a public file, replacing it atomically (temporary file in the same directory,
/// then rename), so that a reader never sees half a transcript.
pub(crate) fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    write_replace_parts(path, &[bytes])
}

/// [`write_replace`] for a file given in parts (a large transcript is not copied to join
/// it with its signatures).
pub(crate) fn write_replace_parts(path: &Path, parts: &[&[u8]]) -> Result<(), Failure> {
    let temporary = temporary_path(path);
    let result = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
        for part in parts {
            file.write_all(part)?;
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        Failure::Usage(format!("cannot write {}: {e}", path.display()))
    })
}

/// Creates a secret file with mode 0600; refuses to overwrite an existing file.
pub(crate) fn write_secret_new(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options.open(path).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    result.map_err(|e| Failure::Usage(format!("cannot create {}: {e}", path.display())))
}

fn temporary_path(path: &Path) -> std::path::PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
