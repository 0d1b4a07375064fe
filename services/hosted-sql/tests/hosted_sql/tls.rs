//! TLS to a backend: `verify_full` with the backend's CA certificate connects; a certificate from
//! another CA, or no TLS where the backend requires it, does not (a clear error, no connection
//! string in it). The backend here is a PgBouncer that terminates TLS in front of the shared
//! PostgreSQL.

use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::{CallOptions, ErrorKind, HostedSql, RuntimeConfig, TlsMode};
use gatehouse_test_support::tls::TestCa;
use serde_json::Map;

use crate::harness::{Backend, BouncerTls, Owner, PgBouncer, caller, seed};
use crate::runs::done;

#[tokio::test]
async fn verify_full_with_the_backends_ca_connects_and_nothing_else_does() {
    let backend = Backend::new().await;
    let owner = Owner {
        org: backend.org_id,
        customer: "c-1".into(),
    };
    seed(&backend, std::slice::from_ref(&owner), 2).await;
    let ca = TestCa::new();
    let bouncer = PgBouncer::start(
        &backend,
        2,
        Some(&BouncerTls {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        }),
    )
    .await;
    let ca_pem = std::fs::read_to_string(&ca.ca_pem).unwrap();
    let trusted = backend.config_with(
        &bouncer.host_port(),
        TlsMode::VerifyFull,
        Some(ca_pem),
        2_000,
        100,
        &[],
    );
    let list = backend
        .tool(
            &trusted,
            "list",
            "SELECT payload FROM orders",
            Access::Read,
            false,
        )
        .await;
    let runtime = HostedSql::new(RuntimeConfig::default());
    let me = caller(&owner, "s");
    let rows = done(
        runtime
            .run(&trusted, &list, &me, &Map::new(), &CallOptions::default())
            .await,
    );
    assert_eq!(rows.row_count, 2);

    let other_ca = TestCa::new();
    let untrusted = backend.config_with(
        &bouncer.host_port(),
        TlsMode::VerifyFull,
        Some(std::fs::read_to_string(&other_ca.ca_pem).unwrap()),
        2_000,
        100,
        &[],
    );
    let err = runtime
        .run(&untrusted, &list, &me, &Map::new(), &CallOptions::default())
        .await
        .expect_err("an unknown CA");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("TLS"), "{}", err.message);
    assert!(!err.message.contains(&backend.password));
    let plain = backend.config_with(&bouncer.host_port(), TlsMode::Disable, None, 2_000, 100, &[]);
    let err = runtime
        .run(&plain, &list, &me, &Map::new(), &CallOptions::default())
        .await
        .expect_err("TLS is required");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    drop(bouncer);
    backend.drop().await;
}
