//! Revocation by jti, subject and key: what is covered, what is not, scoping by issuer, purge,
//! and revocation after a verified-token cache hit.

use jwtd_core::{
    Algorithm, KeySet, Reason, Revocation, RevocationList, SigningKey, TokenCache,
    TokenCacheConfig, Validation, Verified,
};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;

fn key(kid: &str) -> SigningKey {
    SigningKey::hmac(&[7u8; 32], Algorithm::HS256, Some(kid.into())).unwrap()
}

fn verified(kid: &str, claims: Value) -> Verified {
    let k = key(kid);
    let t = jwtd_core::sign(&k, claims.as_object().unwrap(), None).unwrap();
    let v = Validation::new(&[Algorithm::HS256]).any_audience();
    jwtd_core::verify(&KeySet::new().with(k.verifying_key()), &v, &t, NOW).unwrap()
}

fn reason(list: &RevocationList, v: &Verified) -> Option<Reason> {
    list.check(v).err().map(|e| e.reason())
}

#[test]
fn verified_exposes_the_ids_revocation_reads() {
    let v = verified(
        "k",
        json!({"iss": "https://i", "sub": "a\"bé", "jti": "j1", "iat": NOW - 5, "exp": NOW + 60}),
    );
    assert_eq!(v.iss(), Some("https://i"));
    assert_eq!(v.sub(), Some("a\"bé"), "escaped strings are unescaped");
    assert_eq!(v.jti(), Some("j1"));
    assert_eq!(v.issued_at(), Some((NOW - 5) as f64));
    let bare = verified("k", json!({"exp": NOW + 60}));
    assert_eq!(
        (bare.iss(), bare.sub(), bare.jti(), bare.issued_at()),
        (None, None, None, None)
    );
}

/// Finding 4: a numeric (or any non-string) `iss`, `sub` or `jti` would escape every
/// revocation while `sub` is still forwarded as an identity: such tokens are refused.
#[test]
fn non_string_iss_sub_and_jti_are_refused_as_malformed() {
    let k = key("k");
    let v = Validation::new(&[Algorithm::HS256]).any_audience();
    let set = KeySet::new().with(k.verifying_key());
    for (name, value) in [
        ("sub", json!(42)),
        ("sub", json!(["alice"])),
        ("jti", json!(7)),
        ("jti", json!(null)),
        ("iss", json!(1)),
        ("iss", json!({"a": 1})),
    ] {
        let mut c = json!({"exp": NOW + 60});
        c[name] = value.clone();
        let t = jwtd_core::sign(&k, c.as_object().unwrap(), None).unwrap();
        let e = jwtd_core::verify(&set, &v, &t, NOW).unwrap_err();
        assert_eq!(e.reason(), Reason::Malformed, "{name} = {value}");
        assert!(e.message().contains(name), "{}", e.message());
    }
}

/// Finding 2 (High): revocation by key applies to the key that verified, whatever the token's
/// header says: a token without `kid`, and a token naming an unknown `kid` verified by a key
/// configured without one (named by its thumbprint).
#[test]
fn key_revocation_applies_to_the_key_that_verified_not_the_header_kid() {
    let v = Validation::new(&[Algorithm::ES256]).any_audience();
    let revoked = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("old".into()));
    let other = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("new".into()));
    let set = KeySet::new()
        .with(revoked.verifying_key())
        .with(other.verifying_key());
    let claims = json!({"sub": "mallory", "exp": NOW + 60});
    let mut list = RevocationList::new();
    list.insert(&Revocation::key("old", None, None));
    // Signed by the revoked key with the kid left out: tried against every ES256 key.
    let signed = |k: &SigningKey, header: Value| {
        let payload = serde_json::to_vec(&claims).unwrap();
        jwtd_core::sign_raw(k, header.as_object().unwrap(), &payload).unwrap()
    };
    let kidless = signed(&revoked, json!({"alg": "ES256"}));
    let got = jwtd_core::verify(&set, &v, &kidless, NOW).unwrap();
    assert_eq!(got.header.kid, None);
    assert_eq!(got.key().kid(), Some("old"));
    assert_eq!(reason(&list, &got), Some(Reason::Revoked));
    // The other key's kid-less tokens are fine.
    let fine = signed(&other, json!({"alg": "ES256"}));
    assert_eq!(
        reason(&list, &jwtd_core::verify(&set, &v, &fine, NOW).unwrap()),
        None
    );

    // A key configured without a kid (a PEM) verifies a token naming an unknown kid; it is
    // revoked by its RFC 7638 thumbprint.
    let pem_key = revoked.verifying_key().with_kid(None);
    let thumb = pem_key.thumbprint().unwrap();
    let anon = KeySet::new().with(pem_key);
    let unknown = signed(&revoked, json!({"alg": "ES256", "kid": "made-up"}));
    let got = jwtd_core::verify(&anon, &v, &unknown, NOW).unwrap();
    let mut by_header = RevocationList::new();
    by_header.insert(&Revocation::key("made-up", None, None));
    assert_eq!(
        reason(&by_header, &got),
        None,
        "the header kid names no key"
    );
    let mut by_thumb = RevocationList::new();
    by_thumb.insert(&Revocation::key(&thumb, None, None));
    assert_eq!(reason(&by_thumb, &got), Some(Reason::Revoked));
    let got = jwtd_core::verify(&anon, &v, &kidless, NOW).unwrap();
    assert_eq!(reason(&by_thumb, &got), Some(Reason::Revoked));
}

