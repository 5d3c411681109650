"""The model registry: every MLflow call the entry points make, behind plain Python types.

``resolve`` pins a ``models:/<name>@<alias>`` URI to its version, ``load_model`` loads a version
as a ``ScoringModel`` (what ``jobs.score`` and the promotion gate use), and ``Registry`` reads a
registered model's versions and aliases and records promotion decisions (``jobs.promote``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.errors import ConfigError
from training.tracking.config import TrackingConfig
from training.tracking.secrets import redact

CHAMPION = "champion"  # the alias deployment pulls: models:/<name>@champion
# MLflow's error codes for a login refused (401) and a permission missing (403, basic-auth app)
DENIED = ("UNAUTHENTICATED", "PERMISSION_DENIED")
# The tags a promotion run carries, read back as the model's promotion history
HISTORY_TAGS = (
    "time",
    "kind",
    "result",
    "candidate_version",
    "previous_champion",
    "champion",
    "user",
    "host",
    "reason",
)


@dataclass(kw_only=True)
class ModelRef:
    """Which model scored: the URI asked for, the pinned one every rank loads, its registry entry."""

    uri: str
    pinned: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None  # the training run that logged the version


@dataclass(kw_only=True)
class ScoringModel:
    """What scoring and the gate need from a loaded model, free of MLflow (``load_model`` builds it)."""

    predict: Callable[[pd.DataFrame], pd.DataFrame]  # model-ready rows -> one output row each
    inputs: dict[str, str]  # the signature's input columns: name -> "any", "double" or "string"
    outputs: list[str]  # the signature's output columns (pd; score and reasons when it has them)
    ref: ModelRef
    score_reference: dict | None = None  # {"edges", "shares"} of the training scores, for PSI
    feature_reference: dict | None = None  # each feature's training bins and shares (drift)
    notes: list[str] = field(default_factory=list)  # what the summary should say about it
    # Per row, the reasons' completeness error (logits), and the model's own tolerance of it;
    # None for a model without reasons.
    reasons_errors: Callable[[pd.DataFrame], np.ndarray | None] | None = None
    reasons_tolerance: float | None = None
    # A model of event histories: the input columns that hold each source's events (a list or
    # its JSON text) and the application date (text the model parses), and the rows with the
    # inputs it computes from them (for drift).
    sources: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    computed: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    @property
    def score_column(self) -> str:
        """The column whose distribution is summarised: ``score``, else ``pd`` (a fallback)."""
        return "score" if "score" in self.outputs else "pd"


@dataclass(frozen=True)
class Version:
    """A registered version as the gate sees it."""

    version: str
    run_id: str = ""
    fingerprint: str = ""  # its data_fingerprint tag


def _client(store: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store, registry_uri=store)


def resolve(uri: str, store: str) -> ModelRef:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` pinned to its version, with the
    run that logged it; any other URI is loaded as given, without a registry link."""
    from mlflow.exceptions import MlflowException

    path = uri.removeprefix("models:/")
    name, alias = path.split("@", 1) if "@" in path else (path, None)
    version = None if alias else path.rpartition("/")[2]
    if path == uri or not (alias or version.isdigit()):
        return ModelRef(uri=uri, pinned=uri)
    client = _client(store)
    try:
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(path.rpartition("/")[0], version)
    except MlflowException as e:
        raise ConfigError(f"config model={uri}: {e.message} (store {redact(store)})") from None
    return ModelRef(
        uri=uri,
        pinned=f"models:/{mv.name}/{mv.version}",
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
    )


def load_model(ref: ModelRef, store: str, reasons: int) -> ScoringModel:
    """The pyfunc at ``ref.pinned``: its signature's columns, ``predict`` with ``reasons`` when
    the model declares that param, and its training-score reference when it carries one."""
    import mlflow

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model(ref.pinned)
    meta = model.metadata
    if meta.get_input_schema() is None:
        raise ConfigError(
            f"config model={ref.uri}: the model has no signature to read columns from"
        )
    # a column of AnyType (our numeric inputs, which take integers too) is named by to_dict
    inputs = {c.name: c.to_dict()["type"] for c in meta.get_input_schema().inputs}
    outputs = meta.get_output_schema().input_names() if meta.get_output_schema() else ["pd"]
    declared = meta.get_params_schema()
    takes_reasons = declared is not None and "reasons" in [p.name for p in declared.params]
    params = {"reasons": reasons} if takes_reasons else None
    notes = []
    if reasons and not takes_reasons:
        notes.append(
            f"the model declares no `reasons` param: scored without reasons ({reasons} asked)"
        )
    try:
        scorer = model.unwrap_python_model().scorer
    except Exception:  # not a Python model, or one without a scorer: no references
        scorer = None

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(model.predict(frame, params=params))

    history = getattr(getattr(scorer, "schema", None), "history", None)

    return ScoringModel(
        predict=predict,
        inputs=inputs,
        outputs=outputs,
        ref=ref,
        score_reference=getattr(scorer, "score_reference", None),
        feature_reference=getattr(scorer, "feature_reference", None),
        notes=notes,
        reasons_errors=getattr(scorer, "completeness_errors", None),
        reasons_tolerance=scorer.explainer.cfg.tolerance
        if getattr(scorer, "explainer", None)
        else None,
        sources=tuple(history.lists()) if history else (),
        dates=(history.application_date,) if history and history.application_date else (),
        computed=scorer.inputs if history else None,
    )


