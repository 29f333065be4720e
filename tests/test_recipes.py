"""``classifier=recipes``: members built from the shared settings plus their overrides, their log-odds
averaged, the predictor doing the same; ``experiment=generalise`` composing into it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from fid_bench.errors import FidBenchError
from fid_bench.features_track.detector import FeatureDetector
from fid_bench.features_track.recipes import RecipeEnsemble, RecipePredictor, logit, mean_logit
from tests.test_feature_detector import (
    FakeExtract,
    fake_encoder_cfg,
    make_job,
    synthetic,
    use_fake_encoder,
    write_png,
)
from tests.test_multi_source import FAST, make_source, sources_override


@pytest.fixture
def fake_extract(monkeypatch: pytest.MonkeyPatch) -> FakeExtract:
    fake = FakeExtract()
    monkeypatch.setattr("fid_bench.features.extract.extract_features", fake)
    return fake


MEMBERS = "classifier.members=[{name: plain}, {name: strong, estimator: {C: 0.01}, normalise: none}]"


def test_mean_logit_is_the_sigmoid_of_the_mean_log_odds() -> None:
    a, b = np.array([0.9, 0.2, 0.5]), np.array([0.6, 0.2, 0.99])
    got = mean_logit([a, b])
    np.testing.assert_allclose(logit(got), (logit(a) + logit(b)) / 2, rtol=1e-9)
    # two members agreeing give their own score back
    np.testing.assert_allclose(mean_logit([a, a]), a)


def test_members_take_their_overrides_and_the_ensemble_averages_their_log_odds(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    cfg = use_fake_encoder(compose_cfg("classifier=recipes", MEMBERS))
    samples, fold = synthetic(fake_extract)
    det = instantiate(cfg.classifier)
    assert isinstance(det, RecipeEnsemble) and det.member_names == ["plain", "strong"]
    plain, strong = det.members
    assert plain.estimator.C == 1.0 and plain.normalise == "standard"
    assert strong.estimator.C == 0.01 and strong.normalise == "none"
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    scores = det.fit_predict(job, fold)
    # each member alone, fitted the same way, gives the scores the ensemble averaged
    alone = []
    for member in det.members:
        again = FeatureDetector(
            estimator=member.estimator, normalise=member.normalise, encoder=fake_encoder_cfg(), threads=1
        )
        again.setup(job)
        alone.append(again.fit_predict(job, fold)["score"].to_numpy())
    np.testing.assert_allclose(scores["score"].to_numpy(), mean_logit(alone), rtol=1e-6)
    assert not np.allclose(alone[0], alone[1])  # the overrides made two different members
    assert scores["id"].tolist() == [
        *samples.table["id"].iloc[fold.val],
        *samples.table["id"].iloc[fold.test],
    ]
    stats = det.extra_metrics()
    assert "recipes/plain/feature_dim" in stats and "recipes/strong/feature_dim" in stats


def test_predictor_combines_the_members_and_pickles(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    import hashlib

    cfg = use_fake_encoder(compose_cfg("classifier=recipes", MEMBERS))
    samples, fold = synthetic(fake_extract)
    det = instantiate(cfg.classifier)
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    det.fit_predict(job, fold)
    pred = pickle.loads(pickle.dumps(det.predictor()))
    assert isinstance(pred, RecipePredictor) and len(pred.members) == 2
    paths = []
    for name, value, vec in (("a.png", 10, np.full(8, 2.0)), ("b.png", 200, np.full(8, -2.0))):
        write_png(tmp_path / name, value)
        fake_extract.vectors[hashlib.sha1((tmp_path / name).read_bytes()).hexdigest()] = vec
        paths.append(str(tmp_path / name))
    got = pred.predict_paths(paths)
    want = mean_logit([m.predict_paths(paths) for m in pred.members])
    np.testing.assert_allclose(got, want)
    assert got[0] > 0.5 > got[1]
    np.testing.assert_array_equal(pred.predict_labels(paths), (got >= pred.threshold).astype(int))


def test_member_augmentation_is_seeded_like_the_run_s(compose_cfg) -> None:
    cfg = use_fake_encoder(
        compose_cfg(
            "classifier=recipes",
            "seed=7",
            "classifier.members=[{name: a}, {name: b, augment: {ops: [{jpeg: [65, 95]}]}}]",
        )
    )
    det = instantiate(cfg.classifier)
    assert det.members[0].augment is None
    assert det.members[1].augment is not None and det.members[1].augment.seed == 7


@pytest.mark.parametrize(
    "members,match",
    [
        ("[{name: only}]", "at least two recipes"),
        ("[{name: a}, {name: b, selct: [x]}]", r"unknown key\(s\) selct"),
        ("[{name: a}, {name: a}]", "member names must be unique"),
        ("[{name: a}, 3]", r"members\[1\] must be a mapping"),
    ],
)
def test_bad_members_are_one_line_errors(members: str, match: str) -> None:
    import yaml

    estimator = {"_target_": "sklearn.linear_model.LogisticRegression"}
    with pytest.raises(FidBenchError, match=match) as err:
        RecipeEnsemble(members=yaml.safe_load(members), estimator=estimator, encoder=fake_encoder_cfg())
    assert "\n" not in str(err.value)


def test_the_generalise_preset_is_a_recipe_ensemble_and_passes_the_root_check(
    compose_cfg, tmp_path: Path
) -> None:
    from fid_bench.config import UsageError, require_data_root

    src = sources_override([("a", tmp_path / "a"), ("b", tmp_path / "b")])
    cfg = compose_cfg("experiment=generalise", src, tiny=False)
    assert cfg.classifier._target_.endswith("RecipeEnsemble")
    names = [m.name for m in cfg.classifier.members]
    assert names == [
        "final", "block6_lowres", "blocks_aug", "blocks_lowres", "native_blocks_lowres", "native_mid_cls_lowres",
    ]  # fmt: skip
    assert cfg.classifier.members[0].encoder.layers is None and cfg.model.layers == "all"
    # the native-resolution members reach their detectors' encoders; the others keep the run's resize
    ensemble = RecipeEnsemble(
        **{k: v for k, v in cfg.classifier.items() if k not in ("_target_", "_recursive_")}
    )
    resize = [m._encoder_cfg["resize"] for m in ensemble.members]
    assert resize == ["shortest"] * 4 + ["native"] * 2
    assert [m._encoder_cfg["crops"] for m in ensemble.members[4:]] == [4, 4]
    assert cfg.features.select is None and not cfg.features.augment.ops
    # data=multi has no data.root of its own: the sources carry theirs
    require_data_root(cfg)
    folder = compose_cfg("data=folder", "data.root=null", tiny=False)
    with pytest.raises(UsageError, match="data.root is empty"):
        require_data_root(folder)


def test_recipes_run_leave_one_source_out(compose_cfg, tmp_path: Path) -> None:
    import mlflow

    from fid_bench.jobs.experiment import run_job

    specs = [(name, make_source(tmp_path / name, 12, seed)) for seed, name in enumerate("abc")]
    cfg = compose_cfg(
        "data=multi", sources_override(specs), "cv.leave_one_source_out=true", "model=spectrum",
        "classifier=recipes", MEMBERS, "optimized_metric=loso/worst_roc_auc", *FAST, tiny=False,
    )  # fmt: skip
    worst = run_job(cfg)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    m = run.data.metrics
    held_out = [m[f"loso/{s}/roc_auc"] for s in "abc"]
    assert worst == pytest.approx(min(held_out)) and "recipes/strong/feature_dim" in m
    assert m["loso/mean_roc_auc"] == pytest.approx(np.mean(held_out)) and "roc_auc" in m
