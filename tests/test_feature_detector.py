"""FeatureDetector / FeaturePredictor on synthetic features (extraction replaced by a lookup table).

``fid_bench.features.extract.extract_features`` is monkeypatched with a fake that returns known
vectors per sha1 and records its calls, and the encoder config points at a trivial fake encoder,
so most tests exercise balancing, pipelines, scores and predictors without any image model; the
real_extraction test runs the real demo reader, spectrum encoder and feature cache.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from PIL import Image
from sklearn.linear_model import LogisticRegression

from fid_bench.balance import ClassWeight
from fid_bench.contract import CONTENT_HASH, SCORE_COLUMNS, Job
from fid_bench.data.samples import SAMPLE_COLUMNS, Samples
from fid_bench.data.splits import Fold
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.metrics import evaluate_scores
from fid_bench.features_track.detector import FeatureDetector, FeaturePredictor

REPO = Path(__file__).resolve().parents[1]


class FakeEncoder:
    """Stands in for a frozen encoder: the fake extraction never calls it."""

    def __init__(self, image_size: int | None = None, dim: int = 8) -> None:
        self.image_size = image_size
        self.dim = dim

    @property
    def identity(self) -> str:
        return f"fake-{self.dim}"

    # the rest of the documented minimum: never called (the fake extraction looks vectors up)
    def transform(self, img: Any) -> Any:
        raise AssertionError("FakeEncoder.transform called")

    def encode(self, batch: Any) -> np.ndarray:
        raise AssertionError("FakeEncoder.encode called")


class FakeExtract:
    """``extract_features`` replacement: vectors looked up by sha1; every call recorded."""

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        self.calls: list[dict[str, Any]] = []

    def __call__(self, encoder, paths, sha1s, cache_dir, *, batch_size=64, num_workers=2, device="auto"):
        self.calls.append(
            dict(
                encoder=encoder,
                paths=list(paths),
                sha1s=list(sha1s),
                cache_dir=Path(cache_dir),
                batch_size=batch_size,
                num_workers=num_workers,
                device=device,
            )
        )
        feats = np.stack([self.vectors[s] for s in sha1s]).astype(np.float32)
        n = len(sha1s)
        return feats, {
            "n_images": n,
            "n_cached": 0,
            "n_extracted": n,
            "cache_hit_ratio": 0.0,
            "images_per_s": 500.0,
        }


@pytest.fixture
def fake_extract(monkeypatch: pytest.MonkeyPatch) -> FakeExtract:
    fake = FakeExtract()
    monkeypatch.setattr("fid_bench.features.extract.extract_features", fake)
    return fake


class RecordingLogger:
    def __init__(self) -> None:
        self.metrics: list[tuple[dict[str, float], int | None]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_params(self, params: dict[str, Any]) -> None:
        pass


class RecordingLogReg(LogisticRegression):
    """Logistic regression that remembers which rows (feature 0 = row position) and weights it saw."""

    def fit(self, X, y, sample_weight=None):
        self.fit_rows_ = np.rint(X[:, 0]).astype(int)
        self.fit_weights_ = sample_weight
        return super().fit(X, y, sample_weight=sample_weight)


def synthetic(
    fake: FakeExtract,
    n_real: int = 150,
    n_fake: int = 50,
    shift: float = 2.5,
    dim: int = 8,
    seed: int = 0,
    with_position: bool = False,
) -> tuple[Samples, Fold]:
    """A labelled table whose features are two Gaussians ``shift`` apart, and one fold over it."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_real, dtype=int), np.ones(n_fake, dtype=int)]
    rng.shuffle(y)
    n = len(y)
    sha1s = [f"{i:040x}" for i in range(n)]
    X = rng.normal(size=(n, dim)) + shift * y[:, None] / np.sqrt(dim)
    if with_position:
        X[:, 0] = np.arange(n)
    for s, v in zip(sha1s, X, strict=True):
        fake.vectors[s] = v
    table = pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(n)],
            "path": [f"/data/img{i}.png" for i in range(n)],
            "label": y,
            "split": "train",
            "group": "",
            "sha1": sha1s,
        }
    )[SAMPLE_COLUMNS]
    order = rng.permutation(n)
    n_test, n_val = n // 5, n // 5
    fold = Fold(
        index=0,
        train=np.sort(order[n_test + n_val :]),
        val=np.sort(order[n_test : n_test + n_val]),
        test=np.sort(order[:n_test]),
    )
    return Samples(table=table, name="synthetic"), fold


