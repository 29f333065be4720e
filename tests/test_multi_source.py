"""Several sources in one run (data=multi), leave-one-source-out, and train-time augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.data.readers import read_configured_samples, read_samples
from fid_bench.errors import FidBenchError

SIZE = 32


def _image(rng: np.random.Generator, trace: bool) -> Image.Image:
    """Smooth random content; ``trace`` adds a faint period-2 checkerboard (a 'generator trace')."""
    coarse = rng.uniform(40, 215, size=(SIZE // 8, SIZE // 8, 3))
    img = np.kron(coarse, np.ones((8, 8, 1))) + rng.normal(0, 4, size=(SIZE, SIZE, 3))
    if trace:
        yy, xx = np.mgrid[:SIZE, :SIZE]
        img += 14.0 * (((yy + xx) % 2) * 2 - 1)[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_source(
    root: Path, n: int, seed: int, *, trace: bool = True, fake_format: str = "JPEG", real_format: str = "JPEG"
) -> Path:
    """root/{real,fake}/ with ``n`` images each. ``trace``: fakes carry the checkerboard; the formats
    let one source be separable by its file format alone."""
    rng = np.random.default_rng(seed)
    for label, fmt in (("real", real_format), ("fake", fake_format)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = _image(rng, trace and label == "fake")
            if fmt == "PNG":
                img.save(folder / f"{i:03d}.png")
            else:
                img.save(folder / f"{i:03d}.jpg", quality=95)
    return root


def sources_override(specs: list[tuple[str, Path]], extra: str = "") -> str:
    items = ", ".join(f"{{name: {name}, data: folder, root: {root}{extra}}}" for name, root in specs)
    return f"data.sources=[{items}]"


FAST = ["features.num_workers=0", "features.batch_size=64", "eval.bootstrap=0", "audit.enabled=false"]


def test_multi_reads_each_source_with_its_own_rules_and_names_the_broken_file_s_source(
    compose_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_source(tmp_path / "a", 6, 0)
    b = make_source(tmp_path / "b", 6, 1)
    (b / "fake" / "broken.jpg").write_bytes((b / "fake" / "000.jpg").read_bytes()[:60])  # truncated
    cfg = compose_cfg("data=multi", sources_override([("a", a), ("b", b)]), tiny=False)
    with caplog.at_level(logging.WARNING):
        samples = read_samples(cfg.data)

    table = samples.table
    assert sorted(set(table["group"])) == ["a", "b"]
    assert table["id"].is_unique and table["id"].str.match(r"^(a|b)/").all()
    assert len(table) == 24  # the broken file is not a row ...
    assert len(samples.skipped) == 1  # ... but a counted skip, named with its source
    skipped = samples.skipped.iloc[0]
    assert skipped["id"] == "b/fake/broken.jpg" and skipped["reason"] in ("truncated", "undecodable")
    assert any("data.sources b: skipped 1 of" in r.getMessage() for r in caplog.records)
    assert not any("data.sources a" in r.getMessage() for r in caplog.records)

    # strict per source: one line naming the file, nothing read silently
    strict = compose_cfg("data=multi", sources_override([("a", a), ("b", b)], ", strict: true"), tiny=False)
    with pytest.raises(FidBenchError, match=r"broken\.jpg"):
        read_configured_samples(strict)


def test_multi_caps_and_balances_rows_per_source_and_class(compose_cfg, tmp_path: Path) -> None:
    big = make_source(tmp_path / "big", 20, 0)
    small = make_source(tmp_path / "small", 5, 1)
    capped = compose_cfg(
        "data=multi",
        f"data.sources=[{{name: big, data: folder, root: {big}, max_per_class: 8}}, "
        f"{{name: small, data: folder, root: {small}}}]",
        tiny=False,
    )
    counts = read_samples(capped.data).table.groupby(["group", "label"]).size().to_dict()
    assert counts == {("big", 0): 8, ("big", 1): 8, ("small", 0): 5, ("small", 1): 5}
    # the same seed draws the same rows; another seed other rows
    again = read_samples(capped.data).table["id"].tolist()
    assert again == read_samples(capped.data).table["id"].tolist()
    capped.seed = 7
    assert read_samples(capped.data).table["id"].tolist() != again

    balanced = compose_cfg(
        "data=multi",
        sources_override([("big", big), ("small", small)]),
        "data.balance_sources=true",
        tiny=False,
    )
    counts = read_samples(balanced.data).table.groupby(["group", "label"]).size()
    assert set(counts.tolist()) == {5}


def test_multi_rejects_bad_source_lists_in_one_line(compose_cfg, tmp_path: Path) -> None:
    a = make_source(tmp_path / "a", 2, 0)
    for sources, message in (
        (f"[{{name: a, data: folder, root: {a}}}, {{name: a, data: folder, root: {a}}}]", "used twice"),
        ("[{name: a, data: folder}]", "lacks 'root'"),
        (f"[{{name: 'a b', data: folder, root: {a}}}]", "may hold only"),
        (f"[{{name: a, data: nope, root: {a}}}]", "unknown data='nope'"),
        (f"[{{name: a, data: folder, root: {a}, max_per_class: 0}}]", "max_per_class"),
    ):
        cfg = compose_cfg("data=multi", f"data.sources={sources}", tiny=False)
        with pytest.raises(FidBenchError, match=message):
            read_configured_samples(cfg)


def test_loso_held_out_score_drops_for_the_source_separable_only_by_a_shortcut(
    compose_cfg, tmp_path: Path
) -> None:
    """Sources a and b: fakes carry a real trace. Source c: no trace, but its fakes are JPEG and its reals
    PNG, so only the format separates them. In distribution c looks easy; held out it must not."""
    import mlflow

    from fid_bench.jobs.experiment import run_job

    specs = [
        ("a", make_source(tmp_path / "a", 40, 0)),
        ("b", make_source(tmp_path / "b", 40, 1)),
        # c's fakes are the smoother JPEGs: the trace learned elsewhere points the wrong way on c
        ("c", make_source(tmp_path / "c", 40, 2, trace=False, fake_format="JPEG", real_format="PNG")),
    ]
    cfg = compose_cfg(
        "data=multi", sources_override(specs), "cv.leave_one_source_out=true", "model=spectrum",
        "optimized_metric=loso/worst_roc_auc", "data.test_fraction=0.3", *FAST, tiny=False,
    )  # fmt: skip
    worst = run_job(cfg)

    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    m = run.data.metrics
    held_out = {s: m[f"loso/{s}/roc_auc"] for s in "abc"}
    # the trace generalises to a source never seen ...
    assert held_out["a"] > 0.9 and held_out["b"] > 0.9, held_out
    # ... the shortcut does not: c's held-out score drops far below its in-distribution score
    assert m["group/c/roc_auc"] > 0.9, m["group/c/roc_auc"]
    assert held_out["c"] < 0.75 and m["group/c/roc_auc"] - held_out["c"] > 0.2, held_out
    assert worst == m["loso/worst_roc_auc"] == pytest.approx(min(held_out.values()))
    assert m["loso/mean_roc_auc"] == pytest.approx(np.mean(list(held_out.values())))
    # the per-source table and the bar plot are artifacts; the logged model is the all-sources one
    artifacts = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "loso")}
    assert artifacts == {
        f"loso/{n}" for n in ("per_source.csv", "per_source.md", "roc_auc_per_source.png", "scores.csv")
    }
    assert m["n_test"] < 240 and "roc_auc" in m
    # the run's report: one page with the held-out sources' bars
    page = Path(mlflow.MlflowClient().download_artifacts(run.info.run_id, "report.html")).read_text()
    assert "<h2>Per held-out source (leave-one-source-out)</h2>" in page and "data:image/png;base64," in page


def test_loso_refuses_without_sources_and_with_fine_tuning(compose_cfg, tmp_path: Path) -> None:
    from fid_bench.jobs.experiment import run_job

    with pytest.raises(FidBenchError, match="at least 2 named sources"):
        run_job(compose_cfg("cv.leave_one_source_out=true", "model=spectrum", *FAST))
    specs = [("a", make_source(tmp_path / "a", 6, 0)), ("b", make_source(tmp_path / "b", 6, 1))]
    with pytest.raises(FidBenchError, match="not supported by classifier=finetune"):
        run_job(
            compose_cfg(
                "data=multi",
                sources_override(specs),
                "cv.leave_one_source_out=true",
                "model=small_cnn",
                "classifier.max_epochs=1",
                *FAST,
                tiny=False,
            )  # fmt: skip
        )


def test_augmentation_extracts_altered_copies_of_training_rows_only(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra.utils import instantiate

    from fid_bench.contract import Job
    from fid_bench.data.splits import make_folds
    from fid_bench.features import extract

    seen: list[tuple[str, list[str]]] = []
    real_extract = extract.extract_features

    def spy(encoder, paths, *args, **kwargs):
        seen.append((encoder.identity, list(paths)))
        return real_extract(encoder, paths, *args, **kwargs)

    monkeypatch.setattr(extract, "extract_features", spy)
    cfg = compose_cfg(
        "model=spectrum",
        "features.augment.ops=[{jpeg: [60, 90]}, {blur: [0.5, 1.5]}, {resize: [0.5, 0.9]}]",
        "features.augment.copies=2",
    )
    samples = read_samples(cfg.data)
    (fold,) = make_folds(samples.table, val_fraction=0.2, test_fraction=0.2, cv_folds=None, seed=0)
    det = instantiate(cfg.classifier)
    job = Job(samples=samples, balance=None, cache_dir=tmp_path / "c", output_dir=tmp_path, logger=_Null())
    det.setup(job)
    det.fit_predict(job, fold)

    paths = samples.table["path"]
    train, held_out = set(paths.iloc[fold.train]), set(paths.iloc[np.concatenate([fold.val, fold.test])])
    augmented = [(ident, p) for ident, p in seen if "augment:" in ident]
    assert len(augmented) == 2 and len({ident for ident, _ in augmented}) == 2  # one cache per copy
    for _, p in augmented:
        assert set(p) <= train and not set(p) & held_out
    assert det.extra_metrics()["augment_n_extracted"] == 2 * len(set(samples.table["sha1"].iloc[fold.train]))

    # cached by augmentation and copy: the same fold again extracts nothing new; the copies differ
    det.fit_predict(job, fold)
    assert det.extra_metrics()["augment_n_extracted"] == 2 * len(set(samples.table["sha1"].iloc[fold.train]))
    copies = det._augmented(samples.table, fold.train)
    assert not np.allclose(copies[0], copies[1])
    assert not np.allclose(copies[0], det.features_for(fold.train))


def test_augment_settings_are_checked(compose_cfg) -> None:
    from fid_bench.features.augmented import parse_augment

    for ops, message in (
        ("[{sharpen: [1, 2]}]", "unknown op 'sharpen'"),
        ("[{jpeg: [10, 120]}]", "jpeg range"),
        ("[{resize: 0.5}]", "needs a range"),
    ):
        cfg = compose_cfg("model=spectrum", f"features.augment.ops={ops}")
        with pytest.raises(FidBenchError, match=message):
            parse_augment(cfg.features.augment)
    assert parse_augment(compose_cfg().features.augment) is None  # no ops: no augmentation


class _Null:
    def log_metrics(self, metrics, step=None) -> None:
        pass


def test_search_by_worst_held_out_source_never_sees_the_test_rows(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import optuna

    from fid_bench.data.splits import make_folds
    from fid_bench.features_track.detector import FeatureDetector
    from fid_bench.jobs.experiment import load_samples
    from fid_bench.jobs.search.study import run_study

    calls: list[tuple[str, set[int]]] = []
    original = FeatureDetector.fit_predict

    def spy(self, job, fold):
        calls.append((fold.name, set(np.concatenate([fold.train, fold.val, fold.test]).tolist())))
        return original(self, job, fold)

    monkeypatch.setattr(FeatureDetector, "fit_predict", spy)
    specs = [(s, make_source(tmp_path / s, 12, i)) for i, s in enumerate("abc")]
    cfg = compose_cfg(
        "data=multi", sources_override(specs), "cv.leave_one_source_out=true", "model=spectrum",
        "hparams_search=logreg", "hparams_search.n_trials=2", "hparams_search.metric=loso/worst_roc_auc",
        "hparams_search.refit=false", *FAST, tiny=False,
    )  # fmt: skip
    run_study(cfg)

    samples = load_samples(cfg)
    (fold,) = make_folds(samples.table, val_fraction=0.2, test_fraction=0.2, cv_folds=None, seed=cfg.seed)
    assert len(calls) == 2 * 4  # per trial: 3 held-out sources, then the job's own fold
    assert [name for name, _ in calls[:4]] == ["a", "b", "c", ""]
    for _, rows in calls:
        assert not rows & set(fold.test.tolist())
    (study,) = optuna.get_all_study_summaries(cfg.hparams_search.storage)
    loaded = optuna.load_study(study_name=study.study_name, storage=cfg.hparams_search.storage)
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
              if "val_loso/worst_roc_auc" in r.data.metrics]  # fmt: skip
    assert len(trials) == 2
    assert {t.number for t in loaded.trials} == {0, 1}
    assert sorted(t.value for t in loaded.trials) == sorted(
        r.data.metrics["val_loso/worst_roc_auc"] for r in trials
    )


def test_shortest_side_augmentation_makes_thumbnails_and_leaves_small_images_alone() -> None:
    from fid_bench.features.augmented import augment_image, parse_augment

    rng = np.random.default_rng(0)
    ops = parse_augment({"ops": [{"shortest": [24, 40]}]}).ops
    big = Image.new("RGB", (300, 120), (90, 30, 200))
    for _ in range(5):
        out = augment_image(big, ops, rng)
        assert 24 <= min(out.size) <= 40 and abs(out.width / out.height - 2.5) < 0.1, out.size
    small = Image.new("RGB", (20, 16))
    assert augment_image(small, ops, rng).size == (20, 16)
    with pytest.raises(FidBenchError, match=r"shortest range \[0.0, 5.0\] must satisfy 1 <= low"):
        parse_augment({"ops": [{"shortest": [0, 5]}]})
