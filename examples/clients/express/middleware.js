// Express middleware: asks jwtd (`GET /v1/verify`) about the request's token before the route
// runs. The request's Authorization header is forwarded as it is, so jwtd applies its own rules
// (scheme case, several tokens: 400). Fails closed: when jwtd cannot answer, the answer is 503.
'use strict';

function jwtdAuth({ url = process.env.JWTD_URL || 'http://127.0.0.1:8080', timeoutMs = 2000 } = {}) {
  return async function verifyWithJwtd(req, res, next) {
    const headers = {};
    if (req.headers.authorization !== undefined) headers.authorization = req.headers.authorization;
    let status;
    let answer;
    let challenge;
    try {
      const r = await fetch(`${url}/v1/verify`, { headers, signal: AbortSignal.timeout(timeoutMs) });
      status = r.status;
      challenge = r.headers.get('www-authenticate');
      answer = await r.json();
    } catch (e) {
      status = 503; // refused, timed out, or not JSON: jwtd cannot vouch for anyone
    }
    if (status === 200) {
      // {"issuer": configured issuer name, "iss": the token's iss, "header": {...}, "claims": {...}}
      req.jwt = answer;
      return next();
    }
    if (status === 400 || status === 401 || status === 403) {
      // jwtd's {"error", "reason", "message"} and its RFC 6750 challenge, passed on.
      if (challenge) res.set('WWW-Authenticate', challenge);
      return res.status(status).json(answer);
    }
    res.set('Retry-After', '5');
    return res.status(503).json({ error: 'temporarily_unavailable', reason: 'jwtd_unavailable' });
  };
}

module.exports = { jwtdAuth };
