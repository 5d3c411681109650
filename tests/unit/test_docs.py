"""The docs stay true to the tree: every module is on the architecture map, every relative link
resolves, and the README's two set-up commands are the ones CI and the Makefile run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
MODULE = re.compile(r"^(?:training|jobs)/[\w/]*\w\.py$")


def section(text: str, heading: str) -> str:
    """The lines under ``heading`` (e.g. ``## Repository map``) up to the next heading of its level."""
    level = heading.split()[0]
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].split(" ", 1)[0] == level),
        len(lines),
    )
    return "\n".join(lines[start:end])


def fenced_blocks(text: str) -> list[str]:
    """The contents of the ``` code blocks in ``text``, in order."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


# (a) every module on the map


def mapped_modules(text: str) -> list[str]:
    """The ``training/``/``jobs/`` modules the repository map lists, one a line (the first word)."""
    found = []
    for block in fenced_blocks(section(text, "## Repository map")):
        for line in block.splitlines():
            first = line.split()[0].rstrip(",") if line.split() else ""
            if MODULE.match(first):
                found.append(first)
    return found


def modules() -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix()
        for d in ("training", "jobs")
        for p in (ROOT / d).rglob("*.py")
    )


def test_the_map_reader_sees_only_the_maps_first_words():
    text = (
        "# A\n```\ntraining/a.py  outside the map\n```\n## Repository map\n"
        "```\ntraining/b/c.py  one line, naming training/d.py\njobs/e.py\n  a heading line\n```\n"
        "## Next\n```\ntraining/f.py\n```\n"
    )
    assert mapped_modules(text) == ["training/b/c.py", "jobs/e.py"]


def test_every_module_is_on_the_architecture_map():
    mapped = set(mapped_modules(ARCHITECTURE.read_text()))
    missing = [m for m in modules() if m not in mapped]
    assert missing == [], f"add a line for each to the repository map in {ARCHITECTURE}: {missing}"


def test_every_module_on_the_map_exists():
    stale = [m for m in mapped_modules(ARCHITECTURE.read_text()) if not (ROOT / m).is_file()]
    assert stale == [], (
        f"the repository map in {ARCHITECTURE} lists modules that do not exist: {stale}"
    )


# (b) every relative link resolves


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def without_code(text: str) -> str:
    """``text`` with fenced blocks and inline code blanked: links there are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    for line in without_code(text).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(m.group(1))
            name, n = base, 0
            while name in found:  # GitHub numbers repeated headings: x, x-1, x-2
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def links(text: str) -> list[str]:
    """Every link target in Markdown ``text`` (inline links and images), outside code."""
    return re.findall(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", without_code(text))


def broken_links(path: Path) -> list[str]:
    """The relative links in the Markdown file ``path`` whose file, or heading, is not there."""
    broken = []
    for target in links(path.read_text()):
        if re.match(r"[A-Za-z][\w+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target} (no such heading in {dest.name})")
    return broken


def test_slugs_are_githubs():
    assert (
        slug("Sweeps: ASHA + TPE against random search") == "sweeps-asha--tpe-against-random-search"
    )
    assert slug("Promote to @champion") == "promote-to-champion"
    assert slug("6. What the doctor checks") == "6-what-the-doctor-checks"
    assert (
        slug("Experiments: each data set's best recipe") == "experiments-each-data-sets-best-recipe"
    )


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "b.md").write_text("# B\n## There it is\n## There it is\n")
    page = tmp_path / "a.md"
    page.write_text(
        "# A\n[ok](b.md) [ok](b.md#there-it-is) [ok](b.md#there-it-is-1) [ok](#a) [ok](https://x.y/z)\n"
        "[gone](c.md) [no heading](b.md#nowhere) [no heading](#b)\n"
        "`[code](d.md)`\n```\n[code](e.md)\n```\n"
    )
    assert broken_links(page) == [
        "c.md (no such file)",
        "b.md#nowhere (no such heading in b.md)",
        "#b (no such heading in a.md)",
    ]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    assert broken_links(path) == [], f"{path.relative_to(ROOT)} has broken links"


# (c) the README's set-up commands are the ones CI and the Makefile run


def setup_commands(readme: str) -> list[str]:
    """The commands of the README's "Set up and run" block (its first code block), comments left out."""
    block = fenced_blocks(section(readme, "## Set up and run"))[0]
    return [s for line in block.splitlines() if (s := line.strip()) and not s.startswith("#")]


def shell_commands(script: str) -> list[str]:
    """A shell script's command lines: continuations joined, comments and blank lines left out."""
    joined = re.sub(r"\s*\\\n\s*", " ", script)
    return [s for line in joined.splitlines() if (s := line.strip()) and not s.startswith("#")]


def make_recipes(makefile: str) -> dict[str, list[str]]:
    """Each target's recipe lines with the Makefile's variables expanded."""
    variables: dict[str, str] = {}
    recipes: dict[str, list[str]] = {}
    target = None
    for line in makefile.splitlines():
        if m := re.match(r"([A-Za-z_][\w]*)\s*[:?]?=\s*(.*)$", line):
            variables[m.group(1)] = m.group(2).strip()
        elif m := re.match(r"([\w.-]+)\s*:(?!=)", line):
            target = m.group(1)
            recipes[target] = []
        elif line.startswith("\t") and target:
            recipe = re.sub(
                r"\$[({](\w+)[)}]", lambda v: variables.get(v.group(1), ""), line.strip()
            )
            recipes[target].append(recipe.lstrip("@"))
    return recipes


def without_extras(command: str) -> str:
    """``pip install -e '.[test]'`` -> ``pip install -e .``: the same install without extras."""
    return re.sub(r"(['\"]?)\.\[[^\]]*\]\1", ".", command)


def test_the_command_readers(tmp_path):
    readme = (
        "# X\n## Set up and run\ntext\n```bash\n# 1. comment\nrun one\n\n  run two\n```\n"
        "```bash\nnot a set-up command\n```\n## Next\n"
    )
    assert setup_commands(readme) == ["run one", "run two"]
    assert shell_commands("# c\nif a; then\n  b \\\n    c\nfi\n") == ["if a; then", "b c", "fi"]
    makefile = "PY := .venv/bin/python\nvenv:  ## v\n\tmake .venv\ntest:\n\t@$(PY) -m pytest\n"
    assert make_recipes(makefile) == {
        "venv": ["make .venv"],
        "test": [".venv/bin/python -m pytest"],
    }
    assert without_extras("pip install -e '.[test]' && x") == "pip install -e . && x"


def test_the_readme_has_the_two_set_up_commands():
    commands = setup_commands(README.read_text())
    assert len(commands) == 2, commands
    assert commands[0].endswith("-m jobs.train") and commands[1].endswith("-m pytest"), commands


def test_ci_runs_the_readmes_test_command():
    test_command = setup_commands(README.read_text())[1]
    assert test_command in shell_commands((ROOT / ".ci" / "run").read_text()), (
        f".ci/run does not run the README's test command {test_command!r}: keep the two in step"
    )


def test_the_makefile_runs_the_readmes_commands():
    main, test = setup_commands(README.read_text())
    make = make_recipes((ROOT / "Makefile").read_text())
    venv = " && ".join(make["venv"])
    assert test == f"{venv} && {' && '.join(make['test'])}", (
        "make venv test != the README's test command"
    )
    assert main == f"{without_extras(venv)} && {' && '.join(make['train'])}", (
        "make venv (without the test extra) + make train != the README's main command"
    )
