"""Two web processes on their own ports (no proxy), one SQLite database, one Redis: the state that must be the
service's rather than one process's is shared. Requests alternate between the processes; a throttle's burst is spent
once for both, the anonymous-audit budget holds for both together, /metrics on either adds up both, and a login
locked out on one is locked out on the other (django-axes counts in the shared database)."""
from __future__ import annotations

import http.client
import shutil
import tempfile
import time
import uuid

import pytest
import redis
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import imaging_client
from tests.personas import live_outsider
from tests.servers import start_web_processes
from tests.websessions import Browserless

pytestmark = pytest.mark.live

REDIS_URL = "redis://127.0.0.1:6379/13"
TOKEN = "metrics-token-for-tests"
BURST = 10
PER_ADDRESS = 4


@pytest.fixture(scope="module")
def processes():
    prefix = f"test-{uuid.uuid4().hex}"
    metrics_dir = tempfile.mkdtemp(prefix="aperture-test-metrics-")
    servers = start_web_processes(2, {
        "APERTURE_SHARED_STATE": "redis", "REDIS_URL": REDIS_URL, "APERTURE_SHARED_STATE_PREFIX": prefix,
        "APERTURE_THROTTLING_ENABLED": "true", "APERTURE_THROTTLE_ListDatastores": f"0.0001/{BURST}",
        "APERTURE_METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "APERTURE_AUDIT_ANONYMOUS_PER_MINUTE": str(PER_ADDRESS), "APERTURE_TRUSTED_PROXIES": "127.0.0.1",
        "APERTURE_LOGIN_MAX_FAILURES": "3",
    })
    yield servers
    for server in reversed(servers):
        server.stop()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def send_unsigned(server, count: int, *, forwarded_for: str | None = None) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for _ in range(count):
        connection.request("GET", "/datastore", headers={"X-Forwarded-For": forwarded_for} if forwarded_for else {})
        response = connection.getresponse()
        response.read()
        assert response.status == 403, response.status
    connection.close()


def list_datastores_calls(server) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    response = connection.getresponse()
    body = response.read().decode()
    assert response.status == 200
    return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples
               if sample.name == "aperture_imaging_call_count_total"
               and sample.labels["operation"] == "ListDatastores")


def anonymous_audit_rows(server, address: str) -> int:
    return int(server.manage("shell", "-c", (
        "from imaging.models import AuditEvent;"
        f"print(AuditEvent.objects.filter(principal_arn='', source_ip='{address}').count())"
    )).stdout.strip().splitlines()[-1])


def test_one_burst_is_spent_across_both_processes(processes):
    key = processes[0].create_key()
    clients = [imaging_client(server.url, key) for server in processes]
    answers: list[list[str]] = [[], []]
    for n in range(2 * BURST):
        try:
            clients[n % 2].list_datastores()
            answers[n % 2].append("ok")
        except ClientError as e:
            answers[n % 2].append(e.response["Error"]["Code"])
    # Each process alone would have let its own ten through; together they let ten through, then refuse.
    assert answers[0] + answers[1] == ["ok"] * (BURST // 2) + ["ThrottlingException"] * (BURST // 2) \
        + ["ok"] * (BURST // 2) + ["ThrottlingException"] * (BURST // 2), answers


def test_metrics_on_either_process_add_up_both(processes):
    first, second = processes
    before = [list_datastores_calls(server) for server in processes]
    assert before[0] == before[1]
    send_unsigned(first, 7)
    send_unsigned(second, 4)
    after = [list_datastores_calls(server) for server in processes]
    assert after == [before[0] + 11, before[0] + 11], (before, after)


def test_the_anonymous_audit_budget_is_one_for_both_processes(processes):
    for _ in range(2):  # a second try when the minute turned while the requests were sent
        if time.time() % 60 > 45:
            time.sleep(60.5 - time.time() % 60)  # start early in a minute, so that the batch falls in one
        address, minute = f"192.0.2.{uuid.uuid4().int % 250 + 1}", int(time.time() // 60)
        before = anonymous_audit_rows(processes[0], address)
        for _ in range(3):
            for server in processes:
                send_unsigned(server, 2, forwarded_for=address)
        if int(time.time() // 60) == minute:
            break
    # 12 refusals from one address: each process alone would have written PER_ADDRESS rows, together they write that.
    assert anonymous_audit_rows(processes[0], address) - before == PER_ADDRESS


def test_a_login_locked_on_one_process_is_locked_on_the_other(processes):
    first, second = processes
    live_outsider(first, "locked-out")
    attempt = Browserless(first.url)
    for expected in (200, 200, 429):
        token = attempt.form_token("/accounts/login/")
        status, _ = attempt.request("/accounts/login/", data={"csrfmiddlewaretoken": token, "username": "locked-out",
                                                              "password": "wrong"})
        assert status == expected
    elsewhere = Browserless(second.url)
    token = elsewhere.form_token("/accounts/login/")
    status, _ = elsewhere.request("/accounts/login/", data={"csrfmiddlewaretoken": token, "username": "locked-out",
                                                             "password": "correct horse battery"})
    assert status == 429
