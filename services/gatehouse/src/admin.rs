//! `gatehouse admin`: the operator's command line, a client of the operator API
//! (`/api/operator` on the control API), so every action goes through the same checks, audit
//! trails and change notifications as the API itself.
//!
//! The operator token comes from `GATEHOUSE_OPERATOR_TOKEN`, else `--token-file`, else
//! `<local.data_dir>/operator-token` (what `gatehouse up` writes).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use gatehouse_core::config::{Config, OPERATOR_TOKEN_ENV, Sources};
use gatehouse_core::secrets::{random_token, token_hash};

/// The file `gatehouse up` keeps the operator token in, under its data directory.
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";

/// A fresh operator token.
pub fn new_operator_token() -> String {
    format!("ghop_{}", random_token(32))
}

/// What `operator.token_sha256` holds for `token`.
pub fn token_sha256_hex(token: &str) -> String {
    token_hash(token).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Args)]
pub struct AdminArgs {
    /// Base URL of the control API (default: control_api.public_url).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// File holding the operator token (when GATEHOUSE_OPERATOR_TOKEN is not set).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Who is acting, recorded in the audit trails (default: $USER).
    #[arg(long = "as", value_name = "NAME")]
    acting_as: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print a fresh operator token and the `operator.token_sha256` value that accepts it.
    NewToken,
    /// Billing plans.
    Plans {
        #[command(subcommand)]
        action: PlanAction,
    },
    /// Orgs.
    Orgs {
        #[command(subcommand)]
        action: OrgAction,
    },
    /// The platform audit trail (every operator action).
    Audit {
        /// Only actions about this org (slug).
        #[arg(long)]
        org: Option<String>,
        /// Entries after this sequence number.
        #[arg(long)]
        after_seq: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Args, Default)]
struct PlanSettings {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    monthly_fee_cents: Option<i64>,
    #[arg(long)]
    included_calls: Option<i64>,
    #[arg(long)]
    overage_cents_per_1000_calls: Option<i64>,
    /// Calls per month beyond which calls are refused.
    #[arg(long, conflicts_with = "no_hard_limit")]
    hard_limit_calls: Option<i64>,
    /// No hard cap.
    #[arg(long)]
    no_hard_limit: bool,
    /// Default endpoint rate limits as JSON, e.g. '{"per_org":{"per_minute":600}}'.
    #[arg(long, value_name = "JSON")]
    rate_limit_defaults: Option<String>,
    #[arg(long, conflicts_with = "no_retention_limit")]
    retention_days: Option<i32>,
    /// Keep the trail and usage without a limit.
    #[arg(long)]
    no_retention_limit: bool,
    #[arg(long, conflicts_with = "unlimited_seats")]
    seats: Option<i32>,
    #[arg(long)]
    unlimited_seats: bool,
}

impl PlanSettings {
    /// The JSON fields these flags set (`null` for the `--no-…` flags).
    fn to_json(&self) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                body.insert(key.to_owned(), v);
            }
        };
        put("name", self.name.clone().map(Value::from));
        put("monthly_fee_cents", self.monthly_fee_cents.map(Value::from));
        put("included_calls", self.included_calls.map(Value::from));
        put(
            "overage_cents_per_1000_calls",
            self.overage_cents_per_1000_calls.map(Value::from),
        );
        put(
            "hard_limit_calls",
            nullable(self.hard_limit_calls.map(Value::from), self.no_hard_limit),
        );
        put(
            "retention_days",
            nullable(self.retention_days.map(Value::from), self.no_retention_limit),
        );
        put(
            "seats",
            nullable(self.seats.map(Value::from), self.unlimited_seats),
        );
        if let Some(raw) = &self.rate_limit_defaults {
            let limits: Value = serde_json::from_str(raw).context("--rate-limit-defaults is not JSON")?;
            body.insert("rate_limit_defaults".into(), limits);
        }
        Ok(body)
    }
}

fn nullable(value: Option<Value>, clear: bool) -> Option<Value> {
    if clear { Some(Value::Null) } else { value }
}

#[derive(Subcommand)]
enum PlanAction {
    List,
    Show {
        id: String,
    },
    Create {
        id: String,
        #[command(flatten)]
        settings: PlanSettings,
    },
    /// Change the given settings (others are kept).
    Update {
        id: String,
        #[command(flatten)]
        settings: PlanSettings,
    },
    /// Orgs on a retired plan keep it; no org can be moved onto it.
    Retire {
        id: String,
    },
}

