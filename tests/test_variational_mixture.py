"""Behaviour of VariationalGaussianMixture, side by side with scikit-learn's."""

import pickle
import re
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import BayesianGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbayesmix import VariationalGaussianMixture

TUTORIAL_CENTRES = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])


def _tutorial_data(rng, n_per_blob=1024):
    """The ProbFlow tutorial's data: three unit-variance blobs in 2-D."""
    return np.vstack([rng.randn(n_per_blob, 2) + c for c in TUTORIAL_CENTRES])


def _sorted_by_first_mean(model):
    return np.lexsort(model.means_.T[::-1])


def _fit_both(X, **params):
    ours = VariationalGaussianMixture(**params).fit(X)
    theirs = BayesianGaussianMixture(**params).fit(X)
    return ours, theirs


@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_parameters_close_to_sklearn(covariance_type, weight_type):
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng)
    ours, theirs = _fit_both(
        X,
        n_components=3,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        random_state=0,
    )
    o, t = _sorted_by_first_mean(ours), _sorted_by_first_mean(theirs)
    np.testing.assert_allclose(ours.weights_[o], theirs.weights_[t], atol=1e-3)
    np.testing.assert_allclose(ours.means_[o], theirs.means_[t], atol=1e-3)
    # Our bound includes every constant, so the last iteration can differ by one.
    np.testing.assert_allclose(
        ours.mean_precision_[o], theirs.mean_precision_[t], rtol=1e-4
    )
    if covariance_type == "tied":
        # sklearn's tied Wishart counts the data once per component; ours once.
        np.testing.assert_allclose(ours.covariances_, theirs.covariances_, atol=0.01)
    else:
        np.testing.assert_allclose(
            ours.covariances_[o], theirs.covariances_[t], rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(
            ours.degrees_of_freedom_[o], theirs.degrees_of_freedom_[t], rtol=1e-4
        )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_held_out_density_at_least_sklearns(covariance_type):
    rng = np.random.RandomState(0)
    X, X_test = _tutorial_data(rng), _tutorial_data(rng)
    for seed in range(5):
        ours, theirs = _fit_both(
            X, n_components=3, covariance_type=covariance_type, random_state=seed
        )
        assert ours.score(X_test) >= theirs.score(X_test) - 1e-6


def test_fit_tutorial_never_nan_across_seeds():
    for seed in range(20):
        rng = np.random.RandomState(seed)
        X = _tutorial_data(rng)
        model = VariationalGaussianMixture(
            n_components=3, covariance_type="diag", random_state=seed
        ).fit(X)
        for name in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
            assert np.all(np.isfinite(getattr(model, name))), (seed, name)
        assert np.isfinite(model.lower_bound_)


@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_lower_bounds_never_decrease(covariance_type, weight_type):
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=200)
    model = VariationalGaussianMixture(
        n_components=10,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        init_params="random",
        tol=1e-6,
        max_iter=500,
        random_state=0,
    ).fit(X)
    lower_bounds = np.array(model.lower_bounds_)
    assert len(lower_bounds) == model.n_iter_
    assert model.lower_bound_ == lower_bounds[-1]
    assert np.all(np.diff(lower_bounds) >= -1e-9 * np.abs(lower_bounds[1:]))


def test_lower_bound_is_comparable_across_n_components():
    # A true ELBO is a bound on log p(X), so on three blobs K=3 beats K=1 and the
    # bound stays below the log likelihood of the true density.
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=300)
    bounds = {
        k: VariationalGaussianMixture(
            n_components=k,
            weight_concentration_prior_type="dirichlet_distribution",
            random_state=0,
        )
        .fit(X)
        .lower_bound_
        for k in (1, 3)
    }
    assert bounds[3] > bounds[1]
    true_log_density = np.log(
        np.mean(
            [
                np.exp(-0.5 * np.sum((X - c) ** 2, 1)) / (2 * np.pi)
                for c in TUTORIAL_CENTRES
            ],
            axis=0,
        )
    ).sum()
    assert bounds[3] < true_log_density


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_integrates_to_one(covariance_type):
    # sklearn's plug-in density integrates to about 0.85 here (sklearn #10148).
    rng = np.random.RandomState(0)
    X = rng.randn(40, 2)
    model = VariationalGaussianMixture(
        n_components=3, covariance_type=covariance_type, random_state=0
    ).fit(X)
    grid = np.linspace(-30, 30, 1201)
    xx, yy = np.meshgrid(grid, grid)
    density = np.exp(model.score_samples(np.c_[xx.ravel(), yy.ravel()]))
    total = density.sum() * (grid[1] - grid[0]) ** 2
    assert total == pytest.approx(1.0, abs=0.01)


