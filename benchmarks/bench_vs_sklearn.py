"""Side-by-side speed and quality of skbayesmix against scikit-learn.

Both estimators run in this one process with the same constructor parameters.
After a warm-up fit of each, fits alternate (ours, sklearn, ours, ...) so that
drift in machine speed hits both, and the median time of each is reported with
the held-out mean log density (`score` on fresh draws from the same
distribution) and `n_iter_`. The output is one markdown table, one row per
workload, with the target of each and whether it passes.

Usage::

    PYTHONPATH=. python benchmarks/bench_vs_sklearn.py
    PYTHONPATH=. python benchmarks/bench_vs_sklearn.py --quick --only a,b,g
    PYTHONPATH=. python benchmarks/bench_vs_sklearn.py --threads 1 --output out.md

Workloads (see `WORKLOADS`): a, b (the tutorial data), c, d (large anisotropic
mixtures), e (score_samples on a 1000 x 1000 grid), f (GridSearchCV), g (the
first fit in a fresh process), m (a fit with 10% of entries missing, against
the same fit of the complete data), h (time per iteration of 'full' on 1e6 x 16,
against sklearn and against the GEMM roofline), n (PyCave's published CPU
workload: 1e5 x 32, K=16 'full', 100 iterations, against scikit-learn's
GaussianMixture and BayesianGaussianMixture). Rows ``a-f32`` ... ``d-f32`` refit
a to d on float32 input and compare our float32 held-out score with our float64
one; ``n-f32`` compares our float32 time with our float64 time.
"""

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings

import numpy as np
import psutil
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.model_selection import GridSearchCV

from skbayesmix import VariationalGaussianMixture

# The quality target: our held-out mean log density may trail sklearn's (or our
# float64 fit's, for the float32 rows) by at most this many nats.
SCORE_TOLERANCE = 0.01
TUTORIAL_CENTRES = ((2.0, 0.0), (-2.0, -4.0), (-2.0, 4.0))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------


def tutorial_data(rng, n_per_centre=1024):
    """3 x 1024 points from unit-variance 2-D Gaussians at the tutorial centres.

    Returns
    -------
    X : ndarray of shape (3 * n_per_centre, 2)
    """
    return np.vstack(
        [rng.standard_normal((n_per_centre, 2)) + c for c in TUTORIAL_CENTRES]
    )


class AnisotropicMixture:
    """Overlapping Gaussian clusters with random rotations and random scales.

    Component k has mean ~ N(0, mean_spread^2 I) and covariance
    R_k diag(s_k)^2 R_k^T, with R_k a random rotation and log s_k uniform in
    [log 0.3, log 2], so the long axes of neighbouring clusters overlap.
    """

    def __init__(self, n_components, n_features, seed, mean_spread=1.0):
        rng = np.random.RandomState(seed)
        self.weights = rng.dirichlet(5.0 * np.ones(n_components))
        self.means = mean_spread * rng.standard_normal((n_components, n_features))
        scales = np.exp(
            rng.uniform(np.log(0.3), np.log(2.0), (n_components, n_features))
        )
        rotations = np.linalg.qr(
            rng.standard_normal((n_components, n_features, n_features))
        )[0]
        # x = m + R diag(s) z, written as a row transform z @ (R diag(s))^T.
        self.transforms = np.swapaxes(rotations * scales[:, None, :], 1, 2)

    def sample(self, n_samples, rng):
        """Draw a shuffled sample.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        labels = rng.choice(len(self.weights), size=n_samples, p=self.weights)
        X = rng.standard_normal((n_samples, self.means.shape[1]))
        for k in range(len(self.weights)):
            rows = labels == k
            X[rows] = X[rows] @ self.transforms[k] + self.means[k]
        return X


def train_and_test(name):
    """The training and held-out sets of one workload, from fixed seeds.

    Returns
    -------
    X_train, X_test : ndarray of shape (n, n_features)
    """
    rng = np.random.RandomState(0)
    if name in ("a", "b", "e", "f", "g"):
        return tutorial_data(rng), tutorial_data(rng)
    if name == "c":
        mixture = AnisotropicMixture(n_components=12, n_features=16, seed=1)
        return mixture.sample(60_000, rng), mixture.sample(20_000, rng)
    if name in ("d", "h"):
        mixture = AnisotropicMixture(n_components=16, n_features=16, seed=2)
        return mixture.sample(1_000_000, rng), mixture.sample(100_000, rng)
    if name == "m":
        mixture = AnisotropicMixture(n_components=8, n_features=16, seed=4)
        return mixture.sample(100_000, rng), mixture.sample(20_000, rng)
    if name == "n":
        mixture = AnisotropicMixture(n_components=16, n_features=32, seed=3)
        return mixture.sample(100_000, rng), mixture.sample(20_000, rng)
    raise ValueError(name)


# --------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------


def _timed(func):
    """Run func() with the garbage collector paused; return (seconds, result).

    This is timeit's convention: no collection pause lands inside one library's
    timing by chance. An explicit gc.collect() before each call, used earlier,
    also evicted the CPU caches before every fit, which no real loop of fits
    (cross-validation, check_estimator) does; it added about 1.6 ms to our 5 ms
    tutorial fit and 0.9 ms to sklearn's.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        result = func()
        return time.perf_counter() - start, result
    finally:
        if was_enabled:
            gc.enable()


