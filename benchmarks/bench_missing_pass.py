"""One pass of the missing-value E-step over row (m)'s incomplete rows, by r.

Row (m) of ``bench_vs_sklearn.py``: 1e5 x 16, K=8 'full', 10% of entries
missing completely at random. The posterior comes from k-means labels
(``profile_estep.posterior_near_truth``). Each pass is timed (best of
``--repeats``, one thread) twice in the same process: with patterns of
``PATTERN_BLOCK_MIN_ROWS`` rows or more in blocks of their own, run as complete
data, and with every row in blocks that mix patterns. The statistics of the two
must agree, and their largest relative difference is printed.

Usage::

    PYTHONPATH=. python benchmarks/bench_missing_pass.py
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_vs_sklearn import limit_threads, train_and_test  # noqa: E402
from profile_estep import posterior_near_truth  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    limit_threads(1)

    from skbayesmix import _missing
    from skbayesmix._state import COVARIANCE_STRUCTURES
    from skbayesmix._tfp_backend import _loop

    X, _ = train_and_test("m")
    X = (X - X.mean(0)) / X.std(0)
    holes = X.copy()
    holes[np.random.RandomState(1).rand(*holes.shape) < 0.1] = np.nan
    posterior = posterior_near_truth(X, 8, COVARIANCE_STRUCTURES["full"])
    step = _loop.compiled("incomplete_statistics", "full", "dirichlet_process")
    n_missing = np.isnan(holes).sum(axis=1)
    default = _missing.PATTERN_BLOCK_MIN_ROWS
    print("| rows | n | one-pattern blocks s | mixed only s | ratio | rel. diff |")
    print("|---|---|---|---|---|---|")
    for r in [None, 1, 2, 3, 4, 5]:
        rows = holes[n_missing > 0] if r is None else holes[n_missing == r]
        seconds, results = [], []
        for min_rows in (default, np.iinfo(np.int64).max):
            _missing.PATTERN_BLOCK_MIN_ROWS = min_rows
            _, _, incomplete = _missing.split_incomplete(rows, np.ones(len(rows)))
            inputs = _loop._tensors(
                incomplete, _loop._float64(posterior), np.float64(0.0)
            )
            results.append([a.numpy() for a in step(*inputs)])
            times = []
            for _ in range(args.repeats):
                tick = time.perf_counter()
                [a.numpy() for a in step(*inputs)]
                times.append(time.perf_counter() - tick)
            seconds.append(min(times))
        _missing.PATTERN_BLOCK_MIN_ROWS = default
        difference = max(
            np.abs(a - b).max() / np.abs(b).max() for a, b in zip(*results)
        )
        print(
            "| %s | %d | %.4f | %.4f | %.2f | %.1e |"
            % (
                "all incomplete" if r is None else "r = %d" % r,
                len(rows),
                seconds[0],
                seconds[1],
                seconds[0] / seconds[1],
                difference,
            )
        )


if __name__ == "__main__":
    main()
