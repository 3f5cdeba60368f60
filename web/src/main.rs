//! The `gongkai` binary. Exit codes: 0 success, 1 runtime failure (or a failed check in
//! the draw tools), 2 usage or configuration error.

use std::process::ExitCode;

use clap::Parser;
use web::cli::{Cli, Command};
use web::config::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Draw { command } => {
            exit_quietly_on_broken_pipe();
            web::cli::draw::run_draw(command)
        }
        Command::Keys { command } => {
            exit_quietly_on_broken_pipe();
            web::cli::draw::run_keys(command)
        }
        Command::Serve { config } => {
            let settings = match Settings::load(&config) {
                Ok(s) => s,
                Err(e) => return config_error(e),
            };
            if let Err(e) = web::telemetry::init(settings.log_format, &settings.log_level) {
                eprintln!("gongkai: {e:#}");
                return ExitCode::from(2);
            }
            run_async(web::server::serve(settings))
        }
        Command::Admin { config, command } => {
            let settings = match Settings::load(&config) {
                Ok(s) => s,
                Err(e) => return config_error(e),
            };
            run_async(web::cli::admin::run(&settings, command))
        }
    }
}

/// `gongkai draw verify FILE | head` closes standard output early. Rust ignores SIGPIPE,
/// so the next `println!` panics with a backtrace; a Unix tool would just stop. Exit as
/// one killed by SIGPIPE would (128 + 13), without the panic message.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn config_error(e: web::config::ConfigError) -> ExitCode {
    eprintln!("gongkai: configuration error: {e}");
    ExitCode::from(2)
}

fn run_async(fut: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gongkai: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gongkai: {e:#}");
            ExitCode::FAILURE
        }
    }
}
