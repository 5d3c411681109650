"""The model card of a registered version: what it is for, what it was trained on, how it was
built, how well it does and where it falls short, and how to reproduce it.

Built from the run's evaluation report, its plots and its resolved config, as Markdown
(``model_card.md``, plots linked as ``plots/<name>.png``) and as one self-contained HTML page
(``model_card.html``: CSS inline, PNGs embedded as data URIs, and a content security policy
that forbids loading anything else). Each section is built once as a few plain blocks (text,
list, table, image, code) that both renderers draw, so the two files say the same thing.
It reads the typed report (``training/report.py``); a part the report lacks is said so in the
card, never a reason not to write it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from training.report import Member, Metrics, RecipeSummary, Report, TrialMember

PSI_BANDS = (0.10, 0.25)  # stable below the first, a major shift from the second
FOUR_FIFTHS = 0.8  # the 80 % rule: lowest group approval rate / highest
POOR_ECE = 0.05  # above this, the PDs are not usable as probabilities as they stand
FEW_TEST_ROWS, FEW_TEST_DEFAULTS = 1_000, 100
WARN = "⚠"  # marks a value a reader must not miss (shown in red in the HTML)
METRICS = (
    ("auc", "AUC"), ("gini", "Gini"), ("ks", "KS"), ("brier", "Brier score"),
    ("log_loss", "log loss"), ("ece", "ECE (10 bins)"),
)  # fmt: skip
PLOTS = (
    ("roc.png", "ROC on the test rows"),
    ("calibration.png", "Calibration on the test rows"),
    ("ks.png", "KS: cumulative PD of goods and defaults"),
    ("score_distribution.png", "PD distribution of goods and defaults"),
)
INTENDED_USE = (
    "Estimates the probability of default (PD) of a credit applicant, with a scorecard score "
    "and ranked reason codes, to support credit decisions (approve, decline, limit, price) about "
    "applicants like the training population: the same kind of borrower, product, market and "
    "period. The PD informs a credit officer's or a credit policy's decision; it is not the "
    "decision."
)
OUT_OF_SCOPE = (
    "Not for populations, products, markets or periods unlike the training data (watch the PSI "
    "of scored portfolios), nor for any decision based on a protected attribute. Not a "
    "regulatory capital (IRB) model: it has not been through model validation."
)
FIXED_CAVEATS = (
    "Trained only on applicants whose outcome was observed (booked loans): no reject inference, "
    "so PDs for applicants unlike those approved in the past are extrapolations.",
    "PDs are calibrated to the training period's default rate; a change of economic cycle or "
    "of acquisition policy shifts them. Monitor the PSI and the realised default rate.",
    "Fairness is measured only for the protected attributes declared in the data config, and "
    "only on the test rows; attributes that were not recorded cannot be checked.",
    "The metrics are on one held-out test split; the confidence intervals cover sampling noise "
    "of those rows, not a change of population.",
)


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Sub:
    title: str


@dataclass(frozen=True)
class Items:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    name: str  # a file in the plots folder
    caption: str


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""
    summary: str = ""  # set: the block is collapsible, closed at first


Block = Text | Sub | Items | Table | Image | Code
Section = tuple[str, list[Block]]


def write_card(
    report: Report, plots: Path, out_dir: Path, *, config_text: str, command: str, title: str,
    commit: str = "", date: str = "",
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``model_card.md`` and ``model_card.html`` into ``out_dir`` from the evaluation
    ``report``, the PNGs in ``plots`` and the resolved config (YAML text); return both paths.
    ``command``, ``commit`` and ``date`` are how and when the run was started."""
    sections = card_sections(
        report, config_text=config_text, command=command, commit=commit, date=date
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = _write(out_dir / "model_card.md", to_markdown(title, sections, Path(plots)))
    page = _write(out_dir / "model_card.html", to_html(title, sections, Path(plots)))
    return md, page


def card_sections(
    report: Report, *, config_text: str, command: str, commit: str = "", date: str = ""
) -> list[Section]:
    """The card's twelve sections, in reading order."""
    cfg = _parse_config(config_text)
    return [
        ("Model", _model(report, cfg, commit, date)),
        ("Data", _data(report)),
        ("Architecture and recipe", _recipe(report, cfg)),
        ("Test metrics", _metrics(report)),
        ("GBDT benchmark", _benchmark(report, cfg)),
        ("Plots", [Image(name, caption) for name, caption in PLOTS]),
        ("Stability", _stability(report)),
        ("Monotonicity", _monotonicity(report)),
        ("Reason codes", _reasons(report)),
        ("Fairness", _fairness(report)),
        ("Limitations", _limitations(report)),
        ("Reproduce", _reproduce(report, config_text, command, commit)),
    ]


# ---- formatting ----------------------------------------------------------------------------


def _num(x, digits: int = 4) -> str:
    """A number to ``digits`` decimals; None, NaN or a missing value: "n/a"."""
    if x is None or isinstance(x, bool):
        return "n/a" if x is None else str(x).lower()
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "n/a" if math.isnan(f) else f"{f:.{digits}f}"


def _pct(x) -> str:
    return "n/a" if _num(x) == "n/a" else f"{float(x):.2%}"


def _count(x) -> str:
    return "n/a" if _num(x) == "n/a" else f"{int(x):,}"


def _value(v) -> str:
    """A config value as YAML would show it."""
    if v is None or isinstance(v, bool):
        return "null" if v is None else str(v).lower()
    if isinstance(v, list | dict):
        return json.dumps(v) if v else ("[]" if isinstance(v, list) else "{}")
    return f"{v:g}" if isinstance(v, float) else str(v)


def _said(x) -> str:
    """A value as text; None: "n/a"."""
    return "n/a" if x is None else str(x)


def _flag(text: str, bad: bool) -> str:
    return f"{WARN} {text}" if bad else text


def _facts(pairs: list[tuple[str, str]]) -> Table:
    return Table(["", ""], [[k, v] for k, v in pairs])


def _config_table(cfg: dict, key: str) -> list[Block]:
    part = cfg.get(key)
    if not isinstance(part, dict) or not part:
        return [Text(f"No {key} section in the config.")]
    return [Table(["key", "value"], [[f"{key}.{k}", _value(v)] for k, v in part.items()])]


def _parse_config(config_text: str) -> dict:
    try:
        cfg = yaml.safe_load(config_text or "")
    except yaml.YAMLError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _section_of(cfg: dict, key: str) -> dict:
    part = cfg.get(key)
    return part if isinstance(part, dict) else {}


# ---- the sections --------------------------------------------------------------------------


def _model(report: Report, cfg: dict, commit: str, date: str) -> list[Block]:
    reg, pending = report.registered, "pending: not in the tracking store yet (jobs.sync)"
    if reg:
        alias = f"@{reg.alias}" if reg.alias else "none moved (see the run's log)"
        registered = [("registered model", str(reg.name)),
                      ("version", str(reg.version or pending)), ("alias", alias)]  # fmt: skip
    else:
        registered = [("registered model", "not registered (registry.register=false)")]
    pairs = registered + [
        ("MLflow run", str(report.run_id or pending)),
        ("model URI", str(report.model_uri or pending)),
        ("data set", str(_section_of(cfg, "data").get("name", "n/a"))),
        ("model", str(_section_of(cfg, "model").get("name", "n/a"))),
        ("date", date or "not given"),
        ("git commit", commit or "not given"),
    ]
    return [
        _facts(pairs),
        Sub("Intended use"),
        Text(INTENDED_USE),
        Sub("Out of scope"),
        Text(OUT_OF_SCOPE),
    ]


def _data(report: Report) -> list[Block]:
    data = report.data
    protected = data.protected if data else []
    pairs = [
        ("source", str(data.source) if data else "n/a"),
        ("rows", _count(data and data.rows)),
        ("data fingerprint", _said(report.data_fingerprint)),
        ("unused columns", ", ".join(data.unused_columns if data else []) or "none"),
        ("protected columns", ", ".join(protected) or "none declared (data.protected)"),
    ]
    out: list[Block] = [_facts(pairs), Sub("Split")]
    split = report.split
    if not split:
        return out + [Text("No split in the report.")]
    how = f"{split.method} split, seed {split.seed}"
    if split.method == "time":
        how += (
            f", by {split.period_column}: validation from {split.valid_from}, "
            f"test from {split.test_from}"
        )
    total = sum(p.rows for p in split.parts().values()) or 1
    rows = [
        [name, _count(p.rows), _pct(p.rows / total), _pct(p.default_rate)]
        for name, p in split.parts().items()
    ]
    return out + [Text(how + "."), Table(["part", "rows", "share", "default rate"], rows)]


def _recipe(report: Report, cfg: dict) -> list[Block]:
    if not cfg:
        out: list[Block] = [Text("No config given: the architecture and recipe are unknown.")]
    else:
        launcher = _section_of(cfg, "launcher")
        out = [
            Text(
                f"Launcher {launcher.get('name', 'n/a')}, "
                f"{launcher.get('parallelism', 'data')} parallelism; seed {cfg.get('seed', 'n/a')}."
            )
        ]
        for key, name in (("model", "Network"), ("optim", "Optimiser"), ("trainer", "Trainer")):
            out += [Sub(name), *_config_table(cfg, key)]
    training = report.training
    out += [
        Sub("How training went"),
        _facts([
            ("epochs run", _said(training and training.epochs_run)),
            ("best epoch (weights kept)", _said(training and training.best_epoch)),
            ("best validation AUC", _num(training and training.best_valid_auc)),
            ("processes", _said(training and training.world_size)),
        ]),
    ]  # fmt: skip
    return out + _chosen(report.recipe) + _ensemble(report.ensemble or [])


def _chosen(recipe: RecipeSummary | None) -> list[Block]:
    """``recipe=auto``: every candidate tried, on the validation rows, and the one kept."""
    if recipe is None:
        return []
    header = ["candidate", "changes", "validation AUC", "validation ECE (uncalibrated)",
              "epochs", "seconds", ""]  # fmt: skip
    rows = [
        [c.name, ", ".join(f"{k}={v}" for k, v in c.changes.items()) or "(as composed)",
         _num(c.valid_auc), _num(c.valid_ece), _said(c.epochs_run),
         _num(c.seconds, 0), "chosen" if c.chosen else (c.skipped or "")]
        for c in recipe.candidates
    ]  # fmt: skip
    how = (
        f"recipe=auto tried {len(rows)} recipes on the training rows within "
        f"{recipe.budget_minutes:g} minutes and kept {recipe.chosen} ({recipe.chosen_by}); the "
        "model above is that recipe, trained again as the job's model. Test rows were not used."
    )
    return [Sub("Recipe chosen for this file"), Text(how), Table(header, rows)]


def _ensemble(members: list[Member | TrialMember]) -> list[Block]:
    """The networks whose mean PD the model is: an ensemble-parallel job's ranks, or a sweep's
    best trials."""
    ranks = [m for m in members if isinstance(m, Member)]
    trials = [m for m in members if isinstance(m, TrialMember)]
    out: list[Block] = []
    if ranks:
        header = ["member", "seed", "epochs run", "best epoch", "best validation AUC"]
        rows = [
            [str(m.member), str(m.seed), str(m.epochs_run), str(m.best_epoch),
             _num(m.best_valid_auc)]
            for m in ranks
        ]  # fmt: skip
        out += [Sub(f"Ensemble of {len(ranks)} (PD = the members' mean)"), Table(header, rows)]
    if trials:
        header = ["trial", "MLflow run", trials[0].metric]
        rows = [[t.trial, t.run_id, _num(t.objective)] for t in trials]
        title = f"Ensemble of the best {len(trials)} sweep trials (PD = the members' mean)"
        out += [Sub(title), Table(header, rows)]
    return out


def _metrics(report: Report) -> list[Block]:
    test, valid, ci = report.test, report.valid, report.test_ci
    if not test:
        return [Text("No test metrics in the report.")]

    def interval(key: str) -> str:
        # Intervals holds AUC, KS, Brier and ECE only
        bounds = getattr(ci, key, None)
        return f"[{_num(bounds[0])}, {_num(bounds[1])}]" if bounds else "n/a"

    rows = [
        [name, _num(getattr(test, k)), interval(k), _num(getattr(valid, k) if valid else None)]
        for k, name in METRICS
    ]
    out: list[Block] = [
        Text(
            f"{_count(test.n)} test rows, default rate {_pct(test.default_rate)}, "
            f"mean PD {_pct(test.mean_pd)}."
        ),
        Table(["metric", "test", "95% CI (test)", "validation"], rows),
    ]
    if ci:
        out.append(Text(f"Bootstrap percentile intervals over {ci.resamples} resamples."))
    else:
        out.append(Text("No bootstrap confidence intervals in the report (test_ci)."))
    if (bayes := report.bayes_auc_test) is not None:
        out.append(
            Text(
                f"Bayes-optimal test AUC (the true PDs are known): {_num(bayes)}; "
                f"gap {_num(bayes - test.auc)}."
            )
        )
    return out + _calibration(report)


def _calibration(report: Report) -> list[Block]:
    cal = report.calibration
    if cal is None:
        return [Sub("Calibration"), Text("No PD calibration in the report (an older run).")]
    said = {"temperature": f"logit x {_num(cal.scale)}",
            "platt": f"{_num(cal.scale)} x logit {cal.shift:+.4f}",
            "isotonic": "a monotone piecewise-linear map of the logit"}  # fmt: skip
    pairs = [
        ("method", f"{cal.method} ({said[cal.method]})" if cal.method in said else cal.method),
        ("chosen by", cal.chosen_by),
        ("validation log loss", f"{_num(cal.valid_log_loss_before, 5)} -> {_num(cal.valid_log_loss_after, 5)}"),
        ("test ECE (10 bins)", f"{_num(cal.test_ece_before)} -> {_num(cal.test_ece_after)}"),
    ]  # fmt: skip
    return [
        Sub("Calibration"),
        Text("The PD is calibrated on the validation rows after training, and served so: the "
             "metrics above are the calibrated PDs' (before -> after below; the calibration "
             "plot draws both)."),
        _facts(pairs),
    ]  # fmt: skip


def _benchmark(report: Report, cfg: dict) -> list[Block]:
    gbdt = report.benchmark
    if not gbdt:
        if _section_of(cfg, "benchmark").get("enabled") is False:
            return [Text("GBDT benchmark off (benchmark.enabled=false).")]
        return [Text("No GBDT benchmark in the report.")]
    ours, lift = report.test, report.lift

    def lifted(key: str) -> str:
        # Lift holds AUC and KS only
        value = getattr(lift, key, None)
        return f"{value:+.4f}" if value is not None else ""

    rows = [
        [name, _num(getattr(ours, k) if ours else None), _num(getattr(gbdt.test, k)), lifted(k)]
        for k, name in METRICS
    ]
    auc_lift = lift.auc if lift else None
    verdict = (
        "No lift in the report."
        if auc_lift is None
        else f"The network {'beats' if auc_lift > 0 else f'{WARN} does not beat'} LightGBM on the same "
        f"test rows (AUC lift {auc_lift:+.4f})."
    )
    setting = [
        ("model", str(gbdt.model)),
        ("setting (best on validation)", _value(gbdt.params)),
        ("boosting rounds", str(gbdt.rounds)),
        ("monotone constraints", _value(gbdt.monotone)),
        ("train / validation rows", f"{_count(gbdt.train_rows)} / {_count(gbdt.valid_rows)}"),
    ]
    return [Text(verdict), Table(["metric", "network", "LightGBM", "lift"], rows), _facts(setting)]


def psi_band(value: float) -> str:
    low, high = PSI_BANDS
    return "stable" if value < low else "some shift" if value < high else "a major shift"


def _stability(report: Report) -> list[Block]:
    value = report.psi_train_test
    if value is None:
        return [Text("No PSI in the report.")]
    low, high = PSI_BANDS
    return [
        Text(
            f"PSI of the predicted PD, training rows against test rows (10 quantile bins of the "
            f"training PDs): {_num(value)}, {_flag(psi_band(value), value >= low)} (below {low:.2f} stable, "
            f"{low:.2f} to {high:.2f} some shift, {high:.2f} or more a major shift)."
        ),
        Text("Scored portfolios are compared with the same training deciles (jobs.score)."),
    ]


def _monotonicity(report: Report) -> list[Block]:
    checks = report.monotonicity
    if checks is None:
        return [Text("No monotonicity check in the report.")]
    if not checks:
        return [Text("No monotone directions declared in the data config.")]
    rows = [
        [name, "PD rises" if m.direction > 0 else "PD falls", _count(m.rows),
         _flag(_count(m.violations), m.violations > 0), _pct(m.share)]
        for name, m in checks.items()
    ]  # fmt: skip
    return [
        Text(
            f"Each declared feature raised on every test row where it has a value; rows whose PD "
            f"moved against the declared direction: {report.monotone_violations():,} in all."
        ),
        Table(["feature", "as it rises", "rows", "violations", "share"], rows),
    ]


def _reasons(report: Report) -> list[Block]:
    ex = report.explain
    if not ex:
        return [Text("No reason-code check in the report.")]
    verdict = "passed" if ex.passed else f"{WARN} FAILED"
    pairs = [
        ("method", str(ex.method)),
        ("reasons per row", str(ex.reasons)),
        ("reference rows", str(ex.reference_rows)),
        (
            "integration steps",
            str(ex.steps)
            + (
                f", refined up to {ex.max_steps} where the tolerance is missed"
                if ex.max_steps
                else ""
            ),
        ),
        ("test rows checked", str(ex.rows_checked)),
        ("completeness error, max (logits)", _num(ex.max_abs_error, 6)),
        ("completeness error, mean (logits)", _num(ex.mean_abs_error, 6)),
        ("tolerance", str(ex.tolerance)),
        ("completeness check", verdict),
    ]
    return [
        Text("The contributions of a row's features add up to its logit minus the references' "
             "mean logit, within the tolerance."),
        _facts(pairs),
    ]  # fmt: skip


def _fairness(report: Report) -> list[Block]:
    fair = report.fairness
    protected = report.data.protected if report.data else []
    if not fair:
        if protected:
            return [Text(f"Protected columns {', '.join(protected)} are declared but the report "
                         "has no fairness table.")]  # fmt: skip
        return [Text("No protected attributes declared in the data config (data.protected).")]
    out: list[Block] = [
        Text(
            f"Cut-off PD {_num(fair.cutoff_pd)}: approves the {_pct(fair.approve_rate)} "
            f"of test rows with the lowest PD. Groups under {fair.min_rows} rows are "
            f"listed but left out of the approval-rate ratio (80 % rule: >= {FOUR_FIFTHS})."
        )
    ]
    header = ["group", "rows", "approval rate", "default rate", "mean PD", "AUC", "ECE"]
    for name, attr in fair.attributes.items():
        rows = [
            [str(g.group), _count(g.rows), _pct(g.approval_rate), _pct(g.default_rate),
             _pct(g.mean_pd), _num(g.auc), _num(g.ece)]
            for g in attr.groups
        ]  # fmt: skip
        ratio = attr.approval_ratio
        if ratio is None:
            verdict = "no ratio (fewer than two groups large enough)"
        else:
            verdict = f"{ratio:.3f}, " + (
                "passes" if ratio >= FOUR_FIFTHS else f"{WARN} below {FOUR_FIFTHS}: fails"
            )
        out += [Sub(name), Table(header, rows), Text(f"Approval-rate ratio: {verdict}.")]
    return out


def _limitations(report: Report) -> list[Block]:
    return [
        Sub("Found in this run"),
        Items(limitations(report)),
        Sub("Known caveats"),
        Items(list(FIXED_CAVEATS)),
    ]


def limitations(report: Report) -> list[str]:
    """What this run's own numbers say the model falls short in."""
    out = []
    if (lift := report.lift) is not None and lift.auc < 0:
        out.append(f"Does not beat the GBDT benchmark on these rows (AUC lift {lift.auc:+.4f}).")
    if report.benchmark is None:
        out.append("Not compared with a GBDT benchmark: its lift is unknown.")
    if (value := report.psi_train_test) is not None and value >= PSI_BANDS[0]:
        out.append(f"Test PDs have shifted from training (PSI {value:.3f}: {psi_band(value)}).")
    if wrong := report.monotone_violations():
        out.append(f"{wrong:,} test rows move against a declared monotone direction.")
    for name, attr in (report.fairness.attributes if report.fairness else {}).items():
        if (ratio := attr.approval_ratio) is not None and ratio < FOUR_FIFTHS:
            out.append(f"Approval-rate ratio across {name} is {ratio:.3f}, below the 80 % rule.")
    if report.explain is not None and not report.explain.passed:
        out.append("Reason codes fail the completeness check: they do not add up to the PD.")
    out += _small_or_uncalibrated(report.test)
    if report.data is not None and str(report.data.source).startswith("synthetic"):
        out.append("Trained and tested on synthetic data: not for real credit decisions.")
    return [f"{WARN} {item}" for item in out] or ["None found in this run's checks."]


def _small_or_uncalibrated(test: Metrics | None) -> list[str]:
    if test is None:
        return []
    out = []
    if test.ece > POOR_ECE:
        out.append(f"PDs are poorly calibrated on test rows (ECE {test.ece:.3f} > {POOR_ECE}).")
    defaults = test.n * test.default_rate
    if test.n < FEW_TEST_ROWS or defaults < FEW_TEST_DEFAULTS:
        out.append(
            f"Few test rows ({test.n:,}, about {defaults:,.0f} defaults): the metrics are noisy."
        )
    return out


def _reproduce(report: Report, config_text: str, command: str, commit: str) -> list[Block]:
    out: list[Block] = [
        Text("Check out the commit, provide the same data (its fingerprint must match), and run:"),
        Code(command or "(command not given)", "bash"),
        _facts([
            ("git commit", commit or "not given"),
            ("data fingerprint", _said(report.data_fingerprint)),
        ]),
    ]  # fmt: skip
    if config_text:
        out.append(Code(config_text, "yaml", "config.yaml (the resolved training config)"))
    else:
        out.append(Text("No config given."))
    return out


# ---- rendering -----------------------------------------------------------------------------


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block, plots: Path) -> str:
    match block:
        case Text(text):
            return text
        case Sub(title):
            return f"### {title}"
        case Items(items):
            return "\n".join(f"- {item}" for item in items)
        case Table(header, rows):
            lines = [header, ["---"] * len(header), *rows]
            return "\n".join("| " + " | ".join(map(_md_cell, r)) + " |" for r in lines)
        case Image(name, caption):
            if not (plots / name).is_file():
                return f"*{caption}: plots/{name} is missing.*"
            return f"![{caption}](plots/{name})"
        case Code(text, language, summary):
            fence = "~~~" if "```" in text else "```"
            code = f"{fence}{language}\n{text.rstrip()}\n{fence}"
            if not summary:
                return code
            return f"<details><summary>{summary}</summary>\n\n{code}\n\n</details>"
    raise TypeError(f"not a card block: {block!r}")


