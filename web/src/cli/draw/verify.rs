//! `gongkai draw verify`.

use std::path::Path;
use std::time::Instant;

use lottery::draw::Phase;
use lottery::private::check_private_records;
use lottery::verify::{Summary, parse_file, verify_parsed};
use lottery::{CheckFailure, PrivateFile, SignedTranscript, TrustedKeys};

use super::threads::Threads;
use super::{Failure, files, parse_public_key};

pub(crate) fn run(
    file: &Path,
    organiser_key: Option<&str>,
    notary_key: Option<&str>,
    private: Option<&Path>,
    timings: bool,
) -> Result<(), Failure> {
    let trusted = TrustedKeys {
        organiser: parse_public_key("--organiser-key", organiser_key)?,
        notary: parse_public_key("--notary-key", notary_key)?,
    };
    let private = private.map(read_private).transpose()?;
    let mut clock = PhaseClock::new(timings);
    let bytes = files::read_large(file)?;
    clock.mark("read file");
    let result = verify_file(&bytes, &trusted, &mut clock).and_then(|(signed, summary)| {
        if let Some(private) = &private {
            let transcript = &signed.transcript;
            check_private_records(
                &transcript.announcement.draw_id,
                &transcript.leaves,
                private,
            )?;
            clock.mark("private records");
        }
        // The process exits right after printing: freeing a million leaves one by one
        // would only add a tenth of a second to a notary's wait.
        std::mem::forget(signed);
        Ok(summary)
    });
    if timings {
        eprintln!("  {:<52} {:>8.1} ms", "total", clock.total_ms());
    }
    match result {
        Ok(summary) => {
            print_summary(&summary, private.is_some());
            Ok(())
        }
        Err(failure) => Err(report_failure(&failure)),
    }
}

/// Parses and verifies, timing each phase.
pub(crate) fn verify_file(
    bytes: &[u8],
    trusted: &TrustedKeys,
    clock: &mut PhaseClock,
) -> Result<(SignedTranscript, Summary), CheckFailure> {
    let threads = Threads::available();
    let parsed = parse_file(bytes, &threads)?;
    clock.mark(if parsed.leaves_were_canonical() {
        "parse JSON (canonical leaves: parsed and hashed in place)"
    } else {
        "parse JSON"
    });
    let summary = verify_parsed(&parsed, trusted, &threads, &mut |phase| {
        clock.mark(phase_name(phase))
    })?;
    Ok((parsed.into_signed(), summary))
}

/// Prints `invalid` and the failed check; the caller exits with 1.
pub(crate) fn report_failure(failure: &CheckFailure) -> Failure {
    println!("invalid");
    println!("failed check: {} ({})", failure.check, failure.check.name());
    println!("detail: {}", failure.detail);
    Failure::Invalid(String::new())
}

fn read_private(path: &Path) -> Result<PrivateFile, Failure> {
    let bytes = files::read(path)?;
    PrivateFile::parse(&bytes).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

fn print_summary(summary: &Summary, private_checked: bool) {
    println!("valid");
    println!("draw:             {}", summary.draw_id);
    println!(
        "mechanism:        {}, {}",
        summary.mechanism.as_str(),
        summary.multiples.as_str()
    );
    println!("applications:     {}", summary.applications);
    println!("units:            {}", summary.units);
    println!("kindergartens:    {}", summary.kindergartens);
    println!("seats:            {}", summary.seats);
    println!(
        "admitted:         {} children in {} units",
        summary.admitted_children, summary.admitted_units
    );
    println!("seed:             {}", summary.seed);
    println!("announcement:     {}", summary.announcement_hash);
    println!("transcript hash:  {}", summary.transcript_hash);
    for (role, key) in &summary.signers {
        println!("signed by:        {} {}", role.as_str(), hex::encode(key));
    }
    if private_checked {
        println!("private records:  every leaf matches its record");
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::InputsChecked => "check inputs (leaves, groups, Merkle root, reveals, seed)",
        Phase::LotteryDrawn => "lottery",
        Phase::Allocated => "allocation and waitlists (transcript hash beside)",
        Phase::Serialized => "canonical JSON",
        Phase::ResultsCompared => "compare results",
        Phase::SignaturesChecked => "signatures",
    }
}

/// Prints the time since the previous mark, when asked to.
pub(crate) struct PhaseClock {
    enabled: bool,
    start: Instant,
    last: Instant,
}

impl PhaseClock {
    pub(crate) fn new(enabled: bool) -> PhaseClock {
        let now = Instant::now();
        PhaseClock {
            enabled,
            start: now,
            last: now,
        }
    }

    pub(crate) fn mark(&mut self, what: &str) {
        let now = Instant::now();
        if self.enabled {
            eprintln!(
                "  {:<52} {:>8.1} ms",
                what,
                (now - self.last).as_secs_f64() * 1000.0
            );
        }
        self.last = now;
    }

    pub(crate) fn total_ms(&self) -> f64 {
        (Instant::now() - self.start).as_secs_f64() * 1000.0
    }
}
