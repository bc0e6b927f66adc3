"""MLflow: every run logs params, per-epoch metrics, final metrics and artifacts."""

from __future__ import annotations

import numpy as np
from conftest import fast_config
from mlflow.tracking import MlflowClient

from prunebench.harness import train


def test_run_is_logged_to_mlflow(synthetic, tracking_uri, tmp_path):
    r = train(
        fast_config(
            pruner="orderdp",
            prune_ratio=0.4,
            tracking=True,
            tracking_uri=tracking_uri,
            experiment="t-tracking",
            tags={"study": "unit"},
        ),
        data=synthetic,
    )
    client = MlflowClient(tracking_uri)
    run = client.get_run(r.row["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "orderdp[c=0.8,init=3,p=0.4]"
    assert run.data.params["pruner"] == "orderdp" and run.data.params["pruner.candidate_ratio"] == "0.8"
    assert run.data.tags["study"] == "unit"
    assert run.data.metrics["final_acc"] == r.row["final_acc"]
    assert run.data.metrics["realized_prune_ratio"] == r.row["realized_prune_ratio"]
    hist = client.get_metric_history(run.info.run_id, "test_acc")
    assert [m.step for m in hist] == [0, 1, 2]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"usage_counts.npy", "kept_masks_packed.npy", "last_kept_indices.npy", "run.json"} <= names
    local = client.download_artifacts(run.info.run_id, "usage_counts.npy", str(tmp_path))
    np.testing.assert_array_equal(np.load(local), r.usage)


def test_failed_run_is_marked_failed(synthetic, tracking_uri):
    import pytest

    from prunebench.errors import TrainingError

    with pytest.raises(TrainingError):
        train(
            fast_config(
                pruner="full",
                lr=1e12,
                schedule="constant",
                momentum=0.0,
                tracking=True,
                tracking_uri=tracking_uri,
                experiment="t-fail",
            ),
            data=synthetic,
        )
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("t-fail")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "training loss became" in runs[0].data.tags["prunebench.error"]