def alternate(fit_ours, fit_sklearn, n_repeats, warm_up=None):
    """Median time of each of two fits, run alternately after a warm-up.

    Parameters
    ----------
    fit_ours, fit_sklearn : callable
        Return the fitted object. `fit_sklearn` may be None to time ours alone.
    n_repeats : int
    warm_up : callable or None, default=None
        Run once before timing. By default one fit of each.

    Returns
    -------
    median_ours, median_sklearn : float
        median_sklearn is NaN when `fit_sklearn` is None.
    last_ours, last_sklearn : object
        The objects fitted by the last timed repeat.
    """
    fits = [fit_ours] if fit_sklearn is None else [fit_ours, fit_sklearn]
    if warm_up is None:
        for fit in fits:
            fit()
    else:
        warm_up()
    times = [[] for _ in fits]
    fitted = [None for _ in fits]
    for _ in range(n_repeats):
        for i, fit in enumerate(fits):
            seconds, fitted[i] = _timed(fit)
            times[i].append(seconds)
    if fit_sklearn is None:
        return statistics.median(times[0]), np.nan, fitted[0], None
    return statistics.median(times[0]), statistics.median(times[1]), *fitted


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond."""

    def __enter__(self):
        self._process = psutil.Process()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        self.extra_mb = (self.peak - self.baseline) / 2**20


def traced_peak_mb(func):
    """Peak of Python and NumPy allocations made by func(), in MB above entry."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        func()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - baseline) / 2**20


def effective_components(estimator):
    return int(np.sum(estimator.weights_ > 0.01))


# --------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------


def _row(name, description, target, ratio_target, **fields):
    """One table row; `passed` checks the time ratio and the score gap."""
    row = {"name": name, "description": description, "target": target, **fields}
    row.setdefault("notes", "")
    ratio = row["ours_s"] / row["sklearn_s"]
    row["ratio"] = ratio
    row["score_gap"] = row["ours_score"] - row["sklearn_score"]
    row["passed"] = ratio <= ratio_target and row["score_gap"] >= -SCORE_TOLERANCE
    return row


