"""The static registry index (prunebench.catalog) equals the real registries, and the CLI answers
``list``, ``--help`` and bad names without importing torch, mlflow or seaborn (timing: benchmarks/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prunebench import catalog
from prunebench.catalog_data import AUGMENTS, DATASETS, MODELS, PRUNERS

HEAVY = ("torch", "mlflow", "seaborn", "pandas", "optuna")


def test_index_equals_the_registries():
    live = catalog.live()
    assert live["PRUNERS"] == PRUNERS, "regenerate: python -m prunebench.catalog > prunebench/catalog_data.py"
    assert live["DATASETS"] == DATASETS
    assert live["MODELS"] == MODELS
    assert live["AUGMENTS"] == AUGMENTS
    assert catalog.render() == open(catalog.__file__.replace("catalog.py", "catalog_data.py")).read()


def test_index_names_every_registered_pruner_with_its_options():
    import dataclasses

    from prunebench.pruners import get_pruner_class, list_pruners

    assert [p["name"] for p in PRUNERS] == list_pruners()
    for p in PRUNERS:
        assert p["options"] == tuple(f.name for f in dataclasses.fields(get_pruner_class(p["name"]).Options))
    assert len(PRUNERS) >= 20 and {"orderdp", "infobatch", "el2n", "full"} <= {p["name"] for p in PRUNERS}


def _cli(*argv: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    code = (
        "import sys, json\nfrom prunebench.cli import main\ntry:\n"
        f"    rc = main({list(argv)!r})\nexcept SystemExit as e:\n"
        "    rc = e.code\n"
        f"print(json.dumps([rc, sorted(m for m in {HEAVY!r} if m in sys.modules)]), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    rc, loaded = json.loads(r.stderr.strip().splitlines()[-1])
    r.returncode = rc
    return r, loaded


@pytest.mark.parametrize(
    "argv, rc, fragment",
    [
        (["list"], 0, "orderdp"),
        (["list", "--json"], 0, '"granularity"'),
        (["list", "--long"], 0, "Jin, Xu, Wang, Jia, Chen & Zeng, ICLR 2026"),
        (["list", "--long", "--json"], 0, '"defaults_source"'),
        (["--help"], 0, "leaderboard"),
        (["run", "--help"], 0, "--prune-ratio"),
        (["run", "--pruner", "orderdpp"], 2, "unknown pruner 'orderdpp'; valid: aum"),
        (["run", "--dataset", "cifar11"], 2, "unknown dataset 'cifar11'"),
        (["run", "--model", "resnet19"], 2, "unknown model 'resnet19'"),
        (["run", "--set", "candidate_ratoi=0.8"], 2, "nor an option of orderdp (candidate_ratio, initial_score)"),
        (["run", "--prune-ratio", "1.5"], 2, "prune_ratio must be in [0, 1), got 1.5"),
        (["run", "--set", "augment=rotate"], 2, "augment 'rotate' is not valid"),
        (["run", "--data-dir", "/nonexistent/x"], 2, "does not exist"),
        (["leaderboard", "nonexistent.toml"], 2, "study file not found"),
        (["leaderboard", "studies/digits-quick.toml", "--jobs", "0"], 2, "--jobs expects an integer >= 1"),
        (["sweep", "nonexistent.toml"], 2, "study file not found"),
        (["report", "nonexistent.toml"], 2, "does not exist"),
        (["run", "--epoch", "3"], 2, "unrecognized arguments"),
    ],
)
def test_cli_answers_without_heavy_imports(argv, rc, fragment):
    r, loaded = _cli(*argv)
    assert r.returncode == rc, r.stderr
    assert fragment in r.stdout + r.stderr, r.stdout + r.stderr
    assert loaded == [], f"prunebench {' '.join(argv)} imported {loaded}"
