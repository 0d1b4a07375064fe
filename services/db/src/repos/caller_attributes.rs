//! Caller attributes: names an org defines, and the values an admin sets on each member and each
//! service token. The dataplane's snapshot carries them (with members' emails) so a hosted SQL
//! call can sign them into the caller context without reading this database.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::{ServiceTokenId, UserId};
use gatehouse_core::snapshot::CallerSnapshot;

use crate::error::DbResult;
use crate::tenant::TenantTx;

/// An attribute the org defined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AttributeRow {
    pub name: String,
    pub description: String,
    pub created_at: OffsetDateTime,
}

/// Every attribute the org defined, by name.
pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<AttributeRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT name, description, created_at FROM caller_attributes WHERE org_id = $1 ORDER BY name",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

/// Defines `name` (or changes its description); `true` if it was new.
pub async fn define(tx: &mut TenantTx, name: &str, description: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    let (inserted,): (bool,) = sqlx::query_as(
        "INSERT INTO caller_attributes (org_id, name, description) VALUES ($1, $2, $3)
         ON CONFLICT (org_id, name) DO UPDATE SET description = EXCLUDED.description
         RETURNING (xmax = 0)",
    )
    .bind(org_id)
    .bind(name)
    .bind(description)
    .fetch_one(tx.conn())
    .await?;
    Ok(inserted)
}

/// Removes `name` and every value of it; `false` if it was not defined.
pub async fn remove(tx: &mut TenantTx, name: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    let done = sqlx::query("DELETE FROM caller_attributes WHERE org_id = $1 AND name = $2")
        .bind(org_id)
        .bind(name)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The names in `values` the org has not defined.
pub async fn undefined(tx: &mut TenantTx, values: &BTreeMap<String, String>) -> DbResult<Vec<String>> {
    let defined: Vec<String> = list(tx).await?.into_iter().map(|a| a.name).collect();
    Ok(values.keys().filter(|k| !defined.contains(k)).cloned().collect())
}

/// A member's attribute values.
pub async fn member_values(tx: &mut TenantTx, user: UserId) -> DbResult<BTreeMap<String, String>> {
    let org_id = tx.org_id();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM member_attribute_values WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user)
            .fetch_all(tx.conn())
            .await?;
    Ok(rows.into_iter().collect())
}

/// Replaces a member's attribute values with `values` (every name defined: see [`undefined`]).
pub async fn set_member_values(
    tx: &mut TenantTx,
    user: UserId,
    values: &BTreeMap<String, String>,
) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("DELETE FROM member_attribute_values WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user)
        .execute(tx.conn())
        .await?;
    let (names, vals): (Vec<String>, Vec<String>) = values.clone().into_iter().unzip();
    sqlx::query(
        "INSERT INTO member_attribute_values (org_id, user_id, name, value)
         SELECT $1, $2, n, v FROM unnest($3::text[], $4::text[]) AS x (n, v)",
    )
    .bind(org_id)
    .bind(user)
    .bind(names)
    .bind(vals)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A service token's attribute values.
pub async fn service_token_values(
    tx: &mut TenantTx,
    token: ServiceTokenId,
) -> DbResult<BTreeMap<String, String>> {
    let org_id = tx.org_id();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, value FROM service_token_attribute_values WHERE org_id = $1 AND service_token_id = $2",
    )
    .bind(org_id)
    .bind(token)
    .fetch_all(tx.conn())
    .await?;
    Ok(rows.into_iter().collect())
}

/// Replaces a service token's attribute values with `values` (every name defined).
pub async fn set_service_token_values(
    tx: &mut TenantTx,
    token: ServiceTokenId,
    values: &BTreeMap<String, String>,
) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("DELETE FROM service_token_attribute_values WHERE org_id = $1 AND service_token_id = $2")
        .bind(org_id)
        .bind(token)
        .execute(tx.conn())
        .await?;
    let (names, vals): (Vec<String>, Vec<String>) = values.clone().into_iter().unzip();
    sqlx::query(
        "INSERT INTO service_token_attribute_values (org_id, service_token_id, name, value)
         SELECT $1, $2, n, v FROM unnest($3::text[], $4::text[]) AS x (n, v)",
    )
    .bind(org_id)
    .bind(token)
    .bind(names)
    .bind(vals)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Subject, email, attribute name and value (the last two absent for a member without values).
type CallerRow = (String, Option<String>, Option<String>, Option<String>);

/// For the snapshot: every member (subject = user id, with the email) and every live service
/// token with attribute values (`service_token:<id>`), by subject.
pub async fn callers(tx: &mut TenantTx) -> DbResult<Vec<CallerSnapshot>> {
    let org_id = tx.org_id();
    let rows: Vec<CallerRow> = sqlx::query_as(
        "SELECT m.user_id::text, u.email, v.name, v.value
           FROM memberships m
           JOIN users u ON u.id = m.user_id
           LEFT JOIN member_attribute_values v ON v.org_id = m.org_id AND v.user_id = m.user_id
          WHERE m.org_id = $1
         UNION ALL
         SELECT 'service_token:' || v.service_token_id::text, NULL, v.name, v.value
           FROM service_token_attribute_values v
           JOIN service_tokens t ON t.org_id = v.org_id AND t.id = v.service_token_id
          WHERE v.org_id = $1 AND t.revoked_at IS NULL
          ORDER BY 1, 3",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?;
    let mut callers: Vec<CallerSnapshot> = Vec::new();
    for (subject, email, name, value) in rows {
        if callers.last().is_none_or(|c| c.subject != subject) {
            callers.push(CallerSnapshot {
                subject,
                email,
                attributes: BTreeMap::new(),
            });
        }
        if let (Some(name), Some(value), Some(caller)) = (name, value, callers.last_mut()) {
            caller.attributes.insert(name, value);
        }
    }
    Ok(callers)
}
