//! Typed settings, layered: built-in defaults < `gongkai.toml` < `GONGKAI_*` environment
//! variables < command-line flags. Every layer is merged into one TOML table before it is
//! deserialised once, so an unknown key or a bad value is reported the same way wherever
//! it came from, naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// All settings of `gongkai serve` (and of the admin commands, which need the database).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the database, keys and recordings; created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://...` (default: `sqlite://<data_dir>/gongkai.db`) or `postgres://...`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// The URL users reach the service at (e.g. `https://gongkai.example.gov.cn`).
    /// Cookies are marked `Secure` when it is https.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `text` (human-readable) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `gongkai=debug,info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// NATS server for multi-node fan-out (e.g. `nats://127.0.0.1:4222`); unset: one node.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// Use the first `X-Forwarded-For` address as the client IP (only behind a trusted proxy).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>` (a scraper's
    /// secret; never logged).
    #[serde(default)]
    pub metrics_token: Option<secrecy::SecretString>,
    /// Largest accepted request body in bytes (uploads have their own limits).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub hub: HubSettings,
    #[serde(default)]
    pub events: EventSettings,
    #[serde(default)]
    pub media: MediaSettings,
    #[serde(default)]
    pub draw: DrawSettings,
    #[serde(default)]
    pub lookup: LookupSettings,
    #[serde(default)]
    pub limits: LimitsSettings,
}

/// Slow clients and per-address caps (docs/operations.md, "Limits and timeouts").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// A connection must send a request's complete header within this many seconds of
    /// opening, or of its previous response: a client dribbling header lines, or holding
    /// an idle (keep-alive or never used) connection, is disconnected after it.
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// A request's body must arrive in full within this many seconds of its header
    /// (a total, not per chunk). Responses (downloads) and WebSockets are not limited.
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// Open event WebSockets (`/ws/events/...`) per client IP; staff are not counted.
    #[serde(default = "default_websockets_per_ip")]
    pub websockets_per_ip: usize,
    /// Open WHEP viewer sessions per client IP (over all events).
    #[serde(default = "default_whep_sessions_per_ip")]
    pub whep_sessions_per_ip: usize,
    /// Viewer identities (`POST /api/v1/viewer`) per client IP per hour.
    #[serde(default = "default_viewer_identities_per_ip")]
    pub viewer_identities_per_ip_per_hour: u32,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            header_timeout_secs: default_header_timeout_secs(),
            body_timeout_secs: default_body_timeout_secs(),
            websockets_per_ip: default_websockets_per_ip(),
            whep_sessions_per_ip: default_whep_sessions_per_ip(),
            viewer_identities_per_ip_per_hour: default_viewer_identities_per_ip(),
        }
    }
}

fn default_header_timeout_secs() -> u64 {
    10
}
fn default_body_timeout_secs() -> u64 {
    60
}
// Generous: mobile carriers put many subscribers behind one address (CGNAT), and a
// school or an office watches together; the caps stop one client's flood, not a crowd.
fn default_websockets_per_ip() -> usize {
    200
}
fn default_whep_sessions_per_ip() -> usize {
    100
}
fn default_viewer_identities_per_ip() -> u32 {
    30
}

/// Live events' lifecycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// For how many seconds after an end a manager may reopen the event (an accidental
    /// press of End); 0: never.
    #[serde(default = "default_reopen_window_secs")]
    pub reopen_window_secs: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            reopen_window_secs: default_reopen_window_secs(),
        }
    }
}

fn default_reopen_window_secs() -> u64 {
    15 * 60
}

/// Draw ceremonies: the organiser's signing key, the key that seals children's records,
/// and how fast a draw is played out on its live event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawSettings {
    /// The organiser's Ed25519 key file (`gongkai keys generate`). Unset:
    /// `<data_dir>/organiser.key`, created on first use with mode 0600.
    #[serde(default)]
    pub organiser_key_file: Option<PathBuf>,
    /// The 32-byte key that seals children's ID numbers and names in the database and
    /// keys their lookup hashes. Unset: `<data_dir>/records.key`, created on first use
    /// (0600). Every node of a deployment needs the same file; losing it loses the records.
    #[serde(default)]
    pub records_key_file: Option<PathBuf>,
    /// Milliseconds between two lottery numbers when a draw is played out live (0: all
    /// at once).
    #[serde(default = "default_draw_pace_ms")]
    pub pace_ms: u64,
    /// Applications (`POST /api/v1/draws/{id}/applications`) per client IP per minute.
    #[serde(default = "default_apply_per_ip")]
    pub apply_per_ip_per_minute: u32,
    /// Applications per child ID number per minute (counted under a keyed hash).
    #[serde(default = "default_apply_per_child")]
    pub apply_per_child_per_minute: u32,
}

