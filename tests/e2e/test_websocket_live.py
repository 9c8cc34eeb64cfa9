"""The render websocket from outside (issue 11 items 3 and 6, issue 13 item 3): a real client against a live server,
with a session from the login form. A page on another origin cannot open it with the user's cookie; logout closes it;
with the Redis channel layer (several processes), a share link revoked from another process closes it too, a logout
on one web process closes the socket held by another, and an idle socket stays open (redis-py's 5 s read timeout
once closed it with 1011)."""
from __future__ import annotations

import json
import secrets
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer, start_web_processes
from tests.websessions import Browserless

pytestmark = pytest.mark.live

PORTAL = "http://portal.example:9000"
PASSWORD = "sockets-Pass-1"


# Redis database 12 is this file's; the channel and shared-state keys carry a prefix of their own per server.
REDIS_LAYER = {"APERTURE_REDIS_CHANNELS": "true", "REDIS_URL": "redis://127.0.0.1:6379/12"}


def start_viewer_server(**env: str) -> tuple[ApertureServer, dict]:
    server = ApertureServer(extra_env={"APERTURE_EMBED_ORIGINS": PORTAL, **env}).start()
    return server, viewer_server_prepare(server)


def viewer_server_prepare(server: ApertureServer) -> dict:
    mi = imaging_client(server.url, server.create_key())
    datastore_id = mi.create_datastore(datastoreName="sockets")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    server.manage("import_dicom", "--datastore", datastore_id, str(DICOM_DIR / "ELE__CT_small.dcm"))
    image_set_id = mi.search_image_sets(datastoreId=datastore_id, searchCriteria={})[
        "imageSetsMetadataSummaries"][0]["imageSetId"]
    personas.live_clinician(server, datastore_id, username="reader", password=PASSWORD)
    return {"datastore": datastore_id, "imageSet": image_set_id}


@pytest.fixture(scope="module")
def viewer_server():
    server, ids = start_viewer_server()
    yield server, ids
    server.stop()


def open_socket(server, *, origin: str | None, cookie: str = "", query: str = ""):
    headers = {"Cookie": cookie} if cookie else {}
    return connect(f"ws://127.0.0.1:{server.port}/ws/render/{query}", origin=origin, additional_headers=headers,
                   open_timeout=10)


def received(socket) -> dict:
    """The next text message other than a keepalive ping."""
    while (message := json.loads(socket.recv(timeout=10)))["type"] == "ping":
        continue
    return message


def opened(socket, ids) -> dict:
    socket.send(json.dumps({"type": "open", **ids}))
    message = received(socket)
    assert message["type"] == "opened", message
    return message


def ended(socket) -> dict:
    message = received(socket)
    assert message["type"] == "ended", message
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=10)
    assert closed.value.rcvd.code == 4401
    return message


def test_only_the_servers_own_origin_and_embedding_portals_open_the_socket(viewer_server):
    server, ids = viewer_server
    cookie = Browserless(server.url).log_in("reader", PASSWORD).cookie_header()
    with open_socket(server, origin=f"http://127.0.0.1:{server.port}", cookie=cookie) as own:
        assert opened(own, ids)["patient"]["PatientID"] is not None
    with open_socket(server, origin=PORTAL, cookie=cookie) as portal:
        assert opened(portal, ids)["type"] == "opened"
    for foreign in ("http://evil.example", f"http://127.0.0.1:{server.port + 1}", f"https://localhost:{server.port}",
                    "null", None):
        with pytest.raises(InvalidStatus) as refused:
            open_socket(server, origin=foreign, cookie=cookie)
        assert refused.value.response.status_code == 403, foreign


def test_logout_closes_an_open_socket(viewer_server):
    server, ids = viewer_server
    browser = Browserless(server.url).log_in("reader", PASSWORD)
    with open_socket(server, origin=server.url, cookie=browser.cookie_header()) as socket:
        opened(socket, ids)
        assert browser.log_out() == 302
        assert "signed out" in ended(socket)["message"]
    with pytest.raises(InvalidStatus):  # the old cookie opens nothing any more
        open_socket(server, origin=server.url, cookie=browser.cookie_header())


