"""One config mechanism: TrainConfig's field metadata drives the CLI flags, the study file's [recipe],
validation, the run key and the resume identity (prunebench/harness/config.py)."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from prunebench.cli import build_parser, build_run_config
from prunebench.errors import ConfigError
from prunebench.harness.config import (
    FLAG_FIELDS,
    RECIPE_FIELDS,
    RESUME_FIELDS,
    RUN_FIELDS,
    TrainConfig,
    resume_identity,
)
from prunebench.options import check_value
from prunebench.studies.spec import load_study

RECIPE = """
[study]
name = "meta"
seeds = [0]
prune_ratios = [0.5]

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = 2
{extra}

[methods.random-dynamic]
"""


def _keys(tmp_path, extra: str = "", **changes) -> list[str]:
    path = tmp_path / f"s{abs(hash(extra))}.toml"
    path.write_text(textwrap.dedent(RECIPE.format(extra=extra)))
    return [r.run_key for r in load_study(path).runs(**changes)]


def test_every_field_declares_help_and_one_identity():
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"], f.name
        assert f.metadata["identity"] in ("run", "resume", "execution"), f.name


def test_identity_kinds_decide_run_key_and_resume(tmp_path):
    base = _keys(tmp_path)
    # the experiment: a recipe value changes the key and what a checkpoint must be resumed with
    assert set(_keys(tmp_path, "lr = 0.05")).isdisjoint(base)
    assert resume_identity(TrainConfig(lr=0.05)) != resume_identity(TrainConfig())
    # resume-only: record_kept is no part of the experiment, but a resumed run must keep recording alike
    assert _keys(tmp_path, "record_kept = false") == base
    assert resume_identity(TrainConfig(record_kept=False)) != resume_identity(TrainConfig())
    # execution: a CPU and a CUDA run of a cell are the same experiment, resumable on either
    assert _keys(tmp_path, device="cuda") == base
    assert resume_identity(TrainConfig(device="cuda")) == resume_identity(TrainConfig(device="cpu"))
    assert resume_identity(TrainConfig(num_workers=0, data_dir="/x", eval_batch_size=7)) == resume_identity(
        TrainConfig()
    )
    assert {"record_kept", "compile"} == set(RESUME_FIELDS) - set(RUN_FIELDS)


def test_recipe_keys_come_from_the_metadata(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(RECIPE.format(extra="tracking = false")))
    with pytest.raises(ConfigError, match="recipe.tracking: unknown key \\(tracking is set by the study itself\\)"):
        load_study(path)
    assert "tracking" not in RECIPE_FIELDS and "device" in RECIPE_FIELDS


@pytest.mark.parametrize(
    "extra,message",
    [
        ("warmup = 1.0", "recipe: warmup must be in [0, 1), got 1.0"),
        ("probe_epochs = [1, -2]", "recipe: probe_epochs must be >= 0, got (1, -2)"),
        ("nesterov = 1", "recipe.nesterov: expected true or false, got an integer 1"),
        ("probe_epochs = '1,2'", "recipe.probe_epochs: expected a list, got a string '1,2'"),
        ("image_size = 2.5", "recipe.image_size: expected an integer, got a number 2.5"),
    ],
)
def test_recipe_values_checked_by_declared_type_and_range(tmp_path, extra, message):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(RECIPE.format(extra=extra)))
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_lenient_for_the_command_line_strict_for_toml():
    assert check_value("1,2", tuple[int, ...], "x") == (1, 2)
    assert check_value("none", int | None, "x") is None
    assert check_value("off", bool, "x") is False
    with pytest.raises(ConfigError, match="x: expected a list, got a string '1,2'"):
        check_value("1,2", tuple[int, ...], "x", strict=True)
    with pytest.raises(ConfigError, match="x: expected an integer, got a string 'none'"):
        check_value("none", int | None, "x", strict=True)
    with pytest.raises(ConfigError, match="x: True is not valid"):
        check_value(True, __import__("typing").Literal[1, 2], "x", strict=True)


def test_run_flags_are_the_declared_ones():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    dests = {a.dest for a in run._actions}
    assert set(FLAG_FIELDS) <= dests
    args = run.parse_args(["--no-tracking", "--checkpoint-dir", "ck", "--resume", "--seed", "3", "--set", "lr=0.5"])
    args.set, args.quiet, args.json = args.set, True, False
    cfg = build_run_config(args)
    assert (cfg.tracking, cfg.resume, cfg.checkpoint_dir, cfg.seed, cfg.lr) == (False, True, "ck", 3, 0.5)
    args = run.parse_args(["--seed", "2", "--set", "seed=2"])
    with pytest.raises(Exception, match="seed given both"):
        build_run_config(args)
