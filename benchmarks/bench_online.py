"""Online fitting against our full-batch fit and scikit-learn: rows i, j and k.

The rows continue the table of ``bench_vs_sklearn.py``, in the same columns, on
the same anisotropic blobs (its `AnisotropicMixture`, seed 2, as row d):

- i: 2e6 x 16 float32, K=16 diag. Online `fit` against our batch `fit` (held-out
  score within 0.02 nats, at most 0.3x its time) and scikit-learn's.
- j: `partial_fit` over 40 chunks of 50k rows from a generator, with
  total_samples=2e6: held-out score within 0.03 nats of our batch fit of row i,
  resident memory growing less than 150 MB.
- k: online `fit` of a 1e8 x 16 float32 np.memmap (6.4 GB, written to a
  temporary folder and deleted): rows per second per pass and peak resident
  memory (under 2 GB); it runs `examples/fit_memmap.py`.

Each fit runs once (after a warm-up on a subsample that builds the traces): these
are long, and the machine is shared. ``--batch-sizes`` instead times one pass of
SVI steps for a range of batch sizes, the measurement behind the default.

Usage::

    PYTHONPATH=. python benchmarks/bench_online.py --only i,j
    PYTHONPATH=. python benchmarks/bench_online.py --only k
    PYTHONPATH=. python benchmarks/bench_online.py --batch-sizes
"""

import argparse
import importlib.util
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from skbayesmix import VariationalGaussianMixture

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_sklearn import (  # noqa: E402
    REPO_ROOT,
    AnisotropicMixture,
    PeakRSS,
    _package_revision,
    _timed,
    effective_components,
    environment_lines,
    markdown_table,
)

PARAMS = dict(n_components=16, covariance_type="diag", random_state=0)
N_TRAIN, N_TEST = 2_000_000, 100_000
ONLINE_GAP = 0.02  # row i: online may trail our batch fit by this many nats
STREAM_GAP = 0.03  # row j
STREAM_RSS_MB = 150
MEMMAP_RSS_MB = 2048


def mixture():
    """The anisotropic blobs of row d of bench_vs_sklearn.py."""
    return AnisotropicMixture(n_components=16, n_features=16, seed=2)


def train_and_test():
    rng = np.random.RandomState(0)
    source = mixture()
    X = source.sample(N_TRAIN, rng).astype(np.float32)
    return X, source.sample(N_TEST, rng).astype(np.float32)


def _row(name, description, target, passed, **fields):
    row = {"name": name, "description": description, "target": target, **fields}
    row.setdefault("notes", "")
    row["ratio"] = row["ours_s"] / row["sklearn_s"]
    row["score_gap"] = row["ours_score"] - row["sklearn_score"]
    row["passed"] = passed
    return row


class Context:
    """Fits that later rows compare against, computed once per run."""

    def __init__(self):
        self._data = None
        self.batch = None

    @property
    def data(self):
        if self._data is None:
            self._data = train_and_test()
        return self._data

    def batch_fit(self):
        """Our batch fit of the row-i data: (seconds, model)."""
        if self.batch is None:
            X, _ = self.data
            VariationalGaussianMixture(**PARAMS).fit(X[:20_000])
            self.batch = _timed(lambda: VariationalGaussianMixture(**PARAMS).fit(X))
        return self.batch


