//! Token signing keys: generation (EdDSA or ES256), sealed storage, the published JWKS, and
//! rotation with the publish-before-sign guarantee.
//!
//! A key's life: it is inserted with `publish_at = now` and `sign_from = now + key_publish_lead`,
//! so it is in every validator's copy of the JWKS (refreshed at least every `jwks_max_age`, which
//! is shorter than the lead) before the first token it signs exists. Its predecessor stops signing
//! at that moment (`retire_at`) and stays published until the last token it signed has expired
//! (`expire_at = retire_at + access token lifetime + leeway`). Only the very first key of an
//! install signs at once: no validator can hold an older JWKS that lacks it and has ever seen a
//! token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use gatehouse_core::Config;
use gatehouse_core::config::SigningAlg;
use gatehouse_core::secrets::{Keyring, random_token};
use gatehouse_db::repos::signing_keys::{self, NewSigningKey, SigningKeyRow};
use gatehouse_db::{Db, GlobalTx};

/// Extra life of a retired key in the JWKS beyond the lifetime of the tokens it signed, for
/// validators whose clocks run behind.
pub const EXPIRY_LEEWAY_SECS: i64 = 60;
/// How often each replica reloads its keys and checks whether a rotation is due, at most: a
/// quarter of the publication lead (at least a second), so a successor is known long before it
/// signs.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(30);

fn maintenance_interval(lead_secs: u64) -> Duration {
    Duration::from_millis((lead_secs * 250).clamp(1000, MAINTENANCE_INTERVAL.as_millis() as u64))
}

fn seal_context(kid: &str) -> String {
    format!("gatehouse/signing-key/{kid}")
}

/// A freshly generated key pair, ready to store.
pub struct GeneratedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// PKCS#8 DER of the private key.
    pub pkcs8: Vec<u8>,
    pub public_jwk: serde_json::Value,
}

pub fn alg_name(alg: SigningAlg) -> &'static str {
    match alg {
        SigningAlg::EdDSA => "EdDSA",
        SigningAlg::ES256 => "ES256",
    }
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::ES256 => Algorithm::ES256,
    }
}

fn encoding_key(alg: SigningAlg, pkcs8: &[u8]) -> EncodingKey {
    match alg {
        SigningAlg::EdDSA => EncodingKey::from_ed_der(pkcs8),
        SigningAlg::ES256 => EncodingKey::from_ec_der(pkcs8),
    }
}

pub fn generate(alg: SigningAlg) -> anyhow::Result<GeneratedKey> {
    let rng = SystemRandom::new();
    let pkcs8 = match alg {
        // PKCS#8 v1 (private key only): the form jsonwebtoken derives the public JWK from.
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?
            .as_ref()
            .to_vec(),
        SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?
            .as_ref()
            .to_vec(),
    };
    let kid = format!(
        "{}-{}",
        OffsetDateTime::now_utc().unix_timestamp(),
        random_token(9)
    );
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, &pkcs8), jwt_alg(alg))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match alg {
        SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
        SigningAlg::ES256 => KeyAlgorithm::ES256,
    });
    Ok(GeneratedKey {
        kid,
        alg,
        pkcs8,
        public_jwk: serde_json::to_value(&jwk)?,
    })
}

/// A key this replica may sign with, decrypted.
struct LoadedKey {
    kid: String,
    alg: SigningAlg,
    encoding: EncodingKey,
    sign_from: OffsetDateTime,
    retire_at: Option<OffsetDateTime>,
}

impl LoadedKey {
    fn signs_at(&self, now: OffsetDateTime) -> bool {
        self.sign_from <= now && self.retire_at.is_none_or(|r| now < r)
    }
}

struct Cache {
    keys: Vec<LoadedKey>,
    /// When the keys were read (`None`: never).
    loaded: Option<Instant>,
}

/// What a rotation did, for the operator.
#[derive(Clone, Debug, Serialize)]
pub struct RotationReport {
    /// The key that will sign next (new, or already pending).
    pub next_kid: String,
    #[serde(with = "time::serde::rfc3339")]
    pub next_signs_from: OffsetDateTime,
    /// The key it replaces, with when it stops signing and leaves the JWKS.
    pub retiring_kid: Option<String>,
    pub created: bool,
}

