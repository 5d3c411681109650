"""Errors a user can fix: each names the config key, column, row or file that is wrong."""

import signal
from enum import StrEnum
from typing import Any


class RiskbrainError(Exception):
    """Base class: the job reports these as one clear line and exits non-zero."""


class JobFailed(Exception):
    """Not the user's to fix: a rank or worker elsewhere crashed, told in one line (exit 1)."""


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


def as_enum(enum: type[StrEnum], key: str, value: Any) -> Any:
    """Coerce a plain string set from Python (YAML values are coerced by OmegaConf itself)."""
    check(value in {e.value for e in enum}, key, value, f"must be one of {[e.value for e in enum]}")
    return enum(value)


def check_signal(key: str, name: str) -> None:
    """``name`` is a signal's name without its ``SIG`` prefix (``USR2``)."""
    check(hasattr(signal, f"SIG{name}"), key, name, "must name a signal, e.g. USR2")
