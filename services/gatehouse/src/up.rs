//! `gatehouse up`: the whole platform in one process, for local use and small installs.
//!
//! - Configuration: defaults → `<data dir>/local.toml` (generated once: local mode, pretty logs,
//!   fresh secrets) → `--config`/`GATEHOUSE_CONFIG` → environment.
//! - PostgreSQL: `DATABASE_URL` if set; otherwise a private cluster under `<data dir>/postgres`.
//! - Redis: `REDIS_URL` if set; otherwise single-node mode (in-process events, rate limits and
//!   change notifications).
//! - Migrations run and a demo org is seeded on first run (on the `self_hosted` plan: no hard
//!   cap); the URLs and the demo login are printed.
//! - An operator token is generated on first run into `<data dir>/operator-token` (unless
//!   `operator.token_sha256` is configured), for `gatehouse admin`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use gatehouse_core::config::{Component, Config, ConfigError, Sources};
use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64, random_token};
use gatehouse_db::Db;
use gatehouse_db::localpg::{LocalCluster, SERVICE_ROLE};

use gatehouse_events::Bus;

const LOCAL_CONFIG: &str = "local.toml";
const DEMO_LOGIN: &str = "demo-login.txt";
const SERVICE_PASSWORD: &str = "service-password";

pub async fn run(sources: Sources) -> anyhow::Result<()> {
    // First pass: only to learn where the data directory is.
    let first = Config::load(&sources)?;
    let data_dir = absolute(&first.local.data_dir)?;
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let local_config = ensure_local_config(&data_dir)?;

    let mut layered = Sources {
        files: std::iter::once(local_config)
            .chain(sources.files.clone())
            .collect(),
        overrides: sources.overrides.clone(),
    };
    // The operator token of this install (`gatehouse admin` finds it in the data directory),
    // unless one is configured.
    if first.operator.token_sha256.trim().is_empty() {
        layered
            .overrides
            .push(("operator.token_sha256".into(), ensure_operator_token(&data_dir)?));
    }
    let provisional = Config::load(&layered)?;
    let _telemetry = gatehouse_core::telemetry::init(&provisional.telemetry, "up")?;

    // PostgreSQL: the configured server, or a private cluster.
    let mut cluster = None;
    let (admin_url, service_url) = if provisional.database.url.expose_secret().is_empty() {
        let local = LocalCluster::locate(&data_dir)?;
        println!(
            "Starting a private PostgreSQL cluster in {} ...",
            local.data_dir.display()
        );
        local
            .start()
            .await
            .context("starting the local PostgreSQL cluster")?;
        let urls = (local.admin_url(), local.service_url());
        cluster = Some(local);
        urls
    } else if provisional.database.admin_url.expose_secret().is_empty() {
        // One URL given: it is the owner's; the services get their own role on the same server.
        let owner = provisional.database.url.expose_secret().to_owned();
        let password = service_password(&data_dir)?;
        let mut service =
            url::Url::parse(&owner).map_err(|e| ConfigError::new("database.url", e.to_string()))?;
        service
            .set_username(SERVICE_ROLE)
            .and_then(|_| service.set_password(Some(&password)))
            .map_err(|_| ConfigError::new("database.url", "cannot derive the services' URL from it"))?;
        (owner, service.to_string())
    } else {
        (
            provisional.database.admin_url.expose_secret().to_owned(),
            provisional.database.url.expose_secret().to_owned(),
        )
    };
    layered
        .overrides
        .push(("database.url".into(), service_url.clone()));
    layered
        .overrides
        .push(("database.admin_url".into(), admin_url.clone()));
    let cfg = Config::load(&layered)?;
    cfg.validate(Component::AllInOne)?;
    let cfg = Arc::new(cfg);

    let result = serve(cfg, &data_dir, &admin_url, &service_url).await;
    if let Some(cluster) = cluster {
        println!("Stopping the private PostgreSQL cluster ...");
        if let Err(e) = cluster.stop().await {
            eprintln!("gatehouse: stopping PostgreSQL: {e}");
        }
    }
    result
}