def fit_workload(
    name,
    description,
    params,
    target_ratio,
    quick,
    float32,
    warm_up_rows=None,
    sklearn_float32=True,
):
    """Time the fit of both estimators on one data set, in float64 then float32.

    Parameters
    ----------
    params : dict
        Constructor parameters, the same for both estimators.
    float32 : bool
        Whether to add the float32 row.
    warm_up_rows : int or None, default=None
        If given, the warm-up fits use only this many rows, to bound run time on
        the big workloads (it still builds our trace and warms both libraries).
    sklearn_float32 : bool, default=True
        Whether to refit sklearn on float32 input for the float32 row; if not, that
        row repeats sklearn's float64 numbers, to bound run time.

    Returns
    -------
    rows : list of dict
        The float64 row and the float32 row.
    """
    X_train, X_test = train_and_test(name)
    repeats = WORKLOADS[name]["repeats"][quick]
    rows = []
    for dtype in (np.float64, np.float32) if float32 else (np.float64,):
        X, X_held_out = X_train.astype(dtype), X_test.astype(dtype)
        refit_sklearn = dtype is np.float64 or sklearn_float32

        def fit_ours(X=X):
            return VariationalGaussianMixture(**params).fit(X)

        def fit_sklearn(X=X):
            return BayesianGaussianMixture(**params).fit(X)

        warm_up = None
        if warm_up_rows is not None:

            def warm_up(X=X, refit_sklearn=refit_sklearn):
                VariationalGaussianMixture(**params).fit(X[:warm_up_rows])
                if refit_sklearn:
                    BayesianGaussianMixture(**params).fit(X[:warm_up_rows])

        ours_s, sklearn_s, ours, theirs = alternate(
            fit_ours, fit_sklearn if refit_sklearn else None, repeats, warm_up
        )
        fields = dict(
            ours_s=ours_s,
            ours_score=ours.score(X_held_out),
            ours_iter=ours.n_iter_,
            repeats=repeats,
        )
        if refit_sklearn:
            fields.update(
                sklearn_s=sklearn_s,
                sklearn_score=theirs.score(X_held_out),
                sklearn_iter=theirs.n_iter_,
                notes="eff. K %d / %d"
                % (effective_components(ours), effective_components(theirs)),
            )
            fitted_sklearn = theirs
        else:
            fields.update(
                sklearn_s=rows[0]["sklearn_s"],
                sklearn_score=rows[0]["sklearn_score"],
                sklearn_iter=rows[0]["sklearn_iter"],
                notes="sklearn columns repeat its float64 fit (not refitted); "
                "eff. K %d / %d"
                % (effective_components(ours), effective_components(fitted_sklearn)),
            )
        if dtype is np.float64:
            rows.append(
                _row(
                    name,
                    description,
                    f"ratio <= {target_ratio:g}",
                    target_ratio,
                    **fields,
                )
            )
            continue
        # float32: the quality target is our float64 score, not sklearn's.
        score64 = rows[0]["ours_score"]
        row = _row(
            f"{name}-f32",
            description + ", float32 input",
            f"abs(ours f32 - ours f64) <= {SCORE_TOLERANCE:g}",
            np.inf,
            **fields,
        )
        row["passed"] = abs(row["ours_score"] - score64) <= SCORE_TOLERANCE
        row["notes"] += "; ours f32 - ours f64 = %+.4f nats" % (
            row["ours_score"] - score64
        )
        rows.append(row)
    return rows


def workload_a(quick, float32=True):
    params = dict(n_components=3, covariance_type="diag", random_state=0)
    return fit_workload("a", "tutorial 3072x2, K=3 diag", params, 1.0, quick, float32)


def workload_b(quick, float32=True):
    # max_iter is raised so that both converge: sklearn needs about 300-400
    # iterations here while its surplus components switch off.
    params = dict(
        n_components=10,
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_process",
        max_iter=1000,
        random_state=0,
    )
    return fit_workload(
        "b",
        "tutorial 3072x2, K=10 full DP, max_iter=1000",
        params,
        0.5,
        quick,
        float32,
    )


def workload_c(quick, float32=True):
    params = dict(n_components=12, covariance_type="full", random_state=0)
    return fit_workload(
        "c",
        "anisotropic 60000x16, K=12 full",
        params,
        0.33,
        quick,
        float32,
        warm_up_rows=5000,
    )


def workload_d(quick, float32=True):
    params = dict(n_components=16, covariance_type="diag", random_state=0)
    return fit_workload(
        "d",
        "anisotropic 1e6x16, K=16 diag",
        params,
        0.33,
        quick,
        float32,
        warm_up_rows=20000,
        sklearn_float32=False,
    )


def workload_e(quick, float32=True):
    """Time score_samples on a 1000 x 1000 grid, and our peak extra memory."""
    X_train, X_test = train_and_test("e")
    params = dict(n_components=10, covariance_type="full", random_state=0)
    ours = VariationalGaussianMixture(**params).fit(X_train)
    theirs = BayesianGaussianMixture(**params).fit(X_train)
    low, high = X_train.min(axis=0) - 1.0, X_train.max(axis=0) + 1.0
    xx, yy = np.meshgrid(
        np.linspace(low[0], high[0], 1000), np.linspace(low[1], high[1], 1000)
    )
    grid = np.column_stack([xx.ravel(), yy.ravel()])  # [1e6, 2]
    repeats = WORKLOADS["e"]["repeats"][quick]
    ours_s, sklearn_s, _, _ = alternate(
        lambda: ours.score_samples(grid), lambda: theirs.score_samples(grid), repeats
    )
    ours_traced = traced_peak_mb(lambda: ours.score_samples(grid))
    sklearn_traced = traced_peak_mb(lambda: theirs.score_samples(grid))
    with PeakRSS() as ours_rss:
        ours.score_samples(grid)
    with PeakRSS() as sklearn_rss:
        theirs.score_samples(grid)
    row = _row(
        "e",
        "score_samples, 1000x1000 grid, K=10 full D=2",
        "ratio <= 1, ours peak < 256 MB",
        1.0,
        ours_s=ours_s,
        sklearn_s=sklearn_s,
        ours_score=ours.score(X_test),
        sklearn_score=theirs.score(X_test),
        ours_iter=ours.n_iter_,
        sklearn_iter=theirs.n_iter_,
        repeats=repeats,
        notes=(
            "peak extra memory, tracemalloc: ours %.0f MB, sklearn %.0f MB; "
            "RSS: ours %.0f MB, sklearn %.0f MB (output alone is 8 MB)"
            % (ours_traced, sklearn_traced, ours_rss.extra_mb, sklearn_rss.extra_mb)
        ),
    )
    row["passed"] = row["passed"] and max(ours_traced, ours_rss.extra_mb) < 256
    return [row]


