//! The database-role check runs before anything listens: a service configured with a role that
//! could get around row-level security never accepts a connection, even while its database is
//! still unreachable at start, and exits (status 2, naming the problem) once the database answers.

use std::process::Stdio;
use std::time::{Duration, Instant};

use gatehouse_test_support::{TestDb, free_port_outside_ephemeral};

use crate::{gatehouse, valid_env};

/// Forwards every connection on `port` to PostgreSQL at `target` (the database "comes up").
async fn forward(port: u16, target: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(100),
    )
    .is_ok()
}

#[tokio::test]
async fn an_unsafe_database_role_stops_the_service_before_it_listens() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let admin = url::Url::parse(&db.admin_url).unwrap();
    let postgres = format!("127.0.0.1:{}", admin.port().unwrap_or(5432));
    for service in ["control-api", "usage-worker"] {
        // Outside the ephemeral range: another test's port, or this test's own connection to
        // itself, could otherwise be counted as the service listening.
        let (port, db_port) = (free_port_outside_ephemeral(), free_port_outside_ephemeral());
        // The superuser (it bypasses row-level security), behind a port nothing listens on yet.
        let mut url = admin.clone();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(db_port)).unwrap();
        let mut cmd = gatehouse();
        for (k, v) in valid_env() {
            cmd.env(k, v);
        }
        cmd.env("GATEHOUSE_DATABASE__URL", url.as_str())
            .env("GATEHOUSE_DATABASE__ACQUIRE_TIMEOUT_MS", "300")
            .env("GATEHOUSE_CONTROL_API__LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_USAGE_WORKER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "GATEHOUSE_MAIL__FILE_DIR",
                std::env::temp_dir().join(format!("gh-dbrole-mail-{port}")),
            )
            .arg(service)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // While the database is unreachable, nothing listens.
        let mut accepted = 0;
        let down_until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < down_until {
            if accepts(port) {
                accepted += 1;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{service} gave up while the database was down"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        forward(db_port, postgres.clone()).await;
        let started = Instant::now();
        let status = loop {
            if accepts(port) {
                accepted += 1;
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{service} is still running with a superuser role");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{service}: {stderr}");
        assert!(stderr.contains("superuser"), "{service}: {stderr}");
        assert_eq!(
            accepted, 0,
            "{service} accepted connections before its database role was checked"
        );
    }
}