def workload_i(context, with_sklearn=True):
    X, X_test = context.data
    batch_s, batch = context.batch_fit()
    online_params = dict(learning_method="online", **PARAMS)
    VariationalGaussianMixture(**online_params).fit(X[:20_000])
    online_s, online = _timed(
        lambda: VariationalGaussianMixture(**online_params).fit(X)
    )
    if with_sklearn:
        BayesianGaussianMixture(**PARAMS).fit(X[:20_000])
        sklearn_s, theirs = _timed(lambda: BayesianGaussianMixture(**PARAMS).fit(X))
        sklearn_score, sklearn_iter = theirs.score(X_test), theirs.n_iter_
        context.sklearn = (sklearn_s, sklearn_score, sklearn_iter)
    else:
        sklearn_s, sklearn_score, sklearn_iter = np.nan, np.nan, 0
    online_score, batch_score = online.score(X_test), batch.score(X_test)
    gap, time_ratio = online_score - batch_score, online_s / batch_s
    return _row(
        "i",
        "anisotropic 2e6x16 float32, K=16 diag, online fit",
        f"online - our batch >= -{ONLINE_GAP:g} nats, time <= 0.3x our batch",
        gap >= -ONLINE_GAP and time_ratio <= 0.3,
        ours_s=online_s,
        ours_score=online_score,
        ours_iter=online.n_iter_,
        sklearn_s=sklearn_s,
        sklearn_score=sklearn_score,
        sklearn_iter=sklearn_iter,
        repeats=1,
        notes=(
            "our batch fit: %.3g s, score %.4f, %d iterations; online / batch "
            "time %.2f; online - batch %+.4f nats; ours n_iter = passes (%d "
            "minibatch steps of %d rows); eff. K %d / %d"
            % (
                batch_s,
                batch_score,
                batch.n_iter_,
                time_ratio,
                gap,
                online.n_batch_iter_,
                online.batch_size,
                effective_components(online),
                effective_components(batch),
            )
        ),
    )


def workload_j(context, with_sklearn=True):
    _, X_test = context.data
    batch_s, batch = context.batch_fit()
    source = mixture()
    stream_params = dict(total_samples=40 * 50_000, **PARAMS)

    def chunks():
        rng = np.random.RandomState(1)
        for _ in range(40):
            yield source.sample(50_000, rng).astype(np.float32)

    # Build the traces on a throwaway model, so that they are not counted.
    VariationalGaussianMixture(**stream_params).partial_fit(X_test[:20_000])
    model = VariationalGaussianMixture(**stream_params)
    with PeakRSS() as rss:
        start = time.perf_counter()
        for chunk in chunks():
            model.partial_fit(chunk)
        seconds = time.perf_counter() - start
    score, batch_score = model.score(X_test), batch.score(X_test)
    gap = score - batch_score
    sklearn_s, sklearn_score, sklearn_iter = getattr(
        context, "sklearn", (np.nan, np.nan, 0)
    )
    return _row(
        "j",
        "partial_fit, 40 chunks of 50k rows from a generator, same blobs",
        f"partial_fit - our batch >= -{STREAM_GAP:g} nats, RSS growth < "
        f"{STREAM_RSS_MB} MB",
        gap >= -STREAM_GAP and rss.extra_mb < STREAM_RSS_MB,
        ours_s=seconds,
        ours_score=score,
        ours_iter=model.n_iter_,
        sklearn_s=sklearn_s,
        sklearn_score=sklearn_score,
        sklearn_iter=sklearn_iter,
        repeats=1,
        notes=(
            "peak RSS growth %.0f MB; our batch fit (row i data): %.3g s, score "
            "%.4f; partial_fit - batch %+.4f nats; ours n_iter = calls (%d "
            "minibatch steps); sklearn columns repeat row i's fit"
            % (rss.extra_mb, batch_s, batch_score, gap, model.n_batch_iter_)
        ),
    )


