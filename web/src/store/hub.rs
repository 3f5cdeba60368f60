//! The hub's persistence: what a room writes as it runs (chat, questions, votes,
//! answers, moderation, likes, viewer samples), what it loads when it starts (its
//! [`RoomSeed`]), and the event's record as pages and `/record` read it.
//!
//! Chat message and question ids are the seq of the broadcast that announced them; the
//! `id` columns hold them as text (the schema predates the hub), `seq` as numbers.

use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use streaming::hub::{
    AnswerRecord, Author, Ban, ChatRecord, Entry, Millis, Op, QuestionRecord, RoomSeed, StaffRole,
    ViewerId, ViewerSample as HubSample,
};

use super::{Store, StoreResult};
use crate::domain::event::EventId;

/// An event's text record (图文实录): what happened, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Chat that was not deleted, in seq order.
    pub chat: Vec<RecordChat>,
    /// Answered questions, in the order they were answered.
    pub answered: Vec<RecordQuestion>,
    /// Unanswered questions, most votes first (ties: oldest first).
    pub open_questions: Vec<RecordQuestion>,
    pub likes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordChat {
    pub seq: i64,
    pub nickname: String,
    /// `moderator`, `admin` or `broadcaster` for staff messages.
    pub staff_role: Option<String>,
    pub text: String,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordQuestion {
    pub id: i64,
    pub nickname: String,
    pub text: String,
    pub votes: i64,
    pub asked_ms: i64,
    /// The text answer; `None` when answered live (or not answered).
    pub answer: Option<String>,
    pub answered_ms: Option<i64>,
    pub answered_live: bool,
}

/// One point of the viewer-count chart (one per minute while a room runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ViewerSample {
    pub minute_ms: i64,
    pub current: i64,
    pub peak: i64,
    pub cumulative: i64,
}

/// What `answer_question_offline` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineAnswer {
    Answered,
    NoSuchQuestion,
}

/// Answered questions a new room keeps for its snapshot (`answered`).
const SEED_ANSWERED: i64 = 50;

