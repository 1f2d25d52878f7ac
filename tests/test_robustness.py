"""Bad and degenerate input: sklearn's errors, finite answers, untouched arrays.

Each catalog case prints one ``CATALOG | case | expected | sklearn ... | ours ...``
line and records it as the ``outcome`` property; the test id carries the expected
outcome. ``pytest tests/test_robustness.py -v -rA`` lists every line.
"""

import contextlib
import re
import signal
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import COVARIANCE_TYPES
from sklearn.datasets import load_digits
from sklearn.mixture import BayesianGaussianMixture

from skbayesmix import VariationalGaussianMixture

# A case that takes longer than this counts as a hang.
_CASE_TIME_LIMIT = 60


# --------------------------------------------------------------------------------
# Scenarios: what is done to an estimator, the same for sklearn's and ours
# --------------------------------------------------------------------------------


class _Scenario(NamedTuple):
    """Constructor parameters, then method calls applied one after the other.

    The outcome of a scenario is the return value of its last call. `reference`,
    when given, is a scenario whose outcome an accepted input must reproduce.
    """

    params: dict
    calls: list
    reference: object = None


def _data(n_samples=30, n_features=3):
    return np.random.RandomState(0).randn(n_samples, n_features)


def _fit(X, **params):
    return _Scenario(params, [("fit", (X,))])


def _fit_then(X, method, *args, **params):
    return _Scenario(params, [("fit", (X,)), (method, args)])


def _refit_with(X_first, X_second, changed, **params):
    """A warm-started fit, then a second fit after `set_params(**changed)`."""
    return _Scenario(
        dict(params, warm_start=True),
        [("fit", (X_first,)), ("set_params", (), changed), ("fit", (X_second,))],
    )


def _with_value(value, row=0, col=0):
    X = _data()
    X[row, col] = value
    return X


def _read_only(X):
    X = np.array(X)
    X.flags.writeable = False
    return X


def _memmap(tmp_path, X):
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


def _frame(X, columns="abc"):
    return pd.DataFrame(X, columns=list(columns))


def _as_float64(value):
    """The float64 ndarray a scikit-learn user expects `value` to be treated as."""
    if isinstance(value, (np.ndarray, pd.DataFrame, list)):
        return np.array(value, dtype=np.float64)
    return value


def _float64_reference(scenario):
    calls = [
        (name, tuple(_as_float64(a) for a in args), *rest)
        for name, args, *rest in scenario.calls
    ]
    return _Scenario(scenario.params, calls)


# --------------------------------------------------------------------------------
# Expected outcomes
# --------------------------------------------------------------------------------


class _Expected(NamedTuple):
    kind: str
    param: str = None

    def __str__(self):
        return self.kind if self.param is None else f"{self.kind}({self.param})"


# Same exception type as sklearn, and the same first line once the class name,
# the numbers and the order of set literals are normalised.
SAME_ERROR = _Expected("same_error")
# Both accept the input; ours gives finite results equal to those on the float64
# ndarray that sklearn converts the input to.
ACCEPTED = _Expected("accepted")
# Same warning category and normalised message as sklearn, and finite results.
SAME_WARNING = _Expected("same_warning")
# Finite results, or a ValueError (not OverflowError, not a TensorFlow error).
FINITE_OR_VALUE_ERROR = _Expected("finite_or_value_error")


def same_error_naming(param):
    """SAME_ERROR whose message also names the offending parameter."""
    return _Expected("same_error", param)


def value_error_naming(param):
    """A ValueError naming `param`, where sklearn's own error is accidental."""
    return _Expected("value_error_naming", param)


def refit_or_value_error_naming(param):
    """A refit consistent with the new parameters, or a ValueError naming `param`."""
    return _Expected("refit_or_value_error_naming", param)


# --------------------------------------------------------------------------------
# The catalog: (case_id, input builder, expected outcome)
# --------------------------------------------------------------------------------