impl Default for DrawSettings {
    fn default() -> Self {
        DrawSettings {
            organiser_key_file: None,
            records_key_file: None,
            pace_ms: default_draw_pace_ms(),
            apply_per_ip_per_minute: default_apply_per_ip(),
            apply_per_child_per_minute: default_apply_per_child(),
        }
    }
}

fn default_apply_per_ip() -> u32 {
    30
}

fn default_apply_per_child() -> u32 {
    5
}

fn default_draw_pace_ms() -> u64 {
    200
}

/// Parents' result lookups: rate limits per client IP and per child ID number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSettings {
    #[serde(default = "default_lookup_per_minute")]
    pub per_ip_per_minute: u32,
    #[serde(default = "default_lookup_per_minute")]
    pub per_child_per_minute: u32,
}

impl Default for LookupSettings {
    fn default() -> Self {
        LookupSettings {
            per_ip_per_minute: default_lookup_per_minute(),
            per_child_per_minute: default_lookup_per_minute(),
        }
    }
}

fn default_lookup_per_minute() -> u32 {
    10
}

/// WebRTC media (WHIP/WHEP): where peers bind and what they advertise.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// Address the UDP sockets bind; `0.0.0.0` means every non-loopback interface.
    #[serde(default = "default_media_bind_ip")]
    pub bind_ip: std::net::IpAddr,
    /// One UDP port for every peer connection (0: unset). The port to open in a firewall.
    #[serde(default)]
    pub udp_port: u16,
    /// First UDP port for peer connections (one port per peer) when `udp_port` is unset; 0
    /// with `udp_port_max` 0: ephemeral ports.
    #[serde(default)]
    pub udp_port_min: u16,
    #[serde(default)]
    pub udp_port_max: u16,
    /// The public address to advertise behind 1:1 NAT. Unset: the bound addresses.
    #[serde(default)]
    pub public_ip: Option<std::net::IpAddr>,
    /// Comma-separated STUN/TURN URLs (`stun:host:3478,turn:host:3478?transport=udp`),
    /// used by the server's peers and sent to clients as WHIP/WHEP `Link` headers.
    #[serde(default)]
    pub ice_servers: String,
    /// TURN credentials for the `turn:` URLs (e.g. coturn's static user). Clients receive
    /// them in `Link` headers, so they are not a server secret; still kept out of `Debug`.
    #[serde(default)]
    pub turn_username: String,
    #[serde(default)]
    pub turn_credential: String,
    /// coturn's `static-auth-secret` (`use-auth-secret`): when set, every WHIP/WHEP answer
    /// and the server's own peers get fresh TURN credentials (`<expiry>:<id>`,
    /// base64(HMAC-SHA1)) instead of `turn_username`/`turn_credential`. A real secret:
    /// never logged, not in `Debug`.
    #[serde(default)]
    pub turn_secret: Option<String>,
    /// How long each such credential lives.
    #[serde(default = "default_turn_ttl")]
    pub turn_ttl_secs: u64,
    /// Largest accepted SDP offer in bytes.
    #[serde(default = "default_media_max_sdp")]
    pub max_sdp_bytes: usize,
    /// Record every publisher session (one WebM file per session).
    #[serde(default = "default_true")]
    pub recording: bool,
    /// Where recordings are written (`<dir>/<event id>/<segment>.webm`). Unset:
    /// `<data_dir>/recordings`.
    #[serde(default)]
    pub recordings_dir: Option<PathBuf>,
    /// Send viewers' media on the SFU's direct path (own SRTP context, one GSO send per
    /// frame) instead of through webrtc-rs's per-peer pipeline. `false` is the escape
    /// hatch if a client misbehaves with it.
    #[serde(default = "default_true")]
    pub direct_send: bool,
}

