"""The files of deploy/ agree with the code and with each other (fast; tests/e2e/test_scale_deployment.py runs them).

- the Procfile has the documented process types, and the systemd units run the same commands;
- every variable in aperture.env.example is one the settings read (a typo there would be silently ignored);
- the nginx site is valid for Debian's nginx once the harness has put in its ports, and proxies what it must.
"""
from __future__ import annotations

import re
import subprocess

from tests.deployment import NGINX, NGINX_SITE, PROCFILE, nginx_main_config, nginx_site_for, procfile_read
from tests.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def test_the_procfile_has_web_on_port_prefork_workers_beat_and_the_dicom_listener():
    types = procfile_read(PROCFILE)
    assert set(types) == {"web", "worker", "beat", "dicom"}
    assert types["dicom"] == "python manage.py dicom_listener"
    assert types["web"] == "python manage.py serve 127.0.0.1:$PORT"
    assert types["worker"].startswith("celery -A config.celery worker") and "--pool" not in types["worker"]
    assert types["beat"].startswith("celery -A config.celery beat")


def test_the_systemd_units_run_the_procfiles_commands():
    types = procfile_read(PROCFILE)
    units = {"web": "aperture-web@.service", "worker": "aperture-worker.service", "beat": "aperture-beat.service",
             "dicom": "aperture-dicom.service"}
    for process_type, unit in units.items():
        text = (DEPLOY / "systemd" / unit).read_text()
        exec_start = re.search(r"^ExecStart=/opt/aperture/\.venv/bin/(.+)$", text, re.MULTILINE).group(1)
        expected = types[process_type].replace("$PORT", "%i").replace("$APERTURE_DATA_DIR", "/var/lib/aperture")
        assert exec_start == expected, unit
        assert "EnvironmentFile=/etc/aperture/aperture.env" in text, unit


def test_every_variable_of_the_environment_file_is_read_by_the_settings():
    names = re.findall(r"^([A-Z][A-Z0-9_]+)=", (DEPLOY / "aperture.env.example").read_text(), re.MULTILINE)
    assert {"DJANGO_SECRET_KEY", "APERTURE_KEY_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "APERTURE_TASKS",
            "APERTURE_BLOB_STORE", "DJANGO_ALLOWED_HOSTS", "DJANGO_CSRF_TRUSTED_ORIGINS",
            "APERTURE_TRUSTED_PROXIES"} <= set(names)
    config_source = "\n".join(p.read_text() for p in (REPO_ROOT / "config").glob("*.py"))
    for name in names:
        assert f'"{name}"' in config_source or f"'{name}'" in config_source, name


def test_the_nginx_site_is_valid_and_forwards_websockets_hosts_and_addresses(tmp_path):
    site = nginx_site_for(NGINX_SITE.read_text(), port=18080, upstream_ports=[18001, 18002],
                          static_root=tmp_path / "static")
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", site) == ["18001", "18002"]
    for directive in ("proxy_set_header Host $http_host;", "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                      "proxy_set_header X-Forwarded-Proto $scheme;", "client_max_body_size 2m;",
                      "# ssl_certificate ", "# add_header Strict-Transport-Security"):
        assert directive in site, directive
    (tmp_path / "aperture.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(nginx_main_config(prefix=tmp_path, site_path=tmp_path / "aperture.conf"))
    checked = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
