"""Search spaces: parsing, validation errors, suggestions, and every shipped space against its config."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from fid_bench.errors import FidBenchError
from fid_bench.jobs.search.space import apply_params, parse_param, parse_space

CLASSICAL_SPACES = ["logreg", "knn", "rf", "gboost", "lightgbm"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "uniform", "low": 0, "high": 1}, "type must be one of"),
        ({"type": "float", "low": 0.1}, "needs ['high']"),
        ({"type": "float", "low": 0.1, "high": 1.0, "scale": "log"}, "unknown field(s) ['scale']"),
        ({"type": "float", "low": 1.0, "high": 0.1}, "must not exceed high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"type": "float", "low": 0.1, "high": 1.0, "log": "yes"}, "log must be true or false"),
        ({"type": "float", "low": "a", "high": 1.0}, "low must be a number"),
        ({"type": "int", "low": 1.5, "high": 4}, "must be an integer"),
        ({"type": "int", "low": 1, "high": 8, "step": 2, "log": True}, "step and log cannot be combined"),
        ({"type": "int", "low": 1, "high": 8, "step": 0}, "step must be positive"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "categorical", "choices": [[1, 2], [3]]}, "choices must be numbers"),
        ("0.1..0.3", "expected a mapping"),
    ],
)
def test_bad_spec_is_one_line_error_naming_the_key(spec, fragment):
    with pytest.raises(FidBenchError) as err:
        parse_param("classifier.estimator.C", spec)
    msg = str(err.value)
    assert msg.startswith("hparams_search.params.classifier.estimator.C:")
    assert fragment in msg and "\n" not in msg


def test_int_and_float_specs_are_normalised():
    p = parse_param("k", {"type": "int", "low": 2.0, "high": 9, "step": 1})
    assert (p.low, p.high, p.step) == (2, 9, 1) and isinstance(p.low, int)
    q = parse_param("x", {"type": "float", "low": 1, "high": 3, "log": True})
    assert (q.low, q.high, q.log) == (1.0, 3.0, True) and isinstance(q.low, float)


def test_unknown_or_section_keys_are_rejected(compose_cfg):
    cfg = compose_cfg(
        "hparams_search=logreg", "+hparams_search.params.classifier.estimator.Cc={type:float,low:1,high:2}"
    )
    with pytest.raises(FidBenchError, match=r"classifier\.estimator\.Cc: no such key"):
        parse_space(cfg)
    cfg = compose_cfg(
        "hparams_search=logreg", "+hparams_search.params.classifier.estimator.tol={type:float,low:1,high:2}"
    )
    with pytest.raises(FidBenchError, match=r"estimator\.tol: no such key"):
        parse_space(cfg)
    cfg = compose_cfg(
        "hparams_search=logreg", "+hparams_search.params.classifier.estimator={type:float,low:1,high:2}"
    )
    with pytest.raises(FidBenchError, match="config section"):
        parse_space(cfg)


def test_nested_command_line_additions_join_the_dotted_yaml_keys(compose_cfg):
    cfg = compose_cfg(
        "hparams_search=logreg",
        "+hparams_search.params.classifier.estimator.max_iter={type:int,low:100,high:500}",
    )
    keys = [p.key for p in parse_space(cfg)]
    assert keys == ["classifier.estimator.C", "classifier.normalise", "classifier.estimator.max_iter"]


def test_empty_space_is_an_error(compose_cfg):
    cfg = compose_cfg("hparams_search=logreg", "~hparams_search.params")
    with pytest.raises(FidBenchError, match="params is empty"):
        parse_space(cfg)


def test_suggestions_respect_bounds_and_apply_to_a_copy(compose_cfg):
    import optuna

    cfg = compose_cfg("hparams_search=lightgbm")
    space = parse_space(cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    by_key = {p.key: p for p in space}
    for _ in range(30):
        trial = study.ask()
        values = {p.key: p.suggest(trial) for p in space}
        study.tell(trial, 0.0)
        for key, value in values.items():
            p = by_key[key]
            assert p.low <= value <= p.high
            assert isinstance(value, int) == (p.type == "int")
    new = apply_params(cfg, values)
    for key, value in values.items():
        assert OmegaConf.select(new, key) == value
    # the base config is untouched and interpolations still resolve in the copy
    assert cfg.classifier.estimator.num_leaves == 31
    assert new.classifier.estimator.random_state == cfg.seed


@pytest.mark.parametrize("name", CLASSICAL_SPACES)
def test_each_classical_space_builds_and_fits_at_its_bounds(compose_cfg, name):
    """Both ends of every range are valid estimator settings (catches misspelt estimator arguments)."""
    from hydra.utils import instantiate
    from threadpoolctl import threadpool_limits

    cfg = compose_cfg(f"hparams_search={name}")
    assert cfg.classifier.name == cfg.hparams_search.classifier == name
    space = parse_space(cfg)
    assert len(space) >= 2
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    for end in ("low", "high"):
        values = {
            p.key: (getattr(p, end) if p.type != "categorical" else p.choices[0 if end == "low" else -1])
            for p in space
        }
        detector = instantiate(apply_params(cfg, values).classifier)
        est = detector.estimator
        for key, value in values.items():
            if key.startswith("classifier.estimator."):
                assert est.get_params()[key.rsplit(".", 1)[1]] == value
        with threadpool_limits(1):  # OpenMP threads fighting over busy cores cost more than they give
            proba = est.fit(X, y).predict_proba(X)[:, 1]
        assert proba.shape == (120,) and np.all((proba >= 0) & (proba <= 1))
