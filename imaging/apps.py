"""The imaging app; its ready() registers every background task, in every process that loads Django."""
from __future__ import annotations

import pkgutil
from importlib import import_module

from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "imaging"
    verbose_name = "Imaging store"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Tasks, periodic tasks and start hooks register when their module is imported. Importing every service
        # (and so what the services import) here gives a web process, a Celery worker and a command the same
        # registry, with no list of task modules to keep: a task in a new module is known everywhere at once.
        services = import_module("imaging.services")
        for module in pkgutil.iter_modules(services.__path__, prefix="imaging.services."):
            import_module(module.name)
