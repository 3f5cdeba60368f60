//! `gongkai draw ...` and `gongkai keys ...`: the notary's offline tools.
//! (Placeholder: filled in by the draw-engine work.)
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum DrawCommand {
    /// Verify a signed transcript.
    Verify {
        /// The signed transcript file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key file.
    Generate {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

pub fn run_draw(_cmd: DrawCommand) -> ExitCode {
    ExitCode::from(2)
}

pub fn run_keys(_cmd: KeysCommand) -> ExitCode {
    ExitCode::from(2)
}
