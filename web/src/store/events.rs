//! Events, their guests and assigned staff.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError, StoreResult};
use crate::domain::event::{
    Event, EventDraft, EventForm, EventId, EventKind, EventStatus, Guest, Visibility, format_time,
};

const EVENT_COLUMNS: &str = "id, kind, title, topic, summary, scheduled_start, scheduled_end, form, visibility, status, follow_publisher, started_at, ended_at, reopened_at";

impl Store {
    pub async fn create_event(
        &self,
        id: &EventId,
        draft: &EventDraft,
        created_by: &str,
        now: i64,
    ) -> StoreResult<Event> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO events (id, kind, title, topic, summary, scheduled_start, scheduled_end, form, visibility, status, follow_publisher, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'scheduled', $10, $11, $12, $12)",
        )
        .bind(id.as_str())
        .bind(draft.kind.as_str())
        .bind(&draft.title)
        .bind(&draft.topic)
        .bind(&draft.summary)
        .bind(draft.scheduled_start_ms)
        .bind(draft.scheduled_end_ms)
        .bind(draft.form.as_str())
        .bind(draft.visibility.as_str())
        .bind(i64::from(draft.follow_publisher))
        .bind(created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        write_children(&mut tx, id, draft).await?;
        tx.commit().await?;
        self.event(id)
            .await?
            .ok_or(StoreError::Setup("event vanished after insert".into()))
    }

    /// Replaces the editable fields (the status is changed only by `set_event_status`).
    pub async fn update_event(
        &self,
        id: &EventId,
        draft: &EventDraft,
        now: i64,
    ) -> StoreResult<Event> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE events SET kind = $1, title = $2, topic = $3, summary = $4, scheduled_start = $5, scheduled_end = $6,
             form = $7, visibility = $8, follow_publisher = $9, updated_at = $10 WHERE id = $11",
        )
        .bind(draft.kind.as_str())
        .bind(&draft.title)
        .bind(&draft.topic)
        .bind(&draft.summary)
        .bind(draft.scheduled_start_ms)
        .bind(draft.scheduled_end_ms)
        .bind(draft.form.as_str())
        .bind(draft.visibility.as_str())
        .bind(i64::from(draft.follow_publisher))
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM event_guests WHERE event_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM event_staff WHERE event_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        write_children(&mut tx, id, draft).await?;
        tx.commit().await?;
        self.event(id)
            .await?
            .ok_or(StoreError::Setup("event vanished after update".into()))
    }

    /// Moves the event to `to` if it is currently in one of `from`; returns the event
    /// after the change, or `None` when the transition was not allowed.
    pub async fn set_event_status(
        &self,
        id: &EventId,
        from: &[EventStatus],
        to: EventStatus,
        now: i64,
    ) -> StoreResult<Option<Event>> {
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        // At most four statuses: expand them into placeholders $3.. so one query works on
        // both backends.
        let placeholders: Vec<String> = (0..allowed.len()).map(|i| format!("${}", i + 4)).collect();
        let stamp = match to {
            EventStatus::Live => ", started_at = COALESCE(started_at, $2)",
            EventStatus::Ended => ", ended_at = $2",
            _ => "",
        };
        let sql = format!(
            "UPDATE events SET status = $1, updated_at = $2{stamp} WHERE id = $3 AND status IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(now)
            .bind(id.as_str());
        for s in &allowed {
            q = q.bind(*s);
        }
        let done = q.execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.event(id).await
    }

    /// Undoes an end: `live` again, if the event ended at or after `ended_since` (the
    /// reopen window, checked in the same statement). `None`: not ended, or too late.
    pub async fn reopen_event(
        &self,
        id: &EventId,
        ended_since: i64,
        now: i64,
    ) -> StoreResult<Option<Event>> {
        let done = sqlx::query(
            "UPDATE events SET status = 'live', ended_at = NULL, reopened_at = $1, updated_at = $1
             WHERE id = $2 AND status = 'ended' AND ended_at >= $3",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(ended_since)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.event(id).await
    }

    pub async fn event(&self, id: &EventId) -> StoreResult<Option<Event>> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(self.event_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    /// Events in a status, soonest first for scheduled ones and newest first otherwise.
    pub async fn list_events(
        &self,
        status: Option<EventStatus>,
        include_unlisted: bool,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let order = match status {
            Some(EventStatus::Scheduled) => "scheduled_start ASC",
            _ => "scheduled_start DESC",
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE (($1 = '' AND status <> 'cancelled') OR status = $1) AND ($2 = 1 OR visibility = 'public') ORDER BY {order} LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(status.map(|s| s.as_str()).unwrap_or(""))
            .bind(i64::from(include_unlisted))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push(self.event_from_row(row).await?);
        }
        Ok(events)
    }

    /// Stores the hash of a new publish token, replacing the old one.
    pub async fn set_publish_token(
        &self,
        id: &EventId,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE events SET publish_token_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(token_hash)
                .bind(now)
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn publish_token_hash(&self, id: &EventId) -> StoreResult<Option<String>> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT publish_token_hash FROM events WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(hash.flatten())
    }

    async fn event_from_row(&self, row: &AnyRow) -> StoreResult<Event> {
        let id: String = row.try_get("id")?;
        let guests = sqlx::query("SELECT name, title, organisation FROM event_guests WHERE event_id = $1 ORDER BY position")
            .bind(&id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|g| {
                Ok(Guest {
                    name: g.try_get("name")?,
                    title: g.try_get("title")?,
                    organisation: g.try_get("organisation")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let staff = sqlx::query(
            "SELECT u.username, s.role FROM event_staff s JOIN users u ON u.id = s.user_id WHERE s.event_id = $1 ORDER BY u.username",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        let mut broadcasters = Vec::new();
        let mut moderators = Vec::new();
        for s in &staff {
            let username: String = s.try_get("username")?;
            let role: String = s.try_get("role")?;
            match role.as_str() {
                "broadcaster" => broadcasters.push(username),
                _ => moderators.push(username),
            }
        }
        let text = |col: &str| -> StoreResult<String> { Ok(row.try_get::<String, _>(col)?) };
        let bad = |col: &str, v: &str| {
            StoreError::Setup(format!("events.{col} holds unknown value {v:?}"))
        };
        let kind = text("kind")?;
        let form = text("form")?;
        let visibility = text("visibility")?;
        let status = text("status")?;
        let start: i64 = row.try_get("scheduled_start")?;
        let end: i64 = row.try_get("scheduled_end")?;
        let started: Option<i64> = row.try_get("started_at")?;
        let ended: Option<i64> = row.try_get("ended_at")?;
        let reopened: Option<i64> = row.try_get("reopened_at")?;
        let follow: i64 = row.try_get("follow_publisher")?;
        Ok(Event {
            id: EventId::parse(&id).ok_or_else(|| bad("id", &id))?,
            kind: EventKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
            title: text("title")?,
            topic: text("topic")?,
            summary: text("summary")?,
            scheduled_start: format_time(start),
            scheduled_end: format_time(end),
            form: EventForm::parse(&form).ok_or_else(|| bad("form", &form))?,
            visibility: Visibility::parse(&visibility)
                .ok_or_else(|| bad("visibility", &visibility))?,
            status: EventStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
            follow_publisher: follow != 0,
            started_at: started.map(format_time),
            ended_at: ended.map(format_time),
            reopened_at: reopened.map(format_time),
            guests,
            broadcasters,
            moderators,
            scheduled_start_ms: start,
            scheduled_end_ms: end,
            started_ms: started,
            ended_ms: ended,
            reopened_ms: reopened,
        })
    }
}

async fn write_children(
    tx: &mut Transaction<'static, Any>,
    id: &EventId,
    draft: &EventDraft,
) -> StoreResult<()> {
    for (position, guest) in draft.guests.iter().enumerate() {
        sqlx::query("INSERT INTO event_guests (event_id, position, name, title, organisation) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.as_str())
            .bind(position as i64)
            .bind(&guest.name)
            .bind(&guest.title)
            .bind(&guest.organisation)
            .execute(&mut **tx)
            .await?;
    }
    for (role, names, field) in [
        ("broadcaster", &draft.broadcasters, "broadcasters"),
        ("moderator", &draft.moderators, "moderators"),
    ] {
        for name in names {
            let user_id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?;
            let user_id = user_id.ok_or_else(|| StoreError::UnknownReference {
                field,
                value: name.clone(),
            })?;
            sqlx::query("INSERT INTO event_staff (event_id, user_id, role) VALUES ($1, $2, $3)")
                .bind(id.as_str())
                .bind(user_id)
                .bind(role)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
