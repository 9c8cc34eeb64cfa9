"""Encryption at rest for access-key secrets.

SigV4 needs the secret in plain text to recompute the HMAC, so secrets cannot be hashed; they are encrypted with
a server key (Fernet: AES-128-CBC + HMAC-SHA256) taken from APERTURE_KEY_ENCRYPTION_KEY.
"""
from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    return Fernet(key.encode())


def encrypt_secret(plaintext: str) -> str:
    return _fernet(settings.APERTURE_KEY_ENCRYPTION_KEY).encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str | None:
    """The plaintext, or None when the server key has changed since the secret was stored."""
    try:
        return _fernet(settings.APERTURE_KEY_ENCRYPTION_KEY).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None
