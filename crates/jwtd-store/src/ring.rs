//! The key ring: generation, rotation states, and the in-memory views the service reads.

use crate::{Kek, KeyState, KeyStore, StoreError, StoredKey};
use jwtd_core::{Algorithm, Jwk, Jwks, KeySet, SigningKey};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Rotation policy.
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// Algorithm of new keys (RS256, PS256, ES256 or EdDSA; HS256 for internal use, never
    /// published).
    pub alg: Algorithm,
    /// RSA modulus size for RS*/PS* keys (2048 or 3072).
    pub rsa_bits: usize,
    /// How long a new key is published before it signs, so verifiers' caches learn it first
    /// (default 1 h; keep it above the JWKS `Cache-Control` max-age).
    pub publish_lead: Duration,
    /// The longest token lifetime the issuer mints (default 1 h).
    pub max_token_ttl: Duration,
    /// Extra time a retiring key stays published after the last token it signed expired
    /// (default 10 min).
    pub grace: Duration,
    /// Scheduled rotation: a new key is started when the active one is this old (default 90 days).
    pub rotate_every: Option<Duration>,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            alg: Algorithm::ES256,
            rsa_bits: 2048,
            publish_lead: Duration::from_secs(3600),
            max_token_ttl: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
            rotate_every: Some(Duration::from_secs(90 * 86_400)),
        }
    }
}

/// Something the ring did, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingEvent {
    /// A key was generated (pending, or active when the ring had none).
    Created(String, KeyState),
    /// A pending key started signing.
    Activated(String),
    /// A key stopped signing; published until the time given.
    Retiring(String, i64),
    /// A key left the JWKS.
    Retired(String),
    /// A key was deleted (emergency).
    Removed(String),
    /// A pending key started signing before its publish lead ended (the signing key was
    /// retired or removed); the seconds of lead it skipped: verifiers that cached the JWKS
    /// before it was published may refuse its tokens until they fetch the keys again.
    ActivatedEarly(String, i64),
    /// A new key is of another algorithm than the signing key (`from`, `to`): verifiers
    /// pinned to the old algorithm will refuse the tokens it signs.
    AlgorithmChanged(Algorithm, Algorithm),
}

/// What the service reads on every request, rebuilt after each change.
#[derive(Debug)]
struct View {
    keys: Vec<StoredKey>,
    signer: Option<Arc<SigningKey>>,
    verify: Arc<KeySet>,
    jwks: Arc<str>,
    /// The verify set's fingerprint and the published keys' states: what the generation tracks.
    fingerprint: [u8; 32],
    /// Published with the keys it belongs to, in the same view (never ahead of or behind them).
    generation: u64,
}

/// A key ring over a [`KeyStore`].
#[derive(Debug)]
pub struct KeyRing<S: KeyStore> {
    store: S,
    kek: Kek,
    cfg: RingConfig,
    view: RwLock<Arc<View>>,
    changes: tokio::sync::Mutex<()>,
}

fn secs(d: Duration) -> i64 {
    d.as_secs() as i64
}

impl<S: KeyStore> KeyRing<S> {
    /// Opens the ring: every published key is decrypted now, so a tampered or swapped row fails
    /// at start, loudly, instead of at first use.
    pub async fn open(store: S, kek: Kek, cfg: RingConfig) -> Result<Self, StoreError> {
        let ring = KeyRing {
            store,
            kek,
            cfg,
            view: RwLock::new(Arc::new(View {
                keys: Vec::new(),
                signer: None,
                verify: Arc::new(KeySet::new()),
                jwks: Arc::from("{\"keys\":[]}"),
                fingerprint: [0; 32],
                generation: 0,
            })),
            changes: tokio::sync::Mutex::new(()),
        };
        ring.refresh().await?;
        Ok(ring)
    }

