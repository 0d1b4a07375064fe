//! `gatehouse`: one binary for every service.
//!
//! ```text
//! gatehouse control-api | dataplane | usage-worker   run one service
//! gatehouse migrate                                  apply migrations, provision the services' role
//! gatehouse openapi [--check FILE]                   print (or check) the control API's OpenAPI document
//! gatehouse up                                       the whole platform in one process, locally
//! gatehouse signing-keys list | rotate               the OAuth token signing keys
//! gatehouse admin plans|orgs|audit|new-token         operator administration (the operator API)
//! gatehouse healthcheck                              exit 0 if a service of this configuration is alive
//! ```

mod admin;
mod services;
mod up;

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers,
/// and glibc's malloc cost the dataplane ~13% of its CPU per call (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gatehouse_core::config::{Component, Config, ConfigError, Sources};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Gatehouse: governed MCP endpoints for many tenants"
)]
struct Cli {
    /// Configuration file (TOML), applied over the built-in defaults and under GATEHOUSE_*
    /// environment variables. Also GATEHOUSE_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control API (REST API, OAuth authorization server, console).
    ControlApi,
    /// Run the dataplane (the MCP endpoints).
    Dataplane,
    /// Run the usage-worker (audit trail, usage, quotas, invoices).
    UsageWorker,
    /// Apply database migrations as the schema owner and provision the services' role.
    Migrate,
    /// Print the control API's OpenAPI document.
    Openapi {
        /// Instead of printing, fail if FILE differs from the generated document.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// Run the whole platform in one process with a private PostgreSQL and a demo org.
    Up,
    /// Exit 0 if a Gatehouse service of this configuration answers /healthz on its listen address
    /// (the container image's HEALTHCHECK; needs no curl in the image).
    Healthcheck,
    /// Inspect or rotate the OAuth access-token signing keys.
    SigningKeys {
        #[command(subcommand)]
        action: SigningKeysAction,
    },
    /// Operator administration: plans, orgs (plan, suspension, usage) and the platform audit
    /// trail, through the control API's operator API (operator token).
    Admin(Box<admin::AdminArgs>),
}

#[derive(Subcommand)]
enum SigningKeysAction {
    /// Print the keys that are still published, with their schedule (JSON).
    List,
    /// Rotate now: a new key is published at once and signs after oauth.key_publish_lead_secs;
    /// the current key stops signing then and stays published until its tokens have expired.
    Rotate,
}

/// Exit code for configuration errors (distinct from runtime failures).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    gatehouse_core::install_crypto_provider();
    let cli = Cli::parse();
    let sources = Sources {
        files: cli.config.into_iter().collect(),
        overrides: Vec::new(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::ControlApi => services::run_service(sources, Component::ControlApi).await,
            Command::Dataplane => services::run_service(sources, Component::Dataplane).await,
            Command::UsageWorker => services::run_service(sources, Component::UsageWorker).await,
            Command::Migrate => services::migrate(sources).await,
            Command::Openapi { check } => services::openapi(check),
            Command::Up => up::run(sources).await,
            Command::SigningKeys { action } => {
                services::signing_keys(sources, matches!(action, SigningKeysAction::Rotate)).await
            }
            Command::Healthcheck => services::healthcheck(sources).await,
            Command::Admin(args) => admin::run(sources, *args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(config) = err.downcast_ref::<ConfigError>() {
                eprintln!("gatehouse: {config}");
                ExitCode::from(EXIT_CONFIG)
            } else {
                eprintln!("gatehouse: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Loads and validates configuration for `component`.
pub(crate) fn load_config(sources: &Sources, component: Component) -> Result<Config, ConfigError> {
    let cfg = Config::load(sources)?;
    cfg.validate(component)?;
    Ok(cfg)
}
