//! Configuration: built-in defaults, then a TOML file, then `CHATBUNDLE_*` environment variables
//! (sections joined by `__`), then the command line. `*_file` keys read a secret from a file, so
//! systemd credentials never have to sit in the config itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a configuration was refused; always names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Layering(String),
    #[error("invalid value for `{key}`: {detail}")]
    Invalid { key: &'static str, detail: String },
}

/// A duration written as `"10s"`, `"2m"`, `"1h"`, `"10d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"10s\": {e}")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, for a terminal or journald.
    Plain,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The daemon's configuration, as section 11 of the specification names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base of inbound URLs and transcript links; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// Defaults to `sqlite://{data_dir}/chatbundle.db`; `postgres://…` shares one database
    /// between several daemons.
    pub database_url: Option<String>,
    /// A file holding `database_url` (for a URL with a password).
    pub database_url_file: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub delivery: DeliveryConfig,
    pub smtp: SmtpConfig,
    pub shutdown: ShutdownConfig,
    pub vendors: VendorsConfig,
    pub telemetry: TelemetryConfig,
    /// Single sign-on with an OpenID Connect provider; none unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
}

/// An OpenID Connect provider people sign in with ("Sign in with {name}"), beside their passwords.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL, e.g. `https://accounts.google.com`; its discovery document is
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// This installation's client id at the provider.
    pub client_id: String,
    /// Its client secret (or `client_secret_file`); none for a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The provider's name on the sign-in page's button.
    #[serde(default = "OidcConfig::default_name")]
    pub name: String,
}

impl OidcConfig {
    fn default_name() -> String {
        "single sign-on".into()
    }
}

/// OpenTelemetry traces: where they go (OTLP over HTTP, protobuf), and the name the daemon goes
/// by there. Without an endpoint nothing is traced or exported.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// A collector's base address, as `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g.
    /// `http://127.0.0.1:4318`): traces go to `{otlp_endpoint}/v1/traces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of every span.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: None, service_name: "chatbundle".into() }
    }
}

impl TelemetryConfig {
    /// Where the spans are posted, if anywhere.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint.as_ref().map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    }
}

/// Where the channels' own APIs are (the public ones unless set: a proxy, or a test's local
/// servers), and what a media link streams at most.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VendorsConfig {
    /// Twilio's REST API: media URLs there are fetched with the source's Account SID and Auth Token.
    pub twilio_api: String,
    /// Meta's Graph API, with its version: media ids are looked up at `{meta_graph}/{id}`.
    pub meta_graph: String,
    /// WeChat's API (`/cgi-bin/token`, `/cgi-bin/media/get` under it).
    pub wechat_api: String,
    /// The largest file a media link streams through, in MiB.
    pub media_max_mib: u64,
}

impl Default for VendorsConfig {
    fn default() -> Self {
        VendorsConfig {
            twilio_api: "https://api.twilio.com".into(),
            meta_graph: "https://graph.facebook.com/v21.0".into(),
            wechat_api: "https://api.weixin.qq.com".into(),
            media_max_mib: 100,
        }
    }
}

/// How the daemon uses its database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connections to PostgreSQL this daemon opens at most (SQLite ignores it).
    pub max_connections: u32,
}

/// Connections to PostgreSQL a daemon needs at least: one stores messages, one records delivered
/// attempts, one serves everything else.
pub const MIN_DATABASE_CONNECTIONS: u32 = 3;

/// Connections to PostgreSQL per daemon, unless configured.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