    /// The configuration.
    pub fn config(&self) -> &RingConfig {
        &self.cfg
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let keys = self.store.list().await?;
        let mut signer = None;
        let mut verify = KeySet::new();
        let mut public = Vec::new();
        for k in keys.iter().filter(|k| k.state.published()) {
            let alg: Algorithm = k
                .alg
                .parse()
                .map_err(|e| StoreError(format!("key {:?}: {e}", k.kid)))?;
            let plain = self.kek.open(&k.kid, &k.alg, &k.nonce, &k.sealed)?;
            let bad = |e: jwtd_core::KeyError| StoreError(format!("key {:?}: {e}", k.kid));
            let sk = if alg.family() == jwtd_core::Family::Hmac {
                // HS256 keys are for internal use: the secret itself is sealed, nothing is
                // published, and the stored "public" part is empty.
                SigningKey::hmac(&plain, alg, Some(k.kid.clone())).map_err(bad)?
            } else {
                let sk = SigningKey::from_pkcs8_der(&plain, Some(alg), Some(k.kid.clone()))
                    .map_err(bad)?;
                let jwk = sk.public_jwk().expect("asymmetric");
                let stored: Jwk = Jwk::from_json(k.public_jwk.as_bytes())
                    .map_err(|e| StoreError(format!("key {:?}: bad public JWK: {e}", k.kid)))?;
                if stored.thumbprint() != jwk.thumbprint() {
                    return Err(StoreError(format!(
                        "key {:?}: the stored public key does not match its private key; the row was altered",
                        k.kid
                    )));
                }
                public.push(jwk);
                sk
            };
            verify.push(sk.verifying_key());
            if k.state == KeyState::Active {
                signer = Some(Arc::new(sk));
            }
        }
        let jwks = serde_json::to_string(&Jwks::from_keys(public))
            .map_err(|e| StoreError(e.to_string()))?;
        // The generation moves exactly when the verify set (every published key, HS256 ones
        // included: they are never in the JWKS) or a published key's state changes.
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&verify.fingerprint());
        let mut states: Vec<(&str, &str)> = keys
            .iter()
            .filter(|k| k.state.published())
            .map(|k| (k.kid.as_str(), k.state.as_str()))
            .collect();
        states.sort_unstable();
        for (kid, state) in states {
            ctx.update(&(kid.len() as u64).to_be_bytes());
            ctx.update(kid.as_bytes());
            ctx.update(state.as_bytes());
            ctx.update(b"\0");
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(ctx.finish().as_ref());
        let mut view = self.view.write().expect("lock");
        let generation = if view.fingerprint == fingerprint {
            view.generation
        } else {
            view.generation + 1
        };
        // Keys and generation in one view, swapped in one store.
        *view = Arc::new(View {
            keys,
            signer,
            verify: Arc::new(verify),
            jwks: Arc::from(jwks),
            fingerprint,
            generation,
        });
        Ok(())
    }

