"""The Prometheus endpoint in process: it answers only with the token and counts API calls and image sets per tier
(tests/e2e/test_metrics_live.py scrapes a live server)."""
from __future__ import annotations

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
