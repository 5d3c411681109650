"""The promotion gate: a candidate version and the current ``@champion``, re-scored on the same
hold-out rows, checked against the thresholds of ``PromotionConfig``; the decision record and
the history of who held ``@champion`` when.

Everything here is plain data in, plain data out: ``jobs/promote.py`` finds the versions in the
registry, loads them as ``ScoringModel``s and records the decision in MLflow. The hold-out rows
are recomputed from the candidate's own data config and split (``prepare``), never copied from
logged metrics, and both models must have been trained on data with the same fingerprint.
"""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from training import metrics
from training.config import TrainConfig, to_config
from training.data.schema import Kind, Schema
from training.errors import ConfigError, DataError, check
from training.launch.config import LAUNCHER_CONFIGS
from training.models.config import MODEL_CONFIGS
from training.scoring.books import validate
from training.scoring.drift import psi_against
from training.tracking.registry import CHAMPION, ScoringModel, Version
from training.tracking.tracker import git_commit

log = logging.getLogger("riskbrain")

WRONG = 1e-9  # a PD move the wrong way smaller than this is float noise (as training/governance/checks.py)
PROMOTED, REFUSED, ROLLED_BACK = "promoted", "refused", "rolled_back"
# How the AUC difference is read (PromotionConfig.auc_rule): which number of it must be
# >= -auc_margin, and its name in the table.
AUC_RULES = {
    "estimate": ("delta", "the difference"),
    "non_inferior": ("low", "the lower bound"),
    "not_worse": ("high", "the upper bound"),
}


@dataclass(kw_only=True)
class PromotionConfig:
    """The gate's thresholds. Relative checks compare the candidate with the champion on the
    same rows; absolute floors hold with or without a champion (the first champion must pass
    them alone).

    AUC against the champion reads AUC(candidate) - AUC(champion) on the hold-out rows and its
    ``confidence`` paired-bootstrap interval (``auc_difference``; both recorded) by ``auc_rule``:

    - ``estimate`` (default): the difference must be >= -auc_margin; the interval is shown
      beside it, so a reviewer sees how sure the rows are.
    - ``non_inferior``: the interval's lower bound must be >= -auc_margin: the rows must show
      the candidate is not worse by more than the margin. Strict: the interval on 600 test
      rows was +-0.02 to +-0.04 wide, and refuses an equal or slightly better candidate there.
    - ``not_worse``: the upper bound must be >= -auc_margin: refused only when the rows show
      the candidate worse by more than the margin. Lenient: on 600 rows a candidate 0.10 AUC
      worse (interval [-0.20, +0.03]) passes it.
    """

    auc_margin: float = 0.005  # AUC the candidate may lose to the champion, at most
    auc_rule: str = "estimate"  # or non_inferior, not_worse (see above)
    confidence: float = 0.95  # of the bootstrap interval of the AUC difference
    bootstrap: int = 200  # paired resamples of the hold-out rows
    bootstrap_rows: int = 100_000  # evenly spaced hold-out rows the bootstrap draws from, at most
    seed: int = 0
    ks_margin: float = 0.02  # KS the candidate may lose to the champion
    brier_margin: float = 0.002  # Brier score the candidate may add to the champion's
    min_auc: float = 0.6  # floors on the candidate alone
    max_ece: float = 0.05  # expected calibration error, 10 bins
    max_psi: float = 0.25  # hold-out scores vs the model's training scores (> 0.25: major shift)
    benchmark: bool = True  # refit the GBDT benchmark on the split for the lift check
    min_lift_auc: float = -0.02  # AUC(candidate) - AUC(LightGBM) on the same rows
    max_monotone_violations: int = 0  # hold-out rows moved against a declared direction
    monotone_rows: int = 5_000  # hold-out rows the monotone check perturbs, at most
    min_fairness_ratio: float = 0.8  # lowest / highest approval rate across groups: the 80 % rule
    check_reasons: bool = True  # the reasons must add up (within the model's explain.tolerance)
    reasons_rows: int = 500  # hold-out rows whose reasons are checked, at most

    def __post_init__(self) -> None:
        for key in ("auc_margin", "ks_margin", "brier_margin", "max_ece", "max_psi"):
            value = getattr(self, key)
            check(value >= 0, f"promotion.{key}", value, "must be >= 0")
        check(
            self.auc_rule in AUC_RULES,
            "promotion.auc_rule",
            self.auc_rule,
            f"must be one of {list(AUC_RULES)}",
        )
        check(0 < self.confidence < 1, "promotion.confidence", self.confidence, "must be in (0, 1)")
        for key in ("bootstrap", "bootstrap_rows", "monotone_rows", "reasons_rows"):
            check(getattr(self, key) > 0, f"promotion.{key}", getattr(self, key), "must be > 0")
        check(0 <= self.min_auc <= 1, "promotion.min_auc", self.min_auc, "must be in [0, 1]")
        check(
            self.max_monotone_violations >= 0,
            "promotion.max_monotone_violations",
            self.max_monotone_violations,
            "must be >= 0",
        )
        check(
            0 <= self.min_fairness_ratio <= 1,
            "promotion.min_fairness_ratio",
            self.min_fairness_ratio,
            "must be in [0, 1]",
        )


