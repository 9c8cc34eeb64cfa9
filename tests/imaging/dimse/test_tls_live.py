"""DICOM TLS: with APERTURE_DICOM_TLS_CERT/_KEY/_CA the listener also speaks TLS on APERTURE_DICOM_TLS_PORT and
requires a client certificate signed by the CA; `storescu +tls` stores through it."""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.clients import imaging_client, wait_for
from tests.dimse import DicomListener, datastore_ae_set, import_jobs
from tests.imaging.dimse.test_store_live import generated_ct, responses
from tests.paths import REPO_ROOT
from tests.servers import ApertureServer, free_port

pytestmark = pytest.mark.live


def issue(subject: str, *, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return name, key, builder.sign(issuer_key, hashes.SHA256())


def write_pem(folder: Path, stem: str, key, certificate) -> tuple[Path, Path]:
    key_path, cert_path = folder / f"{stem}.key", folder / f"{stem}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca_name, ca_key, ca_cert = issue("Aperture test CA", ca=True)
    _, ca_cert_path = write_pem(folder, "ca", ca_key, ca_cert)
    _, server_key, server_cert = issue("aperture", issuer=(ca_name, ca_key))
    _, client_key, client_cert = issue("modality", issuer=(ca_name, ca_key))
    _, rogue_key, rogue_cert = issue("rogue")  # self-signed: not the CA's
    return {"ca": ca_cert_path, "server": write_pem(folder, "server", server_key, server_cert),
            "client": write_pem(folder, "client", client_key, client_cert),
            "rogue": write_pem(folder, "rogue", rogue_key, rogue_cert)}


@pytest.fixture(scope="module")
def tls_listener(pki):
    server = ApertureServer().start()
    mi = imaging_client(server.url, server.create_key())
    datastore_id = mi.create_datastore(datastoreName="tls")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    datastore_ae_set(server, datastore_id, "SECURE1")
    server_key, server_cert = pki["server"]
    listener = DicomListener(server, tls_port=free_port(), extra_env={
        "APERTURE_DICOM_TLS_CERT": str(server_cert), "APERTURE_DICOM_TLS_KEY": str(server_key),
        "APERTURE_DICOM_TLS_CA": str(pki["ca"])}).start()
    yield listener, datastore_id
    listener.stop()
    server.stop()


def test_storescu_over_tls_with_a_client_certificate(tls_listener, pki, tmp_path):
    """While another client holds a TLS connection open without a handshake (the handshake is not done in the
    accepting thread)."""
    listener, datastore_id = tls_listener
    client_key, client_cert = pki["client"]
    files = generated_ct(tmp_path, 3)
    with socket.create_connection(("127.0.0.1", listener.tls_port)):
        result = listener.storescu(*files, called="SECURE1", port=listener.tls_port, timeout=30,
                                   extra=("+tls", str(client_key), str(client_cert), "+cf", str(pki["ca"])))
    assert list(responses(result.stdout + result.stderr).values()) == ["Success"] * 3, result.stderr
    job = wait_for(lambda: [j for j in import_jobs(listener.server, datastore_id) if j["status"] == "COMPLETED"],
                   timeout=60, interval=1.0, what="the TLS batch imported")[0]
    assert (job["imported"], job["calling_ae_title"]) == (3, "STORESCU")


def test_a_client_without_a_certificate_of_the_ca_is_refused(tls_listener, pki, tmp_path):
    listener, _ = tls_listener
    rogue_key, rogue_cert = pki["rogue"]
    result = listener.echo(called="SECURE1", port=listener.tls_port,
                           extra=("+tls", str(rogue_key), str(rogue_cert), "+cf", str(pki["ca"])))
    assert result.returncode != 0
    assert listener.echo(called="SECURE1").returncode == 0  # the plain port still answers, the listener lives


def test_plain_dicom_on_the_tls_port_is_refused(tls_listener):
    listener, _ = tls_listener
    assert listener.echo(called="SECURE1", port=listener.tls_port).returncode != 0


def test_a_tls_only_listener_has_no_plain_port(pki, tmp_path):
    """`dicom_listener --port 0` with TLS configured serves the TLS port alone; storescu +tls stores through it."""
    server = ApertureServer().start()
    mi = imaging_client(server.url, server.create_key())
    datastore_id = mi.create_datastore(datastoreName="tls-only")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    datastore_ae_set(server, datastore_id, "TLSONLY")
    server_key, server_cert = pki["server"]
    client_key, client_cert = pki["client"]
    tls = ("+tls", str(client_key), str(client_cert), "+cf", str(pki["ca"]))
    listener = DicomListener(server, tls_port=free_port(), extra_env={
        "APERTURE_DICOM_TLS_CERT": str(server_cert), "APERTURE_DICOM_TLS_KEY": str(server_key),
        "APERTURE_DICOM_TLS_CA": str(pki["ca"]), "APERTURE_DICOM_PORT": "11112"})
    log = open(tmp_path / "listener.log", "ab")
    listener.process = subprocess.Popen([sys.executable, "manage.py", "dicom_listener", "--port", "0"],
                                        cwd=REPO_ROOT, env=listener.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listener.echo(port=listener.tls_port, extra=tls).returncode == 0, timeout=30,
                 what="C-ECHO over TLS")
        output = (tmp_path / "listener.log").read_text()
        assert f"127.0.0.1:{listener.tls_port} (TLS only)" in output
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines()
                 if f"pid={listener.process.pid}," in line}
        assert ports == {str(listener.tls_port)}, listening
        result = listener.storescu(*generated_ct(tmp_path, 1), called="TLSONLY", port=listener.tls_port, timeout=30,
                                   extra=tls)
        assert list(responses(result.stdout + result.stderr).values()) == ["Success"], result.stderr
    finally:
        assert listener.stop() == 0
        server.stop()


def test_port_zero_without_tls_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "dicom_listener", "--port", "0"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "APERTURE_DATA_DIR": str(tmp_path), "APERTURE_DICOM_TLS_CERT": ""})
    assert result.returncode != 0
    assert "0 with DICOM TLS configured" in result.stderr
