"""The examples run, print what they promise and write their figures."""

import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_example(name, out, monkeypatch, capsys):
    # The examples take the figure's path as their first argument.
    monkeypatch.setattr(sys, "argv", [name, str(out)])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    return capsys.readouterr().out


def test_plot_tutorial_prints_summary_and_writes_png(tmp_path, monkeypatch, capsys):
    printed = _run_example("plot_tutorial.py", tmp_path / "t.png", monkeypatch, capsys)
    assert "converged: True" in printed
    assert "evidence lower bound" in printed


def test_plot_grid_search_picks_three_and_writes_png(tmp_path, monkeypatch, capsys):
    printed = _run_example(
        "plot_grid_search.py", tmp_path / "g.png", monkeypatch, capsys
    )
    assert "best n_components by held-out density: 3" in printed
    assert "largest ELBO at n_components = 3" in printed


def test_plot_dirichlet_process_keeps_three_components(tmp_path, monkeypatch, capsys):
    printed = _run_example(
        "plot_dirichlet_process.py", tmp_path / "d.png", monkeypatch, capsys
    )
    assert "active components: 3 of 10" in printed
    assert "converged: True" in printed
