#!/usr/bin/env python3
"""Generate interop vectors with PyJWT (an independent implementation) for jwtd's tests.

Run:  python3 -m venv /tmp/pyjwt && /tmp/pyjwt/bin/pip install 'pyjwt[crypto]==2.10.1' \
      && /tmp/pyjwt/bin/python scripts/interop/gen_pyjwt.py > crates/jwtd-core/tests/data/interop-pyjwt.json

The output holds, per algorithm, the public JWK (as PyJWT exports it), a token PyJWT signed,
and the claims it signed. jwtd's test `interop_pyjwt` verifies every token. Keys are fresh
each run: the checked-in file is the record of one run (see "provenance").
"""
import json
import sys
import time

import cryptography
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm, RSAPSSAlgorithm

CLAIMS = {
    "iss": "https://pyjwt.example",
    "aud": ["jwtd-tests", "other"],
    "sub": "interop-user",
    "iat": 1700000000,
    "exp": 2000000000,
    "scope": "openid email",
    "https://example.com/claims/is_verified": True,
    "nested": {"roles": ["reader", "writer"], "n": 1.5},
    "unicode": "caf\u00e9 \u2713",
}


def main():
    out = {
        "provenance": {
            "generator": "scripts/interop/gen_pyjwt.py",
            "library": f"PyJWT {jwt.__version__}",
            "crypto": f"cryptography {cryptography.__version__}",
            "python": sys.version.split()[0],
            "generated_at": int(time.time()),
        },
        "claims": CLAIMS,
        "vectors": [],
    }
    cases = []
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for alg in ["RS256", "RS384", "RS512"]:
        cases.append((alg, rsa_key, RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)))
    for alg in ["PS256", "PS384", "PS512"]:
        cases.append((alg, rsa_key, RSAPSSAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)))
    for alg, curve in [("ES256", ec.SECP256R1()), ("ES384", ec.SECP384R1()),
                       ("ES512", ec.SECP521R1()), ("ES256K", ec.SECP256K1())]:
        k = ec.generate_private_key(curve)
        cases.append((alg, k, ECAlgorithm.to_jwk(k.public_key(), as_dict=True)))
    ed = ed25519.Ed25519PrivateKey.generate()
    cases.append(("EdDSA", ed, OKPAlgorithm.to_jwk(ed.public_key(), as_dict=True)))
    for alg, n in [("HS256", 32), ("HS384", 48), ("HS512", 64)]:
        secret = bytes(range(n))
        cases.append((alg, secret, HMACAlgorithm.to_jwk(secret, as_dict=True)))
    for i, (alg, key, jwk) in enumerate(cases):
        kid = f"pyjwt-{alg.lower()}"
        jwk = dict(jwk, kid=kid, alg=alg)
        token = jwt.encode(CLAIMS, key, algorithm=alg, headers={"kid": kid})
        out["vectors"].append({"alg": alg, "jwk": jwk, "token": token})
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
