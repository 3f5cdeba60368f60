//! `gongkai draw ...` and `gongkai keys ...`: the notary's offline tools. Nothing here
//! touches the network or the database; the draw itself is the pure `lottery` crate, and
//! this module only reads and writes files and prints.
//!
//! Exit codes: 0 valid / done, 1 a check failed (the transcript, receipt or private file is
//! not what it claims), 2 usage error or unreadable input.
//!
//! # Layout
//! - `verify`: `draw verify`, with `--private` and trusted keys
//! - `receipt`: `draw check-receipt`
//! - `countersign`: `draw countersign`
//! - `simulate`: `draw simulate`, a synthetic draw with phase timings
//! - `files`: reading inputs, writing outputs (0600 for secrets, atomic replacement)
//! - `threads`: the `lottery::parallel::Join` that runs independent draw work on the cores

mod countersign;
mod files;
mod receipt;
mod simulate;
mod threads;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use lottery::{KeyFile, Mechanism, Multiples};

/// `gongkai draw <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum DrawCommand {
    /// Verify a signed transcript: re-run the draw and check every signature.
    /// Prints `valid` and a summary (exit 0) or the failed check (exit 1).
    Verify {
        /// The signed transcript file.
        file: PathBuf,
        /// Trust only this organiser key (64 hex digits) for organiser signatures.
        #[arg(long, value_name = "HEX")]
        organiser_key: Option<String>,
        /// Require a notary signature by this key (64 hex digits).
        #[arg(long, value_name = "HEX")]
        notary_key: Option<String>,
        /// The organiser's private application file: also check every leaf against it.
        #[arg(long, value_name = "FILE")]
        private: Option<PathBuf>,
        /// Print how long each phase took (to standard error).
        #[arg(long)]
        timings: bool,
    },
    /// Confirm a child's leaf from the application receipt and print the result.
    CheckReceipt {
        /// The signed transcript file.
        file: PathBuf,
        /// The application code on the receipt.
        #[arg(long)]
        app: String,
        /// The salt on the receipt (32 hex digits).
        #[arg(long)]
        salt: String,
        /// The child's 18-character resident ID number.
        #[arg(long)]
        child_id: String,
        /// The child's name as on the application.
        #[arg(long)]
        child_name: String,
        /// Trust only this organiser key (64 hex digits).
        #[arg(long, value_name = "HEX")]
        organiser_key: Option<String>,
    },
    /// Verify a signed transcript, then add the notary's signature.
    Countersign {
        /// The signed transcript file (replaced in place unless --out is given).
        file: PathBuf,
        /// The notary's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Write the countersigned transcript here instead of replacing FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Trust only this organiser key (64 hex digits).
        #[arg(long, value_name = "HEX")]
        organiser_key: Option<String>,
    },
    /// Run a complete synthetic draw (keys, private file, signed announcement and
    /// transcript) and print how long each phase took.
    Simulate {
        #[arg(long, default_value_t = 1000)]
        applications: usize,
        #[arg(long, default_value_t = 10)]
        kindergartens: usize,
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Any text: the same seed gives the same draw (with this version of gongkai).
        /// Without it, the simulation uses fresh OS randomness.
        #[arg(long)]
        seed: Option<String>,
        /// Choices per application (1 to 8).
        #[arg(long, default_value_t = 3)]
        choices: usize,
        /// Per mille of applications that are twins or triplets.
        #[arg(long, default_value_t = 50)]
        multiples_per_mille: u32,
        /// Total seats per mille of applications.
        #[arg(long, default_value_t = 900)]
        seats_per_mille: u32,
        #[arg(long, value_enum, default_value_t = MechanismArg::DeferredAcceptance)]
        mechanism: MechanismArg,
        #[arg(long, value_enum, default_value_t = MultiplesArg::WholeOrSkip)]
        multiples: MultiplesArg,
        /// Number of witnesses who commit to and reveal a secret.
        #[arg(long, default_value_t = 3)]
        witnesses: usize,
        /// Beacon text, as if published by a named public source.
        #[arg(long)]
        beacon: Option<String>,
    },
}

/// `gongkai keys <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key file (mode 0600) and print its public key in hex.
    Generate {
        /// Where to write the key file; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MechanismArg {
    DeferredAcceptance,
    ImmediateAcceptance,
}