# ---------------------------------------------------------------------------------------------
# The hold-out rows, recomputed from the candidate's training config


def config_from_yaml(text: str) -> TrainConfig:
    """A training run's ``config.yaml`` back into the typed tree, every check run again: the
    model and launcher nodes take the dataclass their ``name`` selects."""
    raw = OmegaConf.create(text)
    try:
        schema = OmegaConf.structured(TrainConfig)
        schema.model = OmegaConf.structured(MODEL_CONFIGS[raw.model.name])
        schema.launcher = OmegaConf.structured(LAUNCHER_CONFIGS[raw.launcher.name])
        merged = OmegaConf.merge(schema, raw)
    except Exception as e:  # an older config with a key this code no longer has, say
        raise ConfigError(f"the run's config.yaml does not fit this code's schema: {e}") from None
    return to_config(merged)


@dataclass(frozen=True)
class Holdout:
    """The test rows of the candidate's split, raw, as a served model reads them.

    Shape: ``frame`` (n, columns: features, target, protected, period); ``y`` (n,) 0/1;
    ``groups[col]`` (n,) group labels of each protected column.
    """

    frame: pd.DataFrame
    y: np.ndarray
    schema: Schema
    fingerprint: str
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    benchmark_auc: float | None = None  # LightGBM on the same split, scored on these rows
    approve_rate: float = 0.8  # the fairness report's cut-off: approve this share, lowest PD
    min_rows: int = 30  # smaller groups are left out of the approval-rate ratio


def holdout(cfg: TrainConfig, benchmark: bool) -> Holdout:
    """Read and split the data as the candidate's training run did (one process), keeping every
    test row raw; refit the GBDT benchmark on the same split when ``benchmark``."""
    from training.data.prepare import prepare
    from training.governance.benchmark import gbdt_benchmark
    from training.runtime.dist import DistContext

    cfg.benchmark.enabled = True  # prepare keeps every test row raw for the benchmark
    data = prepare(cfg.data, benchmark_rows=cfg.benchmark.rows)
    gbdt = gbdt_benchmark(cfg.benchmark, data, DistContext()) if benchmark else None
    fair = getattr(cfg, "fairness", None)
    frame = data.evaluation.frames["test"].reset_index(drop=True)
    if data.training.schema.history is not None:  # the loans' events, as a request sends them
        from training.data.book import requests_of_rows

        requests = requests_of_rows(cfg.data, data.evaluation.split.test)
        frame = pd.concat([frame.drop(columns=requests.columns, errors="ignore"), requests], axis=1)
    return Holdout(
        frame=frame,
        y=data.tensors("test").y.numpy().astype(np.int64),
        schema=data.training.schema,
        fingerprint=data.training.fingerprint,
        groups=data.evaluation.groups,
        benchmark_auc=gbdt["test"]["auc"] if gbdt else None,
        approve_rate=fair.approve_rate if fair else 0.8,
        min_rows=fair.min_rows if fair else 30,
    )


