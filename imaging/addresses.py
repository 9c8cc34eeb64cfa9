"""Network addresses, without Django: the settings read this before Django is set up."""
from __future__ import annotations

import ipaddress


def host_is_loopback(host: str) -> bool:
    """Whether a bind address only this machine can reach: 127.0.0.0/8, ::1 or localhost (not 0.0.0.0, not a
    name that resolves elsewhere)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
