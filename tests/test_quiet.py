"""TensorFlow starts quietly: its known start-up lines are dropped, nothing else."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from skbayesmix import _tf_quiet
from skbayesmix._tf_quiet import (
    SHOW_TF_LOGS_VARIABLE,
    _without_startup_lines,
    startup_lines_dropped,
)

ROOT = Path(__file__).resolve().parent.parent

# What TF 2.21 wrote to stderr on the first fit of examples/plot_tutorial.py.
STARTUP_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are "
    b"written to STDERR\n"
    b"I0000 00:00:1795815242.334298    3266 port.cc:153] oneDNN custom operations "
    b"are on. You may see slightly different numerical results due to "
    b"floating-point round-off errors from different computation orders. To turn "
    b"them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    b"I0000 00:00:1795815242.334719    3266 cudart_stub.cc:31] Could not find cuda "
    b"drivers on your machine, GPU will not be used.\n"
    b"I0000 00:00:1795815242.387544    3266 cpu_feature_guard.cc:227] This "
    b"TensorFlow binary is optimized to use available CPU instructions in "
    b"performance-critical operations.\n"
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, "
    b"rebuild TensorFlow with the appropriate compiler flags.\n"
    b"E0000 00:00:1795815245.082578    3266 cuda_platform.cc:52] failed call to "
    b"cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)

OTHER_LINES = (
    b"W0000 00:00:1795815245.1    3266 op_level_cost_estimator.cc:699] Error in "
    b"PredictCost() for the op: Conv2D\n",
    b"E0000 00:00:1795815245.1    3266 cuda_platform.cc:52] failed call to cuInit: "
    b"CUDA_ERROR_OUT_OF_MEMORY\n",
    b"/x.py:3: UserWarning: a Python warning\n",
    b"To enable the following instructions: AVX2, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.\n",
    b"caf\xc3\xa9 \xff not utf-8, and no newline",
)


def test_without_startup_lines_drops_only_the_known_lines():
    assert _without_startup_lines(STARTUP_LINES) == b""
    # Interleaved, every other line survives byte for byte and in order; the
    # cpu-feature continuation survives when it does not follow its first line.
    startup = STARTUP_LINES.splitlines(keepends=True)
    mixed = b"".join(
        [OTHER_LINES[0], *startup[:3], OTHER_LINES[1], *startup[3:], *OTHER_LINES[2:]]
    )
    assert _without_startup_lines(mixed) == b"".join(OTHER_LINES)


def test_without_startup_lines_knows_the_older_log_prefix():
    line = (
        b"2024-01-01 12:00:00.000000: I tensorflow/core/util/port.cc:113] oneDNN "
        b"custom operations are on. You may see slightly different results.\n"
    )
    assert _without_startup_lines(line) == b""


def test_startup_lines_dropped_passes_other_output_through(capfd):
    with startup_lines_dropped():
        os.write(2, STARTUP_LINES[:90])
        os.write(2, STARTUP_LINES[90:] + OTHER_LINES[0])
        print("stdout is untouched")
    captured = capfd.readouterr()
    assert captured.err == OTHER_LINES[0].decode()
    assert captured.out == "stdout is untouched\n"


def test_startup_lines_dropped_keeps_output_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError, match="TF failed"):
        with startup_lines_dropped():
            os.write(2, STARTUP_LINES + b"the error TF printed\n")
            raise RuntimeError("TF failed")
    assert capfd.readouterr().err == "the error TF printed\n"
    # fd 2 points where it did before.
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_startup_lines_dropped_is_thread_safe(capfd):
    def write_lines(name):
        for i in range(20):
            with startup_lines_dropped():
                os.write(2, STARTUP_LINES + f"{name} {i}\n".encode())

    threads = [threading.Thread(target=write_lines, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = capfd.readouterr().err.splitlines()
    assert sorted(lines) == sorted(f"{n} {i}" for n in "ab" for i in range(20))


def test_startup_lines_dropped_shows_everything_when_asked(capfd, monkeypatch):
    monkeypatch.setenv(SHOW_TF_LOGS_VARIABLE, "1")
    with startup_lines_dropped():
        os.write(2, STARTUP_LINES)
    assert capfd.readouterr().err == STARTUP_LINES.decode()


def _logging_settings():
    return {k: v for k, v in os.environ.items() if k.startswith(("TF_CPP", "ABSL"))}


def test_import_tensorflow_leaves_logging_settings_alone(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    before = _logging_settings()
    tf, tfp = _tf_quiet.import_tensorflow()
    assert tf.__name__ == "tensorflow"
    assert tfp.__name__ == "tensorflow_probability"
    assert _logging_settings() == before


def _run(args, cwd, show_tf_logs=None):
    env = {k: v for k, v in os.environ.items() if k != SHOW_TF_LOGS_VARIABLE}
    env["PYTHONPATH"] = str(ROOT)
    if show_tf_logs is not None:
        env[SHOW_TF_LOGS_VARIABLE] = show_tf_logs
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_seed_script_writes_nothing_to_stderr(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "density.png"
    result = _run([str(ROOT / "examples" / "plot_tutorial.py"), str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "converged: True" in result.stdout
    assert out.exists()


def test_switch_shows_tensorflow_start_up_lines(tmp_path):
    code = (
        "import numpy as np; from skbayesmix import VariationalGaussianMixture as V;"
        "V(n_components=2).fit(np.random.RandomState(0).randn(20, 2))"
    )
    loud = _run(["-c", code], tmp_path, show_tf_logs="1")
    assert loud.returncode == 0, loud.stderr
    if not loud.stderr:
        pytest.skip("TensorFlow printed no start-up lines on this machine")
    # Whatever TF printed on this machine is shown, and it is what was filtered.
    assert _without_startup_lines(loud.stderr.encode()) == b""