def workload_f(quick, float32=True):
    """Time a whole GridSearchCV over n_components for each estimator class."""
    X_train, X_test = train_and_test("f")
    param_grid = {"n_components": list(range(1, 9))}

    def search(estimator_class):
        return GridSearchCV(
            estimator_class(random_state=0), param_grid, cv=5, n_jobs=1
        ).fit(X_train)

    def warm_up():
        # Our trace and both libraries, at the cost of two single fits.
        VariationalGaussianMixture(n_components=2, random_state=0).fit(X_train)
        BayesianGaussianMixture(n_components=2, random_state=0).fit(X_train)

    repeats = WORKLOADS["f"]["repeats"][quick]
    ours_s, sklearn_s, ours, theirs = alternate(
        lambda: search(VariationalGaussianMixture),
        lambda: search(BayesianGaussianMixture),
        repeats,
        warm_up,
    )
    return [
        _row(
            "f",
            "GridSearchCV n_components 1..8, cv=5, tutorial data",
            "ratio <= 2",
            2.0,
            ours_s=ours_s,
            sklearn_s=sklearn_s,
            ours_score=ours.best_estimator_.score(X_test),
            sklearn_score=theirs.best_estimator_.score(X_test),
            ours_iter=ours.best_estimator_.n_iter_,
            sklearn_iter=theirs.best_estimator_.n_iter_,
            repeats=repeats,
            notes="best n_components %d / %d; 41 fits per search"
            % (
                ours.best_params_["n_components"],
                theirs.best_params_["n_components"],
            ),
        )
    ]


_FIRST_FIT_SCRIPT = textwrap.dedent(
    """
    import json, time, warnings
    start = time.perf_counter()
    import numpy as np
    from {module} import {estimator}
    imported = time.perf_counter()
    {preload}
    preloaded = time.perf_counter()
    rng = np.random.RandomState(0)
    X = np.vstack([rng.standard_normal((1024, 2)) + c for c in {centres!r}])
    warnings.simplefilter("ignore")
    fit_seconds = []
    for _ in range(2):
        tick = time.perf_counter()
        {estimator}(n_components=3, covariance_type="diag", random_state=0).fit(X)
        fit_seconds.append(time.perf_counter() - tick)
    print(json.dumps({{
        "import": imported - start,
        "preload": preloaded - imported,
        "fits": fit_seconds,
    }}))
    """
)

_IMPORT_TENSORFLOW_SCRIPT = textwrap.dedent(
    """
    import json, os, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # What skbayesmix imports anyway, so that only TensorFlow's own share is timed.
    import skbayesmix, sklearn.cluster
    start = time.perf_counter()
    import tensorflow
    import tensorflow_probability
    print(json.dumps({"import": time.perf_counter() - start}))
    """
)


def peak_gemm_rate(dtype, size=2048, repeats=5):
    """NumPy's GEMM rate on a large square product, in flop/s: the best of repeats.

    A large square product runs at the BLAS kernel's peak, which skinny
    products of the E-step's shape do not reach: the roofline of a row is the
    machine's rate, not the rate of a slow GEMM shape.
    """
    rng = np.random.RandomState(0)
    A = rng.standard_normal((size, size)).astype(dtype)
    B = rng.standard_normal((size, size)).astype(dtype)
    A @ B
    return 2 * size**3 / min(_timed(lambda: A @ B)[0] for _ in range(repeats))