    fn view(&self) -> Arc<View> {
        self.view.read().expect("lock").clone()
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> Option<Arc<SigningKey>> {
        self.view().signer.clone()
    }

    /// Every published key, for verifying the issuer's own tokens.
    pub fn verify_keys(&self) -> Arc<KeySet> {
        self.view().verify.clone()
    }

    /// Increases whenever the set of published keys or their states change (for caches of
    /// verified tokens). To use with the keys, take both from [`KeyRing::verify_view`].
    pub fn generation(&self) -> u64 {
        self.view().generation
    }

    /// Every published key and the generation they belong to, read from one view: a request
    /// that caches an answer verified with these keys caches it under this generation.
    pub fn verify_view(&self) -> (Arc<KeySet>, u64) {
        let v = self.view();
        (v.verify.clone(), v.generation)
    }

    /// The public JWKS document.
    pub fn jwks_json(&self) -> Arc<str> {
        self.view().jwks.clone()
    }

    /// Every key with its state (no private material).
    pub fn keys(&self) -> Vec<StoredKey> {
        self.view().keys.clone()
    }

    async fn generate(
        &self,
        state: KeyState,
        now: i64,
        activate_at: Option<i64>,
    ) -> Result<String, StoreError> {
        let alg = self.cfg.alg;
        let fail = |e: jwtd_core::KeyError| StoreError(e.to_string());
        let (kid, plain, public) = if alg.family() == jwtd_core::Family::Hmac {
            // Internal HS256: a random secret and a random kid (a thumbprint of a secret would
            // help guess it); nothing to publish.
            let sk = SigningKey::generate(alg).map_err(fail)?;
            let mut id = [0u8; 16];
            jwtd_core::fill_random(&mut id).map_err(|e| StoreError(e.to_string()))?;
            let jwk = sk.to_private_jwk().map_err(fail)?;
            let secret = jwtd_core::b64::decode(jwk.k.as_deref().unwrap_or_default().as_bytes())
                .ok_or_else(|| StoreError("HMAC secret export failed".into()))?;
            (
                format!("hs-{}", jwtd_core::b64::encode(id)),
                zeroize::Zeroizing::new(secret),
                "{}".to_owned(),
            )
        } else {
            let sk = if alg.family() == jwtd_core::Family::Rsa {
                SigningKey::generate_rsa(alg, self.cfg.rsa_bits)
            } else {
                SigningKey::generate(alg)
            }
            .map_err(fail)?
            .with_default_kid();
            let kid = sk.kid().expect("thumbprint kid").to_owned();
            let der = sk.to_pkcs8_der().map_err(fail)?;
            let public = serde_json::to_string(&sk.public_jwk().expect("asymmetric"))
                .map_err(|e| StoreError(e.to_string()))?;
            (kid, der, public)
        };
        let (nonce, sealed) = self.kek.seal(&kid, alg.as_str(), &plain)?;
        self.store
            .insert(&StoredKey {
                kid: kid.clone(),
                alg: alg.as_str().into(),
                state,
                created_at: now,
                activate_at,
                retire_after: None,
                public_jwk: public,
                nonce,
                sealed,
            })
            .await?;
        Ok(kid)
    }

    /// Makes sure a key signs: on first start, creates one (active at once: no verifier can
    /// have cached an older set yet).
    pub async fn ensure_active(&self, now: i64) -> Result<Vec<RingEvent>, StoreError> {
        let _g = self.changes.lock().await;
        let lock = self.store.lock_changes().await?;
        let keys = self.store.list().await?;
        // A pending key waits for its time; tick() will promote it.
        let events = if keys
            .iter()
            .any(|k| matches!(k.state, KeyState::Active | KeyState::Pending))
        {
            Vec::new()
        } else {
            let kid = self.generate(KeyState::Active, now, Some(now)).await?;
            vec![RingEvent::Created(kid, KeyState::Active)]
        };
        lock.release().await;
        self.refresh().await?;
        Ok(events)
    }

    /// Re-reads the store (another instance changed the ring).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _g = self.changes.lock().await;
        self.refresh().await
    }

    /// A new pending key of the configured algorithm, due to sign after the publish lead;
    /// preceded by [`RingEvent::AlgorithmChanged`] when the signing key is of another one.
    async fn generate_pending(
        &self,
        keys: &[StoredKey],
        now: i64,
    ) -> Result<Vec<RingEvent>, StoreError> {
        let mut events = Vec::new();
        let signing = keys
            .iter()
            .find(|k| k.state == KeyState::Active)
            .and_then(|k| k.alg.parse::<Algorithm>().ok());
        if let Some(from) = signing.filter(|a| *a != self.cfg.alg) {
            events.push(RingEvent::AlgorithmChanged(from, self.cfg.alg));
        }
        let activate_at = now + secs(self.cfg.publish_lead);
        let kid = self
            .generate(KeyState::Pending, now, Some(activate_at))
            .await?;
        events.push(RingEvent::Created(kid, KeyState::Pending));
        Ok(events)
    }

