//! Passwords: argon2id (the crate's defaults follow OWASP's minimum), verified in
//! constant time by the argon2 crate.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand_core::OsRng;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 256;

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

/// True when `password` matches the stored PHC string. A malformed stored hash never
/// matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// [`hash_password`] on the blocking pool: argon2id takes tens of milliseconds of CPU,
/// too long for an async worker.
pub async fn hash_password_off_thread(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password)).await?
}

/// [`verify_password`] on the blocking pool, for the same reason.
pub async fn verify_password_off_thread(password: String, stored: String) -> anyhow::Result<bool> {
    Ok(tokio::task::spawn_blocking(move || verify_password(&password, &stored)).await?)
}

pub fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(format!(
            "password must have at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

/// Usernames: 2-32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_username(username: &str) -> Result<(), String> {
    let ok_len = (2..=32).contains(&username.len());
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let ok_start = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err("username must be 2-32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn rules() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough!").is_ok());
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("Alice").is_err());
        assert!(validate_username("-x").is_err());
        assert!(validate_username("a").is_err());
    }
}
