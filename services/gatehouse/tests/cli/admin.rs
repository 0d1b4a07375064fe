//! `gatehouse admin` against a running control API: plans and orgs without SQL, every action in
//! the platform trail and the org's own trail, and a refusal when the token is wrong.

use std::process::Output;
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::OrgId;
use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64, random_token, token_hash};
use gatehouse_db::repos::{orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};
use gatehouse_test_support::{TestDb, free_port};

use crate::gatehouse;

fn admin(base: &str, token: &str, args: &[&str]) -> Output {
    gatehouse()
        .env("GATEHOUSE_OPERATOR_TOKEN", token)
        .args(["admin", "--url", base, "--as", "cli-test"])
        .args(args)
        .output()
        .expect("run gatehouse admin")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "gatehouse admin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_orgs_are_administered_with_gatehouse_admin() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let token = random_token(32);
    let hash: String = token_hash(&token).iter().map(|b| format!("{b:02x}")).collect();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let overrides: Vec<(String, String)> = vec![
        ("mode".into(), "local".into()),
        ("database.url".into(), db.service_url.clone()),
        ("control_api.listen".into(), format!("127.0.0.1:{port}")),
        ("control_api.public_url".into(), base.clone()),
        ("control_api.resync_interval_secs".into(), "0".into()),
        (
            "secrets.encryption_keys".into(),
            format!("t-1={}", generate_key_b64()),
        ),
        ("secrets.signing_secret".into(), generate_signing_secret_b64()),
        ("secrets.dataplane_secret".into(), generate_signing_secret_b64()),
        ("operator.token_sha256".into(), hash),
        (
            "mail.file_dir".into(),
            std::env::temp_dir()
                .join("gatehouse-test-mail-admin")
                .display()
                .to_string(),
        ),
    ];
    let cfg = Arc::new(
        Config::load(&Sources {
            files: vec![],
            overrides,
        })
        .unwrap(),
    );
    let api = gatehouse_control_api::ControlApi::build(gatehouse_control_api::Dependencies {
        cfg,
        db: db.db.clone(),
        notifier: gatehouse_events::ChangeNotifier::local(),
        rate_limiter: gatehouse_events::RateLimiter::local(),
    })
    .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(api.run_until_stopped(shutdown.clone()));
    let owner = {
        let mut tx = GlobalTx::begin(&db.db).await.unwrap();
        let user = users::create(&mut tx, "owner@cli.example", None, "Owner", true)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        user
    };
    let org = {
        let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(OrgId::new()))
            .await
            .unwrap();
        let org = orgs::create_with_owner(&mut tx, "cli-org", "CLI", owner.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        org
    };
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(std::time::Instant::now() < deadline, "control API not ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let run = |args: &[&str]| {
        let (base, token) = (base.clone(), token.clone());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                admin(&base, &token, &args)
            })
            .await
            .unwrap()
        }
    };
    let created = json_of(
        &run(&[
            "plans",
            "create",
            "startup",
            "--name",
            "Startup",
            "--included-calls",
            "1000",
            "--hard-limit-calls",
            "2000",
            "--seats",
            "3",
            "--rate-limit-defaults",
            r#"{"per_org":{"per_minute":60}}"#,
        ])
        .await,
    );
    assert_eq!(created["hard_limit_calls"], 2000);
    let updated = json_of(&run(&["plans", "update", "startup", "--no-hard-limit"]).await);
    assert_eq!(
        (updated["hard_limit_calls"].clone(), updated["seats"].clone()),
        (Value::Null, Value::from(3))
    );
    json_of(&run(&["orgs", "set-plan", "cli-org", "startup"]).await);
    let suspended = json_of(&run(&["orgs", "suspend", "cli-org", "--reason", "billing"]).await);
    assert_eq!(suspended["suspended"], true);
    let shown = json_of(&run(&["orgs", "show", "cli-org"]).await);
    assert_eq!(
        (shown["plan_id"].as_str(), shown["usage"]["seats"].as_i64()),
        (Some("startup"), Some(3))
    );
    json_of(&run(&["orgs", "resume", "cli-org"]).await);
    json_of(&run(&["plans", "retire", "startup"]).await);

    let trail = json_of(&run(&["audit"]).await);
    let actions: Vec<(&str, &str)> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor_label"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("plan.create", "cli-test"),
            ("plan.update", "cli-test"),
            ("org.plan.change", "cli-test"),
            ("org.suspend", "cli-test"),
            ("org.resume", "cli-test"),
            ("plan.retire", "cli-test"),
        ]
    );
    // The org's own trail has every action that affected it.
    let mut admin_conn = db.admin().await;
    let org_actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE org_id = $1 AND actor_type = 'operator' ORDER BY seq",
    )
    .bind(org.id)
    .fetch_all(&mut admin_conn)
    .await
    .unwrap();
    assert_eq!(
        org_actions,
        ["org.plan.change", "org.suspend", "org.resume", "plan.retire"]
    );

    // A wrong token: refused, nothing printed on stdout, exit status 1.
    let refused = tokio::task::spawn_blocking({
        let base = base.clone();
        move || admin(&base, "not-the-token", &["orgs", "list"])
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );
    shutdown.cancel();
}