CATALOG = [
    # Non-finite values
    # NaN is a missing entry in fitting too (tests/test_missing_fit.py).
    ("nan_in_fit", lambda tmp: _fit(_with_value(np.nan)), FINITE_OR_VALUE_ERROR),
    ("inf_in_fit", lambda tmp: _fit(_with_value(np.inf)), SAME_ERROR),
    ("minus_inf_in_fit", lambda tmp: _fit(_with_value(-np.inf)), SAME_ERROR),
    # NaN is a missing feature at prediction, where sklearn raises; the
    # marginals themselves are tested in tests/test_missing_prediction.py.
    (
        "nan_in_predict",
        lambda tmp: _fit_then(_data(), "predict", _with_value(np.nan)),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "inf_in_score_samples",
        lambda tmp: _fit_then(_data(), "score_samples", _with_value(np.inf)),
        SAME_ERROR,
    ),
    (
        "pandas_na_in_fit",
        lambda tmp: _fit(_frame(_data()).astype("Float64").mask(_data() > 2.0)),
        FINITE_OR_VALUE_ERROR,
    ),
    # Types that are not real numbers
    ("complex_in_fit", lambda tmp: _fit(_data() + 1j), SAME_ERROR),
    (
        "complex_in_predict",
        lambda tmp: _fit_then(_data(), "predict_proba", _data() + 1j),
        SAME_ERROR,
    ),
    ("sparse_in_fit", lambda tmp: _fit(sp.csr_matrix(_data())), SAME_ERROR),
    (
        "sparse_in_predict",
        lambda tmp: _fit_then(_data(), "predict", sp.csr_matrix(_data())),
        SAME_ERROR,
    ),
    (
        "strings_in_fit",
        lambda tmp: _fit(np.array([["a", "b"], ["c", "d"], ["e", "f"]])),
        SAME_ERROR,
    ),
    (
        "object_array_with_string_in_fit",
        lambda tmp: _fit(np.array([[1.0, "a"], [2.0, "b"], [3.0, None]], object)),
        SAME_ERROR,
    ),
    (
        "categorical_column_in_fit",
        lambda tmp: _fit(
            pd.DataFrame({"a": _data()[:, 0], "b": pd.Categorical(["x", "y"] * 15)})
        ),
        SAME_ERROR,
    ),
    # Shapes
    ("1d_in_fit", lambda tmp: _fit(_data()[:, 0]), SAME_ERROR),
    ("3d_in_fit", lambda tmp: _fit(_data()[:, :, None]), SAME_ERROR),
    (
        "1d_in_predict",
        lambda tmp: _fit_then(_data(), "predict", _data()[0]),
        SAME_ERROR,
    ),
    (
        "3d_in_predict",
        lambda tmp: _fit_then(_data(), "predict", _data()[:, :, None]),
        SAME_ERROR,
    ),
    ("no_samples_in_fit", lambda tmp: _fit(np.empty((0, 3))), SAME_ERROR),
    ("no_features_in_fit", lambda tmp: _fit(np.empty((30, 0))), SAME_ERROR),
    ("empty_list_in_fit", lambda tmp: _fit([]), SAME_ERROR),
    (
        "no_samples_in_predict",
        lambda tmp: _fit_then(_data(), "predict", np.empty((0, 3))),
        SAME_ERROR,
    ),
    ("single_sample_in_fit", lambda tmp: _fit(_data(1)), SAME_ERROR),
    (
        "fewer_samples_than_components",
        lambda tmp: _fit(_data(3), n_components=5),
        SAME_ERROR,
    ),
    (
        "wrong_n_features_in_predict",
        lambda tmp: _fit_then(_data(), "predict", _data(5, 2)),
        SAME_ERROR,
    ),
    (
        "wrong_n_features_in_score",
        lambda tmp: _fit_then(_data(), "score", _data(5, 4)),
        SAME_ERROR,
    ),
    # Feature names
    (
        "pandas_renamed_column_in_predict",
        lambda tmp: _fit_then(
            _frame(_data()), "predict", _frame(_data()).rename(columns={"a": "z"})
        ),
        SAME_ERROR,
    ),
    (
        "pandas_reordered_columns_in_predict",
        lambda tmp: _fit_then(
            _frame(_data()), "predict", _frame(_data())[["c", "b", "a"]]
        ),
        SAME_ERROR,
    ),
    (
        "pandas_fit_ndarray_predict",
        lambda tmp: _fit_then(_frame(_data()), "predict_proba", _data()),
        SAME_WARNING,
    ),
    (
        "ndarray_fit_pandas_predict",
        lambda tmp: _fit_then(_data(), "predict_proba", _frame(_data())),
        SAME_WARNING,
    ),
    # Invalid parameter values
    (
        "n_components_zero",
        lambda tmp: _fit(_data(), n_components=0),
        same_error_naming("n_components"),
    ),
    (
        "n_components_float",
        lambda tmp: _fit(_data(), n_components=1.5),
        same_error_naming("n_components"),
    ),
    (
        "n_components_string",
        lambda tmp: _fit(_data(), n_components="3"),
        same_error_naming("n_components"),
    ),
    ("tol_negative", lambda tmp: _fit(_data(), tol=-1.0), same_error_naming("tol")),
    ("tol_nan", lambda tmp: _fit(_data(), tol=np.nan), same_error_naming("tol")),
    (
        "reg_covar_negative",
        lambda tmp: _fit(_data(), reg_covar=-1e-6),
        same_error_naming("reg_covar"),
    ),
    (
        "reg_covar_inf",
        lambda tmp: _fit(_data(), reg_covar=np.inf),
        same_error_naming("reg_covar"),
    ),
    (
        "max_iter_negative",
        lambda tmp: _fit(_data(), max_iter=-1),
        same_error_naming("max_iter"),
    ),
    ("n_init_zero", lambda tmp: _fit(_data(), n_init=0), same_error_naming("n_init")),
    (
        "init_params_unknown",
        lambda tmp: _fit(_data(), init_params="kmedoids"),
        same_error_naming("init_params"),
    ),
    (
        "covariance_type_unknown",
        lambda tmp: _fit(_data(), covariance_type="block"),
        same_error_naming("covariance_type"),
    ),
    (
        "weight_prior_type_unknown",
        lambda tmp: _fit(_data(), weight_concentration_prior_type="pitman_yor"),
        same_error_naming("weight_concentration_prior_type"),
    ),
    (
        "weight_concentration_prior_zero",
        lambda tmp: _fit(_data(), weight_concentration_prior=0.0),
        same_error_naming("weight_concentration_prior"),
    ),
    (
        "mean_precision_prior_negative",
        lambda tmp: _fit(_data(), mean_precision_prior=-1.0),
        same_error_naming("mean_precision_prior"),
    ),
    (
        "degrees_of_freedom_prior_too_small",
        lambda tmp: _fit(_data(), degrees_of_freedom_prior=1.5),
        same_error_naming("degrees_of_freedom_prior"),
    ),
    (
        "degrees_of_freedom_prior_negative",
        lambda tmp: _fit(_data(), degrees_of_freedom_prior=-1.0),
        same_error_naming("degrees_of_freedom_prior"),
    ),
    (
        "covariance_prior_negative_float",
        lambda tmp: _fit(_data(), covariance_prior=-1.0),
        same_error_naming("covariance_prior"),
    ),
    (
        "verbose_interval_zero",
        lambda tmp: _fit(_data(), verbose_interval=0),
        same_error_naming("verbose_interval"),
    ),
    (
        "warm_start_string",
        lambda tmp: _fit(_data(), warm_start="yes"),
        same_error_naming("warm_start"),
    ),
    (
        "random_state_string",
        lambda tmp: _Scenario({"random_state": "zero"}, [("fit", (_data(),))]),
        same_error_naming("random_state"),
    ),
    # Priors of the wrong shape or not positive definite
    (
        "mean_prior_wrong_length",
        lambda tmp: _fit(_data(), mean_prior=np.zeros(2)),
        SAME_ERROR,
    ),
    (
        "mean_prior_2d",
        lambda tmp: _fit(_data(), mean_prior=np.zeros((3, 1))),
        SAME_ERROR,
    ),
    (
        "mean_prior_nan",
        lambda tmp: _fit(_data(), mean_prior=[np.nan, 0.0, 0.0]),
        SAME_ERROR,
    ),
    (
        "full_covariance_prior_wrong_shape",
        lambda tmp: _fit(_data(), covariance_prior=np.eye(2)),
        SAME_ERROR,
    ),
    (
        "full_covariance_prior_negative_definite",
        lambda tmp: _fit(_data(), covariance_prior=-np.eye(3)),
        SAME_ERROR,
    ),
    (
        "full_covariance_prior_asymmetric",
        lambda tmp: _fit(
            _data(), covariance_prior=np.eye(3) + np.triu(np.ones((3, 3)), 1)
        ),
        SAME_ERROR,
    ),
    (
        "full_covariance_prior_singular",
        lambda tmp: _fit(_data(), covariance_prior=np.zeros((3, 3))),
        SAME_ERROR,
    ),
    (
        "tied_covariance_prior_wrong_shape",
        lambda tmp: _fit(_data(), covariance_type="tied", covariance_prior=np.eye(4)),
        SAME_ERROR,
    ),
    (
        "tied_covariance_prior_not_positive_definite",
        lambda tmp: _fit(
            _data(), covariance_type="tied", covariance_prior=np.diag([1.0, 0.0, 1.0])
        ),
        SAME_ERROR,
    ),
    (
        "diag_covariance_prior_wrong_shape",
        lambda tmp: _fit(_data(), covariance_type="diag", covariance_prior=np.ones(2)),
        SAME_ERROR,
    ),
    (
        "diag_covariance_prior_not_positive",
        lambda tmp: _fit(
            _data(), covariance_type="diag", covariance_prior=np.array([1.0, 0.0, 1.0])
        ),
        SAME_ERROR,
    ),
    (
        "diag_covariance_prior_inf",
        lambda tmp: _fit(
            _data(), covariance_type="diag", covariance_prior=[np.inf, 1.0, 1.0]
        ),
        SAME_ERROR,
    ),
    (
        "spherical_covariance_prior_zero",
        lambda tmp: _fit(_data(), covariance_type="spherical", covariance_prior=0.0),
        same_error_naming("covariance_prior"),
    ),
    (
        # sklearn broadcasts the vector into its fitted arrays and fails by
        # accident in NumPy; the parameter should be named instead.
        "spherical_covariance_prior_vector",
        lambda tmp: _fit(
            _data(),
            n_components=2,
            covariance_type="spherical",
            covariance_prior=np.ones(3),
        ),
        value_error_naming("covariance_prior"),
    ),
    (
        "spherical_covariance_prior_one_element_array",
        lambda tmp: _Scenario(
            dict(
                n_components=2,
                covariance_type="spherical",
                covariance_prior=np.array([2.0]),
            ),
            [("fit", (_data(),))],
            reference=_fit(
                _data(),
                n_components=2,
                covariance_type="spherical",
                covariance_prior=2.0,
            ),
        ),
        ACCEPTED,
    ),
    # Sampling and unfitted use
    ("sample_zero", lambda tmp: _fit_then(_data(), "sample", 0), SAME_ERROR),
    ("sample_negative", lambda tmp: _fit_then(_data(), "sample", -3), SAME_ERROR),
    (
        "predict_unfitted",
        lambda tmp: _Scenario({}, [("predict", (_data(),))]),
        SAME_ERROR,
    ),
    ("sample_unfitted", lambda tmp: _Scenario({}, [("sample", (2,))]), SAME_ERROR),
    # Warm start after the structure changed
    (
        "warm_start_refit_other_n_features",
        lambda tmp: _refit_with(_data(), _data(30, 2), {}, n_components=2),
        refit_or_value_error_naming("features"),
    ),
    (
        "warm_start_refit_more_components",
        lambda tmp: _refit_with(_data(), _data(), {"n_components": 3}, n_components=2),
        refit_or_value_error_naming("n_components"),
    ),
    (
        "warm_start_refit_other_covariance_type",
        lambda tmp: _refit_with(
            _data(), _data(), {"covariance_type": "diag"}, n_components=2
        ),
        refit_or_value_error_naming("covariance_type"),
    ),
    (
        "warm_start_refit_other_weight_prior_type",
        lambda tmp: _refit_with(
            _data(),
            _data(),
            {"weight_concentration_prior_type": "dirichlet_distribution"},
            n_components=2,
        ),
        refit_or_value_error_naming("weight_concentration_prior_type"),
    ),
    # Inputs sklearn accepts
    (
        "float64_ndarray",
        lambda tmp: _fit_then(_data(), "predict_proba", _data()),
        ACCEPTED,
    ),
    (
        "int_ndarray",
        lambda tmp: _fit((_data() * 10).astype(np.int64), n_components=2),
        ACCEPTED,
    ),
    ("bool_ndarray", lambda tmp: _fit(_data() > 0, n_components=2), ACCEPTED),
    (
        "float16_ndarray",
        lambda tmp: _fit(_data().astype(np.float16), n_components=2),
        ACCEPTED,
    ),
    ("list_of_lists", lambda tmp: _fit(_data().tolist(), n_components=2), ACCEPTED),
    (
        "object_ndarray_of_floats",
        lambda tmp: _fit(_data().astype(object), n_components=2),
        ACCEPTED,
    ),
    (
        "read_only_ndarray",
        lambda tmp: _fit_then(
            _read_only(_data()), "score_samples", _read_only(_data())
        ),
        ACCEPTED,
    ),
    (
        "memmap",
        lambda tmp: _fit_then(
            _memmap(tmp, _data()), "predict_proba", _memmap(tmp, _data())
        ),
        ACCEPTED,
    ),
    (
        "fortran_ordered",
        lambda tmp: _fit(np.asfortranarray(_data()), n_components=2),
        ACCEPTED,
    ),
    (
        "strided_view",
        lambda tmp: _fit(_data(60, 6)[::2, ::2], n_components=2),
        ACCEPTED,
    ),
    (
        "pandas_frame",
        lambda tmp: _fit_then(_frame(_data()), "predict_proba", _frame(_data())),
        ACCEPTED,
    ),
    (
        "pandas_nullable_int",
        lambda tmp: _fit(
            _frame((_data() * 10).astype(int)).astype("Int64"), n_components=2
        ),
        ACCEPTED,
    ),
    (
        "int_in_predict",
        lambda tmp: _fit_then(_data(), "score_samples", (_data() * 3).astype(np.int32)),
        ACCEPTED,
    ),
    (
        "read_only_priors",
        lambda tmp: _fit(
            _data(),
            mean_prior=_read_only(np.zeros(3)),
            covariance_prior=_read_only(np.eye(3)),
        ),
        ACCEPTED,
    ),
    (
        "max_iter_zero",
        lambda tmp: _fit_then(
            _data(), "predict_proba", _data(), max_iter=0, n_components=2
        ),
        ACCEPTED,
    ),
    # Values near the float range
    (
        "fit_X_times_1e300",
        lambda tmp: _fit(_data() * 1e300, n_components=2),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "fit_X_times_1e200",
        lambda tmp: _fit(_data() * 1e200, n_components=2),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "fit_X_at_float_max",
        lambda tmp: _fit(_data() / 3.0 * np.finfo(np.float64).max, n_components=2),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "fit_X_times_1e-300",
        lambda tmp: _fit(_data() * 1e-300, n_components=2),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "fit_float32_X_times_1e37",
        lambda tmp: _fit((_data() * 1e37).astype(np.float32), n_components=2),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "predict_proba_X_times_1e300",
        lambda tmp: _fit_then(
            _data(), "predict_proba", _data() * 1e300, n_components=2
        ),
        FINITE_OR_VALUE_ERROR,
    ),
    (
        "score_samples_X_times_1e300",
        lambda tmp: _fit_then(
            _data(), "score_samples", _data() * 1e300, n_components=2
        ),
        FINITE_OR_VALUE_ERROR,
    ),
]


