//! Properties over random interaction scripts.

use proptest::prelude::*;
use streaming::hub::{RoomConfig, ServerMessage, StaffRole};

use crate::sim::{Sim, config};

#[derive(Debug, Clone)]
enum Action {
    Chat(usize, String),
    Like(usize, u32),
    Ask(usize),
    Upvote(usize, usize),
    Delete(usize),
    SlowMode(u32),
    Advance(u64),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..4usize, "[a-z汉字 ]{0,12}").prop_map(|(v, t)| Action::Chat(v, t)),
        2 => (0..4usize, 1..60u32).prop_map(|(v, n)| Action::Like(v, n)),
        1 => (0..4usize).prop_map(Action::Ask),
        2 => (0..4usize, 0..8usize).prop_map(|(v, q)| Action::Upvote(v, q)),
        1 => (0..16usize).prop_map(Action::Delete),
        1 => prop_oneof![Just(0u32), Just(2u32)].prop_map(Action::SlowMode),
        3 => (0..400u64).prop_map(Action::Advance),
    ]
}

/// Runs a script on one node with a watcher that never leaves; returns the sim and the
/// watcher's connection.
fn run(script: &[Action], replay_capacity: usize) -> (Sim, streaming::hub::ConnId) {
    let config = RoomConfig {
        replay_capacity,
        ..config()
    };
    let mut sim = Sim::new(1, config);
    let watcher = sim.join(0, "watcher", None);
    let moderator = sim.join(0, "mod", Some(StaffRole::Moderator));
    let viewers: Vec<_> = (0..4)
        .map(|i| sim.join(0, &format!("v{i}"), None))
        .collect();
    for a in script {
        match a {
            Action::Chat(v, text) => sim.chat(0, viewers[*v], text),
            Action::Like(v, n) => {
                sim.say(0, viewers[*v], &format!(r#"{{"type":"like","count":{n}}}"#))
            }
            Action::Ask(v) => sim.say(0, viewers[*v], r#"{"type":"question.ask","text":"q?"}"#),
            Action::Upvote(v, q) => {
                let ids: Vec<u64> = sim
                    .room(0)
                    .snapshot()
                    .questions
                    .iter()
                    .map(|q| q.id)
                    .collect();
                if let Some(id) = ids.get(*q % ids.len().max(1)) {
                    sim.say(
                        0,
                        viewers[*v],
                        &format!(r#"{{"type":"question.upvote","question_id":{id}}}"#),
                    );
                }
            }
            Action::Delete(k) => {
                let ids: Vec<u64> = sim
                    .room(0)
                    .snapshot()
                    .messages
                    .iter()
                    .map(|m| m.id)
                    .collect();
                if let Some(id) = ids.get(*k % ids.len().max(1)) {
                    sim.say(
                        0,
                        moderator,
                        &format!(r#"{{"type":"chat.delete","message_id":{id}}}"#),
                    );
                }
            }
            Action::SlowMode(s) => sim.say(
                0,
                moderator,
                &format!(r#"{{"type":"chat.slow_mode","seconds":{s}}}"#),
            ),
            Action::Advance(ms) => sim.advance(*ms),
        }
    }
    sim.advance(1000);
    (sim, watcher)
}

fn logged(messages: &[ServerMessage]) -> Vec<ServerMessage> {
    messages
        .iter()
        .filter(|m| m.seq().is_some())
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Per event, broadcasts carry strictly increasing seqs with no gaps, and the
    /// persisted entries carry the same seqs.
    #[test]
    fn seq_is_contiguous(script in prop::collection::vec(action(), 0..60)) {
        let (sim, watcher) = run(&script, 4096);
        let c = sim.client(0, watcher);
        c.assert_consistent(false);
        let seen: Vec<u64> = logged(&c.received).iter().filter_map(ServerMessage::seq).collect();
        let expected: Vec<u64> = (1..=sim.room(0).seq()).collect();
        prop_assert_eq!(&seen, &expected);
        let persisted: Vec<u64> = sim.persisted.iter().filter_map(|e| e.seq).collect();
        prop_assert_eq!(persisted, expected);
    }

    /// Replaying from any `since` yields exactly the broadcasts after it (or a snapshot
    /// when `since` is outside the buffer).
    #[test]
    fn replay_is_exact(script in prop::collection::vec(action(), 0..50), capacity in 1usize..24) {
        let (mut sim, watcher) = run(&script, capacity);
        let all = logged(&sim.client(0, watcher).received);
        let last = sim.room(0).seq();
        for since in 0..=last + 1 {
            let conn = sim.join_with(0, "late", None, Some(since), None);
            let got = &sim.client(0, conn).received;
            let floor = last.saturating_sub(capacity as u64);
            if since >= floor && since <= last {
                let expected: Vec<ServerMessage> =
                    all.iter().filter(|m| m.seq().is_some_and(|s| s > since)).cloned().collect();
                prop_assert_eq!(&logged(got), &expected, "since {}", since);
                let resumed = got.iter().any(|m| matches!(m, ServerMessage::Resumed { .. }));
                prop_assert!(resumed);
            } else {
                prop_assert!(matches!(got[0], ServerMessage::Snapshot(_)), "since {} floor {}", since, floor);
            }
            sim.leave(0, conn);
        }
    }
}