#[derive(Subcommand)]
enum OrgAction {
    List,
    /// The org with its plan, suspension and usage of the current period.
    Show {
        slug: String,
    },
    SetPlan {
        slug: String,
        plan: String,
    },
    /// Its endpoints refuse calls; its members can still sign in and export the audit trail.
    Suspend {
        slug: String,
        #[arg(long)]
        reason: String,
    },
    Resume {
        slug: String,
    },
}

pub async fn run(sources: Sources, args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::NewToken = args.command {
        let token = new_operator_token();
        let hash = token_sha256_hex(&token);
        println!("operator token (keep it secret; {OPERATOR_TOKEN_ENV}):\n  {token}");
        println!("configuration (operator.token_sha256, or GATEHOUSE_OPERATOR__TOKEN_SHA256):\n  {hash}");
        return Ok(());
    }
    let cfg = Config::load(&sources)?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| cfg.control_api.public_url.to_string());
    let base = base.trim_end_matches('/').to_owned();
    let token = operator_token(&cfg, args.token_file.as_deref())?;
    let acting_as = args
        .acting_as
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_owned());
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?,
        base,
        token,
        acting_as,
    };
    let (method, path, body) = request_of(args.command)?;
    let answer = client.send(method, &path, body).await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// The method, path and body of the API call a command makes.
fn request_of(command: AdminCommand) -> anyhow::Result<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    Ok(match command {
        AdminCommand::NewToken => unreachable!("handled before"),
        AdminCommand::Plans { action } => match action {
            PlanAction::List => (Method::GET, "/plans".into(), None),
            PlanAction::Show { id } => (Method::GET, format!("/plans/{}", segment(&id)), None),
            PlanAction::Create { id, settings } => {
                let mut body = settings.to_json()?;
                body.insert("id".into(), Value::from(id));
                (Method::POST, "/plans".into(), Some(Value::Object(body)))
            }
            PlanAction::Update { id, settings } => (
                Method::PATCH,
                format!("/plans/{}", segment(&id)),
                Some(Value::Object(settings.to_json()?)),
            ),
            PlanAction::Retire { id } => (Method::POST, format!("/plans/{}/retire", segment(&id)), None),
        },
        AdminCommand::Orgs { action } => match action {
            OrgAction::List => (Method::GET, "/orgs".into(), None),
            OrgAction::Show { slug } => (Method::GET, format!("/orgs/{}", segment(&slug)), None),
            OrgAction::SetPlan { slug, plan } => (
                Method::PUT,
                format!("/orgs/{}/plan", segment(&slug)),
                Some(json!({"plan_id": plan})),
            ),
            OrgAction::Suspend { slug, reason } => (
                Method::POST,
                format!("/orgs/{}/suspend", segment(&slug)),
                Some(json!({"reason": reason})),
            ),
            OrgAction::Resume { slug } => (Method::POST, format!("/orgs/{}/resume", segment(&slug)), None),
        },
        AdminCommand::Audit {
            org,
            after_seq,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(org) = org {
                query.push(format!("org={}", segment(&org)));
            }
            if let Some(after) = after_seq {
                query.push(format!("after_seq={after}"));
            }
            (Method::GET, format!("/audit?{}", query.join("&")), None)
        }
    })
}

/// A path segment or query value, percent-encoded.
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The operator token: the environment, the given file, or the one `gatehouse up` keeps.
fn operator_token(cfg: &Config, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var(OPERATOR_TOKEN_ENV)
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_owned());
    }
    let path = match file {
        Some(path) => path.to_path_buf(),
        None => cfg.local.data_dir.join(OPERATOR_TOKEN_FILE),
    };
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no operator token: set {OPERATOR_TOKEN_ENV}, pass --token-file, or run where `gatehouse up` \
             keeps one ({} not readable)",
            path.display()
        )
    })?;
    Ok(token.trim().to_owned())
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    acting_as: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}/api/operator{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("x-gatehouse-operator", &self.acting_as);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let detail = value["detail"].as_str().unwrap_or("no detail");
            let code = value["code"].as_str().unwrap_or("error");
            anyhow::bail!("{status} {code}: {detail}")
        }
    }
}
