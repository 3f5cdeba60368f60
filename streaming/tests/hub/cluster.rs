//! Two or three nodes joined by the fake bus: one seq space, no duplicates, summed counts.

use std::collections::BTreeSet;
use std::time::Duration;

use streaming::hub::{BusMessage, ConnId, Input, Op, RoomConfig, ServerMessage, StaffRole};

use crate::sim::{BusFault, Fault, Sim, config};

fn chat_ids(sim: &Sim, node: usize, conn: ConnId) -> Vec<u64> {
    sim.client(node, conn)
        .received
        .iter()
        .filter_map(|m| match m {
            ServerMessage::ChatMessage(c) => Some(c.id),
            _ => None,
        })
        .collect()
}

fn clustered() -> RoomConfig {
    RoomConfig {
        join_grace: Duration::from_millis(1500),
        ..config()
    }
}

#[test]
fn two_nodes_deliver_everything_once_with_one_seq() {
    let mut sim = Sim::new(1, config());
    // The second node starts later and syncs from the first.
    sim.advance(3000);
    sim.add_node(1, clustered(), Default::default());
    sim.advance(3000);
    assert!(sim.room(0).is_sequencer());
    assert!(!sim.room(1).is_sequencer());

    let a: Vec<ConnId> = (0..2)
        .map(|i| sim.join(0, &format!("a{i}"), None))
        .collect();
    let b: Vec<ConnId> = (0..3)
        .map(|i| sim.join(1, &format!("b{i}"), None))
        .collect();
    let moderator = sim.join(1, "mod", Some(StaffRole::Moderator));
    sim.advance(2000);

    // Chat from both sides, interleaved.
    for round in 0..5 {
        sim.chat(0, a[round % 2], &format!("a says {round}"));
        sim.chat(1, b[round % 3], &format!("b says {round}"));
        sim.advance(40);
    }
    // Likes from both sides.
    for _ in 0..10 {
        sim.say(0, a[0], r#"{"type":"like"}"#);
        sim.say(1, b[0], r#"{"type":"like","count":2}"#);
    }
    // Q&A across nodes: asked on a, upvoted on b.
    sim.say(0, a[1], r#"{"type":"question.ask","text":"问题？"}"#);
    sim.advance(300);
    let qid = sim.room(1).snapshot().questions[0].id;
    sim.say(
        1,
        b[2],
        &format!(r#"{{"type":"question.upvote","question_id":{qid}}}"#),
    );
    sim.say(
        0,
        a[0],
        &format!(r#"{{"type":"question.upvote","question_id":{qid}}}"#),
    );
    sim.advance(300);
    // Moderation from node b deletes a message posted on node a.
    let victim = chat_ids(&sim, 1, b[0])[0];
    sim.say(
        1,
        moderator,
        &format!(r#"{{"type":"chat.delete","message_id":{victim},"ref":"d"}}"#),
    );
    sim.advance(2000);

    let reference = chat_ids(&sim, 0, a[0]);
    assert_eq!(reference.len(), 10);
    for (node, conns) in [(0, &a), (1, &b)] {
        for &conn in conns.iter() {
            let c = sim.client(node, conn);
            c.assert_consistent(false);
            assert_eq!(
                chat_ids(&sim, node, conn),
                reference,
                "same chat, same order, once"
            );
            let deleted =
                c.count(|m| matches!(m, ServerMessage::ChatDeleted { id, .. } if *id == victim));
            assert_eq!(deleted, 1);
            let votes = c.received.iter().rev().find_map(|m| match m {
                ServerMessage::QuestionUpvoted { votes, .. } => Some(*votes),
                _ => None,
            });
            assert_eq!(votes, Some(2));
        }
    }
    // The moderator on the replica got the ack for its delete.
    assert!(sim.client(1, moderator).received.iter().any(|m| matches!(m,
        ServerMessage::Ack { reference, .. } if reference.as_deref() == Some("d"))));
    // Same state on both nodes.
    assert_eq!(
        sim.room(0).snapshot().messages,
        sim.room(1).snapshot().messages
    );
    assert_eq!(sim.room(0).snapshot().likes, 30);
    assert_eq!(sim.room(1).snapshot().likes, 30);
    // Persisted once each.
    let seqs: Vec<u64> = sim.persisted.iter().filter_map(|e| e.seq).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(seqs.len(), unique.len(), "no entry persisted twice");
    let chats = sim
        .persisted
        .iter()
        .filter(|e| matches!(e.op, Op::ChatPosted { .. }))
        .count();
    assert_eq!(chats, 10);

    // One viewer count across both: 2 + 4 = 6 now, 6 distinct.
    for node in 0..2 {
        let v = sim.room(node).viewers();
        assert_eq!((v.current, v.cumulative), (6, 6), "node {node}");
    }
    let last_viewers = sim
        .client(1, b[0])
        .received
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Viewers { counts, .. } => Some(*counts),
            _ => None,
        });
    assert_eq!(last_viewers.map(|c| c.current), Some(6));
}

#[test]
fn replica_errors_come_back_from_the_sequencer_or_locally() {
    let mut sim = Sim::new(2, clustered());
    sim.advance(3000);
    let seq_node = if sim.room(0).is_sequencer() { 0 } else { 1 };
    let replica = 1 - seq_node;
    let v = sim.join(replica, "v", None);
    let m = sim.join(seq_node, "m", Some(StaffRole::Admin));
    sim.advance(1000);
    sim.say(
        seq_node,
        m,
        r#"{"type":"viewer.ban","viewer_id":"v","duration_secs":60}"#,
    );
    sim.advance(500);
    sim.chat(replica, v, "x");
    sim.advance(500);
    assert_eq!(sim.client(replica, v).errors(), vec!["banned"]);
}

#[test]
fn failover_keeps_seq_unique_and_resumes() {
    let mut sim = Sim::new(2, clustered());
    sim.advance(3000);
    let (leader, other) = if sim.room(0).is_sequencer() {
        (0, 1)
    } else {
        (1, 0)
    };
    let v = sim.join(other, "v", None);
    let w = sim.join(leader, "w", None);
    sim.advance(1000);
    sim.chat(other, v, "before");
    sim.advance(500);
    let seen = sim.client(other, v).last_seq();
    // The sequencer crashes.
    sim.nodes[leader].down = true;
    sim.advance(5000);
    assert!(sim.room(other).is_sequencer());
    sim.chat(other, v, "after");
    sim.advance(500);
    let c = sim.client(other, v);
    assert_eq!(c.chat_texts(), vec!["before", "after"]);
    c.assert_consistent(true);
    assert!(c.last_seq() > seen + 1, "the new term jumped past old seqs");
    // A client of the dead node reconnects to the survivor with its old since: snapshot.
    let since = sim.client(leader, w).last_seq();
    let w2 = sim.join_with(other, "w", None, Some(since), None);
    let ServerMessage::Snapshot(s) = &sim.client(other, w2).received[0] else {
        panic!("expected snapshot after failover")
    };
    let texts: Vec<_> = s.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, vec!["before", "after"]);
}

#[test]
fn simultaneous_start_converges_on_one_sequencer() {
    // Both start with no grace: both sequence at first, then the tie-break settles it.
    let mut sim = Sim::new(2, config());
    let a = sim.join(0, "a", None);
    let b = sim.join(1, "b", None);
    sim.advance(3000);
    let sequencers = (0..2).filter(|&n| sim.room(n).is_sequencer()).count();
    assert_eq!(sequencers, 1);
    sim.chat(0, a, "one");
    sim.chat(1, b, "two");
    sim.advance(500);
    for (node, conn) in [(0, a), (1, b)] {
        let c = sim.client(node, conn);
        assert_eq!(c.chat_texts(), vec!["one", "two"]);
        c.assert_consistent(true);
    }
}

#[test]
fn three_nodes_sum_viewers() {
    let mut sim = Sim::new(3, clustered());
    sim.advance(3000);
    let mut conns = Vec::new();
    for node in 0..3 {
        for i in 0..=node {
            conns.push((node, sim.join(node, &format!("n{node}v{i}"), None)));
        }
    }
    sim.join(2, "n0v0", None); // the same person on another node
    sim.advance(3000);
    for node in 0..3 {
        let v = sim.room(node).viewers();
        assert_eq!((v.current, v.cumulative), (7, 6), "node {node}");
    }
    // One sample per minute for the whole cluster (only the sequencer samples).
    let before = sim.samples.len();
    sim.advance(60_000);
    assert_eq!(sim.samples.len() - before, 1);
    assert_eq!(sim.samples.last().map(|s| s.counts.current), Some(7));
}

fn entries_fault(fault: Fault) -> Option<BusFault> {
    Some(BusFault {
        applies_to: |message| matches!(message, BusMessage::Entries { .. }),
        fault,
    })
}

/// A sequencer (node 0) and a replica (node 1) that synced from it, one viewer on each.
fn sequencer_and_replica() -> (Sim, ConnId, ConnId) {
    let mut sim = Sim::new(1, config());
    sim.advance(3000);
    sim.add_node(1, clustered(), Default::default());
    sim.advance(3000);
    assert!(sim.room(0).is_sequencer() && !sim.room(1).is_sequencer());
    let a = sim.join(0, "a", None);
    let b = sim.join(1, "b", None);
    sim.advance(2000);
    (sim, a, b)
}

fn snapshots(sim: &Sim, node: usize, conn: ConnId) -> usize {
    sim.client(node, conn)
        .count(|m| matches!(m, ServerMessage::Snapshot(_)))
}

#[test]
fn late_entries_within_the_lag_timeout_cause_no_sync() {
    let (mut sim, a, b) = sequencer_and_replica();
    let heartbeat = config().heartbeat_interval.as_millis() as u64;
    let lag_timeout = config().lag_timeout.as_millis() as u64;
    let delay = lag_timeout - 500;
    assert!(
        delay > 2 * heartbeat,
        "the old rule synced after two heartbeats"
    );
    let syncs = sim.sync_requests().len();
    // Under load every entry arrives late, by more than two heartbeats.
    sim.fault = entries_fault(Fault::Delay(Duration::from_millis(delay)));
    let senders: Vec<ConnId> = (0..4)
        .map(|i| sim.join(0, &format!("s{i}"), None))
        .collect();
    for round in 0..20 {
        sim.chat(0, senders[round % 4], &format!("m{round}"));
        sim.advance(500);
    }
    sim.chat(0, a, "last");
    sim.advance(delay / 2);
    let behind = sim.room(0).seq() - sim.room(1).seq();
    assert!(
        behind > 0,
        "the replica is behind while entries are in flight"
    );
    sim.advance(lag_timeout * 2);

    assert_eq!(sim.sync_requests().len(), syncs, "no sync for late entries");
    assert_eq!(sim.room(1).seq(), sim.room(0).seq());
    let c = sim.client(1, b);
    assert_eq!(snapshots(&sim, 1, b), 1, "no snapshot resent");
    c.assert_consistent(false);
    assert_eq!(c.chat_texts(), sim.client(0, a).chat_texts());
    assert_eq!(c.chat_texts().len(), 21);
}

#[test]
fn lost_entries_are_synced_within_the_lag_timeout_and_a_heartbeat() {
    let (mut sim, a, b) = sequencer_and_replica();
    let heartbeat = config().heartbeat_interval.as_millis() as u64;
    let lag_timeout = config().lag_timeout.as_millis() as u64;
    let syncs = sim.sync_requests().len();
    sim.fault = entries_fault(Fault::Drop);
    sim.chat(0, a, "lost");
    let sent = sim.now;
    // Within a coalescing window, so the entry has surely been published (and lost).
    sim.advance(150);
    sim.fault = None;
    // Nothing else is posted, so no later entry reveals a gap: only the heartbeats
    // announce that the replica is behind.
    sim.advance(lag_timeout - 150 - 1);
    assert_eq!(
        sim.sync_requests().len(),
        syncs,
        "not before the lag timeout"
    );
    assert!(sim.client(1, b).chat_texts().is_empty());
    sim.advance(heartbeat + 1);

    let requests = sim.sync_requests();
    assert_eq!(requests.len(), syncs + 1, "{requests:?}");
    let (node, at) = requests[syncs];
    assert_eq!(node, 1);
    assert!(
        at.0 - sent.0 <= lag_timeout + heartbeat,
        "asked {} ms after",
        at.0 - sent.0
    );
    // The replica converged on the sequencer's state and gave its viewer the broadcast
    // it had missed (the same log, so no snapshot).
    assert_eq!(sim.room(1).seq(), sim.room(0).seq());
    assert_eq!(
        sim.room(1).snapshot().messages,
        sim.room(0).snapshot().messages
    );
    let c = sim.client(1, b);
    assert_eq!(snapshots(&sim, 1, b), 1);
    c.assert_consistent(false);
    assert_eq!(c.chat_texts(), ["lost"]);
    // And it keeps following the log.
    sim.chat(0, a, "after");
    sim.advance(500);
    assert_eq!(sim.client(1, b).chat_texts(), ["lost", "after"]);
    assert_eq!(sim.sync_requests().len(), syncs + 1);
}

#[test]
fn a_gap_in_the_entries_syncs_at_once() {
    let (mut sim, a, b) = sequencer_and_replica();
    let syncs = sim.sync_requests().len();
    sim.fault = entries_fault(Fault::Drop);
    sim.chat(0, a, "lost");
    sim.advance(200);
    sim.fault = None;
    sim.chat(0, a, "next");
    let requests = sim.sync_requests();
    assert_eq!(requests.len(), syncs + 1);
    assert_eq!(requests[syncs], (1, sim.now));
    assert_eq!(
        sim.room(1).snapshot().messages,
        sim.room(0).snapshot().messages
    );
    sim.client(1, b).assert_consistent(false);
}

fn everything_dropped() -> Option<BusFault> {
    Some(BusFault {
        applies_to: |_| true,
        fault: Fault::Drop,
    })
}

/// Issue 15 item 9: the bus is down on every node for longer than the peer timeout (a
/// NATS outage). Nobody fails over, the sequencer goes on, the replica refuses its
/// viewers' messages (`unavailable`, never silently lost), and once the bus is back the
/// replica's viewers get every broadcast they missed: in seq order, once, without a
/// snapshot.
#[test]
fn a_bus_outage_is_caught_up_without_failover_or_gap() {
    let (mut sim, a, b) = sequencer_and_replica();
    let snaps = snapshots(&sim, 1, b);
    sim.fault = everything_dropped();
    for node in 0..2 {
        sim.input(node, Input::BusConnection(false));
    }
    for i in 0..6 {
        sim.chat(0, a, &format!("a{i}"));
        sim.chat(1, b, &format!("b{i}"));
        sim.advance(1000);
    }
    assert!(
        sim.room(0).is_sequencer() && !sim.room(1).is_sequencer(),
        "no failover while the bus is down"
    );
    assert_eq!(sim.client(1, b).errors(), vec!["unavailable"; 6]);
    assert!(sim.client(1, b).chat_texts().is_empty());

    sim.fault = None;
    for node in 0..2 {
        sim.input(node, Input::BusConnection(true));
    }
    sim.advance(1500);
    assert_eq!(sim.room(1).seq(), sim.room(0).seq());
    assert!(sim.room(0).is_sequencer() && !sim.room(1).is_sequencer());
    let c = sim.client(1, b);
    assert_eq!(snapshots(&sim, 1, b), snaps, "broadcasts, not a snapshot");
    c.assert_consistent(false);
    let sent: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    assert_eq!(c.chat_texts(), sent);
    assert_eq!(sim.client(0, a).chat_texts(), sent);
    // And it keeps following the log.
    sim.chat(1, b, "back");
    sim.advance(500);
    assert_eq!(sim.client(0, a).chat_texts().last().unwrap(), "back");
    assert_eq!(sim.client(1, b).chat_texts().last().unwrap(), "back");
}

/// The replica's link comes back first and its sync request is lost (the sequencer's
/// node has not resubscribed yet): it asks again until the sync comes.
#[test]
fn after_a_bus_outage_the_replica_asks_until_it_is_synced() {
    let (mut sim, a, b) = sequencer_and_replica();
    sim.fault = everything_dropped();
    for node in 0..2 {
        sim.input(node, Input::BusConnection(false));
    }
    sim.chat(0, a, "during");
    sim.advance(5000);
    sim.input(1, Input::BusConnection(true));
    sim.advance(300);
    sim.fault = None;
    sim.input(0, Input::BusConnection(true));
    sim.advance(1200);
    assert_eq!(sim.client(1, b).chat_texts(), ["during"]);
    sim.client(1, b).assert_consistent(false);
    assert!(sim.room(0).is_sequencer() && !sim.room(1).is_sequencer());
}