# --------------------------------------------------------------------------------
# Running a scenario and judging its outcome
# --------------------------------------------------------------------------------


class _Outcome(NamedTuple):
    estimator: object
    result: object
    error: BaseException
    warnings: list


@contextlib.contextmanager
def _time_limit(seconds):
    """Turn a hang into a TimeoutError (SIGALRM, so main thread on POSIX only)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(estimator_class, scenario):
    params = dict({"random_state": 0}, **scenario.params)
    estimator, result, error = None, None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _time_limit(_CASE_TIME_LIMIT):
                estimator = estimator_class(**params)
                for name, args, *kwargs in scenario.calls:
                    result = getattr(estimator, name)(
                        *args, **(kwargs[0] if kwargs else {})
                    )
        except TimeoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - every exception is an outcome
            error = exc
    kept = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
    return _Outcome(estimator, result, error, kept)


def _normalise(message):
    """First line of a message, without the class name, numbers or set order."""
    line = str(message).strip().split("\n")[0]
    line = line.replace("BayesianGaussianMixture", "<estimator>")
    line = line.replace("VariationalGaussianMixture", "<estimator>")
    line = re.sub(
        r"\{([^{}]*)\}",
        lambda m: (
            "{" + ", ".join(sorted(s.strip() for s in m.group(1).split(","))) + "}"
        ),
        line,
    )
    return re.sub(r"[-+]?\d+(\.\d*)?(e[-+]?\d+)?", "#", line).strip()


def _describe(outcome):
    if outcome.error is not None:
        return f"{type(outcome.error).__name__}: {_normalise(outcome.error)[:90]}"
    text = "ok"
    if any(not np.all(np.isfinite(a)) for a in _float_arrays(outcome.result)):
        text += " but non-finite result"
    user_warnings = sorted({w.category.__name__ for w in outcome.warnings})
    if user_warnings:
        text += " with " + ", ".join(user_warnings)
    return text


def _brief(error):
    return f"{type(error).__name__}: {str(error)[:300]}"


def _leaks_tensorflow(error):
    module = type(error).__module__
    return module.startswith(("tensorflow", "tf_keras", "keras")) or bool(
        re.search(r"tf\.function|TensorSpec|Tensor\(|tensorflow", str(error))
    )


def _float_arrays(value):
    """Every floating array found in `value` (nested tuples included)."""
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _float_arrays(v)]
    array = np.asarray(value)
    if array.dtype.kind in "fc":
        return [array]
    return []


def _assert_finite(outcome):
    estimator = outcome.estimator
    fitted = {
        name: getattr(estimator, name)
        for name in vars(estimator)
        if name.endswith("_") and not name.startswith("_")
    }
    fitted["result"] = outcome.result
    if getattr(estimator, "max_iter", None) == 0:
        # sklearn's sentinel too: no iteration, no bound.
        assert fitted.pop("lower_bound_") == -np.inf
    for name, value in fitted.items():
        for array in _float_arrays(value):
            assert np.all(np.isfinite(array)), f"{name} is not finite: {array}"


def _snapshot(scenario):
    arrays = []
    for _, args, *kwargs in scenario.calls:
        arrays.extend(args)
        if kwargs:
            arrays.extend(kwargs[0].values())
    arrays.extend(scenario.params.values())
    return [
        (a, a.copy() if isinstance(a, pd.DataFrame) or sp.issparse(a) else np.copy(a))
        for a in arrays
        if isinstance(a, (np.ndarray, pd.DataFrame)) or sp.issparse(a)
    ]


def _assert_unmodified(snapshot):
    for original, copy in snapshot:
        if isinstance(original, pd.DataFrame):
            pd.testing.assert_frame_equal(original, copy)
        elif sp.issparse(original):
            assert (original != copy).nnz == 0
        else:
            np.testing.assert_array_equal(original, copy)


def _check_same_error(ours, theirs, param):
    assert theirs.error is not None, "sklearn accepts this input"
    assert ours.error is not None, "ours accepts what sklearn rejects"
    assert type(ours.error) is type(theirs.error), (
        f"{type(ours.error).__name__} instead of sklearn's "
        f"{type(theirs.error).__name__}: {_brief(ours.error)}"
    )
    assert _normalise(ours.error) == _normalise(theirs.error)
    if param is not None:
        assert param in str(ours.error)


def _check_accepted(ours, theirs, scenario):
    assert theirs.error is None, f"sklearn rejects this input: {theirs.error}"
    assert ours.error is None, _brief(ours.error)
    _assert_finite(ours)
    reference = _run(
        VariationalGaussianMixture, scenario.reference or _float64_reference(scenario)
    )
    assert reference.error is None
    np.testing.assert_allclose(
        ours.estimator.means_, reference.estimator.means_, rtol=1e-6
    )
    np.testing.assert_allclose(
        ours.estimator.covariances_, reference.estimator.covariances_, rtol=1e-6
    )
    if ours.result is not ours.estimator:
        np.testing.assert_allclose(ours.result, reference.result, rtol=1e-6)


def _check_same_warning(ours, theirs):
    assert theirs.error is None and ours.error is None
    expected = {(w.category, _normalise(w.message)) for w in theirs.warnings}
    observed = {(w.category, _normalise(w.message)) for w in ours.warnings}
    assert expected, "sklearn does not warn"
    assert expected <= observed
    _assert_finite(ours)


def _check_refit_or_value_error(ours, param):
    if ours.error is not None:
        assert isinstance(ours.error, ValueError), _brief(ours.error)
        assert param in str(ours.error)
        return
    estimator = ours.estimator
    _assert_finite(ours)
    n_components = estimator.n_components
    assert estimator.weights_.shape == (n_components,)
    assert estimator.means_.shape == (n_components, estimator.n_features_in_)
    expected_ndim = {"full": 3, "tied": 2, "diag": 2, "spherical": 1}
    assert estimator.covariances_.ndim == expected_ndim[estimator.covariance_type]
    is_tuple = isinstance(estimator.weight_concentration_, tuple)
    assert is_tuple == (
        estimator.weight_concentration_prior_type == "dirichlet_process"
    )


@pytest.mark.parametrize(
    "case_id, build, expected",
    CATALOG,
    ids=[f"{case_id}-{expected}" for case_id, _, expected in CATALOG],
)
def test_estimator_input_catalog(case_id, build, expected, tmp_path, record_property):
    theirs = _run(BayesianGaussianMixture, build(tmp_path))
    scenario = build(tmp_path)
    snapshot = _snapshot(scenario)
    ours = _run(VariationalGaussianMixture, scenario)

    line = (
        f"CATALOG | {case_id} | expected {expected} | sklearn {_describe(theirs)} "
        f"| ours {_describe(ours)}"
    )
    print(line)
    record_property("outcome", line)

    _assert_unmodified(snapshot)
    if ours.error is not None:
        assert not _leaks_tensorflow(ours.error), _brief(ours.error)
        assert not isinstance(ours.error, (OverflowError, FloatingPointError)), repr(
            ours.error
        )
    if expected.kind == "same_error":
        _check_same_error(ours, theirs, expected.param)
    elif expected.kind == "accepted":
        _check_accepted(ours, theirs, scenario)
    elif expected.kind == "same_warning":
        _check_same_warning(ours, theirs)
    elif expected.kind == "finite_or_value_error":
        if ours.error is None:
            _assert_finite(ours)
        else:
            assert isinstance(ours.error, ValueError), _brief(ours.error)
    elif expected.kind == "value_error_naming":
        assert isinstance(ours.error, ValueError), _brief(ours.error)
        assert expected.param in str(ours.error)
    elif expected.kind == "refit_or_value_error_naming":
        _check_refit_or_value_error(ours, expected.param)
    else:
        raise AssertionError(f"unknown expectation {expected}")


def test_estimator_input_catalog_ids_are_unique():
    case_ids = [case_id for case_id, _, _ in CATALOG]
    assert len(case_ids) == len(set(case_ids))


# --------------------------------------------------------------------------------
# Degenerate data: finite answers for every covariance type
# --------------------------------------------------------------------------------


def _digits_pixels():
    # The raw 0..16 pixels, constant border columns included.
    return load_digits().data[:300]


DEGENERATE_DATA = [
    # (case_id, data builder, n_components, weight prior type)
    ("identical_points", lambda: np.full((40, 3), 2.5), 3, "dirichlet_process"),
    (
        "identical_points_dirichlet_distribution",
        lambda: np.full((40, 3), 2.5),
        3,
        "dirichlet_distribution",
    ),
    ("identical_zeros", lambda: np.zeros((40, 3)), 3, "dirichlet_process"),
    (
        "identical_points_float32_at_1e8",
        lambda: np.full((100, 3), 1e8, dtype=np.float32),
        3,
        "dirichlet_process",
    ),
    (
        "identical_points_at_1e100",
        lambda: np.full((100, 3), 1e100),
        3,
        "dirichlet_process",
    ),
    (
        "few_distinct_points_repeated",
        lambda: np.repeat(np.random.RandomState(0).randn(3, 2), 30, axis=0),
        5,
        "dirichlet_process",
    ),
    (
        "few_distinct_points_repeated_dirichlet_distribution",
        lambda: np.repeat(np.random.RandomState(0).randn(3, 2), 30, axis=0),
        5,
        "dirichlet_distribution",
    ),
    (
        "constant_feature",
        lambda: np.c_[_data(60, 2), np.full(60, 7.0)],
        3,
        "dirichlet_process",
    ),
    (
        "collinear_features",
        lambda: np.c_[_data(60, 2), 2.0 * _data(60, 2)[:, :1] + 1.0],
        3,
        "dirichlet_process",
    ),
    (
        "collinear_features_scale_1e100",
        lambda: np.c_[_data(60, 2), 2.0 * _data(60, 2)[:, :1] + 1.0] * 1e100,
        3,
        "dirichlet_process",
    ),
    (
        "collinear_features_float32_scale_1e4",
        lambda: (np.c_[_data(60, 2), 2.0 * _data(60, 2)[:, :1] + 1.0] * 1e4).astype(
            np.float32
        ),
        3,
        "dirichlet_process",
    ),
    ("offset_1e8", lambda: _data(60, 3) + 1e8, 3, "dirichlet_process"),
    ("scale_1e100", lambda: _data(60, 3) * 1e100, 3, "dirichlet_process"),
    ("scale_1e-100", lambda: _data(60, 3) * 1e-100, 3, "dirichlet_process"),
    (
        "scales_1e-100_1_1e100_per_feature",
        lambda: _data(60, 3) * np.array([1e-100, 1.0, 1e100]),
        3,
        "dirichlet_process",
    ),
    ("n_samples_equals_n_components", lambda: _data(5, 3), 5, "dirichlet_process"),
    (
        "more_features_than_samples",
        lambda: np.random.RandomState(0).randn(6, 20),
        2,
        "dirichlet_process",
    ),
    (
        "float32_64_features",
        lambda: np.random.RandomState(0).randn(200, 64).astype(np.float32),
        4,
        "dirichlet_process",
    ),
    ("digits_raw_pixels", _digits_pixels, 10, "dirichlet_process"),
    (
        "digits_raw_pixels_float32",
        lambda: _digits_pixels().astype(np.float32),
        10,
        "dirichlet_process",
    ),
]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(
    "case_id, make_data, n_components, weight_type",
    DEGENERATE_DATA,
    ids=[case[0] for case in DEGENERATE_DATA],
)
def test_fit_degenerate_data_is_finite(
    case_id, make_data, n_components, weight_type, covariance_type, record_property
):
    X = make_data()
    X_before = X.copy()
    vgm = VariationalGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vgm.fit(X)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            line = f"DEGENERATE | {case_id} | {covariance_type} | {error}"
            print(line)
            record_property("outcome", line)
            raise
    # KMeans's own "Number of distinct clusters" warning is not the package's.
    own = sorted(
        {
            f"{w.category.__name__}: {str(w.message)[:70]}"
            for w in caught
            if not issubclass(w.category, DeprecationWarning)
            and "distinct clusters" not in str(w.message)
        }
    )
    line = (
        f"DEGENERATE | {case_id} | {covariance_type} | fitted | package warnings: {own}"
    )
    print(line)
    record_property("outcome", line)

    np.testing.assert_array_equal(X, X_before)
    for name in vars(vgm):
        if name.endswith("_") and not name.startswith("_"):
            for array in _float_arrays(getattr(vgm, name)):
                assert np.all(np.isfinite(array)), f"{name} is not finite"
    log_density = vgm.score_samples(X)
    resp = vgm.predict_proba(X)
    assert np.all(np.isfinite(log_density))
    assert np.all(np.isfinite(resp))
    rtol = 1e-4 if X.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=rtol)
    labels = vgm.predict(X)
    assert np.all((labels >= 0) & (labels < n_components))
    samples, _ = vgm.sample(5)
    assert np.all(np.isfinite(samples))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_prior_arrays_are_not_modified(covariance_type):
    X = _data(40, 3)
    covariance_prior = {
        "full": np.eye(3) * 2.0,
        "tied": np.eye(3) * 2.0,
        "diag": np.full(3, 2.0),
        "spherical": 2.0,
    }[covariance_type]
    mean_prior = np.array([0.5, -0.5, 0.0])
    before = (np.copy(covariance_prior), mean_prior.copy())
    vgm = VariationalGaussianMixture(
        n_components=2,
        covariance_type=covariance_type,
        mean_prior=mean_prior,
        covariance_prior=covariance_prior,
        random_state=0,
    ).fit(X)
    vgm.fit(X)
    np.testing.assert_array_equal(covariance_prior, before[0])
    np.testing.assert_array_equal(mean_prior, before[1])
    assert vgm.get_params()["mean_prior"] is mean_prior