def to_markdown(title: str, sections: list[Section], plots: Path) -> str:
    parts = [f"# Model card: {title}"]
    parts.append(" · ".join(f"[{name}](#{_anchor(name)})" for name, _ in sections))
    for name, blocks in sections:
        parts += [f"## {name}"] + [_md_block(b, plots) for b in blocks]
    return "\n\n".join(parts) + "\n"


def _warn(text: str) -> str:
    return ' class="warn"' if WARN in text else ""


def _html_row(tag: str, cells: list[str]) -> str:
    return "<tr>" + "".join(f"<{tag}{_warn(c)}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"


def _html_block(block: Block, plots: Path) -> str:
    e = html.escape
    match block:
        case Text(text):
            return f"<p{_warn(text)}>{e(text)}</p>"
        case Sub(title):
            return f"<h3>{e(title)}</h3>"
        case Items(items):
            return "<ul>" + "".join(f"<li{_warn(i)}>{e(i)}</li>" for i in items) + "</ul>"
        case Table(header, rows):
            head = _html_row("th", header) if any(header) else ""
            return "<table>" + head + "".join(_html_row("td", r) for r in rows) + "</table>"
        case Image(name, caption):
            path = plots / name
            if not path.is_file():
                return f'<p class="missing">{e(caption)}: plots/{e(name)} is missing.</p>'
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>")  # fmt: skip
        case Code(text, _, summary):
            pre = f"<pre><code>{e(text.rstrip())}</code></pre>"
            return f"<details><summary>{e(summary)}</summary>{pre}</details>" if summary else pre
    raise TypeError(f"not a card block: {block!r}")


# The page may use its own inline style and data: images, nothing else: a card that fetched
# anything would break offline, and would tell a server that someone read it.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
nav a { margin-right: .8rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }
th { background: #f1f1f1; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
figure { display: inline-block; width: 47%; margin: .5rem 1%; vertical-align: top; }
figure img { width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .85rem; color: #555; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .85rem; }
.missing, .warn { color: #a00; }
.warn { font-weight: 600; }
"""


def to_html(title: str, sections: list[Section], plots: Path) -> str:
    e = html.escape
    nav = "".join(f'<a href="#{_anchor(n)}">{e(n)}</a>' for n, _ in sections)
    body = "".join(
        f'<section id="{_anchor(name)}"><h2>{e(name)}</h2>'
        + "\n".join(_html_block(b, plots) for b in blocks)
        + "</section>\n"
        for name, blocks in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Model card: {e(title)}</title><style>{CSS}</style></head>\n"
        f"<body><h1>Model card: {e(title)}</h1><nav>{nav}</nav>\n{body}</body></html>\n"
    )


def _write(path: Path, text: str) -> Path:
    """Write atomically: a reader never sees half a card."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
