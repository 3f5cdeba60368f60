//! The catalogue of recorded segments (the files live in the recordings directory).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreResult};
use crate::domain::event::EventId;

/// One recorded segment of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recording {
    pub segment: i64,
    /// The file's name inside the event's recordings directory (`0001.webm`).
    pub file_name: String,
    /// Comma-separated codec names (`vp8,opus`).
    pub codecs: String,
    pub started_ms: i64,
    /// `None` while the segment is being recorded (or if the process died meanwhile).
    pub ended_ms: Option<i64>,
    pub duration_ms: i64,
    pub bytes: i64,
    pub dropped_packets: i64,
}

const COLUMNS: &str =
    "segment, file_name, codecs, started_at, ended_at, duration_ms, bytes, dropped_packets";

impl Store {
    /// Records a segment (again: the finished state replaces the started one).
    pub async fn save_recording(&self, event_id: &EventId, r: &Recording) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO recordings (event_id, segment, file_name, codecs, started_at, ended_at, duration_ms, bytes, dropped_packets)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (event_id, segment) DO UPDATE SET file_name = $3, codecs = $4,
               started_at = $5, ended_at = $6, duration_ms = $7, bytes = $8, dropped_packets = $9",
        )
        .bind(event_id.as_str())
        .bind(r.segment)
        .bind(&r.file_name)
        .bind(&r.codecs)
        .bind(r.started_ms)
        .bind(r.ended_ms)
        .bind(r.duration_ms)
        .bind(r.bytes)
        .bind(r.dropped_packets)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The event's segments in recording order.
    pub async fn recordings(&self, event_id: &EventId) -> StoreResult<Vec<Recording>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE event_id = $1 ORDER BY segment"
        ))
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(recording)
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    pub async fn recording(
        &self,
        event_id: &EventId,
        segment: i64,
    ) -> StoreResult<Option<Recording>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE event_id = $1 AND segment = $2"
        ))
        .bind(event_id.as_str())
        .bind(segment)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(recording).transpose()?)
    }

    /// Segments left unfinished by a process that died while recording, with their events.
    pub async fn unfinished_recordings(&self) -> StoreResult<Vec<(EventId, Recording)>> {
        let rows = sqlx::query(&format!(
            "SELECT event_id, {COLUMNS} FROM recordings WHERE ended_at IS NULL"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let id: String = row.try_get("event_id")?;
            if let Some(id) = EventId::parse(&id) {
                out.push((id, recording(row)?));
            }
        }
        Ok(out)
    }
}

fn recording(row: &AnyRow) -> Result<Recording, sqlx::Error> {
    Ok(Recording {
        segment: row.try_get("segment")?,
        file_name: row.try_get("file_name")?,
        codecs: row.try_get("codecs")?,
        started_ms: row.try_get("started_at")?,
        ended_ms: row.try_get("ended_at")?,
        duration_ms: row.try_get("duration_ms")?,
        bytes: row.try_get("bytes")?,
        dropped_packets: row.try_get("dropped_packets")?,
    })
}
