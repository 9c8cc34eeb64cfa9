"""JWT bearer tokens on the DICOMweb routes, in process: OIDC against an issuer the test runs itself, with its own
keys (tests/oidc_issuer.py), and the per-data-store authorizer of SPEC 12.6 with local roles."""
from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imaging.models import AuditEvent, ManagedPolicy, Role
from imaging.services.oidc import jwks_cache_clear
from tests import personas
from tests.local_store import local_datastore_create
from tests.oidc_issuer import OidcIssuer, public_jwk, rsa_key

pytestmark = pytest.mark.django_db(transaction=True)

AUTHORIZER_ARN = "arn:aws:lambda:us-east-1:000000000000:function:dicomweb-authorizer"
AUTHORIZED = []


def fake_authorizer(event: dict) -> object:
    """The data store's authorizer: it decides by a `verdict` claim of the (unverified) token."""
    AUTHORIZED.append({key: value for key, value in event.items() if key != "bearerToken"})
    verdict = jwt.decode(event["bearerToken"], options={"verify_signature": False}).get("verdict")
    if verdict == "slow":
        time.sleep(1.5)
    if verdict == "boom":
        raise RuntimeError("authorizer crashed")
    if verdict == "garbage":
        return "yes please"
    if verdict in ("reader", "narrow", "ghost"):
        return {"isTokenValid": True, "roleArn": f"arn:aws:iam::000000000000:role/{verdict}"}
    return {"isTokenValid": False}


@pytest.fixture
def issuer(settings):
    running = OidcIssuer()
    settings.APERTURE_OIDC_ISSUER = running.url
    settings.APERTURE_OIDC_AUDIENCE = running.audience
    settings.APERTURE_OIDC_JWKS_FILE = ""
    jwks_cache_clear()
    yield running
    jwks_cache_clear()
    running.stop()


@pytest.fixture
def stores(store_settings):
    datastore = local_datastore_create(name="oidc")
    personas.clinician(datastore, username="oidc-clinician")
    personas.outsider("oidc-outsider")
    return datastore


def get(client, datastore, token: str):
    return client.get(f"/datastore/{datastore.id}/studies", HTTP_AUTHORIZATION=f"Bearer {token}")


def _refused(response, reason: str) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert json.loads(response.content)["message"] == reason


# OIDC


def test_oidc_token_of_a_granted_user_searches_and_is_audited(client, issuer, stores):
    token = issuer.token("oidc-clinician")
    response = get(client, stores, token)
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.filter(event_name="SearchDICOMStudies").latest("event_time")
    assert (event.identity_type, event.username, event.event_category) == ("Bearer", "oidc-clinician", "Data")
    assert token not in json.dumps(event.request_parameters) and token.split(".")[2] not in event.access_key_id
    # The keys are fetched once and cached.
    assert get(client, stores, issuer.token("oidc-clinician")).status_code == 200
    assert issuer.fetches == {"discovery": 1, "jwks": 1}


def test_oidc_token_is_bounded_by_the_users_grants(client, issuer, stores):
    assert get(client, stores, issuer.token("oidc-outsider")).status_code == 403


@pytest.mark.parametrize("case, reason", [
    ("expired", "The token has expired"),
    ("not yet valid", "The token is not valid yet"),
    ("wrong audience", "The token is not meant for this audience"),
    ("no audience", "The token is not valid: MissingRequiredClaimError"),
    ("wrong issuer", "The token comes from another issuer"),
    ("bad signature", "The token signature is not valid"),
    ("alg none", "The token algorithm must be one of RS256, ES256"),
    ("HS256 with the public key", "The token algorithm must be one of RS256, ES256"),
    ("unknown user", "The token names no active user here"),
    ("no user claim", "The token has no preferred_username claim"),
    ("not a JWT", "The bearer token is not a JWT"),
])
def test_oidc_token_refused(client, issuer, stores, case, reason):
    now = int(time.time())
    public_pem = issuer.keys["key-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    tokens = {
        "expired": lambda: issuer.token("oidc-clinician", exp=now - 120, iat=now - 600),
        "not yet valid": lambda: issuer.token("oidc-clinician", nbf=now + 600),
        "wrong audience": lambda: issuer.token("oidc-clinician", aud="someone-else"),
        "no audience": lambda: issuer.token("oidc-clinician", aud=None),
        "wrong issuer": lambda: issuer.token("oidc-clinician", iss="http://127.0.0.1:1"),
        "bad signature": lambda: issuer.token("oidc-clinician", key=rsa_key()),
        "alg none": lambda: jwt.encode({"iss": issuer.url, "aud": issuer.audience, "exp": now + 60,
                                        "preferred_username": "oidc-clinician"}, None, algorithm="none",
                                       headers={"kid": "key-1"}),
        # The classic confusion: the public key used as an HMAC secret. Signed by hand, since PyJWT refuses to.
        "HS256 with the public key": lambda: _hs256(public_pem, {"iss": issuer.url, "aud": issuer.audience,
                                                                 "exp": now + 60,
                                                                 "preferred_username": "oidc-clinician"}),
        "unknown user": lambda: issuer.token("nobody-here"),
        "no user claim": lambda: issuer.token("oidc-clinician", preferred_username=None),
        "not a JWT": lambda: "not-a-jwt",
    }
    _refused(get(client, stores, tokens[case]()), reason)


