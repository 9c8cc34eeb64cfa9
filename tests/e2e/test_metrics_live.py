"""/metrics and the audit table under anonymous traffic, against a live server: a path built to break the exposition
format and a few hundred random data store ids, none of them signed. The scrape must still parse, its series must
not grow with the random ids, and the audit table must not grow one row per refused request."""
from __future__ import annotations

import http.client
import json
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import imaging_client, wait_for
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

TOKEN = "metrics-token-for-tests"
PER_ADDRESS, TOTAL = 5, 50
POISONED = [("GET", '/datastore/%22%7D%0Aaperture_imaging_fake%7Bx%3D%22y%22%7D%201%0A'),  # "} and newlines
            ("GET", '/datastore/x"}{y="z"}\\'),  # sent as is
            ("POST", '/datastore/%22%7D%0A/searchImageSets')]


@pytest.fixture(scope="module")
def server():
    instance = ApertureServer(extra_env={"APERTURE_METRICS_TOKEN": TOKEN,
                                         "APERTURE_AUDIT_ANONYMOUS_PER_MINUTE": str(PER_ADDRESS),
                                         "APERTURE_AUDIT_ANONYMOUS_TOTAL_PER_MINUTE": str(TOTAL)}).start()
    yield instance
    instance.stop()


def send_unsigned(server, requests: list[tuple[str, str]]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for method, path in requests:
        connection.request(method, path, body=b"{}" if method == "POST" else None)
        response = connection.getresponse()
        response.read()
        assert 400 <= response.status < 500, (method, path, response.status)
    connection.close()


def random_id_requests(count: int) -> list[tuple[str, str]]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    return [("GET", f"/datastore/{i}") if n % 2 else ("POST", f"/datastore/{i}/searchImageSets")
            for n, i in enumerate(ids)]


def scrape(server) -> dict[tuple, float]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    response = connection.getresponse()
    body = response.read().decode()
    assert response.status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def anonymous_audit_rows(server) -> int:
    return json.loads(server.manage("shell", "-c", (
        "from imaging.models import AuditEvent;"
        "print(AuditEvent.objects.filter(principal_arn='', status_code__gte=400).count())"
    )).stdout.strip().splitlines()[-1])


def test_anonymous_traffic_cannot_poison_metrics_or_flood_the_audit_table(server):
    client = imaging_client(server.url, server.create_key())
    known = client.create_datastore(datastoreName="known")["datastoreId"]
    wait_for(lambda: client.get_datastore(datastoreId=known)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    started, rows_before = time.monotonic(), anonymous_audit_rows(server)
    unrecorded_before = scrape(server).get(("aperture_imaging_audit_anonymous_unrecorded_total", ()), 0)

    send_unsigned(server, POISONED + random_id_requests(150))
    first = scrape(server)  # parses: no label value broke the format
    send_unsigned(server, random_id_requests(300))
    second = scrape(server)

    calls = {labels: value for (name, labels), value in second.items() if name == "aperture_imaging_call_count_total"}
    datastore_labels = {dict(labels)["datastore_id"] for labels in calls}
    assert datastore_labels <= {"", "unknown", known}, datastore_labels
    assert known in datastore_labels
    assert set(second) == set(first), "the series grew with random data store ids"
    assert not any(name.startswith("aperture_imaging_fake") for name, _ in second)
    refused = sum(value for labels, value in calls.items() if dict(labels)["datastore_id"] == "unknown")
    assert refused == len(POISONED) + 450

    # The audit table took at most the per-address budget for each minute the test spanned; the rest are counted.
    minutes = int((time.monotonic() - started) // 60) + 2
    rows = anonymous_audit_rows(server) - rows_before
    assert 1 <= rows <= PER_ADDRESS * minutes
    unrecorded = second[("aperture_imaging_audit_anonymous_unrecorded_total", ())] - unrecorded_before
    assert rows + unrecorded == len(POISONED) + 450
