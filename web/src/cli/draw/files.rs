//! File input and output for the draw tools. Secrets (key files, the private application
//! file) are created with mode 0600 from the start, never chmod-ed after the fact.

use std::io::Write;
use std::path::Path;

use super::Failure;

/// Reads a whole input file; failure is a usage error (exit 2).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

/// [`read`] for a large input (a signed transcript of a million applications is over
/// 200 MB): the two halves are read at the same time, because most of the cost is the
/// kernel mapping and filling fresh pages, which scales with cores.
pub(crate) fn read_large(path: &Path) -> Result<Vec<u8>, Failure> {
    read_halves(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

#[cfg(unix)]
fn read_halves(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| std::io::Error::other("the file does not fit in memory"))?;
    if len < 1 << 24 {
        return std::fs::read(path);
    }
    let mut bytes = vec![0u8; len];
    let (front, back) = bytes.split_at_mut(len / 2);
    std::thread::scope(|scope| {
        let back_read = scope.spawn(|| file.read_exact_at(back, (len / 2) as u64));
        file.read_exact_at(front, 0)?;
        back_read
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    // A file that grew while it was read is read again the ordinary way.
    if file.read_at(&mut [0u8; 1], len as u64)? != 0 {
        return std::fs::read(path);
    }
    Ok(bytes)
}

#[cfg(not(unix))]
fn read_halves(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
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
