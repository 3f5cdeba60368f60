//! Domain types of the web layer that parse, not validate: once you hold one, it is valid.

pub mod draw;
pub mod event;
pub mod review;