class Registry:
    """One registered model in one store: its versions, @champion, and the promotion runs."""

    def __init__(self, store: str, name: str) -> None:
        self.store, self.name = store, name
        self.client = _client(store)

    def model(self):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(self.name)
        except MlflowException as e:
            if e.error_code in DENIED:
                raise
            raise ConfigError(
                f"config name={self.name}: no registered model of that name in {redact(self.store)}"
            ) from None

    def version(self, ref: str, option: str) -> Version:
        """A version by number or alias; a ConfigError naming ``option`` when there is none."""
        from mlflow.exceptions import MlflowException

        self.model()
        try:
            if ref.isdigit():
                mv = self.client.get_model_version(self.name, ref)
            else:
                mv = self.client.get_model_version_by_alias(self.name, ref)
        except MlflowException as e:
            if e.error_code in DENIED:
                raise
            what = "version" if ref.isdigit() else "alias"
            raise ConfigError(
                f"config {option}={ref}: {self.name} has no {what} {ref} (store {redact(self.store)})"
            ) from None
        return Version(str(mv.version), mv.run_id or "", mv.tags.get("data_fingerprint", ""))

    def champion(self) -> Version | None:
        if CHAMPION not in self.model().aliases:
            return None
        return self.version(CHAMPION, "champion")

    def config_yaml(self, v: Version) -> str:
        """The training run's resolved config (its ``config.yaml`` artifact)."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="riskbrain-promote-") as tmp:
            try:
                path = self.client.download_artifacts(v.run_id, "config.yaml", tmp)
            except MlflowException as e:
                if e.error_code in DENIED:
                    raise
                raise ConfigError(
                    f"config candidate: version {v.version}'s run {v.run_id} has no config.yaml "
                    "artifact (not registered by jobs.train): its data cannot be read again"
                ) from None
            return Path(path).read_text()

    def load(self, v: Version) -> ScoringModel:
        """The version as a ``ScoringModel`` (PD and score, no reasons)."""
        pinned = f"models:/{self.name}/{v.version}"
        ref = ModelRef(
            uri=pinned, pinned=pinned, name=self.name, version=v.version, run_id=v.run_id
        )
        return load_model(ref, self.store, reasons=0)

    def record(
        self,
        experiment: str,
        *,
        run_name: str,
        run_tags: dict[str, str],
        metrics: dict[str, float],
        record: dict,
        version_tags: dict[str, dict[str, str]],
        champion: str | None,
    ) -> None:
        """A decision as a run (tags, metrics, ``promotion.json``), its tags on the versions,
        then ``@champion`` to version ``champion`` (None: unmoved). A failure on the way leaves
        the run FAILED, and so out of the history."""
        from training.tracking.tracker import open_run

        with open_run(TrackingConfig(uri=self.store, experiment=experiment), name=run_name) as run:
            run.set_tags(run_tags)
            run.log_metrics(metrics)
            run.log_dict(record, "promotion.json")
            for version, tags in version_tags.items():
                for key, value in (tags | {"promotion_run_id": run.run_id}).items():
                    self.client.set_model_version_tag(self.name, version, key, value)
            if champion is not None:
                self.client.set_registered_model_alias(self.name, CHAMPION, champion)

    def history(self, experiment: str) -> list[dict]:
        """The finished decision runs of this model, oldest first, as their tags."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = self.client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.registered_model = '{self.name}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"],
            max_results=10_000,
        )
        return [
            {k: r.data.tags.get(k, "") for k in HISTORY_TAGS} | {"run_id": r.info.run_id}
            for r in runs
        ]