def _hs256(secret: bytes, claims: dict) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode()) + "." + b64(
        json.dumps(claims).encode())
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def test_oidc_expiry_has_sixty_seconds_of_leeway(client, issuer, stores):
    now = int(time.time())
    assert get(client, stores, issuer.token("oidc-clinician", exp=now - 30)).status_code == 200
    _refused(get(client, stores, issuer.token("oidc-clinician", exp=now - 90)), "The token has expired")


def test_unknown_kid_refetches_the_jwks_but_not_more_often_than_allowed(client, issuer, stores, settings):
    assert get(client, stores, issuer.token("oidc-clinician")).status_code == 200
    issuer.rotate("key-2")
    # Within the minimum refresh interval an unknown kid is refused without asking the issuer again.
    settings.APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS = 3600
    _refused(get(client, stores, issuer.token("oidc-clinician")),
             "The token is signed with a key the issuer does not publish")
    assert issuer.fetches["jwks"] == 1
    settings.APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS = 0
    assert get(client, stores, issuer.token("oidc-clinician")).status_code == 200
    assert issuer.fetches["jwks"] == 2
    # The old key is gone from the JWKS, so its tokens no longer pass.
    _refused(get(client, stores, issuer.token("oidc-clinician", kid="key-1", key=rsa_key())),
             "The token is signed with a key the issuer does not publish")


def test_es256_keys_and_a_jwks_file(client, issuer, stores, settings, tmp_path):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(ec_key, "ec-1")]}))
    settings.APERTURE_OIDC_JWKS_FILE = str(path)
    token = issuer.token("oidc-clinician", kid="ec-1", key=ec_key, algorithm="ES256")
    assert get(client, stores, token).status_code == 200
    assert issuer.fetches["jwks"] == 0
    # A token that says RS256 for an EC key is refused.
    forged = jwt.encode({"iss": issuer.url, "aud": issuer.audience, "exp": int(time.time()) + 60,
                         "preferred_username": "oidc-clinician"}, rsa_key(), algorithm="RS256",
                        headers={"kid": "ec-1"})
    _refused(get(client, stores, forged), "The token algorithm does not match its key")


def test_unreachable_issuer_is_401_not_500(client, stores, settings):
    settings.APERTURE_OIDC_ISSUER = "http://127.0.0.1:9"
    settings.APERTURE_OIDC_AUDIENCE = "x"
    settings.APERTURE_OIDC_JWKS_FILE = ""
    jwks_cache_clear()
    token = jwt.encode({"exp": int(time.time()) + 60}, rsa_key(), algorithm="RS256", headers={"kid": "k"})
    _refused(get(client, stores, token), "The token issuer's keys cannot be fetched")


# The data store's authorizer (SPEC 12.6)


@pytest.fixture
def authorized(stores, settings):
    settings.APERTURE_AUTHORIZERS = {AUTHORIZER_ARN: f"{__name__}:fake_authorizer"}
    stores.lambda_authorizer_arn = AUTHORIZER_ARN
    stores.save()
    Role.objects.create(name="reader", policy=ManagedPolicy.READ_ONLY)
    Role.objects.create(name="narrow", policy=ManagedPolicy.CUSTOM, policy_document={"Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:SearchDICOMSeries", "Resource": "*"}]})
    AUTHORIZED.clear()
    return stores


def _authorizer_token(verdict: str, **claims) -> str:
    """A JWT only the authorizer judges: signed with a key nobody here knows."""
    now = int(time.time())
    payload = {"iat": now, "exp": now + 300, "verdict": verdict}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, rsa_key(), algorithm="RS256")


def test_authorizer_role_searches_and_is_audited_as_the_role(client, authorized):
    response = get(client, authorized, _authorizer_token("reader"))
    assert response.status_code == 200, response.content
    assert AUTHORIZED == [{"operation": "SearchDICOMStudies", "datastoreId": authorized.id,
                           "datastoreArn": authorized.arn}]
    event = AuditEvent.objects.filter(event_name="SearchDICOMStudies").latest("event_time")
    assert (event.identity_type, event.principal_arn) == ("AssumedRole", "arn:aws:iam::000000000000:role/reader")


