"""Where runs are tracked (``tracking.*``) and where models are registered (``registry.*``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.errors import ConfigError, check
from training.tracking.secrets import PASSWORD, USERNAME, has_password, redact

TRACKING_MODES = ("online", "offline")


@dataclass(kw_only=True)
class TrackingConfig:
    """MLflow tracking: ``uri`` null means env ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""

    uri: str | None = None
    experiment: str = "riskbrain"
    # Every call is written to <run folder>/tracking/ first (training/tracking/journal.py). online: applied
    # to the store at once when it answers, retried with back-off when not; offline: nothing is
    # sent (compute nodes without a route to the server): `python -m jobs.sync <folder>` later.
    mode: str = "online"
    sync_timeout_s: int = 60  # online: at the end, how long to keep retrying a store that is down
    request_timeout_s: int = (
        30  # online: one request to a tracking server, before it counts as down
    )

    def __post_init__(self) -> None:
        check(bool(self.experiment), "tracking.experiment", self.experiment, "must not be empty")
        check(
            self.mode in TRACKING_MODES,
            "tracking.mode",
            self.mode,
            f"must be one of {TRACKING_MODES}",
        )
        for key in ("sync_timeout_s", "request_timeout_s"):
            check(getattr(self, key) >= 0, f"tracking.{key}", getattr(self, key), "must be >= 0")
        refuse_password(self.uri, "tracking.uri")


def refuse_password(uri: str | None, key: str) -> None:
    """A password in a tracking URI would be logged with every run (params, config.yaml, the
    model card): credentials come from the environment only (``training/tracking/secrets.py``)."""
    if uri and has_password(uri):
        raise ConfigError(
            f"config {key}={redact(uri)}: must not hold a password; "
            f"set {USERNAME} and {PASSWORD} in the environment instead"
        )


@dataclass(kw_only=True)
class RegistryConfig:
    """Where a trained model is registered: a name per data set, so a model of one lender's book
    can never become the ``@challenger`` a deployment of another pulls; and a rule for when the
    alias moves, so a debug run or a run of a few epochs registers a version but moves nothing."""

    register: bool = True
    name: str = "credit-risk-${data.name}"
    alias: str = "challenger"
    min_epochs: int = 5  # the alias moves only after this many epochs trained...
    move_alias: bool | None = None  # ...unless set: true always moves it, false never (debug=tiny)

    def __post_init__(self) -> None:
        check(bool(self.name), "registry.name", self.name, "must not be empty")
        check(bool(self.alias), "registry.alias", self.alias, "must not be empty")
        check(self.min_epochs >= 0, "registry.min_epochs", self.min_epochs, "must be >= 0")

    def alias_after(self, epochs: int) -> tuple[str | None, str]:
        """The alias to move onto a model trained for ``epochs`` epochs (or None), and why."""
        if self.move_alias is False:
            return None, "registry.move_alias=false, as debug=tiny sets it; set it true to move it"
        if self.move_alias is None and epochs < self.min_epochs:
            why = f"{epochs} epochs < registry.min_epochs={self.min_epochs}"
            return None, f"{why} (set registry.move_alias=true to move it anyway)"
        return self.alias, ""
