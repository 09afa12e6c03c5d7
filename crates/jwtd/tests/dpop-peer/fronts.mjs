// DPoP-bound access tokens and proofs made by panva's `jose` (an implementation independent of
// jwtd) for crates/jwtd/tests/integration/dpop_fronts.rs, which runs `jwtd serve` with `/auth`,
// the proxy and ext_authz. The test copies this file into target/dpop-peer (where
// scripts/ensure-deps installs jose) and runs it with one argument, a JSON object
// {front: {method, htu}}; it prints one JSON document on stdout:
// {jwks, token, unbound, cases: {front: [{name, proof, expect}]}}, `expect` being "ok" or the
// reason code jwtd must refuse with.
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT, generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';

const fronts = JSON.parse(process.argv[2]);
const now = Math.floor(Date.now() / 1000);
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const ath = (token) => b64u(createHash('sha256').update(token, 'ascii').digest());

const issuer = await generateKeyPair('ES256', { extractable: true });
const issuerJwk = { ...(await exportJWK(issuer.publicKey)), alg: 'ES256', kid: 'as-1', use: 'sig' };
const accessToken = (extra) =>
  new SignJWT({ sub: 'alice', ...extra })
    .setProtectedHeader({ alg: 'ES256', kid: 'as-1', typ: 'at+jwt' })
    .setIssuer('https://as.example')
    .setAudience('api')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(issuer.privateKey);

const client = await generateKeyPair('ES256', { extractable: true });
const clientJwk = await exportJWK(client.publicKey);
const jkt = await calculateJwkThumbprint(clientJwk, 'sha256');
const other = await generateKeyPair('ES256', { extractable: true });
const otherJwk = await exportJWK(other.publicKey);

const token = await accessToken({ cnf: { jkt } });
const unbound = await accessToken({});

const proof = (front, over = {}, key = { privateKey: client.privateKey, jwk: clientJwk }) =>
  new SignJWT({
    jti: b64u(randomBytes(16)),
    htm: front.method,
    htu: front.htu,
    iat: now,
    ath: ath(token),
    ...over,
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
    .sign(key.privateKey);

const cases = {};
for (const [name, front] of Object.entries(fronts)) {
  cases[name] = [
    { name: 'valid', proof: await proof(front), expect: 'ok' },
    { name: 'wrong htm', proof: await proof(front, { htm: front.method === 'GET' ? 'POST' : 'GET' }), expect: 'dpop_htm_mismatch' },
    { name: 'htu with a query', proof: await proof(front, { htu: `${front.htu}?page=2` }), expect: 'dpop_htu_invalid' },
    { name: 'stale iat', proof: await proof(front, { iat: now - 3600 }), expect: 'dpop_stale' },
    { name: 'wrong ath', proof: await proof(front, { ath: ath(unbound) }), expect: 'dpop_ath_mismatch' },
    {
      name: 'wrong jkt (another key)',
      proof: await proof(front, {}, { privateKey: other.privateKey, jwk: otherJwk }),
      expect: 'dpop_jkt_mismatch',
    },
  ];
}

process.stdout.write(JSON.stringify({ jwks: { keys: [issuerJwk] }, token, unbound, jkt, cases }) + '\n');
