"""A Flask app that asks jwtd (`GET /v1/verify`) about every protected request's token.

    pip install flask==3.1.3
    JWTD_URL=http://127.0.0.1:8080 PORT=5000 python app.py

The request's Authorization header is forwarded as it is, so jwtd applies its own rules.
Fails closed: when jwtd cannot answer, the answer is 503.
"""

import functools
import json
import os
import urllib.error
import urllib.request

from flask import Flask, g, jsonify, request

JWTD_URL = os.environ.get("JWTD_URL", "http://127.0.0.1:8080")


def verify(authorization, timeout=2.0):
    """jwtd's (status, WWW-Authenticate, JSON body); status 503 when jwtd cannot answer."""
    headers = {"Authorization": authorization} if authorization is not None else {}
    req = urllib.request.Request(f"{JWTD_URL}/v1/verify", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, None, json.load(r)
    except urllib.error.HTTPError as e:
        with e:
            try:
                return e.code, e.headers.get("WWW-Authenticate"), json.load(e)
            except ValueError:
                return 503, None, None
    except (OSError, ValueError):  # refused, timed out, or not JSON
        return 503, None, None


def require_jwt(view):
    """Runs `view` with `g.jwt` = jwtd's answer {"issuer", "iss", "header", "claims"}."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        status, challenge, body = verify(request.headers.get("Authorization"))
        if status == 200:
            g.jwt = body
            return view(*args, **kwargs)
        if status in (400, 401, 403):
            # jwtd's {"error", "reason", "message"} and its RFC 6750 challenge, passed on.
            headers = {"WWW-Authenticate": challenge} if challenge else {}
            return jsonify(body), status, headers
        unavailable = {"error": "temporarily_unavailable", "reason": "jwtd_unavailable"}
        return jsonify(unavailable), 503, {"Retry-After": "5"}

    return wrapper


app = Flask(__name__)


@app.get("/whoami")
@require_jwt
def whoami():
    return jsonify(sub=g.jwt["claims"].get("sub"), iss=g.jwt["iss"])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
