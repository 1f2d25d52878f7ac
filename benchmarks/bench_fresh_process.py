"""What the README's GridSearchCV costs in a fresh process, ours against sklearn.

Each run is a fresh interpreter that builds the README's quick-start data and
runs its search: ``GridSearchCV(make_pipeline(StandardScaler(), estimator),
n_components 1..6, cv=3)``, with skbayesmix's VariationalGaussianMixture or
scikit-learn's BayesianGaussianMixture (both ``random_state=0``, defaults
otherwise). Configurations: n_jobs=1, and n_jobs=2 under joblib's loky and
threading backends. The sides alternate and each cell is the median of
``--repeats`` runs.

Columns:

- all-in: wall time of the whole child process, as the parent sees it, from
  interpreter start to exit: what ``python script.py`` costs a user.
- imports: the child's imports (numpy, the sklearn modules the search uses and
  the estimator's; for skbayesmix also its backend, TensorFlow and TFP, which it
  would otherwise import at the first fit).
- search: the first search, timed after those imports. Under loky this still
  includes the workers' start-up and their own imports, as a user pays them.
- warm search: the same search again in the same process (loky's workers are
  then reused).

Usage::

    PYTHONPATH=. python benchmarks/bench_fresh_process.py
    PYTHONPATH=. python benchmarks/bench_fresh_process.py --repeats 5 --output o.md
    PYTHONPATH=. python benchmarks/bench_fresh_process.py --phases
    PYTHONPATH=. python benchmarks/bench_fresh_process.py --threads 1

``--threads 1`` caps each process at one BLAS, OpenMP and TensorFlow thread. On
a shared machine it keeps sklearn's many small multi-threaded BLAS and k-means
calls from stalling when other processes hold the cores (see
benchmarks/README.md), which makes the default-thread times noisy.

``--phases`` instead times the first fits of one fresh process step by step
(imports, k-means, trace, first call, second call; see `PHASES_SCRIPT`), with
TensorFlow's graph optimiser (grappler) on and off, to show what a fresh process
pays beyond the TensorFlow import.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIDES = {
    "ours": (
        "from skbayesmix import VariationalGaussianMixture as Estimator\n"
        "import skbayesmix._tfp_backend"
    ),
    "sklearn": "from sklearn.mixture import BayesianGaussianMixture as Estimator",
}

CONFIGS = [
    ("n_jobs=1", 1, None),
    ("n_jobs=2, loky", 2, "loky"),
    ("n_jobs=2, threading", 2, "threading"),
]

SEARCH_SCRIPT = textwrap.dedent(
    """
    import time
    start = time.perf_counter()
    import json, warnings
    import numpy as np
    from joblib import parallel_config
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    import sklearn.cluster
    {import_estimator}
    imported = time.perf_counter()

    # The README's quick-start data.
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(1024, 2) + c for c in [(2, 0), (-2, -4), (-2, 4)]])
    X = X[rng.permutation(len(X))]

    def search():
        tick = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            with parallel_config(**{config!r}):
                fitted = GridSearchCV(
                    Pipeline(
                        [("scaler", StandardScaler()),
                         ("estimator", Estimator(random_state=0))]
                    ),
                    {{"estimator__n_components": [1, 2, 3, 4, 5, 6]}},
                    cv=3,
                    n_jobs={n_jobs},
                ).fit(X)
        n_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        return time.perf_counter() - tick, fitted, n_warnings

    first, fitted, n_warnings = search()
    warm, _, _ = search()
    print(json.dumps({{
        "imports": imported - start,
        "search": first,
        "warm": warm,
        "best_k": fitted.best_params_["estimator__n_components"],
        "convergence_warnings": n_warnings,
    }}))
    """
)

PHASES_SCRIPT = textwrap.dedent(
    """
    import time
    t = [("start", time.perf_counter())]
    def mark(name):
        t.append((name, time.perf_counter()))
    import json
    import numpy as np
    import sklearn.cluster
    from sklearn.preprocessing import StandardScaler
    from skbayesmix import VariationalGaussianMixture
    mark("import numpy, sklearn, skbayesmix")
    import tensorflow as tf
    mark("import tensorflow")
    import tensorflow_probability
    mark("import tensorflow_probability")
    from skbayesmix import _tfp_backend as backend
    from skbayesmix._state import Prior
    mark("rest of the backend import (device listing)")
    if not {grappler}:
        tf.config.optimizer.set_experimental_options(
            {{"disable_meta_optimizer": True}}
        )

    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(1024, 2) + c for c in [(2, 0), (-2, -4), (-2, 4)]])
    X = StandardScaler().fit_transform(X[rng.permutation(len(X))])
    sklearn.cluster.KMeans(n_clusters=3, n_init=1, random_state=0).fit(X)
    mark("first k-means (also in sklearn's first fit)")
    sklearn.cluster.KMeans(n_clusters=3, n_init=1, random_state=0).fit(X)
    mark("second k-means")

    # The README search's structure (full, Dirichlet process, float64), by hand.
    fn = backend.compiled("loop", "full", "dirichlet_process", np.float64)
    concrete = fn.get_concrete_function()
    mark("trace full/DP: Python -> graph")
    resp = np.eye(3)[rng.randint(3, size=len(X))]
    prior = Prior(1 / 3, 1.0, X.mean(0), 2.0, np.cov(X.T))
    def call():
        backend.fit_variational_posterior(
            X, resp, prior, covariance_type="full",
            weight_concentration_prior_type="dirichlet_process",
            reg_covar=1e-6, tol=1e-3, max_iter=100,
        )
    call()
    mark("first call (graph optimisation, kernel set-up, run)")
    call()
    mark("second call (run only)")
    vgm = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    mark("estimator fit, full/DP, already traced")
    VariationalGaussianMixture(
        n_components=3, covariance_type="diag", random_state=0
    ).fit(X)
    mark("estimator fit, diag (a new trace + first call)")
    vgm.set_params(warm_start=True).fit(X)
    mark("warm_start fit (same trace as the cold fits)")
    vgm.fit(X)
    mark("warm_start fit again")
    graph = concrete.graph.as_graph_def()
    ops = len(graph.node), sum(len(f.node_def) for f in graph.library.function)
    print(json.dumps([[b[0], b[1] - a[1]] for a, b in zip(t, t[1:])] + [ops]))
    """
)


_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
_CHILD_ENV = {}


def _run_child(script):
    """Run `script` in a fresh interpreter; its JSON line and the wall time."""
    env = {**os.environ, **_CHILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p
    )
    tick = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - tick
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr)
    return json.loads(completed.stdout.strip().splitlines()[-1]), wall


def run_search(side, n_jobs, backend):
    script = SEARCH_SCRIPT.format(
        import_estimator=SIDES[side],
        config={} if backend is None else {"backend": backend},
        n_jobs=n_jobs,
    )
    result, wall = _run_child(script)
    result["all_in"] = wall
    return result


def _median(runs, key):
    return statistics.median(run[key] for run in runs)


def search_table(repeats):
    lines = [
        "| configuration | all-in ours s | all-in sklearn s | ratio "
        "| imports ours s | imports sklearn s "
        "| search ours s | search sklearn s | ratio "
        "| warm search ours s | warm search sklearn s | ratio "
        "| best K ours / sklearn | ConvergenceWarnings ours / sklearn |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, n_jobs, backend in CONFIGS:
        runs = {"ours": [], "sklearn": []}
        for _ in range(repeats):
            for side in runs:
                runs[side].append(run_search(side, n_jobs, backend))
        ours, sk = runs["ours"], runs["sklearn"]
        cells = [name]
        for key in ("all_in", "imports", "search", "warm"):
            o, s = _median(ours, key), _median(sk, key)
            cells += ["%.2f" % o, "%.2f" % s]
            if key != "imports":
                cells.append("%.2f" % (o / s))
        cells.append("%s / %s" % (ours[0]["best_k"], sk[0]["best_k"]))
        cells.append(
            "%s / %s" % (ours[0]["convergence_warnings"], sk[0]["convergence_warnings"])
        )
        lines.append("| " + " | ".join(cells) + " |")
        print("# %s done" % name, file=sys.stderr, flush=True)
    return lines


def phases_table(repeats):
    columns = {"grappler on": "True", "grappler off": "False"}
    runs = {
        name: [
            _run_child(PHASES_SCRIPT.format(grappler=flag))[0] for _ in range(repeats)
        ]
        for name, flag in columns.items()
    }
    lines = [
        "| phase (fresh process, in order) | "
        + " | ".join(f"median s, {name}" for name in columns)
        + " |",
        "|---|" + "---|" * len(columns),
    ]
    first = runs["grappler on"][0]
    for i, (phase, _) in enumerate(first[:-1]):
        cells = [
            "%.3f" % statistics.median(run[i][1] for run in runs[name])
            for name in columns
        ]
        lines.append("| %s | %s |" % (phase, " | ".join(cells)))
    lines.append("")
    lines.append(
        "The full/DP loop's graph: %d top-level nodes, %d in its functions "
        "(while-loop cond and body)." % tuple(first[-1])
    )
    return lines


def _header(argv):
    import numpy
    import sklearn

    return [
        "command: PYTHONPATH=. python benchmarks/bench_fresh_process.py "
        + " ".join(argv),
        "python %s, numpy %s, scikit-learn %s, %s, %d CPUs, load average %s"
        % (
            platform.python_version(),
            numpy.__version__,
            sklearn.__version__,
            platform.machine(),
            os.cpu_count(),
            ", ".join("%.2f" % x for x in os.getloadavg()),
        ),
        "",
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="time the phases of the first fits instead of the searches",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="cap BLAS, OpenMP and TensorFlow threads per process (default: "
        "the libraries' own defaults)",
    )
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.threads:
        # Children and their loky workers inherit these.
        _CHILD_ENV.update(dict.fromkeys(_THREAD_VARIABLES, str(args.threads)))
    header = _header(argv)
    lines = phases_table(args.repeats) if args.phases else search_table(args.repeats)
    report = "\n".join(header + lines)
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
