//! Draw ceremonies: the draw row, its sealed applications, witnesses and audit trail.
//!
//! Every lifecycle step is one transaction that also writes its audit entry, and is
//! conditional on the state it starts from (`WHERE state = $from`): two organisers
//! pressing the same button produce one step, the other sees `StepRaced`. Writes to
//! applications begin by taking the draw's row on condition that it is `open`
//! ([`lock_open_draw`]), so they and the close come out in one order on both databases:
//! nothing is written to an application once the close has committed.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError, StoreResult, is_unique_violation};
use crate::domain::draw::{DrawSetup, DrawState};
use crate::domain::review::{Mark, Reviewed, Status, statuses};

/// A draw as stored.
#[derive(Debug, Clone)]
pub struct DrawRow {
    pub id: String,
    pub title: String,
    pub event_id: Option<String>,
    pub state: DrawState,
    pub setup: DrawSetup,
    pub round: i64,
    pub announcement: Option<String>,
    pub announcement_hash: Option<String>,
    pub organiser_key: Option<String>,
    pub beacon_text: Option<String>,
    pub transcript: Option<String>,
    pub transcript_hash: Option<String>,
    pub countersigned: Option<String>,
    pub leaves: Option<String>,
    pub played: i64,
    pub playout_node: Option<String>,
    pub playout_heartbeat: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One application as stored: the child's identity only sealed and keyed-hashed.
#[derive(Debug, Clone)]
pub struct StoredApplication {
    pub app: String,
    pub child_key: String,
    pub sealed: String,
    pub choices: String,
    pub group: String,
    /// The organiser's review mark (a new application is always stored `Pending`).
    pub review: Mark,
    /// Why it was rejected.
    pub review_reason: Option<String>,
    pub created_at: i64,
}

impl StoredApplication {
    /// A new application (pending review).
    pub fn new(
        app: String,
        child_key: String,
        sealed: String,
        choices: String,
        group: String,
    ) -> Self {
        StoredApplication {
            app,
            child_key,
            sealed,
            choices,
            group,
            review: Mark::Pending,
            review_reason: None,
            created_at: 0,
        }
    }

    pub fn reviewed(&self) -> Reviewed {
        Reviewed {
            app: self.app.clone(),
            child_key: self.child_key.clone(),
            group: self.group.clone(),
            mark: self.review,
        }
    }
}

/// What a close found (`Store::close_draw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Closed, with this many applications.
    Closed(i64),
    /// The draw was not open.
    NotOpen,
    /// Refused: this many applications are in conflict (same child, none rejected).
    Conflicts(i64),
}