def _blas_kernel():
    """The BLAS library and kernel NumPy runs (threadpoolctl), for the notes."""
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not blas:
        return "unknown BLAS"
    return "%s %s" % (blas[0].get("internal_api"), blas[0].get("architecture"))


def workload_h(quick, float32=True):
    """Per-iteration time of 'full' on 1e6 x 16, K=16, from warm-started fits.

    Both estimators are first fitted for a few iterations (not timed), then
    refitted with warm_start=True, tol=0 and a fixed max_iter, so the time per
    iteration excludes initialisation. The roofline is the time of the two GEMMs
    one iteration needs, N x K x (D (D + 1) / 2 + D) multiply-adds each (the
    packed design), at NumPy's peak GEMM rate in the row's dtype, measured in
    this run on a large square product (`peak_gemm_rate`).
    """
    X_train, X_test = train_and_test("h")
    n_samples, n_features = X_train.shape
    n_components = 16
    n_design = n_features * (n_features + 1) // 2 + n_features
    ours_iters, sklearn_iters = (2, 1) if quick else (4, 2)
    params = dict(
        n_components=n_components, covariance_type="full", random_state=0, max_iter=3
    )
    rows = []
    sklearn_fields = None
    for dtype in (np.float64, np.float32) if float32 else (np.float64,):
        X, X_held_out = X_train.astype(dtype), X_test.astype(dtype)
        ours = VariationalGaussianMixture(**params).fit(X)
        ours.set_params(warm_start=True, tol=0.0, max_iter=1).fit(X)
        ours.set_params(max_iter=ours_iters)
        ours_s = _timed(functools.partial(ours.fit, X))[0] / ours_iters
        if sklearn_fields is None:
            theirs = BayesianGaussianMixture(**dict(params, max_iter=2)).fit(X)
            theirs.set_params(warm_start=True, tol=0.0, max_iter=sklearn_iters)
            sklearn_s = _timed(functools.partial(theirs.fit, X))[0] / sklearn_iters
            sklearn_fields = dict(
                sklearn_s=sklearn_s,
                sklearn_score=theirs.score(X_held_out),
                sklearn_iter=theirs.n_iter_,
            )
        rate = peak_gemm_rate(dtype)
        roofline = 2 * 2 * n_samples * n_design * n_components / rate
        fields = dict(
            ours_s=ours_s,
            ours_score=ours.score(X_held_out),
            ours_iter=ours.n_iter_,
            repeats=1,
            **sklearn_fields,
        )
        notes = (
            "seconds per iteration (ours over %d, sklearn over %d warm iterations); "
            "roofline %s %.3g s (NumPy's peak %s GEMM, %.0f GFLOP/s, %s), "
            "ours / roofline %.1f"
            % (
                ours_iters,
                sklearn_iters,
                np.dtype(dtype).name,
                roofline,
                np.dtype(dtype).name,
                rate / 1e9,
                _blas_kernel(),
                ours_s / roofline,
            )
        )
        if dtype is np.float64:
            row = _row(
                "h",
                "1e6x16, K=16 full, per iteration",
                "ratio <= 0.15",
                0.15,
                notes=notes,
                **fields,
            )
        else:
            row = _row(
                "h-f32",
                "1e6x16, K=16 full, per iteration, float32 input",
                "ours <= 3x float32 roofline",
                np.inf,
                notes=notes + "; sklearn columns repeat its float64 fit",
                **fields,
            )
            row["passed"] = ours_s <= 3 * roofline
        rows.append(row)
    return rows


def workload_m(quick, float32=True):
    """Missing values: 1e5 x 16, K=8 'full', 10% of entries missing at random.

    Our fit of X with NaN against our fit of the same X complete, both 50
    iterations exactly (tol=0) from the same seed, alternating; the target is
    the time ratio. The held-out rows are complete; the score of the fit with
    holes is below the complete fit's, as it saw less data (in the notes).
    """
    X_train, X_test = train_and_test("m")
    holes = X_train.copy()
    holes[np.random.RandomState(1).rand(*holes.shape) < 0.1] = np.nan
    params = dict(
        n_components=8, covariance_type="full", max_iter=50, tol=0.0, random_state=0
    )
    for data in (holes[:5000], X_train[:5000]):
        VariationalGaussianMixture(**dict(params, max_iter=3)).fit(data)
    repeats = WORKLOADS["m"]["repeats"][quick]
    times = {"nan": [], "complete": []}
    fitted = {}
    for _ in range(repeats):
        for name, data in (("nan", holes), ("complete", X_train)):
            seconds, fitted[name] = _timed(
                functools.partial(
                    lambda X: VariationalGaussianMixture(**params).fit(X), data
                )
            )
            times[name].append(seconds)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    scores = {name: estimator.score(X_test) for name, estimator in fitted.items()}
    row = _row(
        "m",
        "missing values: anisotropic 1e5x16, K=8 full, 10% NaN (MCAR), 50 "
        "iterations; 'sklearn' columns: our fit of the complete X",
        "ratio <= 3",
        3.0,
        ours_s=seconds["nan"],
        sklearn_s=seconds["complete"],
        ours_score=scores["nan"],
        sklearn_score=scores["complete"],
        ours_iter=fitted["nan"].n_iter_,
        sklearn_iter=fitted["complete"].n_iter_,
        repeats=repeats,
        notes="%.1f%% of rows have a hole" % (100 * np.isnan(holes).any(1).mean()),
    )
    # Less data fits worse: only the time ratio is the target here.
    row["passed"] = row["ratio"] <= 3.0
    return [row]


