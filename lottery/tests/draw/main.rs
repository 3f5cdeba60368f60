//! Integration tests of the draw engine through its public API (one test binary).

mod fast_path;
mod properties;
mod purity;
mod snapshot;
mod support;
mod transcripts;
