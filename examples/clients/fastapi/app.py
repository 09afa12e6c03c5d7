"""A FastAPI app that asks jwtd (`GET /v1/verify`) about every protected request's token.

    pip install fastapi==0.165.0 uvicorn==0.54.0
    JWTD_URL=http://127.0.0.1:8080 PORT=8000 python app.py

The request's Authorization header is forwarded as it is, so jwtd applies its own rules.
Fails closed: when jwtd cannot answer, the answer is 503.
"""

import json
import os
import urllib.error
import urllib.request

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

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


class Refused(Exception):
    """jwtd's refusal, or its absence, as the answer to send."""

    def __init__(self, response):
        self.response = response


def jwt(request: Request) -> dict:
    """A dependency: jwtd's answer {"issuer", "iss", "header", "claims"} for the request's token.

    A plain `def`: FastAPI runs it in its thread pool, so the blocking call holds no event loop.
    """
    status, challenge, body = verify(request.headers.get("authorization"))
    if status == 200:
        return body
    if status in (400, 401, 403):
        # jwtd's {"error", "reason", "message"} and its RFC 6750 challenge, passed on.
        headers = {"WWW-Authenticate": challenge} if challenge else {}
        raise Refused(JSONResponse(body, status_code=status, headers=headers))
    unavailable = {"error": "temporarily_unavailable", "reason": "jwtd_unavailable"}
    raise Refused(JSONResponse(unavailable, status_code=503, headers={"Retry-After": "5"}))


app = FastAPI()


@app.exception_handler(Refused)
async def refused(request: Request, e: Refused):
    return e.response


@app.get("/whoami")
def whoami(token: dict = Depends(jwt)):
    return {"sub": token["claims"].get("sub"), "iss": token["iss"]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
