"""TransformedDensity: a density fitted after a transformer, in the original space."""

import functools

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context, clone
from sklearn.utils import get_tags
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted, validate_data

from skbayesmix._variational_mixture import VariationalGaussianMixture

# ------------------------------------------------------------------------------
# log |det J_T(x)| of each supported transformer T, in float64
# ------------------------------------------------------------------------------
#
# Each function returns a scalar when J_T is constant (affine maps), or an
# array of shape (n_samples,) otherwise; callers broadcast.


def _log_abs_det_standard_scaler(transformer, X):
    """T(x) = (x - mean_) / scale_, so log |det J| = -sum log scale_."""
    if transformer.scale_ is None:  # with_std=False
        return 0.0
    return -np.sum(np.log(np.asarray(transformer.scale_, dtype=np.float64)))


def _log_abs_det_min_max_scaler(transformer, X):
    """T(x) = x * scale_ + min_, so log |det J| = sum log scale_."""
    return np.sum(np.log(np.asarray(transformer.scale_, dtype=np.float64)))


def _log_abs_det_max_abs_scaler(transformer, X):
    """T(x) = x / scale_, so log |det J| = -sum log scale_."""
    return -np.sum(np.log(np.asarray(transformer.scale_, dtype=np.float64)))


def _log_abs_det_robust_scaler(transformer, X):
    """T(x) = (x - center_) / scale_, so log |det J| = -sum log scale_."""
    if transformer.scale_ is None:  # with_scaling=False
        return 0.0
    return -np.sum(np.log(np.asarray(transformer.scale_, dtype=np.float64)))


def _log_abs_det_pca(transformer, X):
    """T(x) = (x - mean_) @ components_.T / s, so log |det J| = log |det C| - sum log s.

    s is sqrt(explained_variance_) when whitening, floored at eps as
    scikit-learn floors it, and 1 otherwise. The components are orthonormal,
    so log |det C| is 0 up to rounding; it is computed rather than assumed.
    """
    components = np.asarray(transformer.components_, dtype=np.float64)
    log_abs_det = np.linalg.slogdet(components)[1]
    if transformer.whiten:
        scale = np.sqrt(np.asarray(transformer.explained_variance_))
        scale = np.maximum(scale, np.finfo(scale.dtype).eps).astype(np.float64)
        log_abs_det -= np.sum(np.log(scale))
    return log_abs_det


def _log_derivative_yeo_johnson(x, lmbda):
    """log T'(x) of the Yeo-Johnson transform, elementwise.

    T(x) = ((x + 1)^l - 1) / l for x >= 0, -((1 - x)^(2 - l) - 1) / (2 - l)
    for x < 0 (with the log limits at l = 0 and l = 2), so::

        log T'(x) = (l - 1) log(1 + x)   if x >= 0
                    (1 - l) log(1 - x)   if x < 0
    """
    positive = x >= 0
    return np.where(
        positive,
        (lmbda - 1.0) * np.log1p(np.where(positive, x, 0.0)),
        (1.0 - lmbda) * np.log1p(-np.where(positive, 0.0, x)),
    )


def _log_derivative_box_cox(x, lmbda):
    """log T'(x) of the Box-Cox transform T(x) = (x^l - 1) / l: (l - 1) log x."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (lmbda - 1.0) * np.log(x)


_POWER_LOG_DERIVATIVES = {
    "yeo-johnson": _log_derivative_yeo_johnson,
    "box-cox": _log_derivative_box_cox,
}


def _log_abs_det_power_transformer(transformer, X):
    """Sum over features of log T_d'(x_d), plus the standardisation's scale.

    The power transform acts on each feature alone, so J is diagonal; with
    `standardize`, its internal StandardScaler `_scaler` follows.

    Returns
    -------
    log_abs_det : ndarray of shape (n_samples,)
    """
    X = np.asarray(X, dtype=np.float64)
    lambdas = np.asarray(transformer.lambdas_, dtype=np.float64)
    log_derivative = _POWER_LOG_DERIVATIVES[transformer.method](X, lambdas)
    log_abs_det = np.sum(log_derivative, axis=1)  # [n_samples]
    if transformer.standardize:
        log_abs_det += _log_abs_det_standard_scaler(transformer._scaler, X)
    return log_abs_det


@functools.cache
def _log_abs_det_jacobians():
    """The table {transformer class: its log |det J| function}.

    Built on first use: importing sklearn.decomposition, .pipeline and
    .preprocessing would add about 0.4 s to ``import skbayesmix``.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import (
        MaxAbsScaler,
        MinMaxScaler,
        PowerTransformer,
        RobustScaler,
        StandardScaler,
    )

    return {
        StandardScaler: _log_abs_det_standard_scaler,
        MinMaxScaler: _log_abs_det_min_max_scaler,
        MaxAbsScaler: _log_abs_det_max_abs_scaler,
        RobustScaler: _log_abs_det_robust_scaler,
        PCA: _log_abs_det_pca,
        PowerTransformer: _log_abs_det_power_transformer,
    }