/// Bounds on what one HTTP client can make the server hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A request's headers must arrive within this, counted from when the connection is ready
    /// for a request: it is also how long a kept-alive connection may stay idle.
    pub header_timeout: HumanDuration,
    /// A request's whole body must arrive within this, when the request carries a credential
    /// that checks out before its body is read (the admin token, an ingest key, a signed-in
    /// session, an inbound URL's key).
    pub body_timeout: HumanDuration,
    /// The same for every other request (the sign-in form, a wrong credential): shorter, so
    /// that strangers cannot hold memory and connections by sending slowly.
    pub anonymous_body_timeout: HumanDuration,
    /// An answer the client does not read for this long ends its connection.
    pub write_timeout: HumanDuration,
    /// The largest body of the inbound routes: the JSON API's ingest and the channels' URLs
    /// (KiB).
    pub inbound_body_kib: usize,
    /// The largest body of every other route: the admin API, the sign-in and every form (KiB).
    pub form_body_kib: usize,
    /// Request bodies held in memory at once, across all connections (MiB); a request that
    /// would go over is answered 503 before its body is read.
    pub max_buffered_mib: usize,
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv4 address, an IPv6 /64).
    pub max_connections_per_client: usize,
    /// Of `max_connections`, the last ones, kept for the health checks and the admin's routes
    /// (one per client), so that `/healthz` and `/readyz` answer when the rest are taken.
    pub reserved_connections: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for limits and logs).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: HumanDuration(Duration::from_secs(10)),
            body_timeout: HumanDuration(Duration::from_secs(30)),
            anonymous_body_timeout: HumanDuration(Duration::from_secs(10)),
            write_timeout: HumanDuration(Duration::from_secs(60)),
            inbound_body_kib: 1024,
            form_body_kib: 64,
            max_buffered_mib: 256,
            max_connections: 4096,
            max_connections_per_client: 256,
            reserved_connections: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Per-attempt timeout unless a webhook sets its own.
    pub timeout: HumanDuration,
    /// Deliveries in flight at once, across all webhooks.
    pub concurrency: usize,
    /// Requests per second to one webhook; 0 turns the limit off.
    pub rate_per_webhook: u32,
    /// Delay before each retry; the last entry repeats.
    pub retry_schedule: Vec<HumanDuration>,
    pub disable_after: u32,
    /// Rejected attempts (a 4xx other than 408, 409, 425, 429) after which a delivery is given up.
    pub reject_after: u32,
    /// How long attempts are kept, and how long a delivery is retried.
    pub retention: HumanDuration,
    /// Networks exempt from the SSRF guard.
    pub allow_private: Vec<IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    pub from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight deliveries may take to finish after SIGTERM.
    pub grace: HumanDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_url_file: None,
            database: DatabaseConfig::default(),
            admin_token: None,
            admin_token_file: None,
            log_format: LogFormat::Plain,
            http: HttpConfig::default(),
            delivery: DeliveryConfig::default(),
            smtp: SmtpConfig { url: None, url_file: None, from: "chatbundle@localhost".into() },
            shutdown: ShutdownConfig { grace: HumanDuration(Duration::from_secs(25)) },
            vendors: VendorsConfig::default(),
            telemetry: TelemetryConfig::default(),
            oidc: None,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let schedule = ["5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h"];
        DeliveryConfig {
            timeout: HumanDuration(Duration::from_secs(10)),
            concurrency: 256,
            rate_per_webhook: 25,
            retry_schedule: schedule
                .iter()
                .map(|s| HumanDuration(humantime::parse_duration(s).expect("built-in duration")))
                .collect(),
            disable_after: 10,
            reject_after: 5,
            retention: HumanDuration(Duration::from_secs(10 * 24 * 3600)),
            allow_private: Vec::new(),
        }
    }
}

