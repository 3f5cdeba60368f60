//! Effect transcripts of small scripts, reviewed as insta snapshots: a change in what the
//! room emits (frames, persistence, bus traffic) shows up as a diff.

use streaming::hub::{EventStatus, Input, StaffRole};

use crate::sim::{Sim, config};

fn transcript(script: impl FnOnce(&mut Sim)) -> String {
    let mut sim = Sim::new(1, config());
    sim.advance(1000);
    sim.record_log = true;
    script(&mut sim);
    sim.log.join("\n")
}

#[test]
fn chat_moderation_transcript() {
    let out = transcript(|sim| {
        let m = sim.join(0, "mod", Some(StaffRole::Moderator));
        let v = sim.join(0, "v", None);
        sim.advance(1000);
        sim.chat(0, v, "你好\u{202E}！");
        sim.advance(100);
        let id = sim.room(0).seq();
        sim.say(
            0,
            m,
            &format!(r#"{{"type":"chat.delete","message_id":{id},"ref":"r1"}}"#),
        );
        sim.say(0, v, r#"{"type":"chat.delete","message_id":1}"#);
        sim.say(0, v, "{");
        sim.say(0, v, r#"{"type":"ping","t":5}"#);
        sim.advance(100);
    });
    insta::assert_snapshot!(out);
}

#[test]
fn qa_and_status_transcript() {
    let out = transcript(|sim| {
        let host = sim.join(0, "host", Some(StaffRole::Broadcaster));
        let v = sim.join(0, "v", None);
        sim.advance(1000);
        sim.say(0, v, r#"{"type":"question.ask","text":"几时完工？"}"#);
        sim.advance(100);
        let id = sim.room(0).seq();
        sim.say(
            0,
            v,
            &format!(r#"{{"type":"question.upvote","question_id":{id}}}"#),
        );
        sim.say(
            0,
            v,
            &format!(r#"{{"type":"question.upvote","question_id":{id}}}"#),
        );
        sim.advance(100);
        sim.say(
            0,
            host,
            &format!(r#"{{"type":"question.answer","question_id":{id},"answer":"年底。"}}"#),
        );
        sim.input(0, Input::StatusChanged(EventStatus::Ended));
        sim.advance(200);
    });
    insta::assert_snapshot!(out);
}
