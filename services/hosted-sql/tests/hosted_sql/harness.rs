//! Throwaway backends on the shared PostgreSQL (a database and roles with unique names, dropped
//! afterwards) and a private PgBouncer in transaction mode in front of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse_core::ids::{BackendId, EndpointId, OrgId, ToolId};
use gatehouse_hosted_sql::backend::{BackendConfig, TlsMode};
use gatehouse_hosted_sql::context::{CallerContext, ContextKey};
use gatehouse_hosted_sql::define::{self, ToolSpec};
use gatehouse_hosted_sql::install;
use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::tool::SqlTool;
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

pub fn server_url() -> String {
    gatehouse_test_support::testdb::server_url()
}

fn url_for(db: &str, user: Option<(&str, &str)>) -> String {
    let mut url = url::Url::parse(&server_url()).expect("TEST_PG_URL");
    url.set_path(&format!("/{db}"));
    if let Some((u, p)) = user {
        url.set_username(u).unwrap();
        url.set_password(Some(p)).unwrap();
    }
    url.to_string()
}

pub async fn superuser(db: &str) -> PgConnection {
    PgConnection::connect(&url_for(db, None))
        .await
        .expect("superuser connection")
}

/// A backend database shared by several owners: `orders` and `order_items`, every row carrying
/// its owner (org and customer), row-level security enabled and forced with policies on the
/// caller's verified org and `customer_id` attribute.
pub struct Backend {
    pub db: String,
    pub tool_role: String,
    pub owner_role: String,
    pub password: String,
    pub key: ContextKey,
    pub id: BackendId,
    pub org_id: OrgId,
}

pub const SCHEMA: &str = r#"
CREATE TABLE orders (
    id          integer PRIMARY KEY,
    org_id      uuid NOT NULL,
    customer_id text NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    total       numeric(12,2) NOT NULL DEFAULT 0,
    payload     text NOT NULL,
    note        text
);
CREATE INDEX orders_owner ON orders (org_id, customer_id);
CREATE TABLE order_items (
    order_id    integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    org_id      uuid NOT NULL,
    customer_id text NOT NULL,
    sku         text NOT NULL,
    qty         integer NOT NULL
);
CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL);
CREATE TABLE secrets_unprotected (id integer PRIMARY KEY, org_id uuid, customer_id text, secret text);

ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY orders_owner ON orders FOR ALL TO PUBLIC
    USING (org_id = (SELECT gatehouse.org()) AND customer_id = (SELECT gatehouse.claim('customer_id')))
    WITH CHECK (org_id = (SELECT gatehouse.org()) AND customer_id = (SELECT gatehouse.claim('customer_id')));
ALTER TABLE order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_items FORCE ROW LEVEL SECURITY;
CREATE POLICY items_owner ON order_items FOR ALL TO PUBLIC
    USING (org_id = (SELECT gatehouse.org()) AND customer_id = (SELECT gatehouse.claim('customer_id')))
    WITH CHECK (org_id = (SELECT gatehouse.org()) AND customer_id = (SELECT gatehouse.claim('customer_id')));
"#;

impl Backend {
    pub async fn new() -> Backend {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db = format!("hs_{tag}");
        let tool_role = format!("hs_tools_{tag}");
        let owner_role = format!("hs_owner_{tag}");
        let password = format!("pw-{tag}");
        let mut admin = superuser("postgres").await;
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
            .await
            .unwrap();
        admin
            .execute(AssertSqlSafe(format!(
                "CREATE ROLE {tool_role} LOGIN PASSWORD '{password}' NOSUPERUSER NOBYPASSRLS NOINHERIT NOCREATEDB NOCREATEROLE"
            )))
            .await
            .unwrap();
        admin.close().await.ok();
        let key = ContextKey::generate();
        let mut conn = superuser(&db).await;
        conn.execute(AssertSqlSafe(install::setup_script(&owner_role, 0, &key)))
            .await
            .expect("install the gatehouse schema");
        conn.execute(AssertSqlSafe(SCHEMA.to_owned()))
            .await
            .expect("schema");
        conn.execute(AssertSqlSafe(format!(
            "GRANT USAGE ON SCHEMA public TO {tool_role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON orders, order_items, products, secrets_unprotected TO {tool_role};
"
        )))
        .await
        .unwrap();
        conn.close().await.ok();
        Backend {
            db,
            tool_role,
            owner_role,
            password,
            key,
            id: BackendId::new(),
            org_id: OrgId::new(),
        }
    }

    pub fn dsn_at(&self, host_port: &str) -> String {
        format!(
            "postgres://{}:{}@{host_port}/{}",
            self.tool_role, self.password, self.db
        )
    }

    pub fn direct_host_port(&self) -> String {
        let url = url::Url::parse(&server_url()).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
    }

    pub fn config_at(&self, host_port: &str, statement_timeout_ms: u64, max_rows: usize) -> BackendConfig {
        self.config_with(
            host_port,
            TlsMode::Disable,
            None,
            statement_timeout_ms,
            max_rows,
            &[],
        )
    }

    pub fn config_with(
        &self,
        host_port: &str,
        tls: TlsMode,
        ca_pem: Option<String>,
        statement_timeout_ms: u64,
        max_rows: usize,
        allowed_functions: &[String],
    ) -> BackendConfig {
        BackendConfig::new(
            self.org_id,
            self.id,
            SecretString::from(self.dsn_at(host_port)),
            tls,
            ca_pem,
            self.key.clone(),
            vec!["public".into()],
            allowed_functions,
            Duration::from_millis(statement_timeout_ms),
            max_rows,
        )
        .expect("backend config")
    }

    pub fn direct(&self) -> BackendConfig {
        self.config_at(&self.direct_host_port(), 2_000, 1_000)
    }

