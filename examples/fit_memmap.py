"""
Fit a mixture to a file on disk that is larger than you want in memory
======================================================================

This example writes 1e8 rows of 16 float32 features (6.4 GB) to a temporary
folder, opens them as a read-only :class:`numpy.memmap`, and fits
``VariationalGaussianMixture(learning_method='online')`` to the file. The online
fit reads the file block by block: one streaming pass for the standardisation
and the data-dependent priors (validating each block as it goes), a k-means
initialisation on a uniform subsample, then passes of minibatch steps over
blocks visited in random order. Neither the file nor a copy of it is ever held
in memory, so the resident memory stays bounded however long the file is.

It prints the throughput (rows per second per pass) and the peak resident
memory, and deletes the file afterwards. It needs about 6.4 GB of free disk and
takes several minutes; it is not run by the test suite.

Usage::

    python examples/fit_memmap.py                 # 1e8 rows, 2 passes
    python examples/fit_memmap.py --rows 1000000  # a quick try
"""

import argparse
import os
import resource
import shutil
import tempfile
import threading
import time

import numpy as np
import psutil

from skbayesmix import VariationalGaussianMixture

N_FEATURES = 16
N_CLUSTERS = 16


class PeakRSS:
    """The peak resident memory of this process while the block runs, in MB."""

    def __enter__(self):
        self._process = psutil.Process()
        self.peak_mb = self._process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            rss_mb = self._process.memory_info().rss / 2**20
            self.peak_mb = max(self.peak_mb, rss_mb)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def anisotropic_blobs(n_rows, rng):
    """Rows from 16 Gaussian clusters with random means and axis scales.

    Returns
    -------
    X : ndarray of shape (n_rows, 16), float32
    """
    centres = np.random.RandomState(2).standard_normal((N_CLUSTERS, N_FEATURES))
    scales = np.exp(
        np.random.RandomState(3).uniform(
            np.log(0.3), np.log(2.0), (N_CLUSTERS, N_FEATURES)
        )
    )
    labels = rng.integers(N_CLUSTERS, size=n_rows)
    X = rng.standard_normal((n_rows, N_FEATURES), dtype=np.float32)
    X *= scales[labels].astype(np.float32)
    X += centres[labels].astype(np.float32)
    return X


def write_rows(path, n_rows, chunk_rows=1_000_000, seed=0):
    """Write n_rows x 16 float32 rows to a raw file, a chunk at a time.

    Plain writes, not a writable memmap, so the written pages never count as
    this process's resident memory.
    """
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        for start in range(0, n_rows, chunk_rows):
            f.write(anisotropic_blobs(min(chunk_rows, n_rows - start), rng).tobytes())


def fit_file(path, n_rows, passes, batch_size=16384):
    """Fit the online mixture to the memmap at `path`; report what it cost.

    Returns
    -------
    report : dict
        'model', 'seconds' (the whole fit), 'rows_per_second_per_pass',
        'passes', 'peak_rss_mb' (during the fit) and 'max_rss_mb' (of the
        process so far, from getrusage).
    """
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n_rows, N_FEATURES))
    model = VariationalGaussianMixture(
        n_components=N_CLUSTERS,
        covariance_type="diag",
        learning_method="online",
        batch_size=batch_size,
        max_iter=passes,
        random_state=0,
    )
    # Import the backend and build its traces first, so that the timing below
    # is of the passes over the file alone.
    warm_up = anisotropic_blobs(20_000, np.random.default_rng(1))
    model.set_params(max_iter=1).fit(warm_up)
    model.set_params(max_iter=passes)
    with PeakRSS() as rss:
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
    # The fit also makes one streaming pass for the moments and reads the
    # k-means subsample, so this understates the speed of an SVI pass alone.
    passes_made = model.n_iter_ + 1
    return {
        "model": model,
        "seconds": seconds,
        "passes": model.n_iter_,
        "rows_per_second_per_pass": n_rows * passes_made / seconds,
        "peak_rss_mb": rss.peak_mb,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--passes", type=int, default=2, help="max_iter")
    parser.add_argument("--folder", default=None, help="where to write the file")
    args = parser.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="skbayesmix-memmap-", dir=args.folder)
    path = os.path.join(folder, "X.float32")
    try:
        start = time.perf_counter()
        write_rows(path, args.rows)
        print(
            "wrote %d x %d float32 (%.1f GB) in %.0f s"
            % (
                args.rows,
                N_FEATURES,
                os.path.getsize(path) / 1e9,
                time.perf_counter() - start,
            )
        )
        report = fit_file(path, args.rows, args.passes)
        model = report["model"]
        X_test = anisotropic_blobs(100_000, np.random.default_rng(1))
        print(
            "fitted in %.0f s: %d SVI passes (converged: %s), %d minibatch steps"
            % (report["seconds"], report["passes"], model.converged_,
               model.n_batch_iter_)
        )  # fmt: skip
        print(
            "throughput: %.3g rows per second per pass (moments pass included)"
            % report["rows_per_second_per_pass"]
        )
        print(
            "peak resident memory: %.0f MB during the fit, %.0f MB for the process"
            % (report["peak_rss_mb"], report["max_rss_mb"])
        )
        print("held-out mean log density: %.4f" % model.score(X_test))
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