def workload_n(quick, float32=True):
    """PyCave's published CPU workload: 1e5 x 32, K=16 'full', 100 iterations.

    Every fit runs exactly 100 iterations (tol=0) from its own k-means start:
    ours in float64 and float32, scikit-learn's GaussianMixture (PyCave's
    reference, the ratio) and BayesianGaussianMixture (in the notes). Our
    warm-up fit on 5000 rows builds the trace. Each scikit-learn fit runs once
    (about a minute each); ours run `repeats` times, float64 and float32
    alternating, so that their ratio is measured under the same load.
    """
    X_train, X_test = train_and_test("n")
    params = dict(
        n_components=16, covariance_type="full", max_iter=100, tol=0.0, n_init=1
    )
    repeats = WORKLOADS["n"]["repeats"][quick]
    dtypes = (np.float64, np.float32) if float32 else (np.float64,)
    ours = {
        np.dtype(dtype).name: functools.partial(
            lambda X: VariationalGaussianMixture(**params, random_state=0).fit(X),
            X_train.astype(dtype),
        )
        for dtype in dtypes
    }
    for dtype in dtypes:
        VariationalGaussianMixture(**dict(params, max_iter=3), random_state=0).fit(
            X_train[:5000].astype(dtype)
        )
    times = {name: [] for name in ours}
    fitted = {}
    for name, estimator_class in (
        ("GaussianMixture", GaussianMixture),
        ("BayesianGaussianMixture", BayesianGaussianMixture),
    ):
        seconds, fitted[name] = _timed(
            functools.partial(
                lambda cls: cls(**params, random_state=0).fit(X_train),
                estimator_class,
            )
        )
        times[name] = [seconds]
    for _ in range(repeats):
        for name, fit in ours.items():
            seconds, fitted[name] = _timed(fit)
            times[name].append(seconds)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    held_out = {"float32": X_test.astype(np.float32)}
    scores = {
        name: estimator.score(held_out.get(name, X_test))
        for name, estimator in fitted.items()
    }
    gmm = "GaussianMixture"
    bgm = "BayesianGaussianMixture"
    rows = [
        _row(
            "n",
            "PyCave's CPU workload: anisotropic 1e5x32, K=16 full, 100 iterations, "
            "tol=0, against sklearn GaussianMixture",
            "ratio <= 0.12",
            0.12,
            ours_s=seconds["float64"],
            sklearn_s=seconds[gmm],
            ours_score=scores["float64"],
            sklearn_score=scores[gmm],
            ours_iter=fitted["float64"].n_iter_,
            sklearn_iter=fitted[gmm].n_iter_,
            repeats=repeats,
            notes="sklearn fitted once each; BayesianGaussianMixture %.3g s "
            "(ours / it %.2f), held-out score %.4f, n_iter %d"
            % (
                seconds[bgm],
                seconds["float64"] / seconds[bgm],
                scores[bgm],
                fitted[bgm].n_iter_,
            ),
        )
    ]
    if float32:
        row = _row(
            "n-f32",
            "PyCave's CPU workload, float32 input",
            "ours f32 <= 0.7x ours f64",
            np.inf,
            ours_s=seconds["float32"],
            sklearn_s=seconds[gmm],
            ours_score=scores["float32"],
            sklearn_score=scores[gmm],
            ours_iter=fitted["float32"].n_iter_,
            sklearn_iter=fitted[gmm].n_iter_,
            repeats=repeats,
            notes="sklearn columns: its float64 GaussianMixture; ours f32 / ours "
            "f64 = %.2f; ours f32 - ours f64 = %+.4f nats"
            % (
                seconds["float32"] / seconds["float64"],
                scores["float32"] - scores["float64"],
            ),
        )
        row["passed"] = seconds["float32"] <= 0.7 * seconds["float64"]
        rows.append(row)
    return rows