# ---------------------------------------------------------------------------------------------
# Measuring one model on the hold-out rows


def measure(model: ScoringModel, h: Holdout, cfg: PromotionConfig) -> tuple[dict, np.ndarray]:
    """Every metric the gate reads for one model, and its PD per hold-out row.

    Shape: returns ({metric: value}, p (n,))."""
    ready, rejects = validate(h.frame, model.inputs, model.sources, model.dates)
    if len(rejects):
        first = rejects.iloc[0]
        raise DataError(
            f"{len(rejects)} hold-out rows do not fit the model's columns, first: row "
            f"{first['row']}, column {first['column']} = {first['value']!r} ({first['reason']})"
        )
    out = model.predict(ready[list(model.inputs)])
    p = out["pd"].to_numpy(np.float64)
    m: dict[str, Any] = metrics.evaluate(h.y, p)
    reference = model.score_reference
    m["psi_score"] = psi_against(reference, out[model.score_column]) if reference else None
    m["benchmark_auc"] = h.benchmark_auc
    m["lift_auc"] = m["auc"] - h.benchmark_auc if h.benchmark_auc is not None else None
    rows = ready.iloc[: cfg.monotone_rows]
    moved = monotone_violations(model, rows, h.schema, p[: cfg.monotone_rows])
    m["monotone_violations"] = sum(moved.values())
    m["monotone"] = moved
    m["fairness_ratio"] = fairness_ratio(h, p)
    errors = model.reasons_errors(ready.iloc[: cfg.reasons_rows]) if model.reasons_errors else None
    m["reasons_max_error"] = (
        float(np.abs(errors).max()) if errors is not None and len(errors) else None
    )
    m["reasons_tolerance"] = model.reasons_tolerance
    return m, p


def raise_step(x: np.ndarray) -> float:
    """How far a numeric feature is raised: half its interquartile range on the rows where it
    has a value (half its standard deviation where most rows share one value; else 1)."""
    q25, q75 = np.quantile(x, [0.25, 0.75]) if len(x) else (0.0, 0.0)
    for step in (0.5 * (q75 - q25), 0.5 * (np.std(x) if len(x) else 0.0)):
        if step > 0:
            return float(step)
    return 1.0


def monotone_violations(
    model: ScoringModel, rows: pd.DataFrame, schema: Schema, base: np.ndarray
) -> dict[str, int]:
    """Per feature declared monotone: the rows whose PD moves against the declared direction
    when the feature is raised in raw space (numeric: by ``raise_step``; binary: 0 -> 1), on
    rows where it has a value (not missing, not a sentinel code). One ``predict`` call for all.

    Shape: ``rows`` (n, model inputs) as ``validate`` gives them; ``base`` (n,) their PDs."""
    declared = [f for f in schema.features if f.monotone and f.kind != Kind.categorical]
    frames, masks = [], []
    for f in declared:
        x = rows[f.name].to_numpy(np.float64)
        codes = [float(c) for c in [*f.sentinels, *f.missing] if isinstance(c, int | float)]
        has = ~np.isnan(x) & ~np.isin(x, codes)
        raised = rows.copy()
        if f.kind == Kind.binary:
            has &= x == 0
            raised[f.name] = np.where(has, 1.0, x)
        else:
            raised[f.name] = x + raise_step(x[has])
        frames.append(raised)
        masks.append(has)
    if not declared:
        return {}
    p = model.predict(pd.concat(frames, ignore_index=True))["pd"].to_numpy(np.float64)
    p = p.reshape(len(declared), len(rows))
    return {
        f.name: int((has & ((p[i] - base) * f.monotone < -WRONG)).sum())
        for i, (f, has) in enumerate(zip(declared, masks, strict=True))
    }


