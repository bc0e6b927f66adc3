"""Plugins: the contract kit (prunebench.testing) on plugin pruners, --plugin on the CLI, plugins in study
files and in a leaderboard's worker processes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fast_config

from prunebench import testing
from prunebench.cli import main
from prunebench.errors import ConfigError
from prunebench.harness import train
from prunebench.harness.checkpoint import load_checkpoint
from prunebench.plugins import load_plugin, loaded_plugins
from prunebench.pruners import PruneContext, list_pruners

# Written as a newcomer would from docs/adding-a-pruner.md: state in a tensor, nothing declared for
# checkpoints (before the default state, the issue's loss-bottomk resumed to another result). The other
# pruners hide state where the default cannot see it, or declare it.
PLUGIN = """
from dataclasses import dataclass

import torch

from prunebench.pruners import Pruner, Selection, register_pruner


@dataclass(frozen=True)
class BottomKOptions:
    initial_score: float = 0.0  # stored loss of samples never trained


@register_pruner("test-loss-bottomk")
class LossBottomK(Pruner):
    description = "keep the q samples of smallest stored loss (a test plugin)"
    Options = BottomKOptions

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scores = torch.full((self.num_samples,), self.options.initial_score)

    def plan_epoch(self, epoch):
        noise = torch.rand(self.num_samples, generator=self.generator) * 1e-6  # random ties
        keep = torch.argsort(self.scores + noise)[: self.keep_count]
        return Selection(keep[torch.randperm(self.keep_count, generator=self.generator)])

    def observe(self, indices, losses):
        self.scores[indices.cpu()] = losses.detach().float().cpu()


@register_pruner("test-hidden-dict")
class HiddenDict(LossBottomK):
    description = "loss-bottomk keeping its losses in a Python dict (hidden from checkpoints)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.scores
        self.seen = {}

    def plan_epoch(self, epoch):
        scores = torch.tensor([self.seen.get(i, 0.0) for i in range(self.num_samples)])
        keep = torch.argsort(scores + torch.rand(self.num_samples, generator=self.generator) * 1e-6)
        return Selection(keep[: self.keep_count])

    def observe(self, indices, losses):
        self.seen.update(zip(indices.tolist(), losses.tolist()))


@register_pruner("test-hidden-counter")
class HiddenCounter(LossBottomK):
    description = "loss-bottomk that keeps the largest losses every other epoch, counting in an int"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs_seen = 0

    def plan_epoch(self, epoch):
        sign = 1.0 if self.epochs_seen % 2 == 0 else -1.0
        keep = torch.argsort(sign * self.scores + torch.rand(self.num_samples, generator=self.generator) * 1e-6)
        return Selection(keep[: self.keep_count])

    def epoch_end(self, epoch):
        self.epochs_seen += 1


@register_pruner("test-declared-counter")
class DeclaredCounter(HiddenCounter):
    description = "the same, with the counter named in state_attrs"
    state_attrs = ("epochs_seen",)


class Memo:
    def __init__(self):
        self.n = 0


