//! `gongkai draw simulate`: a complete synthetic draw, step by step, with timings. The same
//! steps an organiser takes, so the figures are those of a real draw of that size.

use std::path::PathBuf;
use std::time::Instant;

use lottery::commit::commit;
use lottery::draw::{DrawInputs, Phase, run_with};
use lottery::jcs::WriteCanonical;
use lottery::signature::{Role, Signature, Signed};
use lottery::simulate::{SimulationParams, Synthetic, synthetic, witnesses};
use lottery::transcript::signed_transcript_frame;
use lottery::{
    Announcement, Beacon, BeaconKind, DrawId, DrawTime, KeyFile, Mechanism, Multiples, PrivateFile,
    SignedAnnouncement, SpecTag,
};
use rand::SeedableRng;
use rand_core::{CryptoRng, RngCore};
use sha2::Digest as _;

use super::threads::Threads;
use super::{Failure, files};

pub(crate) struct Options {
    pub params: SimulationParams,
    pub out: PathBuf,
    pub seed: Option<String>,
    pub mechanism: Mechanism,
    pub multiples: Multiples,
    pub witnesses: usize,
    pub beacon: Option<String>,
}

pub(crate) fn run(options: Options) -> Result<(), Failure> {
    if options.params.choices == 0 || options.params.choices > 8 {
        return Err(Failure::Usage("--choices must be 1 to 8".into()));
    }
    if options.params.kindergartens == 0 {
        return Err(Failure::Usage("--kindergartens must be at least 1".into()));
    }
    std::fs::create_dir_all(&options.out)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", options.out.display())))?;
    match &options.seed {
        // A seeded simulation is reproducible with this build (StdRng may change between
        // versions of `rand`; the draw's own randomness never uses it).
        Some(seed) => {
            let key: [u8; 32] = sha2::Sha256::digest(format!("gongkai-simulate\0{seed}")).into();
            simulate(&options, &mut rand::rngs::StdRng::from_seed(key))
        }
        None => simulate(&options, &mut rand::rngs::OsRng),
    }
}

