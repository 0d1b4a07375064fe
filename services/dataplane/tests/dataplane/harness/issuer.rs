//! The test authorization server: a signing key and the JWKS it publishes; tokens as it issues them.

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::EndpointSnapshot;
use gatehouse_test_support::free_port;

const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The signing key of the test authorization server and the JWKS it publishes.
pub struct Issuer {
    pub url: String,
    pub key: EncodingKey,
    pub kid: String,
    pub public_jwk: Jwk,
    shutdown: CancellationToken,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Issuer {
    pub async fn start() -> Issuer {
        let mut seed = [0u8; 32];
        rand_fill(&mut seed);
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let kid = format!("test-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some(kid.clone());
        let set = web::Data::new(JwkSet {
            keys: vec![jwk.clone()],
        });
        let port = free_port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(set.clone())
                .route(
                    "/healthz",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route(
                    "/.well-known/jwks.json",
                    web::get().to(|set: web::Data<JwkSet>| async move { HttpResponse::Ok().json(&**set) }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", port))
        .unwrap()
        .run();
        let handle = server.handle();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(server);
        tokio::spawn(async move {
            stop.cancelled().await;
            handle.stop(false).await;
        });
        Issuer {
            url: format!("http://127.0.0.1:{port}"),
            key,
            kid,
            public_jwk: jwk,
            shutdown,
        }
    }

    /// A token as the authorization server issues it, with `claims` merged over the defaults.
    pub fn token(
        &self,
        endpoint: &EndpointSnapshot,
        org: OrgId,
        sub: &str,
        scope: &str,
        overrides: Value,
    ) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.url,
            "sub": sub,
            "aud": endpoint.resource_url,
            "client_id": "test-client",
            "scope": scope,
            "org_id": org.to_string(),
            "endpoint_id": endpoint.id.to_string(),
            "jti": uuid::Uuid::now_v7().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "sid": format!("family-{sub}"),
            "gh_kind": "user",
        });
        if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rand_fill(buf: &mut [u8]) {
    let id = uuid::Uuid::new_v4();
    let id2 = uuid::Uuid::new_v4();
    let bytes: Vec<u8> = id.as_bytes().iter().chain(id2.as_bytes()).copied().collect();
    buf.copy_from_slice(&bytes[..buf.len()]);
}
