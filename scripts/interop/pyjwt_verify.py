#!/usr/bin/env python3
"""A peer verifier for jwtd's rotation test: PyJWT with PyJWKClient against jwtd's JWKS URL.

Reads one token per line on stdin; answers "ok" or "fail <reason>" per line on stdout.
Usage: pyjwt_verify.py JWKS_URL ISSUER
"""
import sys

import jwt

url, issuer = sys.argv[1], sys.argv[2]
client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=1)
for line in sys.stdin:
    token = line.strip()
    if not token:
        continue
    try:
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["ES256"], issuer=issuer,
                   options={"verify_aud": False, "require": ["exp", "iat"]})
        print("ok", flush=True)
    except Exception as e:  # any rejection is reported, not raised
        print(f"fail {type(e).__name__}: {e}", flush=True)