impl From<MechanismArg> for Mechanism {
    fn from(arg: MechanismArg) -> Mechanism {
        match arg {
            MechanismArg::DeferredAcceptance => Mechanism::DeferredAcceptance,
            MechanismArg::ImmediateAcceptance => Mechanism::ImmediateAcceptance,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MultiplesArg {
    WholeOrSkip,
    WholeOrOverfill,
}

impl From<MultiplesArg> for Multiples {
    fn from(arg: MultiplesArg) -> Multiples {
        match arg {
            MultiplesArg::WholeOrSkip => Multiples::WholeOrSkip,
            MultiplesArg::WholeOrOverfill => Multiples::WholeOrOverfill,
        }
    }
}

pub fn run_draw(cmd: DrawCommand) -> ExitCode {
    let result = match cmd {
        DrawCommand::Verify {
            file,
            organiser_key,
            notary_key,
            private,
            timings,
        } => verify::run(
            &file,
            organiser_key.as_deref(),
            notary_key.as_deref(),
            private.as_deref(),
            timings,
        ),
        DrawCommand::CheckReceipt {
            file,
            app,
            salt,
            child_id,
            child_name,
            organiser_key,
        } => receipt::run(
            &file,
            &app,
            &salt,
            &child_id,
            &child_name,
            organiser_key.as_deref(),
        ),
        DrawCommand::Countersign {
            file,
            key,
            out,
            organiser_key,
        } => countersign::run(&file, &key, out.as_deref(), organiser_key.as_deref()),
        DrawCommand::Simulate {
            applications,
            kindergartens,
            out,
            seed,
            choices,
            multiples_per_mille,
            seats_per_mille,
            mechanism,
            multiples,
            witnesses,
            beacon,
        } => simulate::run(simulate::Options {
            params: lottery::simulate::SimulationParams {
                applications,
                kindergartens,
                choices,
                multiples_per_mille,
                seats_per_mille,
            },
            out,
            seed,
            mechanism: mechanism.into(),
            multiples: multiples.into(),
            witnesses,
            beacon,
        }),
    };
    finish(result)
}

pub fn run_keys(cmd: KeysCommand) -> ExitCode {
    let result = match cmd {
        KeysCommand::Generate { out } => generate_key(&out),
    };
    finish(result)
}

/// Why a command did not succeed, and so its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A check failed: exit 1. The message has been printed already when it is empty.
    Invalid(String),
    /// Usage error or unreadable input: exit 2.
    Usage(String),
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(message)) => {
            if !message.is_empty() {
                eprintln!("gongkai: {message}");
            }
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("gongkai: {message}");
            ExitCode::from(2)
        }
    }
}

fn generate_key(out: &std::path::Path) -> Result<(), Failure> {
    let key = KeyFile::generate(&mut rand::rngs::OsRng);
    files::write_secret_new(out, &key.to_bytes())?;
    println!("{}", key.public_key_hex());
    Ok(())
}

/// Parses a trusted public key given on the command line (64 hex digits, either case).
pub(crate) fn parse_public_key(
    flag: &str,
    text: Option<&str>,
) -> Result<Option<[u8; 32]>, Failure> {
    let Some(text) = text else { return Ok(None) };
    lottery::hash::parse_hex_array(&text.trim().to_ascii_lowercase())
        .map(Some)
        .map_err(|e| Failure::Usage(format!("{flag}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Draw {
            #[command(subcommand)]
            command: DrawCommand,
        },
        Keys {
            #[command(subcommand)]
            command: KeysCommand,
        },
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "gongkai",
            "draw",
            "verify",
            "signed.json",
            "--organiser-key",
            "ab",
            "--private",
            "p.json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Top::Draw {
                command: DrawCommand::Verify { .. }
            }
        ));
        let cli = Cli::try_parse_from([
            "gongkai",
            "draw",
            "simulate",
            "--applications",
            "10",
            "--out",
            "d",
            "--mechanism",
            "immediate-acceptance",
            "--multiples",
            "whole-or-overfill",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Top::Draw {
                command: DrawCommand::Simulate {
                    applications: 10,
                    ..
                }
            }
        ));
        assert!(Cli::try_parse_from(["gongkai", "keys", "generate", "--out", "k"]).is_ok());
        assert!(Cli::try_parse_from(["gongkai", "draw", "check-receipt", "f"]).is_err());
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(
            parse_public_key("--organiser-key", Some(&"AB".repeat(32)))
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            parse_public_key("--organiser-key", Some("abc")),
            Err(Failure::Usage(_))
        ));
    }
}