async fn serve(cfg: Arc<Config>, data_dir: &Path, admin_url: &str, service_url: &str) -> anyhow::Result<()> {
    let report = gatehouse_db::migrate::migrate(admin_url, service_url)
        .await
        .context("migrating the database")?;
    tracing::info!(
        applied = report.applied_now,
        total = report.total,
        "migrations done"
    );

    let db = Db::connect(&cfg.database)
        .await
        .context("connecting as the services' role")?;
    db.verify_service_role().await?;

    let login = match gatehouse_control_api::seed::seed_demo(&db).await? {
        Some(login) if cfg.local.seed_demo => {
            let text = format!("{}\n{}\n", login.email, login.password);
            write_private(&data_dir.join(DEMO_LOGIN), &text)?;
            Some((login.email, login.password))
        }
        _ => std::fs::read_to_string(data_dir.join(DEMO_LOGIN))
            .ok()
            .and_then(|s| {
                let mut lines = s.lines();
                Some((lines.next()?.to_owned(), lines.next()?.to_owned()))
            }),
    };

    let shutdown = gatehouse_core::shutdown::on_signal();
    // One bus for the whole process: without Redis the worker consumes the spool the dataplane
    // writes, and the quota state is shared in memory.
    let bus = Bus::from_config(&cfg, shutdown.clone())
        .await
        .context("starting the event bus")?;
    let notifier = bus.notifier.clone();

    let control_api = gatehouse_control_api::ControlApi::build(gatehouse_control_api::Dependencies {
        cfg: cfg.clone(),
        db: db.clone(),
        notifier: notifier.clone(),
        rate_limiter: gatehouse_events::RateLimiter::local(),
    })?;
    // In one process the dataplane reaches the control API's internal listener where it actually
    // listens, and holds only its own secret, as it does in a process of its own.
    let mut dataplane_cfg = cfg.for_dataplane();
    dataplane_cfg.dataplane.control_api_url =
        url::Url::parse(&format!("http://{}", control_api.internal_addr()))?;
    let dataplane = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
        cfg: Arc::new(dataplane_cfg),
        notifier: notifier.clone(),
        events: bus.publisher.clone(),
        limiter: bus.limiter.clone(),
        quota: bus.quota.clone(),
    })?;
    let worker = gatehouse_usage_worker::UsageWorker::build(gatehouse_usage_worker::Dependencies {
        cfg: cfg.clone(),
        db: db.clone(),
        notifier: notifier.clone(),
        consumer: bus.consumer,
        quota: bus.quota.clone(),
    })?;

    print_banner(
        &cfg,
        &control_api,
        &dataplane,
        &worker,
        login.as_ref(),
        data_dir,
        notifier.is_redis(),
    );

    let (a, b, c) = tokio::join!(
        control_api.run_until_stopped(shutdown.clone()),
        dataplane.run_until_stopped(shutdown.clone()),
        worker.run_until_stopped(shutdown.clone()),
    );
    bus.handle.close().await;
    db.close().await;
    a.and(b).and(c)
}

fn print_banner(
    cfg: &Config,
    control_api: &gatehouse_control_api::ControlApi,
    dataplane: &gatehouse_dataplane::Dataplane,
    worker: &gatehouse_usage_worker::UsageWorker,
    login: Option<&(String, String)>,
    data_dir: &Path,
    redis: bool,
) {
    let api = cfg.control_api.public_url.as_str().trim_end_matches('/');
    let mode = if redis {
        "Redis"
    } else {
        "single-node mode, no Redis"
    };
    println!();
    println!("Gatehouse is running ({mode}).");
    println!(
        "  Control API + console  {api}   (listening on {})",
        control_api.local_addr()
    );
    println!("  API reference          {api}/api/docs/");
    println!(
        "  MCP endpoints          {}   (listening on {})",
        cfg.endpoint_url("{org}", "{endpoint}"),
        dataplane.local_addr()
    );
    println!("  Demo endpoint          {}", cfg.endpoint_url("demo", "demo"));
    println!("  Usage worker           http://{}/readyz", worker.local_addr());
    println!(
        "  Metrics (internal)     http://{}/metrics  http://{}/metrics  http://{}/metrics",
        control_api.internal_addr(),
        dataplane.internal_addr(),
        worker.local_addr()
    );
    match login {
        Some((email, password)) => println!("  Demo login             {email} / {password}"),
        None => println!("  Demo login             (not seeded)"),
    }
    println!("  Data                   {}", data_dir.display());
    println!("Press Ctrl-C to stop.");
    println!();
}

