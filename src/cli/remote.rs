//! Subcommands that mirror the admin API: they talk to the running daemon (`--url`, by default
//! the configured `listen` address) with the admin token from the same configuration, and print
//! its JSON answers.

use std::io::Write;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::admin::chats::UpdateChat;
use crate::admin::members::{AddMember, UpdateMember};
use crate::admin::replays::ReplayRequest;
use crate::admin::sources::{CreateSource, UpdateSource};
use crate::admin::users::{AddUser, UpdateUser};
use crate::admin::webhooks::{CreateWebhook, SecretInput, UpdateWebhook};
use crate::admin::workspaces::{CreateWorkspace, UpdateWorkspace};
use crate::config::Config;
use crate::domain::{Account, Event};

#[derive(Debug, Args)]
pub struct Remote {
    /// The daemon's base URL; defaults to http://{listen} from the configuration.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List workspaces.
    List,
    /// Show one workspace.
    Show { id: String },
    /// Create a workspace; prints its id and ingest key.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
        /// IANA time zone for windows, e.g. Europe/Berlin (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// none, 1h, 6h, 12h, 24h or conversation (default none).
        #[arg(long)]
        granularity: Option<String>,
        /// The language of its notes: en (default) or ja.
        #[arg(long)]
        locale: Option<String>,
        /// How long its media links work, from 5m to 30days (default 24h).
        #[arg(long)]
        media_link_ttl: Option<String>,
        /// How long it keeps its messages: keep (default) or e.g. 90days.
        #[arg(long)]
        message_retention: Option<String>,
        /// How long its transcript links work: never (default) or e.g. 30days.
        #[arg(long)]
        transcript_link_ttl: Option<String>,
        /// For conversation bundles: the silence that ends a conversation, 1m to 24h (default 30m).
        #[arg(long)]
        conversation_silence: Option<String>,
        /// For conversation bundles: the longest conversation, 1h to 7days (default 24h).
        #[arg(long)]
        conversation_max: Option<String>,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Change a workspace.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        owner_email: Option<String>,
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long)]
        granularity: Option<String>,
        /// en or ja.
        #[arg(long)]
        locale: Option<String>,
        /// How long its media links work, from 5m to 30days.
        #[arg(long)]
        media_link_ttl: Option<String>,
        /// How long it keeps its messages: keep or e.g. 90days.
        #[arg(long)]
        message_retention: Option<String>,
        /// How long its transcript links work: never or e.g. 30days.
        #[arg(long)]
        transcript_link_ttl: Option<String>,
        /// For conversation bundles: the silence that ends a conversation, 1m to 24h.
        #[arg(long)]
        conversation_silence: Option<String>,
        /// For conversation bundles: the longest conversation, 1h to 7days.
        #[arg(long)]
        conversation_max: Option<String>,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Release every open window of the workspace now.
    Flush { id: String },
    /// Chats, messages and deliveries of the workspace.
    Stats { id: String },
}

#[derive(Debug, Args)]
pub struct AccountArgs {
    /// The business account's name (the payloads' whatsapp_account).
    #[arg(long)]
    account_name: Option<String>,
    #[arg(long)]
    account_email: Option<String>,
    #[arg(long)]
    account_phone: Option<String>,
}

impl AccountArgs {
    /// The account the flags give, if any is given.
    fn account(self) -> Option<Account> {
        let AccountArgs { account_name, account_email, account_phone } = self;
        if account_name.is_none() && account_email.is_none() && account_phone.is_none() {
            return None;
        }
        Some(Account { full_name: account_name, email: account_email, phone: account_phone })
    }
}

/// A flag's value as the API's request type takes it (a granularity, an event, a kind of
/// source), refused here as bad usage naming the flag.
fn parsed<T: DeserializeOwned>(flag: &str, value: &str) -> Result<T, Failure> {
    serde_json::from_value(Value::String(value.to_string()))
        .map_err(|e| Failure { bad_input: true, message: format!("--{flag} {value:?}: {e}") })
}