def fairness_ratio(h: Holdout, p: np.ndarray) -> float | None:
    """The lowest approval-rate ratio over the protected columns (the 80 % rule reads it); None
    when the data declare no protected column or no column has two groups large enough."""
    if not h.groups:
        return None
    from training.governance.fairness import fairness_table

    table = fairness_table(h.y, p, h.groups, h.approve_rate, h.min_rows)
    ratios = [a["approval_ratio"] for a in table["attributes"].values()]
    ratios = [r for r in ratios if r is not None]
    return float(min(ratios)) if ratios else None


def auc_difference(
    y: np.ndarray, p_candidate: np.ndarray, p_champion: np.ndarray, cfg: PromotionConfig
) -> dict:
    """AUC(candidate) - AUC(champion) on the same rows and its paired percentile bootstrap
    interval: each resample draws rows with replacement and scores both models on them."""
    delta = metrics.auc(y, p_candidate) - metrics.auc(y, p_champion)
    if len(y) > cfg.bootstrap_rows:
        keep = np.linspace(0, len(y) - 1, cfg.bootstrap_rows).astype(np.int64)
        y, p_candidate, p_champion = y[keep], p_candidate[keep], p_champion[keep]
    rng = np.random.default_rng(cfg.seed)
    draws = []
    for _ in range(cfg.bootstrap):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):  # AUC needs both classes
            draws.append(
                metrics.auc(y[pick], p_candidate[pick]) - metrics.auc(y[pick], p_champion[pick])
            )
    if not draws:
        raise DataError(f"no bootstrap resample of {len(y)} hold-out rows holds both classes")
    tails = [(1 - cfg.confidence) / 2 * 100, (1 + cfg.confidence) / 2 * 100]
    low, high = np.percentile(draws, tails)
    return {
        "delta": float(delta),
        "low": float(low),
        "high": float(high),
        "confidence": cfg.confidence,
        "resamples": len(draws),
        "rows": len(y),
    }


# ---------------------------------------------------------------------------------------------
# The checks


@dataclass(frozen=True)
class Check:
    """One line of the gate's table; ``passed`` None: not applicable (the rule says why)."""

    name: str
    candidate: Any
    champion: Any
    rule: str
    passed: bool | None


def _floor(name: str, cand: dict, champ: dict, op: str, limit: float, na: str = "") -> Check:
    """An absolute limit on the candidate's ``name`` (the champion's value is shown beside it)."""
    value = cand.get(name)
    if value is None:
        return Check(name, None, champ.get(name), f"n/a: {na}", None)
    ok = value >= limit if op == ">=" else value <= limit
    return Check(name, value, champ.get(name), f"{op} {limit:g}", bool(ok))


def against_champion(cand: dict, champ: dict, diff: dict, cfg: PromotionConfig) -> list[Check]:
    """AUC (by ``cfg.auc_rule``), KS and Brier: what the candidate may lose to the champion."""
    level, (key, read) = f"{100 * diff['confidence']:g}%", AUC_RULES[cfg.auc_rule]
    shown = f"{diff['delta']:+.4f}, {level} CI [{diff['low']:+.4f}, {diff['high']:+.4f}]"
    auc_rule = f"difference {shown}: {read} >= {-cfg.auc_margin:+g} ({cfg.auc_rule})"
    ks_floor, brier_ceiling = champ["ks"] - cfg.ks_margin, champ["brier"] + cfg.brier_margin
    return [
        Check("auc_vs_champion", cand["auc"], champ["auc"], auc_rule, diff[key] >= -cfg.auc_margin),
        Check("ks_vs_champion", cand["ks"], champ["ks"], f">= champion - {cfg.ks_margin:g}",
              cand["ks"] >= ks_floor),
        Check("brier_vs_champion", cand["brier"], champ["brier"],
              f"<= champion + {cfg.brier_margin:g}", cand["brier"] <= brier_ceiling),
    ]  # fmt: skip


