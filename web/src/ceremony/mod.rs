//! The draw ceremony's shell around the pure `lottery` crate: keys, sealed records, the
//! lifecycle steps that need more than one query, and the live play-out.
//!
//! # Layout
//! - `keys`: the organiser key and the records key, created on first use (0600)
//! - `records`: children's records sealed at rest, keyed hashes to find them
//! - `steps`: announce, draw, countersign: lottery computations over stored rows
//! - `playout`: plays a drawn result out over the event's WebSocket, then publishes
//! - `cache`: parsed leaves and transcripts per draw, for proofs and lookups

mod cache;
pub mod keys;
pub mod playout;
pub mod records;
pub mod steps;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lottery::KeyFile;

use crate::auth::KeyedLimiter;
use crate::config::Settings;
pub use cache::{DrawCache, LeafSet};
use records::RecordsKey;

/// Keys, limiters and caches of the draw ceremonies. One per process.
pub struct Ceremony {
    organiser_key_path: PathBuf,
    records_key_path: PathBuf,
    organiser: Mutex<Option<Arc<KeyFile>>>,
    records: Mutex<Option<RecordsKey>>,
    pub lookup_per_ip: KeyedLimiter,
    pub lookup_per_child: KeyedLimiter,
    pub apply_per_ip: KeyedLimiter,
    pub apply_per_child: KeyedLimiter,
    pub cache: DrawCache,
    pub pace: Duration,
    /// Draws this process is playing out right now.
    playing: Mutex<HashSet<String>>,
    /// Who holds play-out leases: stable across restarts of this installation (host and
    /// data directory), so a restarted server resumes its own play-out at once.
    pub owner: String,
}

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremony")
            .field("organiser_key_path", &self.organiser_key_path)
            .field("records_key_path", &self.records_key_path)
            .field("pace", &self.pace)
            .finish_non_exhaustive()
    }
}

fn lease_owner(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{}:{}", host.trim(), dir.display())
}

impl Ceremony {
    pub fn from_settings(settings: &Settings) -> Ceremony {
        let draw = &settings.draw;
        Ceremony {
            organiser_key_path: draw
                .organiser_key_file
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("organiser.key")),
            records_key_path: draw
                .records_key_file
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("records.key")),
            organiser: Mutex::new(None),
            records: Mutex::new(None),
            lookup_per_ip: KeyedLimiter::per_minute(settings.lookup.per_ip_per_minute),
            lookup_per_child: KeyedLimiter::per_minute(settings.lookup.per_child_per_minute),
            apply_per_ip: KeyedLimiter::per_minute(draw.apply_per_ip_per_minute),
            apply_per_child: KeyedLimiter::per_minute(draw.apply_per_child_per_minute),
            cache: DrawCache::default(),
            pace: Duration::from_millis(draw.pace_ms),
            playing: Mutex::new(HashSet::new()),
            owner: lease_owner(&settings.data_dir),
        }
    }

    /// Marks `draw_id` as played by this process; false if it already is.
    pub fn start_playing(&self, draw_id: &str) -> bool {
        self.playing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(draw_id.to_owned())
    }

    pub fn stop_playing(&self, draw_id: &str) {
        self.playing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(draw_id);
    }

    pub fn is_playing(&self, draw_id: &str) -> bool {
        self.playing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(draw_id)
    }

    /// The organiser's signing key, read (or created) on first use.
    pub fn organiser_key(&self) -> anyhow::Result<Arc<KeyFile>> {
        let mut slot = self
            .organiser
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = slot.as_ref() {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(keys::organiser_key(&self.organiser_key_path)?);
        *slot = Some(Arc::clone(&key));
        Ok(key)
    }

    /// The records key, read (or created) on first use.
    pub fn records_key(&self) -> anyhow::Result<RecordsKey> {
        let mut slot = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = keys::records_key(&self.records_key_path)?;
        *slot = Some(key.clone());
        Ok(key)
    }
}
