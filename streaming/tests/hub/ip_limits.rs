//! Issue 15 item 5: per-viewer limits are not bypassed by minting identities. Fresh
//! cookies from one address share that address's slow mode, chat, question and like
//! budgets and its votes per question, and a ban binds the banned viewer's address.

use streaming::hub::{ConnId, Op, ServerMessage, StaffRole};

use crate::sim::{Sim, config};

const MOD: Option<StaffRole> = Some(StaffRole::Moderator);
const SHARED: &str = "10.1.2.3";
const OTHER: &str = "10.9.9.9";

// The defaults (`RoomConfig::default()`), written out so that this file also builds
// against a hub without per-address limits and shows it failing.
const SLOW_MODE_PER_IP: usize = 3;
const CHAT_BURST_PER_IP: usize = 20;
const VOTES_PER_QUESTION_PER_IP: u64 = 3;
const LIKE_BURST_PER_IP: f64 = 200.0;
const LIKES_PER_SECOND_PER_IP: f64 = 40.0;

fn from_one_address(sim: &mut Sim, node: usize, prefix: &str, n: usize) -> Vec<ConnId> {
    (0..n)
        .map(|i| sim.join_with(node, &format!("{prefix}{i}"), None, None, Some(SHARED)))
        .collect()
}

fn chat_count(sim: &Sim, node: usize, conn: ConnId) -> usize {
    sim.client(node, conn).chat_texts().len()
}

fn errors_of(sim: &Sim, node: usize, conns: &[ConnId]) -> Vec<String> {
    conns
        .iter()
        .flat_map(|&c| sim.client(node, c).errors())
        .collect()
}

