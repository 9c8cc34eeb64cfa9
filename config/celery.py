"""Celery application for APERTURE_TASKS=celery: `celery -A config.celery worker` (and `beat` for periodic work).

This module only creates the app; what it runs (the one `aperture.run` task, the beat schedule, recovery when a
worker starts) is the imaging celery backend's (imaging/tasks/backends/celery.py).
"""
from __future__ import annotations

import os

import django
from celery import Celery

from imaging.tasks.backends.celery import celery_app_install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()  # registers every task (ImagingConfig.ready) before the app and its beat schedule are built

app = celery_app_install(Celery("aperture"))