    pub async fn admin(&self) -> PgConnection {
        superuser(&self.db).await
    }

    /// Defines a tool through the parser and the backend.
    pub async fn tool(
        &self,
        backend: &BackendConfig,
        name: &str,
        sql: &str,
        access: Access,
        destructive: bool,
    ) -> SqlTool {
        let descriptions = serde_json::Map::new();
        let def = define::define(
            backend,
            &ToolSpec {
                name,
                description: "test tool",
                sql,
                access,
                destructive,
                param_descriptions: &descriptions,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("define {name}: {e}"));
        SqlTool {
            id: ToolId::new(),
            backend_id: self.id,
            name: name.to_owned(),
            approved_hash: gatehouse_core::canonical::canonical_hash(&def.definition),
            sql: def.parsed.positional_sql,
            params: def.params,
            columns: def.columns,
            access,
            destructive,
        }
    }

    /// A tool that skips every check of the control plane (to show what the backend itself
    /// contains): the statement runs as given.
    pub fn raw_tool(
        &self,
        name: &str,
        sql: &str,
        access: Access,
        columns: Vec<gatehouse_hosted_sql::tool::Typed>,
    ) -> SqlTool {
        SqlTool {
            id: ToolId::new(),
            backend_id: self.id,
            name: name.to_owned(),
            approved_hash: "raw".into(),
            sql: sql.to_owned(),
            params: vec![],
            columns,
            access,
            destructive: false,
        }
    }

    pub async fn drop(self) {
        let mut admin = superuser("postgres").await;
        admin
            .execute(AssertSqlSafe(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.db
            )))
            .await
            .ok();
        admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db
            )))
            .await
            .expect("drop test backend");
        for role in [&self.tool_role, &self.owner_role] {
            admin
                .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                .await
                .expect("drop test role");
        }
        admin.close().await.ok();
    }
}

/// An owner of rows: an org and one of its customers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub org: OrgId,
    pub customer: String,
}

impl Owner {
    pub fn tag(&self) -> String {
        format!("{}/{}", self.org, self.customer)
    }
}

pub fn caller(owner: &Owner, subject: &str) -> CallerContext {
    CallerContext {
        org_id: owner.org,
        endpoint_id: EndpointId::new(),
        subject: subject.to_owned(),
        subject_kind: "service_token".into(),
        email: None,
        scopes: vec!["orders:read".into(), "orders:write".into()],
        attributes: BTreeMap::from([("customer_id".to_owned(), owner.customer.clone())]),
    }
}

/// Seeds `per_owner` orders (with one item each) for every owner; ids are global and
/// interleaved, payloads embed the owner.
pub async fn seed(backend: &Backend, owners: &[Owner], per_owner: usize) {
    let mut admin = backend.admin().await;
    let mut id = 0i32;
    let mut tx = admin.begin().await.unwrap();
    for n in 0..per_owner {
        for owner in owners {
            id += 1;
            sqlx::query(
                "INSERT INTO orders (id, org_id, customer_id, status, total, payload) VALUES ($1, $2, $3, $4, $5::numeric, $6)",
            )
            .bind(id)
            .bind(owner.org)
            .bind(&owner.customer)
            .bind(if n % 3 == 0 { "shipped" } else { "open" })
            .bind(format!("{}.{:02}", 10 + n, n % 100))
            .bind(owner.tag())
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("INSERT INTO order_items (order_id, org_id, customer_id, sku, qty) VALUES ($1, $2, $3, 'sku-1', 1)")
                .bind(id)
                .bind(owner.org)
                .bind(&owner.customer)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private PgBouncer in transaction mode in front of the shared PostgreSQL, run as the
/// `postgres` user (PgBouncer refuses to run as root), on a free port.
pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

pub struct BouncerTls {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl PgBouncer {
    pub async fn start(backend: &Backend, pool_size: u32, tls: Option<&BouncerTls>) -> PgBouncer {
        let server = url::Url::parse(&server_url()).unwrap();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gh-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("userlist.txt"),
            format!(
                "\"{}\" \"{}\"\n\"postgres\" \"\"\n",
                backend.tool_role, backend.password
            ),
        )
        .unwrap();
        let mut ini = format!(
            "[databases]\n{db} = host={host} port={pgport} dbname={db}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmax_client_conn = 500\nmax_db_connections = {pool_size}\n\
             ignore_startup_parameters = extra_float_digits\nlogfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\nserver_reset_query =\nserver_check_delay = 0\n",
            db = backend.db,
            host = server.host_str().unwrap(),
            pgport = server.port().unwrap_or(5432),
            dir = dir.display(),
        );
        if let Some(tls) = tls {
            for (from, to) in [(&tls.cert_pem, "server.crt"), (&tls.key_pem, "server.key")] {
                std::fs::copy(from, dir.join(to)).unwrap();
            }
            ini.push_str(&format!(
                "client_tls_sslmode = require\nclient_tls_cert_file = {d}/server.crt\nclient_tls_key_file = {d}/server.key\n",
                d = dir.display()
            ));
        }
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let as_root = nix::unistd::Uid::effective().is_root();
        let binary = if std::path::Path::new("/usr/sbin/pgbouncer").exists() {
            "/usr/sbin/pgbouncer"
        } else {
            "pgbouncer"
        };
        let mut cmd = if as_root {
            Command::new("chown")
                .args(["-R", "postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", binary]);
            c
        } else {
            Command::new(binary)
        };
        let mut child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer is required by these tests (apt-get install pgbouncer)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return PgBouncer { port, dir, child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().ok();
        child.wait().ok();
        panic!(
            "pgbouncer did not start: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
    }

    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // The child is `runuser`; PgBouncer itself is its child: stop it through its pid file.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).ok();
        }
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
