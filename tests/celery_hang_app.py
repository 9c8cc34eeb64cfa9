"""The project's Celery app (config/celery.py) for a worker whose files named *python-hang.dcm or *native-hang.dcm
never finish (tests/pipeline_workers.py): `celery -A tests.celery_hang_app worker` proves the file time limit in the
processes Celery runs tasks in."""
from __future__ import annotations

from config.celery import app  # noqa: F401  (the app `celery -A` looks for)
from imaging.pipeline import pool
from tests.pipeline_workers import hanging_on_named_files

pool.process_source = hanging_on_named_files(pool.process_source)