/// Public facts about a key, for `gatehouse signing-keys list`.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    #[serde(with = "time::serde::rfc3339")]
    pub publish_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub sign_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retire_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_at: Option<OffsetDateTime>,
}

/// The signing keys as one replica sees them: a cache of the decrypted keys, reloaded from the
/// database periodically and whenever no cached key may sign.
pub struct SigningKeys {
    db: Db,
    keyring: Arc<Keyring>,
    alg: SigningAlg,
    lead: time::Duration,
    rotation: time::Duration,
    retired_life: time::Duration,
    interval: Duration,
    cache: ArcSwap<Cache>,
    reload: Mutex<()>,
}

impl SigningKeys {
    pub fn new(cfg: &Config, db: Db, keyring: Arc<Keyring>) -> Self {
        Self {
            db,
            keyring,
            alg: cfg.oauth.signing_alg,
            lead: time::Duration::seconds(cfg.oauth.key_publish_lead_secs as i64),
            rotation: time::Duration::seconds(cfg.oauth.key_rotation_secs as i64),
            retired_life: time::Duration::seconds(
                cfg.oauth.access_token_ttl_secs as i64 + EXPIRY_LEEWAY_SECS,
            ),
            interval: maintenance_interval(cfg.oauth.key_publish_lead_secs),
            cache: ArcSwap::from_pointee(Cache {
                keys: Vec::new(),
                loaded: None,
            }),
            reload: Mutex::new(()),
        }
    }