    /// Starts a rotation now: a new pending key of the configured algorithm, active after the
    /// publish lead.
    pub async fn rotate(&self, now: i64) -> Result<Vec<RingEvent>, StoreError> {
        let _g = self.changes.lock().await;
        let lock = self.store.lock_changes().await?;
        let events = match self.store.list().await {
            Ok(keys) => self.generate_pending(&keys, now).await,
            Err(e) => Err(e),
        };
        lock.release().await;
        let events = events?;
        self.refresh().await?;
        Ok(events)
    }

    /// Stops a key from signing; it stays published until its tokens expired plus the grace.
    ///
    /// The ring is never left without a signing key: retiring the active key needs a pending
    /// successor, which then signs at once. When the successor's publish lead has not ended,
    /// this is refused unless `promote_early` (verifiers that cached the JWKS before the
    /// successor was published may refuse its tokens until they refetch); without a
    /// successor it is refused (rotate first). A retired or retiring key is refused too.
    pub async fn retire(
        &self,
        kid: &str,
        now: i64,
        promote_early: bool,
    ) -> Result<Vec<RingEvent>, StoreError> {
        let _g = self.changes.lock().await;
        let lock = self.store.lock_changes().await?;
        let events = self.retire_locked(kid, now, promote_early).await;
        lock.release().await;
        let events = events?;
        self.refresh().await?;
        Ok(events)
    }

