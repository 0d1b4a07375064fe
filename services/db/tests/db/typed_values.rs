//! Stored values of the typed server model: a value this build does not know fails the read of
//! its row (and of the snapshot that would carry it), never becomes a default.

use gatehouse_db::repos::{servers, snapshot};
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_test_support::TestDb;

use crate::seed::seed_org;

#[tokio::test]
async fn an_unknown_stored_transport_or_credential_kind_fails_to_read() {
    let db = TestDb::new().await;
    let org = seed_org(&db.db, "typed").await;
    let read = async || {
        let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org.id))
            .await
            .unwrap();
        let listed = servers::list(&mut tx).await;
        let built = snapshot::build(&mut tx, |o, e| format!("https://mcp.test/{o}/{e}/mcp")).await;
        (listed, built)
    };
    let (listed, built) = read().await;
    assert!(!listed.unwrap().is_empty(), "the seeded server reads");
    built.unwrap();

    // (column, unknown value and what goes with it, the known value restored afterwards)
    for (column, value, also, restore) in [
        ("transport", "websocket", "", "transport = 'streamable_http'"),
        (
            "auth_kind",
            "mtls",
            ", credential_enc = '\\x00'",
            "auth_kind = 'none', credential_enc = NULL",
        ),
    ] {
        let mut admin = db.admin().await;
        // A value a newer build (or a hand edit) wrote: the schema of this build refuses it, so
        // the check goes first.
        for sql in [
            format!("ALTER TABLE domain_servers DROP CONSTRAINT IF EXISTS domain_servers_{column}_check"),
            format!(
                "UPDATE domain_servers SET {column} = '{value}'{also} WHERE org_id = '{}'",
                org.id
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        let (listed, built) = read().await;
        let error = listed.expect_err("an unknown value is an error").to_string();
        assert!(error.contains(value), "{error}");
        assert!(built.is_err(), "no snapshot carries a server it cannot read");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE domain_servers SET {restore} WHERE org_id = '{}'",
            org.id
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}