impl std::fmt::Debug for MediaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSettings")
            .field("bind_ip", &self.bind_ip)
            .field("udp_port", &self.udp_port)
            .field("udp_port_min", &self.udp_port_min)
            .field("udp_port_max", &self.udp_port_max)
            .field("public_ip", &self.public_ip)
            .field("ice_servers", &self.ice_servers)
            .field("turn_username", &self.turn_username)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("turn_ttl_secs", &self.turn_ttl_secs)
            .field("max_sdp_bytes", &self.max_sdp_bytes)
            .field("recording", &self.recording)
            .field("recordings_dir", &self.recordings_dir)
            .field("direct_send", &self.direct_send)
            .finish_non_exhaustive()
    }
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            bind_ip: default_media_bind_ip(),
            udp_port: 0,
            udp_port_min: 0,
            udp_port_max: 0,
            public_ip: None,
            ice_servers: String::new(),
            turn_username: String::new(),
            turn_credential: String::new(),
            turn_secret: None,
            turn_ttl_secs: default_turn_ttl(),
            max_sdp_bytes: default_media_max_sdp(),
            recording: true,
            recordings_dir: None,
            direct_send: true,
        }
    }
}

impl MediaSettings {
    /// The configured STUN/TURN URLs, in order.
    pub fn ice_server_urls(&self) -> Vec<String> {
        self.ice_servers
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn default_turn_ttl() -> u64 {
    3600
}

fn default_true() -> bool {
    true
}
fn default_media_bind_ip() -> std::net::IpAddr {
    std::net::IpAddr::from([0, 0, 0, 0])
}
fn default_media_max_sdp() -> usize {
    64 * 1024
}

/// The live-event hub (`/ws/events/...`): moderation lists and fan-out tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSettings {
    /// A UTF-8 file, one word per line (`#` comments): chat and questions containing one
    /// are masked or rejected. Unset: no list.
    #[serde(default)]
    pub sensitive_words_file: Option<PathBuf>,
    /// `mask` (replace with `*`) or `reject` (error `sensitive_word`).
    #[serde(default)]
    pub sensitive_mode: SensitiveModeSetting,
    /// Broadcasts within this many milliseconds after a flush share one frame.
    #[serde(default = "default_coalesce_ms")]
    pub coalesce_ms: u64,
    /// A room with no connections is dropped after this many seconds.
    #[serde(default = "default_room_idle_secs")]
    pub room_idle_secs: u64,
    /// Frames queued for one slow socket before it is closed with 4001.
    #[serde(default = "default_queue_frames")]
    pub queue_frames: usize,
    /// Bytes queued for one slow socket before it is closed with 4001.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    /// The event page pings its socket this often. That keeps NAT and proxy mappings
    /// alive, and a socket silent for 2.5 times this long is taken for dead and
    /// reopened with `since`.
    #[serde(default = "default_client_ping_secs")]
    pub client_ping_secs: u64,
    /// Under slow mode, chat messages one client IP may send per slow-mode interval,
    /// over all viewer identities from it (each identity still sends one).
    #[serde(default = "default_slow_mode_per_ip")]
    pub slow_mode_per_ip: u32,
    /// Upvotes one client IP may give one question, over all identities from it.
    #[serde(default = "default_votes_per_question_per_ip")]
    pub votes_per_question_per_ip: u32,
    /// `false` turns off every per-IP budget of the hub (chat, questions, likes, slow
    /// mode, votes), leaving the per-identity ones: for load tests from one address.
    #[serde(default = "default_true")]
    pub limit_per_ip: bool,
}

fn default_slow_mode_per_ip() -> u32 {
    3
}
fn default_votes_per_question_per_ip() -> u32 {
    3
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            sensitive_words_file: None,
            sensitive_mode: SensitiveModeSetting::default(),
            coalesce_ms: default_coalesce_ms(),
            room_idle_secs: default_room_idle_secs(),
            queue_frames: default_queue_frames(),
            queue_bytes: default_queue_bytes(),
            client_ping_secs: default_client_ping_secs(),
            slow_mode_per_ip: default_slow_mode_per_ip(),
            votes_per_question_per_ip: default_votes_per_question_per_ip(),
            limit_per_ip: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensitiveModeSetting {
    #[default]
    Mask,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Hours a staff session stays valid after login.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Login attempts allowed per username from one client IP per minute (failures from
    /// one address cannot lock the account for everyone else).
    #[serde(default = "default_login_per_user")]
    pub login_per_user_per_minute: u32,
    /// Login attempts allowed per username from all addresses together per minute: the
    /// softer ceiling against guessing from many addresses.
    #[serde(default = "default_login_per_account")]
    pub login_per_account_per_minute: u32,
    /// Login attempts allowed per client IP per minute.
    #[serde(default = "default_login_per_ip")]
    pub login_per_ip_per_minute: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_hours: default_session_hours(),
            login_per_user_per_minute: default_login_per_user(),
            login_per_account_per_minute: default_login_per_account(),
            login_per_ip_per_minute: default_login_per_ip(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_login_per_account() -> u32 {
    30
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_shutdown_timeout() -> u64 {
    10
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_coalesce_ms() -> u64 {
    100
}
fn default_room_idle_secs() -> u64 {
    60
}
fn default_client_ping_secs() -> u64 {
    25
}
fn default_queue_frames() -> usize {
    256
}
fn default_queue_bytes() -> usize {
    1024 * 1024
}
fn default_session_hours() -> u64 {
    12
}
fn default_login_per_user() -> u32 {
    5
}
fn default_login_per_ip() -> u32 {
    20
}

/// Flags that override the file and the environment (`None`: not given).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file [default: gongkai.toml when present].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; env GONGKAI_LISTEN].
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory [default: ./data; env GONGKAI_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, sqlite://... or postgres://... [default: sqlite://<data-dir>/gongkai.db;
    /// env GONGKAI_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Public URL of the service; https makes cookies Secure [env GONGKAI_PUBLIC_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub public_url: Option<String>,
    /// Log format [default: text; env GONGKAI_LOG_FORMAT].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or debug [env GONGKAI_LOG_LEVEL].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// NATS URL for multi-node fan-out [env GONGKAI_NATS_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: unknown setting (known: {known})")]
    UnknownEnv { var: String, known: String },
}

/// Environment variables and the keys they set. `GONGKAI_TEST_*` and `GONGKAI_BIN` belong
/// to the test harness and are ignored here.
const ENV_KEYS: &[(&str, &str)] = &[
    ("GONGKAI_LISTEN", "listen"),
    ("GONGKAI_DATA_DIR", "data_dir"),
    ("GONGKAI_DATABASE_URL", "database_url"),
    ("GONGKAI_PUBLIC_URL", "public_url"),
    ("GONGKAI_LOG_FORMAT", "log_format"),
    ("GONGKAI_LOG_LEVEL", "log_level"),
    ("GONGKAI_NATS_URL", "nats_url"),
    ("GONGKAI_TRUST_FORWARDED_FOR", "trust_forwarded_for"),
    ("GONGKAI_SHUTDOWN_TIMEOUT_SECS", "shutdown_timeout_secs"),
    ("GONGKAI_MAX_BODY_BYTES", "max_body_bytes"),
    ("GONGKAI_METRICS_TOKEN", "metrics_token"),
    ("GONGKAI_AUTH_SESSION_HOURS", "auth.session_hours"),
    (
        "GONGKAI_AUTH_LOGIN_PER_USER_PER_MINUTE",
        "auth.login_per_user_per_minute",
    ),
    (
        "GONGKAI_AUTH_LOGIN_PER_IP_PER_MINUTE",
        "auth.login_per_ip_per_minute",
    ),
    (
        "GONGKAI_AUTH_LOGIN_PER_ACCOUNT_PER_MINUTE",
        "auth.login_per_account_per_minute",
    ),
    (
        "GONGKAI_HUB_SENSITIVE_WORDS_FILE",
        "hub.sensitive_words_file",
    ),
    ("GONGKAI_HUB_SENSITIVE_MODE", "hub.sensitive_mode"),
    ("GONGKAI_HUB_COALESCE_MS", "hub.coalesce_ms"),
    ("GONGKAI_HUB_ROOM_IDLE_SECS", "hub.room_idle_secs"),
    ("GONGKAI_HUB_QUEUE_FRAMES", "hub.queue_frames"),
    ("GONGKAI_HUB_QUEUE_BYTES", "hub.queue_bytes"),
    ("GONGKAI_HUB_CLIENT_PING_SECS", "hub.client_ping_secs"),
    ("GONGKAI_HUB_SLOW_MODE_PER_IP", "hub.slow_mode_per_ip"),
    ("GONGKAI_HUB_LIMIT_PER_IP", "hub.limit_per_ip"),
    (
        "GONGKAI_HUB_VOTES_PER_QUESTION_PER_IP",
        "hub.votes_per_question_per_ip",
    ),
    (
        "GONGKAI_LIMITS_HEADER_TIMEOUT_SECS",
        "limits.header_timeout_secs",
    ),
    (
        "GONGKAI_LIMITS_BODY_TIMEOUT_SECS",
        "limits.body_timeout_secs",
    ),
    (
        "GONGKAI_LIMITS_WEBSOCKETS_PER_IP",
        "limits.websockets_per_ip",
    ),
    (
        "GONGKAI_LIMITS_WHEP_SESSIONS_PER_IP",
        "limits.whep_sessions_per_ip",
    ),
    (
        "GONGKAI_LIMITS_VIEWER_IDENTITIES_PER_IP_PER_HOUR",
        "limits.viewer_identities_per_ip_per_hour",
    ),
    (
        "GONGKAI_EVENTS_REOPEN_WINDOW_SECS",
        "events.reopen_window_secs",
    ),
    ("GONGKAI_MEDIA_BIND_IP", "media.bind_ip"),
    ("GONGKAI_MEDIA_UDP_PORT", "media.udp_port"),
    ("GONGKAI_MEDIA_UDP_PORT_MIN", "media.udp_port_min"),
    ("GONGKAI_MEDIA_UDP_PORT_MAX", "media.udp_port_max"),
    ("GONGKAI_MEDIA_PUBLIC_IP", "media.public_ip"),
    ("GONGKAI_MEDIA_ICE_SERVERS", "media.ice_servers"),
    ("GONGKAI_MEDIA_TURN_USERNAME", "media.turn_username"),
    ("GONGKAI_MEDIA_TURN_CREDENTIAL", "media.turn_credential"),
    ("GONGKAI_MEDIA_TURN_SECRET", "media.turn_secret"),
    ("GONGKAI_MEDIA_TURN_TTL_SECS", "media.turn_ttl_secs"),
    ("GONGKAI_MEDIA_MAX_SDP_BYTES", "media.max_sdp_bytes"),
    ("GONGKAI_DRAW_ORGANISER_KEY_FILE", "draw.organiser_key_file"),
    ("GONGKAI_DRAW_RECORDS_KEY_FILE", "draw.records_key_file"),
    ("GONGKAI_DRAW_PACE_MS", "draw.pace_ms"),
    (
        "GONGKAI_DRAW_APPLY_PER_IP_PER_MINUTE",
        "draw.apply_per_ip_per_minute",
    ),
    (
        "GONGKAI_DRAW_APPLY_PER_CHILD_PER_MINUTE",
        "draw.apply_per_child_per_minute",
    ),
    (
        "GONGKAI_LOOKUP_PER_IP_PER_MINUTE",
        "lookup.per_ip_per_minute",
    ),
    (
        "GONGKAI_LOOKUP_PER_CHILD_PER_MINUTE",
        "lookup.per_child_per_minute",
    ),
    ("GONGKAI_MEDIA_RECORDING", "media.recording"),
    ("GONGKAI_MEDIA_RECORDINGS_DIR", "media.recordings_dir"),
    ("GONGKAI_MEDIA_DIRECT_SEND", "media.direct_send"),
];

const HARNESS_ENV_PREFIXES: &[&str] = &["GONGKAI_TEST_", "GONGKAI_BIN"];

impl Settings {
    /// Loads the layers from the real file system and process environment.
    pub fn load(args: &ConfigArgs) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Settings::load_from(args, &env)
    }

    /// Loads with an explicit environment (tests pass their own).
    pub fn load_from(args: &ConfigArgs, env: &[(String, String)]) -> Result<Settings, ConfigError> {
        let mut table = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new("gongkai.toml").exists() => read_file(Path::new("gongkai.toml"))?,
            None => toml::Table::new(),
        };
        for (var, value) in env {
            if !var.starts_with("GONGKAI_")
                || HARNESS_ENV_PREFIXES.iter().any(|p| var.starts_with(p))
            {
                continue;
            }
            let Some((_, key)) = ENV_KEYS.iter().find(|(name, _)| name == var) else {
                let known = ENV_KEYS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ConfigError::UnknownEnv {
                    var: var.clone(),
                    known,
                });
            };
            set_key(&mut table, key, env_value(value));
        }
        let flags: [(&str, Option<toml::Value>); 7] = [
            ("listen", args.listen.clone().map(toml::Value::String)),
            (
                "data_dir",
                args.data_dir
                    .as_ref()
                    .map(|p| toml::Value::String(p.display().to_string())),
            ),
            (
                "database_url",
                args.database_url.clone().map(toml::Value::String),
            ),
            (
                "public_url",
                args.public_url.clone().map(toml::Value::String),
            ),
            (
                "log_format",
                args.log_format.map(|f| {
                    toml::Value::String(match f {
                        LogFormat::Text => "text".into(),
                        LogFormat::Json => "json".into(),
                    })
                }),
            ),
            ("log_level", args.log_level.clone().map(toml::Value::String)),
            ("nats_url", args.nats_url.clone().map(toml::Value::String)),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                set_key(&mut table, key, value);
            }
        }
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        if let Some(url) = &self.nats_url
            && !url.starts_with("nats://")
            && !url.starts_with("tls://")
        {
            return Err(invalid("nats_url", "must start with nats:// or tls://"));
        }
        if self.auth.session_hours == 0 {
            return Err(invalid("auth.session_hours", "must be at least 1"));
        }
        if self.auth.login_per_user_per_minute == 0
            || self.auth.login_per_ip_per_minute == 0
            || self.auth.login_per_account_per_minute == 0
        {
            return Err(invalid("auth.login_per_*_per_minute", "must be at least 1"));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| secrecy::ExposeSecret::expose_secret(t).len() < 16)
        {
            return Err(invalid(
                "metrics_token",
                "must be at least 16 characters when set",
            ));
        }
        if self.draw.apply_per_ip_per_minute == 0 || self.draw.apply_per_child_per_minute == 0 {
            return Err(invalid("draw.apply_per_*_per_minute", "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        if self.hub.coalesce_ms > 1000 {
            return Err(invalid("hub.coalesce_ms", "must be at most 1000"));
        }
        if self.hub.room_idle_secs > 3600 {
            return Err(invalid("hub.room_idle_secs", "must be at most 3600"));
        }
        if !(1..=300).contains(&self.hub.client_ping_secs) {
            return Err(invalid("hub.client_ping_secs", "must be between 1 and 300"));
        }
        if self.events.reopen_window_secs > 24 * 3600 {
            return Err(invalid(
                "events.reopen_window_secs",
                "must be at most 86400",
            ));
        }
        if self.hub.slow_mode_per_ip == 0 || self.hub.votes_per_question_per_ip == 0 {
            return Err(invalid("hub.*_per_ip", "must be at least 1"));
        }
        let limits = &self.limits;
        if !(1..=300).contains(&limits.header_timeout_secs) {
            return Err(invalid(
                "limits.header_timeout_secs",
                "must be between 1 and 300",
            ));
        }
        if !(1..=3600).contains(&limits.body_timeout_secs) {
            return Err(invalid(
                "limits.body_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if limits.websockets_per_ip == 0
            || limits.whep_sessions_per_ip == 0
            || limits.viewer_identities_per_ip_per_hour == 0
        {
            return Err(invalid("limits.*_per_ip*", "must be at least 1"));
        }
        if self.hub.queue_frames < 16 {
            return Err(invalid("hub.queue_frames", "must be at least 16"));
        }
        if self.hub.queue_bytes < 64 * 1024 {
            return Err(invalid("hub.queue_bytes", "must be at least 65536"));
        }
        let media = &self.media;
        if media.udp_port_min > media.udp_port_max {
            return Err(invalid(
                "media.udp_port_min",
                "must not be above media.udp_port_max",
            ));
        }
        if media.udp_port != 0 && (media.udp_port_min != 0 || media.udp_port_max != 0) {
            return Err(invalid(
                "media.udp_port",
                "set either one shared port or the range media.udp_port_min..udp_port_max, not both",
            ));
        }
        if media.udp_port_min == 0 && media.udp_port_max != 0 {
            return Err(invalid(
                "media.udp_port_min",
                "must be set when media.udp_port_max is (both 0: ephemeral ports)",
            ));
        }
        for url in media.ice_server_urls() {
            if !["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(invalid(
                    "media.ice_servers",
                    "each URL must start with stun:, stuns:, turn: or turns:",
                ));
            }
        }
        if media.turn_secret.as_deref() == Some("") {
            return Err(invalid("media.turn_secret", "must not be empty when set"));
        }
        if media.turn_ttl_secs < 60 || media.turn_ttl_secs > 7 * 24 * 3600 {
            return Err(invalid(
                "media.turn_ttl_secs",
                "must be between 60 and 604800",
            ));
        }
        if media.max_sdp_bytes < 1024 || media.max_sdp_bytes > 1024 * 1024 {
            return Err(invalid(
                "media.max_sdp_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if let Some(path) = &self.hub.sensitive_words_file
            && !path.is_file()
        {
            return Err(invalid(
                "hub.sensitive_words_file",
                &format!("{} is not a readable file", path.display()),
            ));
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("gongkai.db").display()),
        }
    }

    /// Where recordings live: `media.recordings_dir`, or `<data_dir>/recordings`.
    pub fn recordings_dir(&self) -> PathBuf {
        self.media
            .recordings_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("recordings"))
    }

    /// Whether cookies must carry `Secure`.
    pub fn https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Environment values are strings; numbers and booleans are recognised so that typed
/// settings accept them, everything else stays a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_owned()),
    }
}

fn set_key(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts = dotted.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return;
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => current = t,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        args: ConfigArgs,
    ) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let mut args = args;
        if let Some(text) = file {
            let path = dir.path().join("gongkai.toml");
            std::fs::write(&path, text).unwrap();
            args.config = Some(path);
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&args, &env)
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = load(None, &[], ConfigArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url(), "sqlite://data/gongkai.db");
        assert!(!s.https());
        assert!(s.media.recording);
        assert_eq!(s.recordings_dir(), PathBuf::from("data/recordings"));
        let s = load(
            None,
            &[
                ("GONGKAI_MEDIA_RECORDING", "false"),
                ("GONGKAI_MEDIA_RECORDINGS_DIR", "/srv/rec"),
            ],
            ConfigArgs::default(),
        )
        .unwrap();
        assert!(!s.media.recording);
        assert_eq!(s.recordings_dir(), PathBuf::from("/srv/rec"));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file =
            "listen = \"127.0.0.1:1000\"\nlog_level = \"debug\"\n[auth]\nsession_hours = 3\n";
        let env = [
            ("GONGKAI_LISTEN", "127.0.0.1:2000"),
            ("GONGKAI_AUTH_SESSION_HOURS", "5"),
        ];
        let s = load(Some(file), &env, ConfigArgs::default()).unwrap();
        assert_eq!(s.listen.port(), 2000);
        assert_eq!(s.auth.session_hours, 5);
        assert_eq!(s.log_level, "debug");
        let args = ConfigArgs {
            listen: Some("127.0.0.1:3000".into()),
            ..Default::default()
        };
        let s = load(Some(file), &env, args).unwrap();
        assert_eq!(s.listen.port(), 3000);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = load(Some("lisen = \"x\"\n"), &[], ConfigArgs::default()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = load(
            Some("[auth]\nsession_hour = 1\n"),
            &[],
            ConfigArgs::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("session_hour"), "{err}");
        let err = load(Some("listen = \"nonsense\"\n"), &[], ConfigArgs::default()).unwrap_err();
        assert!(err.to_string().contains("`listen`"), "{err}");
        let err = load(
            None,
            &[("GONGKAI_AUTH_SESSION_HOURS", "many")],
            ConfigArgs::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("auth.session_hours"), "{err}");
        let err = load(None, &[("GONGKAI_LISTN", "x")], ConfigArgs::default()).unwrap_err();
        assert!(err.to_string().contains("GONGKAI_LISTN"), "{err}");
        let err = load(
            Some("database_url = \"mysql://x\"\n"),
            &[],
            ConfigArgs::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
    }

    #[test]
    fn one_media_port_or_a_range_not_both() {
        let s = load(
            Some("[media]\nudp_port = 40000\n"),
            &[("GONGKAI_MEDIA_DIRECT_SEND", "false")],
            ConfigArgs::default(),
        )
        .unwrap();
        assert_eq!(s.media.udp_port, 40000);
        assert!(!s.media.direct_send);
        assert!(
            load(None, &[], ConfigArgs::default())
                .unwrap()
                .media
                .direct_send
        );
        let err = load(
            Some("[media]\nudp_port = 40000\nudp_port_min = 41000\nudp_port_max = 41999\n"),
            &[],
            ConfigArgs::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("media.udp_port"), "{err}");
    }

    #[test]
    fn https_public_url_means_secure_cookies() {
        let s = load(
            Some("public_url = \"https://gk.example\"\n"),
            &[],
            ConfigArgs::default(),
        )
        .unwrap();
        assert!(s.https());
    }
}