/// Writes `<data dir>/local.toml` on first run: local mode, pretty logs, local paths and freshly
/// generated secrets. Later runs reuse it, so sealed credentials and sessions survive restarts.
fn ensure_local_config(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(LOCAL_CONFIG);
    if !path.exists() {
        let spool = data_dir.join("spool");
        let mail = data_dir.join("mail");
        let text = format!(
            "# Generated by `gatehouse up` on first run. Keep it private: it holds this install's keys.\n\
             mode = \"local\"\n\n\
             [telemetry]\nlog_format = \"pretty\"\n\n\
             [dataplane]\nspool_dir = {spool:?}\n\n\
             [mail]\nfile_dir = {mail:?}\n\n\
             # Local use: MCP servers running on this machine over plain http may be registered.\n\
             [egress]\nallow_http = true\nallow_hosts = [\"localhost\", \"127.0.0.1\", \"::1\"]\n\n\
             [secrets]\nencryption_keys = \"local-1={key}\"\nsigning_secret = \"{signing}\"\n\
             {DATAPLANE_SECRET_KEY} = \"{dataplane}\"\n",
            spool = spool.display().to_string(),
            mail = mail.display().to_string(),
            key = generate_key_b64(),
            signing = generate_signing_secret_b64(),
            dataplane = generate_signing_secret_b64(),
        );
        write_private(&path, &text)?;
    } else {
        add_dataplane_secret(&path)?;
    }
    Ok(path)
}

const DATAPLANE_SECRET_KEY: &str = "dataplane_secret";

/// A `local.toml` written before the dataplane had a secret of its own gets one, in its
/// `[secrets]` table (or a new one), keeping everything else as it is.
fn add_dataplane_secret(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let has_key = text
        .lines()
        .any(|l| l.trim_start().starts_with(DATAPLANE_SECRET_KEY));
    if has_key {
        return Ok(());
    }
    let line = format!("{DATAPLANE_SECRET_KEY} = \"{}\"", generate_signing_secret_b64());
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match lines.iter().position(|l| l.trim() == "[secrets]") {
        Some(header) => lines.insert(header + 1, line),
        None => lines.extend(["".to_owned(), "[secrets]".to_owned(), line]),
    }
    write_private(path, &(lines.join("\n") + "\n"))
}

/// Generates `<data dir>/operator-token` on first run; returns the hex SHA-256 of the token.
fn ensure_operator_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(crate::admin::OPERATOR_TOKEN_FILE);
    let token = match std::fs::read_to_string(&path) {
        Ok(existing) if !existing.trim().is_empty() => existing.trim().to_owned(),
        _ => {
            let token = crate::admin::new_operator_token();
            write_private(&path, &token)?;
            token
        }
    };
    Ok(crate::admin::token_sha256_hex(&token))
}

fn service_password(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(SERVICE_PASSWORD);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    let password = random_token(24);
    write_private(&path, &password)?;
    Ok(password)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(path: &Path) -> Config {
        Config::load(&Sources {
            files: vec![path.to_path_buf()],
            overrides: vec![],
        })
        .unwrap()
    }

    #[test]
    fn a_local_config_without_a_dataplane_secret_gets_one_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("gatehouse-up-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let fresh = ensure_local_config(&dir).unwrap();
        let cfg = loaded(&fresh);
        assert!(!cfg.secrets.dataplane_secret.expose_secret().is_empty());
        cfg.dataplane_keys().unwrap();

        // As written before the dataplane had its own secret.
        let old = "mode = \"local\"\n\n[secrets]\nencryption_keys = \"local-1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\nsigning_secret = \"c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM=\"\n\n[mail]\nfile_dir = \"/tmp/m\"\n";
        std::fs::write(&fresh, old).unwrap();
        ensure_local_config(&dir).unwrap();
        let cfg = loaded(&fresh);
        let secret = cfg.secrets.dataplane_secret.expose_secret().to_owned();
        cfg.validate(Component::AllInOne).unwrap();
        assert_eq!(cfg.mail.file_dir, PathBuf::from("/tmp/m"));
        assert_eq!(
            cfg.secrets.signing_secret.expose_secret(),
            "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="
        );
        // Later runs keep it.
        ensure_local_config(&dir).unwrap();
        assert_eq!(loaded(&fresh).secrets.dataplane_secret.expose_secret(), secret);

        // No [secrets] table at all (secrets given another way): one is added.
        std::fs::write(&fresh, "mode = \"local\"\n").unwrap();
        ensure_local_config(&dir).unwrap();
        assert!(!loaded(&fresh).secrets.dataplane_secret.expose_secret().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
