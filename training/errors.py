"""Errors a user can fix: each names the config key, column, row or file that is wrong."""

from typing import Any


class RiskbrainError(Exception):
    """Base class: the job reports these as one clear line and exits non-zero."""


class ConfigError(RiskbrainError, ValueError):
    """A config value is out of range or inconsistent (names the key and the value)."""


class DataError(RiskbrainError, ValueError):
    """A data file does not match its schema (names the file, column and row)."""


def check(ok: bool, key: str, value: Any, must: str) -> None:
    """Raise ``ConfigError("config <key>=<value>: <must>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {must}")
