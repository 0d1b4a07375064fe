//! A private PostgreSQL cluster for `gatehouse up` when no `DATABASE_URL` is given.
//!
//! It uses the system's PostgreSQL server binaries, keeps its data under the local data directory,
//! listens only on a unix socket inside a private directory (no TCP port to collide with), and
//! trusts connections on that socket. PostgreSQL refuses to run as root, so when Gatehouse runs as
//! root the cluster runs as the `postgres` system user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

/// The schema owner (superuser of the private cluster).
pub const OWNER_ROLE: &str = "gatehouse_owner";
/// The services' role, created by `gatehouse migrate`.
pub const SERVICE_ROLE: &str = "gatehouse_svc";
pub const DATABASE: &str = "gatehouse";

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them with `apt-get install postgresql` (Debian/Ubuntu), \
         `dnf install postgresql-server` (Fedora) or `brew install postgresql` (macOS), or set \
         DATABASE_URL to an existing server."
    )]
    BinariesNotFound,
    #[error(
        "running as root needs the `postgres` system user (PostgreSQL refuses to run as root); \
         install the `postgresql` package, which creates it, or run as a normal user"
    )]
    NoPostgresUser,
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who runs the cluster's processes.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

#[derive(Clone, Debug)]
pub struct LocalCluster {
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Where the unix socket lives (private to the cluster's user).
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
}

impl LocalCluster {
    /// Decides where the cluster lives under `base` (the local data directory) and who runs it.
    pub fn locate(base: &Path) -> Result<Self, LocalPgError> {
        let bin_dir = find_bin_dir().ok_or(LocalPgError::BinariesNotFound)?;
        std::fs::create_dir_all(base).map_err(|source| LocalPgError::Io {
            path: base.to_path_buf(),
            source,
        })?;
        let base = base.canonicalize().map_err(|source| LocalPgError::Io {
            path: base.to_path_buf(),
            source,
        })?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(LocalPgError::NoPostgresUser)?;
            Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        let mut root = base.join("postgres");
        if let Some(run_as) = run_as
            && !can_traverse(run_as, &base)
        {
            // The checkout sits under a directory the postgres user cannot enter (e.g. /root).
            // Keep the cluster where it can, and leave a symlink under the data directory.
            let digest = hex::encode(&Sha256::digest(base.as_os_str().as_encoded_bytes())[..8]);
            let elsewhere = PathBuf::from("/var/lib/gatehouse/local").join(digest);
            create_dir(&elsewhere, None, 0o755)?;
            if !root.exists() {
                std::os::unix::fs::symlink(&elsewhere, &root).map_err(|source| LocalPgError::Io {
                    path: root.clone(),
                    source,
                })?;
            }
            tracing::info!(
                cluster = %elsewhere.display(),
                "the postgres user cannot reach {}, so the local cluster lives at {} (linked from {})",
                base.display(),
                elsewhere.display(),
                root.display()
            );
            root = elsewhere;
        }
        create_dir(&root, run_as, 0o700)?;
        let cluster = Self {
            data_dir: root.join("data"),
            socket_dir: root.join("run"),
            log_file: root.join("postgres.log"),
            bin_dir,
            run_as,
        };
        create_dir(&cluster.socket_dir, run_as, 0o700)?;
        Ok(cluster)
    }

    /// Initialises the cluster on first use, starts it if it is not running, and creates the
    /// database. Idempotent.
    pub async fn start(&self) -> Result<(), LocalPgError> {
        if !self.data_dir.join("PG_VERSION").exists() {
            self.init().await?;
        }
        if !self.is_running().await {
            self.run(
                "pg_ctl start",
                self.command("pg_ctl").args([
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-s",
                    "-D",
                    path_str(&self.data_dir),
                    "-l",
                    path_str(&self.log_file),
                ]),
            )
            .await
            .map_err(|e| self.with_log_tail(e))?;
        }
        self.create_database().await
    }

    /// Stops the cluster (fast shutdown: open transactions are rolled back).
    pub async fn stop(&self) -> Result<(), LocalPgError> {
        if !self.is_running().await {
            return Ok(());
        }
        self.run(
            "pg_ctl stop",
            self.command("pg_ctl").args([
                "stop",
                "-w",
                "-t",
                "60",
                "-s",
                "-m",
                "fast",
                "-D",
                path_str(&self.data_dir),
            ]),
        )
        .await
        .map(|_| ())
    }

