"""Credentials for a shared tracking server: read from the environment, never logged.

MLflow reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` itself; riskbrain never
copies them into the config, so they cannot reach params, ``config.yaml``, the model card or a
log. A password typed into the URI instead (``http://user:pass@host``) would reach all of them:
``redact`` is for any place that prints a URI.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import urlsplit, urlunsplit

USERNAME, PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def redact(uri: str) -> str:
    """``http://user:pass@host/x`` -> ``http://user:***@host/x``; any other URI unchanged."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def has_password(uri: str) -> bool:
    """Whether ``uri`` carries a password (``scheme://user:pass@host``)."""
    return urlsplit(uri).password is not None


def login(env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(user, password) from ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``, or None if unset."""
    env = os.environ if env is None else env
    user = env.get(USERNAME)
    return (user, env.get(PASSWORD, "")) if user else None


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
