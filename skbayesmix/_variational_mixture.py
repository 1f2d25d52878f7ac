"""The VariationalGaussianMixture estimator: parameters, fit entry points, predict."""

import contextlib
import sys
from numbers import Integral, Real

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from skbayesmix._attributes import (
    PosteriorAttributes,
    posterior_attributes,
    posterior_of_attributes,
)
from skbayesmix._batch import InMemoryDriver
from skbayesmix._fitting import Resume, fit_sequence
from skbayesmix._gaussian import (
    _estimate_log_prob_resp,
    _estimate_log_student_t_prob,
    _sample_student_t_mixture,
)
from skbayesmix._priors import PriorAttributes
from skbayesmix._standardisation import DataMoments, MissingMoments
from skbayesmix._state import COVARIANCE_STRUCTURES, Posterior, Statistics

# The private attributes that let partial_fit resume an online fit. All are
# NumPy or tuples of NumPy, so the model pickles without TensorFlow.
_ONLINE_STATE = ("n_batch_iter_", "_online_moments", "_online_statistics")

# Prediction works through X in chunks of this many (sample, component) pairs.
_PREDICT_CHUNK_ELEMENTS = 2**16


def _is_dask_array(X):
    """Whether X is a dask array, found without importing dask.

    If dask.array was never imported, X cannot be one of its arrays.
    """
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(X, dask_array.Array)


def _plain_moments(moments):
    """DataMoments as nested plain tuples of arrays, which skops can load."""
    missing = None if moments.missing is None else tuple(moments.missing)
    return tuple(moments[:-1]) + (missing,)


def _data_moments_of(stored):
    """The DataMoments stored by `_plain_moments` (or by older versions)."""
    missing = stored[5] if len(stored) > 5 else None
    return DataMoments(
        *stored[:5], None if missing is None else MissingMoments(*missing)
    )


@contextlib.contextmanager
def _unchanged_on_error(estimator):
    """Leave `estimator` exactly as it was if the block raises.

    A fit assigns new attributes and never mutates their arrays in place, so
    a shallow copy of the attributes is a full snapshot.
    """
    state = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(state)
        raise


