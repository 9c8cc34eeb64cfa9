"""Fuzz targets (issue 11 item 12): one module per area, each usable by atheris (`bin/fuzz`) and by pytest."""
