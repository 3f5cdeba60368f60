//! Integration tests of the draw engine through its public API (one test binary).

mod properties;
mod purity;
mod snapshot;
mod support;
mod transcripts;
