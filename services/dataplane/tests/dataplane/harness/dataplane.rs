//! A dataplane on a free port, fed with the snapshots the test builds.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use gatehouse_core::config::{Config, Sources};
use gatehouse_core::secrets::{DataplaneKeys, Keyring, generate_signing_secret_b64};
use gatehouse_core::snapshot::OrgSnapshot;
use gatehouse_dataplane::store::SnapshotStore;
use gatehouse_events::{BusMessage, EventConsumer, QuotaState};
use gatehouse_test_support::free_port;

use super::Issuer;

/// A running dataplane.
pub struct TestDataplane {
    pub url: String,
    pub cfg: Arc<Config>,
    pub store: SnapshotStore,
    /// The dataplane's upstream client (its held upstream sessions).
    pub upstreams: gatehouse_dataplane::upstream::Upstreams,
    pub events: tokio::sync::Mutex<EventConsumer>,
    pub quota: QuotaState,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestDataplane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What the dataplanes of one test share: the dataplane secret (their only secret, as in
/// production), and the snapshot key derived from it, with which the tests seal credentials the
/// way the control API does.
pub struct Shared {
    pub dataplane_secret: String,
    pub snapshot_keys: Keyring,
}

impl Shared {
    pub fn new() -> Self {
        let dataplane_secret = generate_signing_secret_b64();
        let snapshot_keys = DataplaneKeys::derive(&dataplane_secret).unwrap().snapshot;
        Self {
            dataplane_secret,
            snapshot_keys,
        }
    }
}

impl TestDataplane {
    pub async fn start(issuer: &Issuer, shared: &Shared, extra: &[(&str, &str)]) -> TestDataplane {
        Self::start_at(issuer, shared, free_port(), extra).await
    }

    /// Starts on `port`; the public URL is fixed by `public_port` (two instances can share one).
    pub async fn start_at(
        issuer: &Issuer,
        shared: &Shared,
        port: u16,
        extra: &[(&str, &str)],
    ) -> TestDataplane {
        gatehouse_test_support::init();
        let url = format!("http://127.0.0.1:{port}");
        let mut overrides: Vec<(String, String)> = vec![
            ("mode".into(), "local".into()),
            ("dataplane.listen".into(), format!("127.0.0.1:{port}")),
            ("dataplane.internal_listen".into(), "127.0.0.1:0".into()),
            ("dataplane.public_url".into(), url.clone()),
            ("dataplane.control_api_url".into(), issuer.url.clone()),
            ("control_api.public_url".into(), issuer.url.clone()),
            ("dataplane.workers".into(), "2".into()),
            ("dataplane.upstream_timeout_ms".into(), "10000".into()),
            // The upstreams of these tests are plain-http servers on loopback.
            ("egress.allow_http".into(), "true".into()),
            ("egress.allow_private_networks".into(), "true".into()),
            ("secrets.dataplane_secret".into(), shared.dataplane_secret.clone()),
            ("shutdown.grace_period_secs".into(), "1".into()),
        ];
        for (k, v) in extra {
            overrides.push(((*k).into(), (*v).into()));
        }
        let cfg = Config::load(&Sources {
            files: vec![],
            overrides,
        })
        .expect("valid test config");
        cfg.validate(gatehouse_core::config::Component::Dataplane)
            .expect("a dataplane configuration");
        let cfg = Arc::new(cfg);
        let (events, consumer) = gatehouse_events::local_bus();
        let quota = QuotaState::local();
        let dataplane = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
            cfg: cfg.clone(),
            notifier: gatehouse_events::ChangeNotifier::local(),
            events,
            limiter: gatehouse_events::RateLimiter::local(),
            quota: quota.clone(),
        })
        .expect("build dataplane");
        let store = dataplane.store();
        let upstreams = dataplane.upstreams();
        let shutdown = CancellationToken::new();
        tokio::spawn(dataplane.run_until_stopped(shutdown.clone()));
        TestDataplane {
            url,
            cfg,
            store,
            upstreams,
            events: tokio::sync::Mutex::new(consumer),
            quota,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    /// Installs snapshots and declares the configuration loaded.
    pub fn load(&self, snapshots: &[OrgSnapshot]) {
        for s in snapshots {
            self.store.install(s.clone());
        }
        self.store.mark_loaded();
    }

    pub fn endpoint_url(&self, org: &str, endpoint: &str) -> String {
        format!("{}/{org}/{endpoint}/mcp", self.url)
    }

    /// Every event emitted so far (waits briefly for stragglers).
    pub async fn drain_events(&self) -> Vec<BusMessage> {
        let mut consumer = self.events.lock().await;
        let mut all = Vec::new();
        loop {
            let batch = consumer
                .next_batch(1000, Duration::from_millis(200))
                .await
                .unwrap();
            if batch.messages.is_empty() {
                break;
            }
            all.extend(batch.messages);
        }
        all
    }
}

/// The resident set size of this process, where test dataplanes run, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}
