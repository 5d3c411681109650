"""Move ``@champion`` only when a candidate passes the gate: ``python -m jobs.promote name=...``.

    python -m jobs.promote name=credit-risk-synthetic_sme                  # @challenger vs @champion
    python -m jobs.promote name=credit-risk-synthetic_sme candidate=7 --dry-run
    python -m jobs.promote name=credit-risk-synthetic_sme promotion.auc_margin=0.01
    python -m jobs.promote --history credit-risk-synthetic_sme
    python -m jobs.promote name=credit-risk-synthetic_sme rollback=true reason="PSI alert on May book"

The candidate and the champion are re-scored on the hold-out rows of the candidate's own data
config and split (recomputed from the data; both must carry the same data fingerprint) and
checked against the ``promotion.*`` thresholds (``training/governance/promotion.py``). Every decision but a
dry run is recorded: tags on the versions, and a run in the experiment ``promotions`` with
``promotion.json``. This file owns the options and the exit codes; the registry's MLflow calls are
``training/tracking/registry.py``'s.

Options (``key=value``): name, candidate (alias or version; default challenger), dry_run
(or --dry-run), history (or --history <name>), rollback, reason, tracking_uri, experiment
(default promotions), threads, promotion.<threshold>.

Exit codes (``training/constants.py``): 0 promoted (or a dry run that would promote; history;
rollback done), 4 refused (the table says which checks failed), 2 bad input (the line names the option) or not allowed by
the tracking server (the line names the user and the permission it lacks; nothing moved).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from omegaconf import MISSING

from training.config import asks_for_help, from_options
from training.constants import EXIT_OK, EXIT_REFUSED, EXIT_USER_ERROR
from training.errors import ConfigError, RiskbrainError, check
from training.governance.promotion import (
    PROMOTED,
    REFUSED,
    Decision,
    PromotionConfig,
    auc_difference,
    config_from_yaml,
    describe,
    fingerprint_check,
    fingerprint_message,
    format_checks,
    format_history,
    gate,
    holdout,
    measure,
    promotion_decision,
    rollback_decision,
    rollback_target,
)
from training.runtime.process import setup_process
from training.tracking.config import TrackingConfig
from training.tracking.registry import CHAMPION, DENIED, Registry, Version
from training.tracking.secrets import PASSWORD, USERNAME, login, redact
from training.tracking.tracker import tracking_uri


@dataclass(kw_only=True)
class PromoteConfig:
    name: str = MISSING  # the registered model
    candidate: str = "challenger"  # an alias or a version number
    dry_run: bool = False  # print the decision; record and move nothing
    history: bool = False  # print who held @champion when, and every decision
    rollback: bool = False  # move @champion back to the champion before the current one...
    reason: str = ""  # ...for this reason (required)
    tracking_uri: str | None = None
    experiment: str = "promotions"
    threads: int = 0
    promotion: PromotionConfig = field(default_factory=PromotionConfig)

    def __post_init__(self) -> None:
        check(bool(self.name), "name", self.name, "must name a registered model")
        check(bool(self.candidate), "candidate", self.candidate, "must be an alias or a version")
        check(
            not (self.history and self.rollback),
            "history",
            self.history,
            "and rollback=true: choose one",
        )
        check(
            not self.rollback or bool(self.reason.strip()),
            "reason",
            self.reason,
            "is required with rollback=true: say why, it is recorded",
        )


def options(argv: list[str]) -> list[str]:
    """``--dry-run``, ``--history [<name>]`` and ``--rollback`` as their ``key=value`` forms."""
    out, args = [], list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--dry-run":
            out.append("dry_run=true")
        elif arg == "--rollback":
            out.append("rollback=true")
        elif arg == "--history":
            out.append("history=true")
            if args and "=" not in args[0] and not args[0].startswith("-"):
                out.append(f"name={args.pop(0)}")
        else:
            out.append(arg)
    return out


def main(argv: list[str]) -> int:
    if asks_for_help(argv, __doc__):
        return EXIT_OK
    try:
        cfg: PromoteConfig = from_options(PromoteConfig, options(argv))
        setup_process(cfg.threads)
        store = tracking_uri(TrackingConfig(uri=cfg.tracking_uri, experiment=cfg.experiment))
        registry = Registry(store, cfg.name)
        if cfg.history:
            return show_history(cfg, registry)
        if cfg.rollback:
            return rollback(cfg, registry)
        return promote(cfg, registry)
    except RiskbrainError as e:
        print(f"promote: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        if getattr(e, "error_code", None) not in DENIED:
            raise
        print(f"promote: {denied_message(str(e), e.error_code, store, cfg)}", file=sys.stderr)
        return EXIT_USER_ERROR


def denied_message(error: str, code: str, store: str, cfg: PromoteConfig) -> str:
    """One line for a login refused or a permission missing: who, what it lacks, and that
    nothing moved (``record`` moves the alias last, after every other write)."""
    user = login()
    who = f"user {user[0]!r}" if user else f"no user ({USERNAME} not set)"
    if code == "UNAUTHENTICATED":
        return (
            f"{redact(store)} refused the login of {who}: wrong username or password "
            f"({USERNAME} / {PASSWORD}); nothing was moved"
        )
    found = re.search(r"endpoint (\S+)", error)
    endpoint = found.group(1) if found else "?"
    if "/runs/" in endpoint or "/experiments/" in endpoint:
        lacks = f"USE or EDIT on experiment {cfg.experiment!r}, where decisions are recorded"
    elif re.search(r"/registered-models/alias|/model-versions/(set-tag|update)", endpoint):
        lacks = f"EDIT on registered model {cfg.name!r}, to tag its versions and move @{CHAMPION}"
    else:
        lacks = f"READ on registered model {cfg.name!r}"
    return (
        f"{who} was refused by {redact(store)}: permission denied on {endpoint}; "
        f"it needs {lacks} (ask the server's admin). @{CHAMPION} was not moved"
    )


def record(registry: Registry, d: Decision, experiment: str) -> None:
    """The decision in the registry; @champion moves last, and only if it was not refused."""
    registry.record(
        experiment,
        run_name=f"{d.kind} {registry.name} v{d.candidate.version}",
        run_tags=d.run_tags(),
        metrics=d.run_metrics(),
        record=d.record(),
        version_tags=d.version_tags(),
        champion=None if d.result == REFUSED else d.candidate.version,
    )


def promote(cfg: PromoteConfig, registry: Registry) -> int:
    """Gate the candidate against @champion; record the decision and move the alias if it passed."""
    cand = registry.version(cfg.candidate, "candidate")
    champ = registry.champion()
    if champ is not None and champ.version == cand.version:
        raise ConfigError(
            f"config candidate={cfg.candidate}: version {cand.version} already holds @{CHAMPION}"
        )
    decision = judge(cfg, registry, cand, champ)
    print(format_checks(decision.checks))
    if decision.result != PROMOTED:
        print(
            "\nfailed checks:\n" + format_checks([c for c in decision.checks if c.passed is False])
        )
    print(describe(decision, cfg.dry_run))
    if cfg.dry_run:
        print("(dry run: nothing recorded, no alias moved)")
    else:
        record(registry, decision, cfg.experiment)
    return EXIT_OK if decision.result == PROMOTED else EXIT_REFUSED


def judge(cfg: PromoteConfig, registry: Registry, cand: Version, champ: Version | None) -> Decision:
    """The data fingerprints first (no scoring across data sets), then both models on the
    candidate's hold-out rows, then the gate."""
    gate_cfg = cfg.promotion
    if champ is not None and champ.fingerprint != cand.fingerprint:
        why = fingerprint_message(cand, champ, None)
        return promotion_decision(
            cfg.name, cand, champ, [fingerprint_check(cand, champ, None)], gate_cfg, why_data=why
        )
    rows = holdout(config_from_yaml(registry.config_yaml(cand)), gate_cfg.benchmark)
    data = fingerprint_check(cand, champ, rows.fingerprint)
    if not data.passed:
        why = fingerprint_message(cand, champ, rows.fingerprint)
        return promotion_decision(cfg.name, cand, champ, [data], gate_cfg, why_data=why)
    cand_m, p_cand = measure(registry.load(cand), rows, gate_cfg)
    champ_m, diff = None, None
    if champ is not None:
        champ_m, p_champ = measure(registry.load(champ), rows, gate_cfg)
        diff = auc_difference(rows.y, p_cand, p_champ, gate_cfg)
    checks = [data, *gate(cand_m, champ_m, diff, gate_cfg)]
    both = {"candidate": cand_m} | ({"champion": champ_m} if champ_m else {})
    return promotion_decision(cfg.name, cand, champ, checks, gate_cfg, metrics_of=both, diff=diff)


def rollback(cfg: PromoteConfig, registry: Registry) -> int:
    """@champion back to the champion before the current one, with the reason recorded."""
    current = registry.champion()
    records = registry.history(cfg.experiment)
    target = rollback_target(records, current.version if current else None)
    decision = rollback_decision(
        cfg.name, registry.version(target, "rollback"), current, cfg.reason.strip()
    )
    print(describe(decision, cfg.dry_run))
    if cfg.dry_run:
        print("(dry run: nothing recorded, no alias moved)")
    else:
        record(registry, decision, cfg.experiment)
    return EXIT_OK


def show_history(cfg: PromoteConfig, registry: Registry) -> int:
    registry.model()  # an unknown name is bad input, not an empty history
    current = registry.champion()
    records = registry.history(cfg.experiment)
    print(format_history(cfg.name, records, current.version if current else None))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