/// `value` parsed, or `None` for "default": back to the workspace's or the configured value.
fn or_default<T: DeserializeOwned>(flag: &str, value: Option<String>) -> Result<Option<Option<T>>, Failure> {
    value.map(|v| if v == "default" { Ok(None) } else { parsed(flag, &v).map(Some) }).transpose()
}

fn events(values: Option<Vec<String>>) -> Result<Option<Vec<Event>>, Failure> {
    values.map(|list| list.iter().map(|e| parsed("events", e)).collect()).transpose()
}

/// A request body, as the API's own request type serialises it.
fn body(request: impl Serialize) -> Option<Value> {
    Some(serde_json::to_value(request).expect("request types serialise"))
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// List a workspace's webhooks.
    List { workspace: String },
    /// Show one webhook, with its failure count and why it is disabled.
    Show { id: String },
    /// Create a webhook for a workspace, delivering to URL.
    Create {
        workspace: String,
        /// Where deliveries go (a public http or https URL).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// none, 1h, 6h, 12h, 24h or conversation (default: the workspace's).
        #[arg(long)]
        granularity: Option<String>,
        /// Generate a whsec_ signing secret (printed once).
        #[arg(long)]
        secret: bool,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
        /// Per-attempt timeout, e.g. 10s.
        #[arg(long)]
        timeout: Option<String>,
        /// Comma-separated: messages, session_status.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Characters of note per bundle part, 500 to 1000000 (default 60000).
        #[arg(long)]
        note_max_chars: Option<u64>,
        /// What to do with messages that carry media: skip (default) or placeholder.
        #[arg(long)]
        media: Option<String>,
        /// For conversation bundles: its own silence, 1m to 24h (default: the workspace's).
        #[arg(long)]
        conversation_silence: Option<String>,
        /// For conversation bundles: its own longest conversation, 1h to 7days.
        #[arg(long)]
        conversation_max: Option<String>,
    },
    /// Change a webhook.
    Update {
        id: String,
        /// A new delivery URL.
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
        /// none, 1h, 6h, 12h, 24h, conversation, or "default" to follow the workspace.
        #[arg(long)]
        granularity: Option<String>,
        /// true to switch it on, false to switch it off.
        #[arg(long)]
        enabled: Option<bool>,
        /// With --enabled false: pause (keep collecting; the default) or stop (take nothing).
        #[arg(long)]
        mode: Option<String>,
        /// With --enabled true: send what waited (the default) or discard it.
        #[arg(long)]
        backlog: Option<String>,
        /// "generate", "remove", or a whsec_ secret.
        #[arg(long)]
        secret: Option<String>,
        /// e.g. 10s, or "default".
        #[arg(long)]
        timeout: Option<String>,
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Characters of note per bundle part, 500 to 1000000.
        #[arg(long)]
        note_max_chars: Option<u64>,
        /// What to do with messages that carry media: skip (default) or placeholder.
        #[arg(long)]
        media: Option<String>,
        /// For conversation bundles: its own silence (1m to 24h), or "default" for the workspace's.
        #[arg(long)]
        conversation_silence: Option<String>,
        /// For conversation bundles: its own longest conversation (1h to 7days), or "default".
        #[arg(long)]
        conversation_max: Option<String>,
    },
    /// Delete a webhook and what is queued for it.
    Delete { id: String },
    /// Send the webhook again the messages received between two instants, bundled as it bundles.
    Replay {
        id: String,
        /// From this instant (RFC 3339, e.g. 2024-03-01T00:00:00Z)…
        #[arg(long)]
        from: String,
        /// …until this one (not included).
        #[arg(long)]
        to: String,
        /// One chat only (its id, as `chatbundle chat list` shows it).
        #[arg(long)]
        chat_id: Option<i64>,
        /// Count what it would send, and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// A replay's progress, or (with --cancel) cancel what has not gone out.
    ReplayStatus {
        id: String,
        replay_id: String,
        #[arg(long)]
        cancel: bool,
    },
    /// Send the webhook a real sample now and show the result.
    Test { id: String },
    /// The latest 10 rows of the webhook's activity log.
    Activity { id: String },
    /// Export the webhook's activity log.
    Log {
        id: String,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
    /// The webhook's deliveries, newest first.
    Deliveries {
        id: String,
        /// pending, delivered, failed or expired.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Send a failed or expired delivery again (same webhook-id, same bytes).
    Resend {
        id: String,
        /// The delivery's id, as `webhook deliveries` lists it.
        delivery: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Invite an address to a workspace; prints the member with their invitation link.
    Add {
        workspace: String,
        email: String,
        /// admin or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List a workspace's members.
    List { workspace: String },
    /// Give a member another role.
    Role {
        workspace: String,
        user_id: String,
        /// admin or viewer.
        role: String,
    },
    /// Remove a member: out of the workspace at their next request.
    Remove { workspace: String, user_id: String },
}

pub async fn member(config: &Config, remote: &Remote, command: MemberCommand) -> Outcome {
    use reqwest::Method;
    let client = Client::new(config, remote)?;
    match command {
        MemberCommand::Add { workspace, email, role } => {
            let request = AddMember { email, role: parsed("role", &role)? };
            client.show(Method::POST, &format!("/api/v1/workspaces/{workspace}/members"), body(request)).await
        }
        MemberCommand::List { workspace } => {
            client.show(Method::GET, &format!("/api/v1/workspaces/{workspace}/members"), None).await
        }
        MemberCommand::Role { workspace, user_id, role } => {
            let request = UpdateMember { role: parsed("role", &role)? };
            let path = format!("/api/v1/workspaces/{workspace}/members/{user_id}");
            client.show(Method::PATCH, &path, body(request)).await
        }
        MemberCommand::Remove { workspace, user_id } => {
            client
                .show(Method::DELETE, &format!("/api/v1/workspaces/{workspace}/members/{user_id}"), None)
                .await
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Make an address an operator (every workspace and the instance, signed in as themselves);
    /// prints the user with a link to choose a password when they have none yet.
    Add {
        email: String,
        /// Required: the instance's users are its operators (anyone else is a workspace's member:
        /// `chatbundle member add`).
        #[arg(long)]
        operator: bool,
    },
    /// List every user.
    List,
    /// Make a user an operator (`--operator true`), or no longer one (`--operator false`).
    Set {
        user_id: String,
        #[arg(long, action = clap::ArgAction::Set)]
        operator: bool,
    },
    /// Delete a user, with their memberships: signed out at once.
    Delete { user_id: String },
}

pub async fn user(config: &Config, remote: &Remote, command: UserCommand) -> Outcome {
    use reqwest::Method;
    let client = Client::new(config, remote)?;
    match command {
        UserCommand::Add { operator: false, .. } => Err(Failure {
            bad_input: true,
            message: "`user add` makes operators: say --operator, or add them to a workspace with \
                      `chatbundle member add WORKSPACE EMAIL`"
                .into(),
        }),
        UserCommand::Add { email, operator: true } => {
            client.show(Method::POST, "/api/v1/users", body(AddUser { email, operator: true })).await
        }
        UserCommand::List => client.show(Method::GET, "/api/v1/users", None).await,
        UserCommand::Set { user_id, operator } => {
            client
                .show(Method::PATCH, &format!("/api/v1/users/{user_id}"), body(UpdateUser { operator }))
                .await
        }
        UserCommand::Delete { user_id } => {
            client.show(Method::DELETE, &format!("/api/v1/users/{user_id}"), None).await
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// List a workspace's sources, with their inbound URLs.
    List { workspace: String },
    /// Show one source (never its credentials, only which are set).
    Show { workspace: String, id: String },
    /// Connect a channel; prints the inbound URL to paste into it.
    Create {
        workspace: String,
        /// twilio, whatsapp, wechat, chatwoot or zoho_desk.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
        /// A credential as key=value (repeat), e.g. --credential auth_token=…
        #[arg(long = "credential", value_name = "KEY=VALUE")]
        credentials: Vec<String>,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Change a source; --credential replaces all credentials.
    Update {
        workspace: String,
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long = "credential", value_name = "KEY=VALUE")]
        credentials: Vec<String>,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Delete a source; its chats and messages stay.
    Delete { workspace: String, id: String },
}

fn credentials(pairs: &[String]) -> Result<Option<Map<String, Value>>, Failure> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut map = Map::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| Failure {
            bad_input: true,
            message: format!("--credential {pair:?}: expected KEY=VALUE"),
        })?;
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(Some(map))
}

pub async fn source(config: &Config, remote: &Remote, command: SourceCommand) -> Outcome {
    use reqwest::Method;
    let client = Client::new(config, remote)?;
    match command {
        SourceCommand::List { workspace } => {
            client.show(Method::GET, &format!("/api/v1/workspaces/{workspace}/sources"), None).await
        }
        SourceCommand::Show { workspace, id } => {
            client.show(Method::GET, &format!("/api/v1/workspaces/{workspace}/sources/{id}"), None).await
        }
        SourceCommand::Create { workspace, kind, name, credentials: pairs, account } => {
            let request = CreateSource {
                kind: parsed("kind", &kind)?,
                name,
                account: account.account(),
                credentials: credentials(&pairs)?,
                enabled: None,
            };
            client.show(Method::POST, &format!("/api/v1/workspaces/{workspace}/sources"), body(request)).await
        }
        SourceCommand::Update { workspace, id, name, enabled, credentials: pairs, account } => {
            let request =
                UpdateSource { name, account: account.account(), credentials: credentials(&pairs)?, enabled };
            client
                .show(Method::PATCH, &format!("/api/v1/workspaces/{workspace}/sources/{id}"), body(request))
                .await
        }
        SourceCommand::Delete { workspace, id } => {
            client.show(Method::DELETE, &format!("/api/v1/workspaces/{workspace}/sources/{id}"), None).await
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// List a workspace's chats, most recently active first.
    List {
        workspace: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show a chat with its transcript link.
    Show { id: String },
    /// Give a chat a new transcript link; the old one stops working.
    RotateToken { id: String },
    /// A chat's session history, oldest first.
    Sessions { id: String },
    /// Set who owns a chat; an empty value clears it.
    Update {
        id: String,
        #[arg(long)]
        responsible_name: Option<String>,
        #[arg(long)]
        responsible_email: Option<String>,
    },
    /// Erase a chat for good (a person's request to delete their data): its messages, history,
    /// transcript link and waiting deliveries. Asks for --yes.
    Erase {
        id: String,
        /// Confirms that it cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn chat(config: &Config, remote: &Remote, command: ChatCommand) -> Outcome {
    use reqwest::Method;
    let client = Client::new(config, remote)?;
    match command {
        ChatCommand::List { workspace, limit, offset } => {
            let path = format!("/api/v1/workspaces/{workspace}/chats?limit={limit}&offset={offset}");
            client.show(Method::GET, &path, None).await
        }
        ChatCommand::Show { id } => client.show(Method::GET, &format!("/api/v1/chats/{id}"), None).await,
        ChatCommand::RotateToken { id } => {
            client.show(Method::POST, &format!("/api/v1/chats/{id}/rotate-token"), None).await
        }
        ChatCommand::Sessions { id } => {
            client.show(Method::GET, &format!("/api/v1/chats/{id}/sessions"), None).await
        }
        ChatCommand::Update { id, responsible_name, responsible_email } => {
            let cleared = |value: Option<String>| value.map(|v| Some(v).filter(|v| !v.trim().is_empty()));
            let request = UpdateChat {
                responsible_name: cleared(responsible_name),
                responsible_email: cleared(responsible_email),
            };
            client.show(Method::PATCH, &format!("/api/v1/chats/{id}"), body(request)).await
        }
        ChatCommand::Erase { yes: false, .. } => {
            Err(Failure { bad_input: true, message: "erasing a chat cannot be undone: say --yes".into() })
        }
        ChatCommand::Erase { id, yes: true } => {
            client.show(Method::DELETE, &format!("/api/v1/chats/{id}"), None).await
        }
    }
}

/// A failed remote command: bad input (exit 2) or anything else (exit 1).
pub struct Failure {
    pub bad_input: bool,
    pub message: String,
}

type Outcome = Result<(), Failure>;

fn failure(message: impl Into<String>) -> Failure {
    Failure { bad_input: false, message: message.into() }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(config: &Config, remote: &Remote) -> Result<Client, Failure> {
        let token = match &config.admin_token {
            Some(token) => token.clone(),
            None => {
                let path = config.data_dir.join("admin-token");
                std::fs::read_to_string(&path).map(|t| t.trim().to_string()).map_err(|e| {
                    failure(format!("no admin_token configured and {} unreadable: {e}", path.display()))
                })?
            }
        };
        let base = remote.url.clone().unwrap_or_else(|| format!("http://{}", config.listen));
        crate::tls::use_ring();
        Ok(Client { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_string(), token })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response =
            request.send().await.map_err(|e| failure(format!("cannot reach {}: {e}", self.base)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["detail"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(Failure {
            bad_input: status.as_u16() == 400 || status.as_u16() == 422,
            message: format!("{status}: {detail}"),
        })
    }

    /// Calls the API and prints its JSON answer (nothing for 204).
    async fn show(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Outcome {
        let response = self.call(method, path, body).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(());
        }
        let value: Value = response.json().await.map_err(|e| failure(format!("unreadable answer: {e}")))?;
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON prints"));
        Ok(())
    }
}

/// Drops `null` entries, so unset flags leave fields alone.
pub async fn workspace(config: &Config, remote: &Remote, command: WorkspaceCommand) -> Outcome {
    use reqwest::Method;
    let client = Client::new(config, remote)?;
    match command {
        WorkspaceCommand::List => client.show(Method::GET, "/api/v1/workspaces", None).await,
        WorkspaceCommand::Show { id } => {
            client.show(Method::GET, &format!("/api/v1/workspaces/{id}"), None).await
        }
        WorkspaceCommand::Create {
            name,
            owner_email,
            timezone,
            granularity,
            locale,
            media_link_ttl,
            message_retention,
            transcript_link_ttl,
            conversation_silence,
            conversation_max,
            account,
        } => {
            let request = CreateWorkspace {
                name,
                owner_email,
                timezone,
                granularity: granularity.map(|g| parsed("granularity", &g)).transpose()?,
                account: account.account(),
                locale: locale.map(|l| parsed("locale", &l)).transpose()?,
                media_link_ttl,
                message_retention,
                transcript_link_ttl,
                conversation_silence,
                conversation_max,
            };
            client.show(Method::POST, "/api/v1/workspaces", body(request)).await
        }
        WorkspaceCommand::Update {
            id,
            name,
            owner_email,
            timezone,
            granularity,
            locale,
            media_link_ttl,
            message_retention,
            transcript_link_ttl,
            conversation_silence,
            conversation_max,
            account,
        } => {
            let request = UpdateWorkspace {
                name,
                owner_email,
                timezone,
                granularity: granularity.map(|g| parsed("granularity", &g)).transpose()?,
                account: account.account(),
                locale: locale.map(|l| parsed("locale", &l)).transpose()?,
                media_link_ttl,
                message_retention,
                transcript_link_ttl,
                conversation_silence,
                conversation_max,
                reply_url: None,
                reply_secret: None,
            };
            client.show(Method::PATCH, &format!("/api/v1/workspaces/{id}"), body(request)).await
        }
        WorkspaceCommand::Flush { id } => {
            client.show(Method::POST, &format!("/api/v1/workspaces/{id}/flush"), None).await
        }
        WorkspaceCommand::Stats { id } => {
            client.show(Method::GET, &format!("/api/v1/workspaces/{id}/stats"), None).await
        }
    }
}

pub async fn webhook(config: &Config, remote: &Remote, command: WebhookCommand) -> Outcome {
    use reqwest::Method;
    let client = Client::new(config, remote)?;
    match command {
        WebhookCommand::List { workspace } => {
            client.show(Method::GET, &format!("/api/v1/workspaces/{workspace}/webhooks"), None).await
        }
        WebhookCommand::Show { id } => {
            client.show(Method::GET, &format!("/api/v1/webhooks/{id}"), None).await
        }
        WebhookCommand::Create {
            workspace,
            endpoint,
            granularity,
            secret,
            disabled,
            timeout,
            events,
            note_max_chars,
            media,
            conversation_silence,
            conversation_max,
        } => {
            let request = CreateWebhook {
                url: endpoint,
                granularity: granularity.map(|g| parsed("granularity", &g)).transpose()?,
                enabled: disabled.then_some(false),
                secret: secret.then_some(SecretInput::Generate(true)),
                events: self::events(events)?,
                timeout,
                note_max_chars,
                media: media.map(|m| parsed("media", &m)).transpose()?,
                conversation_silence,
                conversation_max,
            };
            client
                .show(Method::POST, &format!("/api/v1/workspaces/{workspace}/webhooks"), body(request))
                .await
        }
        WebhookCommand::Update {
            id,
            webhook_url,
            granularity,
            enabled,
            secret,
            timeout,
            events,
            note_max_chars,
            media,
            mode,
            backlog,
            conversation_silence,
            conversation_max,
        } => {
            let secret = secret.map(|s| match s.as_str() {
                "generate" => Some(SecretInput::Generate(true)),
                "remove" => None,
                _ => Some(SecretInput::Given(s)),
            });
            let request = UpdateWebhook {
                url: webhook_url,
                granularity: or_default("granularity", granularity)?,
                enabled,
                secret,
                events: self::events(events)?,
                timeout: timeout.map(|t| (t != "default").then_some(t)),
                note_max_chars,
                media: media.map(|m| parsed("media", &m)).transpose()?,
                mode: mode.map(|m| parsed("mode", &m)).transpose()?,
                backlog: backlog.map(|b| parsed("backlog", &b)).transpose()?,
                conversation_silence: conversation_silence.map(|d| (d != "default").then_some(d)),
                conversation_max: conversation_max.map(|d| (d != "default").then_some(d)),
            };
            client.show(Method::PATCH, &format!("/api/v1/webhooks/{id}"), body(request)).await
        }
        WebhookCommand::Delete { id } => {
            client.show(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None).await
        }
        WebhookCommand::Test { id } => {
            client.show(Method::POST, &format!("/api/v1/webhooks/{id}/test"), None).await
        }
        WebhookCommand::Activity { id } => {
            client.show(Method::GET, &format!("/api/v1/webhooks/{id}/activity"), None).await
        }
        WebhookCommand::Replay { id, from, to, chat_id, dry_run } => {
            let (from, to) = (parsed("from", &from)?, parsed("to", &to)?);
            let request = ReplayRequest { from, to, chat_id, dry_run: dry_run.then_some(true) };
            client.show(Method::POST, &format!("/api/v1/webhooks/{id}/replay"), body(request)).await
        }
        WebhookCommand::ReplayStatus { id, replay_id, cancel } => {
            let method = if cancel { Method::DELETE } else { Method::GET };
            client.show(method, &format!("/api/v1/webhooks/{id}/replays/{replay_id}"), None).await
        }
        WebhookCommand::Log { id, format } => {
            let mut response =
                client.call(Method::GET, &format!("/api/v1/webhooks/{id}/log?format={format}"), None).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) =
                response.chunk().await.map_err(|e| failure(format!("reading the log: {e}")))?
            {
                out.write_all(&chunk).map_err(|e| failure(e.to_string()))?;
            }
            Ok(())
        }
        WebhookCommand::Deliveries { id, status, limit, offset } => {
            let status = status.map(|s| format!("&status={s}")).unwrap_or_default();
            let path = format!("/api/v1/webhooks/{id}/deliveries?limit={limit}&offset={offset}{status}");
            client.show(Method::GET, &path, None).await
        }
        WebhookCommand::Resend { id, delivery } => {
            let path = format!("/api/v1/webhooks/{id}/deliveries/{delivery}/resend");
            client.show(Method::POST, &path, None).await
        }
    }
}