    pub async fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .args(["status", "-D", path_str(&self.data_dir)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// Connection URL of the schema owner.
    pub fn admin_url(&self) -> String {
        self.url(OWNER_ROLE, DATABASE)
    }

    /// Connection URL of the services' role.
    pub fn service_url(&self) -> String {
        self.url(SERVICE_ROLE, DATABASE)
    }

    fn url(&self, user: &str, db: &str) -> String {
        let host: String =
            url::form_urlencoded::byte_serialize(path_str(&self.socket_dir).as_bytes()).collect();
        format!("postgres://{user}@localhost/{db}?host={host}")
    }

    async fn init(&self) -> Result<(), LocalPgError> {
        create_dir(&self.data_dir, self.run_as, 0o700)?;
        self.run(
            "initdb",
            self.command("initdb").args([
                "-D",
                path_str(&self.data_dir),
                "-U",
                OWNER_ROLE,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ]),
        )
        .await?;
        // Only the unix socket, inside a directory private to the cluster's user.
        let extra = format!(
            "\n# Added by gatehouse up\nlisten_addresses = ''\nunix_socket_directories = '{}'\nunix_socket_permissions = 0700\nmax_connections = 200\n",
            path_str(&self.socket_dir).replace('\'', "''")
        );
        let conf = self.data_dir.join("postgresql.conf");
        let mut current = std::fs::read_to_string(&conf).map_err(|source| LocalPgError::Io {
            path: conf.clone(),
            source,
        })?;
        current.push_str(&extra);
        std::fs::write(&conf, current).map_err(|source| LocalPgError::Io { path: conf, source })?;
        Ok(())
    }

    async fn create_database(&self) -> Result<(), LocalPgError> {
        use sqlx::{Connection, Executor};
        let url = self.url(OWNER_ROLE, "postgres");
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .map_err(|e| LocalPgError::Command {
                step: "connecting to the local cluster",
                detail: e.to_string(),
            })?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| LocalPgError::Command {
                step: "checking the local database",
                detail: e.to_string(),
            })?;
        if !exists {
            conn.execute("CREATE DATABASE gatehouse")
                .await
                .map_err(|e| LocalPgError::Command {
                    step: "creating the local database",
                    detail: e.to_string(),
                })?;
        }
        conn.close().await.ok();
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env("LC_ALL", "C").stdin(Stdio::null()).kill_on_drop(false);
        if let Some(run_as) = self.run_as {
            cmd.uid(run_as.uid).gid(run_as.gid);
            // The server must not inherit the caller's working directory (it may be unreadable).
            cmd.current_dir("/");
        }
        cmd
    }

    async fn run(&self, step: &'static str, cmd: &mut Command) -> Result<String, LocalPgError> {
        let output = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| LocalPgError::Command {
                step,
                detail: e.to_string(),
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(LocalPgError::Command {
                step,
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    String::from_utf8_lossy(&output.stdout).trim()
                ),
            })
        }
    }

    fn with_log_tail(&self, err: LocalPgError) -> LocalPgError {
        let tail = std::fs::read_to_string(&self.log_file)
            .map(|s| {
                s.lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default();
        match err {
            LocalPgError::Command { step, detail } if !tail.is_empty() => LocalPgError::Command {
                step,
                detail: format!("{detail} (log: {tail})"),
            },
            other => other,
        }
    }

    /// Waits until the cluster accepts connections or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.is_running().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("local data paths are UTF-8")
}

fn create_dir(path: &Path, owner: Option<RunAs>, mode: u32) -> Result<(), LocalPgError> {
    let io = |source| LocalPgError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    if let Some(owner) = owner {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).map_err(io)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(())
}

/// Whether `who` may traverse every directory from `/` down to `path`.
fn can_traverse(who: RunAs, path: &Path) -> bool {
    path.ancestors().all(|dir| match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.mode();
            if meta.uid() == who.uid {
                mode & 0o100 != 0
            } else if meta.gid() == who.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        }
        Err(_) => false,
    })
}

/// The directory holding initdb/pg_ctl/postgres: PATH first, then the newest
/// /usr/lib/postgresql/<version>/bin.
fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() {
                // Resolve symlinks such as /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin.
                let resolved = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir.clone());
                if has_all(&resolved) {
                    return Some(resolved);
                }
                if has_all(&dir) {
                    return Some(dir);
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
