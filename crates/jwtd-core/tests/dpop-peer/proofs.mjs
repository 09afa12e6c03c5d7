// DPoP proofs, RFC 7638 thumbprints and DPoP-bound access tokens made by panva's `jose`, an
// implementation independent of jwtd, for crates/jwtd-core/tests/integration/dpop_peer.rs.
// Installed (with the package-lock.json beside it) into target/dpop-peer by scripts/ensure-deps;
// the test copies this file there and runs it. Prints one JSON document on stdout:
// {now, method, uri, token, issuer_jwk, cases: [{name, proof, expect, jkt?, bound?, nonce?}]}.
// `expect` is "ok" or the reason code jwtd must answer with; `jkt` is jose's thumbprint of
// the proof key and `bound` whether the access token's cnf.jkt names it.
import { createHash, randomBytes } from 'node:crypto';
import {
  SignJWT,
  UnsecuredJWT,
  generateKeyPair,
  exportJWK,
  calculateJwkThumbprint,
} from 'jose';

const now = Math.floor(Date.now() / 1000);
const method = 'GET';
const uri = 'https://API.example:443/v1/orders/7?expand=items';
const htu = 'https://api.example/v1/orders/7';

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const ath = (token) => b64u(createHash('sha256').update(token, 'ascii').digest());

// The access-token issuer, and the access token (bound to the ES256 proof key below).
const issuer = await generateKeyPair('ES256', { extractable: true });
const issuerJwk = { ...(await exportJWK(issuer.publicKey)), alg: 'ES256', kid: 'as-1' };
const boundToken = (jkt) =>
  new SignJWT({ sub: 'alice', cnf: { jkt } })
    .setProtectedHeader({ alg: 'ES256', kid: 'as-1', typ: 'at+jwt' })
    .setIssuer('https://as.example')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(issuer.privateKey);

const keys = {};
for (const alg of ['ES256', 'RS256', 'PS256', 'EdDSA']) {
  const pair = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const jwk = await exportJWK(pair.publicKey);
  keys[alg] = { ...pair, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

const es = keys.ES256;
const token = await boundToken(es.jkt);

const claims = (over = {}) => ({
  jti: b64u(randomBytes(16)),
  htm: method,
  htu,
  iat: now,
  ath: ath(token),
  ...over,
});

const proof = (key, over = {}, header = {}) =>
  new SignJWT(claims(over))
    .setProtectedHeader({ alg: key.alg ?? 'ES256', typ: 'dpop+jwt', jwk: key.jwk, ...header })
    .sign(key.privateKey);

const other = await generateKeyPair('ES256', { extractable: true });
const otherJwk = await exportJWK(other.publicKey);

const cases = [];
for (const [alg, key] of Object.entries(keys)) {
  cases.push({
    name: `valid ${alg}`,
    proof: await proof({ ...key, alg }),
    expect: 'ok',
    jkt: key.jkt,
    bound: key === es,
  });
}
cases.push({
  name: 'valid with nonce',
  proof: await proof(es, { nonce: 'server-nonce-1' }),
  expect: 'ok',
  jkt: es.jkt,
  bound: true,
  nonce: 'server-nonce-1',
});
cases.push({ name: 'wrong htm', proof: await proof(es, { htm: 'POST' }), expect: 'dpop_htm_mismatch' });
cases.push({ name: 'htm lower case', proof: await proof(es, { htm: 'get' }), expect: 'dpop_htm_mismatch' });
cases.push({
  name: 'htu with a query',
  proof: await proof(es, { htu: `${htu}?expand=items` }),
  expect: 'dpop_htu_invalid',
});
cases.push({
  name: 'htu of another path',
  proof: await proof(es, { htu: 'https://api.example/v1/orders/8' }),
  expect: 'dpop_htu_mismatch',
});
cases.push({ name: 'stale iat', proof: await proof(es, { iat: now - 3600 }), expect: 'dpop_stale' });
cases.push({ name: 'iat in the future', proof: await proof(es, { iat: now + 3600 }), expect: 'dpop_issued_in_future' });
cases.push({ name: 'wrong ath', proof: await proof(es, { ath: ath(`${token}x`) }), expect: 'dpop_ath_mismatch' });
cases.push({
  name: 'private key in jwk',
  proof: await proof({ ...es, jwk: await exportJWK(es.privateKey) }),
  expect: 'dpop_private_key',
});
cases.push({
  name: 'alg none',
  proof: new UnsecuredJWT(claims()).encode(),
  expect: 'dpop_algorithm_not_allowed',
});
cases.push({
  name: 'HS256 proof',
  proof: await new SignJWT(claims())
    .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt' })
    .sign(randomBytes(32)),
  expect: 'dpop_algorithm_not_allowed',
});
cases.push({
  name: 'typ missing',
  proof: await new SignJWT(claims())
    .setProtectedHeader({ alg: 'ES256', jwk: es.jwk })
    .sign(es.privateKey),
  expect: 'dpop_wrong_type',
});
cases.push({
  name: 'signed by another key',
  proof: await proof({ privateKey: other.privateKey, jwk: es.jwk }),
  expect: 'dpop_bad_signature',
});
// A valid proof whose key is not the one the token is bound to: jwtd's binding check refuses it.
cases.push({
  name: 'token bound to another key',
  proof: await proof({ privateKey: other.privateKey, jwk: otherJwk }),
  expect: 'dpop_jkt_mismatch',
  jkt: await calculateJwkThumbprint(otherJwk, 'sha256'),
  bound: false,
});

process.stdout.write(
  JSON.stringify({ now, method, uri, token, issuer_jwk: issuerJwk, cases }) + '\n',
);
