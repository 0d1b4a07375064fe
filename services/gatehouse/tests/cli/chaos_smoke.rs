//! The chaos run's smoke mode (`tests/chaos/chaos.py --quick`, docs/reliability.md): separate
//! processes over a private PostgreSQL and Redis, the usage-worker killed twice, Redis once and
//! PostgreSQL once under load. Every call the dataplanes answered is recorded exactly once, usage
//! totals equal the raw events, every org's audit chain verifies, no call without a valid token
//! is served, and no call is answered with an error while Redis is down. How many calls are served
//! within the client's timeout depends on the machine; the full run measures that by hand.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_quick_run_loses_duplicates_and_misauthorizes_nothing() {
    gatehouse_test_support::init();
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions::default())
        .await
        .unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = std::env::temp_dir().join(format!("gatehouse-chaos-{}.json", uuid::Uuid::new_v4().simple()));
    let mut cmd = Command::new("python3");
    cmd.current_dir(&workspace)
        .arg("tests/chaos/chaos.py")
        .arg("--quick")
        .arg("--gatehouse")
        .arg(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--fixture-url")
        .arg(fixture.url())
        .arg("--report")
        .arg(&report);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run python3 tests/chaos/chaos.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}); the run printed:\n{stdout}\n{stderr}"));
    let _ = std::fs::remove_file(&report);
    let report: Value = serde_json::from_str(&text).unwrap();

    let targets = &report["targets"];
    for target in [
        "events_lost==0",
        "events_duplicated==0",
        "audit_chains_valid",
        "usage_totals_equal_raw_events",
        "no_unauthorized_call_served",
        "drained",
    ] {
        assert_eq!(targets[target], true, "{target} missed:\n{stdout}");
    }
    let events = &report["events"];
    assert!(events["sent"].as_u64().unwrap() > 1000, "{stdout}");
    assert_eq!(events["usage_events"], events["audit_entries"], "{stdout}");
    let unauthorized = &report["unauthorized"];
    assert_eq!(unauthorized["sent"], unauthorized["refused_401_403"], "{stdout}");
    let redis_down = &report["redis_down"];
    assert!(redis_down["calls"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(redis_down["answered_not_served"], 0, "{stdout}");
}