def test_predict_is_argmax_of_predict_proba_and_fit_predict_matches():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    model = VariationalGaussianMixture(n_components=3, random_state=0)
    labels = model.fit_predict(X)
    np.testing.assert_array_equal(labels, model.predict(X))
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    assert model.score(X) == pytest.approx(model.score_samples(X).mean())


def test_fitted_attributes_match_sklearn_names_and_shapes():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    for covariance_type in COVARIANCE_TYPES:
        for weight_type in WEIGHT_PRIOR_TYPES:
            params = dict(
                n_components=3,
                covariance_type=covariance_type,
                weight_concentration_prior_type=weight_type,
                random_state=0,
            )
            ours, theirs = _fit_both(X, **params)
            theirs_attrs = {a for a in vars(theirs) if a.endswith("_")}
            assert theirs_attrs <= set(vars(ours))
            # sklearn's tied bound is an array of shape (1,), a quirk not copied.
            for name in theirs_attrs - {"lower_bound_", "lower_bounds_"}:
                mine, ref = getattr(ours, name), getattr(theirs, name)
                if isinstance(ref, tuple):
                    assert [np.shape(v) for v in mine] == [np.shape(v) for v in ref]
                else:
                    assert np.shape(mine) == np.shape(ref), name


def test_default_parameters_match_sklearn():
    ours = VariationalGaussianMixture().get_params()
    theirs = BayesianGaussianMixture().get_params()
    # The online parameters are ours alone; their defaults keep the batch fit.
    online = {
        "learning_method",
        "learning_decay",
        "learning_offset",
        "batch_size",
        "total_samples",
    }
    assert set(ours) - set(theirs) == online
    assert {name: ours[name] for name in theirs} == theirs
    assert ours["learning_method"] == "batch"


