//! Simulation scenarios: one or two nodes, fake clients, fake time.

use std::time::Duration;

use streaming::hub::{
    CLOSE_POLICY, EventStatus, Input, Op, RoomConfig, RoomSeed, SensitiveMode, SensitiveWords,
    ServerMessage, StaffRole,
};

use crate::sim::{Sim, config};

const MOD: Option<StaffRole> = Some(StaffRole::Moderator);

fn is<T>(f: impl Fn(&ServerMessage) -> Option<T>) -> impl Fn(&ServerMessage) -> bool {
    move |m| f(m).is_some()
}

fn likes_total(c: &crate::sim::Client) -> Option<u64> {
    c.received.iter().rev().find_map(|m| match m {
        ServerMessage::Likes { total, .. } => Some(*total),
        ServerMessage::Snapshot(s) => Some(s.likes),
        _ => None,
    })
}

#[test]
fn join_gets_snapshot_then_chat_reaches_everyone() {
    let mut sim = Sim::new(1, config());
    let a = sim.join(0, "va", None);
    let b = sim.join(0, "vb", None);
    sim.advance(1000);
    sim.chat(0, a, "区长好！<script>alert(1)</script>");
    sim.advance(200);
    for conn in [a, b] {
        let c = sim.client(0, conn);
        assert!(matches!(c.received[0], ServerMessage::Snapshot(_)));
        assert_eq!(c.chat_texts(), vec!["区长好！<script>alert(1)</script>"]);
        c.assert_consistent(false);
    }
    let chat = sim
        .client(0, b)
        .received
        .iter()
        .find_map(|m| match m {
            ServerMessage::ChatMessage(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(chat.id, chat.seq);
    assert_eq!(chat.author.nickname, "网友va");
    assert_eq!(sim.persisted.len(), 1);
    assert!(matches!(sim.persisted[0].op, Op::ChatPosted { .. }));
}

#[test]
fn like_burst_is_coalesced() {
    let mut sim = Sim::new(1, config());
    let viewers: Vec<_> = (0..10)
        .map(|i| sim.join(0, &format!("v{i}"), None))
        .collect();
    sim.advance(2000);
    let before = sim.client(0, viewers[0]).count(is(|m| match m {
        ServerMessage::Likes { .. } => Some(()),
        _ => None,
    }));
    // 10 viewers x 10 taps within 50 ms.
    for _ in 0..10 {
        for &v in &viewers {
            sim.say(0, v, r#"{"type":"like"}"#);
        }
        sim.advance(5);
    }
    sim.advance(500);
    let c = sim.client(0, viewers[0]);
    let frames = c.count(is(|m| match m {
        ServerMessage::Likes { .. } => Some(()),
        _ => None,
    })) - before;
    assert!(frames <= 2, "{frames} likes frames for a 50 ms burst");
    assert_eq!(likes_total(c), Some(100));
    assert!(c.errors().is_empty());
}

#[test]
fn chat_burst_is_coalesced_into_batches() {
    let mut sim = Sim::new(1, config());
    let viewers: Vec<_> = (0..30)
        .map(|i| sim.join(0, &format!("v{i}"), None))
        .collect();
    let watcher = sim.join(0, "watcher", None);
    sim.advance(2000);
    let frames_before = sim.client(0, watcher).frames;
    for &v in &viewers {
        sim.chat(0, v, "加油");
        sim.advance(3); // 30 messages in 90 ms
    }
    sim.advance(300);
    let c = sim.client(0, watcher);
    assert_eq!(c.chat_texts().len(), 30);
    assert!(
        c.frames - frames_before <= 3,
        "{} frames for 30 messages in one window",
        c.frames - frames_before
    );
    c.assert_consistent(false);
}

#[test]
fn slow_mode_and_rate_limit() {
    let mut sim = Sim::new(1, config());
    let m = sim.join(0, "mod", MOD);
    let v = sim.join(0, "v", None);
    sim.advance(1000);
    sim.say(0, m, r#"{"type":"chat.slow_mode","seconds":10,"ref":"s1"}"#);
    sim.advance(200);
    assert!(sim.client(0, m).received.iter().any(|x| matches!(x,
        ServerMessage::Ack { action, reference } if action == "chat.settings" && reference.as_deref() == Some("s1"))));
    assert!(sim.client(0, v).received.iter().any(|x| matches!(
        x,
        ServerMessage::ChatSettings {
            slow_mode_secs: 10,
            open: true,
            ..
        }
    )));
    sim.chat(0, v, "一");
    sim.advance(1000);
    let seq = sim.room(0).seq();
    sim.chat(0, v, "二");
    assert_eq!(sim.client(0, v).errors(), vec!["slow_mode"]);
    assert_eq!(sim.room(0).seq(), seq, "a refused message changes nothing");
    // Reconnecting does not reset slow mode.
    sim.leave(0, v);
    let v = sim.join(0, "v", None);
    sim.chat(0, v, "三");
    assert_eq!(sim.client(0, v).errors(), vec!["slow_mode"]);
    sim.advance(10_000);
    sim.chat(0, v, "四");
    sim.advance(200);
    assert_eq!(sim.client(0, m).chat_texts(), vec!["一", "四"]);
    // Staff are exempt.
    sim.chat(0, m, "主持人一");
    sim.chat(0, m, "主持人二");
    sim.advance(200);
    assert_eq!(sim.client(0, m).errors(), Vec::<String>::new());

    // Without slow mode the token bucket still limits bursts (burst 5, 1/s).
    sim.say(0, m, r#"{"type":"chat.slow_mode","seconds":0}"#);
    sim.advance(10_000);
    let w = sim.join(0, "w", None);
    for i in 0..7 {
        sim.chat(0, w, &format!("刷屏{i}"));
    }
    assert_eq!(
        sim.client(0, w).errors(),
        vec!["rate_limited", "rate_limited"]
    );
}

#[test]
fn frame_flood_is_refused_then_closed() {
    let mut sim = Sim::new(1, config());
    let v = sim.join(0, "v", None);
    for _ in 0..200 {
        sim.say(0, v, r#"{"type":"ping"}"#);
    }
    let c = sim.client(0, v);
    assert_eq!(c.closed, Some(CLOSE_POLICY));
    assert!(c.errors().iter().all(|e| e == "rate_limited"));
    assert!(
        c.count(is(|m| match m {
            ServerMessage::Pong { .. } => Some(()),
            _ => None,
        })) >= 30
    );
}

#[test]
fn ban_by_message_and_by_ip() {
    let mut sim = Sim::new(1, config());
    let m = sim.join(0, "mod", MOD);
    let bad = sim.join_with(0, "troll", None, None, Some("10.1.2.3"));
    let same_ip = sim.join_with(0, "troll2", None, None, Some("10.1.2.3"));
    let other = sim.join_with(0, "good", None, None, Some("10.9.9.9"));
    sim.advance(1000);
    sim.chat(0, bad, "广告");
    sim.advance(200);
    let id = sim.room(0).seq();
    sim.say(
        0,
        m,
        &format!(
            r#"{{"type":"viewer.ban","message_id":{id},"by_ip":true,"duration_secs":600,"reason":"广告"}}"#
        ),
    );
    sim.advance(200);
    let seq = sim.room(0).seq();
    sim.chat(0, bad, "再来");
    sim.chat(0, same_ip, "换号");
    sim.say(0, bad, r#"{"type":"like"}"#);
    sim.chat(0, other, "正常发言");
    sim.advance(200);
    assert_eq!(sim.client(0, bad).errors(), vec!["banned", "banned"]);
    assert_eq!(sim.client(0, same_ip).errors(), vec!["banned"]);
    assert_eq!(
        sim.room(0).seq(),
        seq + 1,
        "only the good message went through"
    );
    assert!(
        sim.persisted
            .iter()
            .any(|e| matches!(&e.op, Op::ViewerBanned { ban, .. } if ban.ip.is_some()))
    );
    // The ban is not broadcast; the moderator got an ack.
    assert_eq!(
        sim.client(0, m).count(is(|x| match x {
            ServerMessage::Ack { action, .. } if action == "viewer.ban" => Some(()),
            _ => None,
        })),
        1
    );
    // A reconnecting banned viewer is told in the snapshot.
    let again = sim.join_with(0, "troll", None, None, Some("10.1.2.3"));
    let ServerMessage::Snapshot(s) = &sim.client(0, again).received[0] else {
        panic!()
    };
    assert!(s.you.banned_until.is_some());
    // Expiry.
    sim.advance(601_000);
    sim.chat(0, again, "我回来了");
    assert!(sim.client(0, again).errors().is_empty());
    // Viewers cannot ban.
    sim.say(
        0,
        other,
        r#"{"type":"viewer.ban","viewer_id":"mod","duration_secs":60}"#,
    );
    assert_eq!(sim.client(0, other).errors(), vec!["forbidden"]);
}

#[test]
fn delete_removes_everywhere() {
    let mut sim = Sim::new(1, config());
    let m = sim.join(0, "mod", MOD);
    let v = sim.join(0, "v", None);
    sim.advance(1000);
    sim.chat(0, v, "不当言论");
    sim.chat(0, v, "正常");
    sim.advance(200);
    let first = sim.room(0).seq() - 1;
    sim.say(
        0,
        m,
        &format!(r#"{{"type":"chat.delete","message_id":{first}}}"#),
    );
    sim.advance(200);
    assert!(
        sim.client(0, v)
            .received
            .iter()
            .any(|x| matches!(x, ServerMessage::ChatDeleted { id, .. } if *id == first))
    );
    let late = sim.join(0, "late", None);
    let ServerMessage::Snapshot(s) = &sim.client(0, late).received[0] else {
        panic!()
    };
    let texts: Vec<_> = s.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, vec!["正常"]);
    assert!(
        sim.persisted
            .iter()
            .any(|e| matches!(e.op, Op::ChatDeleted { id, .. } if id == first))
    );
    sim.say(0, m, r#"{"type":"chat.delete","message_id":999999}"#);
    assert_eq!(sim.client(0, m).errors(), vec!["not_found"]);
}

#[test]
fn closed_chat_and_ended_event() {
    let mut sim = Sim::new(1, config());
    let m = sim.join(0, "mod", MOD);
    let v = sim.join(0, "v", None);
    sim.say(0, m, r#"{"type":"chat.close"}"#);
    sim.advance(200);
    sim.chat(0, v, "hello");
    assert_eq!(sim.client(0, v).errors(), vec!["chat_closed"]);
    // Questions still work with chat closed.
    sim.say(0, v, r#"{"type":"question.ask","text":"什么时候开工？"}"#);
    sim.say(0, m, r#"{"type":"chat.open"}"#);
    sim.input(0, Input::StatusChanged(EventStatus::Ended));
    sim.advance(200);
    assert!(sim.client(0, v).received.iter().any(|x| matches!(
        x,
        ServerMessage::EventStatus {
            status: EventStatus::Ended,
            ..
        }
    )));
    sim.chat(0, v, "还在吗");
    sim.say(0, v, r#"{"type":"like"}"#);
    assert_eq!(
        sim.client(0, v).errors(),
        vec!["chat_closed", "event_ended", "event_ended"]
    );
    sim.client(0, v).assert_consistent(false);
}

#[test]
fn sensitive_words_mask_or_reject() {
    for (mode, expect_text, expect_err) in [
        (SensitiveMode::Mask, Some("这是**内容"), vec![]),
        (SensitiveMode::Reject, None, vec!["sensitive_word"]),
    ] {
        let config = RoomConfig {
            sensitive: SensitiveWords::parse("敏感\n", mode).unwrap(),
            ..config()
        };
        let mut sim = Sim::new(1, config);
        let v = sim.join(0, "v", None);
        sim.advance(1000);
        sim.chat(0, v, "这是敏感内容");
        sim.advance(200);
        let c = sim.client(0, v);
        assert_eq!(
            c.chat_texts().first().map(String::as_str),
            expect_text,
            "{mode:?}"
        );
        assert_eq!(c.errors(), expect_err);
    }
}

#[test]
fn oversized_and_long_text() {
    let mut sim = Sim::new(1, config());
    let v = sim.join(0, "v", None);
    sim.advance(1000);
    sim.chat(0, v, &"字".repeat(501));
    sim.chat(0, v, &"字".repeat(2000)); // > 4096 bytes: frame too large
    sim.chat(0, v, &"字".repeat(500));
    sim.advance(200);
    let c = sim.client(0, v);
    assert_eq!(c.errors(), vec!["too_long", "frame_too_large"]);
    assert_eq!(c.chat_texts().len(), 1);
}

#[test]
fn questions_upvotes_order_and_answers() {
    let mut sim = Sim::new(1, config());
    let host = sim.join(0, "host", Some(StaffRole::Broadcaster));
    let viewers: Vec<_> = (0..4)
        .map(|i| sim.join(0, &format!("v{i}"), None))
        .collect();
    sim.advance(1000);
    for (i, text) in ["停车难怎么办？", "加装电梯补贴？", "垃圾分类？"]
        .iter()
        .enumerate()
    {
        let json = serde_json::json!({"type":"question.ask","text":text}).to_string();
        sim.say(0, viewers[i], &json);
    }
    sim.advance(200);
    let ids: Vec<u64> = sim
        .client(0, host)
        .received
        .iter()
        .filter_map(|m| match m {
            ServerMessage::QuestionAsked { question, .. } => Some(question.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    // Question 2 gets three votes, question 3 one, question 1 none.
    for &v in &viewers[..3] {
        sim.say(
            0,
            v,
            &format!(r#"{{"type":"question.upvote","question_id":{}}}"#, ids[1]),
        );
    }
    sim.say(
        0,
        viewers[3],
        &format!(r#"{{"type":"question.upvote","question_id":{}}}"#, ids[2]),
    );
    sim.say(
        0,
        viewers[0],
        &format!(r#"{{"type":"question.upvote","question_id":{}}}"#, ids[1]),
    );
    sim.say(
        0,
        viewers[0],
        r#"{"type":"question.upvote","question_id":123456}"#,
    );
    sim.advance(200);
    assert_eq!(
        sim.client(0, viewers[0]).errors(),
        vec!["already_voted", "not_found"]
    );
    let late = sim.join(0, "late", None);
    let ServerMessage::Snapshot(s) = &sim.client(0, late).received[0] else {
        panic!()
    };
    let order: Vec<(u64, u64)> = s.questions.iter().map(|q| (q.id, q.votes)).collect();
    assert_eq!(order, vec![(ids[1], 3), (ids[2], 1), (ids[0], 0)]);

    // Viewers cannot answer; the broadcaster can, live or in text.
    sim.say(
        0,
        viewers[0],
        &format!(r#"{{"type":"question.answer","question_id":{}}}"#, ids[1]),
    );
    assert_eq!(
        sim.client(0, viewers[0])
            .errors()
            .last()
            .map(String::as_str),
        Some("forbidden")
    );
    sim.say(
        0,
        host,
        &format!(r#"{{"type":"question.answer","question_id":{}}}"#, ids[1]),
    );
    sim.say(
        0,
        host,
        &format!(
            r#"{{"type":"question.answer","question_id":{},"answer":"每户补贴两万元。"}}"#,
            ids[2]
        ),
    );
    sim.advance(200);
    let answers: Vec<Option<String>> = sim
        .client(0, late)
        .received
        .iter()
        .filter_map(|m| match m {
            ServerMessage::QuestionAnswered { answer, .. } => Some(answer.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![None, Some("每户补贴两万元。".into())]);
    let snap = sim.room(0).snapshot();
    assert_eq!(snap.questions.len(), 1);
    assert_eq!(snap.answered.len(), 2);
    // Answered questions take no more votes.
    sim.say(
        0,
        viewers[3],
        &format!(r#"{{"type":"question.upvote","question_id":{}}}"#, ids[1]),
    );
    assert_eq!(sim.client(0, viewers[3]).errors(), vec!["not_found"]);
    sim.client(0, late).assert_consistent(false);
}

#[test]
fn since_replays_missed_or_sends_snapshot() {
    let config = RoomConfig {
        replay_capacity: 8,
        ..config()
    };
    let mut sim = Sim::new(1, config);
    let talker = sim.join(0, "talker", Some(StaffRole::Admin));
    let v = sim.join(0, "v", None);
    sim.advance(1000);
    sim.chat(0, talker, "1");
    sim.advance(200);
    let seen = sim.client(0, v).last_seq();
    sim.leave(0, v);
    for i in 2..=4 {
        sim.chat(0, talker, &i.to_string());
        sim.advance(200);
    }
    // Resume: exactly the three missed, then `resumed`.
    let v2 = sim.join_with(0, "v", None, Some(seen), None);
    let c = sim.client(0, v2);
    assert_eq!(c.chat_texts(), vec!["2", "3", "4"]);
    assert_eq!(c.frames, 3, "replay batch, resumed, viewers");
    assert!(matches!(
        c.received[3],
        ServerMessage::Resumed { replayed: 3, .. }
    ));
    // Up to date: nothing replayed.
    let v3 = sim.join_with(0, "v", None, Some(sim.room(0).seq()), None);
    assert!(sim.client(0, v3).chat_texts().is_empty());
    // Too far behind: the buffer holds 8.
    for i in 5..=20 {
        sim.chat(0, talker, &i.to_string());
        sim.advance(200);
    }
    let v4 = sim.join_with(0, "v", None, Some(seen), None);
    assert!(matches!(
        sim.client(0, v4).received[0],
        ServerMessage::Snapshot(_)
    ));
    // From the future (a client of an earlier incarnation): snapshot.
    let v5 = sim.join_with(0, "v", None, Some(sim.room(0).seq() + 5), None);
    assert!(matches!(
        sim.client(0, v5).received[0],
        ServerMessage::Snapshot(_)
    ));
}

#[test]
fn restarted_room_continues_seeded_seq() {
    let seed = RoomSeed {
        last_seq: 500,
        likes: 77,
        ..RoomSeed::default()
    };
    let mut sim = Sim::with_seed(1, config(), seed);
    let v = sim.join_with(0, "v", None, Some(480), None);
    let ServerMessage::Snapshot(s) = &sim.client(0, v).received[0] else {
        panic!("old since must get a snapshot after a restart")
    };
    assert_eq!((s.seq, s.likes), (500, 77));
    sim.advance(1000);
    sim.chat(0, v, "after restart");
    sim.advance(200);
    assert_eq!(sim.persisted.last().and_then(|e| e.seq), Some(501));
}

#[test]
fn viewer_counts_and_samples() {
    let mut sim = Sim::new(1, config());
    let a = sim.join(0, "a", None);
    let _a2 = sim.join(0, "a", None); // second tab, same identity
    let b = sim.join(0, "b", None);
    sim.advance(1500);
    let counts = sim.room(0).viewers();
    assert_eq!((counts.current, counts.peak, counts.cumulative), (3, 3, 2));
    sim.leave(0, b);
    sim.leave(0, a);
    sim.advance(1500);
    let counts = sim.room(0).viewers();
    assert_eq!((counts.current, counts.peak, counts.cumulative), (1, 3, 2));
    sim.advance(120_000);
    assert!(sim.samples.len() >= 2);
    // `viewers` frames at most once per second.
    let c = sim.client(0, _a2);
    let n = c.count(is(|m| match m {
        ServerMessage::Viewers { .. } => Some(()),
        _ => None,
    }));
    assert!(n <= 4, "{n} viewers frames");
}

#[test]
fn outgoing_queue_overflow_closes_with_lagging_code() {
    use streaming::hub::{CLOSE_LAGGING, Frame, OutboundQueue, Overflow};
    let mut q: OutboundQueue<Frame> = OutboundQueue::new(4, 1 << 20);
    let f = Frame::from_json("{}");
    for _ in 0..4 {
        q.push(f.clone()).unwrap();
    }
    assert_eq!(q.push(f), Err(Overflow));
    assert_eq!(CLOSE_LAGGING, 4001);
}

#[test]
fn nothing_before_the_grace_then_sequences() {
    let config = RoomConfig {
        join_grace: Duration::from_millis(1500),
        ..config()
    };
    let mut sim = Sim::new(1, config);
    assert!(!sim.room(0).is_sequencer());
    let v = sim.join(0, "v", None);
    sim.chat(0, v, "早到的消息");
    sim.advance(2000);
    assert!(sim.room(0).is_sequencer());
    assert_eq!(sim.client(0, v).chat_texts(), vec!["早到的消息"]);
}

#[test]
fn draw_steps_reach_every_node_in_order_and_replay_on_resume() {
    use streaming::hub::{DrawSeedInfo, DrawUpdate};
    let mut sim = Sim::new(2, config());
    let a = sim.join(0, "va", None);
    let b = sim.join(1, "vb", None);
    sim.advance(1000);
    sim.settle();
    let seen = sim.client(1, b).last_seq();
    sim.input(
        1,
        Input::Draw {
            update: DrawUpdate::Seed(DrawSeedInfo {
                draw_id: "d".into(),
                seed: "00".repeat(32),
                reveals: vec![],
                beacon_text: None,
                units: 3,
            }),
            step: Some(0),
        },
    );
    for number in 1..=3 {
        sim.input(
            0,
            Input::Draw {
                update: DrawUpdate::Number {
                    draw_id: "d".into(),
                    number,
                    unit: format!("U{number}"),
                    size: 1,
                },
                step: Some(number),
            },
        );
    }
    sim.advance(500);
    sim.settle();
    let numbers = |c: &crate::sim::Client| -> Vec<u64> {
        c.received
            .iter()
            .filter_map(|m| match m {
                ServerMessage::DrawNumber { number, .. } => Some(*number),
                _ => None,
            })
            .collect()
    };
    for (node, conn) in [(0, a), (1, b)] {
        let c = sim.client(node, conn);
        assert_eq!(
            c.count(is(|m| match m {
                ServerMessage::DrawSeed { .. } => Some(()),
                _ => None,
            })),
            1
        );
        assert_eq!(numbers(c), vec![1, 2, 3], "node {node}");
        c.assert_consistent(false);
    }
    // A viewer who missed the steps gets them replayed, in order, with their seqs.
    let late = sim.join_with(1, "vc", None, Some(seen), None);
    assert_eq!(numbers(sim.client(1, late)), vec![1, 2, 3]);
}

#[test]
fn media_state_reaches_every_node_once_and_is_in_the_snapshot() {
    let mut sim = Sim::new(2, config());
    let a = sim.join(0, "va", None);
    let b = sim.join(1, "vb", None);
    sim.advance(2000);
    // The publisher connects on node 1; the shell may assert it again and again.
    for _ in 0..3 {
        sim.input(1, Input::MediaChanged(true));
        sim.advance(200);
    }
    let publishing = |c: &crate::sim::Client| -> Vec<bool> {
        c.received
            .iter()
            .filter_map(|m| match m {
                ServerMessage::MediaState { publishing, .. } => Some(*publishing),
                ServerMessage::Batch { messages } => messages.iter().find_map(|m| match m {
                    ServerMessage::MediaState { publishing, .. } => Some(*publishing),
                    _ => None,
                }),
                _ => None,
            })
            .collect()
    };
    assert_eq!(publishing(sim.client(0, a)), vec![true]);
    assert_eq!(publishing(sim.client(1, b)), vec![true]);
    let late = sim.join(0, "vc", None);
    sim.advance(200);
    let ServerMessage::Snapshot(snapshot) = &sim.client(0, late).received[0] else {
        panic!("a join starts with a snapshot");
    };
    assert!(snapshot.media.publishing);
    // The publisher goes away: one `false` everywhere.
    sim.input(1, Input::MediaChanged(false));
    sim.advance(200);
    assert_eq!(publishing(sim.client(0, a)), vec![true, false]);
    assert_eq!(publishing(sim.client(1, b)), vec![true, false]);
    sim.client(0, a).assert_consistent(false);
    sim.client(1, b).assert_consistent(false);
}
