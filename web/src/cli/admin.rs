//! `gongkai admin ...`: account management from the server's shell. Passwords come from
//! stdin (a prompt on a terminal), never from flags, so they stay out of shell history
//! and process listings.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use crate::auth::{
    Role, hash_password, new_api_token, secret_hash, validate_password, validate_username,
};
use crate::config::Settings;
use crate::store::{ApiTokens, Store, StoreError, now_ms};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a staff account; the password is read from stdin.
    CreateUser {
        #[arg(long)]
        username: String,
        /// admin, broadcaster, moderator, organiser or notary; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
    },
    /// Set a new password (read from stdin) and end the user's sessions.
    ResetPassword {
        #[arg(long)]
        username: String,
    },
    /// Replace a user's roles.
    SetRoles {
        #[arg(long)]
        username: String,
        #[arg(long = "role")]
        roles: Vec<Role>,
    },
    /// List staff accounts and their roles.
    ListUsers,
    /// Create a personal API token; it is printed once.
    CreateToken {
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: String,
    },
}

pub async fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url())
        .await
        .context("cannot open the database")?;
    let result = run_with(&store, command).await;
    store.close().await;
    result
}

async fn run_with(store: &Store, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser { username, roles } => {
            validate_username(&username).map_err(|m| anyhow::anyhow!("--username: {m}"))?;
            let password = read_password()?;
            let hash = hash_password(&password)?;
            match store.create_user(&username, &hash, &roles, now_ms()).await {
                Ok(user) => {
                    store
                        .audit(
                            "cli",
                            "user.create",
                            &serde_json::json!({"username": user.username, "roles": user.roles})
                                .to_string(),
                            now_ms(),
                        )
                        .await?;
                    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                    println!(
                        "created user {} with roles {}",
                        user.username,
                        roles.join(", ")
                    );
                    Ok(())
                }
                Err(StoreError::Conflict(_)) => {
                    bail!("--username: user `{username}` already exists")
                }
                Err(e) => Err(e.into()),
            }
        }
        AdminCommand::ResetPassword { username } => {
            let password = read_password()?;
            let hash = hash_password(&password)?;
            let Some(revoked) = store
                .set_password(&username, &hash, ApiTokens::Revoke, now_ms())
                .await?
            else {
                bail!("--username: no user `{username}`");
            };
            store
                .audit(
                    "cli",
                    "user.reset_password",
                    &serde_json::json!({"username": username, "tokens_revoked": revoked})
                        .to_string(),
                    now_ms(),
                )
                .await?;
            println!(
                "password of {username} changed; their sessions were ended and {revoked} API token(s) revoked"
            );
            Ok(())
        }
        AdminCommand::SetRoles { username, roles } => {
            let Some(revoked) = store.set_roles(&username, &roles, now_ms()).await? else {
                bail!("--username: no user `{username}`");
            };
            store
                .audit(
                    "cli",
                    "user.roles",
                    &serde_json::json!({"username": username, "roles": roles, "tokens_revoked": revoked})
                        .to_string(),
                    now_ms(),
                )
                .await?;
            println!("roles of {username} updated");
            Ok(())
        }
        AdminCommand::ListUsers => {
            for user in store.list_users().await? {
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                println!("{}\t{}", user.username, roles.join(","));
            }
            Ok(())
        }
        AdminCommand::CreateToken { username, name } => {
            let Some((user, _)) = store.user_with_password(&username).await? else {
                bail!("--username: no user `{username}`");
            };
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 {
                bail!("--name: must have 1 to 64 characters");
            }
            let token = new_api_token();
            let info = store
                .create_token(user.id, name, &secret_hash(&token), now_ms())
                .await?;
            store
                .audit(
                    "cli",
                    "token.create",
                    &serde_json::json!({"username": username, "id": info.id, "name": name})
                        .to_string(),
                    now_ms(),
                )
                .await?;
            println!("{token}");
            Ok(())
        }
    }
}

/// One line from stdin; on a terminal, a hidden prompt asked twice.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    validate_password(&password).map_err(|m| anyhow::anyhow!("password (stdin): {m}"))?;
    Ok(password)
}
