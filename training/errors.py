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


def check_option(cfg: Any, group: str, options: dict) -> None:
    """A config group's option and its ``name`` agree (the name comes with the option's class)."""
    check(
        type(cfg) is options[cfg.name],
        f"{group}.name",
        str(cfg.name),
        f"is set by the config group: use {group}={cfg.name}, not {group}.name",
    )
