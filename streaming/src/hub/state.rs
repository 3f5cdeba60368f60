//! The replicated part of a room: identical on every node after applying the same log.
//!
//! `apply` is deterministic (no clock, no randomness, ordered collections only) because
//! replicas must end up byte-for-byte equal to the sequencer; it trusts the entry (the
//! sequencer validated it) and never fails.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    ChatMessageView, ChatSettings, EventInfo, Frame, MediaInfo, Millis, QuestionView,
    ServerMessage, Snapshot, ViewerCounts, You,
    cluster::{Author, Entry, Op},
    moderation::Ban,
    replay::{ReplayBuffer, ReplayWire},
};

/// A chat message kept in memory (the recent window, for snapshots and bans by message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    pub id: u64,
    pub author: Author,
    pub text: String,
    pub at: Millis,
}

impl ChatRecord {
    pub fn view(&self) -> ChatMessageView {
        ChatMessageView {
            seq: self.id,
            id: self.id,
            author: self.author.view(),
            text: self.text.clone(),
            time: self.at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// `None`: answered live, on air.
    pub text: Option<String>,
    pub by: Author,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionRecord {
    pub id: u64,
    pub author: Author,
    pub text: String,
    pub at: Millis,
    pub votes: u64,
    /// One vote per identity.
    #[serde(default)]
    pub voters: BTreeSet<super::ViewerId>,
    /// Votes per address (over all identities from it), capped by
    /// `RoomConfig::votes_per_question_per_ip`. Replicated, never shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub voter_ips: BTreeMap<IpAddr, u32>,
    #[serde(default)]
    pub answer: Option<AnswerRecord>,
}

impl QuestionRecord {
    pub fn view(&self) -> QuestionView {
        QuestionView {
            id: self.id,
            author: self.author.view(),
            text: self.text.clone(),
            votes: self.votes,
            time: self.at,
            answered: self.answer.is_some(),
            answer: self.answer.as_ref().and_then(|a| a.text.clone()),
            answered_at: self.answer.as_ref().map(|a| a.at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomState {
    pub term: u64,
    pub index: u64,
    pub event: EventInfo,
    pub chat: ChatSettings,
    /// Older nodes' synced states lack it: nobody publishing until told.
    #[serde(default)]
    pub media: MediaInfo,
    pub likes: u64,
    /// The most recent chat messages, oldest first, deleted ones removed.
    pub messages: VecDeque<ChatRecord>,
    /// The smallest message id that `messages` would still hold if it were not deleted:
    /// ids below it are older than the window (delete/ban may still name them).
    pub messages_floor: u64,
    pub questions: BTreeMap<u64, QuestionRecord>,
    pub bans: Vec<Ban>,
    pub viewers: ViewerCounts,
    #[serde(with = "replay_serde")]
    pub replay: ReplayBuffer,
    /// How many chat messages to keep in `messages`.
    pub recent_capacity: usize,
}

impl RoomState {
    pub fn seq(&self) -> u64 {
        self.replay.last_seq()
    }

    /// Applies one entry, returning the broadcast frame if the op has one (already pushed
    /// into the replay buffer under the entry's seq).
    pub fn apply(&mut self, entry: &Entry) -> Option<Frame> {
        self.index = entry.index;
        self.term = self.term.max(entry.term);
        let message = match &entry.op {
            Op::TermStarted { seq } => {
                self.replay.restart(*seq);
                None
            }
            Op::ChatPosted { id, author, text } => {
                let record = ChatRecord {
                    id: *id,
                    author: author.clone(),
                    text: text.clone(),
                    at: entry.at,
                };
                let view = record.view();
                self.messages.push_back(record);
                while self.messages.len() > self.recent_capacity {
                    if let Some(old) = self.messages.pop_front() {
                        self.messages_floor = old.id + 1;
                    }
                }
                Some(ServerMessage::ChatMessage(ChatMessageView {
                    seq: entry.seq.unwrap_or(*id),
                    ..view
                }))
            }
            Op::ChatDeleted { id, .. } => {
                self.messages.retain(|m| m.id != *id);
                entry
                    .seq
                    .map(|seq| ServerMessage::ChatDeleted { seq, id: *id })
            }
            Op::Likes { added, total } => {
                self.likes = *total;
                entry.seq.map(|seq| ServerMessage::Likes {
                    seq,
                    total: *total,
                    added: *added,
                })
            }
            Op::QuestionAsked { id, author, text } => {
                let record = QuestionRecord {
                    id: *id,
                    author: author.clone(),
                    text: text.clone(),
                    at: entry.at,
                    votes: 0,
                    voters: BTreeSet::new(),
                    voter_ips: BTreeMap::new(),
                    answer: None,
                };
                let question = record.view();
                self.questions.insert(*id, record);
                entry
                    .seq
                    .map(|seq| ServerMessage::QuestionAsked { seq, question })
            }
            Op::QuestionUpvoted {
                id,
                voter,
                votes,
                ip,
            } => {
                if let Some(q) = self.questions.get_mut(id) {
                    q.voters.insert(voter.clone());
                    if let Some(ip) = ip {
                        *q.voter_ips.entry(*ip).or_default() += 1;
                    }
                    q.votes = *votes;
                }
                entry.seq.map(|seq| ServerMessage::QuestionUpvoted {
                    seq,
                    id: *id,
                    votes: *votes,
                })
            }
            Op::QuestionAnswered { id, answer, by } => {
                if let Some(q) = self.questions.get_mut(id) {
                    q.answer = Some(AnswerRecord {
                        text: answer.clone(),
                        by: by.clone(),
                        at: entry.at,
                    });
                }
                entry.seq.map(|seq| ServerMessage::QuestionAnswered {
                    seq,
                    id: *id,
                    answer: answer.clone(),
                    answered_at: entry.at,
                })
            }
            Op::ChatSettingsChanged {
                open,
                slow_mode_secs,
                ..
            } => {
                self.chat = ChatSettings {
                    open: *open,
                    slow_mode_secs: *slow_mode_secs,
                };
                entry.seq.map(|seq| ServerMessage::ChatSettings {
                    seq,
                    open: *open,
                    slow_mode_secs: *slow_mode_secs,
                })
            }
            Op::ViewerBanned { ban, .. } => {
                // Expired bans go when a new one comes: the list stays small without a timer.
                self.bans.retain(|b| b.until > entry.at);
                self.bans.push(ban.clone());
                None
            }
            Op::ViewerUnbanned { viewer_id, .. } => {
                self.bans.retain(|b| b.viewer_id != *viewer_id);
                None
            }
            Op::StatusChanged { status } => {
                self.event.status = *status;
                entry.seq.map(|seq| ServerMessage::EventStatus {
                    seq,
                    status: *status,
                })
            }
            Op::EventEdited { event } => {
                self.event = event.clone();
                entry.seq.map(|seq| ServerMessage::EventUpdated {
                    seq,
                    event: event.clone(),
                })
            }
            Op::MediaChanged { publishing } => {
                self.media.publishing = *publishing;
                entry.seq.map(|seq| ServerMessage::MediaState {
                    seq,
                    publishing: *publishing,
                })
            }
            Op::Draw { update, .. } => entry.seq.map(|seq| update.message(seq)),
        }?;
        let seq = entry.seq?;
        let frame = Frame::new(&message);
        self.replay.push(seq, frame.clone());
        Some(frame)
    }

    /// The message with `id`, if still in the recent window.
    pub fn message(&self, id: u64) -> Option<&ChatRecord> {
        // Ids increase along the deque, so binary search works despite deletions.
        self.messages
            .binary_search_by_key(&id, |m| m.id)
            .ok()
            .and_then(|i| self.messages.get(i))
    }

    pub fn snapshot(&self, you: You, messages: usize, answered: usize) -> Snapshot {
        let skip = self.messages.len().saturating_sub(messages);
        let mut open: Vec<&QuestionRecord> = self
            .questions
            .values()
            .filter(|q| q.answer.is_none())
            .collect();
        open.sort_by(|a, b| b.votes.cmp(&a.votes).then(a.id.cmp(&b.id)));
        let mut done: Vec<&QuestionRecord> = self
            .questions
            .values()
            .filter(|q| q.answer.is_some())
            .collect();
        done.sort_by_key(|q| (q.answer.as_ref().map(|a| a.at), q.id));
        let done_skip = done.len().saturating_sub(answered);
        Snapshot {
            seq: self.seq(),
            event: self.event.clone(),
            viewers: self.viewers,
            likes: self.likes,
            chat: self.chat.clone(),
            media: self.media,
            messages: self
                .messages
                .iter()
                .skip(skip)
                .map(ChatRecord::view)
                .collect(),
            questions: open.into_iter().map(QuestionRecord::view).collect(),
            answered: done
                .into_iter()
                .skip(done_skip)
                .map(QuestionRecord::view)
                .collect(),
            you,
        }
    }
}

/// The replay buffer crosses the bus as plain strings (frames are JSON text already).
mod replay_serde {
    use super::*;

    pub fn serialize<S: serde::Serializer>(buffer: &ReplayBuffer, s: S) -> Result<S::Ok, S::Error> {
        buffer.to_wire().serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ReplayBuffer, D::Error> {
        let wire = ReplayWire::deserialize(d)?;
        let capacity = wire.capacity;
        Ok(ReplayBuffer::from_wire(wire, capacity))
    }
}
