//! Parsed leaves and transcripts, per draw, keyed by their hash so that a stale entry
//! can never answer for a newer version (another node may have re-announced).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use lottery::{Digest, Leaf, SignedTranscript};

/// A draw's announced leaves and their leaf hashes (for inclusion proofs).
#[derive(Debug)]
pub struct LeafSet {
    pub leaves: Vec<Leaf>,
    pub hashes: Vec<Digest>,
}

#[derive(Debug, Default)]
pub struct DrawCache {
    leaves: Mutex<HashMap<String, (String, Arc<LeafSet>)>>,
    transcripts: Mutex<HashMap<String, (String, Arc<SignedTranscript>)>>,
}

impl DrawCache {
    pub fn leaves(
        &self,
        draw_id: &str,
        version: &str,
        load: impl FnOnce() -> anyhow::Result<LeafSet>,
    ) -> anyhow::Result<Arc<LeafSet>> {
        cached(&self.leaves, draw_id, version, load)
    }

    pub fn transcript(
        &self,
        draw_id: &str,
        version: &str,
        load: impl FnOnce() -> anyhow::Result<SignedTranscript>,
    ) -> anyhow::Result<Arc<SignedTranscript>> {
        cached(&self.transcripts, draw_id, version, load)
    }
}

fn cached<T>(
    map: &Mutex<HashMap<String, (String, Arc<T>)>>,
    draw_id: &str,
    version: &str,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<Arc<T>> {
    if let Some((v, value)) = map
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(draw_id)
        && v == version
    {
        return Ok(Arc::clone(value));
    }
    // Loaded outside the lock: parsing a large draw must not stall other draws.
    let value = Arc::new(load()?);
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(draw_id.to_owned(), (version.to_owned(), Arc::clone(&value)));
    Ok(value)
}