    /// Signs `claims` as a JWT with the header `{"alg", "typ", "kid"}`.
    pub async fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc();
        let cache = self.cache.load();
        // A stale cache may miss a successor's schedule; it must not outlive the retired key's
        // leeway in the JWKS (EXPIRY_LEEWAY_SECS), so it is reloaded well before that.
        let fresh = cache
            .loaded
            .is_some_and(|at| at.elapsed() < self.interval + self.interval / 2);
        let cached = if fresh { pick(&cache.keys, now) } else { None };
        let token = match cached {
            Some(key) => sign_with(key, typ, claims)?,
            None => {
                drop(cache);
                self.load(true).await?;
                let cache = self.cache.load();
                let key =
                    pick(&cache.keys, now).ok_or_else(|| anyhow::anyhow!("no signing key may sign now"))?;
                sign_with(key, typ, claims)?
            }
        };
        Ok(token)
    }

    /// Reloads the keys from the database; with `ensure`, first creates the install's first key
    /// if there is none that may sign (and runs a due rotation).
    pub async fn load(&self, ensure: bool) -> anyhow::Result<()> {
        let _guard = self.reload.lock().await;
        let mut tx = GlobalTx::begin(&self.db).await?;
        if ensure {
            signing_keys::lock_for_rotation(&mut tx).await?;
            self.maintain_locked(&mut tx, false).await?;
        }
        let rows = signing_keys::list_live(&mut tx).await?;
        tx.commit().await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            keys.push(self.decrypt(&row)?);
        }
        self.cache.store(Arc::new(Cache {
            keys,
            loaded: Some(Instant::now()),
        }));
        Ok(())
    }

    fn decrypt(&self, row: &SigningKeyRow) -> anyhow::Result<LoadedKey> {
        let alg = match row.alg.as_str() {
            "EdDSA" => SigningAlg::EdDSA,
            "ES256" => SigningAlg::ES256,
            other => anyhow::bail!("signing key {} has unknown alg {other}", row.kid),
        };
        let pkcs8 = self
            .keyring
            .open(&row.private_key_enc, &seal_context(&row.kid))
            .map_err(|e| anyhow::anyhow!("cannot open signing key {}: {e}", row.kid))?;
        Ok(LoadedKey {
            kid: row.kid.clone(),
            alg,
            encoding: encoding_key(alg, &pkcs8),
            sign_from: row.sign_from,
            retire_at: row.retire_at,
        })
    }

    /// Rotates now: a successor is published at once and signs after the publication lead. If a
    /// successor is already pending, nothing changes (its schedule is reported).
    pub async fn rotate_now(&self) -> anyhow::Result<RotationReport> {
        let mut tx = GlobalTx::begin(&self.db).await?;
        signing_keys::lock_for_rotation(&mut tx).await?;
        let report = self.maintain_locked(&mut tx, true).await?;
        tx.commit().await?;
        drop(self.load(false).await);
        report.ok_or_else(|| anyhow::anyhow!("rotation produced no key"))
    }

    /// The keys not yet expired, for the operator.
    pub async fn list(&self) -> anyhow::Result<Vec<KeyInfo>> {
        let mut tx = GlobalTx::begin(&self.db).await?;
        let rows = signing_keys::list_live(&mut tx).await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| KeyInfo {
                kid: r.kid,
                alg: r.alg,
                publish_at: r.publish_at,
                sign_from: r.sign_from,
                retire_at: r.retire_at,
                expire_at: r.expire_at,
            })
            .collect())
    }

    /// Creates the first key, or a successor when the current one is due (or `force`). Runs with
    /// the rotation lock held.
    async fn maintain_locked(
        &self,
        tx: &mut GlobalTx,
        force: bool,
    ) -> anyhow::Result<Option<RotationReport>> {
        let now = OffsetDateTime::now_utc();
        let rows = signing_keys::list_live(tx).await?;
        let signing = rows
            .iter()
            .filter(|k| k.sign_from <= now && k.retire_at.is_none_or(|r| now < r))
            .max_by_key(|k| k.sign_from);
        let pending = rows
            .iter()
            .filter(|k| k.sign_from > now)
            .max_by_key(|k| k.sign_from);
        if let Some(pending) = pending {
            return Ok(Some(RotationReport {
                next_kid: pending.kid.clone(),
                next_signs_from: pending.sign_from,
                retiring_kid: signing.map(|k| k.kid.clone()),
                created: false,
            }));
        }
        let Some(current) = signing else {
            // The install's first key (or every key was retired): nothing signed by a missing
            // key can be in circulation, so it signs at once.
            let key = self.insert(tx, now, now).await?;
            tracing::info!(kid = %key, "created the first token signing key");
            return Ok(Some(RotationReport {
                next_kid: key,
                next_signs_from: now,
                retiring_kid: None,
                created: true,
            }));
        };
        let due = current.sign_from + self.rotation - self.lead <= now;
        if !due && !force {
            return Ok(None);
        }
        let sign_from = if force {
            now + self.lead
        } else {
            (now + self.lead).max(current.sign_from + self.rotation)
        };
        let kid = self.insert(tx, now, sign_from).await?;
        signing_keys::schedule_retirement(tx, &current.kid, sign_from, sign_from + self.retired_life).await?;
        signing_keys::delete_expired(tx).await?;
        tracing::info!(new_kid = %kid, retiring_kid = %current.kid, signs_from = %sign_from, "signing key rotation scheduled");
        Ok(Some(RotationReport {
            next_kid: kid,
            next_signs_from: sign_from,
            retiring_kid: Some(current.kid.clone()),
            created: true,
        }))
    }

    async fn insert(
        &self,
        tx: &mut GlobalTx,
        publish_at: OffsetDateTime,
        sign_from: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let generated = generate(self.alg)?;
        let sealed = self.keyring.seal(&generated.pkcs8, &seal_context(&generated.kid));
        signing_keys::insert(
            tx,
            &NewSigningKey {
                kid: &generated.kid,
                alg: alg_name(generated.alg),
                public_jwk: &generated.public_jwk,
                private_key_enc: &sealed,
                publish_at,
                sign_from,
            },
        )
        .await?;
        Ok(generated.kid)
    }

    /// Runs key maintenance (reload, first key, due rotations) until `shutdown`.
    pub async fn maintain_until(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.load(true).await {
                tracing::warn!(error = %e, "signing key maintenance failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

fn pick(keys: &[LoadedKey], now: OffsetDateTime) -> Option<&LoadedKey> {
    keys.iter()
        .filter(|k| k.signs_at(now))
        .max_by_key(|k| k.sign_from)
}

fn sign_with<T: Serialize>(key: &LoadedKey, typ: &str, claims: &T) -> anyhow::Result<String> {
    let mut header = Header::new(jwt_alg(key.alg));
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.kid.clone());
    Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
}

/// The published JWKS document: `{"keys": [...]}`.
pub async fn published_jwks(db: &Db) -> gatehouse_db::DbResult<serde_json::Value> {
    let mut tx = GlobalTx::begin(db).await?;
    let keys = signing_keys::published_jwks(&mut tx).await?;
    tx.commit().await?;
    Ok(serde_json::json!({ "keys": keys }))
}
