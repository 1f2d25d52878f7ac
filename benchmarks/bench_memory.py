"""Resident memory over many successive fits of varying shapes and parameters.

One process fits VariationalGaussianMixture `--n-fits` times (500 by default)
with a different (n_samples, n_features, n_components) each time, cycling
through every covariance type, weight prior type and dtype (float32, float64)
and all four init methods. First every (covariance type, weight prior, dtype)
structure is fitted once (`--warm-up-rounds` times), so that each compiled loop
is traced before the baseline is taken; TensorFlow's one-off start-up memory
is then not counted. The resident set size (psutil RSS) is printed every
`--report-every` fits, and the growth from the baseline to the end is compared
with the target (200 MB). A loop that retraced, or kept tensors or arrays of
earlier fits, would grow with the number of fits.

Usage::

    PYTHONPATH=. python benchmarks/bench_memory.py
    PYTHONPATH=. python benchmarks/bench_memory.py --n-fits 2000 --report-every 250

The exit status is 1 when the growth exceeds the target. To tell TensorFlow's
oneDNN kernels, which keep state per input shape, from the package's own memory,
run once more with ``TF_ENABLE_ONEDNN_OPTS=0``.
"""

import argparse
import gc
import itertools
import time
import warnings

import numpy as np
import psutil
from sklearn.exceptions import ConvergenceWarning

from skbayesmix import VariationalGaussianMixture

TARGET_MB = 200.0
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
WEIGHT_PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
DTYPES = [np.float64, np.float32]
INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]
STRUCTURES = list(itertools.product(COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES, DTYPES))


def rss_mb():
    """Resident set size of this process, in MB, after a garbage collection."""
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def workload(i, rng):
    """The data and parameters of fit number `i`: a new shape every time.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    params : dict
        Constructor parameters of VariationalGaussianMixture.
    """
    covariance_type, weight_type, dtype = STRUCTURES[i % len(STRUCTURES)]
    n_samples = int(rng.randint(20, 600))
    n_features = int(rng.randint(1, 13))
    n_components = int(rng.randint(1, min(8, n_samples) + 1))
    centres = rng.randn(n_components, n_features) * 4.0
    X = centres[rng.randint(n_components, size=n_samples)]
    X = (X + rng.randn(n_samples, n_features)).astype(dtype)
    params = dict(
        n_components=n_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        init_params=INIT_PARAMS[(i // len(STRUCTURES)) % len(INIT_PARAMS)],
        max_iter=int(rng.choice([5, 20, 100])),
        random_state=i,
    )
    return X, params


def fit_and_use(X, params):
    """Fit, then call every prediction method once; return the model's n_iter_."""
    vgm = VariationalGaussianMixture(**params).fit(X)
    vgm.predict_proba(X)
    vgm.score_samples(X)
    vgm.sample(10)
    return vgm.n_iter_


def tracing_counts():
    """How often each compiled loop was traced, when the backend exposes it."""
    try:
        from skbayesmix._tfp_backend._loop import _COMPILED
    except ImportError:
        return None
    counts = {}
    for key, function in dict(_COMPILED).items():
        try:
            counts["/".join(map(str, key))] = function.experimental_get_tracing_count()
        except AttributeError:
            return None
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-fits", type=int, default=500)
    parser.add_argument("--warm-up-rounds", type=int, default=2)
    parser.add_argument("--report-every", type=int, default=50)
    parser.add_argument("--target-mb", type=float, default=TARGET_MB)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)

    rng = np.random.RandomState(0)
    start_mb = rss_mb()
    start = time.perf_counter()
    for i in range(args.warm_up_rounds * len(STRUCTURES)):
        fit_and_use(*workload(i, rng))
    baseline_mb = rss_mb()
    print(
        f"before any fit: {start_mb:8.1f} MB RSS; after "
        f"{args.warm_up_rounds * len(STRUCTURES)} warm-up fits of "
        f"{len(STRUCTURES)} structures: {baseline_mb:8.1f} MB "
        f"({time.perf_counter() - start:.1f} s)"
    )

    print(f"\n| {'fits':>5} | {'RSS MB':>8} | {'growth MB':>9} | {'s/fit':>6} |")
    print("|------:|---------:|----------:|-------:|")
    peak_mb = baseline_mb
    lap = time.perf_counter()
    for n_fits in range(1, args.n_fits + 1):
        fit_and_use(*workload(n_fits, rng))
        if n_fits % args.report_every == 0 or n_fits == args.n_fits:
            now_mb = rss_mb()
            peak_mb = max(peak_mb, now_mb)
            per_fit = (time.perf_counter() - lap) / args.report_every
            lap = time.perf_counter()
            print(
                f"| {n_fits:5d} | {now_mb:8.1f} | {now_mb - baseline_mb:9.1f} | "
                f"{per_fit:6.3f} |"
            )

    final_mb = rss_mb()
    growth_mb = final_mb - baseline_mb
    counts = tracing_counts()
    if counts is not None:
        retraced = {key: n for key, n in counts.items() if n != 1}
        print(
            f"\ncompiled loops: {len(counts)}, traced once each: {not retraced}"
            + (f" (retraced: {retraced})" if retraced else "")
        )
    verdict = "PASS" if growth_mb < args.target_mb else "FAIL"
    print(
        f"\nRSS growth over {args.n_fits} fits after warm-up: {growth_mb:.1f} MB "
        f"(peak {peak_mb - baseline_mb:.1f} MB above baseline); "
        f"target < {args.target_mb:.0f} MB: {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
