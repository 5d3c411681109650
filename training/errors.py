"""Errors a user can fix: each names the config key, column, row or file that is wrong."""


class RiskbrainError(Exception):
    """Base class: the job reports these as one clear line and exits non-zero."""


class ConfigError(RiskbrainError, ValueError):
    """A config value is out of range or inconsistent (names the key and the value)."""


class DataError(RiskbrainError, ValueError):
    """A data file does not match its schema (names the file, column and row)."""
