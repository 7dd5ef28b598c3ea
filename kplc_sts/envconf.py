"""Typed settings from the environment, failing loudly on values that do not parse.

django-environ does the reading and casting. Its bool cast, like most, treats anything it does not
recognise as False, so DJANGO_DEBUG=ture or STAFF_2FA_REQUIRED=flase would silently change
behaviour: `StrictEnv.bool` refuses such values instead. Integers and floats that do not parse fail
the same way, naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE_STRINGS = frozenset({"1", "true", "yes", "on"})
FALSE_STRINGS = frozenset({"0", "false", "no", "off"})


class StrictEnv(environ.Env):
    def bool(self, var: str, default: Any = environ.Env.NOTSET) -> bool:
        raw = os.environ.get(var)
        if raw is None or raw.strip() == "":
            if default is environ.Env.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable (true/false).")
            return bool(default)
        value = raw.strip().lower()
        if value in TRUE_STRINGS:
            return True
        if value in FALSE_STRINGS:
            return False
        raise ImproperlyConfigured(f"{var}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")

    def int(self, var: str, default: Any = environ.Env.NOTSET) -> int:
        try:
            return super().int(var, default=default)
        except ValueError:
            raise ImproperlyConfigured(f"{var}={os.environ.get(var)!r} is not an integer.") from None

    def float(self, var: str, default: Any = environ.Env.NOTSET) -> float:
        try:
            return super().float(var, default=default)
        except ValueError:
            raise ImproperlyConfigured(f"{var}={os.environ.get(var)!r} is not a number.") from None


env = StrictEnv()


def env_secret(name: str) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (for Docker/K8s secrets)."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


def env_networks(name: str, default: str = "") -> list[str]:
    """A comma-separated list of IP networks ("10.0.0.0/8, 127.0.0.1"); a malformed entry refuses to start."""
    networks = []
    for item in (os.environ.get(name) or default).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network.") from None
    return networks
