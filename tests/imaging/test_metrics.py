"""The Prometheus endpoint in process: it answers only with the token and counts API calls and image sets per tier
(tests/e2e/test_metrics_live.py scrapes a live server)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db(transaction=True)


def test_metrics_need_the_token(settings, admin_client, viewer_data):
    settings.APERTURE_METRICS_TOKEN = "s3cret-metrics"
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    Client().get("/datastore")  # one refused API call to count
    body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics").content.decode()
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(body) for sample in family.samples}
    refused = (("datastore_id", ""), ("datastore_type", "DICOM"), ("operation", "ListDatastores"),
               ("status_code", "403"))
    assert samples[("aperture_imaging_call_count_total", refused)] >= 1
    tier = (("datastore_id", viewer_data.datastore.id), ("storage_tier", "FREQUENT_ACCESS"))
    assert samples[("aperture_imaging_image_sets", tier)] == 2


class TestMultiprocessFolder:
    """`manage.py serve` empties PROMETHEUS_MULTIPROC_DIR only when it is the first web process on it
    (tests/e2e/test_shared_state_live.py scrapes two processes sharing one)."""

    @staticmethod
    def leftovers(folder: Path) -> set[str]:
        for name in ("counter_4000001.db", "histogram_4000001.db", f"counter_{os.getpid()}.db"):
            (folder / name).write_bytes(b"\0" * 8)
        return {path.name for path in folder.glob("*.db")}

    def test_the_first_process_empties_it_but_keeps_its_own_files(self, tmp_path):
        from imaging.metrics import multiprocess_dir_prepare

        self.leftovers(tmp_path)
        assert multiprocess_dir_prepare(path=str(tmp_path)) is True
        assert {path.name for path in tmp_path.glob("*.db")} == {f"counter_{os.getpid()}.db"}

    def test_a_process_joining_running_ones_keeps_their_counts(self, tmp_path):
        from imaging.metrics import MULTIPROCESS_LOCK_NAME, multiprocess_dir_prepare

        running = subprocess.Popen(  # another web process, holding the folder as serve does
            [sys.executable, "-c", "import fcntl, os, sys, time; "
             f"fd = os.open({str(tmp_path / MULTIPROCESS_LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT); "
             "fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); time.sleep(120)"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert running.stdout.readline().strip() == "held"
            files = self.leftovers(tmp_path)
            assert multiprocess_dir_prepare(path=str(tmp_path)) is False
            assert {path.name for path in tmp_path.glob("*.db")} == files
        finally:
            running.kill()
            running.wait()
