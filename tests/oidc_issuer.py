"""An OIDC issuer the tests run themselves, with their own keys: a loopback HTTP server that serves
/.well-known/openid-configuration and a JWKS, and signs JWTs with PyJWT. Keys can be rotated (the JWKS then
publishes only the new one) and every fetch is counted, so a test can see the cache and the refetch on an unknown
kid. A plain helper: it registers no fixtures and imports no conftest."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
        jwk["alg"] = "ES256"
    else:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        jwk["alg"] = "RS256"
    jwk.update({"kid": kid, "use": "sig"})
    return jwk


class OidcIssuer:
    def __init__(self, *, audience: str = "aperture-dicomweb") -> None:
        self.audience = audience
        self.keys: dict[str, Any] = {"key-1": rsa_key()}
        self.fetches = {"discovery": 0, "jwks": 0}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/.well-known/openid-configuration":
                    issuer.fetches["discovery"] += 1
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.fetches["jwks"] += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(key, kid) for kid, key in self.keys.items()]}

    def rotate(self, kid: str) -> None:
        """Publish only a new key from now on."""
        self.keys = {kid: rsa_key()}

    def token(self, username: str = "", *, kid: str | None = None, key: Any = None, algorithm: str = "RS256",
              lifetime: int = 300, **claims: Any) -> str:
        now = int(time.time())
        kid = kid or next(iter(self.keys))
        payload = {"iss": self.url, "aud": self.audience, "sub": f"sub-{username}", "iat": now, "exp": now + lifetime,
                   "preferred_username": username, "jti": f"jti-{now}"}
        payload.update(claims)
        return jwt.encode(payload, key if key is not None else self.keys[kid], algorithm=algorithm,
                          headers={"kid": kid})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
