//! Fan-out cost of the hub core, without sockets: how much CPU one delivery costs when a
//! broadcast is serialized once and shared, versus serialized per connection.
//!
//! `cargo bench -p streaming --bench hub_fanout` (plain binary, no criterion: the numbers
//! are large enough that a few repetitions and the median are stable). Figures go to the
//! `## Hub core` section of `docs/benchmarks.md`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use streaming::hub::{
    ConnId, Effect, EventInfo, EventStatus, Frame, Input, Millis, NodeId, OutboundQueue, Room,
    RoomConfig, RoomSeed, ServerMessage, Viewer, ViewerId,
};

static VIEWER_COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10_000);
const MESSAGES: u64 = 2_000;
const RUNS: usize = 5;

fn main() {
    let viewers: u64 = std::env::var("HUB_BENCH_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    VIEWER_COUNT.store(viewers, std::sync::atomic::Ordering::Relaxed);
    #[allow(non_snake_case)] // reason: reads like the constant it replaces
    let VIEWERS = viewers;
    println!("hub core fan-out, {VIEWERS} local connections, {MESSAGES} chat messages\n");
    for (label, per_second) in [
        ("1 msg per 100 ms window (no batching)", 10),
        ("100 msg/s (~10 per frame)", 100),
        ("1000 msg/s (~100 per frame)", 1000),
    ] {
        let results: Vec<Run> = (0..RUNS).map(|_| run(per_second)).collect();
        let mut per_delivery: Vec<f64> = results.iter().map(|r| r.ns_per_frame_delivery).collect();
        let mut per_message: Vec<f64> = results.iter().map(|r| r.ns_per_message_delivery).collect();
        let mut core: Vec<f64> = results.iter().map(|r| r.core_ns_per_message).collect();
        let frames = results[0].frames;
        println!("{label}:");
        println!("  frames broadcast:               {frames}");
        println!(
            "  room.handle per chat message:   {:>8.0} ns",
            median(&mut core)
        );
        println!(
            "  shell fan-out per frame/conn:   {:>8.1} ns",
            median(&mut per_delivery)
        );
        println!(
            "  total per message delivered:    {:>8.1} ns",
            median(&mut per_message)
        );
    }
    let mut naive: Vec<f64> = (0..RUNS).map(|_| naive_per_delivery()).collect();
    println!(
        "\nfor comparison, serializing chat.message per connection: {:.1} ns per delivery",
        median(&mut naive)
    );
}

struct Run {
    frames: u64,
    core_ns_per_message: f64,
    ns_per_frame_delivery: f64,
    ns_per_message_delivery: f64,
}

/// Drives one room as the shell would: joins, chat at a rate, ticks at `poll_timeout`,
/// and every `Broadcast` pushed into each connection's bounded queue, which a "socket
/// writer" then drains.
#[allow(non_snake_case)] // reason: reads like the constant it replaces
fn run(per_second: u64) -> Run {
    let VIEWERS = VIEWER_COUNT.load(std::sync::atomic::Ordering::Relaxed);
    let event = EventInfo {
        id: "1".into(),
        title: "bench".into(),
        status: EventStatus::Live,
        details: Default::default(),
    };
    let config = RoomConfig {
        join_grace: Duration::ZERO,
        chat_rate: streaming::hub::RateLimit::new(1e9, 1e9),
        frame_rate: streaming::hub::RateLimit::new(1e9, 1e9),
        ..RoomConfig::default()
    };
    let mut now = Millis(1_700_000_000_000);
    let (mut room, _) = Room::new(NodeId::from("n"), event, RoomSeed::default(), config, now);
    let mut queues: Vec<OutboundQueue<Frame>> = Vec::with_capacity(VIEWERS as usize);
    for i in 0..VIEWERS {
        let viewer = Viewer {
            id: ViewerId(format!("viewer-{i}")),
            nickname: format!("网友{i}"),
            ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, (i >> 8) as u8, i as u8))),
        };
        room.handle(
            now,
            Input::Join {
                conn: ConnId(i),
                viewer,
                role: None,
                since: None,
            },
        );
        queues.push(OutboundQueue::new(1024, 1 << 20));
    }
    now = Millis(now.0 + 5_000);
    room.handle(now, Input::Tick);

    let step = 1000 / per_second;
    let mut frames = 0u64;
    let mut deliveries = 0u64;
    let mut core = Duration::ZERO;
    let mut fanout = Duration::ZERO;
    let text = r#"{"type":"chat.send","text":"请问老旧小区加装电梯的补贴什么时候发放？"}"#;
    let mut fan_out = |effects: Vec<Effect>, queues: &mut Vec<OutboundQueue<Frame>>| {
        let start = Instant::now();
        let mut any = false;
        for effect in effects {
            if let Effect::Broadcast { frame } = effect {
                any = true;
                frames += 1;
                for q in queues.iter_mut() {
                    let _ = q.push(frame.clone());
                    deliveries += 1;
                }
            }
        }
        if !any {
            return;
        }
        // The socket writers: take everything queued (a real one writes it out).
        for q in queues.iter_mut() {
            while let Some(f) = q.pop() {
                black_box(f.len());
            }
        }
        fanout += start.elapsed();
    };
    for m in 0..MESSAGES {
        let conn = ConnId(m % VIEWERS);
        let start = Instant::now();
        let mut effects = room.handle(
            now,
            Input::Text {
                conn,
                text: text.to_owned(),
            },
        );
        while room.poll_timeout() <= now {
            effects.extend(room.handle(now, Input::Tick));
        }
        core += start.elapsed();
        fan_out(effects, &mut queues);
        now = Millis(now.0 + step);
        if room.poll_timeout() <= now {
            let start = Instant::now();
            let effects = room.handle(now, Input::Tick);
            core += start.elapsed();
            fan_out(effects, &mut queues);
        }
    }
    let start = Instant::now();
    let effects = room.handle(Millis(now.0 + 1_000), Input::Tick);
    core += start.elapsed();
    fan_out(effects, &mut queues);
    black_box(deliveries);
    let messages_delivered = MESSAGES * VIEWERS;
    Run {
        frames,
        core_ns_per_message: core.as_nanos() as f64 / MESSAGES as f64,
        ns_per_frame_delivery: fanout.as_nanos() as f64 / deliveries.max(1) as f64,
        ns_per_message_delivery: (core + fanout).as_nanos() as f64 / messages_delivered as f64,
    }
}

/// What per-connection serialization would cost (the thing the shared frame avoids).
fn naive_per_delivery() -> f64 {
    let message = ServerMessage::ChatMessage(streaming::hub::ChatMessageView {
        seq: 12,
        id: 12,
        author: streaming::hub::AuthorView {
            nickname: "网友12".into(),
            role: None,
        },
        text: "请问老旧小区加装电梯的补贴什么时候发放？".into(),
        time: Millis(1_700_000_000_000),
    });
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(Frame::new(black_box(&message)));
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
