"""Per-op profile of one E-step and statistics pass of the TF backend.

The pass (`_statistics.expected_statistics`, every block of rows) is built in a
TF1 graph with v1 control flow and run with ``RunOptions.FULL_TRACE``: step
stats then time every op of every block, which a tf.function's While op hides.
Ops are summed over blocks, and the rate of each of the two GEMMs is printed in
GFLOP/s from the flops of the packed design (2 N K m per GEMM, m its width).

Usage::

    PYTHONPATH=. python benchmarks/profile_estep.py 1000000 16 16 float32 full

The posterior comes from k-means labels on the benchmark's anisotropic mixture
(`bench_vs_sklearn.AnisotropicMixture`), standardised as the estimator does.
"""

import argparse
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_vs_sklearn import AnisotropicMixture  # noqa: E402


def posterior_near_truth(X, n_components, structure):
    """A Posterior from hard k-means labels, with nu = N / K.

    Returns
    -------
    posterior : Posterior of float64 ndarray
    """
    from sklearn.cluster import KMeans

    from skbayesmix._state import Posterior

    n_samples, n_features = X.shape
    labels = (
        KMeans(n_components, n_init=1, max_iter=5, random_state=0)
        .fit(X[:20000])
        .predict(X)
    )
    resp = np.eye(n_components)[labels]
    counts = resp.sum(0) + 1.0
    means = resp.T @ X / counts[:, None]
    covariances = np.stack(
        [
            np.cov(X[labels == k].T) + 1e-3 * np.eye(n_features)
            for k in range(n_components)
        ]
    )
    if structure.shared:
        covariances = covariances.mean(0, keepdims=True)
    nu = np.full(len(covariances), float(n_samples) / n_components)
    return Posterior(
        counts,
        np.ones(n_components),
        counts,
        means,
        nu,
        nu[:, None, None] * covariances,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_samples", type=int)
    parser.add_argument("n_features", type=int)
    parser.add_argument("n_components", type=int)
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("covariance_type", choices=["full", "tied"])
    parser.add_argument("--top", type=int, default=16, help="ops to list")
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.disable_control_flow_v2()
    import skbayesmix._tfp_backend  # noqa: F401  (TF started quietly)
    from skbayesmix._state import COVARIANCE_STRUCTURES, Posterior
    from skbayesmix._tfp_backend import _maths, _statistics

    n, d, k = args.n_samples, args.n_features, args.n_components
    structure = COVARIANCE_STRUCTURES[args.covariance_type]
    X = AnisotropicMixture(k, d, seed=2).sample(n, np.random.RandomState(0))
    X = (X - X.mean(0)) / X.std()
    posterior_np = posterior_near_truth(X, k, structure)
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=1, inter_op_parallelism_threads=1
    )
    with tf.compat.v1.Session(config=config) as session:
        X_in = tf.compat.v1.placeholder(tf.as_dtype(args.dtype), [n, d])
        posterior = Posterior(*(tf.constant(p, tf.float64) for p in posterior_np))
        moments = _maths.posterior_moments(posterior, structure)
        offset = _maths.log_rho_offset(posterior, moments, 1e-6, "dirichlet_process")
        statistics = _statistics.expected_statistics(
            X_in, tf.ones([n], tf.float64), posterior, moments, offset, structure
        )
        feed = {X_in: X.astype(args.dtype)}
        session.run(statistics, feed)
        untraced = []
        for _ in range(3):
            tick = time.perf_counter()
            session.run(statistics, feed)
            untraced.append(time.perf_counter() - tick)
        options = tf.compat.v1.RunOptions(
            trace_level=tf.compat.v1.RunOptions.FULL_TRACE
        )
        metadata = tf.compat.v1.RunMetadata()
        session.run(statistics, feed, options=options, run_metadata=metadata)
        per_op = collections.defaultdict(lambda: [0, 0])
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                entry = per_op[node.node_name]
                entry[0] += node.op_end_rel_micros - node.op_start_rel_micros
                entry[1] += 1
        graph = session.graph

    def op_type(name):
        try:
            return graph.get_operation_by_name(name).type
        except KeyError:
            return "(grappler)"

    total = sum(us for us, _ in per_op.values())
    n_design = int(_statistics._n_design(d, structure))
    gemm_flops = 2.0 * n * k * n_design
    print(
        "%d x %d, K=%d, %s %s: pass %.3f s (best of %s untraced); "
        "ops sum to %.3f s traced"
        % (
            n,
            d,
            k,
            args.dtype,
            args.covariance_type,
            min(untraced),
            ", ".join("%.3f" % t for t in untraced),
            total / 1e6,
        )
    )
    print("| op | type | ms | calls | share | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    rows = sorted(per_op.items(), key=lambda item: -item[1][0])
    for name, (us, calls) in rows[: args.top]:
        kind = op_type(name)
        # The two GEMMs of every block; a MatMul inside a cond runs on a subset.
        main_gemm = kind == "MatMul" and "cond" not in name
        rate = "%.1f" % (gemm_flops / us / 1e3) if main_gemm else ""
        print(
            "| %s | %s | %.1f | %d | %.1f%% | %s |"
            % (name[-60:], kind, us / 1e3, calls, 100.0 * us / total, rate)
        )


if __name__ == "__main__":
    main()