def floors(cand: dict, champ: dict, cfg: PromotionConfig) -> list[Check]:
    """The limits on the candidate alone (the champion's values are shown beside it)."""
    return [
        _floor("auc", cand, champ, ">=", cfg.min_auc),
        _floor("ece", cand, champ, "<=", cfg.max_ece),
        _floor("psi_score", cand, champ, "<=", cfg.max_psi, "the model has no training scores"),
        _floor("lift_auc", cand, champ, ">=", cfg.min_lift_auc, "promotion.benchmark=false"),
        _floor("monotone_violations", cand, champ, "<=", cfg.max_monotone_violations),
        _floor("fairness_ratio", cand, champ, ">=", cfg.min_fairness_ratio,
               "no protected column with two groups of fairness.min_rows rows"),
        reasons_check(cand, champ, cfg),
    ]  # fmt: skip


def reasons_check(cand: dict, champ: dict, cfg: PromotionConfig) -> Check:
    """The candidate's reasons add up: the largest completeness error over the hold-out rows
    checked is within the model's own ``explain.tolerance`` (logits)."""
    name, tolerance = "reasons_completeness", cand.get("reasons_tolerance")
    if not cfg.check_reasons:
        return Check(name, cand.get("reasons_max_error"), champ.get("reasons_max_error"),
                     "n/a: promotion.check_reasons=false", None)  # fmt: skip
    if cand.get("reasons_max_error") is None or tolerance is None:
        return Check(
            name, None, champ.get("reasons_max_error"), "n/a: the model gives no reasons", None
        )
    value = cand["reasons_max_error"]
    rule = f"max error <= {tolerance:g} logits (the model's explain.tolerance)"
    return Check(name, value, champ.get("reasons_max_error"), rule, bool(value <= tolerance))


def gate(cand: dict, champ: dict | None, diff: dict | None, cfg: PromotionConfig) -> list[Check]:
    """Every check of the candidate's metrics: against the champion's (not applicable while
    there is none), then the floors."""
    if champ is None or diff is None:
        pairs = (
            ("auc_vs_champion", "auc"),
            ("ks_vs_champion", "ks"),
            ("brier_vs_champion", "brier"),
        )
        relative = [Check(n, cand[k], None, "n/a: no champion yet", None) for n, k in pairs]
    else:
        relative = against_champion(cand, champ, diff, cfg)
    return relative + floors(cand, champ or {}, cfg)


def fingerprint_check(cand: Version, champ: Version | None, recomputed: str | None) -> Check:
    """The candidate's data as tagged, as recomputed from its config now, and the champion's:
    all one fingerprint, or the models cannot be compared on the same rows."""
    ok = (recomputed is None or recomputed == cand.fingerprint) and (
        champ is None or champ.fingerprint == cand.fingerprint
    )
    rule = "all equal" + (f" (recomputed from the data: {recomputed})" if recomputed else "")
    return Check("data_fingerprint", cand.fingerprint, champ and champ.fingerprint, rule, ok)


def fingerprint_message(cand: Version, champ: Version | None, recomputed: str | None) -> str:
    """Why a ``data_fingerprint`` check failed, naming the fingerprints."""
    if champ is not None and champ.fingerprint != cand.fingerprint:
        return (
            f"candidate version {cand.version} was trained on data fingerprint "
            f"{cand.fingerprint}, @{CHAMPION} version {champ.version} on {champ.fingerprint}: "
            "models of different data are not compared; train the candidate on the champion's "
            "data (same data config and split)"
        )
    return (
        f"candidate version {cand.version} is tagged data fingerprint {cand.fingerprint}, but "
        f"its data config now gives {recomputed}: the data changed since it was trained"
    )


# ---------------------------------------------------------------------------------------------
# The decision and its record