def workload_k(context, with_sklearn=True, n_rows=100_000_000, passes=2):
    spec = importlib.util.spec_from_file_location(
        "fit_memmap", os.path.join(REPO_ROOT, "examples", "fit_memmap.py")
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    report = example.main(["--rows", str(n_rows), "--passes", str(passes)])
    model = report["model"]
    X_test = example.anisotropic_blobs(N_TEST, np.random.default_rng(1))
    peak = max(report["peak_rss_mb"], report["max_rss_mb"])
    return _row(
        "k",
        "np.memmap %.0ex16 float32 (%.1f GB), K=16 diag, online fit"
        % (n_rows, n_rows * 64 / 1e9),
        f"peak RSS < {MEMMAP_RSS_MB} MB; report rows/s per pass",
        peak < MEMMAP_RSS_MB,
        ours_s=report["seconds"],
        ours_score=model.score(X_test),
        ours_iter=model.n_iter_,
        sklearn_s=np.nan,
        sklearn_score=np.nan,
        sklearn_iter=0,
        repeats=1,
        notes=(
            "%.3g rows/s per pass (%d SVI passes + the moments pass); peak RSS "
            "%.0f MB during the fit, %.0f MB for the process (TF included); "
            "the example's own blobs; sklearn not run (would need the file in "
            "memory)" % (
                report["rows_per_second_per_pass"],
                model.n_iter_,
                report["peak_rss_mb"],
                report["max_rss_mb"],
            )
        ),
    )  # fmt: skip


WORKLOADS = {"i": workload_i, "j": workload_j, "k": workload_k}


def batch_size_table(n_rows=400_000, batch_sizes=(2048, 4096, 8192, 16384, 32768)):
    """Seconds of one pass of SVI steps over n_rows, per batch size (min of 3)."""
    from skbayesmix._fitting import LoopState
    from skbayesmix._online import OnlineSettings, minibatch_slices, online_steps
    from skbayesmix._priors import model_prior
    from skbayesmix._standardisation import DataMoments
    from skbayesmix._state import Statistics
    from skbayesmix._tfp_backend import update

    X = mixture().sample(n_rows, np.random.RandomState(0)).astype(np.float32)
    model = VariationalGaussianMixture(
        learning_method="online", max_iter=1, **PARAMS
    ).fit(X)
    fit_model = model_prior(
        model.get_params(), DataMoments(*model._online_moments), X.dtype
    )
    statistics = Statistics(*model._online_statistics)
    Xs = fit_model.standardisation.transform(X)
    times = {size: [] for size in batch_sizes}
    for _ in range(3):
        for size in batch_sizes:
            settings = OnlineSettings(size, model.learning_offset, model.learning_decay)
            posterior = update(
                fit_model.prior,
                statistics,
                fit_model.reg_covar,
                covariance_type=fit_model.covariance_type,
                weight_concentration_prior_type=fit_model.weight_type,
            )
            state = LoopState(posterior, None, -np.inf, statistics, 100)
            minibatches = ((Xs[s], None) for s in minibatch_slices(n_rows, size))
            seconds, _ = _timed(
                lambda state=state, minibatches=minibatches, settings=settings: (
                    online_steps(state, minibatches, fit_model, n_rows, settings)
                )
            )
            times[size].append(seconds)
    lines = [
        "| batch_size | steps | pass s | us per row | ms per step |",
        "|---|---|---|---|---|",
    ]
    for size, values in times.items():
        n_steps = len(minibatch_slices(n_rows, size))
        best = min(values)
        lines.append(
            "| %d | %d | %.3f | %.2f | %.2f |"
            % (size, n_steps, best, best / n_rows * 1e6, best / n_steps * 1e3)
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="i,j,k", help="rows to run, e.g. i,j")
    parser.add_argument("--no-sklearn", action="store_true", help="skip sklearn")
    parser.add_argument("--memmap-rows", type=int, default=100_000_000)
    parser.add_argument("--memmap-passes", type=int, default=2)
    parser.add_argument("--batch-sizes", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    revision = _package_revision()
    load_at_start = os.getloadavg()
    start = time.perf_counter()
    if args.batch_sizes:
        print(batch_size_table())
        print("load average at the start: %.2f %.2f %.2f" % load_at_start)
        print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
        return None
    context, rows = Context(), []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        tick = time.perf_counter()
        if name == "k":
            rows.append(workload_k(context, True, args.memmap_rows, args.memmap_passes))
        else:
            rows.append(WORKLOADS[name](context, not args.no_sklearn))
        print(
            "# workload %s done in %.1f s" % (name, time.perf_counter() - tick),
            file=sys.stderr,
            flush=True,
        )
    command = "PYTHONPATH=. python benchmarks/bench_online.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(
        "\n".join(
            [
                "# skbayesmix online fitting",
                "",
                "`%s`" % command.strip(),
                "",
                markdown_table(rows),
                "",
                "Each fit runs once after a warm-up on a subsample. Scores are "
                "held-out mean log densities in nats.",
                "",
                *environment_lines(None, revision),
                "load average at the start: %.2f %.2f %.2f" % load_at_start,
                "total wall time: %.0f s" % (time.perf_counter() - start),
            ]
        )
    )
    return rows


if __name__ == "__main__":
    main()