def _run_fresh(script):
    """Run `script` in a fresh interpreter and parse the JSON on its last line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def workload_g(quick, float32=True):
    """Import time and first-fit overhead (first minus second fit), fresh processes."""
    repeats = WORKLOADS["g"]["repeats"][quick]
    ours_runs, preloaded_runs, sklearn_runs, tensorflow_imports = [], [], [], []
    ours = dict(module="skbayesmix", estimator="VariationalGaussianMixture")
    for _ in range(repeats):
        ours_runs.append(
            _run_fresh(
                _FIRST_FIT_SCRIPT.format(**ours, preload="", centres=TUTORIAL_CENTRES)
            )
        )
        # The same with the backend (TensorFlow + TFP) imported before the first
        # fit, to split the overhead into imports and trace + first run.
        preloaded_runs.append(
            _run_fresh(
                _FIRST_FIT_SCRIPT.format(
                    **ours,
                    preload="import skbayesmix._tfp_backend",
                    centres=TUTORIAL_CENTRES,
                )
            )
        )
        sklearn_runs.append(
            _run_fresh(
                _FIRST_FIT_SCRIPT.format(
                    module="sklearn.mixture",
                    estimator="BayesianGaussianMixture",
                    preload="",
                    centres=TUTORIAL_CENTRES,
                )
            )
        )
        tensorflow_imports.append(_run_fresh(_IMPORT_TENSORFLOW_SCRIPT)["import"])

    def medians(runs):
        return (
            statistics.median(r["import"] for r in runs),
            statistics.median(r["fits"][0] for r in runs),
            statistics.median(r["fits"][1] for r in runs),
            statistics.median(r["fits"][0] - r["fits"][1] for r in runs),
        )

    ours_import, ours_first, ours_second, ours_overhead = medians(ours_runs)
    sk_import, sk_first, sk_second, sk_overhead = medians(sklearn_runs)
    tf_import = statistics.median(tensorflow_imports)
    backend_import = statistics.median(r["preload"] for r in preloaded_runs)
    trace_overhead = medians(preloaded_runs)[3]
    # The issue defines (g) as the tracing cost, reported separately from the
    # import: the overhead is measured with the backend (TF + TFP) imported first,
    # and the import and the all-in first fit are reported beside it.
    row = {
        "name": "g",
        "description": "fresh process: first-fit overhead (first - second fit, "
        "backend imported first), tutorial K=3 diag",
        "target": "ours trace + first run <= 1.5 s",
        "ours_s": trace_overhead,
        "sklearn_s": sk_overhead,
        "ratio": trace_overhead / sk_overhead,
        "ours_score": np.nan,
        "sklearn_score": np.nan,
        "score_gap": np.nan,
        "ours_iter": None,
        "sklearn_iter": None,
        "repeats": repeats,
        "passed": trace_overhead <= 1.5,
        "notes": (
            "import: skbayesmix %.2f s, sklearn.mixture %.2f s, "
            "tensorflow+tfp on top of those %.2f s (backend import alone %.2f s); "
            "all-in first fit %.2f / %.2f s, so overhead including the TF import "
            "%.2f s; second fit %.3f / %.3f s"
            % (
                ours_import,
                sk_import,
                tf_import,
                backend_import,
                ours_first,
                sk_first,
                ours_overhead,
                ours_second,
                sk_second,
            )
        ),
    }
    return [row]


# repeats: (full run, --quick). Warm-ups are extra and not timed.
WORKLOADS = {
    "a": {"run": workload_a, "repeats": {False: 15, True: 5}},
    "b": {"run": workload_b, "repeats": {False: 3, True: 1}},
    "c": {"run": workload_c, "repeats": {False: 2, True: 1}},
    "d": {"run": workload_d, "repeats": {False: 1, True: 1}},
    "e": {"run": workload_e, "repeats": {False: 5, True: 2}},
    "f": {"run": workload_f, "repeats": {False: 1, True: 1}},
    "g": {"run": workload_g, "repeats": {False: 3, True: 1}},
    "h": {"run": workload_h, "repeats": {False: 1, True: 1}},
    "m": {"run": workload_m, "repeats": {False: 3, True: 1}},
    "n": {"run": workload_n, "repeats": {False: 2, True: 1}},
}


# --------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------


def _fmt_seconds(seconds):
    return "%.3g" % seconds


def _fmt_score(score):
    return "" if np.isnan(score) else "%.4f" % score


def markdown_table(rows):
    header = (
        "| workload | ours s | sklearn s | ratio | target | pass | score ours "
        "| score sklearn | ours - sklearn | n_iter ours / sklearn | repeats | notes |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        iters = (
            ""
            if row["ours_iter"] is None
            else "%d / %d" % (row["ours_iter"], row["sklearn_iter"])
        )
        gap = "" if np.isnan(row["score_gap"]) else "%+.4f" % row["score_gap"]
        lines.append(
            "| %s: %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %d | %s |"
            % (
                row["name"],
                row["description"],
                _fmt_seconds(row["ours_s"]),
                _fmt_seconds(row["sklearn_s"]),
                row["ratio"],
                row["target"],
                "yes" if row["passed"] else "**NO**",
                _fmt_score(row["ours_score"]),
                _fmt_score(row["sklearn_score"]),
                gap,
                iters,
                row["repeats"],
                row["notes"],
            )
        )
    return "\n".join(lines)


_THREAD_LIMITS = []


def limit_threads(n_threads):
    """Cap TensorFlow, BLAS and OpenMP threads here and in child processes."""
    from threadpoolctl import threadpool_limits

    # TensorFlow as skbayesmix starts it, quietly.
    from skbayesmix._tf_quiet import import_tensorflow

    tf, _ = import_tensorflow()

    tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    _THREAD_LIMITS.append(threadpool_limits(limits=n_threads))
    for variable in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    ):
        os.environ[variable] = str(n_threads)


def _package_revision():
    """The commit of the skbayesmix under test, marked when it has local edits."""
    import skbayesmix

    root = os.path.dirname(os.path.dirname(os.path.abspath(skbayesmix.__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        edits = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "skbayesmix"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout: %s)" % root
    return commit + (" with uncommitted edits to skbayesmix/" if edits else "")


def environment_lines(n_threads, revision):
    import tensorflow as tf

    load = os.getloadavg()
    return [
        "skbayesmix at commit %s (at the start of the run)" % revision,
        "python %s, numpy %s, scikit-learn %s, tensorflow %s, %s, %d CPUs"
        % (
            platform.python_version(),
            np.__version__,
            sklearn.__version__,
            tf.__version__,
            platform.machine(),
            os.cpu_count(),
        ),
        "threads: %s"
        % ("library defaults" if n_threads is None else "%d (--threads)" % n_threads),
        "load average at the end: %.2f %.2f %.2f" % load,
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help="comma-separated workloads to run, e.g. a,b (default: all)",
    )
    parser.add_argument(
        "--no-float32", action="store_true", help="skip the float32 rows of a to d"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="cap TensorFlow, BLAS and OpenMP threads (default: library defaults)",
    )
    parser.add_argument("--output", help="also write the markdown report here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(
            "unknown workloads %s; choose from %s" % (unknown, list(WORKLOADS))
        )

    if args.threads:
        limit_threads(args.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    revision = _package_revision()
    start = time.perf_counter()
    load_at_start = os.getloadavg()
    rows = []
    for name in names:
        tick = time.perf_counter()
        rows.extend(WORKLOADS[name]["run"](args.quick, not args.no_float32))
        print(
            "# workload %s done in %.1f s" % (name, time.perf_counter() - tick),
            file=sys.stderr,
            flush=True,
        )
    command = "PYTHONPATH=. python benchmarks/bench_vs_sklearn.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = "\n".join(
        [
            "# skbayesmix vs scikit-learn",
            "",
            "`%s`" % command.strip(),
            "",
            markdown_table(rows),
            "",
            "Times are medians over `repeats` alternating runs after one warm-up of "
            "each (c, d warm up on a 5000 / 20000-row subsample; g runs fresh "
            "processes). Scores are held-out mean log densities in nats.",
            "",
            *environment_lines(args.threads, revision),
            "load average at the start: %.2f %.2f %.2f" % load_at_start,
            "total wall time: %.0f s" % (time.perf_counter() - start),
        ]
    )
    print(report)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(report + "\n")
    return rows


if __name__ == "__main__":
    main()
