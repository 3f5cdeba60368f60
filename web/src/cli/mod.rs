//! The `gongkai` command line: `serve`, `admin ...`, and the offline `draw`/`keys` tools.

pub mod admin;
pub mod draw;

use clap::{Parser, Subcommand};

use crate::config::ConfigArgs;

pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GONGKAI_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "gongkai", version = VERSION, about = "公开 gongkai: public affairs, live and verifiable")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP, WebSocket hub, media) on one port.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage staff accounts and tokens in the configured database.
    Admin {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// The kindergarten-place draw, offline: verify, check a receipt, countersign, simulate.
    Draw {
        #[command(subcommand)]
        command: draw::DrawCommand,
    },
    /// Ed25519 keys for organisers and notaries.
    Keys {
        #[command(subcommand)]
        command: draw::KeysCommand,
    },
}
