//! `gatehouse up` from a clean checkout with no DATABASE_URL or REDIS_URL: a private PostgreSQL
//! cluster, migrations, the demo org, all three services ready; readiness follows PostgreSQL
//! going away and coming back; SIGTERM stops everything including the cluster; a second run
//! reuses the data.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gatehouse_db::localpg::LocalCluster;
use gatehouse_test_support::free_port;

use crate::gatehouse;

pub(crate) struct Up {
    child: Child,
    log: PathBuf,
    pub(crate) control_api: String,
    pub(crate) dataplane: String,
    worker: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(checkout: &Path, data: &Path, run: usize) -> Up {
    let (api, dp, wk) = (free_port(), free_port(), free_port());
    let log = checkout.join(format!("up-{run}.log"));
    let child = gatehouse()
        .current_dir(checkout)
        .env("GATEHOUSE_LOCAL__DATA_DIR", data)
        .env("GATEHOUSE_CONTROL_API__LISTEN", format!("127.0.0.1:{api}"))
        .env(
            "GATEHOUSE_CONTROL_API__PUBLIC_URL",
            format!("http://127.0.0.1:{api}"),
        )
        .env("GATEHOUSE_DATAPLANE__LISTEN", format!("127.0.0.1:{dp}"))
        .env(
            "GATEHOUSE_DATAPLANE__PUBLIC_URL",
            format!("http://127.0.0.1:{dp}"),
        )
        .env("GATEHOUSE_USAGE_WORKER__LISTEN", format!("127.0.0.1:{wk}"))
        .env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_DATAPLANE__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS", "5")
        .arg("up")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gatehouse up");
    Up {
        child,
        log,
        control_api: format!("http://127.0.0.1:{api}"),
        dataplane: format!("http://127.0.0.1:{dp}"),
        worker: format!("http://127.0.0.1:{wk}"),
    }
}

/// An empty directory standing for a fresh checkout, and its `.data` (not created yet).
pub(crate) fn scratch_checkout(name: &str) -> (PathBuf, PathBuf) {
    let checkout = std::env::temp_dir().join(format!("gatehouse-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&checkout).unwrap();
    // Traversable by the postgres user when the tests run as root.
    std::fs::set_permissions(&checkout, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let data = checkout.join(".data");
    (checkout, data)
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A first `gatehouse up` in `checkout`, returned once all three services answer `/readyz` (the
/// first run creates the private cluster and applies the migrations).
pub(crate) async fn start_ready(checkout: &Path, data: &Path, http: &reqwest::Client) -> Up {
    let mut up = start(checkout, data, 1);
    for base in [up.control_api.clone(), up.dataplane.clone(), up.worker.clone()] {
        wait_for(
            http,
            &format!("{base}/readyz"),
            200,
            Duration::from_secs(180),
            &mut up,
        )
        .await;
    }
    up
}

async fn status(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url).send().await.ok().map(|r| r.status().as_u16())
}

async fn wait_for(http: &reqwest::Client, url: &str, want: u16, within: Duration, up: &mut Up) {
    let deadline = Instant::now() + within;
    loop {
        if status(http, url).await == Some(want) {
            return;
        }
        if let Ok(Some(exit)) = up.child.try_wait() {
            panic!(
                "gatehouse up exited ({exit}): {}",
                std::fs::read_to_string(&up.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {want} within {within:?}; log:\n{}",
            std::fs::read_to_string(&up.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn sigterm(up: &mut Up) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "gatehouse up did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn demo_login(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .find(|l| l.contains("Demo login"))
        .unwrap_or_else(|| {
            panic!(
                "no demo login printed:\n{}",
                std::fs::read_to_string(log).unwrap()
            )
        })
        .trim()
        .to_owned()
}

#[tokio::test]
async fn up_from_a_clean_checkout() {
    gatehouse_test_support::init();
    let (checkout, data) = scratch_checkout("up");
    let http = http_client();
    let mut up = start_ready(&checkout, &data, &http).await;
    let login = demo_login(&up.log);
    assert!(login.contains("admin@demo.gatehouse.localhost"), "{login}");
    let banner = std::fs::read_to_string(&up.log).unwrap();
    assert!(
        banner.contains(&format!("{}/demo/demo/mcp", up.dataplane)),
        "{banner}"
    );
    assert!(banner.contains("single-node mode"), "{banner}");

    // PostgreSQL goes away: the services that need it report not ready, naming it.
    let cluster = LocalCluster::locate(&data).unwrap();
    assert!(cluster.is_running().await);
    cluster.stop().await.unwrap();
    for base in [up.control_api.clone(), up.worker.clone()] {
        wait_for(
            &http,
            &format!("{base}/readyz"),
            503,
            Duration::from_secs(30),
            &mut up,
        )
        .await;
        let body: serde_json::Value = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["checks"]["database"], "database unreachable", "{body}");
    }
    // ... and ready again once it is back.
    cluster.start().await.unwrap();
    for base in [up.control_api.clone(), up.worker.clone()] {
        wait_for(
            &http,
            &format!("{base}/readyz"),
            200,
            Duration::from_secs(60),
            &mut up,
        )
        .await;
    }

    // SIGTERM stops the services and the private cluster.
    let exit = sigterm(&mut up);
    assert!(exit.success(), "exit status {exit}");
    assert!(
        !cluster.is_running().await,
        "the private cluster was left running"
    );

    // A second run reuses the data: same demo login, no second seeding.
    let mut again = start(&checkout, &data, 2);
    wait_for(
        &http,
        &format!("{}/readyz", again.control_api),
        200,
        Duration::from_secs(120),
        &mut again,
    )
    .await;
    assert_eq!(demo_login(&again.log), login);
    assert!(sigterm(&mut again).success());
    let _ = std::fs::remove_dir_all(&checkout);
}
