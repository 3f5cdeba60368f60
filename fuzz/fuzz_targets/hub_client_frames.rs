//! Frames from any browser: a room must answer every text frame (error or effect) and
//! never panic, whatever the bytes, with the sensitive-word list on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streaming::hub::{
    ConnId, EventInfo, EventStatus, Input, Millis, NodeId, Room, RoomConfig, RoomSeed,
    SensitiveMode, SensitiveWords, StaffRole, Viewer, ViewerId, clean_message, fold,
    parse_client_frame,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_client_frame(&text, 4096);
    let _ = clean_message(&text, 500);
    let _ = fold(&text);
    let config = RoomConfig {
        sensitive: SensitiveWords::parse("坏词\nbadword\n", SensitiveMode::Mask)
            .expect("word list"),
        ..RoomConfig::default()
    };
    let event = EventInfo {
        id: "fuzz".into(),
        title: "fuzz".into(),
        status: EventStatus::Live,
        details: Default::default(),
    };
    let now = Millis(1_700_000_000_000);
    let (mut room, _) = Room::new(NodeId("n".into()), event, RoomSeed::default(), config, now);
    // A viewer and a moderator each send the frame (staff paths differ).
    for (conn, role) in [(1, None), (2, Some(StaffRole::Moderator))] {
        let viewer = Viewer {
            id: ViewerId(format!("v{conn}")),
            nickname: "网友".into(),
            ip: None,
        };
        room.handle(
            now,
            Input::Join {
                conn: ConnId(conn),
                viewer,
                role,
                since: None,
            },
        );
        room.handle(
            now,
            Input::Text {
                conn: ConnId(conn),
                text: text.to_string(),
            },
        );
    }
    room.handle(Millis(now.0 + 1_000), Input::Tick);
});
