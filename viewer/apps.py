from __future__ import annotations

from django.apps import AppConfig


class ViewerConfig(AppConfig):
    name = "viewer"
    verbose_name = "Viewer"

    def ready(self) -> None:
        from viewer import signals  # noqa: F401  (connects the receivers that end open sockets)