@pytest.mark.parametrize(
    "params, X, message",
    [
        ({"n_components": 5}, np.ones((3, 2)), "Expected n_samples >= n_components"),
        (
            {"degrees_of_freedom_prior": 0.5},
            np.random.RandomState(0).randn(10, 3),
            "The parameter 'degrees_of_freedom_prior' should be greater than 2",
        ),
        ({"mean_prior": [0.0]}, np.ones((10, 2)), "The parameter 'means' should have"),
        (
            {"covariance_prior": np.ones((3, 3))},
            np.random.RandomState(0).randn(10, 3),
            "'full precision' should be symmetric, positive-definite",
        ),
        ({"n_components": 0}, np.ones((10, 2)), "The 'n_components' parameter"),
        ({"covariance_type": "banana"}, np.ones((10, 2)), "The 'covariance_type'"),
    ],
)
def test_fit_errors_match_sklearn(params, X, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BayesianGaussianMixture(**params).fit(X)
    with pytest.raises(ValueError, match=re.escape(message)):
        VariationalGaussianMixture(**params).fit(X)


def test_predict_before_fit_raises_not_fitted():
    model = VariationalGaussianMixture()
    for method in ["predict", "predict_proba", "score_samples", "score"]:
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            getattr(model, method)(np.ones((2, 2)))
    with pytest.raises(NotFittedError):
        model.sample()


def test_sample_shapes_and_zero_samples_error():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    model = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    X_new, y_new = model.sample(500)
    assert X_new.shape == (500, 2) and y_new.shape == (500,)
    assert set(np.unique(y_new)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        model.sample(0)


def test_fit_same_random_state_same_result():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    first = VariationalGaussianMixture(n_components=4, random_state=3).fit(X)
    second = VariationalGaussianMixture(n_components=4, random_state=3).fit(X)
    np.testing.assert_array_equal(first.means_, second.means_)
    np.testing.assert_array_equal(first.covariances_, second.covariances_)
    assert first.lower_bounds_ == second.lower_bounds_


def test_fit_float32_stays_float32():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    ours32 = VariationalGaussianMixture(n_components=3, random_state=0).fit(
        X.astype(np.float32)
    )
    ours64 = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
        assert getattr(ours32, name).dtype == np.float32, name
    assert ours32.score_samples(X.astype(np.float32)).dtype == np.float32
    assert abs(ours32.score(X) - ours64.score(X)) < 1e-3


def test_warm_start_continues_from_previous_fit():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=200)
    model = VariationalGaussianMixture(
        n_components=6, max_iter=5, warm_start=True, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    first_bound = model.lower_bound_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    # Coordinate ascent from the previous solution can only go up.
    assert model.lower_bounds_[0] >= first_bound - 1e-6 * abs(first_bound)
    assert model.lower_bound_ > first_bound


def test_max_iter_zero_only_initialises():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = VariationalGaussianMixture(n_components=3, max_iter=0).fit(X)
    assert model.n_iter_ == 0 and model.lower_bound_ == -np.inf
    assert not model.converged_
    assert np.all(np.isfinite(model.means_))


def test_not_converged_warns_like_sklearn():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        VariationalGaussianMixture(n_components=5, max_iter=1, tol=0.0).fit(X)


def test_verbose_prints_sklearn_lines(capsys):
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    VariationalGaussianMixture(
        n_components=3, verbose=2, verbose_interval=1, random_state=0
    ).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out
    assert "Iteration 1\t time lapse" in out
    assert "Initialization converged." in out


def test_n_init_keeps_best_lower_bound():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    single = [
        VariationalGaussianMixture(
            n_components=5, init_params="random", random_state=rs
        )
        .fit(X)
        .lower_bound_
        for rs in range(3)
    ]
    multi = VariationalGaussianMixture(
        n_components=5, init_params="random", n_init=3, random_state=0
    ).fit(X)
    assert multi.lower_bound_ >= min(single)


@pytest.mark.parametrize(
    "init_params", ["kmeans", "k-means++", "random", "random_from_data"]
)
def test_init_params_all_fit(init_params):
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    model = VariationalGaussianMixture(
        n_components=3, init_params=init_params, random_state=0, max_iter=300
    ).fit(X)
    assert model.converged_
    assert np.all(np.isfinite(model.means_))


def test_dirichlet_process_switches_off_surplus_components():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=300)
    model = VariationalGaussianMixture(
        n_components=10,
        weight_concentration_prior=1e-3,
        max_iter=500,
        random_state=0,
    ).fit(X)
    assert np.sum(model.weights_ > 0.05) == 3


def test_pipeline_and_grid_search_over_n_components():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=100)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), VariationalGaussianMixture(random_state=0)),
        {"variationalgaussianmixture__n_components": [1, 2, 3, 4, 5, 6]},
        cv=3,
        n_jobs=2,
        error_score="raise",
    ).fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["variationalgaussianmixture__n_components"] >= 3


def test_pickle_round_trip_predicts_the_same():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    model = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    for value in vars(model).values():
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            assert type(v).__module__.split(".")[0] in {"numpy", "builtins"}, v


# ------------------------------------------------------------------------------
# sample_weight: weights act as repetitions
# ------------------------------------------------------------------------------


def _weighted_data(scheme):
    """Well-separated blobs, weights, and the same data with rows repeated.

    'repeat' draws integer weights 0..3, 'drop' weights 0 or 1.
    """
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=40)
    high = 4 if scheme == "repeat" else 2
    weights = rng.randint(0, high, size=X.shape[0])
    return X, weights, np.repeat(X, weights, axis=0)


@pytest.mark.parametrize("scheme", ["repeat", "drop"])
@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_sample_weight_equals_repeated_or_dropped_rows(
    covariance_type, weight_type, scheme
):
    X, weights, X_repeated = _weighted_data(scheme)
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        tol=1e-9,
        max_iter=500,
        random_state=0,
    )
    weighted = VariationalGaussianMixture(**params).fit(X, sample_weight=weights)
    repeated = VariationalGaussianMixture(**params).fit(X_repeated)
    assert weighted.converged_ and repeated.converged_
    np.testing.assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(weighted.mean_prior_, repeated.mean_prior_, rtol=1e-10)
    np.testing.assert_allclose(
        weighted.covariance_prior_, repeated.covariance_prior_, rtol=1e-10
    )
    a, b = _sorted_by_first_mean(weighted), _sorted_by_first_mean(repeated)
    np.testing.assert_allclose(weighted.means_[a], repeated.means_[b], rtol=1e-5)
    np.testing.assert_allclose(weighted.weights_[a], repeated.weights_[b], rtol=1e-5)
    np.testing.assert_allclose(
        weighted.score_samples(X), repeated.score_samples(X), rtol=1e-6
    )