    async fn retire_locked(
        &self,
        kid: &str,
        now: i64,
        promote_early: bool,
    ) -> Result<Vec<RingEvent>, StoreError> {
        let keys = self.store.list().await?;
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| StoreError(format!("no key {kid:?}")))?;
        let mut events = Vec::new();
        match key.state {
            KeyState::Retiring | KeyState::Retired => {
                return Err(StoreError(format!(
                    "key {kid:?} is already {} (published until {})",
                    key.state.as_str(),
                    key.retire_after.map_or("-".into(), |t| t.to_string())
                )))
            }
            KeyState::Pending => {}
            KeyState::Active => {
                let next = keys
                    .iter()
                    .filter(|k| k.state == KeyState::Pending)
                    .max_by_key(|k| k.created_at);
                let Some(next) = next else {
                    return Err(StoreError(format!(
                        "key {kid:?} is the signing key and no successor is published: retiring it \
                         would leave the issuer unable to sign. Run `jwtd keys rotate` first; the \
                         new key takes over after its publish lead and retires this one by itself"
                    )));
                };
                let due = next.activate_at.unwrap_or(now);
                if due > now && !promote_early {
                    return Err(StoreError(format!(
                        "key {kid:?} is the signing key; its successor {:?} takes over at {due} \
                         (in {}s, after its publish lead) and retires it then. To make the \
                         successor sign now, pass --promote: it has been published for {}s only, so \
                         verifiers that cached the JWKS before may refuse its tokens until they \
                         fetch the keys again",
                        next.kid,
                        due - now,
                        now - next.created_at
                    )));
                }
                self.store
                    .update(&next.kid, KeyState::Active, Some(now), None)
                    .await?;
                events.push(if due > now {
                    RingEvent::ActivatedEarly(next.kid.clone(), due - now)
                } else {
                    RingEvent::Activated(next.kid.clone())
                });
            }
        }
        let until = now + secs(self.cfg.max_token_ttl) + secs(self.cfg.grace);
        self.store
            .update(kid, KeyState::Retiring, None, Some(until))
            .await?;
        events.push(RingEvent::Retiring(kid.into(), until));
        Ok(events)
    }

    /// Emergency removal of a compromised key: deleted and unpublished at once (tokens it
    /// signed stop verifying). When it was the signing key, the newest pending key (already
    /// published) signs immediately, or else a new key.
    pub async fn remove(&self, kid: &str, now: i64) -> Result<Vec<RingEvent>, StoreError> {
        let _g = self.changes.lock().await;
        let lock = self.store.lock_changes().await?;
        let was_active = self
            .store
            .list()
            .await?
            .iter()
            .any(|k| k.kid == kid && k.state == KeyState::Active);
        if !self.store.delete(kid).await? {
            return Err(StoreError(format!("no key {kid:?}")));
        }
        let mut events = vec![RingEvent::Removed(kid.into())];
        if was_active {
            // A pending key is already published: it takes over at once. Otherwise a new key.
            let pending = self
                .store
                .list()
                .await?
                .into_iter()
                .filter(|k| k.state == KeyState::Pending)
                .max_by_key(|k| k.created_at);
            match pending {
                Some(p) => {
                    self.store
                        .update(&p.kid, KeyState::Active, Some(now), None)
                        .await?;
                    let left = p.activate_at.map_or(0, |t| t - now);
                    events.push(if left > 0 {
                        RingEvent::ActivatedEarly(p.kid, left)
                    } else {
                        RingEvent::Activated(p.kid)
                    });
                }
                None => {
                    let new = self.generate(KeyState::Active, now, Some(now)).await?;
                    events.push(RingEvent::Created(new, KeyState::Active));
                }
            }
        }
        lock.release().await;
        self.refresh().await?;
        Ok(events)
    }

    /// Advances the schedule to `now`: pending keys whose time came start signing (the previous
    /// signer starts retiring; with no signer at all, the newest pending key signs at once),
    /// retiring keys past their time are retired, and a scheduled
    /// rotation starts when the signing key is old enough. Re-reads the store, so changes made
    /// by `jwtd keys` commands are picked up.
    pub async fn tick(&self, now: i64) -> Result<Vec<RingEvent>, StoreError> {
        let _g = self.changes.lock().await;
        // Exactly one instance advances the schedule at a time, and it decides on what the
        // store holds now (another instance may just have rotated).
        let lock = self.store.lock_changes().await?;
        let mut events = Vec::new();
        let keys = self.store.list().await?;
        let due = keys
            .iter()
            .filter(|k| k.state == KeyState::Pending && k.activate_at.is_some_and(|t| t <= now))
            .max_by_key(|k| k.activate_at);
        // A ring without a signing key (left so by an older jwtd, or by hand) never waits for
        // a lead to end: its newest pending key signs at once.
        let orphaned = if due.is_none() && !keys.iter().any(|k| k.state == KeyState::Active) {
            keys.iter()
                .filter(|k| k.state == KeyState::Pending)
                .max_by_key(|k| k.created_at)
        } else {
            None
        };
        if let Some(next) = orphaned {
            self.store
                .update(&next.kid, KeyState::Active, Some(now), None)
                .await?;
            let left = next.activate_at.map_or(0, |t| t - now);
            events.push(RingEvent::ActivatedEarly(next.kid.clone(), left));
        }
        if let Some(next) = due {
            let until = now + secs(self.cfg.max_token_ttl) + secs(self.cfg.grace);
            for old in keys.iter().filter(|k| k.state == KeyState::Active) {
                self.store
                    .update(&old.kid, KeyState::Retiring, None, Some(until))
                    .await?;
                events.push(RingEvent::Retiring(old.kid.clone(), until));
            }
            self.store
                .update(&next.kid, KeyState::Active, Some(now), None)
                .await?;
            events.push(RingEvent::Activated(next.kid.clone()));
        }
        for k in keys.iter().filter(|k| k.state == KeyState::Retiring) {
            if k.retire_after.is_some_and(|t| t <= now) {
                self.store
                    .update(&k.kid, KeyState::Retired, None, k.retire_after)
                    .await?;
                events.push(RingEvent::Retired(k.kid.clone()));
            }
        }
        if let Some(every) = self.cfg.rotate_every {
            let active_since = keys
                .iter()
                .filter(|k| k.state == KeyState::Active)
                .filter_map(|k| k.activate_at.or(Some(k.created_at)))
                .max();
            let pending = keys.iter().any(|k| k.state == KeyState::Pending);
            if !pending && due.is_none() && active_since.is_some_and(|t| now - t >= secs(every)) {
                events.extend(self.generate_pending(&keys, now).await?);
            }
        }
        lock.release().await;
        self.refresh().await?;
        Ok(events)
    }
}