def test_revocation_in_another_process_closes_the_socket_over_redis():
    server, ids = start_viewer_server(**REDIS_LAYER, APERTURE_SHARED_STATE_PREFIX=f"t{secrets.token_hex(6)}")
    try:
        token = server.manage("shell", "-c", (
            "from datetime import timedelta; from imaging.services.sharing import share_link_create;"
            f"link, token = share_link_create(created_by=None, datastore_id='{ids['datastore']}',"
            f" image_set_id='{ids['imageSet']}', expires_in=timedelta(hours=1)); print(link.pk, token)"
        )).stdout.strip().splitlines()[-1].split()
        with open_socket(server, origin=server.url, query=f"?share={token[1]}") as socket:
            opened(socket, ids)
            started = time.monotonic()
            server.manage("shell", "-c", (  # another process: only the channel layer can reach the socket
                f"from imaging.services.sharing import share_link_revoke; share_link_revoke(link_id='{token[0]}')"))
            assert "revoked" in ended(socket)["message"]
            assert time.monotonic() - started < 15
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_processes_on_redis():
    """Two web processes on one database and one Redis channel layer, as behind a proxy."""
    servers = start_web_processes(2, {**REDIS_LAYER, "APERTURE_SHARED_STATE_PREFIX": f"t{secrets.token_hex(6)}",
                                      "APERTURE_WS_PING_SECONDS": "4"})
    ids = viewer_server_prepare(servers[0])
    yield servers, ids
    for server in reversed(servers):
        server.stop()


def test_an_idle_socket_on_the_redis_layer_stays_open_and_answers(two_processes_on_redis):
    (server, _), ids = two_processes_on_redis
    cookie = Browserless(server.url).log_in("reader", PASSWORD).cookie_header()
    with open_socket(server, origin=server.url, cookie=cookie) as socket:
        opened(socket, ids)
        pings = 0
        quiet_until = time.monotonic() + 12  # beyond two of redis-py's 5 s read timeouts
        while (left := quiet_until - time.monotonic()) > 0:
            try:
                message = json.loads(socket.recv(timeout=left))
            except TimeoutError:
                break
            assert message == {"type": "ping", "interval": 4}, message
            socket.send(json.dumps({"type": "pong"}))
            pings += 1
        assert pings >= 2
        assert opened(socket, ids)["type"] == "opened"  # still open, and the consumer still answers
    assert "Timeout reading from" not in server.log()


def test_a_logout_on_one_web_process_closes_the_socket_held_by_another(two_processes_on_redis):
    (first, second), ids = two_processes_on_redis
    browser = Browserless(first.url).log_in("reader", PASSWORD)
    with open_socket(second, origin=second.url, cookie=browser.cookie_header()) as socket:
        opened(socket, ids)
        time.sleep(6)  # idle past redis-py's default read timeout: the layer must still deliver
        assert browser.log_out() == 302
        assert "signed out" in ended(socket)["message"]


def test_the_viewer_answers_pings_and_replaces_a_socket_gone_silent(browser):
    """The browser cannot see protocol pings: it answers the consumer's pings, and when they stop coming (here the
    server is frozen, its connections open and mute, as behind a proxy that lost them) it takes the socket for dead
    and connects again."""
    server, ids = start_viewer_server(APERTURE_WS_PING_SECONDS="1")
    try:
        context = browser.new_context()
        page = context.new_page()
        sent: list[str] = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
        page.goto(server.url + "/accounts/login/")
        page.fill("input[name=username]", "reader")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/")
        page.goto(f"{server.url}/view/{ids['datastore']}/{ids['imageSet']}/")
        page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
        def sent_after(start: int, kind: str, count: int) -> bool:
            """Playwright delivers frame events while the page is being driven: drive it until they arrived."""
            for _ in range(150):
                if sum(f'"type":"{kind}"' in payload for payload in sent[start:]) >= count:
                    return True
                page.wait_for_timeout(200)
            return False

        assert sent_after(0, "pong", 2), sent
        assert page.evaluate("window.apertureViewer.connection") == "open"
        assert page.text_content("#status").strip() == ""  # no error answered the pongs

        rendered, before = page.evaluate("window.apertureViewer.rendered"), len(sent)
        server.process.send_signal(signal.SIGSTOP)
        try:
            page.wait_for_function("window.apertureViewer.connection !== 'open'", timeout=30_000)
        finally:
            server.process.send_signal(signal.SIGCONT)
        page.wait_for_function("window.apertureViewer.connection === 'open'", timeout=30_000)
        assert sent_after(before, "open", 1), sent[before:]  # the new socket opened the image set again
        page.wait_for_function(f"window.apertureViewer.rendered > {rendered}", timeout=30_000)
        context.close()
    finally:
        server.stop()