impl Store {
    /// The record of an event (empty lists for an event nobody interacted with).
    pub async fn event_record(&self, event_id: &EventId) -> StoreResult<EventRecord> {
        let id = event_id.as_str();
        let chat = sqlx::query(
            "SELECT seq, nickname, staff_role, body, created_at FROM chat_messages
             WHERE event_id = $1 AND deleted_at IS NULL ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(RecordChat {
                seq: row.try_get("seq")?,
                nickname: row.try_get("nickname")?,
                staff_role: row.try_get("staff_role")?,
                text: row.try_get("body")?,
                time_ms: row.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let answered = self
            .record_questions(
                id,
                "answered_at IS NOT NULL ORDER BY answered_at, seq",
                i64::MAX,
            )
            .await?;
        let open_questions = self
            .record_questions(id, "answered_at IS NULL ORDER BY votes DESC, seq", i64::MAX)
            .await?;
        Ok(EventRecord {
            chat,
            answered,
            open_questions,
            likes: self.event_likes(id).await?,
        })
    }

    /// The viewer-count chart, oldest minute first.
    pub async fn viewer_samples(&self, event_id: &EventId) -> StoreResult<Vec<ViewerSample>> {
        let rows = sqlx::query(
            "SELECT minute, current, peak, cumulative FROM viewer_samples
             WHERE event_id = $1 ORDER BY minute",
        )
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(ViewerSample {
                    minute_ms: row.try_get("minute")?,
                    current: row.try_get("current")?,
                    peak: row.try_get("peak")?,
                    cumulative: row.try_get("cumulative")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// What a new room starts from: the last seq, likes, chat settings, recent chat,
    /// open (and recently answered) questions with their voters, bans still in force,
    /// and the viewer high marks.
    pub async fn room_seed(
        &self,
        event_id: &EventId,
        recent_messages: usize,
        now_ms: i64,
    ) -> StoreResult<RoomSeed> {
        let id = event_id.as_str();
        let mut seed = RoomSeed::default();
        if let Some(row) = sqlx::query(
            "SELECT last_seq, chat_open, slow_mode_secs, peak_viewers, cumulative_viewers
             FROM event_rooms WHERE event_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        {
            seed.last_seq = unsigned(row.try_get("last_seq")?);
            seed.chat_open = Some(row.try_get::<i64, _>("chat_open")? != 0);
            seed.slow_mode_secs =
                u32::try_from(row.try_get::<i64, _>("slow_mode_secs")?).unwrap_or(u32::MAX);
            seed.peak_viewers = unsigned(row.try_get("peak_viewers")?);
            seed.cumulative_viewers = unsigned(row.try_get("cumulative_viewers")?);
        }
        // Rows written before a crash may be newer than the stored `last_seq`.
        let highest: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM (SELECT seq FROM chat_messages WHERE event_id = $1
             UNION ALL SELECT seq FROM questions WHERE event_id = $1) AS s",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        seed.last_seq = seed.last_seq.max(highest.map_or(0, unsigned));
        seed.likes = unsigned(self.event_likes(id).await?);

        let limit = i64::try_from(recent_messages).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, viewer_id, nickname, staff_role, body, created_at FROM chat_messages
             WHERE event_id = $1 AND deleted_at IS NULL ORDER BY seq DESC LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        seed.messages = rows
            .iter()
            .rev()
            .map(|row| {
                Ok(ChatRecord {
                    id: unsigned(row.try_get("seq")?),
                    author: author(
                        row.try_get("viewer_id")?,
                        row.try_get("nickname")?,
                        row.try_get("staff_role")?,
                    ),
                    text: row.try_get("body")?,
                    at: millis(row.try_get("created_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        let mut questions = self.seed_questions(id, "answered_at IS NULL", None).await?;
        let answered = self
            .seed_questions(
                id,
                "answered_at IS NOT NULL ORDER BY answered_at DESC",
                Some(SEED_ANSWERED),
            )
            .await?;
        let votes = sqlx::query(
            "SELECT v.question_id, v.viewer_id FROM question_votes v
             JOIN questions q ON q.event_id = v.event_id AND q.id = v.question_id
             WHERE v.event_id = $1 AND q.answered_at IS NULL",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        for row in &votes {
            let question: String = row.try_get("question_id")?;
            let voter: String = row.try_get("viewer_id")?;
            if let Some(q) = questions.iter_mut().find(|q| q.id.to_string() == question) {
                q.voters.insert(ViewerId(voter));
            }
        }
        questions.extend(answered);
        seed.questions = questions;

        let bans =
            sqlx::query("SELECT viewer_id, ip, until FROM bans WHERE event_id = $1 AND until > $2")
                .bind(id)
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await?;
        seed.bans = bans
            .iter()
            .map(|row| {
                let ip: Option<String> = row.try_get("ip")?;
                Ok(Ban {
                    viewer_id: ViewerId(row.try_get("viewer_id")?),
                    ip: ip.and_then(|ip| ip.parse().ok()),
                    until: millis(row.try_get("until")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(seed)
    }

    /// Writes a room's log entries in order, in one transaction. Idempotent per entry
    /// (inserts ignore rows that exist), so a retried batch does no harm.
    pub async fn apply_hub_entries(
        &self,
        event_id: &EventId,
        entries: &[Entry],
    ) -> StoreResult<()> {
        let id = event_id.as_str();
        let mut tx = self.begin_write().await?;
        let mut last_seq = None;
        for entry in entries {
            apply_entry(&mut tx, id, entry).await?;
            let seq = match &entry.op {
                Op::TermStarted { seq } => Some(*seq),
                _ => entry.seq,
            };
            last_seq = last_seq.max(seq);
        }
        if let Some(seq) = last_seq {
            ensure_room_row(&mut tx, id).await?;
            sqlx::query(
                "UPDATE event_rooms SET last_seq = $2 WHERE event_id = $1 AND last_seq < $2",
            )
            .bind(id)
            .bind(signed(seq))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One chart point per minute (a later sample in the same minute replaces it) and the
    /// high marks a restarted room continues from.
    pub async fn record_viewer_sample(
        &self,
        event_id: &EventId,
        sample: &HubSample,
    ) -> StoreResult<()> {
        let id = event_id.as_str();
        let minute = signed(sample.at.0 - sample.at.0 % 60_000);
        let counts = sample.counts;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO viewer_samples (event_id, minute, current, peak, cumulative)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (event_id, minute) DO UPDATE SET current = excluded.current,
               peak = excluded.peak, cumulative = excluded.cumulative",
        )
        .bind(id)
        .bind(minute)
        .bind(signed(counts.current))
        .bind(signed(counts.peak))
        .bind(signed(counts.cumulative))
        .execute(&mut *tx)
        .await?;
        ensure_room_row(&mut tx, id).await?;
        sqlx::query(
            "UPDATE event_rooms SET peak_viewers = $2, cumulative_viewers = $3 WHERE event_id = $1",
        )
        .bind(id)
        .bind(signed(counts.peak))
        .bind(signed(counts.cumulative))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Answers a question in text when no room runs (after the event): stored directly,
    /// shown in the record, logged as a moderation action.
    pub async fn answer_question_offline(
        &self,
        event_id: &EventId,
        question_id: u64,
        answer: &str,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<OfflineAnswer> {
        let id = event_id.as_str();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE questions SET answer = $3, answered_by = $4, answered_at = $5, answered_live = 0
             WHERE event_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(question_id.to_string())
        .bind(answer)
        .bind(actor)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(OfflineAnswer::NoSuchQuestion);
        }
        log_action(
            &mut tx,
            id,
            now_ms,
            actor,
            "question.answer",
            &json!({"question_id": question_id, "live": false, "offline": true}),
        )
        .await?;
        tx.commit().await?;
        Ok(OfflineAnswer::Answered)
    }

    /// Moderation actions of an event, oldest first: (at, actor, action, detail JSON).
    pub async fn moderation_actions(
        &self,
        event_id: &EventId,
    ) -> StoreResult<Vec<(i64, String, String, String)>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, detail FROM moderation_actions WHERE event_id = $1 ORDER BY id",
        )
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("at")?,
                    r.try_get("actor")?,
                    r.try_get("action")?,
                    r.try_get("detail")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn event_likes(&self, id: &str) -> StoreResult<i64> {
        let total: Option<i64> =
            sqlx::query_scalar("SELECT total FROM event_likes WHERE event_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(total.unwrap_or(0))
    }

    async fn record_questions(
        &self,
        id: &str,
        filter_and_order: &str,
        limit: i64,
    ) -> StoreResult<Vec<RecordQuestion>> {
        let sql = format!(
            "SELECT seq, nickname, body, votes, created_at, answer, answered_at, answered_live
             FROM questions WHERE event_id = $1 AND deleted_at IS NULL AND {filter_and_order} LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(RecordQuestion {
                    id: row.try_get("seq")?,
                    nickname: row.try_get("nickname")?,
                    text: row.try_get("body")?,
                    votes: row.try_get("votes")?,
                    asked_ms: row.try_get("created_at")?,
                    answer: row.try_get("answer")?,
                    answered_ms: row.try_get("answered_at")?,
                    answered_live: row.try_get::<i64, _>("answered_live")? != 0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn seed_questions(
        &self,
        id: &str,
        filter_and_order: &str,
        limit: Option<i64>,
    ) -> StoreResult<Vec<QuestionRecord>> {
        let sql = format!(
            "SELECT seq, viewer_id, nickname, body, votes, created_at, answer, answered_by, answered_at
             FROM questions WHERE event_id = $1 AND deleted_at IS NULL AND {filter_and_order} LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| seed_question(row).map_err(Into::into))
            .collect()
    }
}

fn seed_question(row: &AnyRow) -> Result<QuestionRecord, sqlx::Error> {
    let answered_at: Option<i64> = row.try_get("answered_at")?;
    let answered_by: Option<String> = row.try_get("answered_by")?;
    let answer = answered_at.map(|at| AnswerRecord {
        text: row.try_get("answer").ok().flatten(),
        by: author(
            format!("staff:{}", answered_by.clone().unwrap_or_default()),
            answered_by.clone().unwrap_or_default(),
            None,
        ),
        at: millis(at),
    });
    Ok(QuestionRecord {
        id: unsigned(row.try_get("seq")?),
        author: author(row.try_get("viewer_id")?, row.try_get("nickname")?, None),
        text: row.try_get("body")?,
        at: millis(row.try_get("created_at")?),
        votes: unsigned(row.try_get("votes")?),
        voters: Default::default(),
        voter_ips: Default::default(),
        answer,
    })
}

async fn apply_entry(tx: &mut Transaction<'_, Any>, id: &str, entry: &Entry) -> StoreResult<()> {
    let at = signed(entry.at.0);
    match &entry.op {
        // What a draw step shows is stored with the draw (its transcript), not in the
        // event record; the play-out's progress is stored here, in the transaction that
        // stores the step's seq and before anyone is shown the step, so a play-out
        // resumed after a crash continues after it and never shows it twice.
        Op::Draw {
            update,
            step: Some(step),
        } => {
            sqlx::query(
                "UPDATE draws SET played = CASE WHEN played < $1 THEN $1 ELSE played END
                 WHERE id = $2 AND event_id = $3",
            )
            .bind(signed(step.saturating_add(1)))
            .bind(update.draw_id())
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        Op::TermStarted { .. }
        | Op::StatusChanged { .. }
        | Op::EventEdited { .. }
        | Op::MediaChanged { .. }
        | Op::Draw { step: None, .. } => {}
        Op::ChatPosted {
            id: message,
            author,
            text,
        } => {
            sqlx::query(
                "INSERT INTO chat_messages (event_id, id, seq, viewer_id, nickname, body, staff, staff_role, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id, id) DO NOTHING",
            )
            .bind(id)
            .bind(message.to_string())
            .bind(signed(*message))
            .bind(&author.viewer_id.0)
            .bind(&author.nickname)
            .bind(text)
            .bind(i64::from(author.role.is_some()))
            .bind(author.role.map(role_name))
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Op::ChatDeleted { id: message, by } => {
            sqlx::query(
                "UPDATE chat_messages SET deleted_at = $3, deleted_by = $4 WHERE event_id = $1 AND id = $2",
            )
            .bind(id)
            .bind(message.to_string())
            .bind(at)
            .bind(actor(by))
            .execute(&mut **tx)
            .await?;
            log_action(
                tx,
                id,
                at,
                &actor(by),
                "chat.delete",
                &json!({"message_id": message}),
            )
            .await?;
        }
        Op::Likes { total, .. } => {
            sqlx::query(
                "INSERT INTO event_likes (event_id, total) VALUES ($1, $2)
                 ON CONFLICT (event_id) DO UPDATE SET total = excluded.total",
            )
            .bind(id)
            .bind(signed(*total))
            .execute(&mut **tx)
            .await?;
        }
        Op::QuestionAsked {
            id: question,
            author,
            text,
        } => {
            sqlx::query(
                "INSERT INTO questions (event_id, id, seq, viewer_id, nickname, body, votes, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7) ON CONFLICT (event_id, id) DO NOTHING",
            )
            .bind(id)
            .bind(question.to_string())
            .bind(signed(*question))
            .bind(&author.viewer_id.0)
            .bind(&author.nickname)
            .bind(text)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Op::QuestionUpvoted {
            id: question,
            voter,
            votes,
            ..
        } => {
            sqlx::query(
                "INSERT INTO question_votes (event_id, question_id, viewer_id) VALUES ($1, $2, $3)
                 ON CONFLICT (event_id, question_id, viewer_id) DO NOTHING",
            )
            .bind(id)
            .bind(question.to_string())
            .bind(&voter.0)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE questions SET votes = $3 WHERE event_id = $1 AND id = $2")
                .bind(id)
                .bind(question.to_string())
                .bind(signed(*votes))
                .execute(&mut **tx)
                .await?;
        }
        Op::QuestionAnswered {
            id: question,
            answer,
            by,
        } => {
            sqlx::query(
                "UPDATE questions SET answer = $3, answered_by = $4, answered_at = $5, answered_live = $6
                 WHERE event_id = $1 AND id = $2",
            )
            .bind(id)
            .bind(question.to_string())
            .bind(answer.clone())
            .bind(actor(by))
            .bind(at)
            .bind(i64::from(answer.is_none()))
            .execute(&mut **tx)
            .await?;
            log_action(
                tx,
                id,
                at,
                &actor(by),
                "question.answer",
                &json!({"question_id": question, "live": answer.is_none()}),
            )
            .await?;
        }
        Op::ChatSettingsChanged {
            open,
            slow_mode_secs,
            by,
        } => {
            ensure_room_row(tx, id).await?;
            sqlx::query(
                "UPDATE event_rooms SET chat_open = $2, slow_mode_secs = $3 WHERE event_id = $1",
            )
            .bind(id)
            .bind(i64::from(*open))
            .bind(i64::from(*slow_mode_secs))
            .execute(&mut **tx)
            .await?;
            log_action(
                tx,
                id,
                at,
                &actor(by),
                "chat.settings",
                &json!({"open": open, "slow_mode_secs": slow_mode_secs}),
            )
            .await?;
        }
        Op::ViewerBanned {
            ban, reason, by, ..
        } => {
            sqlx::query(
                "INSERT INTO bans (event_id, viewer_id, ip, until, created_by) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (event_id, viewer_id) DO UPDATE SET ip = excluded.ip,
                   until = excluded.until, created_by = excluded.created_by",
            )
            .bind(id)
            .bind(&ban.viewer_id.0)
            .bind(ban.ip.map(|ip| ip.to_string()))
            .bind(signed(ban.until.0))
            .bind(actor(by))
            .execute(&mut **tx)
            .await?;
            // The log says whether the IP was banned, not which IP.
            log_action(
                tx,
                id,
                at,
                &actor(by),
                "viewer.ban",
                &json!({"viewer_id": ban.viewer_id, "until": ban.until, "by_ip": ban.ip.is_some(), "reason": reason}),
            )
            .await?;
        }
        Op::ViewerUnbanned { viewer_id, by } => {
            sqlx::query("DELETE FROM bans WHERE event_id = $1 AND viewer_id = $2")
                .bind(id)
                .bind(&viewer_id.0)
                .execute(&mut **tx)
                .await?;
            log_action(
                tx,
                id,
                at,
                &actor(by),
                "viewer.unban",
                &json!({"viewer_id": viewer_id}),
            )
            .await?;
        }
    }
    Ok(())
}

async fn ensure_room_row(tx: &mut Transaction<'_, Any>, id: &str) -> StoreResult<()> {
    sqlx::query("INSERT INTO event_rooms (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn log_action(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    at: i64,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO moderation_actions (event_id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Staff act as `staff:<username>` (see `hub_shell::identity`); the log names the user.
fn actor(by: &Author) -> String {
    by.viewer_id
        .0
        .strip_prefix("staff:")
        .unwrap_or(&by.viewer_id.0)
        .to_owned()
}

fn author(viewer_id: String, nickname: String, role: Option<String>) -> Author {
    Author {
        viewer_id: ViewerId(viewer_id),
        nickname,
        role: role.as_deref().and_then(parse_role),
        ip: None,
    }
}

pub fn role_name(role: StaffRole) -> &'static str {
    match role {
        StaffRole::Moderator => "moderator",
        StaffRole::Admin => "admin",
        StaffRole::Broadcaster => "broadcaster",
    }
}

fn parse_role(name: &str) -> Option<StaffRole> {
    match name {
        "moderator" => Some(StaffRole::Moderator),
        "admin" => Some(StaffRole::Admin),
        "broadcaster" => Some(StaffRole::Broadcaster),
        _ => None,
    }
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn millis(v: i64) -> Millis {
    Millis(unsigned(v))
}
