"""OHIF v3 for the end-to-end test: where its built files are (bin/fetch-ohif), the app-config.js that points it at
an Aperture data store, and a loopback static server for it.

Why a server of its own on another port, rather than Aperture serving OHIF: that is how OHIF is deployed next to an
archive (a portal, a CDN), so the test goes through CORS (imaging/cors.py) and a bearer token in the Authorization
header, as a real deployment would, rather than a same-origin shortcut. The server answers `/app-config.js` from
memory, so the cached package is never modified; every path that is not a file gets index.html (OHIF routes in the
browser: `/viewer?StudyInstanceUIDs=…`); `.wasm` goes out as application/wasm, which WebAssembly streaming
compilation (the HTJ2K decoder) insists on."""
from __future__ import annotations

import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.paths import REPO_ROOT


def ohif_dist() -> Path:
    """The built viewer's folder; bin/fetch-ohif downloads it the first time and only looks the next times."""
    done = subprocess.run([str(REPO_ROOT / "bin" / "fetch-ohif")], capture_output=True, text=True)
    assert done.returncode == 0, f"bin/fetch-ohif could not provide OHIF: {done.stderr.strip()}"
    return Path(done.stdout.strip().splitlines()[-1])


README_SECTION = "#### Using OHIF with Aperture"
README_ROOT = "https://pacs.example.org/datastore/<datastoreId>"
README_TOKEN = "Bearer apt_…"


def app_config(*, dicomweb_root: str, bearer_token: str) -> str:
    """The app-config.js of the README's "Using OHIF with Aperture", verbatim but for its DICOMweb root (here
    `http://HOST/datastore/<id>`) and its token, so the test proves what the README tells people to deploy.

    It is a function: OHIF calls it with its services manager before it registers its services, and it installs
    `Authorization: Bearer <token>` on the UserAuthenticationService as soon as that service exists (OHIF's own
    `?token=` does the same, but only on a viewer route, not on the study list)."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(README_SECTION):]
    script = section[section.index("```js\n") + len("```js\n"):]
    script = script[:script.index("```")]
    for placeholder in (README_ROOT, README_TOKEN):
        assert script.count(placeholder) == 1, f"the README's app-config.js no longer has {placeholder!r} once"
    return script.replace(README_ROOT, dicomweb_root).replace(README_TOKEN, f"Bearer {bearer_token}")


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json"}
    config_js = b""

    def log_message(self, format, *args):  # quiet: the test reads what it needs from the browser
        pass

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/app-config.js":
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(self.config_js)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(self.config_js)
            return
        if not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"  # a browser-side route of the single-page app
        super().do_GET()


class OhifServer:
    """OHIF's dist/ on 127.0.0.1, on a port of its own, with `config_js` as its app-config.js (settable before
    the first page load, as the origin must be known before Aperture starts with it in APERTURE_CORS_ORIGINS)."""

    def __init__(self, dist: Path) -> None:
        handler = type("OhifHandler", (_Handler,), {})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(dist)))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def configure(self, config_js: str) -> None:
        self.handler.config_js = config_js.encode()

    def start(self) -> "OhifServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