/// What a review changed (`Store::review_applications`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// Applied: this many applications verified, this many rejected.
    Done { verified: usize, rejected: usize },
    /// The draw is neither open nor closed.
    WrongState,
    /// Nothing changed: these applications do not exist in the draw.
    Unknown(Vec<String>),
    /// Nothing changed: these applications to verify would still be in conflict.
    InConflict(Vec<String>),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WitnessRow {
    pub index: i64,
    pub name: String,
    pub role: String,
    pub commitment: Option<String>,
    #[serde(skip)]
    pub secret: Option<String>,
    pub revealed: bool,
    #[serde(skip)]
    pub token_hash: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DrawAuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// What a step writes besides the new state (unset fields are left alone).
#[derive(Debug, Default)]
pub struct StepWrite {
    pub announcement: Option<String>,
    pub announcement_hash: Option<String>,
    pub organiser_key: Option<String>,
    pub leaves: Option<String>,
    pub beacon_text: Option<String>,
    pub transcript: Option<String>,
    pub transcript_hash: Option<String>,
    pub countersigned: Option<String>,
}

const APPLICATION_COLUMNS: &str =
    "app, child_key, sealed, choices, grp, review, review_reason, created_at";

const COLUMNS: &str = "id, title, event_id, state, setup, round, announcement, announcement_hash, organiser_key, beacon_text, transcript, transcript_hash, countersigned, leaves, played, playout_node, playout_heartbeat, created_at, updated_at";

impl Store {
    pub async fn create_draw(
        &self,
        id: &str,
        title: &str,
        event_id: Option<&str>,
        setup: &DrawSetup,
        actor: &str,
        now: i64,
    ) -> StoreResult<DrawRow> {
        let setup_json = serde_json::to_string(setup)
            .map_err(|e| StoreError::Setup(format!("draw setup: {e}")))?;
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO draws (id, title, event_id, state, setup, round, played, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, 'draft', $4, 1, 0, $5, $6, $6)",
        )
        .bind(id)
        .bind(title)
        .bind(event_id)
        .bind(&setup_json)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) {
                StoreError::Conflict("a draw with this draw_id")
            } else {
                e.into()
            });
        }
        write_witnesses(&mut tx, id, 1, setup).await?;
        audit(&mut tx, id, actor, "draw.create", title, now).await?;
        tx.commit().await?;
        self.draw(id)
            .await?
            .ok_or(StoreError::Setup("draw vanished after insert".into()))
    }

    /// Replaces the draft's settings (only while `draft`).
    pub async fn update_draw_setup(
        &self,
        id: &str,
        title: &str,
        event_id: Option<&str>,
        setup: &DrawSetup,
        actor: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let setup_json = serde_json::to_string(setup)
            .map_err(|e| StoreError::Setup(format!("draw setup: {e}")))?;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE draws SET title = $1, event_id = $2, setup = $3, updated_at = $4 WHERE id = $5 AND state = 'draft'",
        )
        .bind(title)
        .bind(event_id)
        .bind(&setup_json)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM draw_witnesses WHERE draw_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_witnesses(&mut tx, id, 1, setup).await?;
        audit(&mut tx, id, actor, "draw.edit", title, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn draw(&self, id: &str) -> StoreResult<Option<DrawRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM draws WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(draw_from_row).transpose()
    }

    pub async fn list_draws(&self) -> StoreResult<Vec<DrawRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM draws ORDER BY created_at DESC LIMIT 500"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(draw_from_row).collect()
    }

    /// Draws whose live play-out has not finished (resumed at start).
    pub async fn draws_in_state(&self, state: DrawState) -> StoreResult<Vec<DrawRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM draws WHERE state = $1"))
            .bind(state.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(draw_from_row).collect()
    }

    /// Moves `id` from `from` to `to` (`(from, to)`), writing `write` and the audit entry in one
    /// transaction. `Ok(false)`: the draw was not in `from` (someone else moved it).
    pub async fn draw_step(
        &self,
        id: &str,
        (from, to): (DrawState, DrawState),
        write: StepWrite,
        actor: &str,
        detail: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE draws SET state = $1, updated_at = $2,
               announcement = COALESCE($3, announcement),
               announcement_hash = COALESCE($4, announcement_hash),
               organiser_key = COALESCE($5, organiser_key),
               leaves = COALESCE($6, leaves),
               beacon_text = COALESCE($7, beacon_text),
               transcript = COALESCE($8, transcript),
               transcript_hash = COALESCE($9, transcript_hash),
               countersigned = COALESCE($10, countersigned)
             WHERE id = $11 AND state = $12",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(write.announcement)
        .bind(write.announcement_hash)
        .bind(write.organiser_key)
        .bind(write.leaves)
        .bind(write.beacon_text)
        .bind(write.transcript)
        .bind(write.transcript_hash)
        .bind(write.countersigned)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        audit(
            &mut tx,
            id,
            actor,
            &format!("draw.{}", to.as_str()),
            detail,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A void draw (a witness did not reveal): a new round with fresh witness slots,
    /// back to waiting for commitments, the old announcement kept in the audit trail.
    pub async fn void_draw(
        &self,
        draw: &DrawRow,
        actor: &str,
        detail: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let round = draw.round + 1;
        let done = sqlx::query(
            "UPDATE draws SET state = 'closed', round = $1, announcement = NULL, announcement_hash = NULL,
               leaves = NULL, updated_at = $2 WHERE id = $3 AND state = 'announced' AND round = $4",
        )
        .bind(round)
        .bind(now)
        .bind(&draw.id)
        .bind(draw.round)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        write_witnesses(&mut tx, &draw.id, round, &draw.setup).await?;
        audit(&mut tx, &draw.id, actor, "draw.void", detail, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records play-out progress and renews `node`'s lease on it.
    pub async fn set_draw_played(
        &self,
        id: &str,
        played: i64,
        node: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE draws SET played = CASE WHEN played < $1 THEN $1 ELSE played END, playout_heartbeat = $2
             WHERE id = $3 AND playout_node = $4",
        )
        .bind(played)
        .bind(now)
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the play-out of a drawn draw for `node`: when nobody has it, this node
    /// already has it, or its holder has not renewed the lease since `stale_before`.
    pub async fn claim_playout(
        &self,
        id: &str,
        node: &str,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE draws SET playout_node = $1, playout_heartbeat = $2
             WHERE id = $3 AND state = 'drawn'
               AND (playout_node IS NULL OR playout_node = $1 OR playout_heartbeat < $4)",
        )
        .bind(node)
        .bind(now)
        .bind(id)
        .bind(stale_before)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    pub async fn draw_audit(&self, id: &str) -> StoreResult<Vec<DrawAuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, detail FROM draw_audit WHERE draw_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DrawAuditEntry {
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    pub async fn draw_audit_entry(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        detail: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        audit(&mut tx, id, actor, action, detail, now).await?;
        tx.commit().await?;
        Ok(())
    }

    // --- applications -------------------------------------------------------------

    /// Inserts applications (one child each, pending review) in one transaction, only
    /// while the draw is `open`. A child who already applied gets a second application
    /// (both are then in conflict), unless `exclusive` (the organiser's import): then
    /// `Err(Conflict)` when a child already has an application that is not rejected, and
    /// nothing is written. `Ok(false)`: the draw is not open.
    pub async fn insert_applications(
        &self,
        draw_id: &str,
        applications: &[StoredApplication],
        exclusive: bool,
        (actor, action): (&str, &str),
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if !lock_open_draw(&mut tx, draw_id).await? {
            return Ok(false);
        }
        for a in applications {
            if exclusive {
                let taken: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM draw_applications WHERE draw_id = $1 AND child_key = $2 AND review <> 'rejected'",
                )
                .bind(draw_id)
                .bind(&a.child_key)
                .fetch_one(&mut *tx)
                .await?;
                if taken > 0 {
                    return Err(StoreError::Conflict("an application for this child"));
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO draw_applications (draw_id, app, child_key, sealed, choices, grp, created_at, updated_at, review)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'pending')",
            )
            .bind(draw_id)
            .bind(&a.app)
            .bind(&a.child_key)
            .bind(&a.sealed)
            .bind(&a.choices)
            .bind(&a.group)
            .bind(now)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                return Err(if is_unique_violation(&e) {
                    StoreError::Conflict("an application with this code")
                } else {
                    e.into()
                });
            }
        }
        audit(
            &mut tx,
            draw_id,
            actor,
            action,
            &apps_detail(applications.iter().map(|a| a.app.as_str())),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Which of `child_keys` already have an application in the draw that is not rejected.
    pub async fn existing_child_keys(
        &self,
        draw_id: &str,
        child_keys: &[String],
    ) -> StoreResult<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        for chunk in child_keys.chunks(500) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT child_key FROM draw_applications WHERE draw_id = $1 AND review <> 'rejected' AND child_key IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query(&sql).bind(draw_id);
            for key in chunk {
                query = query.bind(key);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get::<String, _>("child_key")?);
            }
        }
        Ok(found)
    }

    /// Every application for one child (more than one: a conflict), ordered by app.
    pub async fn applications_by_child(
        &self,
        draw_id: &str,
        child_key: &str,
    ) -> StoreResult<Vec<StoredApplication>> {
        let rows = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM draw_applications WHERE draw_id = $1 AND child_key = $2 ORDER BY app"
        ))
        .bind(draw_id)
        .bind(child_key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(application_from_row).collect()
    }

    pub async fn application_by_app(
        &self,
        draw_id: &str,
        app: &str,
    ) -> StoreResult<Option<StoredApplication>> {
        let row = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM draw_applications WHERE draw_id = $1 AND app = $2"
        ))
        .bind(draw_id)
        .bind(app)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(application_from_row).transpose()
    }

    /// Every application of the draw, whatever its review, ordered by app.
    pub async fn applications(&self, draw_id: &str) -> StoreResult<Vec<StoredApplication>> {
        let rows = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM draw_applications WHERE draw_id = $1 ORDER BY app"
        ))
        .bind(draw_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(application_from_row).collect()
    }

    pub async fn application_count(&self, draw_id: &str) -> StoreResult<i64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM draw_applications WHERE draw_id = $1")
                .bind(draw_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }

    /// Changes the choices of every application in `apps` (a child, or a whole group),
    /// only while the draw is open. The choices claim priority classes the organiser
    /// checks, so a corrected application is pending review again (a rejected one stays
    /// rejected).
    pub async fn update_application_choices(
        &self,
        draw_id: &str,
        apps: &[String],
        choices: &str,
        actor: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if !lock_open_draw(&mut tx, draw_id).await? {
            return Ok(false);
        }
        for app in apps {
            sqlx::query(
                "UPDATE draw_applications SET choices = $1, updated_at = $2,
                   review = CASE WHEN review = 'rejected' THEN review ELSE 'pending' END
                 WHERE draw_id = $3 AND app = $4",
            )
            .bind(choices)
            .bind(now)
            .bind(draw_id)
            .bind(app)
            .execute(&mut *tx)
            .await?;
        }
        audit(
            &mut tx,
            draw_id,
            actor,
            "application.correct",
            &apps_detail(apps.iter().map(String::as_str)),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Withdraws applications (a child, or a whole group), only while the draw is open.
    pub async fn delete_applications(
        &self,
        draw_id: &str,
        apps: &[String],
        actor: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if !lock_open_draw(&mut tx, draw_id).await? {
            return Ok(false);
        }
        for app in apps {
            sqlx::query("DELETE FROM draw_applications WHERE draw_id = $1 AND app = $2")
                .bind(draw_id)
                .bind(app)
                .execute(&mut *tx)
                .await?;
        }
        audit(
            &mut tx,
            draw_id,
            actor,
            "application.withdraw",
            &apps_detail(apps.iter().map(String::as_str)),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn group_members(&self, draw_id: &str, group: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT app FROM draw_applications WHERE draw_id = $1 AND grp = $2 ORDER BY app",
        )
        .bind(draw_id)
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("app")?)).collect()
    }

    // --- review -------------------------------------------------------------------

    /// Closes the draw (`open` → `closed`) unless applications are in conflict. The draw's
    /// row is taken first, so every application write that began before has committed and
    /// is seen by the conflict check, and none can begin after.
    pub async fn close_draw(&self, id: &str, actor: &str, now: i64) -> StoreResult<CloseOutcome> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE draws SET state = 'closed', updated_at = $1 WHERE id = $2 AND state = 'open'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(CloseOutcome::NotOpen);
        }
        let conflicts: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM draw_applications a
             WHERE a.draw_id = $1 AND a.review <> 'rejected'
               AND EXISTS (SELECT 1 FROM draw_applications b
                           WHERE b.draw_id = a.draw_id AND b.child_key = a.child_key
                             AND b.app <> a.app AND b.review <> 'rejected')",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if conflicts > 0 {
            tx.rollback().await?;
            return Ok(CloseOutcome::Conflicts(conflicts));
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM draw_applications WHERE draw_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        audit(
            &mut tx,
            id,
            actor,
            "draw.closed",
            &format!("{count} application(s)"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(CloseOutcome::Closed(count))
    }

    /// The organiser's review, in one transaction while the draw is `open` or `closed`
    /// (the leaves are fixed at the announcement): rejections first (with their reasons),
    /// then verifications, which must not leave a verified application in conflict. With
    /// `verify_all`, every application then pending and not in conflict is verified too.
    /// A group of twins/multiples is reviewed as one: naming one member names them all.
    pub async fn review_applications(
        &self,
        draw_id: &str,
        verified: &[String],
        rejected: &[(String, String)],
        verify_all: bool,
        actor: &str,
        now: i64,
    ) -> StoreResult<ReviewOutcome> {
        let mut tx = self.begin_write().await?;
        let reviewable = sqlx::query(
            "UPDATE draws SET updated_at = updated_at WHERE id = $1 AND state IN ('open', 'closed')",
        )
        .bind(draw_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if reviewable != 1 {
            return Ok(ReviewOutcome::WrongState);
        }
        let rows = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM draw_applications WHERE draw_id = $1"
        ))
        .bind(draw_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut stored: Vec<StoredApplication> = rows
            .iter()
            .map(application_from_row)
            .collect::<StoreResult<_>>()?;
        let index: std::collections::HashMap<String, usize> = stored
            .iter()
            .enumerate()
            .map(|(i, a)| (a.app.clone(), i))
            .collect();
        let mut unknown: Vec<String> = verified
            .iter()
            .chain(rejected.iter().map(|(app, _)| app))
            .filter(|app| !index.contains_key(app.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            unknown.dedup();
            return Ok(ReviewOutcome::Unknown(unknown));
        }
        // A group of twins/multiples is reviewed as one.
        let mut members: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for a in stored.iter().filter(|a| !a.group.is_empty()) {
            members
                .entry(a.group.clone())
                .or_default()
                .push(a.app.clone());
        }
        let whole = |app: &String| -> Vec<String> {
            let group = &stored[index[app.as_str()]].group;
            match members.get(group.as_str()) {
                Some(apps) if !group.is_empty() => apps.clone(),
                _ => vec![app.clone()],
            }
        };
        let rejected: Vec<(String, String)> = rejected
            .iter()
            .flat_map(|(app, reason)| whole(app).into_iter().map(move |a| (a, reason.clone())))
            .collect();
        let verified: Vec<String> = verified.iter().flat_map(whole).collect();
        for (app, _) in &rejected {
            stored[index[app.as_str()]].review = Mark::Rejected;
        }
        for app in &verified {
            stored[index[app.as_str()]].review = Mark::Verified;
        }
        let reviewed: Vec<Reviewed> = stored.iter().map(StoredApplication::reviewed).collect();
        let after = statuses(&reviewed, true);
        let mut in_conflict: Vec<String> = verified
            .iter()
            .filter(|app| after.get(app.as_str()).map(|s| s.0) == Some(Status::Conflict))
            .cloned()
            .collect();
        if !in_conflict.is_empty() {
            in_conflict.sort();
            in_conflict.dedup();
            return Ok(ReviewOutcome::InConflict(in_conflict));
        }
        let mut to_verify: Vec<String> = verified.to_vec();
        if verify_all {
            to_verify.extend(
                stored
                    .iter()
                    .filter(|a| after.get(a.app.as_str()).map(|s| s.0) == Some(Status::Pending))
                    .map(|a| a.app.clone()),
            );
        }
        to_verify.sort();
        to_verify.dedup();
        for (app, reason) in &rejected {
            sqlx::query(
                "UPDATE draw_applications SET review = 'rejected', review_reason = $1, reviewed_by = $2, reviewed_at = $3
                 WHERE draw_id = $4 AND app = $5",
            )
            .bind(reason)
            .bind(actor)
            .bind(now)
            .bind(draw_id)
            .bind(app)
            .execute(&mut *tx)
            .await?;
        }
        let rejected_apps: std::collections::BTreeSet<&str> =
            rejected.iter().map(|(app, _)| app.as_str()).collect();
        for app in &to_verify {
            sqlx::query(
                "UPDATE draw_applications SET review = 'verified', review_reason = NULL, reviewed_by = $1, reviewed_at = $2
                 WHERE draw_id = $3 AND app = $4",
            )
            .bind(actor)
            .bind(now)
            .bind(draw_id)
            .bind(app)
            .execute(&mut *tx)
            .await?;
        }
        let detail = format!(
            "verified {}; rejected {}",
            apps_detail(to_verify.iter().map(String::as_str)),
            apps_detail(rejected_apps.iter().copied()),
        );
        audit(&mut tx, draw_id, actor, "application.review", &detail, now).await?;
        tx.commit().await?;
        Ok(ReviewOutcome::Done {
            verified: to_verify.len(),
            rejected: rejected_apps.len(),
        })
    }

    // --- witnesses ----------------------------------------------------------------

    pub async fn witnesses(&self, draw_id: &str, round: i64) -> StoreResult<Vec<WitnessRow>> {
        let rows = sqlx::query(
            "SELECT position, name, role, commitment, secret, token_hash FROM draw_witnesses
             WHERE draw_id = $1 AND round = $2 ORDER BY position",
        )
        .bind(draw_id)
        .bind(round)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let secret: Option<String> = row.try_get("secret")?;
                Ok(WitnessRow {
                    index: row.try_get("position")?,
                    name: row.try_get("name")?,
                    role: row.try_get("role")?,
                    commitment: row.try_get("commitment")?,
                    revealed: secret.is_some(),
                    secret,
                    token_hash: row.try_get("token_hash")?,
                })
            })
            .collect()
    }

    /// Sets a witness's commitment before the announcement (`draft`, `open`, `closed`).
    pub async fn set_witness_commitment(
        &self,
        draw_id: &str,
        round: i64,
        index: i64,
        commitment: &str,
        actor: &str,
        now: i64,
    ) -> StoreResult<bool> {
        self.update_witness(
            "UPDATE draw_witnesses SET commitment = $1 WHERE draw_id = $2 AND round = $3 AND position = $4
               AND EXISTS (SELECT 1 FROM draws WHERE id = $2 AND round = $3 AND state IN ('draft', 'open', 'closed'))",
            (draw_id, round, index, commitment),
            (actor, "witness.commit", &format!("witness {index}: {commitment}")),
            now,
        )
        .await
    }

    /// Stores a checked reveal while the draw is `announced` (idempotent: the same secret
    /// again changes nothing).
    pub async fn set_witness_secret(
        &self,
        draw_id: &str,
        round: i64,
        index: i64,
        secret: &str,
        actor: &str,
        now: i64,
    ) -> StoreResult<bool> {
        self.update_witness(
            "UPDATE draw_witnesses SET secret = $1 WHERE draw_id = $2 AND round = $3 AND position = $4
               AND (secret IS NULL OR secret = $1)
               AND EXISTS (SELECT 1 FROM draws WHERE id = $2 AND round = $3 AND state = 'announced')",
            (draw_id, round, index, secret),
            (actor, "witness.reveal", &format!("witness {index}")),
            now,
        )
        .await
    }

    /// Runs a conditional witness update (`$1` value, `$2` draw, `$3` round, `$4` position)
    /// and, when it changed a row, its audit entry, in one transaction.
    async fn update_witness(
        &self,
        sql: &str,
        (draw_id, round, index, value): (&str, i64, i64, &str),
        (actor, action, detail): (&str, &str, &str),
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(sql)
            .bind(value)
            .bind(draw_id)
            .bind(round)
            .bind(index)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        audit(&mut tx, draw_id, actor, action, detail, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn set_witness_token(
        &self,
        draw_id: &str,
        round: i64,
        index: i64,
        token_hash: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE draw_witnesses SET token_hash = $1 WHERE draw_id = $2 AND round = $3 AND position = $4",
        )
        .bind(token_hash)
        .bind(draw_id)
        .bind(round)
        .bind(index)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }
}

