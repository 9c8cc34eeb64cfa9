"""Pixel codecs, looked up by transfer syntax UID. No Django here: these are plain functions on numpy arrays."""
