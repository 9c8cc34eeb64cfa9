from __future__ import annotations

from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "imaging"
    verbose_name = "Imaging store"
    default_auto_field = "django.db.models.BigAutoField"
