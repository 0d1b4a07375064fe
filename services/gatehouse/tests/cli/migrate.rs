//! `gatehouse migrate` applies the schema as its owner and provisions the services' role, once or
//! many times.

use gatehouse_test_support::testdb::server_url;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::{gatehouse, valid_env};

fn with_db(server: &str, db: &str, user: Option<(&str, &str)>) -> String {
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(&format!("/{db}"));
    if let Some((u, p)) = user {
        url.set_username(u).unwrap();
        url.set_password(Some(p)).unwrap();
    }
    url.to_string()
}

#[tokio::test]
async fn migrate_is_idempotent_and_provisions_a_safe_role() {
    let server = server_url();
    // Named like TestDb's databases so that later runs drop it once stale: dropping it here would
    // wait for a forced checkpoint, slow on a busy test server.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!(
        "t_{stamp}_migrate{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let mut admin = PgConnection::connect(&with_db(&server, "postgres", None))
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap();
    let role = "gatehouse_cli_test_svc";
    for round in 0..2 {
        let mut cmd = gatehouse();
        for (k, v) in valid_env() {
            cmd.env(k, v);
        }
        cmd.env("GATEHOUSE_DATABASE__ADMIN_URL", with_db(&server, &name, None));
        cmd.env(
            "GATEHOUSE_DATABASE__URL",
            with_db(&server, &name, Some((role, "pw-1"))),
        );
        let out = cmd.arg("migrate").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if round == 0 {
            assert!(
                stdout.contains("applied now") && !stdout.contains(" 0 applied now"),
                "{stdout}"
            );
        } else {
            assert!(
                stdout.contains("migrations: 0 applied now"),
                "a second run applies nothing: {stdout}"
            );
        }
    }
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
    // The services' role can connect and is confined.
    let mut svc = PgConnection::connect(&with_db(&server, &name, Some((role, "pw-1"))))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM endpoints")
        .fetch_one(&mut svc)
        .await
        .unwrap();
    assert_eq!(n, 0);
    svc.close().await.unwrap();

    // Pointing database.url at the owner is refused.
    let mut cmd = gatehouse();
    for (k, v) in valid_env() {
        cmd.env(k, v);
    }
    cmd.env("GATEHOUSE_DATABASE__ADMIN_URL", with_db(&server, &name, None));
    cmd.env("GATEHOUSE_DATABASE__URL", with_db(&server, &name, None));
    let out = cmd.arg("migrate").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));
}