def fake_encoder_cfg(dim: int = 8) -> dict[str, Any]:
    return {"_target_": f"{FakeEncoder.__module__}.FakeEncoder", "dim": dim}


def use_fake_encoder(cfg: DictConfig, dim: int = 8) -> DictConfig:
    """The model's backbone slot holds the fake encoder (feature classifiers read ``${model.backbone}``)."""
    with open_dict(cfg):
        cfg.model.backbone = fake_encoder_cfg(dim)
    return cfg


def make_job(cfg: DictConfig, samples: Samples, tmp_path: Path, logger: Any = None) -> Job:
    return Job(
        samples=samples,
        balance=instantiate(cfg.balance),
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path,
        logger=logger or RecordingLogger(),
    )


CLASSIFIERS = ["logreg", "knn", "rf", "gboost", "lightgbm"]


@pytest.mark.parametrize("balance", ["class_weight", "oversample"])
@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_every_classifier_config_separates_synthetic_features(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path, classifier: str, balance: str
) -> None:
    cfg = use_fake_encoder(compose_cfg(f"classifier={classifier}", f"balance={balance}"))
    samples, fold = synthetic(fake_extract)
    det = instantiate(cfg.classifier)
    assert isinstance(det, FeatureDetector) and det.name == classifier
    logger = RecordingLogger()
    job = make_job(cfg, samples, tmp_path, logger)
    det.setup(job)
    scores = det.fit_predict(job, fold)

    assert list(scores.columns) == [*SCORE_COLUMNS, CONTENT_HASH]
    val, test = scores[scores["split"] == "val"], scores[scores["split"] == "test"]
    # one score per held-out row, ids, labels and content hashes carried over from the table
    assert val["id"].tolist() == samples.table["id"].iloc[fold.val].tolist()
    assert test["id"].tolist() == samples.table["id"].iloc[fold.test].tolist()
    assert test[CONTENT_HASH].tolist() == samples.table[CONTENT_HASH].iloc[fold.test].tolist()
    assert test["label"].tolist() == samples.table["label"].iloc[fold.test].tolist()
    assert scores["score"].between(0, 1).all() and (scores["fold"] == 0).all()
    metrics = evaluate_scores(scores)
    assert metrics["roc_auc"] > 0.9, metrics
    ((logged, step),) = logger.metrics
    assert step == 0 and logged["fit_seconds"] > 0
    expected_rows = (
        2 * np.bincount(samples.table["label"].iloc[fold.train]).max()
        if balance == "oversample"
        else len(fold.train)
    )
    assert logged["n_train_fit"] == expected_rows


