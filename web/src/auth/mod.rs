//! Staff authentication and authorisation.
//!
//! # Layout
//! - `role`: the five staff roles
//! - `password`: argon2id hashing, password rules
//! - `secret`: random session/API/CSRF tokens and their stored hashes
//! - `caller`: the `Caller` extractor (session cookie + CSRF, or bearer token) and
//!   `PageCaller` for pages
//! - `rate_limit`: keyed limiters (login per username and per IP)

mod caller;
pub mod login;
mod password;
mod rate_limit;
mod role;
mod secret;

pub use caller::{Authn, CSRF_COOKIE, Caller, ClientIp, PageCaller, SESSION_COOKIE};
pub use password::{
    hash_password, hash_password_off_thread, validate_password, validate_username, verify_password,
    verify_password_off_thread,
};
pub use rate_limit::KeyedLimiter;
pub use role::Role;
pub use secret::{new_api_token, new_secret, secret_hash};