_SUPPORTED = (
    "StandardScaler, MinMaxScaler (without clip), MaxAbsScaler, RobustScaler, "
    "PCA keeping all components, PowerTransformer, FunctionTransformer with "
    "log_abs_det_jacobian, and Pipelines of these"
)


# ------------------------------------------------------------------------------
# Checks and the change of variables
# ------------------------------------------------------------------------------


def _flat_steps(transformer):
    """The transformers a (nested) Pipeline applies, in order; passthrough dropped.

    Parameters
    ----------
    transformer : transformer or Pipeline

    Returns
    -------
    steps : list of transformers
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(transformer, Pipeline):
        return [transformer]
    steps = []
    for _, step in transformer.steps:
        if step is not None and not (isinstance(step, str) and step == "passthrough"):
            steps.extend(_flat_steps(step))
    return steps


def _is_function_transformer(step):
    from sklearn.preprocessing import FunctionTransformer

    return isinstance(step, FunctionTransformer)


def _is_identity(step):
    """Whether `step` is a FunctionTransformer without a function: the identity."""
    return _is_function_transformer(step) and step.func is None


def _check_supported(transformer, log_abs_det_jacobian):
    """Raise a ValueError unless every step has a known log |det J|.

    Called before fitting, so that an unsupported transformer fails fast.
    """
    from sklearn.preprocessing import MinMaxScaler

    n_functions = 0
    for step in _flat_steps(transformer):
        if _is_function_transformer(step):
            n_functions += not _is_identity(step)
            continue
        if not isinstance(step, tuple(_log_abs_det_jacobians())):
            raise ValueError(
                f"TransformedDensity cannot compute the Jacobian of "
                f"{type(step).__name__}. Supported transformers: {_SUPPORTED}."
            )
        if isinstance(step, MinMaxScaler) and step.clip:
            raise ValueError(
                "MinMaxScaler(clip=True) is not invertible outside the training "
                "range, so the density has no change of variables. Use "
                "clip=False."
            )
    if n_functions and log_abs_det_jacobian is None:
        raise ValueError(
            "A FunctionTransformer needs its log-derivative: pass "
            "log_abs_det_jacobian, a callable returning log |det dT(x)/dx| of "
            "shape (n_samples,) for the FunctionTransformer's input X."
        )
    if n_functions > 1:
        raise ValueError(
            "TransformedDensity takes one log_abs_det_jacobian, so at most one "
            f"FunctionTransformer with a func; got {n_functions}."
        )


def _check_fitted_transformer(transformer):
    """Raise a ValueError if the fitted transformer is not a bijection of R^D."""
    from sklearn.decomposition import PCA

    for step in _flat_steps(transformer):
        if isinstance(step, PCA) and step.n_components_ != step.n_features_in_:
            raise ValueError(
                f"PCA kept {step.n_components_} of {step.n_features_in_} "
                "components, so the transformed density would be degenerate "
                "(zero volume) in the original space. Keep all components: "
                "PCA(n_components=None) with n_samples >= n_features."
            )


def _transform_with_log_abs_det(transformer, X, log_abs_det_jacobian):
    """Apply a fitted transformer, and sum log |det J| over its steps.

    By the chain rule, the log |det J| of a composition is the sum of each
    step's, at the point where that step is applied.

    Parameters
    ----------
    transformer : fitted transformer or Pipeline

    X : ndarray of shape (n_samples, n_features)

    log_abs_det_jacobian : callable or None
        The log-derivative of the FunctionTransformer step, if any.

    Returns
    -------
    Xt : ndarray of shape (n_samples, n_features)

    log_abs_det : ndarray of shape (n_samples,)
        Float64.
    """
    log_abs_det = np.zeros(X.shape[0], dtype=np.float64)
    for step in _flat_steps(transformer):
        if _is_function_transformer(step):
            if not _is_identity(step):
                log_abs_det += np.asarray(log_abs_det_jacobian(X), dtype=np.float64)
        else:
            log_abs_det += _log_abs_det_step(step, X)
        X = step.transform(X)
    return X, log_abs_det


def _log_abs_det_step(step, X):
    """Dispatch to the log |det J| of the step's class, or of a base class."""
    table = _log_abs_det_jacobians()
    for cls in type(step).__mro__:
        if cls in table:
            return table[cls](step, X)
    # Unreachable after _check_supported, which fit runs first.
    raise ValueError(f"Supported transformers: {_SUPPORTED}.")