class VariationalGaussianMixture(DensityMixin, BaseEstimator):
    """Variational Bayesian Gaussian mixture, fitted with TensorFlow Probability.

    A drop-in replacement for :class:`sklearn.mixture.BayesianGaussianMixture`:
    the same parameters, fitted attributes and errors. The variational posterior
    is fitted by closed-form coordinate ascent (CAVI) in compiled TensorFlow code;
    prediction uses only NumPy.

    Where it differs from scikit-learn, on purpose:

    - ``lower_bound_`` and ``lower_bounds_`` are the true evidence lower bound,
      with every constant, so they bound ``log p(X)`` and compare across
      ``n_components``. scikit-learn drops constants.
    - ``score_samples`` is the log posterior predictive density, a mixture of
      Student-t distributions whose exp integrates to 1. ``predict_proba`` and
      ``predict`` use the same predictive, so ``predict`` is the argmax of
      ``predict_proba``, and ``sample`` draws from that same density.
    - ``score_samples_interval`` gives a pointwise credible band of that
      density, from draws of the parameters under the variational posterior.
    - The 'diag' and 'spherical' precisions have Gamma posteriors, and 'tied' has
      one Wishart shared by all components, so every update is exact coordinate
      ascent and the ELBO does not decrease (up to round-off). scikit-learn
      approximates these.
    - float32 input is fitted and predicted in float32.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components. With the Dirichlet process prior this is
        an upper bound: surplus components get weights near zero.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        The structure of the precision matrices:

        - 'full': each component has its own Wishart-distributed precision;
        - 'tied': all components share one Wishart-distributed precision;
        - 'diag': each component has independent Gamma precisions per feature;
        - 'spherical': each component has one Gamma precision for all features.

    tol : float, default=1e-3
        Convergence threshold. Iterations stop when the lower bound changes by
        less than `tol`. With ``learning_method='online'`` the passes stop when
        the bound of a pass (see `lower_bound_`) changes by less than `tol`
        per unit of sample weight, that is by less than ``tol * n_samples``
        without weights: a per-pass estimate is noisy on the scale of the
        total, not of one sample.

    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of covariance, as in
        scikit-learn: every sample adds ``reg_covar * I`` to the scatter of the
        components it belongs to. It is also added once to the prior scale
        ``covariance_prior_`` so that every posterior scale stays positive
        definite, even for components that receive no data.

    max_iter : int, default=100
        The number of coordinate-ascent iterations to perform; with
        ``learning_method='online'``, the number of passes over X.

    n_init : int, default=1
        The number of initializations to perform. The result with the highest
        lower bound is kept.

    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        The method used to initialize the responsibilities:

        - 'kmeans': responsibilities are initialized using kmeans;
        - 'k-means++': use the k-means++ method to initialize;
        - 'random': responsibilities are initialized randomly;
        - 'random_from_data': initial means are randomly selected data points.

        Each method runs on the distinct rows of X in a canonical order, each
        weighted by the total weight of its copies, so the start depends neither
        on the order of the rows nor on how weight is split between copies:
        integer weights start as repeated rows and zero weights as dropped rows.
        A row's responsibilities are a function of its value, so the copies of
        a point that 'random_from_data' or 'k-means++' picks all count. Online
        fits on more than 32768 rows and Dask fits on more than 65536 rows of
        positive weight start from a sample of that many rows, drawn without
        replacement by weight; such starts are exact only in distribution.

    weight_concentration_prior_type : {'dirichlet_process', \
            'dirichlet_distribution'}, default='dirichlet_process'
        The prior on the weights: a (truncated) stick-breaking Dirichlet process
        or a Dirichlet distribution.

    weight_concentration_prior : float or None, default=None
        The Dirichlet concentration of each component on the weight distribution,
        gamma in the literature. If None, it is set to ``1. / n_components``.

    mean_precision_prior : float or None, default=None
        The precision prior on the mean distribution (beta). If None, it is set
        to 1.

    mean_prior : array-like of shape (n_features,), default=None
        The prior on the mean distribution. If None, it is set to the mean of X.

    degrees_of_freedom_prior : float or None, default=None
        The prior of the number of degrees of freedom on the precision
        distributions. Must be greater than ``n_features - 1``. If None, it is
        set to ``n_features``.

    covariance_prior : float or array-like, default=None
        The prior on the covariance distribution (inverse scale of the Wishart or
        Gamma). If None, it is the empirical covariance of X. Its shape depends on
        `covariance_type`::

            (n_features, n_features) if 'full',
            (n_features, n_features) if 'tied',
            (n_features)             if 'diag',
            float                    if 'spherical'

    random_state : int, RandomState instance or None, default=None
        Controls the initialization and `sample`. Pass an int for reproducible
        results. The fit itself is deterministic given the initialization.

    warm_start : bool, default=False
        If True, each `fit` starts from the previous solution and `n_init` is
        ignored after the first call. The fit continues from the float64
        posterior, whatever X's dtype. An online `fit` starts from the E-step of
        its initialisation sample under the previous posterior, tests its first
        pass against the previous lower bound, and its step counter
        `n_batch_iter_` starts again from 0.

    verbose : int, default=0
        Enable verbose output. 1 prints each initialization; 2 also prints the
        change of the lower bound and the time since the previous line every
        `verbose_interval` iterations, as the iterations run.

    verbose_interval : int, default=10
        Number of iterations between two verbose lines.

    learning_method : {'batch', 'online'}, default='batch'
        How `fit` uses the data, as in
        :class:`~sklearn.decomposition.LatentDirichletAllocation`:

        - 'batch': coordinate ascent over all of X in each iteration;
        - 'online': stochastic variational inference (SVI) over shuffled
          minibatches of `batch_size` rows. X is never copied or standardised
          as a whole, so it may be a :class:`numpy.memmap` larger than memory:
          its rows are then read, validated and released block by block.

        `partial_fit` always takes online steps.

    learning_decay : float, default=0.7
        kappa in the step size rho_t = (learning_offset + t)^-kappa of the t-th
        minibatch step (t = 1 for the first). In (0.5, 1] the steps satisfy
        the Robbins-Monro conditions.

    learning_offset : float, default=10.0
        tau in rho_t; a larger tau makes the first steps smaller. With 0 the
        first step takes rho = 1, that is, it replaces the initialisation.

    batch_size : int, default=16384
        Rows per minibatch of the online steps. Measured on this project's
        2-core machine (16 components, 16 features, 'diag', float32), a step
        costs a fixed 2.7 ms (two backend calls, E-step and update) plus
        0.28 us per row, so 16384 rows keep the fixed cost near a third of a
        step, while 1e6 rows still give 62 steps per pass (see
        ``benchmarks/bench_online.py --batch-sizes``). `partial_fit` and
        online `fit` split their X into ceil(n_samples / batch_size)
        minibatches of nearly equal size.

    total_samples : float, default=1e6
        The total (weight of) samples of the stream, used by `partial_fit` only:
        the statistics of a minibatch of weight B are scaled by
        total_samples / B to stand for the whole stream. Online `fit` uses the
        total weight of X instead.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The expected weight of each component under the posterior.

    means_ : ndarray of shape (n_components, n_features)
        The posterior mean of each component's mean.

    covariances_ : ndarray
        The inverse of the expected precision of each component. Its shape is
        (n_components, n_features, n_features) for 'full', (n_features,
        n_features) for 'tied', (n_components, n_features) for 'diag' and
        (n_components,) for 'spherical'.

    precisions_ : ndarray
        The expected precision of each component, shaped as `covariances_`.

    precisions_cholesky_ : ndarray
        The Cholesky factor of `precisions_`, as in scikit-learn.

    converged_ : bool
        True when the best initialization reached `tol` before `max_iter`.
        Always False after `partial_fit`, which runs no convergence test.

    n_iter_ : int
        Number of iterations of the best initialization. With
        ``learning_method='online'`` an iteration of `fit` is a pass over X;
        `partial_fit` counts its calls that took at least one step.

    lower_bound_ : float
        The evidence lower bound of the best fit, a lower bound on log p(X)
        (in nats, summed over samples). With ``learning_method='online'`` it is
        the bound of the last pass: the ELBO at the final q(theta) with each
        row's q(z) from the minibatch step that saw it, still a true lower bound
        on log p(X), computed from the pass's statistics at no extra cost. After
        `partial_fit` it is the same ELBO for the last minibatch scaled to
        `total_samples` rows: an estimate of the bound for the stream.

    lower_bounds_ : list of float
        The lower bound after each iteration of the best fit. In a batch fit
        each iteration is an exact coordinate-ascent step, so the sequence is
        non-decreasing up to floating-point round-off: once it has converged, for
        example when run on with ``tol=0``, successive values can also fall, by
        round-off of relative size about 1e-8 or less. Online bounds are noisy
        and need not increase; `partial_fit` appends one value per call.

    n_batch_iter_ : int
        Number of minibatch (SVI) steps taken since the online state was
        initialised, t in rho_t. Set by online `fit` and by `partial_fit`.

    weight_concentration_prior_ : float
        The Dirichlet concentration prior actually used.

    weight_concentration_ : ndarray of shape (n_components,) or tuple
        The posterior Dirichlet concentrations, or for the Dirichlet process a
        tuple of the two Beta parameters of each stick.

    mean_precision_prior_ : float
        The mean precision prior actually used.

    mean_precision_ : ndarray of shape (n_components,)
        The posterior precision of each mean, relative to its component's.

    mean_prior_ : ndarray of shape (n_features,)
        The prior on the mean distribution actually used.

    degrees_of_freedom_prior_ : float
        The prior degrees of freedom actually used.

    degrees_of_freedom_ : ndarray of shape (n_components,) or float
        The posterior degrees of freedom of each component (one for 'tied').

    covariance_prior_ : float or ndarray
        The covariance prior actually used, before `reg_covar` is added.

    n_features_in_ : int
        Number of features seen during `fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during `fit`, when X has string feature names.

    See Also
    --------
    sklearn.mixture.BayesianGaussianMixture : The scikit-learn estimator this
        class replaces.

    References
    ----------
    .. [1] Bishop, C. M. (2006). Pattern Recognition and Machine Learning,
       chapter 10: Approximate Inference. Springer. The variational mixture of
       Gaussians and its coordinate-ascent updates.

    .. [2] Blei, D. M. and Jordan, M. I. (2006). Variational inference for
       Dirichlet process mixtures. Bayesian Analysis, 1(1), 121-143. The
       truncated stick-breaking prior.

    .. [3] Hoffman, M. D., Blei, D. M., Wang, C. and Paisley, J. (2013).
       Stochastic variational inference. Journal of Machine Learning Research,
       14, 1303-1347. Coordinate ascent as a natural-gradient step, and the
       online (minibatch) fit built on it.

    Examples
    --------
    Three clusters, found with their sizes and centres:

    >>> import numpy as np
    >>> from skbayesmix import VariationalGaussianMixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.randn(200, 2) + c for c in [(2, 0), (-2, -4), (-2, 4)]])
    >>> vgm = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    >>> vgm.converged_
    True
    >>> order = np.argsort(vgm.means_[:, 1])
    >>> vgm.means_[order].round().astype(int)
    array([[-2, -4],
           [ 2,  0],
           [-2,  4]])
    >>> vgm.weights_[order].round(1)
    array([0.3, 0.3, 0.3])

    Each centre is assigned to its own component. `score_samples` is the log
    predictive density: about 1 / 3 of a unit Gaussian's peak, 1 / (2 pi), at a
    centre, and nil far away:

    >>> bool((vgm.predict(vgm.means_) == np.arange(3)).all())
    True
    >>> np.exp(vgm.score_samples([[2, 0], [20, 20]])).round(2)
    array([0.05, 0.  ])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [
            StrOptions({"kmeans", "random", "random_from_data", "k-means++"})
        ],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"spherical", "tied", "diag", "full"})],
        "weight_concentration_prior_type": [
            StrOptions({"dirichlet_process", "dirichlet_distribution"})
        ],
        "weight_concentration_prior": [
            None,
            Interval(Real, 0.0, None, closed="neither"),
        ],
        "mean_precision_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "covariance_prior": [
            None,
            "array-like",
            Interval(Real, 0.0, None, closed="neither"),
        ],
        "learning_method": [StrOptions({"batch", "online"})],
        "learning_decay": [Interval(Real, 0.0, 1.0, closed="both")],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "total_samples": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_method="batch",
        learning_decay=0.7,
        learning_offset=10.0,
        batch_size=16384,
        total_samples=1e6,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.batch_size = batch_size
        self.total_samples = total_samples

    # ----------------------------------------------------------------------------
    # Fitting: the sequence is skbayesmix._fitting, the drivers do the reading
    # ----------------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Missing entries (NaN) are integrated out, in fitting and prediction.
        tags.input_tags.allow_nan = True
        return tags

    def _fitted_structure_matches(self, n_features):
        """Whether a previous fit can warm-start a fit of this structure."""
        if not hasattr(self, "converged_"):
            return False
        n_components = self.n_components
        structure = COVARIANCE_STRUCTURES[self.covariance_type]
        is_dirichlet_process = (
            self.weight_concentration_prior_type == "dirichlet_process"
        )
        return (
            self.means_.shape == (n_components, n_features)
            and self.covariances_.shape
            == structure.covariances_shape(n_components, n_features)
            and (np.ndim(self.degrees_of_freedom_) == 0) == structure.shared
            and isinstance(self.weight_concentration_, tuple) == is_dirichlet_process
        )

    def _fitted_posterior(self):
        """The fitted q(theta) in data units, float64, and its lower bound."""
        if hasattr(self, "_posterior"):
            posterior = Posterior(*self._posterior)
        else:  # fitted by a version that did not keep it: from the attributes
            posterior = posterior_of_attributes(
                PosteriorAttributes(
                    *(getattr(self, name + "_") for name in PosteriorAttributes._fields)
                ),
                self.covariance_type,
                self.weight_concentration_prior_type,
            )
        return posterior, self.lower_bound_

    def _warm(self, n_features):
        """The posterior to continue from, when `warm_start` applies."""
        if self.warm_start and self._fitted_structure_matches(n_features):
            return self._fitted_posterior()
        return None

    def _online_settings(self):
        from skbayesmix._online import OnlineSettings

        return OnlineSettings(
            int(self.batch_size),
            float(self.learning_offset),
            float(self.learning_decay),
        )

    def _driver(self, X, sample_weight):
        """Validate X (setting `n_features_in_`) and choose its driver.

        Returns
        -------
        driver : Driver
        X : ndarray or dask array
            X as validated, for `fit_predict`.
        """
        online = self.learning_method == "online"
        if _is_dask_array(X):
            from skbayesmix._dask import DaskDriver

            if online:
                raise ValueError(
                    "learning_method='online' does not take dask arrays yet; fit "
                    "them with learning_method='batch' (exact CAVI over the "
                    "chunks), or feed their chunks to partial_fit."
                )
            driver = DaskDriver(X, sample_weight, type(self).__name__)
            # What validate_data sets, from a lazy array's shape.
            _check_n_features(self, X, reset=True)
            _check_feature_names(self, X, reset=True)
            return driver, X
        if online and isinstance(X, np.memmap):
            # Its first rows set the checks; the moments pass validates the rest
            # block by block, so that no copy of the whole of X is ever made.
            head = validate_data(
                self,
                X[:2],
                dtype=[np.float64, np.float32],
                ensure_min_samples=2,
                ensure_all_finite="allow-nan",
            )
            dtype, validate = head.dtype, True
        else:
            X = validate_data(
                self,
                X,
                dtype=[np.float64, np.float32],
                ensure_min_samples=2,
                ensure_all_finite="allow-nan",
            )
            dtype, validate = X.dtype, False
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        if online:
            from skbayesmix._online import OnlineDriver

            settings = self._online_settings()
            return OnlineDriver(X, sample_weight, dtype, settings, validate), X
        return InMemoryDriver(X, sample_weight), X

    def _store(self, result, dtype, online):
        """Set every fitted attribute from a FitResult, all or none."""
        posterior = result.model.standardisation.posterior_from(result.posterior)
        fitted = {
            name + "_": value
            for name, value in zip(PriorAttributes._fields, result.model.attributes)
        }
        attributes = posterior_attributes(
            posterior,
            self.covariance_type,
            self.weight_concentration_prior_type,
            dtype,
        )
        fitted.update(
            {name + "_": value for name, value in zip(attributes._fields, attributes)}
        )
        lower_bounds = [float(bound) for bound in result.lower_bounds]
        fitted.update(
            converged_=result.converged,
            n_iter_=len(lower_bounds),
            lower_bounds_=lower_bounds,
            lower_bound_=lower_bounds[-1] if lower_bounds else -np.inf,
            _posterior=tuple(posterior),
        )
        if online:
            fitted.update(
                n_batch_iter_=result.n_batch_iter,
                _online_moments=_plain_moments(result.moments),
                _online_statistics=tuple(result.statistics),
            )
        else:
            # A batch fit replaces any online state: partial_fit must not resume it.
            for name in _ONLINE_STATE:
                self.__dict__.pop(name, None)
        self.__dict__.update(fitted)

    def _fit(self, X, sample_weight):
        """Validate X, fit, and store the fitted attributes; return validated X."""
        driver, X = self._driver(X, sample_weight)
        driver.feature_names = getattr(self, "feature_names_in_", None)
        result = fit_sequence(
            self.get_params(deep=False), driver, warm=self._warm(driver.n_features)
        )
        self._store(result, driver.dtype, online=self.learning_method == "online")
        return X

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the variational posterior by coordinate ascent.

        The method fits the model `n_init` times and keeps the fit with the largest
        lower bound. Within each fit it iterates until the lower bound changes by
        less than `tol`, at most `max_iter` times; otherwise a
        :class:`~sklearn.exceptions.ConvergenceWarning` is raised. With
        `warm_start`, later calls continue from the previous solution. A fit
        that raises leaves the estimator as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a
            single data point. A dask array is fitted where its chunks live.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples. A weight acts as a repetition
            count: integer weights give the same fit as repeated rows, and zero
            weights the same fit as dropped rows, whatever the order of the
            rows. They weigh the data-dependent priors (`mean_prior_`,
            `covariance_prior_`) and the initialisation too. None gives every
            sample weight 1.

        Returns
        -------
        self : object
            The fitted mixture.
        """
        with _unchanged_on_error(self):
            self._fit(X, sample_weight)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model to X and predict the labels of X.

        Equivalent to ``fit(X, sample_weight=sample_weight).predict(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a
            single data point.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples; see `fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        with _unchanged_on_error(self):
            X = self._fit(X, sample_weight)
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "predict")
        return self._predict_validated(X)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Take online (SVI) steps on one chunk of a stream.

        X is split into ceil(n_samples / batch_size) minibatches of nearly equal
        size, taken in order, one step each; their statistics are scaled by
        total_samples / (their total weight). The first call initialises the
        online state: the standardisation and the data-dependent priors come from
        its X, and the responsibilities from `init_params` on it (with 'kmeans',
        the best of 5 k-means runs, as in online `fit`); it also fixes
        `n_features_in_`. On a model fitted by the batch `fit`, the first call
        starts from the fitted posterior instead (as `warm_start` would), with
        priors from its X. Later calls continue, so the chunks of a stream need
        never be in memory together, and the fitted attributes are valid after
        every call.

        Later calls use the parameters as they are then: a prior parameter
        changed with `set_params` applies from the next call on (the data-
        dependent defaults stay those of the first chunk), and a changed
        `n_components`, `covariance_type` or `weight_concentration_prior_type`
        starts a new online state from the chunk given. A call that raises
        leaves the model as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of the stream. The first chunk needs at least
            `n_components` samples of positive weight.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples, as in `fit`.

        Returns
        -------
        self : object
            The partially fitted mixture.
        """
        from skbayesmix._online import StreamDriver

        with _unchanged_on_error(self):
            X = validate_data(
                self,
                X,
                dtype=[np.float64, np.float32],
                ensure_min_samples=1,
                ensure_all_finite="allow-nan",
                reset=not hasattr(self, "converged_"),
            )
            if sample_weight is not None:
                sample_weight = _check_sample_weight(
                    sample_weight, X, dtype=np.float64, ensure_non_negative=True
                )
            driver = StreamDriver(
                X, sample_weight, self._online_settings(), self.total_samples
            )
            driver.feature_names = getattr(self, "feature_names_in_", None)
            resume = self._resume(X.shape[1])
            warm = None
            if resume is None and self._fitted_structure_matches(X.shape[1]):
                warm = self._fitted_posterior()
            result = fit_sequence(
                self.get_params(deep=False), driver, warm=warm, resume=resume
            )
            self._store(result, driver.dtype, online=True)
        return self

    def _resume(self, n_features):
        """The online state that partial_fit continues, or None to start anew."""
        # Models pickled before the online state kept its moments have none.
        if not (
            hasattr(self, "_online_moments")
            and self._fitted_structure_matches(n_features)
        ):
            return None
        statistics = Statistics(*self._online_statistics)
        structure = COVARIANCE_STRUCTURES[self.covariance_type]
        if statistics.second_moment.shape != structure.second_moment_shape(
            self.n_components, n_features
        ):
            return None
        return Resume(
            _data_moments_of(self._online_moments),
            statistics,
            self.n_batch_iter_,
            list(self.lower_bounds_),
        )

    # ----------------------------------------------------------------------------
    # Prediction: NumPy only
    # ----------------------------------------------------------------------------

    def _estimate_weighted_log_prob(self, X):
        """log E[pi_k] + log of component k's posterior predictive density.

        Returns
        -------
        weighted_log_prob : ndarray of shape (n_samples, n_components)
        """
        log_prob = _estimate_log_student_t_prob(
            X,
            self.means_,
            self.precisions_cholesky_,
            self.covariance_type,
            self.mean_precision_,
            self.degrees_of_freedom_,
        )
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_).astype(log_prob.dtype)
        return log_prob + log_weights

    def _weighted_log_prob_chunks(self, X):
        """Yield (rows, weighted log prob of those rows) over chunks of X.

        Chunks keep every temporary at a few MB, so `score_samples` on a
        1000 x 1000 grid costs little more memory than its output.
        """
        n_rows = max(1, _PREDICT_CHUNK_ELEMENTS // self.n_components)
        for rows in gen_batches(X.shape[0], n_rows):
            yield rows, self._estimate_weighted_log_prob(X[rows])

    def _predict_validated(self, X):
        labels = np.empty(X.shape[0], dtype=np.intp)
        for rows, weighted_log_prob in self._weighted_log_prob_chunks(X):
            labels[rows] = np.argmax(weighted_log_prob, axis=1)
        return labels

    def _validate_predict_data(self, X):
        check_is_fitted(self)
        # NaN marks a missing feature, scored by marginalising it out; inf
        # still raises scikit-learn's error.
        return validate_data(
            self,
            X,
            reset=False,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
        )

    def score_samples(self, X):
        """Log posterior predictive density of each sample.

        Unlike scikit-learn's plug-in Gaussian density, this is a normalised
        density: a mixture of Student-t distributions whose exp integrates to 1.

        NaN marks a missing feature: a row with NaN is scored under the
        marginal of the predictive over its observed features (exactly, with
        no imputation), and a row with every feature missing scores 0.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points; NaN marks a missing
            feature.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            Log density of each sample in `X` under the posterior predictive.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "score_samples")
        X = self._validate_predict_data(X)
        log_prob = np.empty(X.shape[0], dtype=np.result_type(X, self.means_))
        for rows, weighted_log_prob in self._weighted_log_prob_chunks(X):
            log_prob[rows] = logsumexp(weighted_log_prob, axis=1)
        return log_prob

    def score_samples_interval(self, X, level=0.9, n_draws=200, random_state=None):
        """Pointwise credible band of the log density of each sample.

        `score_samples` is log E_q[p(x | theta)], one density. This method shows
        how sure the model is of it: it draws S parameter sets theta_s (weights,
        means, precisions) from the variational posterior q(theta), evaluates
        log p(x | theta_s), a Gaussian mixture, at every row of `X`, and returns
        the pointwise (1 - level) / 2 and (1 + level) / 2 quantiles over the S
        draws. For the Dirichlet process the K sticks are truncated and each
        draw's weights renormalised, as `weights_` are.

        The band is only as honest as q: mean-field variational posteriors are
        too narrow, so its frequentist coverage falls below `level` (see the
        README for measured values). Rows are processed in chunks, so memory
        stays bounded on large grids.

        NaN marks a missing feature: each draw's Gaussian mixture is then
        marginalised over the row's missing features, as in `score_samples`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points; NaN marks a missing
            feature.

        level : float, default=0.9
            Credible level of the band, in (0, 1).

        n_draws : int, default=200
            Number of draws from q(theta). The Monte-Carlo error of the band's
            ends is about 5% of its width at 200 draws.

        random_state : int, RandomState instance or None, default=None
            Seeds the draws; pass an int for reproducible bands. The same
            draws serve every row, so bands of two levels with the same int
            are nested.

        Returns
        -------
        lower : ndarray of shape (n_samples,)
            Lower end of the band of log densities.

        upper : ndarray of shape (n_samples,)
            Upper end of the band of log densities.
        """
        from skbayesmix._density_band import (
            check_band_parameters,
            fitted_posterior,
            log_density_quantiles,
        )

        X = self._validate_predict_data(X)
        check_band_parameters(level, n_draws)
        return log_density_quantiles(
            X, fitted_posterior(self), level, n_draws, random_state
        )

    def score(self, X, y=None, sample_weight=None):
        """Mean log posterior predictive density of the samples in X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points; NaN marks a missing
            feature, marginalised out as in `score_samples`.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the mean, so that a weighted
            cross-validation scores with the weights it fits with.

        Returns
        -------
        log_likelihood : float
            The (weighted) mean of `score_samples(X)`.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.score(self, X, sample_weight)
        log_prob = self.score_samples(X)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, log_prob[:, None], dtype=np.float64
            )
        return float(np.average(log_prob, weights=sample_weight))

    def predict(self, X):
        """Predict the most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points; NaN marks a missing
            feature, marginalised out as in `predict_proba`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "predict")
        return self._predict_validated(self._validate_predict_data(X))

    def predict_proba(self, X):
        """Posterior probability of each component given each sample.

        A row with NaN (missing features) gets the responsibilities of the
        components' marginal densities over its observed features; a row with
        every feature missing gets `weights_`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points; NaN marks a missing
            feature.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            p(z = k | x, data) under the posterior predictive; rows sum to 1.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "predict_proba")
        X = self._validate_predict_data(X)
        resp = np.empty(
            (X.shape[0], self.n_components), dtype=np.result_type(X, self.means_)
        )
        for rows, weighted_log_prob in self._weighted_log_prob_chunks(X):
            resp[rows] = np.exp(_estimate_log_prob_resp(weighted_log_prob)[1])
        return resp

    def sample(self, n_samples=1):
        """Draw samples from the posterior predictive density.

        These come from the same density that `score_samples` evaluates: a
        mixture of Student-t distributions.

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
        if n_samples < 1:
            raise ValueError(
                "Invalid value for 'n_samples': %d . The sampling requires at "
                "least one sample." % (n_samples)
            )
        rng = check_random_state(self.random_state)
        return _sample_student_t_mixture(
            rng,
            n_samples,
            self.weights_,
            self.means_,
            self.covariances_,
            self.covariance_type,
            self.mean_precision_,
            self.degrees_of_freedom_,
        )
