#![allow(dead_code)] // shared by test modules; not every test uses every helper
//! The whole platform in process: control API, dataplane and usage-worker on free ports, sharing
//! a fresh database and (by default) in-process delivery, as `gatehouse up` runs them.

use std::sync::Arc;

use gatehouse_core::config::{Config, Sources};
use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64};
use gatehouse_events::{Bus, ChangeNotifier, EventPublisher, QuotaState};
use gatehouse_test_support::{TestDb, free_port};
use tokio_util::sync::CancellationToken;

pub struct Platform {
    pub db: TestDb,
    pub cfg: Arc<Config>,
    pub control_api: String,
    pub dataplane: String,
    pub worker: String,
    /// The internal listeners of the control API (snapshots, JWKS, metrics) and the dataplane
    /// (metrics).
    pub control_api_internal: String,
    pub dataplane_internal: String,
    pub notifier: ChangeNotifier,
    /// What the dataplane emits events through (single-node mode: the spool the worker reads).
    pub events: EventPublisher,
    /// The over-quota state the worker decides and the dataplane reads (shared in process).
    pub quota: QuotaState,
    /// The single-node event spool (removed when the platform is dropped).
    pub spool_dir: std::path::PathBuf,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.spool_dir);
    }
}

impl Platform {
    pub async fn start() -> Platform {
        Self::start_with(&[]).await
    }

    /// Starts with extra configuration overrides (dotted keys, values written like env vars).
    pub async fn start_with(extra: &[(&str, &str)]) -> Platform {
        gatehouse_test_support::init();
        let db = TestDb::new().await;
        let (api_port, dp_port, worker_port) = (free_port(), free_port(), free_port());
        let (api_internal_port, dp_internal_port) = (free_port(), free_port());
        let control_api_internal = format!("http://127.0.0.1:{api_internal_port}");
        let dataplane_internal = format!("http://127.0.0.1:{dp_internal_port}");
        let control_api = format!("http://127.0.0.1:{api_port}");
        let dataplane = format!("http://127.0.0.1:{dp_port}");
        let worker = format!("http://127.0.0.1:{worker_port}");
        let spool = std::env::temp_dir().join(format!("gatehouse-spool-{}", db.name));
        let mut overrides: Vec<(String, String)> = vec![
            ("mode".into(), "local".into()),
            ("database.url".into(), db.service_url.clone()),
            ("control_api.listen".into(), format!("127.0.0.1:{api_port}")),
            (
                "control_api.internal_listen".into(),
                format!("127.0.0.1:{api_internal_port}"),
            ),
            ("control_api.public_url".into(), control_api.clone()),
            ("dataplane.listen".into(), format!("127.0.0.1:{dp_port}")),
            (
                "dataplane.internal_listen".into(),
                format!("127.0.0.1:{dp_internal_port}"),
            ),
            ("dataplane.public_url".into(), dataplane.clone()),
            ("dataplane.control_api_url".into(), control_api_internal.clone()),
            ("dataplane.spool_dir".into(), spool.display().to_string()),
            ("usage_worker.listen".into(), format!("127.0.0.1:{worker_port}")),
            (
                "secrets.encryption_keys".into(),
                format!("test-1={}", generate_key_b64()),
            ),
            ("secrets.signing_secret".into(), generate_signing_secret_b64()),
            ("secrets.dataplane_secret".into(), generate_signing_secret_b64()),
            ("shutdown.grace_period_secs".into(), "2".into()),
            // Scheduled syncs would re-list the tests' hand-made servers; tests that want them ask.
            ("control_api.resync_interval_secs".into(), "0".into()),
            // Mail without SMTP goes to files: keep them out of the source tree.
            (
                "mail.file_dir".into(),
                std::env::temp_dir()
                    .join(format!(
                        "gatehouse-test-mail-{}",
                        gatehouse_core::secrets::random_token(12)
                    ))
                    .display()
                    .to_string(),
            ),
            ("control_api.workers".into(), "2".into()),
            ("dataplane.workers".into(), "2".into()),
        ];
        for (k, v) in extra {
            overrides.push(((*k).into(), (*v).into()));
        }
        let cfg = Arc::new(
            Config::load(&Sources {
                files: vec![],
                overrides,
            })
            .expect("test configuration is valid"),
        );
        let shutdown = CancellationToken::new();
        let bus = Bus::from_config(&cfg, shutdown.clone())
            .await
            .expect("start the event bus");
        let notifier = bus.notifier.clone();

        let api = gatehouse_control_api::ControlApi::build(gatehouse_control_api::Dependencies {
            cfg: cfg.clone(),
            db: db.db.clone(),
            notifier: notifier.clone(),
            rate_limiter: gatehouse_events::RateLimiter::local(),
        })
        .expect("build control API");
        // The dataplane holds only its own secret, as a dataplane process does: every e2e call
        // through it proves that snapshots carry what it can open.
        let dataplane_cfg = cfg.for_dataplane();
        dataplane_cfg
            .validate(gatehouse_core::config::Component::Dataplane)
            .expect("a dataplane configuration");
        let dp = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
            cfg: Arc::new(dataplane_cfg),
            notifier: notifier.clone(),
            events: bus.publisher.clone(),
            limiter: bus.limiter.clone(),
            quota: bus.quota.clone(),
        })
        .expect("build dataplane");
        let wk = gatehouse_usage_worker::UsageWorker::build(gatehouse_usage_worker::Dependencies {
            cfg: cfg.clone(),
            db: db.db.clone(),
            notifier: notifier.clone(),
            consumer: bus.consumer,
            quota: bus.quota.clone(),
        })
        .expect("build usage-worker");
        for fut in [
            tokio::spawn(api.run_until_stopped(shutdown.clone())),
            tokio::spawn(dp.run_until_stopped(shutdown.clone())),
            tokio::spawn(wk.run_until_stopped(shutdown.clone())),
        ] {
            drop(fut);
        }
        let platform = Platform {
            db,
            cfg,
            control_api,
            dataplane,
            worker,
            control_api_internal,
            dataplane_internal,
            notifier,
            events: bus.publisher.clone(),
            quota: bus.quota.clone(),
            spool_dir: spool,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown,
        };
        platform.wait_ready().await;
        platform
    }

    /// Waits until every service's /readyz answers 200 (at most 30 s).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        for base in [&self.control_api, &self.dataplane, &self.worker] {
            loop {
                let ok = self
                    .http
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{base} not ready within 30 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