def test_setup_extracts_labelled_rows_once_with_the_configured_settings(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    cfg = use_fake_encoder(
        compose_cfg(
            "classifier=logreg", "features.batch_size=17", "features.num_workers=0", "features.device=cpu"
        ),
        dim=8,
    )
    samples, _ = synthetic(fake_extract, n_real=20, n_fake=10)
    table = samples.table.copy()
    # a duplicate image (same bytes, another id), an unlabelled predict row and an unreadable predict row
    extra = pd.DataFrame(
        [
            ("dup", "/data/dup.png", 1, "train", "", table["sha1"].iloc[0]),
            ("p1", "/data/p1.png", -1, "predict", "", "f" * 40),
            ("p2", "/data/p2.png", -1, "predict", "", ""),
        ],
        columns=SAMPLE_COLUMNS,
    )
    samples = Samples(table=pd.concat([table, extra], ignore_index=True))
    det = instantiate(cfg.classifier)
    det.setup(make_job(cfg, samples, tmp_path))

    (call,) = fake_extract.calls
    assert isinstance(call["encoder"].inner, FakeEncoder)  # wrapped: the documented minimum
    assert call["cache_dir"] == tmp_path / "cache"
    assert (call["batch_size"], call["num_workers"], call["device"]) == (17, 0, "cpu")
    # labelled rows only, each distinct image once
    assert sorted(call["sha1s"]) == sorted(table["sha1"])
    extra_metrics = det.extra_metrics()
    assert extra_metrics["n_extracted"] == 30 and extra_metrics["cache_hit_ratio"] == 0.0
    assert extra_metrics["images_per_s"] == 500.0 and extra_metrics["extract_seconds"] >= 0
    assert extra_metrics["feature_dim"] == 8
    # the duplicate row got its twin's features
    dup, first = det.features_for(np.array([len(table), 0]))
    np.testing.assert_array_equal(dup, first)
    np.testing.assert_array_equal(first, fake_extract.vectors[table["sha1"].iloc[0]].astype(np.float32))
    with pytest.raises(FidBenchError, match="2 fold row"):
        det.features_for(np.array([len(table) + 1, len(table) + 2]))


@pytest.mark.parametrize("balance", ["none", "class_weight", "oversample", "undersample"])
def test_balancing_touches_training_rows_only(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path, balance: str
) -> None:
    cfg = use_fake_encoder(compose_cfg(f"balance={balance}"))
    samples, fold = synthetic(fake_extract, with_position=True)
    det = FeatureDetector(
        estimator=RecordingLogReg(max_iter=500), name="recording", scale=False, encoder=fake_encoder_cfg()
    )
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    scores = det.fit_predict(job, fold)

    est = det.predictor().pipeline[-1]
    rows = est.fit_rows_
    y = samples.table["label"].to_numpy()
    train = set(fold.train.tolist())
    assert set(rows.tolist()) <= train, "a validation or test row reached fit()"
    n0, n1 = np.bincount(y[fold.train])
    fitted = np.bincount(y[rows], minlength=2)
    if balance == "oversample":
        assert fitted.tolist() == [max(n0, n1)] * 2 and set(rows.tolist()) == train
    elif balance == "undersample":
        assert fitted.tolist() == [min(n0, n1)] * 2 and len(set(rows.tolist())) == len(rows)
    else:
        assert sorted(rows.tolist()) == sorted(train)
    if balance == "class_weight":
        expected = ClassWeight().sample_weight(y[rows])
        np.testing.assert_allclose(est.fit_weights_, expected)
        assert est.fit_weights_.sum() == pytest.approx(len(rows))
    else:
        assert est.fit_weights_ is None
    # held-out rows are scored exactly once each, never resampled
    for split, positions in (("val", fold.val), ("test", fold.test)):
        got = scores.loc[scores["split"] == split, "id"].tolist()
        assert got == samples.table["id"].iloc[positions].tolist()


def test_knn_class_weight_is_a_prior_correction(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    # overlapping, imbalanced classes: an unweighted vote favours the majority (real)
    samples, fold = synthetic(fake_extract, n_real=240, n_fake=60, shift=1.5, seed=3)
    out = {}
    for balance in ("none", "class_weight"):
        cfg = use_fake_encoder(compose_cfg("classifier=knn", f"balance={balance}"))
        det = instantiate(cfg.classifier)
        job = make_job(cfg, samples, tmp_path)
        det.setup(job)
        out[balance] = det.fit_predict(job, fold)
    p0 = out["none"]["score"].to_numpy()
    p1 = out["class_weight"]["score"].to_numpy()

    y_train = samples.table["label"].to_numpy()[fold.train]
    w = ClassWeight().class_weights(y_train)
    assert w[1] > w[0]
    np.testing.assert_allclose(p1, w[1] * p0 / (w[1] * p0 + w[0] * (1 - p0)))
    # the minority class gains: scores never drop, and rise wherever the vote was split
    assert (p1 >= p0 - 1e-12).all()
    split_vote = (p0 > 0) & (p0 < 1)
    assert split_vote.any() and (p1[split_vote] > p0[split_vote]).all()
    test = out["none"]["split"] == "test"
    labels = out["none"]["label"].to_numpy()
    recall = {k: ((v["score"].to_numpy() >= 0.5) & (labels == 1))[test].sum() for k, v in out.items()}
    assert recall["class_weight"] > recall["none"]


def write_png(path: Path, value: int) -> None:
    Image.new("RGB", (8, 8), (value, 255 - value, 0)).save(path)


def test_predictor_pickles_and_round_trips(compose_cfg, fake_extract: FakeExtract, tmp_path: Path) -> None:
    import hashlib

    cfg = use_fake_encoder(compose_cfg("classifier=logreg", "balance=class_weight"))
    samples, fold = synthetic(fake_extract)
    det = instantiate(cfg.classifier)
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    fold_scores = det.fit_predict(job, fold)
    pred = det.predictor()
    assert isinstance(pred, FeaturePredictor)
    assert type(pred.encoder_cfg) is dict and pred.encoder_cfg["_target_"].endswith("FakeEncoder")
    train_share = samples.table["label"].to_numpy()[fold.train].mean()
    assert pred.prior == pytest.approx(train_share)
    # the threshold defaults to the metrics' choice on the validation rows of the fit
    assert pred.threshold == pytest.approx(evaluate_scores(fold_scores)["threshold"])
    pred.threshold = 0.37

    # new images: two readable PNGs (one fake-looking, one real-looking), a broken file, a missing one
    images = []
    for name, value, vec in (("a.png", 10, np.full(8, 2.0)), ("b.png", 200, np.full(8, -2.0))):
        write_png(tmp_path / name, value)
        fake_extract.vectors[hashlib.sha1((tmp_path / name).read_bytes()).hexdigest()] = vec
        images.append(str(tmp_path / name))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    # ... and the first image again, under another name
    (tmp_path / "a_copy.png").write_bytes(Path(images[0]).read_bytes())
    paths = [images[0], str(tmp_path / "broken.png"), images[1], str(tmp_path / "missing.png")]
    paths.append(str(tmp_path / "a_copy.png"))
    paths.append(str(tmp_path / ("x" * 300 + ".png")))  # a name the filesystem refuses (OSError)

    loaded = pickle.loads(pickle.dumps(pred))
    assert loaded.threshold == 0.37 and loaded.prior == pred.prior
    scores = loaded.predict_paths(paths)
    # features come back as float32, like any cached features
    vecs = np.stack([np.full(8, 2.0), np.full(8, -2.0), np.full(8, 2.0)]).astype(np.float32)
    np.testing.assert_allclose(scores[[0, 2, 4]], pred.pipeline.predict_proba(vecs)[:, 1])
    assert scores[0] > 0.9 and scores[2] < 0.1
    np.testing.assert_allclose(scores[[1, 3, 5]], pred.prior)
    assert [p for p, _ in loaded.unreadable] == [paths[1], paths[3], paths[5]]
    assert "not found" in loaded.unreadable[1][1]
    np.testing.assert_array_equal(loaded.predict_labels(paths), (scores >= 0.37).astype(int))
    # features went through the job's cache, only for the readable images, each distinct one once
    last = fake_extract.calls[-1]
    assert last["cache_dir"] == tmp_path / "cache" and sorted(last["paths"]) == sorted(images)

    # a used predictor pickles without its loaded encoder
    assert loaded._encoder is not None
    again = pickle.loads(pickle.dumps(loaded))
    assert again._encoder is None
    np.testing.assert_allclose(again.predict_paths(paths), scores)


def test_model_without_encoder_is_a_one_line_error(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_cfg("model=small_cnn", "classifier=logreg")
    samples, _ = synthetic(fake_extract, n_real=10, n_fake=10)
    with open_dict(cfg):
        # a model config may carry a fine-tuning recipe under classifier: ignored, with a warning
        cfg.classifier.max_epochs = 3
    det = instantiate(cfg.classifier)
    assert re.search(r"classifier=logreg: ignoring option\(s\) .*max_epochs", caplog.text)
    with pytest.raises(
        FidBenchError, match=r"^model=small_cnn has no frozen encoder; use classifier=finetune$"
    ):
        det.setup(make_job(cfg, samples, tmp_path))
    assert fake_extract.calls == []


def test_too_few_rows_for_knn_is_a_clear_error(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    cfg = use_fake_encoder(compose_cfg("classifier=knn"))
    samples, _ = synthetic(fake_extract, n_real=10, n_fake=10)
    fold = Fold(index=0, train=np.arange(10), val=np.arange(10, 15), test=np.arange(15, 20))
    job = make_job(cfg, samples, tmp_path)
    det = instantiate(cfg.classifier)
    det.setup(job)
    y = samples.table["label"].to_numpy()
    if np.unique(y[:10]).size < 2:  # the shuffled labels must give both classes to this fold
        pytest.fail("synthetic fold lacks a class")
    with pytest.raises(FidBenchError, match=r"^classifier=knn: n_neighbors=15 > training rows 10$"):
        det.fit_predict(job, fold)


@pytest.mark.parametrize(
    ("classifier", "override", "message"),
    [
        (
            "lightgbm",
            "classifier.estimator.num_leaves=1",
            r"classifier=lightgbm: fit failed on fold 0: .*num_leaves",
        ),
        ("logreg", "classifier.estimator.C=-1", r"classifier=logreg: fit failed on fold 0: .*'C' parameter"),
    ],
)
def test_estimator_failures_become_one_line_errors(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path, classifier: str, override: str, message: str
) -> None:
    cfg = use_fake_encoder(compose_cfg(f"classifier={classifier}", override))
    samples, fold = synthetic(fake_extract, n_real=30, n_fake=30)
    det = instantiate(cfg.classifier)
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    with pytest.raises(FidBenchError, match=message) as info:
        det.fit_predict(job, fold)
    assert "\n" not in str(info.value)


def test_single_class_training_fold_and_missing_fit(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    cfg = use_fake_encoder(compose_cfg("classifier=logreg"))
    samples, fold = synthetic(fake_extract, n_real=20, n_fake=20)
    det = instantiate(cfg.classifier)
    with pytest.raises(FidBenchError, match="no fitted model"):
        det.predictor()
    job = make_job(cfg, samples, tmp_path)
    with pytest.raises(FidBenchError, match="setup"):
        det.fit_predict(job, fold)
    det.setup(job)
    y = samples.table["label"].to_numpy()
    only_real = Fold(index=2, train=np.flatnonzero(y == 0)[:10], val=fold.val, test=fold.test)
    with pytest.raises(FidBenchError, match=r"fold 2 trains on 10 row\(s\) of class \[0\] only"):
        det.fit_predict(job, only_real)
    # a fold may not reach into rows without features (unlabelled/unreadable)
    table = samples.table.copy()
    table.loc[0, "sha1"] = ""
    job2 = make_job(cfg, Samples(table=table), tmp_path)
    det.setup(job2)
    with pytest.raises(FidBenchError, match="have no features"):
        det.fit_predict(
            job2, Fold(index=0, train=np.arange(0, 30), val=np.arange(30, 35), test=np.arange(35, 40))
        )


def test_classifier_track_does_not_import_heavy_frameworks() -> None:
    code = (
        "import sys, numpy as np\n"
        "import fid_bench.features_track.detector, fid_bench.balance\n"
        "import fid_bench.evaluation.metrics, fid_bench.evaluation.plots\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning', 'mlflow', 'open_clip', 'timm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_real_extraction_cache_and_predictor_agree_on_demo_images(compose_cfg, tmp_path: Path) -> None:
    """The real reader, folds, spectrum encoder and cache: fold scores equal the predictor's scores."""
    from fid_bench.data.splits import make_folds
    from fid_bench.jobs.experiment import load_samples

    # the easy demo set: a linear probe must find the trace in a few dozen images
    cfg = compose_cfg(
        "model=spectrum", "classifier=logreg", "balance=class_weight", "data.reader.difficulty=easy"
    )
    samples = load_samples(cfg)
    (fold,) = make_folds(samples.table, val_fraction=0.2, test_fraction=0.25, cv_folds=None, seed=0)
    job = make_job(cfg, samples, tmp_path)
    det = instantiate(cfg.classifier)
    det.setup(job)
    first = det.extra_metrics()
    assert first["cache_hit_ratio"] == 0.0 and first["n_extracted"] > 0
    assert first["feature_dim"] > 10 and "seconds" not in first
    scores = det.fit_predict(job, fold)
    assert evaluate_scores(scores)["roc_auc"] > 0.8  # the demo's generated images carry a spectral trace

    # a second job on the same images extracts nothing
    again = instantiate(cfg.classifier)
    again.setup(make_job(cfg, samples, tmp_path))
    assert again.extra_metrics()["cache_hit_ratio"] == 1.0 and again.extra_metrics()["n_extracted"] == 0
    np.testing.assert_array_equal(again.features_for(fold.test), det.features_for(fold.test))

    # the pickled predictor rebuilds the encoder from its config and scores the files as the fold did
    pred = pickle.loads(pickle.dumps(det.predictor()))
    test = scores[scores["split"] == "test"]
    paths = samples.table["path"].iloc[fold.test].tolist()
    np.testing.assert_allclose(pred.predict_paths(paths), test["score"].to_numpy(), rtol=1e-6)
    assert pred.unreadable == []


def test_constant_predictions_are_reported(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path, caplog
) -> None:
    # fewer training rows than LightGBM's default min_child_samples (20): no split can be made
    cfg = use_fake_encoder(compose_cfg("classifier=lightgbm"))
    samples, fold = synthetic(fake_extract, n_real=12, n_fake=12)
    det = instantiate(cfg.classifier)
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    scores = det.fit_predict(job, fold)
    assert scores["score"].nunique() == 1
    assert "gives every held-out row the same score" in caplog.text


class ThreadProbe(LogisticRegression):
    """Records the thread counts of the OpenMP/BLAS pools while it is being fitted."""

    def fit(self, X, y, sample_weight=None):
        from threadpoolctl import threadpool_info

        self.fit_threads_ = sorted({pool["num_threads"] for pool in threadpool_info()})
        return super().fit(X, y, sample_weight=sample_weight)


def test_threads_cap_reaches_fit_and_estimator_pools(
    compose_cfg, fake_extract: FakeExtract, tmp_path: Path
) -> None:
    cfg = use_fake_encoder(compose_cfg("classifier=lightgbm", "classifier.threads=2"))
    assert instantiate(cfg.classifier).estimator.n_jobs == 2  # LightGBM's own pool gets the same cap

    samples, fold = synthetic(fake_extract, n_real=30, n_fake=30)
    det = FeatureDetector(estimator=ThreadProbe(), name="probe", threads=1, encoder=fake_encoder_cfg())
    job = make_job(cfg, samples, tmp_path)
    det.setup(job)
    det.fit_predict(job, fold)
    assert det.predictor().pipeline[-1].fit_threads_ == [1]
    assert det.predictor().threads == 1
    with pytest.raises(FidBenchError, match="threads must be a positive integer"):
        FeatureDetector(estimator=LogisticRegression(), name="x", threads=0)


def test_predictor_logged_before_the_backbones_package_names_todays_encoders() -> None:
    from fid_bench.features_track.detector import FeaturePredictor

    old = {"model_name": "resnet50", "pretrained": True, "weights": None, "image_size": None, "amp": True}
    for target, now in [
        ("fid_bench.features.encoders.TimmEncoder", "fid_bench.backbones.timm.TimmBackbone"),
        ("fid_bench.features.encoders.SpectrumEncoder", "fid_bench.features.spectrum.SpectrumEncoder"),
    ]:
        pred = FeaturePredictor.__new__(FeaturePredictor)
        pred.__setstate__({"encoder_cfg": {"_target_": target, **old}, "_encoder": None})
        assert pred.encoder_cfg["_target_"] == now
        assert ("amp" in pred.encoder_cfg) == now.endswith("SpectrumEncoder")  # encoder settings stay with it
