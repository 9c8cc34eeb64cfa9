"""Task backends, one module each behind `base.TaskBackend`; settings.APERTURE_TASK_BACKEND names the one in use."""
