"""The examples run and produce what they promise."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_plot_tutorial_prints_summary_and_writes_png(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "density.png"
    monkeypatch.setattr(sys, "argv", ["plot_tutorial.py", str(out)])
    runpy.run_path(str(EXAMPLES / "plot_tutorial.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "converged: True" in printed
    assert "evidence lower bound" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_dirichlet_process_keeps_three_components(capsys):
    runpy.run_path(str(EXAMPLES / "plot_dirichlet_process.py"), run_name="__main__")
    assert "active components: 3 of 10" in capsys.readouterr().out