def test_authorizer_role_policy_is_evaluated(client, authorized):
    response = get(client, authorized, _authorizer_token("narrow"))
    assert response.status_code == 403
    assert json.loads(response.content)["message"].startswith(
        "User: arn:aws:iam::000000000000:role/narrow is not authorized to perform: medical-imaging:SearchDICOMStudies")
    series = client.get(f"/datastore/{authorized.id}/series",
                        HTTP_AUTHORIZATION=f"Bearer {_authorizer_token('narrow')}")
    assert series.status_code == 200


@pytest.mark.parametrize("verdict, claims, reason", [
    ("refuse", {}, "The authorizer refused the token"),
    ("slow", {}, "The authorizer did not answer in time"),
    ("boom", {}, "The authorizer failed"),
    ("garbage", {}, "The authorizer's answer is malformed"),
    ("ghost", {}, "The authorizer names no local role"),
    ("reader", {"exp": int(time.time()) - 120}, "The token has expired"),
    ("reader", {"exp": None}, "The token has expired"),
    ("reader", {"nbf": int(time.time()) + 600}, "The token is not valid yet"),
    ("reader", {"iat": int(time.time()) + 600}, "The token's issue time is missing or in the future"),
    ("reader", {"iat": int(time.time()) - 13 * 3600}, "The token was issued more than 12 hours ago"),
])
def test_authorizer_refusals_are_401(client, authorized, verdict, claims, reason):
    _refused(get(client, authorized, _authorizer_token(verdict, **claims)), reason)
    if claims:
        assert AUTHORIZED == []  # the pre-checks refuse before the authorizer is asked


def test_authorizer_decides_jwts_for_its_data_store_only(client, authorized, issuer):
    # On the authorizer's data store an OIDC token is the authorizer's to judge (it refuses this one)...
    _refused(get(client, authorized, issuer.token("oidc-clinician")), "The authorizer refused the token")
    # ...on another data store OIDC decides, and the authorizer's role is worth nothing.
    other = local_datastore_create(name="elsewhere")
    personas.clinician(other, username="oidc-clinician-2")
    assert get(client, other, issuer.token("oidc-clinician-2")).status_code == 200
    assert get(client, other, _authorizer_token("reader")).status_code == 401


def test_unmapped_authorizer_is_401(client, authorized, settings):
    settings.APERTURE_AUTHORIZERS = {}
    _refused(get(client, authorized, _authorizer_token("reader")), "The data store's authorizer is not available")


def test_authorizer_over_http_on_loopback(client, authorized, settings):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    from imaging.services.authorizers import authorizer_target_valid

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(event["operation"])
            body = json.dumps(fake_authorizer(event)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        settings.APERTURE_AUTHORIZERS = {AUTHORIZER_ARN: f"http://127.0.0.1:{httpd.server_address[1]}/authorize"}
        assert get(client, authorized, _authorizer_token("reader")).status_code == 200
        _refused(get(client, authorized, _authorizer_token("refuse")), "The authorizer refused the token")
        assert received == ["SearchDICOMStudies", "SearchDICOMStudies"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not authorizer_target_valid("http://authorizer.example/authorize")
    assert authorizer_target_valid("https://authorizer.example/authorize")


def test_an_issuer_outage_keeps_the_keys_fetched_before(client, issuer, stores, settings, monkeypatch):
    from imaging.errors import InvalidToken
    from imaging.services import oidc

    token = issuer.token("oidc-clinician")
    assert get(client, stores, token).status_code == 200
    tries = []

    def issuer_down():
        tries.append(1)
        raise InvalidToken("The token issuer's keys cannot be fetched")

    monkeypatch.setattr(oidc, "_jwks_document", issuer_down)
    settings.APERTURE_OIDC_JWKS_TTL_SECONDS = 1
    settings.APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS = 3600
    time.sleep(1.1)
    # The keys are stale: one refresh is tried, fails, and the keys fetched before still verify the token.
    assert get(client, stores, token).status_code == 200
    assert len(tries) == 1
    # Neither the next request nor an unknown kid asks the issuer again within the minimum refresh interval.
    assert get(client, stores, token).status_code == 200
    _refused(get(client, stores, issuer.token("oidc-clinician", kid="key-9", key=rsa_key())),
             "The token is signed with a key the issuer does not publish")
    assert len(tries) == 1
    # Once the interval has passed, the next request tries again.
    settings.APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS = 0
    assert get(client, stores, token).status_code == 200
    assert len(tries) == 2
