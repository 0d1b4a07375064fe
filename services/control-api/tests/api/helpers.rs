#![allow(dead_code)] // shared by test modules; not every test uses every helper
//! Spawning a control API on a fresh database, and signed-in users/orgs made directly through the
//! repositories (so tests of one area do not depend on another area's routes).

use std::sync::Arc;

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_control_api::{ControlApi, Dependencies};
use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64, random_token, token_hash};
use gatehouse_db::repos::{orgs, sessions, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};
use gatehouse_events::ChangeNotifier;
use gatehouse_test_support::TestDb;
use reqwest::Method;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    /// The internal listener (snapshot API, JWKS, `/metrics`).
    pub internal: String,
    pub db: TestDb,
    pub cfg: Arc<Config>,
    pub notifier: ChangeNotifier,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Configuration for tests: local mode, fresh secrets, port 0, the test database.
pub fn test_config(db: &TestDb, extra: &[(&str, &str)]) -> Config {
    let mut overrides: Vec<(String, String)> = vec![
        ("mode".into(), "local".into()),
        ("database.url".into(), db.service_url.clone()),
        ("control_api.listen".into(), "127.0.0.1:0".into()),
        ("control_api.internal_listen".into(), "127.0.0.1:0".into()),
        ("dataplane.listen".into(), "127.0.0.1:0".into()),
        ("dataplane.internal_listen".into(), "127.0.0.1:0".into()),
        ("usage_worker.listen".into(), "127.0.0.1:0".into()),
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
                .join(format!("gatehouse-test-mail-{}", uuid::Uuid::new_v4().simple()))
                .display()
                .to_string(),
        ),
        ("control_api.workers".into(), "2".into()),
    ];
    for (k, v) in extra {
        overrides.push(((*k).into(), (*v).into()));
    }
    Config::load(&Sources {
        files: vec![],
        overrides,
    })
    .expect("test configuration is valid")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Spawns with extra configuration overrides (dotted keys).
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
        gatehouse_test_support::init();
        let db = TestDb::new().await;
        let port = gatehouse_test_support::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let listen = format!("127.0.0.1:{port}");
        let mut overrides: Vec<(&str, &str)> =
            vec![("control_api.listen", &listen), ("control_api.public_url", &base)];
        overrides.extend_from_slice(extra);
        let cfg = Arc::new(test_config(&db, &overrides));
        let notifier = ChangeNotifier::local();
        let shutdown = CancellationToken::new();
        let api = ControlApi::build(Dependencies {
            cfg: cfg.clone(),
            db: db.db.clone(),
            notifier: notifier.clone(),
            rate_limiter: gatehouse_events::RateLimiter::local(),
        })
        .expect("build control API");
        let internal = format!("http://{}", api.internal_addr());
        let stop = shutdown.clone();
        tokio::spawn(async move { api.run_until_stopped(stop).await });
        TestApp {
            base,
            internal,
            db,
            cfg,
            notifier,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown,
        }
    }

    /// The keyring the control API seals credentials with.
    pub fn keyring(&self) -> gatehouse_core::secrets::Keyring {
        self.cfg.keyring().expect("test keyring")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `path` on the internal listener.
    pub fn internal_url(&self, path: &str) -> String {
        format!("{}{}", self.internal, path)
    }

    /// A verified user with a live session (made through the repositories).
    pub async fn user(&self, email: &str) -> TestUser {
        let mut tx = GlobalTx::begin(&self.db.db).await.unwrap();
        let hash = gatehouse_control_api::password::hash("test-password-1".into())
            .await
            .unwrap();
        let user = users::create(&mut tx, email, Some(&hash), "Test User", true)
            .await
            .unwrap();
        let token = random_token(32);
        sessions::create(&mut tx, user.id, &token_hash(&token), "password", None, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        TestUser {
            email: email.to_owned(),
            id: user.id,
            csrf: csrf_token(&self.cfg.derived_keys().unwrap().cookie, &token),
            cookie: format!("{}={token}", session_cookie_name(true)),
            http: self.http.clone(),
            base: self.base.clone(),
        }
    }

    /// An org owned by `owner`, returning its slug and id.
    pub async fn org(&self, owner: &TestUser, slug: &str) -> (String, OrgId) {
        let scope = OrgScope::authorized(OrgId::new());
        let mut tx = TenantTx::begin(&self.db.db, &scope).await.unwrap();
        let org = orgs::create_with_owner(&mut tx, slug, slug, owner.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (org.slug, org.id)
    }

    /// Adds `user` to the org with `role` (directly, bypassing invitations).
    pub async fn add_member(&self, org: OrgId, user: &TestUser, role: Role) {
        let mut admin = self.db.admin().await;
        sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(org)
            .bind(user.id)
            .bind(role.as_str())
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// A signed-in user: requests carry the session cookie and, on writes, the CSRF header.
#[derive(Clone)]
pub struct TestUser {
    pub email: String,
    pub id: gatehouse_core::ids::UserId,
    pub csrf: String,
    pub cookie: String,
    http: reqwest::Client,
    base: String,
}

impl TestUser {
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .header("cookie", &self.cookie);
        if !matches!(method, Method::GET | Method::HEAD) {
            req = req.header(CSRF_HEADER, &self.csrf);
        }
        req
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(Method::POST, path)
    }
}

impl TestApp {
    /// A `TestUser` for a session obtained through the API (cookie value and CSRF token from the
    /// login response).
    pub fn signed_in(
        &self,
        email: &str,
        id: gatehouse_core::ids::UserId,
        session_token: &str,
        csrf: &str,
    ) -> TestUser {
        TestUser {
            email: email.to_owned(),
            id,
            csrf: csrf.to_owned(),
            cookie: format!("{}={session_token}", session_cookie_name(self.cfg.is_local())),
            http: self.http.clone(),
            base: self.base.clone(),
        }
    }
}