def test_fit_unit_sample_weight_equals_no_weight():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=30)
    model = VariationalGaussianMixture(n_components=3, random_state=0)
    unweighted = model.fit(X).lower_bounds_
    weighted = model.fit(X, sample_weight=np.ones(len(X))).lower_bounds_
    np.testing.assert_allclose(weighted, unweighted, rtol=1e-12)


def test_fit_negative_sample_weight_raises_like_sklearn():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=10)
    weights = np.ones(len(X))
    weights[3] = -1.0
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        VariationalGaussianMixture(n_components=2).fit(X, sample_weight=weights)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(29,\)"):
        VariationalGaussianMixture(n_components=2).fit(X, sample_weight=weights[1:])


def test_fit_predict_accepts_sample_weight():
    X, weights, _ = _weighted_data("repeat")
    model = VariationalGaussianMixture(n_components=3, random_state=0)
    labels = model.fit_predict(X, sample_weight=weights)
    np.testing.assert_array_equal(labels, model.predict(X))


def test_sample_weight_routes_through_pipeline_and_grid_search():
    from sklearn import config_context

    X, weights, _ = _weighted_data("repeat")
    with config_context(enable_metadata_routing=True):
        mixture = VariationalGaussianMixture(n_components=3, random_state=0)
        pipeline = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            mixture.set_fit_request(sample_weight=True).set_score_request(
                sample_weight=True
            ),
        ).fit(X, sample_weight=weights)
        direct = VariationalGaussianMixture(n_components=3, random_state=0).fit(
            StandardScaler().fit_transform(X), sample_weight=weights
        )
        assert pipeline[-1].lower_bound_ == pytest.approx(direct.lower_bound_)
        search = GridSearchCV(
            pipeline, {"variationalgaussianmixture__n_components": [2, 3]}, cv=2
        ).fit(X, sample_weight=weights)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    refit = search.best_estimator_[-1]
    n_components = refit.n_components
    expected = VariationalGaussianMixture(n_components=n_components, random_state=0)
    expected.fit(StandardScaler().fit_transform(X), sample_weight=weights)
    assert refit.lower_bound_ == pytest.approx(expected.lower_bound_)


# ------------------------------------------------------------------------------
# verbose
# ------------------------------------------------------------------------------


def test_verbose_lines_print_while_the_fit_runs(monkeypatch):
    # Each verbose_interval iterations run as one compiled segment; a line must
    # reach stdout between segments, not after the whole loop.
    import sys

    from skbayesmix import _tfp_backend

    events = []
    run_segment = _tfp_backend.fit_variational_posterior

    def recording_segment(*args, **kwargs):
        events.append("segment")
        return run_segment(*args, **kwargs)

    class Stream:
        def write(self, text):
            if "Iteration" in text:
                events.append(text.split("\t")[0].strip())

        def flush(self):
            pass

    monkeypatch.setattr(_tfp_backend, "fit_variational_posterior", recording_segment)
    monkeypatch.setattr(sys, "stdout", Stream())
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    model = VariationalGaussianMixture(
        n_components=3,
        verbose=2,
        verbose_interval=2,
        max_iter=6,
        tol=0.0,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    assert events == [
        "segment",
        "Iteration 2",
        "segment",
        "Iteration 4",
        "segment",
        "Iteration 6",
    ]
    assert model.n_iter_ == 6 and len(model.lower_bounds_) == 6


def test_verbose_segments_give_the_same_fit():
    rng = np.random.RandomState(0)
    X = _tutorial_data(rng, n_per_blob=50)
    params = dict(n_components=4, tol=1e-6, random_state=0, verbose_interval=3)
    quiet = VariationalGaussianMixture(**params).fit(X)
    loud = VariationalGaussianMixture(verbose=2, **params).fit(X)
    assert loud.n_iter_ == quiet.n_iter_
    np.testing.assert_allclose(loud.lower_bounds_, quiet.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(loud.means_, quiet.means_, rtol=1e-10)


def test_score_sample_weight_is_the_weighted_mean():
    X, weights, X_repeated = _weighted_data("repeat")
    model = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    assert model.score(X, sample_weight=weights) == pytest.approx(
        model.score(X_repeated), rel=1e-12
    )