/// The state check of an application write, as a write: takes the draw's row for the rest
/// of the transaction if, and only if, the draw is `open`. On PostgreSQL the row lock makes
/// a concurrent step (`UPDATE draws ... WHERE state = 'open'`, the close) wait for this
/// transaction and then see its writes, or makes this one wait for the close and then find
/// the draw closed; a plain `SELECT state` would let an application commit after the close.
/// On SQLite the transaction already holds the write lock ([`Store::begin_write`]).
/// `updated_at` is left as it is: an application does not change the draw.
async fn lock_open_draw(tx: &mut Transaction<'_, Any>, draw_id: &str) -> StoreResult<bool> {
    let done =
        sqlx::query("UPDATE draws SET updated_at = updated_at WHERE id = $1 AND state = 'open'")
            .bind(draw_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    Ok(done == 1)
}

async fn write_witnesses(
    tx: &mut Transaction<'_, Any>,
    draw_id: &str,
    round: i64,
    setup: &DrawSetup,
) -> StoreResult<()> {
    for (i, w) in setup.witnesses.iter().enumerate() {
        sqlx::query(
            "INSERT INTO draw_witnesses (draw_id, round, position, name, role) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(draw_id)
        .bind(round)
        .bind(i as i64)
        .bind(&w.name)
        .bind(&w.role)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn audit(
    tx: &mut Transaction<'_, Any>,
    draw_id: &str,
    actor: &str,
    action: &str,
    detail: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO draw_audit (draw_id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(draw_id)
    .bind(now)
    .bind(actor)
    .bind(action)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn draw_from_row(row: &AnyRow) -> StoreResult<DrawRow> {
    let state: String = row.try_get("state")?;
    let setup: String = row.try_get("setup")?;
    Ok(DrawRow {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        event_id: row.try_get("event_id")?,
        state: DrawState::parse(&state)
            .ok_or_else(|| StoreError::Setup(format!("unknown draw state {state}")))?,
        setup: serde_json::from_str(&setup)
            .map_err(|e| StoreError::Setup(format!("draw setup: {e}")))?,
        round: row.try_get("round")?,
        announcement: row.try_get("announcement")?,
        announcement_hash: row.try_get("announcement_hash")?,
        organiser_key: row.try_get("organiser_key")?,
        beacon_text: row.try_get("beacon_text")?,
        transcript: row.try_get("transcript")?,
        transcript_hash: row.try_get("transcript_hash")?,
        countersigned: row.try_get("countersigned")?,
        leaves: row.try_get("leaves")?,
        played: row.try_get("played")?,
        playout_node: row.try_get("playout_node")?,
        playout_heartbeat: row.try_get("playout_heartbeat")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn application_from_row(row: &AnyRow) -> StoreResult<StoredApplication> {
    let review: String = row.try_get("review")?;
    Ok(StoredApplication {
        app: row.try_get("app")?,
        child_key: row.try_get("child_key")?,
        sealed: row.try_get("sealed")?,
        choices: row.try_get("choices")?,
        group: row.try_get("grp")?,
        review: Mark::parse(&review)
            .ok_or_else(|| StoreError::Setup(format!("unknown review mark {review}")))?,
        review_reason: row.try_get("review_reason")?,
        created_at: row.try_get("created_at")?,
    })
}

/// An audit entry's detail for application writes: how many, and their codes (never a
/// child's data; the first 50 of a large import or review).
fn apps_detail<'a>(apps: impl Iterator<Item = &'a str>) -> String {
    const LISTED: usize = 50;
    let apps: Vec<&str> = apps.collect();
    let mut detail = format!("{} application(s)", apps.len());
    if !apps.is_empty() {
        detail.push_str(": ");
        detail.push_str(&apps[..apps.len().min(LISTED)].join(" "));
        if apps.len() > LISTED {
            detail.push_str(&format!(" … (+{})", apps.len() - LISTED));
        }
    }
    detail
}