#[test]
fn fresh_identities_from_one_address_share_slow_mode() {
    let mut sim = Sim::new(1, config());
    let m = sim.join(0, "mod", MOD);
    sim.advance(1000);
    sim.say(0, m, r#"{"type":"chat.slow_mode","seconds":60}"#);
    sim.advance(200);
    // The report: 25 fresh cookies from one IP posted 25 messages in 2 s.
    let minted = from_one_address(&mut sim, 0, "fresh", 25);
    for &v in &minted {
        sim.chat(0, v, "刷屏");
        sim.advance(80);
    }
    sim.advance(200);
    let per_ip = SLOW_MODE_PER_IP;
    assert_eq!(chat_count(&sim, 0, m), per_ip);
    let errors = errors_of(&sim, 0, &minted);
    assert_eq!(errors.len(), 25 - per_ip);
    assert!(errors.iter().all(|e| e == "slow_mode"), "{errors:?}");
    // Someone at another address is not held up by them.
    let elsewhere = sim.join_with(0, "neighbour", None, None, Some(OTHER));
    sim.chat(0, elsewhere, "正常发言");
    sim.advance(200);
    assert!(sim.client(0, elsewhere).errors().is_empty());
    assert_eq!(chat_count(&sim, 0, m), per_ip + 1);
    // After the slow-mode interval the address may speak again.
    sim.advance(60_000);
    sim.chat(0, minted[24], "一分钟后");
    sim.advance(200);
    assert_eq!(chat_count(&sim, 0, m), per_ip + 2);
}

#[test]
fn fresh_identities_from_one_address_share_a_chat_budget() {
    let mut sim = Sim::new(1, config());
    let watcher = sim.join(0, "watcher", None);
    sim.advance(1000);
    let minted = from_one_address(&mut sim, 0, "fresh", 40);
    for &v in &minted {
        sim.chat(0, v, "加油");
    }
    sim.advance(200);
    let burst = CHAT_BURST_PER_IP;
    assert_eq!(chat_count(&sim, 0, watcher), burst);
    let errors = errors_of(&sim, 0, &minted);
    assert_eq!(errors.len(), 40 - burst);
    assert!(errors.iter().all(|e| e == "rate_limited"), "{errors:?}");
}

#[test]
fn votes_and_likes_from_one_address_are_capped_on_every_node() {
    let mut sim = Sim::new(2, config());
    sim.advance(3000);
    assert!(sim.room(0).is_sequencer());
    let asker = sim.join_with(0, "asker", None, None, Some(OTHER));
    sim.advance(1000);
    sim.say(
        0,
        asker,
        r#"{"type":"question.ask","text":"加装电梯补贴？"}"#,
    );
    sim.advance(200);
    let id = sim.room(0).seq();
    // The report: 20 cookies voted one question to 20 and added 2,000 likes in 3 s.
    // Half of them on each node: the sequencer counts the address's votes.
    let mut minted = from_one_address(&mut sim, 0, "a", 10);
    let on_b = from_one_address(&mut sim, 1, "b", 10);
    sim.advance(200);
    let upvote = format!(r#"{{"type":"question.upvote","question_id":{id}}}"#);
    for i in 0..10 {
        sim.say(0, minted[i], &upvote);
        sim.say(1, on_b[i], &upvote);
        sim.advance(20);
    }
    sim.advance(500);
    let votes = |sim: &Sim| {
        sim.room(0)
            .snapshot()
            .questions
            .iter()
            .find(|q| q.id == id)
            .map(|q| q.votes)
    };
    let cap = VOTES_PER_QUESTION_PER_IP;
    assert_eq!(votes(&sim), Some(cap));
    assert_eq!(
        sim.room(1).snapshot().questions[0].votes,
        cap,
        "replicas agree"
    );
    // Another address still votes.
    let neighbour = sim.join_with(1, "neighbour", None, None, Some("10.7.7.7"));
    sim.say(1, neighbour, &upvote);
    sim.advance(500);
    assert_eq!(votes(&sim), Some(cap + 1));

    let before = sim.room(0).snapshot().likes;
    minted.extend(on_b.iter().copied());
    for round in 0..30 {
        for (i, &v) in minted.iter().enumerate() {
            let node = usize::from(i >= 10);
            sim.say(node, v, r#"{"type":"like","count":5}"#);
        }
        if round % 10 == 9 {
            sim.advance(1000);
        }
    }
    sim.advance(1000);
    let added = sim.room(0).snapshot().likes - before;
    // Per address and node: a burst of 200, then 40/s (3 s here), for each of 2 nodes.
    let most = 2.0 * (LIKE_BURST_PER_IP + 4.0 * LIKES_PER_SECOND_PER_IP);
    assert!(added > 0, "likes from the address count");
    assert!(
        (added as f64) <= most,
        "{added} likes from one address (at most {most})"
    );
    assert_eq!(sim.room(1).snapshot().likes, sim.room(0).snapshot().likes);
}

#[test]
fn a_ban_by_viewer_id_binds_the_address_on_every_node() {
    let mut sim = Sim::new(2, config());
    sim.record_log = true;
    sim.advance(3000);
    let m = sim.join(0, "mod", MOD);
    // The troll is connected to the other node and never said a word there.
    let troll = sim.join_with(1, "troll", None, None, Some(SHARED));
    sim.advance(1000);
    sim.say(
        0,
        m,
        r#"{"type":"viewer.ban","viewer_id":"troll","duration_secs":600,"ref":"b1"}"#,
    );
    sim.advance(500);
    assert!(sim.client(0, m).received.iter().any(|x| matches!(x,
        ServerMessage::Ack { action, .. } if action == "viewer.ban")));
    sim.chat(1, troll, "我又来了");
    // A fresh cookie from the same address, on either node.
    let fresh_b = sim.join_with(1, "fresh-b", None, None, Some(SHARED));
    let fresh_a = sim.join_with(0, "fresh-a", None, None, Some(SHARED));
    let other = sim.join_with(0, "good", None, None, Some(OTHER));
    sim.chat(1, fresh_b, "换号");
    sim.chat(0, fresh_a, "换号");
    sim.say(0, fresh_a, r#"{"type":"like"}"#);
    sim.chat(0, other, "正常发言");
    sim.advance(500);
    assert_eq!(sim.client(1, troll).errors(), vec!["banned"]);
    assert_eq!(sim.client(1, fresh_b).errors(), vec!["banned"]);
    assert_eq!(sim.client(0, fresh_a).errors(), vec!["banned", "banned"]);
    assert!(sim.client(0, other).errors().is_empty());
    assert_eq!(sim.client(0, m).chat_texts(), vec!["正常发言"]);
    let ServerMessage::Snapshot(s) = &sim.client(0, fresh_a).received[0] else {
        panic!()
    };
    assert!(s.you.banned_until.is_some(), "told at join");
    assert!(
        sim.persisted
            .iter()
            .any(|e| matches!(&e.op, Op::ViewerBanned { ban, .. } if ban.ip.is_some())),
        "the address is in the replicated, stored ban"
    );
    // Addresses never reach a client.
    for line in &sim.log {
        if line.starts_with("  send") || line.starts_with("  broadcast") {
            assert!(!line.contains(SHARED), "{line}");
        }
    }
    // Unban lifts both.
    sim.say(0, m, r#"{"type":"viewer.unban","viewer_id":"troll"}"#);
    sim.advance(500);
    sim.chat(0, fresh_a, "解封了");
    sim.advance(500);
    assert_eq!(sim.client(0, fresh_a).errors(), vec!["banned", "banned"]);
}

#[test]
fn a_ban_with_by_ip_false_binds_the_identity_only() {
    let mut sim = Sim::new(1, config());
    let m = sim.join(0, "mod", MOD);
    let troll = sim.join_with(0, "troll", None, None, Some(SHARED));
    let colleague = sim.join_with(0, "colleague", None, None, Some(SHARED));
    sim.advance(1000);
    sim.say(
        0,
        m,
        r#"{"type":"viewer.ban","viewer_id":"troll","by_ip":false,"duration_secs":600}"#,
    );
    sim.advance(500);
    sim.chat(0, troll, "再来");
    sim.chat(0, colleague, "同一个办公室");
    sim.advance(500);
    assert_eq!(sim.client(0, troll).errors(), vec!["banned"]);
    assert!(sim.client(0, colleague).errors().is_empty());
}

#[test]
fn the_constants_above_are_the_defaults() {
    let c = streaming::hub::RoomConfig::default();
    assert_eq!(c.slow_mode_per_ip as usize, SLOW_MODE_PER_IP);
    assert_eq!(c.chat_rate_per_ip.burst as usize, CHAT_BURST_PER_IP);
    assert_eq!(
        u64::from(c.votes_per_question_per_ip),
        VOTES_PER_QUESTION_PER_IP
    );
    assert_eq!(c.like_rate_per_ip.burst, LIKE_BURST_PER_IP);
    assert_eq!(c.like_rate_per_ip.per_second, LIKES_PER_SECOND_PER_IP);
}