def who() -> dict[str, str]:
    """When, by whom, where and from which commit a decision was made."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"time": now, "user": user, "host": socket.gethostname(), "git_commit": git_commit()}


@dataclass(kw_only=True)
class Decision:
    """One promotion or rollback: what was compared, every metric, the checks and the result."""

    kind: str  # promote | rollback
    name: str  # the registered model
    candidate: Version  # the version that would hold @champion after
    champion: Version | None  # the version that held it before
    result: str  # promoted | refused | rolled_back
    reason: str
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)  # "candidate" / "champion" -> metrics
    auc_difference: dict | None = None
    thresholds: dict = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=who)  # time, user, host, git_commit

    @property
    def champion_after(self) -> str:
        if self.result != REFUSED:
            return self.candidate.version
        return self.champion.version if self.champion else ""

    def record(self) -> dict:
        """``promotion.json``: everything needed to audit the decision later."""
        champion = (
            asdict(self.champion) | {"metrics": self.metrics.get("champion")}
            if self.champion
            else None
        )
        return {
            "kind": self.kind,
            "registered_model": self.name,
            "result": self.result,
            "reason": self.reason,
            "candidate": asdict(self.candidate) | {"metrics": self.metrics.get("candidate")},
            "previous_champion": champion,
            "champion_after": self.champion_after,
            "auc_difference": self.auc_difference,
            "thresholds": self.thresholds,
            "checks": [asdict(c) for c in self.checks],
        } | self.context

    def run_tags(self) -> dict[str, str]:
        """The decision's MLflow run is found and listed by these (``--history``)."""
        return {
            "registered_model": self.name,
            "kind": self.kind,
            "result": self.result,
            "candidate_version": self.candidate.version,
            "previous_champion": self.champion.version if self.champion else "",
            "champion": self.champion_after,
            "reason": self.reason[:500],
        } | self.context

    def run_metrics(self) -> dict[str, float]:
        """The numbers of both models as run metrics (``candidate_auc``, ``champion_auc``, ...)."""
        out = {}
        for who, m in self.metrics.items():
            out |= {f"{who}_{k}": float(v) for k, v in m.items() if isinstance(v, int | float)}
        if self.auc_difference:
            out |= {f"auc_difference_{k}": self.auc_difference[k] for k in ("delta", "low", "high")}
        return out

    def version_tags(self) -> dict[str, dict[str, str]]:
        """Version -> the tags it gets: its latest promotion decision, in brief."""

        def tags(result: str, reason: str) -> dict[str, str]:
            return {
                "promotion_result": result,
                "promotion_time": self.context["time"],
                "promotion_reason": reason[:500],
            }

        out = {
            self.candidate.version: tags(
                "restored" if self.kind == "rollback" else self.result, self.reason
            )
        }
        if self.champion is not None and self.result == PROMOTED:
            out[self.champion.version] = tags(
                "replaced", f"replaced by version {self.candidate.version}"
            )
        elif self.champion is not None and self.result == ROLLED_BACK:
            out[self.champion.version] = tags(ROLLED_BACK, self.reason)
        return out


def promotion_decision(
    name: str,
    cand: Version,
    champ: Version | None,
    checks: list[Check],
    cfg: PromotionConfig,
    *,
    metrics_of: dict[str, dict] | None = None,
    diff: dict | None = None,
    why_data: str = "",
) -> Decision:
    """Promoted when no check failed; refused otherwise, the reason naming the failed checks
    (or, for the data fingerprint, the fingerprints)."""
    failed = [c.name for c in checks if c.passed is False]
    applied = sum(c.passed is not None for c in checks)
    if why_data and "data_fingerprint" in failed:
        reason = why_data
    elif failed:
        reason = f"{len(failed)} of {applied} checks failed: {', '.join(failed)}"
    else:
        reason = f"all {applied} applicable checks passed"
    return Decision(
        kind="promote",
        name=name,
        candidate=cand,
        champion=champ,
        result=REFUSED if failed else PROMOTED,
        reason=reason,
        checks=checks,
        metrics=metrics_of or {},
        auc_difference=diff,
        thresholds=asdict(cfg),
    )


def rollback_decision(name: str, target: Version, current: Version, reason: str) -> Decision:
    """@champion back from ``current`` to ``target``: no gate, the reason recorded."""
    return Decision(
        kind="rollback",
        name=name,
        candidate=target,
        champion=current,
        result=ROLLED_BACK,
        reason=reason,
    )