def _estimator_has(attr):
    """Whether the fitted, or else the unfitted, estimator has `attr`."""

    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self._estimator(), attr)

    return check


class TransformedDensity(DensityMixin, BaseEstimator):
    """A density estimator fitted after a transformer, scored in the original space.

    In a Pipeline, ``score_samples`` is the density of the transformed data
    T(X), which does not integrate to 1 in the space of X. This meta-estimator,
    in the style of :class:`~sklearn.compose.TransformedTargetRegressor`,
    applies the change of variables::

        log p_X(x) = log p_T(T(x)) + log |det J_T(x)|

    where J_T is the Jacobian of the transformer, so that its density
    integrates to 1 in the original space.

    Parameters
    ----------
    estimator : estimator with fit and score_samples, default=None
        The density estimator fitted to T(X). None means
        ``VariationalGaussianMixture()``. It is cloned.

    transformer : transformer, default=None
        The bijection T, fitted to X. None means the identity. It is cloned.
        Supported: StandardScaler, MinMaxScaler (clip=False), MaxAbsScaler,
        RobustScaler, PCA keeping all components (whitened or not),
        PowerTransformer ('yeo-johnson' or 'box-cox', with or without
        standardize), a FunctionTransformer with `log_abs_det_jacobian`, and a
        Pipeline of these (the log-Jacobians of its steps add up). Anything
        else raises a ValueError at fit.

    log_abs_det_jacobian : callable, default=None
        The log-derivative of a FunctionTransformer step, required when the
        transformer contains one (at most one) with a `func`. It is called as
        ``log_abs_det_jacobian(X)`` with the input X of that step, of shape
        (n_samples, n_features), and must return ``log |det dT(x)/dx|``, of shape
        (n_samples,). For example, ``FunctionTransformer(np.log, np.exp)``
        goes with ``lambda X: -np.log(X).sum(axis=1)``. The transformer must
        keep the number of features, and `inverse_func` is needed by `sample`.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone of `estimator`.

    transformer_ : transformer
        The fitted clone of `transformer`.

    n_features_in_ : int
        Number of features seen during `fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during `fit`, when X has string feature names.

    See Also
    --------
    sklearn.compose.TransformedTargetRegressor : The same wrapping, for the
        target of a regressor.

    Notes
    -----
    The density integrates to the mass that the estimator puts on the image
    T(R^D). For the affine transformers this is all of R^D. A power transform
    with some lambdas maps onto a half-space, and then the density integrates
    to less than 1; samples drawn outside the image become NaN when
    inverse-transformed.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbayesmix import TransformedDensity, VariationalGaussianMixture
    >>> X = np.random.RandomState(0).randn(200, 2) * [1.0, 100.0]
    >>> density = TransformedDensity(
    ...     VariationalGaussianMixture(n_components=2, random_state=0),
    ...     StandardScaler(),
    ... ).fit(X)
    >>> in_scaled_space = density.estimator_.score(density.transformer_.transform(X))
    >>> log_jacobian = -np.log(density.transformer_.scale_).sum()
    >>> bool(np.isclose(density.score(X), in_scaled_space + log_jacobian))
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "score_samples"]), None],
        "transformer": [HasMethods(["fit", "transform"]), None],
        "log_abs_det_jacobian": [callable, None],
    }

    def __init__(self, estimator=None, transformer=None, *, log_abs_det_jacobian=None):
        self.estimator = estimator
        self.transformer = transformer
        self.log_abs_det_jacobian = log_abs_det_jacobian

    def _estimator(self):
        return (
            VariationalGaussianMixture() if self.estimator is None else self.estimator
        )

    def _transformer(self):
        from sklearn.preprocessing import FunctionTransformer

        return FunctionTransformer() if self.transformer is None else self.transformer

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the transformer to X, then the estimator to the transformed X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # Two samples, as the mixture needs: with one, PCA would keep no volume.
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        _check_supported(self._transformer(), self.log_abs_det_jacobian)
        self.transformer_ = clone(self._transformer())
        Xt = self.transformer_.fit_transform(X)
        _check_fitted_transformer(self.transformer_)
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(
                f"The transformer maps {X.shape[1]} features to {Xt.shape[1]}; "
                "a change of variables needs a bijection, which keeps them."
            )
        self.estimator_ = clone(self._estimator()).fit(Xt)
        return self

    def _transform(self, X):
        """Validate X; return T(X) and log |det J_T(X)|."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return _transform_with_log_abs_det(
            self.transformer_, X, self.log_abs_det_jacobian
        )

    def score_samples(self, X):
        """Log density of each sample, in the original space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points in the space of the training data.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``estimator_.score_samples(T(X)) + log |det J_T(X)|``.
        """
        Xt, log_abs_det = self._transform(X)
        log_density = self.estimator_.score_samples(Xt)
        return (log_density + log_abs_det).astype(log_density.dtype, copy=False)

    @available_if(_estimator_has("score_samples_interval"))
    def score_samples_interval(self, X, level=0.9, n_draws=None, random_state=None):
        """Pointwise credible band of the log density, in the original space.

        The estimator's band at T(X), shifted by ``log |det J_T(X)|``. Only
        available when the estimator has `score_samples_interval`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points in the space of the training data.

        level : float, default=0.9
            Credible level of the band, in (0, 1).

        n_draws : int, default=None
            Number of posterior draws; None uses the estimator's default.

        random_state : int, RandomState instance or None, default=None
            Seeds the draws.

        Returns
        -------
        lower : ndarray of shape (n_samples,)
            Lower end of the band of log densities.

        upper : ndarray of shape (n_samples,)
            Upper end of the band of log densities.
        """
        Xt, log_abs_det = self._transform(X)
        options = {} if n_draws is None else {"n_draws": n_draws}
        lower, upper = self.estimator_.score_samples_interval(
            Xt, level=level, random_state=random_state, **options
        )
        return (
            (lower + log_abs_det).astype(lower.dtype, copy=False),
            (upper + log_abs_det).astype(upper.dtype, copy=False),
        )

    def score(self, X, y=None):
        """Mean log density of the samples in X, in the original space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points in the space of the training data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        log_likelihood : float
            Mean of `score_samples(X)`.
        """
        return float(np.mean(self.score_samples(X)))

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict the component of each sample, ``estimator_.predict(T(X))``.

        The Jacobian does not depend on the component, so labels and
        probabilities are the same in both spaces.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points in the space of the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        Xt, _ = self._transform(X)
        return self.estimator_.predict(Xt)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Posterior probability of each component, ``estimator_.predict_proba(T(X))``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points in the space of the training data.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Probability of each component given each sample.
        """
        Xt, _ = self._transform(X)
        return self.estimator_.predict_proba(Xt)

    @available_if(_estimator_has("sample"))
    def sample(self, n_samples=1):
        """Draw samples in the original space.

        The estimator's samples, mapped back by ``transformer_.inverse_transform``.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Randomly generated sample.

        y : ndarray of shape (n_samples,)
            Component labels.
        """
        check_is_fitted(self)
        Xt, y = self.estimator_.sample(n_samples)
        return self.transformer_.inverse_transform(Xt), y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        estimator_tags = get_tags(self._estimator())
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = estimator_tags.non_deterministic
        return tags
