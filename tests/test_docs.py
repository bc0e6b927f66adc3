"""The README's commands are what CI runs, what the docs cite and link is in the repository, and the
generated methods table is current."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_block_after(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    i = text.index(heading)
    m = re.search(r"```bash\n(.*?)```", text[i:], re.S)
    assert m, f"no bash block after {heading!r} in README.md"
    return [ln.split("#")[0].strip() for ln in m.group(1).splitlines() if ln.split("#")[0].strip()]


def test_ci_runs_the_readme_install_and_test_commands_verbatim():
    install = _readme_block_after("## Set-up")[0]
    (test,) = _readme_block_after("Tests:")
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install == 'pip install -e ".[test]"'
    assert install in ci
    assert test in ci, f"README's test command {test!r} is not a line of .ci/run"
    # nothing after it could turn a failing suite into a passing CI: it is the last command
    assert [ln for ln in ci if ln and not ln.startswith("#")][-1] == test


def test_test_script_runs_every_setup_script_then_pytest():
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert ".ci/setup.d/*.sh" in script and "set -euo pipefail" in script
    assert script.rstrip().splitlines()[-1] == 'exec python -m pytest -q "$@"'
    # the same lint and type checks for CI and users, before the suite
    lines = [ln.strip() for ln in script.splitlines()]
    checks = [
        "python -m ruff check prunebench tests benchmarks scripts",
        "python -m ruff format --check prunebench tests benchmarks scripts",
        "python -m mypy",
    ]
    assert all(c in lines for c in checks) and max(lines.index(c) for c in checks) < lines.index(
        'exec python -m pytest -q "$@"'
    )
    assert sorted(p.name for p in (ROOT / ".ci" / "setup.d").glob("*.sh")) == ["10-postgres.sh", "20-chromium.sh"]


def test_everything_the_docs_cite_is_in_the_repository():
    """Study files, the README and the package cite repository paths only (a clone has no shared/docs)."""
    texts = {
        p: p.read_text()
        for p in [
            ROOT / "README.md",
            *ROOT.glob("docs/*.md"),
            *ROOT.glob("studies/*.toml"),
            *ROOT.glob("prunebench/**/*.py"),
        ]
    }
    cited = set()
    for path, text in texts.items():
        assert "shared/docs" not in text, f"{path} cites shared/docs (not in a clone): cite docs/ instead"
        for m in re.finditer(r"(?<![\w./-])((?:docs|studies|benchmarks|scripts|tests|\.ci)/[\w./-]*\w)", text):
            cited.add((path.relative_to(ROOT), m.group(1)))
    assert any(c == "docs/orderdp.md" for _, c in cited)
    missing = [(str(p), c) for p, c in cited if not (ROOT / c).exists() and not list(ROOT.glob(c))]
    assert not missing, missing


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file (lowercase; punctuation but - and _ dropped; spaces -> -),
    plus explicit ``<a id="...">`` targets."""
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    out = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for h in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _broken_links(md: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    bad = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{md.relative_to(ROOT)}: {target} (no such section)")
        elif not dest.is_relative_to(ROOT):
            bad.append(f"{md.relative_to(ROOT)}: {target} (outside the repository)")
    return bad


def test_every_relative_link_in_the_readme_and_docs_resolves():
    assert len(DOCS) >= 10
    bad = [b for md in DOCS for b in _broken_links(md)]
    assert not bad, bad


def test_the_link_checker_finds_a_broken_file_and_a_broken_section(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## How `prune_ratio` maps\n\nx\n")
    (tmp_path / "b.md").write_text(
        "[ok](a.md#how-prune_ratio-maps) [ok](#top) [web](https://x.org/y)\n\n# Top\n"
        "[gone](missing.md) [bad](a.md#nowhere) ![img](c.png)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert _broken_links(tmp_path / "b.md") == [
        "b.md: missing.md (no such file)",
        "b.md: a.md#nowhere (no such section)",
        "b.md: c.png (no such file)",
    ]


def test_readme_is_short_and_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 10_000, f"README.md is {len(readme.encode())} bytes: move detail into docs/"
    unlinked = [p.name for p in DOCS[1:] if f"(docs/{p.name})" not in readme]
    assert not unlinked, f"docs not linked from README.md: {unlinked}"


def test_methods_table_is_generated_from_the_registry():
    import importlib.util

    from prunebench.pruners import get_pruner_class, list_pruners

    spec = importlib.util.spec_from_file_location("methods_table", ROOT / "scripts" / "methods_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    committed = (ROOT / "docs" / "methods-table.md").read_text()
    assert committed == mod.render(), "docs/methods-table.md is stale: run python scripts/methods_table.py"
    # independent of render(): every built-in pruner is a row of its granularity's table (family, cost,
    # weights, each option) and of the papers table (paper, sources of the defaults)
    builtin = [n for n in list_pruners() if get_pruner_class(n).__module__.startswith("prunebench.pruners.")]
    sections = {s.split("\n", 1)[0]: s for s in committed.split("\n## ")[1:]}
    by_gran = {
        g: next(s for t, s in sections.items() if t.lower().startswith(w))
        for g, w in (("static", "static"), ("epoch", "per epoch"), ("batch", "per batch"))
    }
    papers = sections["Papers and the sources of the defaults"]
    row = lambda text, n: re.search(rf"^\| `{re.escape(n)}` \|.*$", text, re.M)  # noqa: E731
    import dataclasses

    assert len(builtin) >= 20
    for n in builtin:
        cls = get_pruner_class(n)
        r = row(by_gran[cls.granularity], n)
        assert r, (n, cls.granularity)
        cost = ", ".join(cls.cost_profile) or "none"
        assert f"| {cls.family} | {cost} | {'yes' if cls.uses_weights else 'no'} |" in r.group(0), n
        for f in dataclasses.fields(cls.Options):
            assert f"`{f.name}=" in r.group(0), (n, f.name)
        p = row(papers, n)
        assert p and cls.paper in p.group(0) and cls.defaults_source.replace("|", "\\|") in p.group(0), n
    assert sum(len(re.findall(r"^\| `[\w-]+` \|", s, re.M)) for s in by_gran.values()) == len(builtin)
