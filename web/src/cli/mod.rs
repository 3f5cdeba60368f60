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

/// Every setting, shown by `gongkai serve --help`.
const CONFIG_HELP: &str = "\
Settings (gongkai.toml key / environment variable; flags above override both):
  listen                          GONGKAI_LISTEN                  127.0.0.1:8080
  data_dir                        GONGKAI_DATA_DIR                ./data
  database_url                    GONGKAI_DATABASE_URL            sqlite://<data_dir>/gongkai.db
  public_url                      GONGKAI_PUBLIC_URL              (unset; https => Secure cookies)
  log_format                      GONGKAI_LOG_FORMAT              text | json
  log_level                       GONGKAI_LOG_LEVEL               info
  nats_url                        GONGKAI_NATS_URL                (unset: single node)
  trust_forwarded_for             GONGKAI_TRUST_FORWARDED_FOR     false
  shutdown_timeout_secs           GONGKAI_SHUTDOWN_TIMEOUT_SECS   10
  max_body_bytes                  GONGKAI_MAX_BODY_BYTES          1048576
  metrics_token                   GONGKAI_METRICS_TOKEN           (unset: /metrics is open; set: Bearer token required)
  [auth] session_hours            GONGKAI_AUTH_SESSION_HOURS      12
  [auth] login_per_user_per_minute GONGKAI_AUTH_LOGIN_PER_USER_PER_MINUTE 5 (per username and address)
  [auth] login_per_account_per_minute GONGKAI_AUTH_LOGIN_PER_ACCOUNT_PER_MINUTE 30 (per username, all addresses)
  [auth] login_per_ip_per_minute  GONGKAI_AUTH_LOGIN_PER_IP_PER_MINUTE   20
  [hub] sensitive_words_file      GONGKAI_HUB_SENSITIVE_WORDS_FILE (unset: no list)
  [hub] sensitive_mode            GONGKAI_HUB_SENSITIVE_MODE      mask | reject
  [hub] coalesce_ms               GONGKAI_HUB_COALESCE_MS         100
  [hub] room_idle_secs            GONGKAI_HUB_ROOM_IDLE_SECS      60
  [hub] queue_frames              GONGKAI_HUB_QUEUE_FRAMES        256
  [hub] queue_bytes               GONGKAI_HUB_QUEUE_BYTES         1048576
  [hub] client_ping_secs          GONGKAI_HUB_CLIENT_PING_SECS    25
  [hub] slow_mode_per_ip          GONGKAI_HUB_SLOW_MODE_PER_IP    3
  [hub] votes_per_question_per_ip GONGKAI_HUB_VOTES_PER_QUESTION_PER_IP 3
  [hub] limit_per_ip              GONGKAI_HUB_LIMIT_PER_IP        true (false: load tests)
  [events] reopen_window_secs     GONGKAI_EVENTS_REOPEN_WINDOW_SECS 900 (0: an ended event cannot be reopened)
  [media] bind_ip                 GONGKAI_MEDIA_BIND_IP           0.0.0.0 (all non-loopback interfaces)
  [media] udp_port                GONGKAI_MEDIA_UDP_PORT          0 (unset; else one UDP port for every peer)
  [media] udp_port_min            GONGKAI_MEDIA_UDP_PORT_MIN      0 (with max 0: ephemeral ports)
  [media] udp_port_max            GONGKAI_MEDIA_UDP_PORT_MAX      0 (one port per peer connection)
  [media] public_ip               GONGKAI_MEDIA_PUBLIC_IP         (unset; set behind 1:1 NAT)
  [media] ice_servers             GONGKAI_MEDIA_ICE_SERVERS       (unset; comma-separated stun:/turn: URLs)
  [media] turn_username           GONGKAI_MEDIA_TURN_USERNAME     (unset)
  [media] turn_credential         GONGKAI_MEDIA_TURN_CREDENTIAL   (unset; sent to clients in Link headers)
  [media] turn_secret             GONGKAI_MEDIA_TURN_SECRET       (unset; coturn static-auth-secret: fresh TURN credentials per answer)
  [media] turn_ttl_secs           GONGKAI_MEDIA_TURN_TTL_SECS     3600 (lifetime of each such credential)
  [media] max_sdp_bytes           GONGKAI_MEDIA_MAX_SDP_BYTES     65536
  [draw] organiser_key_file       GONGKAI_DRAW_ORGANISER_KEY_FILE <data_dir>/organiser.key (created 0600)
  [draw] records_key_file         GONGKAI_DRAW_RECORDS_KEY_FILE   <data_dir>/records.key (created 0600)
  [draw] pace_ms                  GONGKAI_DRAW_PACE_MS            200
  [draw] apply_per_ip_per_minute  GONGKAI_DRAW_APPLY_PER_IP_PER_MINUTE 30
  [draw] apply_per_child_per_minute GONGKAI_DRAW_APPLY_PER_CHILD_PER_MINUTE 5
  [lookup] per_ip_per_minute      GONGKAI_LOOKUP_PER_IP_PER_MINUTE 10
  [lookup] per_child_per_minute   GONGKAI_LOOKUP_PER_CHILD_PER_MINUTE 10
  [limits] header_timeout_secs   GONGKAI_LIMITS_HEADER_TIMEOUT_SECS 10 (also idle connections)
  [limits] body_timeout_secs     GONGKAI_LIMITS_BODY_TIMEOUT_SECS 60 (whole body)
  [limits] websockets_per_ip     GONGKAI_LIMITS_WEBSOCKETS_PER_IP 200
  [limits] whep_sessions_per_ip  GONGKAI_LIMITS_WHEP_SESSIONS_PER_IP 100
  [limits] viewer_identities_per_ip_per_hour GONGKAI_LIMITS_VIEWER_IDENTITIES_PER_IP_PER_HOUR 30
  [media] recording               GONGKAI_MEDIA_RECORDING         true (one WebM file per publisher session)
  [media] recordings_dir          GONGKAI_MEDIA_RECORDINGS_DIR    <data_dir>/recordings
Unknown keys and invalid values stop the start with an error naming the key (exit 2).";

#[derive(Debug, Parser)]
#[command(name = "gongkai", version = VERSION, about = "公开 gongkai: public affairs, live and verifiable")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP, WebSocket hub, media) on one port.
    #[command(after_help = CONFIG_HELP)]
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
