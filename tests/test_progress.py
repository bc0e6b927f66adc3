"""Live progress of leaderboard and sweep cells: epoch, accuracy so far, ETA; nothing with --quiet."""

from __future__ import annotations

import io
import re
import textwrap

from prunebench.studies.progress import CellProgress, format_seconds


def test_cell_progress_by_hand():
    events, now = [], [100.0]
    p = CellProgress("orderdp p=0.5 seed=0", lambda c, t: events.append((c, t)), clock=lambda: now[0])
    p({"epoch": 0, "epochs": 10, "epoch_time_s": 4.0})  # started at 96: 4 s per epoch, 9 left
    now[0] = 110.0
    p({"epoch": 1, "epochs": 10, "epoch_time_s": 5.0, "test_acc": 0.25})  # 14 s / 2 epochs, 8 left: 56 s
    now[0] = 117.0
    p({"epoch": 2, "epochs": 10, "epoch_time_s": 6.0})  # 21 s / 3, 7 left: 49 s; accuracy carried over
    now[0] = 176.0
    p({"epoch": 9, "epochs": 10, "epoch_time_s": 6.0, "test_acc": 0.5})
    p.end()
    assert [t for _, t in events] == [
        "epoch 1/10  acc -  ETA 36s",
        "epoch 2/10  acc 0.2500  ETA 56s",
        "epoch 3/10  acc 0.2500  ETA 49s",
        "epoch 10/10  acc 0.5000  ETA 0s",
        None,
    ]
    assert {c for c, _ in events} == {"orderdp p=0.5 seed=0"}


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.4, 60, 3599, 3600, 7322)] == [
        "0s",
        "59s",
        "1m00s",
        "59m59s",
        "1h00m",
        "2h02m",
    ]


def test_live_line_on_a_terminal_and_lines_in_a_file():
    from prunebench.cli import _Live

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    live = _Live(out)
    live.show("a", "epoch 1/2  acc -  ETA 3s")
    live.show("b", "epoch 1/2  acc -  ETA 4s")
    live.log("[1/2] a: acc 0.5")
    live.show("a", None)
    text = out.getvalue()
    assert "\r\x1b[2Ka: epoch 1/2  acc -  ETA 3s | b: epoch 1/2  acc -  ETA 4s" in text
    assert "[1/2] a: acc 0.5\n" in text and text.endswith("\r\x1b[2Kb: epoch 1/2  acc -  ETA 4s")
    plain = io.StringIO()
    live = _Live(plain)
    live.show("a", "epoch 1/2  acc -  ETA 3s")
    live.show("a", None)
    live.log("done")
    assert plain.getvalue() == "  a: epoch 1/2  acc -  ETA 3s\ndone\n"


STUDY = """
[study]
name = "prog"
seeds = [0]
prune_ratios = [0.5]

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = 2
batch_size = 64
device = "cpu"

[methods.random-dynamic]
"""


def test_leaderboard_shows_each_cell_and_quiet_shows_nothing(tmp_path, monkeypatch, capsys):
    from prunebench.cli import main

    path = tmp_path / "prog.toml"
    path.write_text(textwrap.dedent(STUDY))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["leaderboard", str(path), "--tracking-uri", uri, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    for cell in ("full p=0 seed=0", "random-dynamic p=0.5 seed=0"):
        assert re.search(rf"  {re.escape(cell)}: epoch 1/2  acc 0\.\d{{4}}  ETA \d+s\n", err), err
        assert re.search(rf"  {re.escape(cell)}: epoch 2/2  acc 0\.\d{{4}}  ETA 0s\n", err), err
    assert (
        main(
            [
                "leaderboard",
                str(path),
                "--tracking-uri",
                uri,
                "--out",
                str(tmp_path / "b"),
                "--quiet",
                "--methods",
                "full",
            ]
        )
        == 0
    )  # done cells are read back; nothing trains, nothing printed
    assert capsys.readouterr().err == ""
