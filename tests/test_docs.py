"""The README's commands are what CI runs, and what the docs cite is in the repository."""

from __future__ import annotations

import re
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
    assert sorted(p.name for p in (ROOT / ".ci" / "setup.d").glob("*.sh")) == ["10-postgres.sh", "20-chromium.sh"]


def test_everything_the_docs_cite_is_in_the_repository():
    """Study files, the README and the package cite repository paths only (a clone has no shared/docs)."""
    texts = {p: p.read_text() for p in [ROOT / "README.md", *ROOT.glob("studies/*.toml"), *ROOT.glob("prunebench/**/*.py")]}
    cited = set()
    for path, text in texts.items():
        assert "shared/docs" not in text, f"{path} cites shared/docs (not in a clone): cite docs/ instead"
        for m in re.finditer(r"(?<![\w./-])((?:docs|studies|benchmarks|scripts|tests|\.ci)/[\w./-]*\w)", text):
            cited.add((path.relative_to(ROOT), m.group(1)))
    assert any(c == "docs/orderdp.md" for _, c in cited)
    missing = [(str(p), c) for p, c in cited if not (ROOT / c).exists() and not list(ROOT.glob(c))]
    assert not missing, missing
