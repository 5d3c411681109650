"""The model card of a registered version: what it is for, what it was trained on, how it was
built, how well it does and where it falls short, and how to reproduce it.

Built from the run's evaluation report, its plots and its resolved config, as Markdown
(``model_card.md``, plots linked as ``plots/<name>.png``) and as one self-contained HTML page
(``model_card.html``: CSS inline, PNGs embedded as data URIs, and a content security policy
that forbids loading anything else). Each section is built once as a few plain blocks (text,
list, table, image, code) that both renderers draw, so the two files say the same thing.
Missing report keys are said so in the card; they never stop it being written.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

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
    report: dict, plots: Path, out_dir: Path, *, config_text: str, command: str, title: str,
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
    report: dict, *, config_text: str, command: str, commit: str = "", date: str = ""
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


def _model(report: dict, cfg: dict, commit: str, date: str) -> list[Block]:
    reg, pending = report.get("registered"), "pending: not in the tracking store yet (jobs.sync)"
    if reg:
        alias = f"@{reg['alias']}" if reg.get("alias") else "none moved (see the run's log)"
        registered = [("registered model", str(reg.get("name", "n/a"))),
                      ("version", str(reg.get("version") or pending)), ("alias", alias)]  # fmt: skip
    else:
        registered = [("registered model", "not registered (registry.register=false)")]
    pairs = registered + [
        ("MLflow run", str(report.get("run_id") or pending)),
        ("model URI", str(report.get("model_uri") or pending)),
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


def _data(report: dict) -> list[Block]:
    data = report.get("data") or {}
    protected = data.get("protected") or []
    pairs = [
        ("source", str(data.get("source", "n/a"))),
        ("rows", _count(data.get("rows"))),
        ("data fingerprint", str(report.get("data_fingerprint", "n/a"))),
        ("unused columns", ", ".join(data.get("unused_columns") or []) or "none"),
        ("protected columns", ", ".join(protected) or "none declared (data.protected)"),
    ]
    out: list[Block] = [_facts(pairs), Sub("Split")]
    split = report.get("split")
    if not split:
        return out + [Text("No split in the report.")]
    how = f"{split.get('method', 'n/a')} split, seed {split.get('seed', 'n/a')}"
    if split.get("method") == "time":
        how += (
            f", by {split.get('period_column')}: validation from {split.get('valid_from')}, "
            f"test from {split.get('test_from')}"
        )
    parts = [p for p in ("train", "valid", "test") if isinstance(split.get(p), dict)]
    total = sum(split[p].get("rows", 0) for p in parts) or 1
    rows = [
        [p, _count(split[p].get("rows")), _pct(split[p].get("rows", 0) / total),
         _pct(split[p].get("default_rate"))]
        for p in parts
    ]  # fmt: skip
    return out + [Text(how + "."), Table(["part", "rows", "share", "default rate"], rows)]


def _recipe(report: dict, cfg: dict) -> list[Block]:
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
    training = report.get("training") or {}
    out += [
        Sub("How training went"),
        _facts([
            ("epochs run", str(training.get("epochs_run", "n/a"))),
            ("best epoch (weights kept)", str(training.get("best_epoch", "n/a"))),
            ("best validation AUC", _num(training.get("best_valid_auc"))),
            ("processes", str(training.get("world_size", "n/a"))),
        ]),
    ]  # fmt: skip
    if members := report.get("ensemble"):
        header = ["member", "seed", "epochs run", "best epoch", "best validation AUC"]
        rows = [
            [str(m.get("member", i)), str(m.get("seed", "n/a")), str(m.get("epochs_run", "n/a")),
             str(m.get("best_epoch", "n/a")), _num(m.get("best_valid_auc"))]
            for i, m in enumerate(members)
        ]  # fmt: skip
        out += [Sub(f"Ensemble of {len(members)} (PD = the members' mean)"), Table(header, rows)]
    return out


def _metrics(report: dict) -> list[Block]:
    test, valid, ci = report.get("test") or {}, report.get("valid") or {}, report.get("test_ci")
    if not test:
        return [Text("No test metrics in the report.")]

    def interval(key: str) -> str:
        bounds = (ci or {}).get(key)
        return f"[{_num(bounds[0])}, {_num(bounds[1])}]" if bounds else "n/a"

    rows = [[name, _num(test.get(k)), interval(k), _num(valid.get(k))] for k, name in METRICS]
    out: list[Block] = [
        Text(
            f"{_count(test.get('n'))} test rows, default rate {_pct(test.get('default_rate'))}, "
            f"mean PD {_pct(test.get('mean_pd'))}."
        ),
        Table(["metric", "test", "95% CI (test)", "validation"], rows),
    ]
    if ci:
        out.append(
            Text(f"Bootstrap percentile intervals over {ci.get('resamples', 'n/a')} resamples.")
        )
    else:
        out.append(Text("No bootstrap confidence intervals in the report (test_ci)."))
    if (bayes := report.get("bayes_auc_test")) is not None:
        gap = _num(bayes - test["auc"]) if "auc" in test else "n/a"
        out.append(
            Text(f"Bayes-optimal test AUC (the true PDs are known): {_num(bayes)}; gap {gap}.")
        )
    return out


def _benchmark(report: dict, cfg: dict) -> list[Block]:
    gbdt = report.get("benchmark")
    if not gbdt:
        if _section_of(cfg, "benchmark").get("enabled") is False:
            return [Text("GBDT benchmark off (benchmark.enabled=false).")]
        return [Text("No GBDT benchmark in the report.")]
    ours, theirs, lift = report.get("test") or {}, gbdt.get("test") or {}, report.get("lift") or {}
    rows = [
        [name, _num(ours.get(k)), _num(theirs.get(k)), f"{lift[k]:+.4f}" if k in lift else ""]
        for k, name in METRICS
    ]
    auc_lift = lift.get("auc")
    verdict = (
        "No lift in the report."
        if auc_lift is None
        else f"The network {'beats' if auc_lift > 0 else f'{WARN} does not beat'} LightGBM on the same "
        f"test rows (AUC lift {auc_lift:+.4f})."
    )
    setting = [
        ("model", str(gbdt.get("model", "n/a"))),
        ("setting (best on validation)", _value(gbdt.get("params"))),
        ("boosting rounds", str(gbdt.get("rounds", "n/a"))),
        ("monotone constraints", _value(gbdt.get("monotone", "n/a"))),
        ("train / validation rows", f"{_count(gbdt.get('train_rows'))} / "
                                    f"{_count(gbdt.get('valid_rows'))}"),
    ]  # fmt: skip
    return [Text(verdict), Table(["metric", "network", "LightGBM", "lift"], rows), _facts(setting)]


def psi_band(value: float) -> str:
    low, high = PSI_BANDS
    return "stable" if value < low else "some shift" if value < high else "a major shift"


def _stability(report: dict) -> list[Block]:
    value = report.get("psi_train_test")
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


def _monotonicity(report: dict) -> list[Block]:
    checks = report.get("monotonicity")
    if checks is None:
        return [Text("No monotonicity check in the report.")]
    if not checks:
        return [Text("No monotone directions declared in the data config.")]
    rows = [
        [name, "PD rises" if m.get("direction", 0) > 0 else "PD falls", _count(m.get("rows")),
         _flag(_count(m.get("violations")), m.get("violations", 0) > 0), _pct(m.get("share"))]
        for name, m in checks.items()
    ]  # fmt: skip
    wrong = sum(m.get("violations", 0) for m in checks.values())
    return [
        Text(
            f"Each declared feature raised on every test row where it has a value; rows whose PD "
            f"moved against the declared direction: {wrong:,} in all."
        ),
        Table(["feature", "as it rises", "rows", "violations", "share"], rows),
    ]


def _reasons(report: dict) -> list[Block]:
    ex = report.get("explain")
    if not ex:
        return [Text("No reason-code check in the report.")]
    passed = ex.get("passed")
    verdict = "passed" if passed else f"{WARN} FAILED" if passed is False else "n/a"
    pairs = [
        ("method", str(ex.get("method", "n/a"))),
        ("reasons per row", str(ex.get("reasons", "n/a"))),
        ("reference rows", str(ex.get("reference_rows", "n/a"))),
        ("integration steps", str(ex.get("steps", "n/a"))),
        ("test rows checked", str(ex.get("rows_checked", "n/a"))),
        ("completeness error, max (logits)", _num(ex.get("max_abs_error"), 6)),
        ("completeness error, mean (logits)", _num(ex.get("mean_abs_error"), 6)),
        ("tolerance", str(ex.get("tolerance", "n/a"))),
        ("completeness check", verdict),
    ]
    return [
        Text("The contributions of a row's features add up to its logit minus the references' "
             "mean logit, within the tolerance."),
        _facts(pairs),
    ]  # fmt: skip


def _fairness(report: dict) -> list[Block]:
    fair = report.get("fairness")
    protected = (report.get("data") or {}).get("protected") or []
    if not fair:
        if protected:
            return [Text(f"Protected columns {', '.join(protected)} are declared but the report "
                         "has no fairness table.")]  # fmt: skip
        return [Text("No protected attributes declared in the data config (data.protected).")]
    out: list[Block] = [
        Text(
            f"Cut-off PD {_num(fair.get('cutoff_pd'))}: approves the {_pct(fair.get('approve_rate'))} "
            f"of test rows with the lowest PD. Groups under {fair.get('min_rows', 'n/a')} rows are "
            f"listed but left out of the approval-rate ratio (80 % rule: >= {FOUR_FIFTHS})."
        )
    ]
    header = ["group", "rows", "approval rate", "default rate", "mean PD", "AUC", "ECE"]
    for name, attr in (fair.get("attributes") or {}).items():
        rows = [
            [str(g.get("group")), _count(g.get("rows")), _pct(g.get("approval_rate")),
             _pct(g.get("default_rate")), _pct(g.get("mean_pd")), _num(g.get("auc")),
             _num(g.get("ece"))]
            for g in attr.get("groups", [])
        ]  # fmt: skip
        ratio = attr.get("approval_ratio")
        if ratio is None:
            verdict = "no ratio (fewer than two groups large enough)"
        else:
            verdict = f"{ratio:.3f}, " + (
                "passes" if ratio >= FOUR_FIFTHS else f"{WARN} below {FOUR_FIFTHS}: fails"
            )
        out += [Sub(name), Table(header, rows), Text(f"Approval-rate ratio: {verdict}.")]
    return out


def _limitations(report: dict) -> list[Block]:
    return [
        Sub("Found in this run"),
        Items(limitations(report)),
        Sub("Known caveats"),
        Items(list(FIXED_CAVEATS)),
    ]


def limitations(report: dict) -> list[str]:
    """What this run's own numbers say the model falls short in."""
    out = []
    if (auc_lift := (report.get("lift") or {}).get("auc")) is not None and auc_lift < 0:
        out.append(f"Does not beat the GBDT benchmark on these rows (AUC lift {auc_lift:+.4f}).")
    if "benchmark" not in report:
        out.append("Not compared with a GBDT benchmark: its lift is unknown.")
    if (value := report.get("psi_train_test")) is not None and value >= PSI_BANDS[0]:
        out.append(f"Test PDs have shifted from training (PSI {value:.3f}: {psi_band(value)}).")
    wrong = sum(m.get("violations", 0) for m in (report.get("monotonicity") or {}).values())
    if wrong:
        out.append(f"{wrong:,} test rows move against a declared monotone direction.")
    for name, attr in ((report.get("fairness") or {}).get("attributes") or {}).items():
        if (ratio := attr.get("approval_ratio")) is not None and ratio < FOUR_FIFTHS:
            out.append(f"Approval-rate ratio across {name} is {ratio:.3f}, below the 80 % rule.")
    if (report.get("explain") or {}).get("passed") is False:
        out.append("Reason codes fail the completeness check: they do not add up to the PD.")
    test = report.get("test") or {}
    if (ece := test.get("ece")) is not None and ece > POOR_ECE:
        out.append(f"PDs are poorly calibrated on test rows (ECE {ece:.3f} > {POOR_ECE}).")
    rows = test.get("n")
    defaults = rows * test.get("default_rate", 0) if rows is not None else None
    if rows is not None and (rows < FEW_TEST_ROWS or defaults < FEW_TEST_DEFAULTS):
        out.append(
            f"Few test rows ({rows:,}, about {defaults:,.0f} defaults): the metrics are noisy."
        )
    if str((report.get("data") or {}).get("source", "")).startswith("synthetic"):
        out.append("Trained and tested on synthetic data: not for real credit decisions.")
    return [f"{WARN} {item}" for item in out] or ["None found in this run's checks."]


def _reproduce(report: dict, config_text: str, command: str, commit: str) -> list[Block]:
    out: list[Block] = [
        Text("Check out the commit, provide the same data (its fingerprint must match), and run:"),
        Code(command or "(command not given)", "bash"),
        _facts([
            ("git commit", commit or "not given"),
            ("data fingerprint", str(report.get("data_fingerprint", "n/a"))),
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
