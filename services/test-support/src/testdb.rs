//! A fresh, migrated database per test, copied from a template that is migrated once per
//! migration set. Tests connect as the services' role (owns nothing, no BYPASSRLS), exactly like
//! the services do; the admin URL is there for assertions that need to see across tenants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_core::config::DatabaseConfig;
use gatehouse_db::Db;
use gatehouse_db::migrate::{MIGRATOR, migrate};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// Role the tests' services connect as. Created by `gatehouse migrate` like in production.
pub const TEST_SERVICE_ROLE: &str = "gatehouse_test_svc";
const TEST_SERVICE_PASSWORD: &str = "gatehouse-test";
/// Test databases older than this are dropped by later runs.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The PostgreSQL server tests use: `TEST_PG_URL` (a URL of a superuser, without database),
/// default `postgres://postgres@127.0.0.1:5432`.
pub fn server_url() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn with_db(server: &str, db: &str) -> String {
    let mut url = url::Url::parse(server).expect("TEST_PG_URL is a URL");
    url.set_path(&format!("/{db}"));
    url.to_string()
}

fn with_user(server: &str, db: &str, user: &str, password: &str) -> String {
    let mut url = url::Url::parse(&with_db(server, db)).expect("valid URL");
    url.set_username(user).expect("settable");
    url.set_password(Some(password)).expect("settable");
    url.to_string()
}

pub struct TestDb {
    pub name: String,
    /// Superuser URL of this database (bypasses RLS: for assertions only).
    pub admin_url: String,
    /// The services' role URL of this database.
    pub service_url: String,
    pub db: Db,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = server_url();
        let template = ensure_template(&server).await;
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let name = format!("t_{stamp}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut admin = PgConnection::connect(&with_db(&server, "postgres"))
            .await
            .expect("connect to the test PostgreSQL server (set TEST_PG_URL)");
        admin
            .execute(AssertSqlSafe(format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            )))
            .await
            .expect("create test database from template");
        admin.close().await.ok();
        let service_url = with_user(&server, &name, TEST_SERVICE_ROLE, TEST_SERVICE_PASSWORD);
        let db = Db::connect(&database_config(&service_url))
            .await
            .expect("connect as service role");
        TestDb {
            admin_url: with_db(&server, &name),
            service_url,
            name,
            db,
        }
    }

    /// A superuser connection to this database (sees every tenant).
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url)
            .await
            .expect("admin connection")
    }
}

/// Database settings for a service connecting to `url` in tests.
pub fn database_config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: SecretString::from(url.to_owned()),
        admin_url: SecretString::from(String::new()),
        max_connections: 10,
        min_connections: 0,
        acquire_timeout_ms: 10_000,
        statement_timeout_ms: 30_000,
    }
}

/// Migrates `gatehouse_tmpl_<hash of the migrations>` once, under an advisory lock, and returns
/// its name. Also drops test databases left behind by old runs.
async fn ensure_template(server: &str) -> String {
    let mut hasher = Sha256::new();
    for m in MIGRATOR.iter() {
        hasher.update(m.version.to_be_bytes());
        hasher.update(&m.checksum);
    }
    let template = format!("gatehouse_tmpl_{}", &hex::encode(hasher.finalize())[..16]);
    let mut admin = PgConnection::connect(&with_db(server, "postgres"))
        .await
        .expect("connect to the test PostgreSQL server (set TEST_PG_URL)");
    admin
        .execute("SELECT pg_advisory_lock(7243501)")
        .await
        .expect("advisory lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !exists {
        let building = format!("{template}_building");
        admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
            )))
            .await
            .unwrap();
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{building}\"")))
            .await
            .unwrap();
        migrate(
            &with_db(server, &building),
            &with_user(server, &building, TEST_SERVICE_ROLE, TEST_SERVICE_PASSWORD),
        )
        .await
        .expect("migrate the template database");
        admin
            .execute(AssertSqlSafe(format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            )))
            .await
            .unwrap();
        drop_stale(&mut admin).await;
    }
    admin.execute("SELECT pg_advisory_unlock(7243501)").await.ok();
    admin.close().await.ok();
    template
}

async fn drop_stale(admin: &mut PgConnection) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 't\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let stamp = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if stamp.is_some_and(|s| now.saturating_sub(s) > STALE_AFTER.as_secs()) {
            let _ = admin
                .execute(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await;
        }
    }
    // Templates of older migration sets.
    let templates: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'gatehouse\\_tmpl\\_%' ORDER BY oid DESC OFFSET 3",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in templates {
        let _ = admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .await;
    }
}
