// DPoP-bound access tokens and proofs made by panva's `jose` for
// crates/jwtd/tests/integration/dpop_shared.rs (the replay table shared by several `jwtd serve`
// processes). One argument, a JSON object {method, htu, n, m}; prints one JSON document:
// {jwks, token, jkt, proofs: [n proofs], other: {token, jkt, proofs: [m proofs]}}: two client
// keys, each with its bound token and proofs of distinct `jti`s for `method` and `htu`.
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT, generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';

const arg = JSON.parse(process.argv[2]);
const now = Math.floor(Date.now() / 1000);
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const ath = (token) => b64u(createHash('sha256').update(token, 'ascii').digest());

const issuer = await generateKeyPair('ES256', { extractable: true });
const issuerJwk = { ...(await exportJWK(issuer.publicKey)), alg: 'ES256', kid: 'as-1', use: 'sig' };

const client = async (n) => {
  const key = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(key.publicKey);
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  const token = await new SignJWT({ sub: 'alice', cnf: { jkt } })
    .setProtectedHeader({ alg: 'ES256', kid: 'as-1', typ: 'at+jwt' })
    .setIssuer('https://as.example')
    .setAudience('api')
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(issuer.privateKey);
  const proofs = [];
  for (let i = 0; i < n; i++) {
    proofs.push(
      await new SignJWT({ jti: b64u(randomBytes(16)), htm: arg.method, htu: arg.htu, iat: now, ath: ath(token) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(key.privateKey),
    );
  }
  return { token, jkt, proofs };
};

const first = await client(arg.n);
const other = await client(arg.m);
process.stdout.write(JSON.stringify({ jwks: { keys: [issuerJwk] }, ...first, other }));