fn simulate<R: CryptoRng + RngCore>(options: &Options, rng: &mut R) -> Result<(), Failure> {
    let draw_id = DrawId::parse("SIM-1").map_err(|e| Failure::Usage(e.to_string()))?;
    let mut timer = Timer::new();

    let Synthetic {
        kindergartens,
        mut applications,
    } = synthetic(options.params, rng);
    let organiser = KeyFile::generate(rng);
    timer.lap("generate applications and keys (setup)", false);

    let committed = commit(&mut applications).map_err(|e| Failure::Invalid(e.to_string()))?;
    timer.lap("leaves + Merkle root", false);

    let (witnesses, secrets) = witnesses(options.witnesses, &draw_id, rng);
    let announcement = Announcement {
        spec: SpecTag,
        draw_id: draw_id.clone(),
        title: format!(
            "Synthetic draw: {} applications, {} kindergartens",
            options.params.applications, options.params.kindergartens
        ),
        draw_time: DrawTime::parse("2026-06-18T09:30:00Z")
            .map_err(|e| Failure::Usage(e.to_string()))?,
        kindergartens,
        mechanism: options.mechanism,
        multiples: options.multiples,
        applications: committed.tree_head,
        witnesses,
        beacon: options.beacon.as_ref().map(|_| Beacon {
            kind: BeaconKind::PublicText,
            source: "text given to gongkai draw simulate --beacon".into(),
        }),
    };
    let announcement_signature = Signature::sign(
        organiser.signing_key(),
        Role::Organiser,
        Signed::Announcement,
        &announcement.hash(),
    );
    let signed_announcement = SignedAnnouncement {
        announcement: announcement.clone(),
        signatures: vec![announcement_signature.clone()],
    };
    timer.lap("announcement + signature", false);

    // From here to the signed transcript is the draw itself.
    timer.start_draw();
    let inputs = DrawInputs {
        announcement,
        announcement_signatures: vec![announcement_signature],
        leaves: committed.leaves,
        reveals: secrets,
        beacon_text: options.beacon.clone(),
    };
    let drawn = run_with(inputs, &Threads::available(), &mut |phase| match phase {
        Phase::InputsChecked => timer.lap(
            "draw: check inputs (leaves JSON, Merkle root, reveals, seed)",
            true,
        ),
        Phase::LotteryDrawn => timer.lap("draw: lottery", true),
        Phase::Allocated => timer.lap("draw: allocation and waitlists", true),
        Phase::Serialized => timer.lap("draw: canonical JSON + transcript hash", true),
        Phase::ResultsCompared | Phase::SignaturesChecked => {}
    })
    .map_err(|e| Failure::Invalid(e.to_string()))?;
    let signature = Signature::sign(
        organiser.signing_key(),
        Role::Organiser,
        Signed::Transcript,
        &drawn.hash,
    );
    let (head, tail) = signed_transcript_frame(&[signature]);
    timer.lap("draw: signature", true);
    let draw_ms = timer.draw_ms();

    let out = &options.out;
    let private = PrivateFile::new(draw_id, applications);
    let private_path = out.join("private.json");
    let key_path = out.join("organiser.key");
    for path in [&private_path, &key_path] {
        // Secrets are created fresh with mode 0600; a previous run's files are replaced.
        let _ = std::fs::remove_file(path);
    }
    files::write_secret_new(&private_path, &private.to_bytes())?;
    files::write_secret_new(&key_path, &organiser.to_bytes())?;
    files::write_replace(
        &out.join("announcement.json"),
        &signed_announcement.to_canonical_vec(),
    )?;
    let [transcript_head, leaves, transcript_tail] = drawn.canonical.parts();
    files::write_replace_parts(
        &out.join("signed.json"),
        &[&head, transcript_head, leaves, transcript_tail, tail],
    )?;
    timer.lap("write files", false);

    println!(
        "simulated draw: {} applications, {} units, {} kindergartens, {} seats",
        drawn.transcript.leaves.len(),
        drawn.transcript.lottery.len(),
        drawn.transcript.announcement.kindergartens.len(),
        drawn
            .transcript
            .announcement
            .kindergartens
            .iter()
            .map(|kg| kg.seats)
            .sum::<u64>(),
    );
    timer.print();
    println!(
        "  {:<56} {:>9.1} ms",
        "announcement -> signed transcript (total)", draw_ms
    );
    println!("transcript hash:  {}", drawn.hash);
    println!("organiser key:    {}", organiser.public_key_hex());
    println!(
        "wrote {}/{{signed.json,announcement.json,private.json,organiser.key}}",
        out.display()
    );
    Ok(())
}

/// Wall-clock laps. Draw laps are the ones between the signed announcement and the signed
/// transcript.
struct Timer {
    last: Instant,
    draw_start: Option<Instant>,
    draw_end: Option<Instant>,
    laps: Vec<(String, f64)>,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            last: Instant::now(),
            draw_start: None,
            draw_end: None,
            laps: Vec::new(),
        }
    }

    fn start_draw(&mut self) {
        let now = Instant::now();
        self.draw_start = Some(now);
        self.last = now;
    }

    fn lap(&mut self, what: &str, in_draw: bool) {
        let now = Instant::now();
        self.laps
            .push((what.to_owned(), (now - self.last).as_secs_f64() * 1000.0));
        if in_draw {
            self.draw_end = Some(now);
        }
        self.last = now;
    }

    fn draw_ms(&self) -> f64 {
        match (self.draw_start, self.draw_end) {
            (Some(start), Some(end)) => (end - start).as_secs_f64() * 1000.0,
            _ => 0.0,
        }
    }

    fn print(&self) {
        for (what, ms) in &self.laps {
            println!("  {what:<56} {ms:>9.1} ms");
        }
    }
}
