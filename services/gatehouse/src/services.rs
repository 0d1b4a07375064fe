//! Running one service per process, `migrate` and `openapi`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use gatehouse_core::config::{Component, Config, ConfigError, Sources};
use gatehouse_db::Db;
use gatehouse_events::{Bus, ChangeNotifier};

use crate::load_config;

/// Runs `component` until SIGTERM/SIGINT, then drains within the grace period.
pub async fn run_service(sources: Sources, component: Component) -> anyhow::Result<()> {
    let cfg = Arc::new(load_config(&sources, component)?);
    let name = match component {
        Component::ControlApi => "control-api",
        Component::Dataplane => "dataplane",
        Component::UsageWorker => "usage-worker",
        _ => unreachable!("not a service"),
    };
    let _telemetry = gatehouse_core::telemetry::init(&cfg.telemetry, name)?;
    let shutdown = gatehouse_core::shutdown::on_signal();
    match component {
        Component::ControlApi => {
            let Some(db) = verified_db(&cfg, &shutdown).await? else {
                return Ok(());
            };
            let notifier = notifier(&cfg, shutdown.clone()).await?;
            let api = gatehouse_control_api::ControlApi::build(gatehouse_control_api::Dependencies {
                cfg: cfg.clone(),
                db: db.clone(),
                notifier,
                rate_limiter: gatehouse_events::RateLimiter::local(),
            })?;
            tracing::info!(addr = %api.local_addr(), "control API listening");
            api.run_until_stopped(shutdown).await?;
            db.close().await;
        }
        Component::Dataplane => {
            let bus = Bus::from_config(&cfg, shutdown.clone()).await?;
            let dataplane = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
                cfg: cfg.clone(),
                notifier: bus.notifier.clone(),
                events: bus.publisher.clone(),
                limiter: bus.limiter.clone(),
                quota: bus.quota.clone(),
            })?;
            tracing::info!(addr = %dataplane.local_addr(), "dataplane listening");
            dataplane.run_until_stopped(shutdown).await?;
            // Whatever was emitted goes to Redis or the spool before the process exits.
            bus.handle.close().await;
        }
        Component::UsageWorker => {
            let Some(db) = verified_db(&cfg, &shutdown).await? else {
                return Ok(());
            };
            let bus = Bus::from_config(&cfg, shutdown.clone()).await?;
            let worker = gatehouse_usage_worker::UsageWorker::build(gatehouse_usage_worker::Dependencies {
                cfg: cfg.clone(),
                db: db.clone(),
                notifier: bus.notifier.clone(),
                consumer: bus.consumer,
                quota: bus.quota.clone(),
            })?;
            tracing::info!(addr = %worker.local_addr(), "usage-worker listening");
            worker.run_until_stopped(shutdown).await?;
            bus.handle.close().await;
            db.close().await;
        }
        _ => unreachable!(),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Redis pub/sub when Redis is configured, in-process delivery otherwise (the control API needs
/// nothing else from the bus). Redis may be down at start: the notifier connects in the
/// background and readiness reports it meanwhile.
pub async fn notifier(cfg: &Config, shutdown: CancellationToken) -> anyhow::Result<ChangeNotifier> {
    match cfg.redis_url() {
        None => Ok(ChangeNotifier::local()),
        Some(url) => {
            let client =
                redis::Client::open(url).map_err(|e| ConfigError::new("redis.url", e.to_string()))?;
            Ok(ChangeNotifier::redis(client, shutdown).await?)
        }
    }
}

/// Connects as the services' role and checks that this role cannot defeat row-level security
/// ([`Db::verify_service_role`]) before anything listens: a service with an unsafe role never
/// accepts a request. A database that is down at start is waited for (and said so in the log);
/// `None` when shutdown comes first.
pub async fn verified_db(cfg: &Config, shutdown: &CancellationToken) -> anyhow::Result<Option<Db>> {
    let db = Db::connect_lazy(&cfg.database)?;
    let mut said = false;
    loop {
        match db.ping().await {
            Ok(()) => break,
            Err(e) if !said => {
                tracing::warn!(error = %e, "waiting for the database before listening");
                said = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return Ok(None),
        }
    }
    if let Err(unsafe_role) = db.verify_service_role().await {
        db.close().await;
        return Err(ConfigError::new("database.url", unsafe_role.to_string()).into());
    }
    Ok(Some(db))
}

/// `gatehouse migrate`: migrations as the owner, then the services' role.
pub async fn migrate(sources: Sources) -> anyhow::Result<()> {
    let cfg = load_config(&sources, Component::Migrate)?;
    let _telemetry = gatehouse_core::telemetry::init(&cfg.telemetry, "migrate")?;
    let admin = cfg.database.admin_url.expose_secret();
    if admin.is_empty() {
        return Err(ConfigError::new(
            "database.admin_url",
            "is required by migrate (the schema owner's URL; set GATEHOUSE_DATABASE__ADMIN_URL)",
        )
        .into());
    }
    let report = gatehouse_db::migrate::migrate(admin, cfg.database.url.expose_secret())
        .await
        .context("migrate")?;
    println!(
        "migrations: {} applied now, {} in total; services' role {:?} ready",
        report.applied_now, report.total, report.service_role
    );
    Ok(())
}

/// `gatehouse openapi [--check FILE]`.
pub fn openapi(check: Option<PathBuf>) -> anyhow::Result<()> {
    let document = gatehouse_control_api::openapi::document_json();
    match check {
        None => {
            print!("{document}");
            Ok(())
        }
        Some(path) => {
            let committed =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            if committed == document {
                println!("{} is up to date", path.display());
                Ok(())
            } else {
                anyhow::bail!(
                    "{} differs from the generated document; regenerate it with `gatehouse openapi > {}`",
                    path.display(),
                    path.display()
                )
            }
        }
    }
}

/// `gatehouse signing-keys list|rotate`: works on the database directly, so it needs the control
/// API's configuration (database and encryption keys), not a running control API.
pub async fn signing_keys(sources: Sources, rotate: bool) -> anyhow::Result<()> {
    let cfg = load_config(&sources, Component::ControlApi)?;
    let db = Db::connect(&cfg.database)
        .await
        .context("connecting to the database")?;
    let keys = gatehouse_oauth::SigningKeys::new(&cfg, db.clone(), Arc::new(cfg.keyring()?));
    let out = if rotate {
        serde_json::to_string_pretty(&keys.rotate_now().await?)?
    } else {
        serde_json::to_string_pretty(&keys.list().await?)?
    };
    println!("{out}");
    db.close().await;
    Ok(())
}

/// `gatehouse healthcheck`: probes `/healthz` on every listen address of the configuration (a
/// container runs one service; whichever it is answers). Wildcard addresses are probed on
/// loopback. Exit 0 if one answers 200.
pub async fn healthcheck(sources: Sources) -> anyhow::Result<()> {
    let cfg = Config::load(&sources)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    for mut addr in [
        cfg.control_api.listen,
        cfg.dataplane.listen,
        cfg.usage_worker.listen,
    ] {
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let url = format!("http://{addr}/healthz");
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            println!("healthy: {url}");
            return Ok(());
        }
    }
    anyhow::bail!("no Gatehouse service answered /healthz on the configured listen addresses")
}
