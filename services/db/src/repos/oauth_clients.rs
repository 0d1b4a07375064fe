//! OAuth clients known globally: dynamically registered (RFC 7591) and Client ID Metadata
//! Documents (cached per their HTTP caching headers).

use time::OffsetDateTime;

use crate::error::DbResult;
use crate::tenant::GlobalTx;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct OAuthClientRow {
    pub client_id: String,
    pub registration_type: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub client_secret_hash: Option<Vec<u8>>,
    pub metadata: serde_json::Value,
    pub document_fetched_at: Option<OffsetDateTime>,
    pub document_expires_at: Option<OffsetDateTime>,
    pub document_etag: Option<String>,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str =
    "client_id, registration_type, client_name, client_uri, logo_uri, redirect_uris, grant_types,
    response_types, token_endpoint_auth_method, application_type, client_secret_hash, metadata,
    document_fetched_at, document_expires_at, document_etag, created_at";

/// A client to insert, or (for metadata documents) to refresh.
#[derive(Clone, Debug)]
pub struct NewOAuthClient {
    pub client_id: String,
    pub registration_type: &'static str,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub client_secret_hash: Option<Vec<u8>>,
    pub metadata: serde_json::Value,
    pub document_fetched_at: Option<OffsetDateTime>,
    pub document_expires_at: Option<OffsetDateTime>,
    pub document_etag: Option<String>,
}

pub async fn find(tx: &mut GlobalTx, client_id: &str) -> DbResult<Option<OAuthClientRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM oauth_clients WHERE client_id = $1"
    )))
    .bind(client_id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Inserts a client, or replaces a metadata document's cached copy.
pub async fn upsert(tx: &mut GlobalTx, c: &NewOAuthClient) -> DbResult<OAuthClientRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO oauth_clients (client_id, registration_type, client_name, client_uri, logo_uri, redirect_uris,
                                    grant_types, response_types, token_endpoint_auth_method, application_type,
                                    client_secret_hash, metadata, document_fetched_at, document_expires_at, document_etag)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (client_id) DO UPDATE SET
             client_name = EXCLUDED.client_name, client_uri = EXCLUDED.client_uri, logo_uri = EXCLUDED.logo_uri,
             redirect_uris = EXCLUDED.redirect_uris, grant_types = EXCLUDED.grant_types,
             response_types = EXCLUDED.response_types,
             token_endpoint_auth_method = EXCLUDED.token_endpoint_auth_method,
             application_type = EXCLUDED.application_type, metadata = EXCLUDED.metadata,
             document_fetched_at = EXCLUDED.document_fetched_at, document_expires_at = EXCLUDED.document_expires_at,
             document_etag = EXCLUDED.document_etag, updated_at = now()
           WHERE oauth_clients.registration_type = 'metadata_document'
         RETURNING {COLUMNS}"
    )))
    .bind(&c.client_id)
    .bind(c.registration_type)
    .bind(&c.client_name)
    .bind(&c.client_uri)
    .bind(&c.logo_uri)
    .bind(&c.redirect_uris)
    .bind(&c.grant_types)
    .bind(&c.response_types)
    .bind(&c.token_endpoint_auth_method)
    .bind(&c.application_type)
    .bind(&c.client_secret_hash)
    .bind(&c.metadata)
    .bind(c.document_fetched_at)
    .bind(c.document_expires_at)
    .bind(&c.document_etag)
    .fetch_one(tx.conn())
    .await?)
}

/// Extends a cached metadata document's lifetime after a `304 Not Modified`.
pub async fn touch_document(
    tx: &mut GlobalTx,
    client_id: &str,
    fetched_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> DbResult<()> {
    sqlx::query(
        "UPDATE oauth_clients SET document_fetched_at = $2, document_expires_at = $3, updated_at = now()
          WHERE client_id = $1 AND registration_type = 'metadata_document'",
    )
    .bind(client_id)
    .bind(fetched_at)
    .bind(expires_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}