@register_pruner("test-object-state")
class ObjectState(LossBottomK):
    description = "declares an object as state: a checkpoint cannot hold it"
    state_attrs = ("memo",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.memo = Memo()
"""


@pytest.fixture(scope="module", autouse=True)
def _forget_plugins_after():
    """The plugins these tests register are unregistered at the end (later modules see the built-ins only)."""
    from prunebench import plugins
    from prunebench.pruners import base

    registry, loaded = dict(base._REGISTRY), dict(plugins._LOADED)
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(registry)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "loss_bottomk.py"
    path.write_text(PLUGIN)
    load_plugin(str(path))
    return path


def _context(n: int) -> PruneContext:
    return PruneContext(labels=torch.arange(n) % 4, num_classes=4)


# ---------------------------------------------------------------------------------------------------
# the kit
# ---------------------------------------------------------------------------------------------------


def test_kit_passes_a_plugin_whose_state_is_a_tensor_without_declaring_it(plugin_file):
    testing.check_pruner("test-loss-bottomk", prune_ratio=0.5, context=_context)


def test_kit_fails_a_plugin_hiding_its_state_in_a_dict(plugin_file):
    with pytest.raises(testing.ContractError) as e:
        testing.check_pruner("test-hidden-dict", prune_ratio=0.5, context=_context)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'test-hidden-dict' is not resumable: killed after epoch 2" in msg
    assert "seen (dict, not in state_dict())" in msg and "state_attrs" in msg


def test_kit_fails_an_undeclared_counter_and_passes_a_declared_one(plugin_file):
    with pytest.raises(testing.ContractError, match=r"epochs_seen \(int, not in state_dict\(\)\)"):
        testing.check_resume("test-hidden-counter", prune_ratio=0.5, context=_context)
    testing.check_resume("test-declared-counter", prune_ratio=0.5, context=_context)


def test_kit_fails_state_a_weights_only_checkpoint_cannot_hold(plugin_file):
    with pytest.raises(testing.ContractError, match="state_dict\\(\\) cannot go into a checkpoint.*weights_only"):
        testing.check_resume("test-object-state", prune_ratio=0.5, context=_context)


def test_kit_resume_check_can_fail_on_a_builtin_that_forgets_its_scores(monkeypatch):
    """The check compares behaviour: loss-topk with its scores dropped from the checkpoint fails it."""
    from prunebench.pruners.base import Pruner
    from prunebench.pruners.loss_topk import LossTopK

    def forgetful(self):
        return {k: v for k, v in Pruner.state_dict(self).items() if k != "scores"}

    monkeypatch.setattr(LossTopK, "state_dict", forgetful)
    with pytest.raises(testing.ContractError, match="load_state_dict.* failed .*lacks its state 'scores'"):
        testing.check_resume("loss-topk", prune_ratio=0.5, context=_context)
    monkeypatch.setattr(LossTopK, "state_attrs", ())
    with pytest.raises(testing.ContractError, match=r"scores \(Tensor, not in state_dict\(\)\)"):
        testing.check_resume("loss-topk", prune_ratio=0.5, context=_context)


def test_default_state_holds_tensor_and_array_attributes_and_declared_ones(plugin_file):
    from prunebench.pruners import create_pruner

    p = create_pruner("test-declared-counter", num_samples=10, num_epochs=2, prune_ratio=0.5)
    p.extra = np.arange(3)
    p.epochs_seen = 7
    state = p.state_dict()
    assert set(state) == {"generator", "scores", "extra", "epochs_seen"}
    q = create_pruner("test-declared-counter", num_samples=10, num_epochs=2, prune_ratio=0.5)
    q.load_state_dict({**state, "scores": torch.arange(10.0)})
    assert q.epochs_seen == 7 and np.array_equal(q.extra, [0, 1, 2]) and torch.equal(q.scores, torch.arange(10.0))
    with pytest.raises(ValueError, match="'plan_epoch' is not an attribute name"):
        q.load_state_dict({**state, "plan_epoch": torch.zeros(1)})


def test_the_issue_example_resumes_through_the_harness(plugin_file, synthetic, tmp_path):
    """loss-bottomk killed after epoch 1 and resumed trains exactly as uninterrupted (the issue's case)."""
    cfg = fast_config(pruner="test-loss-bottomk", prune_ratio=0.5, epochs=4)
    ref = train(cfg, data=synthetic)

    class Stop(Exception):
        pass

    def stop(m):
        if m["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train({**cfg, "checkpoint_dir": str(tmp_path)}, data=synthetic, progress=stop)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    resumed = train({**cfg, "checkpoint_dir": str(tmp_path), "resume": True}, data=synthetic)
    assert resumed.row["final_acc"] == ref.row["final_acc"]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]
    np.testing.assert_array_equal(resumed.kept_masks, ref.kept_masks)


# ---------------------------------------------------------------------------------------------------
# loading plugins
# ---------------------------------------------------------------------------------------------------


def test_loading_a_file_twice_is_a_no_op(plugin_file):
    before = list_pruners("test-*")
    assert load_plugin(str(plugin_file)) == load_plugin(str(plugin_file.resolve()))
    assert list_pruners("test-*") == before
    assert str(plugin_file.resolve()) in loaded_plugins()


def test_cli_plugin_flag_on_list_and_run(plugin_file, capsys):
    assert main(["list", "--plugin", str(plugin_file)]) == 0
    assert "test-loss-bottomk" in capsys.readouterr().out
    assert (
        main(
            [
                "run",
                "--plugin",
                str(plugin_file),
                "--pruner",
                "test-loss-bottomk",
                "--dataset",
                "synthetic",
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--prune-ratio",
                "0.5",
                "--device",
                "cpu",
                "--no-tracking",
                "--quiet",
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["pruner"] == "test-loss-bottomk" and row["samples_backprop"] == 256  # q = 0.5 * 512, 1 epoch


@pytest.mark.parametrize(
    "spec,message",
    [
        ("missing.py", "plugin missing.py: file not found"),
        ("notes.txt", "plugin notes.txt: not a .py file"),
        ("adir.py", "plugin adir.py: not a regular file"),
        ("boom.py", "plugin boom.py: importing it failed (RuntimeError: boom at import)"),
        ("no_such_module_xyz", "plugin no_such_module_xyz: no module named 'no_such_module_xyz'"),
        ("two words", "plugin 'two words': not a .py file path or a module name"),
    ],
)
def test_bad_plugins_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, spec, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x = 1\n")
    (tmp_path / "adir.py").mkdir()
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom at import')\n")
    for command in (["list"], ["report", "nothing"]):
        assert main([*command, "--plugin", spec]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_duplicate_pruner_name_in_a_plugin_is_one_line(tmp_path):
    (tmp_path / "dup.py").write_text(
        textwrap.dedent("""
        from prunebench.pruners import Pruner, register_pruner

        @register_pruner("orderdp")
        class Dup(Pruner):
            description = "a duplicate name"
    """)
    )
    with pytest.raises(
        ConfigError, match="plugin .*dup.py: importing it failed \\(ValueError: pruner 'orderdp' is already registered"
    ):
        load_plugin(str(tmp_path / "dup.py"))


STUDY = """
[study]
name = "plug"
seeds = [0]
prune_ratios = [0.5]
plugins = [{plugins}]

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = 1
batch_size = 64
device = "cpu"

[methods.test-loss-bottomk]

[methods.bottomk-high]
pruner = "test-loss-bottomk"
options = {{ initial_score = 9.0 }}
"""


def test_study_plugins_are_loaded_relative_to_the_file_and_in_leaderboard_workers(plugin_file, tmp_path):
    from prunebench.studies.leaderboard import run_leaderboard
    from prunebench.studies.spec import load_study

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bottomk.py").write_text(PLUGIN.replace('"test-', '"sub-test-'))
    study_file = tmp_path / "plug.toml"
    study_file.write_text(
        STUDY.format(plugins='"sub/bottomk.py"').replace("test-loss-bottomk", "sub-test-loss-bottomk")
    )
    study = load_study(study_file)
    assert (
        "sub-test-loss-bottomk" in list_pruners()
        and str((tmp_path / "sub" / "bottomk.py").resolve()) in loaded_plugins()
    )
    # two spawned workers: each imports the plugin again (else: unknown pruner, FAILED rows)
    res = run_leaderboard(study, tmp_path / "out", jobs=2, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(res) == 3 and (res["status"] == "FINISHED").all(), res[["method", "status", "error"]]


def test_a_bad_study_plugin_names_the_key(tmp_path):
    from prunebench.studies.spec import load_study

    path = tmp_path / "bad.toml"
    path.write_text(STUDY.format(plugins='"nowhere.py"'))
    with pytest.raises(ConfigError, match=r"bad.toml: study.plugins: plugin nowhere.py: file not found"):
        load_study(path)
    path.write_text(STUDY.format(plugins="").replace("plugins = []", 'plugins = "x.py"'))
    with pytest.raises(ConfigError, match="study.plugins: expected a list"):
        load_study(path)


def test_the_docs_template_is_a_working_plugin_that_passes_the_kit(tmp_path):
    """docs/adding-a-pruner.md's template, saved as one file and loaded as a plugin, passes every check."""
    import re

    from conftest import REPO

    text = (REPO / "docs" / "adding-a-pruner.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    (tmp_path / "loss_bottomk.py").write_text(code)
    load_plugin(str(tmp_path / "loss_bottomk.py"))
    testing.check_pruner("loss-bottomk", context=_context)
    testing.check_pruner("loss-bottomk", options={"initial_score": 1.0}, prune_ratio=0.7, context=_context)