/// Where the configuration comes from besides the defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file given with `--config`; it must exist.
    pub file: Option<PathBuf>,
    /// `--listen` from the command line, which beats every other layer.
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Layers defaults, file, environment and command line, then checks what serde cannot.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &sources.file {
            if !file.is_file() {
                return Err(ConfigError::Layering(format!(
                    "config file {} does not exist or is not a file",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // CHATBUNDLE_CONFIG names the file itself (see the CLI) and CHATBUNDLE_FAULTS arms test
        // faults (see `fault`): neither is a key.
        figment = figment.merge(Env::prefixed("CHATBUNDLE_").split("__").ignore(&["config", "faults"]));
        if let Some(listen) = sources.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        let mut config: Config =
            figment.extract().map_err(|e| ConfigError::Layering(describe_figment_error(e)))?;
        config.resolve_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `*_file` secrets into their keys; a file that cannot be read is an error naming the key.
    fn resolve_files(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.admin_token_file {
            self.admin_token = Some(read_secret("admin_token_file", path)?);
        }
        if let Some(path) = &self.smtp.url_file {
            self.smtp.url = Some(read_secret("smtp.url_file", path)?);
        }
        if let Some(path) = &self.database_url_file {
            self.database_url = Some(read_secret("database_url_file", path)?);
        }
        if let Some(oidc) = &mut self.oidc
            && let Some(path) = &oidc.client_secret_file
        {
            oidc.client_secret = Some(read_secret("oidc.client_secret_file", path)?);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, detail: &str| ConfigError::Invalid { key, detail: detail.to_string() };
        let public_url = self.public_url();
        let parsed = reqwest::Url::parse(&public_url)
            .map_err(|e| invalid("public_url", &format!("{public_url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let parsed = reqwest::Url::parse(endpoint).map_err(|e| {
                invalid(
                    "telemetry.otlp_endpoint",
                    &format!("{:?} is not a URL: {e}", crate::domain::masked_url(endpoint)),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("telemetry.otlp_endpoint", "must start with http:// or https://"));
            }
        }
        if self.telemetry.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        let db = self.database_url();
        let db_key = if self.database_url_file.is_some() { "database_url_file" } else { "database_url" };
        let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
        if !db.starts_with("sqlite:") && !postgres {
            return Err(invalid(
                db_key,
                &format!("{:?}: must start with sqlite:// or postgres://", crate::domain::masked_url(&db)),
            ));
        }
        if postgres && let Err(e) = db.parse::<sqlx::postgres::PgConnectOptions>() {
            return Err(invalid(db_key, &format!("{:?}: {e}", crate::domain::masked_url(&db))));
        }
        if self.database.max_connections < MIN_DATABASE_CONNECTIONS {
            return Err(invalid("database.max_connections", "must be at least 3"));
        }
        if is_in_memory(&db) {
            return Err(invalid(
                "database_url",
                &format!(
                    "{db:?} is an in-memory database: it would lose every acknowledged message at a \
                     restart (and each connection would see its own empty copy); name a file"
                ),
            ));
        }
        if let Some(token) = &self.admin_token
            && let Err(detail) = strong_enough(token)
        {
            let key = if self.admin_token_file.is_some() { "admin_token_file" } else { "admin_token" };
            return Err(invalid(key, &detail));
        }
        let h = &self.http;
        if h.header_timeout.0.is_zero() {
            return Err(invalid("http.header_timeout", "must be longer than zero"));
        }
        for (key, value) in [
            ("http.body_timeout", &h.body_timeout),
            ("http.anonymous_body_timeout", &h.anonymous_body_timeout),
            ("http.write_timeout", &h.write_timeout),
        ] {
            if value.0.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        for (key, value) in [
            ("http.inbound_body_kib", h.inbound_body_kib),
            ("http.form_body_kib", h.form_body_kib),
            ("http.max_buffered_mib", h.max_buffered_mib),
        ] {
            if !(1..=1 << 20).contains(&value) {
                return Err(invalid(key, "must be between 1 and 1048576"));
            }
        }
        if h.max_buffered_mib * 1024 < h.inbound_body_kib.max(h.form_body_kib) {
            return Err(invalid("http.max_buffered_mib", "must hold at least one body of the largest kind"));
        }
        if h.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if h.reserved_connections >= h.max_connections {
            return Err(invalid("http.reserved_connections", "must be fewer than http.max_connections"));
        }
        if h.max_connections_per_client == 0 {
            return Err(invalid("http.max_connections_per_client", "must be at least 1"));
        }
        let d = &self.delivery;
        if d.concurrency == 0 {
            return Err(invalid("delivery.concurrency", "must be at least 1"));
        }
        if d.retry_schedule.is_empty() {
            return Err(invalid("delivery.retry_schedule", "must list at least one delay"));
        }
        if d.timeout.0.is_zero() {
            return Err(invalid("delivery.timeout", "must be longer than zero"));
        }
        if d.disable_after == 0 {
            return Err(invalid("delivery.disable_after", "must be at least 1"));
        }
        if d.reject_after == 0 {
            return Err(invalid("delivery.reject_after", "must be at least 1"));
        }
        if d.retention.0 < Duration::from_secs(3600) {
            return Err(invalid("delivery.retention", "must be at least 1h"));
        }
        if let Some(oidc) = &self.oidc {
            match reqwest::Url::parse(&oidc.issuer) {
                Ok(url) if url.scheme() == "https" || url.host_str().is_some_and(is_loopback_host) => {}
                Ok(_) => {
                    return Err(invalid(
                        "oidc.issuer",
                        "must be an https:// URL (http:// only on this machine)",
                    ));
                }
                Err(e) => {
                    return Err(invalid("oidc.issuer", &format!("{:?} is not a URL: {e}", oidc.issuer)));
                }
            }
            if oidc.client_id.trim().is_empty() {
                return Err(invalid("oidc.client_id", "must not be empty"));
            }
            if oidc.name.trim().is_empty() {
                return Err(invalid("oidc.name", "must not be empty"));
            }
        }
        Ok(())
    }

    /// The effective public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen));
        url.trim_end_matches('/').to_string()
    }

    /// The effective database URL.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("chatbundle.db").display()))
    }

    /// The configuration as TOML, with every default written out.
    pub fn to_toml(&self) -> String {
        toml_string(self)
    }
}

/// The `[oidc]` section: the keys set (never the secret itself), or the section commented out.
fn oidc_toml(oidc: Option<&OidcConfig>) -> String {
    let Some(o) = oidc else {
        return "# [oidc]                              # single sign-on: \"Sign in with …\" (see the README)\n\
                # issuer             = \"https://accounts.google.com\"\n\
                # client_id          = \"…\"\n\
                # client_secret_file = \"/etc/chatbundle/oidc-client-secret\"\n\
                # name               = \"Google\"\n"
            .into();
    };
    let secret = match (&o.client_secret_file, &o.client_secret) {
        (Some(path), _) => format!("client_secret_file = {:?}\n", path.display().to_string()),
        (None, Some(_)) => "# client_secret is set (not shown)\n".into(),
        (None, None) => String::new(),
    };
    format!(
        "[oidc]\nissuer    = {:?}\nclient_id = {:?}\n{secret}name      = {:?}\n",
        o.issuer, o.client_id, o.name
    )
}

/// Whether a URL's host is this machine (where plain http is no one else's to read).
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The fewest bits of guessing an admin token must stand for.
pub const ADMIN_TOKEN_BITS: f64 = 128.0;

/// Refuses an admin token with less than [`ADMIN_TOKEN_BITS`] bits, estimated as its length
/// times the bits per character of the character classes it draws from (lower case, upper case,
/// digits, others). A generated token (`openssl rand -hex 32`, or the daemon's own) has far more.
pub fn strong_enough(token: &str) -> Result<(), String> {
    let token = token.trim();
    let uses = |class: fn(&char) -> bool| token.chars().any(|c| class(&c));
    let alphabet: f64 = [
        (uses(char::is_ascii_lowercase), 26.0),
        (uses(char::is_ascii_uppercase), 26.0),
        (uses(char::is_ascii_digit), 10.0),
        (uses(|c| !c.is_ascii_alphanumeric()), 33.0),
    ]
    .iter()
    .filter(|(used, _)| *used)
    .map(|(_, n)| n)
    .sum();
    let bits = token.chars().count() as f64 * alphabet.max(1.0).log2();
    if bits < ADMIN_TOKEN_BITS {
        return Err(format!(
            "too easy to guess: about {bits:.0} bits, at least {ADMIN_TOKEN_BITS:.0} are needed \
             (e.g. 32 random hex digits: openssl rand -hex 32)"
        ));
    }
    Ok(())
}

/// Whether a SQLite URL names a database that lives only in memory.
fn is_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path.is_empty()
        || path == ":memory:"
        || path.starts_with("file::memory:")
        || query.split('&').any(|pair| pair.eq_ignore_ascii_case("mode=memory"))
}

fn read_secret(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid { key, detail: format!("cannot read {}: {e}", path.display()) })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            if key.is_empty() {
                format!("{}{origin}", e.kind)
            } else {
                format!("invalid value for `{key}`: {}{origin}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn toml_string(config: &Config) -> String {
    // A hand-written rendering keeps comments next to each key, which is what an operator
    // copying the defaults into /etc/chatbundle/config.toml wants to read.
    let d = &config.delivery;
    let schedule = d
        .retry_schedule
        .iter()
        .map(|h| format!("{:?}", humantime::format_duration(h.0).to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    let allow = d.allow_private.iter().map(|n| format!("{:?}", n.to_string())).collect::<Vec<_>>().join(", ");
    let dur = |h: &HumanDuration| humantime::format_duration(h.0).to_string();
    let h = &config.http;
    let trusted =
        h.trusted_proxies.iter().map(|n| format!("{:?}", n.to_string())).collect::<Vec<_>>().join(", ");
    format!(
        r#"# chatbundle configuration. Every key can also be set as CHATBUNDLE_<KEY>
# (sections joined by "__", e.g. CHATBUNDLE_DELIVERY__TIMEOUT=5s).
listen       = "{listen}"
public_url   = "{public_url}"        # base of inbound URLs and transcript links
data_dir     = "{data_dir}"
database_url = "{database_url}"   # or postgres://user@host/db?sslmode=require to share
                                       # one database between daemons; or database_url_file
# admin_token = "..."                  # or admin_token_file; when neither is set a token is
                                       # generated into <data_dir>/admin-token (mode 0600)
log_format   = "{log_format}"          # or "json"

[database]
max_connections = {db_connections}           # connections to PostgreSQL per daemon

[http]
header_timeout             = "{header_timeout}"   # also how long a kept-alive connection may idle
body_timeout               = "{body_timeout}"   # for requests with a valid credential
anonymous_body_timeout     = "{anonymous_body_timeout}"   # for the others (sign-in, wrong credentials)
write_timeout              = "{write_timeout}"    # an answer the client does not read ends its connection
inbound_body_kib           = {inbound_body_kib}         # ingest and the channels' inbound URLs
form_body_kib              = {form_body_kib}           # the admin API, the sign-in and every form
max_buffered_mib           = {max_buffered_mib}          # bodies held at once, all connections together
max_connections            = {max_connections}
max_connections_per_client = {max_per_client}           # per IPv4 address or IPv6 /64
reserved_connections       = {reserved}           # kept for /healthz, /readyz, /metrics and the admin
trusted_proxies            = [{trusted}]           # reverse proxies whose X-Forwarded-For is believed

[delivery]
timeout          = "{timeout}"
concurrency      = {concurrency}
rate_per_webhook = {rate}              # requests per second to one webhook; 0 = unlimited
retry_schedule   = [{schedule}]        # the last delay repeats
disable_after    = {disable_after}     # consecutive failed attempts
reject_after     = {reject_after}      # rejections (4xx but 408/409/425/429) before a delivery is given up
retention        = "{retention}"
allow_private    = [{allow}]           # CIDRs exempt from the SSRF guard

[smtp]
# url  = "smtp://127.0.0.1:25"         # or url_file
from = "{from}"

{oidc}
[telemetry]
{otlp}service_name  = "{service_name}"       # OpenTelemetry's service.name

[shutdown]
grace = "{grace}"
"#,
        oidc = oidc_toml(config.oidc.as_ref()),
        otlp = match &config.telemetry.otlp_endpoint {
            Some(endpoint) => format!("otlp_endpoint = \"{}\"\n", crate::domain::masked_url(endpoint)),
            None => "# otlp_endpoint = \"http://127.0.0.1:4318\"   # traces over OTLP/HTTP, to …/v1/traces\n"
                .into(),
        },
        service_name = config.telemetry.service_name,
        listen = config.listen,
        public_url = config.public_url(),
        data_dir = config.data_dir.display(),
        database_url = crate::domain::masked_url(&config.database_url()),
        db_connections = config.database.max_connections,
        log_format = match config.log_format {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        },
        header_timeout = dur(&h.header_timeout),
        body_timeout = dur(&h.body_timeout),
        anonymous_body_timeout = dur(&h.anonymous_body_timeout),
        write_timeout = dur(&h.write_timeout),
        inbound_body_kib = h.inbound_body_kib,
        form_body_kib = h.form_body_kib,
        max_buffered_mib = h.max_buffered_mib,
        reserved = h.reserved_connections,
        max_connections = h.max_connections,
        max_per_client = h.max_connections_per_client,
        timeout = dur(&d.timeout),
        concurrency = d.concurrency,
        rate = d.rate_per_webhook,
        disable_after = d.disable_after,
        reject_after = d.reject_after,
        retention = dur(&d.retention),
        from = config.smtp.from,
        grace = dur(&config.shutdown.grace),
    )
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail hands out its own error type
mod tests {
    use super::*;
    use figment::Jail;

    /// Loads a configuration inside a jail: a private working directory and environment.
    fn load_with(toml: Option<&str>, vars: &[(&str, &str)], listen: Option<&str>) -> Result<Config, String> {
        let mut outcome = None;
        Jail::expect_with(|jail| {
            let file = toml
                .map(|t| jail.create_file("config.toml", t).map(|_| PathBuf::from("config.toml")))
                .transpose()?;
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            let sources = Sources { file, listen: listen.map(|l| l.parse().unwrap()) };
            outcome = Some(Config::load(&sources).map_err(|e| e.to_string()));
            Ok(())
        });
        outcome.unwrap()
    }

    #[test]
    fn defaults_need_no_file() {
        let c = load_with(None, &[], None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
        assert_eq!(c.database_url(), "sqlite://./data/chatbundle.db");
        assert_eq!(c.delivery.retry_schedule.len(), 9);
        assert_eq!(c.delivery.rate_per_webhook, 25);
    }

    #[test]
    fn file_then_environment_then_command_line() {
        let toml = "listen = \"127.0.0.1:9000\"\n[delivery]\ntimeout = \"3s\"\nconcurrency = 4\n";
        let c = load_with(Some(toml), &[], None).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.delivery.timeout.0, Duration::from_secs(3));
        assert_eq!(c.delivery.concurrency, 4);

        let vars = [("CHATBUNDLE_DELIVERY__TIMEOUT", "5s"), ("CHATBUNDLE_LISTEN", "127.0.0.1:9100")];
        let c = load_with(Some(toml), &vars, None).unwrap();
        assert_eq!(c.delivery.timeout.0, Duration::from_secs(5));
        assert_eq!(c.delivery.concurrency, 4, "the file still counts where the environment is silent");
        assert_eq!(c.listen.port(), 9100);

        let c = load_with(Some(toml), &vars, Some("127.0.0.1:9200")).unwrap();
        assert_eq!(c.listen.port(), 9200);
        assert_eq!(c.public_url(), "http://127.0.0.1:9200");

        let c =
            load_with(None, &[("CHATBUNDLE_DELIVERY__ALLOW_PRIVATE", "[\"127.0.0.0/8\"]")], None).unwrap();
        assert_eq!(c.delivery.allow_private, vec!["127.0.0.0/8".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn single_sign_on_reads_its_secret_from_a_file_and_wants_https() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oidc");
        std::fs::write(&path, "client-secret\n").unwrap();
        let toml = format!(
            "[oidc]\nissuer = \"https://accounts.google.com\"\nclient_id = \"abc\"\n\
             client_secret_file = {:?}\nname = \"Google\"\n",
            path.display().to_string()
        );
        let c = load_with(Some(&toml), &[], None).unwrap();
        let oidc = c.oidc.as_ref().expect("set");
        assert_eq!((oidc.client_secret.as_deref(), oidc.name.as_str()), (Some("client-secret"), "Google"));
        let printed = c.to_toml();
        assert!(printed.contains("[oidc]") && !printed.contains("client-secret\""), "{printed}");
        assert!(load_with(Some(&printed), &[], None).is_ok(), "what check-config prints loads");

        let plain = "[oidc]\nissuer = \"http://id.example.com\"\nclient_id = \"abc\"\n";
        let err = load_with(Some(plain), &[], None).unwrap_err();
        assert!(err.contains("oidc.issuer"), "{err}");
        let local = "[oidc]\nissuer = \"http://127.0.0.1:9400\"\nclient_id = \"abc\"\n";
        assert_eq!(load_with(Some(local), &[], None).unwrap().oidc.unwrap().name, "single sign-on");
        assert!(Config::default().to_toml().contains("# [oidc]"), "shown, commented out, by default");
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "a-very-secret-admin-token\n").unwrap();
        let toml = format!("admin_token_file = {:?}\n", path.display().to_string());
        let c = load_with(Some(&toml), &[], None).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("a-very-secret-admin-token"));

        let vars = [("CHATBUNDLE_ADMIN_TOKEN_FILE", path.to_str().unwrap())];
        let c = load_with(None, &vars, None).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("a-very-secret-admin-token"));

        let err = load_with(Some("admin_token_file = \"/nonexistent/token\"\n"), &[], None).unwrap_err();
        assert!(err.contains("admin_token_file"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load_with(Some("[delivery]\ntimeout = \"soon\"\n"), &[], None).unwrap_err();
        assert!(err.contains("delivery.timeout"), "{err}");

        let err = load_with(None, &[("CHATBUNDLE_DELIVERY__CONCURRENCY", "many")], None).unwrap_err();
        assert!(err.contains("delivery.concurrency"), "{err}");
        assert!(err.contains("CHATBUNDLE_"), "the origin is named: {err}");

        let err = load_with(Some("listen_adress = \"x\"\n"), &[], None).unwrap_err();
        assert!(err.contains("listen_adress"), "{err}");

        let err = load_with(Some("[delivery]\nconcurrency = 0\n"), &[], None).unwrap_err();
        assert!(err.contains("delivery.concurrency"), "{err}");

        let err = load_with(Some("public_url = \"ftp://x\"\n"), &[], None).unwrap_err();
        assert!(err.contains("public_url"), "{err}");

        let err = load_with(Some("listen = \"nowhere\"\n"), &[], None).unwrap_err();
        assert!(err.contains("listen"), "{err}");

        let err = load_with(Some("[delivery]\nreject_after = 0\n"), &[], None).unwrap_err();
        assert!(err.contains("delivery.reject_after"), "{err}");
    }

    #[test]
    fn an_admin_token_must_stand_for_128_bits() {
        for weak in ["0123456789abcdef", "short", "aaaaaaaaaaaaaaaaaaaa", "Abcdefghijklmnopqrst"] {
            let err = load_with(None, &[("CHATBUNDLE_ADMIN_TOKEN", weak)], None).unwrap_err();
            assert!(err.contains("admin_token") && err.contains("bits"), "{weak}: {err}");
        }
        // 32 hex digits, 22 mixed alphanumerics, the test suites' tokens.
        for strong in [
            "0123456789abcdef0123456789abcdef",
            "Ab3dEf6hIj9lMn2pQr5tUv",
            "test-admin-token-0123456789",
            "process-test-admin-token",
        ] {
            assert!(load_with(None, &[("CHATBUNDLE_ADMIN_TOKEN", strong)], None).is_ok(), "{strong}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "weak-token\n").unwrap();
        let vars = [("CHATBUNDLE_ADMIN_TOKEN_FILE", path.to_str().unwrap())];
        let err = load_with(None, &vars, None).unwrap_err();
        assert!(err.contains("admin_token_file"), "{err}");
    }

    #[test]
    fn a_database_that_cannot_keep_what_it_acknowledges_is_refused() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://data/x.db?mode=memory",
            "sqlite://x.db?cache=shared&mode=memory",
            "sqlite:",
        ] {
            let toml = format!("database_url = {url:?}\n");
            let err = load_with(Some(&toml), &[], None).unwrap_err();
            assert!(err.contains("database_url") && err.contains("memory"), "{url}: {err}");
        }
        for url in ["sqlite://./data/x.db", "sqlite:///var/lib/chatbundle/x.db?mode=rwc", "sqlite:x.db"] {
            let toml = format!("database_url = {url:?}\n");
            assert!(load_with(Some(&toml), &[], None).is_ok(), "{url}");
        }
    }

    #[test]
    fn postgres_is_named_by_url_or_by_a_file_and_other_kinds_are_refused_without_their_password() {
        let toml = "database_url = \"postgres://chatbundle@db.internal/chatbundle?sslmode=require\"\n[database]\nmax_connections = 8\n";
        let c = load_with(Some(toml), &[], None).unwrap();
        assert_eq!(c.database.max_connections, 8);
        assert!(c.database_url().starts_with("postgres://"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("database-url");
        std::fs::write(&path, "postgresql://chatbundle:s3cret@db.internal/chatbundle\n").unwrap();
        let c = load_with(None, &[("CHATBUNDLE_DATABASE_URL_FILE", path.to_str().unwrap())], None).unwrap();
        assert_eq!(c.database_url(), "postgresql://chatbundle:s3cret@db.internal/chatbundle");
        assert!(!c.to_toml().contains("s3cret"), "printed configuration masks the password");

        let err = load_with(Some("database_url = \"mysql://root:hunter2@db/x\"\n"), &[], None).unwrap_err();
        assert!(err.contains("database_url") && err.contains("postgres://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err =
            load_with(Some("database_url = \"postgres://db/x?sslmode=sometimes\"\n"), &[], None).unwrap_err();
        assert!(err.contains("database_url"), "{err}");
        let err = load_with(Some("[database]\nmax_connections = 1\n"), &[], None).unwrap_err();
        assert!(err.contains("database.max_connections"), "{err}");
    }

    #[test]
    fn printed_defaults_load_back_to_the_same_values() {
        let printed = Config::default().to_toml();
        let c = load_with(Some(&printed), &[], None).unwrap();
        assert_eq!(c.delivery.retry_schedule, Config::default().delivery.retry_schedule);
        assert_eq!(c.delivery.retention, Config::default().delivery.retention);
        assert_eq!(c.listen, Config::default().listen);
    }
}