# ---------------------------------------------------------------------------------------------
# Output: the checks, the decision line, the history


def table(header: list[str], rows: list[list[str]]) -> str:
    """Plain columns, left aligned, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_checks(checks: list[Check]) -> str:
    rows = [
        [
            c.name,
            _show(c.candidate),
            _show(c.champion),
            c.rule,
            {True: "pass", False: "FAIL", None: "n/a"}[c.passed],
        ]
        for c in checks
    ]
    return table(["check", "candidate", "champion", "rule", "result"], rows)


def describe(d: Decision, dry_run: bool = False) -> str:
    """The decision in one line."""
    champ = f"version {d.champion.version}" if d.champion else "none"
    if d.result == ROLLED_BACK:
        verb = "would move" if dry_run else "moved"
        return (
            f"ROLLBACK: @{CHAMPION} of {d.name} {verb} from {champ} back to version "
            f"{d.candidate.version} ({d.reason})"
        )
    if d.result == REFUSED:
        return (
            f"REFUSED: version {d.candidate.version} of {d.name} is not promoted ({d.reason}); "
            f"@{CHAMPION} stays {champ}"
        )
    verb = "would become" if dry_run else "is now"
    return (
        f"PROMOTED: version {d.candidate.version} of {d.name} {verb} @{CHAMPION} "
        f"(before: {champ}); {d.reason}"
    )


def champion_periods(records: list[dict]) -> list[dict]:
    """Who held @champion when, from the decisions in time order (run tags, ``Decision.run_tags``)."""
    periods: list[dict] = []
    for r in records:
        if r["result"] not in (PROMOTED, ROLLED_BACK):
            continue
        if periods:
            periods[-1]["until"] = r["time"]
        how = "rolled back: " + r["reason"] if r["result"] == ROLLED_BACK else "promoted"
        periods.append(
            {"version": r["champion"], "since": r["time"], "until": "", "by": r["user"], "how": how}
        )
    return periods


def rollback_target(records: list[dict], current: str | None) -> str:
    """The champion before the current one: each promotion pushes its version, each rollback
    pops one, so rolling back twice undoes the last two promotions."""
    stack: list[str] = []
    for r in records:
        if r["result"] == PROMOTED:
            stack.append(r["champion"])
        elif r["result"] == ROLLED_BACK and stack:
            stack.pop()
    if current is None:
        raise ConfigError(f"config rollback=true: no version holds @{CHAMPION}")
    if not stack or stack[-1] != current:
        raise ConfigError(
            f"config rollback=true: @{CHAMPION} is version {current}, but the promotion history "
            f"ends with {stack[-1] if stack else 'no champion'}: the alias was moved outside "
            "jobs.promote; move it by hand"
        )
    if len(stack) < 2:
        raise ConfigError(
            f"config rollback=true: version {current} is the first @{CHAMPION}; "
            "there is no earlier one to roll back to"
        )
    return stack[-2]


def format_history(name: str, records: list[dict], current: str | None) -> str:
    """Two tables: who held @champion when, and every decision (oldest first)."""
    held = [
        [p["version"], p["since"], p["until"] or "now", p["by"], p["how"]]
        for p in champion_periods(records)
    ]
    decisions = [
        [
            r["time"],
            r["kind"],
            r["result"],
            r["candidate_version"],
            r["previous_champion"] or "-",
            r["champion"] or "-",
            f"{r['user']}@{r['host']}",
            r["reason"],
        ]
        for r in records
    ]
    return "\n".join(
        [
            f"@{CHAMPION} of {name} (now: {'version ' + current if current else 'none'})",
            table(["version", "since", "until", "by", "how"], held) if held else "(never held)",
            "",
            f"decisions ({len(records)}, oldest first)",
            table(
                [
                    "time",
                    "kind",
                    "result",
                    "candidate",
                    "champion before",
                    "champion after",
                    "by",
                    "reason",
                ],
                decisions,
            )
            if decisions
            else "(none)",
        ]
    )
