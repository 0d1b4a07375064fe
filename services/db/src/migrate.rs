//! Schema migrations (run as the schema owner) and provisioning of the services' login role.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

/// The one migration set, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database.admin_url: cannot connect: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database.url: {0}")]
    ServiceRole(String),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Applies pending migrations as the owner (`admin_url`) and makes sure the services' login role
/// (the user in `service_url`) exists, can log in with the URL's password, belongs to
/// `gatehouse_app`, and has no power over row-level security.
pub async fn migrate(admin_url: &str, service_url: &str) -> Result<MigrationReport, MigrateError> {
    let admin_options = PgConnectOptions::from_str(admin_url)
        .map_err(MigrateError::Connect)?
        .application_name("gatehouse-migrate")
        .log_statements(tracing::log::LevelFilter::Debug);
    let mut conn = PgConnection::connect_with(&admin_options)
        .await
        .map_err(MigrateError::Connect)?;
    let before: i64 = applied_count(&mut conn).await;
    MIGRATOR.run(&mut conn).await?;
    let after: i64 = applied_count(&mut conn).await;
    let service_role = ensure_service_role(&mut conn, service_url).await?;
    conn.close().await.ok();
    Ok(MigrationReport {
        applied_now: (after - before).max(0) as usize,
        total: after as usize,
        service_role,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied_now: usize,
    pub total: usize,
    pub service_role: String,
}

async fn applied_count(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(conn)
        .await
        .unwrap_or(0)
}

async fn ensure_service_role(conn: &mut PgConnection, service_url: &str) -> Result<String, MigrateError> {
    let url = url::Url::parse(service_url)
        .map_err(|e| MigrateError::ServiceRole(format!("is not a valid URL ({e})")))?;
    let user = gatehouse_core::config::decode_userinfo(url.username());
    let password = url.password().map(gatehouse_core::config::decode_userinfo);
    let user = if user.is_empty() {
        return Err(MigrateError::ServiceRole(
            "must name the services' role (postgres://ROLE:PASSWORD@host/db)".to_owned(),
        ));
    } else {
        user
    };
    let current: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await?;
    if current == user {
        return Err(MigrateError::ServiceRole(format!(
            "uses the schema owner {user:?}; the services need their own role (any name; \
             `gatehouse migrate` creates it)"
        )));
    }
    let existing: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(&user)
            .fetch_optional(&mut *conn)
            .await?;
    match existing {
        Some((true, _)) | Some((_, true)) => {
            return Err(MigrateError::ServiceRole(format!(
                "role {user:?} is a superuser or has BYPASSRLS; pick another role name for the services"
            )));
        }
        Some(_) => {
            let sql: String = match &password {
                Some(pw) => sqlx::query_scalar(
                    "SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L', $1::text, $2::text)",
                )
                .bind(&user)
                .bind(pw)
                .fetch_one(&mut *conn)
                .await?,
                None => sqlx::query_scalar(
                    "SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE', $1::text)",
                )
                .bind(&user)
                .fetch_one(&mut *conn)
                .await?,
            };
            sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
        }
        None => {
            let sql: String = sqlx::query_scalar(
                "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT %s',
                               $1::text,
                               CASE WHEN $2::text IS NULL THEN '' ELSE format('PASSWORD %L', $2::text) END)",
            )
            .bind(&user)
            .bind(&password)
            .fetch_one(&mut *conn)
            .await?;
            // Another migrator may create the same role at the same moment (cluster-wide names).
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await {
                let duplicate = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "42710" || c == "23505");
                if !duplicate {
                    return Err(e.into());
                }
            }
        }
    }
    let grant: String = sqlx::query_scalar("SELECT format('GRANT gatehouse_app TO %I', $1::text)")
        .bind(&user)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(AssertSqlSafe(grant)).execute(&mut *conn).await?;
    let connect: String = sqlx::query_scalar(
        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1::text)",
    )
    .bind(&user)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(AssertSqlSafe(connect)).execute(&mut *conn).await?;
    Ok(user)
}
