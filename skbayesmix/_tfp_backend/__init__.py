"""TensorFlow Probability backend: the only package of skbayesmix that imports TF.

The estimator hands it NumPy arrays (named containers of them, see
skbayesmix._state) and receives the same back:

- `fit_variational_posterior`: full-batch CAVI in one compiled loop;
- `chunk_statistics`, `initial_statistics`, `update`, `lower_bound`: the same
  steps one at a time, for drivers that decide which rows feed which step
  (minibatches, chunks on a cluster).

Modules: `_maths` (moments, KLs, update, ELBO), `_statistics` (the one E-step
and the statistics of a chunk of rows), `_loop` (compiled functions).
"""

from skbayesmix._tf_quiet import import_tensorflow

# Imported first, without TF's start-up lines on stderr (see _tf_quiet); the
# modules below then find TensorFlow already loaded. The environment is left alone.
import_tensorflow()

from skbayesmix._tfp_backend._loop import (  # noqa: E402
    chunk_statistics,
    compiled,
    fit_variational_posterior,
    initial_statistics,
    lower_bound,
    update,
)

__all__ = [
    "chunk_statistics",
    "compiled",
    "fit_variational_posterior",
    "initial_statistics",
    "lower_bound",
    "update",
]