#[test]
fn jti_subject_and_key_revocations_cover_exactly_their_tokens() {
    let mut list = RevocationList::new();
    let t = |kid: &str, sub: &str, jti: &str, iat: u64| {
        verified(
            kid,
            json!({"iss": "https://i", "sub": sub, "jti": jti, "iat": iat, "exp": NOW + 600}),
        )
    };
    let fine = t("k1", "alice", "j-ok", NOW - 10);
    assert_eq!(reason(&list, &fine), None, "empty list");

    list.insert(&Revocation::jti("j-bad", None, None));
    assert_eq!(
        reason(&list, &t("k1", "alice", "j-bad", NOW)),
        Some(Reason::Revoked)
    );
    assert_eq!(reason(&list, &fine), None);

    // Subject: tokens issued before the time are revoked, later ones are not; no iat = revoked.
    list.insert(&Revocation::subject("bob", None, (NOW - 100) as i64, None));
    assert_eq!(
        reason(&list, &t("k1", "bob", "j2", NOW - 101)),
        Some(Reason::Revoked)
    );
    assert_eq!(
        reason(&list, &t("k1", "bob", "j3", NOW - 100)),
        None,
        "issued at the cut-off"
    );
    assert_eq!(
        reason(&list, &t("k1", "bob", "j4", NOW - 5)),
        None,
        "re-login after"
    );
    let no_iat = verified(
        "k1",
        json!({"iss": "https://i", "sub": "bob", "exp": NOW + 60}),
    );
    assert_eq!(reason(&list, &no_iat), Some(Reason::Revoked));

    // Key.
    list.insert(&Revocation::key("k2", None, None));
    assert_eq!(
        reason(&list, &t("k2", "alice", "j5", NOW)),
        Some(Reason::Revoked)
    );
    assert_eq!(reason(&list, &fine), None);
    assert_eq!(list.len(), 3);
    assert_eq!(
        list.check(&t("k2", "alice", "j5", NOW))
            .unwrap_err()
            .message(),
        "the key that signed the token was revoked (kid)"
    );
}

#[test]
fn an_issuer_scoped_entry_covers_only_that_issuer() {
    let mut list = RevocationList::new();
    list.insert(&Revocation::jti("j", Some("https://a"), None));
    let from = |iss: &str| verified("k", json!({"iss": iss, "jti": "j", "exp": NOW + 60}));
    assert_eq!(reason(&list, &from("https://a")), Some(Reason::Revoked));
    assert_eq!(reason(&list, &from("https://b")), None);
    let no_iss = verified("k", json!({"jti": "j", "exp": NOW + 60}));
    assert_eq!(reason(&list, &no_iss), None);
    // A second, wider entry for the same value.
    list.insert(&Revocation::jti("j", None, None));
    assert_eq!(reason(&list, &from("https://b")), Some(Reason::Revoked));
    assert_eq!(list.len(), 2);
}

#[test]
fn inserting_again_widens_and_purge_drops_only_expired_entries() {
    let mut list = RevocationList::new();
    let now = NOW as i64;
    assert!(list.insert(&Revocation::subject("s", None, now - 50, Some(now + 10))));
    assert!(!list.insert(&Revocation::subject("s", None, now - 60, Some(now + 5))));
    assert!(list.insert(&Revocation::subject("s", None, now - 20, Some(now + 30))));
    assert_eq!(list.len(), 1);
    assert!(list.covers(&Revocation::subject("s", None, now - 60, Some(now + 5))));
    assert!(!list.covers(&Revocation::subject("s", None, now - 10, Some(now + 5))));
    assert!(!list.covers(&Revocation::subject("s", None, now - 60, None)));
    assert!(!list.covers(&Revocation::subject(
        "s",
        Some("https://i"),
        now - 60,
        Some(now)
    )));
    let t = verified("k", json!({"sub": "s", "iat": NOW - 30, "exp": NOW + 60}));
    assert_eq!(
        reason(&list, &t),
        Some(Reason::Revoked),
        "widened to now-20"
    );
    list.insert(&Revocation::jti("forever", None, None));
    list.insert(&Revocation::key("old", None, Some(now + 1)));
    assert_eq!(list.purge(now), 0);
    assert_eq!(list.purge(now + 10), 1, "the key entry");
    assert_eq!(list.purge(now + 30), 1, "the subject entry");
    assert_eq!(list.len(), 1);
    assert_eq!(reason(&list, &t), None);
    let forever = verified("k", json!({"jti": "forever", "exp": NOW + 60}));
    assert_eq!(reason(&list, &forever), Some(Reason::Revoked));
}

#[test]
fn a_cached_verification_is_still_refused_once_revoked() {
    let k = key("k");
    let keys = KeySet::new().with(k.verifying_key());
    let v = Validation::new(&[Algorithm::HS256]).any_audience();
    let c = json!({"sub": "u", "jti": "j9", "exp": NOW + 60});
    let token = jwtd_core::sign(&k, c.as_object().unwrap(), None).unwrap();
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let mut list = RevocationList::new();
    let first = cache.verify([1, 0], &keys, &v, &token, NOW).unwrap();
    assert!(list.check(&first).is_ok());
    list.insert(&Revocation::jti("j9", None, None));
    let hit = cache.verify([1, 0], &keys, &v, &token, NOW + 1).unwrap();
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(list.check(&hit).unwrap_err().reason(), Reason::Revoked);
}
