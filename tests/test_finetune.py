"""Fine-tuning track: preprocessing and augmentations, decoded cache, data module,
Lightning module, detector, predictor and configs (tiny images, tens of rows, CPU)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from fid_bench.contract import Job
from fid_bench.data.samples import Samples
from fid_bench.errors import FidBenchError
from tests.conftest import CONF_DIR

TRAINER_CPU = CONF_DIR / "trainer" / "cpu.yaml"


# -- fakes and helpers ------------------------------------------------------------------------------
class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, float], int | None]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((dict(metrics), step))

    def log_params(self, params: dict) -> None:
        pass


class Balance:
    """Stand-in balance strategy: fixed positions and weights (the real ones are tested elsewhere)."""

    def __init__(self, picked=None, weights=None) -> None:
        self.picked, self.weights, self.name = picked, weights, "fake"

    def resample(self, y):
        return np.arange(len(y)) if self.picked is None else np.asarray(self.picked)

    def class_weights(self, y):
        return self.weights


def make_images(root: Path, n: int, size: int = 16, seed: int = 0) -> pd.DataFrame:
    """Real images that 2x nearest-neighbour up-sampling marks as "generated" (label 1)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = i % 2
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        if label:
            arr = np.repeat(np.repeat(arr[::2, ::2], 2, axis=0), 2, axis=1)
        path = root / f"img{i:03d}.png"
        Image.fromarray(arr).save(path)
        rows.append({"id": f"img{i:03d}", "path": str(path), "label": label, "split": "train", "group": "g"})
    table = pd.DataFrame(rows)
    table["sha1"] = [f"{i:040x}" for i in range(n)]
    return table


def make_fold(n: int, n_val: int, n_test: int, index: int = 0) -> SimpleNamespace:
    n_train = n - n_val - n_test
    return SimpleNamespace(
        index=index,
        train=np.arange(n_train),
        val=np.arange(n_train, n_train + n_val),
        test=np.arange(n_train + n_val, n),
    )


SMALL_NET = {"_target_": "fid_bench.backbones.small_cnn.SmallCNN", "image_size": 16, "widths": [8, 16]}


def make_job(table, tmp_path: Path, *, balance=None, logger=None) -> Job:
    return Job(
        samples=Samples(table),
        balance=balance or Balance(),
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "out",
        logger=logger or RecordingLogger(),
    )


def detector(*, trainer=None, **kwargs):
    """A FinetuneDetector on the small CNN and the CPU trainer config (``trainer`` merged on top)."""
    from fid_bench.finetune.detector import FinetuneDetector

    trainer_cfg = OmegaConf.merge(OmegaConf.load(TRAINER_CPU), {"num_workers": 0, "channels_last": False})
    if trainer:
        trainer_cfg = OmegaConf.merge(trainer_cfg, trainer)
    base = {
        "backbone": SMALL_NET,
        "trainer": trainer_cfg,
        "max_epochs": 2,
        "batch_size": 16,
        "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
        "scheduler": None,
        "augment": {"hflip_p": 0.0},
        "early_stopping_patience": None,
        "seed": 0,
    }
    base.update(kwargs)
    return FinetuneDetector(**base)


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


# -- preprocessing and augmentation ---------------------------------------------------------------------
def test_square_uint8_keeps_square_images_exact_and_centre_crops_others():
    from fid_bench.finetune.augment import square_uint8

    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(square_uint8(Image.fromarray(arr), 16), arr)  # no resampling at native size
    wide = np.zeros((16, 32, 3), dtype=np.uint8)
    wide[:, 8:24] = 200  # the centre square is bright, the sides dark
    out = square_uint8(Image.fromarray(wide), 16)
    assert out.shape == (16, 16, 3) and out.min() == 200
    small = square_uint8(Image.fromarray(wide), 8)  # shorter side resized, then the centre
    assert small.shape == (8, 8, 3) and small[:, 2:6].min() >= 190
    grey = Image.fromarray(arr[..., 0], mode="L")
    assert square_uint8(grey, 16).shape == (16, 16, 3)


def test_augment_each_operation():
    from fid_bench.finetune.augment import Augment

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert not Augment.from_config({"hflip_p": 0.0}).active
    assert np.array_equal(Augment(hflip_p=0.0)(arr, rng), arr)
    assert np.array_equal(Augment(hflip_p=1.0)(arr, rng), arr[:, ::-1])
    # reflection-padded crop: a translation of the same pixels, same shape
    shifted = Augment(crop_pad=3, hflip_p=0.0)
    outs = [shifted(arr, np.random.default_rng(s)) for s in range(8)]
    assert all(o.shape == arr.shape for o in outs) and any(not np.array_equal(o, arr) for o in outs)
    assert any(
        np.array_equal(o[4:12, 4:12], arr[4 + dy : 12 + dy, 4 + dx : 12 + dx])
        for o in outs
        for dy in range(-3, 4)
        for dx in range(-3, 4)
    )

    def high_freq(a):
        return float(np.abs(np.diff(a.astype(float), axis=1)).mean())

    blurred = Augment(blur_p=1.0, blur_sigma=(2.0, 2.0), hflip_p=0.0)(arr, rng)
    assert high_freq(blurred) < 0.5 * high_freq(arr)
    jpeg = Augment(jpeg_p=1.0, jpeg_quality=(20, 20), hflip_p=0.0)(arr, rng)
    assert jpeg.shape == arr.shape and not np.array_equal(jpeg, arr)
    assert np.abs(jpeg.astype(int) - arr).mean() < 80  # re-compressed, not replaced


def test_augment_rejects_bad_config():
    from fid_bench.finetune.augment import Augment

    with pytest.raises(FidBenchError, match="blur_p"):
        Augment.from_config({"blur_p": 1.5})
    with pytest.raises(FidBenchError, match="jpeg_quality"):
        Augment.from_config({"jpeg_quality": [90, 10]})
    with pytest.raises(FidBenchError, match="unknown"):
        Augment.from_config({"rotate": 0.5})
    aug = Augment.from_config({"jpeg_quality": [50, 95], "blur_sigma": [0.5, 1.0]})
    assert aug.jpeg_quality == (50, 95) and aug.blur_sigma == (0.5, 1.0)


# -- decoded-image cache --------------------------------------------------------------------------------
def test_decoded_cache_matches_per_file_preparation_and_memmap_is_reused(tmp_path):
    from fid_bench.finetune.decoded import choose_mode, decode_images, prepare_file

    table = make_images(tmp_path / "img", 6, size=20)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths = [*table["path"], str(tmp_path / "broken.png")]
    sha1s = [*table["sha1"], "b" * 40]
    mem = decode_images(paths, sha1s, 16, mode="memory")
    assert mem.ok.tolist() == [True] * 6 + [False]
    for i in range(6):
        assert np.array_equal(mem.pixels[i], prepare_file(paths[i], 16))
    first = decode_images(paths, sha1s, 16, mode="memmap", cache_dir=tmp_path / "c")
    again = decode_images(paths, sha1s, 16, mode="memmap", cache_dir=tmp_path / "c")
    assert not first.reused and again.reused and again.seconds == 0.0
    assert np.array_equal(np.asarray(again.pixels), mem.pixels) and again.ok.tolist() == mem.ok.tolist()
    other = decode_images(paths, sha1s, 8, mode="memmap", cache_dir=tmp_path / "c")  # size is in the key
    assert not other.reused and other.pixels.shape == (7, 8, 8, 3)
    assert not list((tmp_path / "c" / "decoded").glob("*.tmp"))
    assert choose_mode("auto", 100, 32, max_memory_gb=1.0) == "memory"
    assert choose_mode("auto", 100_000, 224, max_memory_gb=1.0) == "memmap"
    with pytest.raises(FidBenchError, match="decoded_cache"):
        choose_mode("disk", 1, 1, 1.0)


# -- data module ------------------------------------------------------------------------------------------
def _datamodule(table, fold, balance, **kwargs):
    from fid_bench.finetune.datamodule import FinetuneDataModule

    dm = FinetuneDataModule(table, fold, image_size=16, balance=balance, batch_size=8, seed=0, **kwargs)
    dm.setup("fit")
    return dm


def test_datamodule_balancing_changes_sampling(tmp_path):
    from torch.utils.data import WeightedRandomSampler

    table = make_images(tmp_path / "img", 30)
    table.loc[:19, "label"] = [0] * 15 + [1] * 5  # 15 real, 5 fake in the training rows
    fold = make_fold(30, 5, 5)
    y = table["label"].to_numpy()[fold.train]

    plain = _datamodule(table, fold, Balance())
    assert len(plain.train_dataloader().dataset) == 20 and plain.class_weights is None

    # oversample: minority rows drawn 3x as often, len(resample(y)) draws per epoch
    picked = np.concatenate([np.flatnonzero(y == 0), np.repeat(np.flatnonzero(y == 1), 3)])
    over = _datamodule(table, fold, Balance(picked=picked))
    loader = over.train_dataloader()
    assert isinstance(loader.sampler, WeightedRandomSampler) and loader.sampler.num_samples == 30
    drawn = torch.cat([b["label"] for _ in range(20) for b in loader])
    assert 0.4 < drawn.mean().item() < 0.6  # balanced in expectation, 0.25 without

    # undersample: a sub-sample, each row once
    keep = np.concatenate([np.flatnonzero(y == 0)[:5], np.flatnonzero(y == 1)])
    under = _datamodule(table, fold, Balance(picked=keep))
    labels = torch.cat([b["label"] for b in under.train_dataloader()])
    assert len(labels) == 10 and labels.sum().item() == 5

    weighted = _datamodule(table, fold, Balance(weights={0: 0.5, 1: 1.5}))
    assert weighted.class_weights == {0: 0.5, 1: 1.5}


def test_datamodule_class_weights_come_from_the_fold_training_labels_only(tmp_path):
    """15 real and 5 fake training rows; the 10 val/test rows are all fake and must not count."""
    from fid_bench.balance import ClassWeight

    table = make_images(tmp_path / "img", 30)
    table["label"] = [0] * 15 + [1] * 5 + [1] * 10
    dm = _datamodule(table, make_fold(30, 5, 5), ClassWeight())
    # n / (n_classes * count) over the 20 training labels; all 30 labels would give {0: 1.0, 1: 1.0}
    assert dm.class_weights == {0: pytest.approx(20 / (2 * 15)), 1: pytest.approx(20 / (2 * 5))}


def test_datamodule_batches_and_unreadable_rows(tmp_path):
    table = make_images(tmp_path / "img", 12)
    Path(table.loc[1, "path"]).write_bytes(b"broken after the reader validated it")
    fold = make_fold(12, 2, 2)
    for mode in ("memory", "off"):
        dm = _datamodule(table, fold, Balance(), decoded_cache=mode)
        batch = next(iter(dm.eval_dataloader(np.arange(4))))
        assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].shape == (4, 3, 16, 16)
        assert batch["ok"].tolist() == [True, False, True, True]
        assert batch["label"].tolist() == [0.0, 1.0, 0.0, 1.0]
        assert batch["pixels"][1].sum() == 0
    with pytest.raises(FidBenchError, match="no training rows"):
        _datamodule(
            table, SimpleNamespace(index=0, train=np.array([], int), val=fold.val, test=fold.test), Balance()
        )


# -- module -------------------------------------------------------------------------------------------------
def _fit_module(tmp_path, table, fold, **module_kwargs):
    import pytorch_lightning as pl

    from fid_bench.backbones.small_cnn import SmallCNN
    from fid_bench.finetune.module import BinaryNet, FinetuneModule

    pl.seed_everything(0, verbose=False)
    net = BinaryNet(SmallCNN(image_size=16, widths=[4, 8]).build())
    module = FinetuneModule(net, optimizer=lambda groups: torch.optim.AdamW(groups, lr=1e-2), **module_kwargs)
    snapshots = []

    class Snap(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})

    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=module_kwargs.pop("epochs", 2),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Snap()],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=_datamodule(table, fold, Balance()))
    return before, snapshots


def _changed(a, b, prefix):
    return [k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])]


def test_linear_probe_keeps_backbone_and_its_statistics(tmp_path):
    table = make_images(tmp_path / "img", 24)
    before, snaps = _fit_module(tmp_path, table, make_fold(24, 4, 4), freeze_backbone=True)
    assert _changed(before, snaps[-1], "backbone.") == []  # weights and BN running stats
    assert _changed(before, snaps[-1], "head.")


def test_unfreeze_after_one_epoch(tmp_path):
    table = make_images(tmp_path / "img", 24)
    before, snaps = _fit_module(tmp_path, table, make_fold(24, 4, 4), freeze_backbone=True, unfreeze_after=1)
    assert _changed(before, snaps[0], "backbone.") == [] and _changed(before, snaps[0], "head.")
    assert _changed(snaps[0], snaps[1], "backbone.features.0.weight")  # trains from epoch 1 on


def test_class_weights_weight_the_loss_and_unreadable_rows_are_ignored():
    from fid_bench.backbones.small_cnn import SmallCNN
    from fid_bench.finetune.module import BinaryNet, FinetuneModule

    module = FinetuneModule(
        BinaryNet(SmallCNN(image_size=8, widths=[4]).build()),
        optimizer=torch.optim.SGD,
        class_weights={0: 0.5, 1: 2.0},
    )
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0])
    label = torch.tensor([1.0, 0.0, 1.0, 0.0])
    ok = torch.tensor([True, True, True, False])
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(logits, label, reduction="none")
    expected = (per_row[0] * 2.0 + per_row[1] * 0.5 + per_row[2] * 2.0) / 3
    assert module._loss(logits, label, ok).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cosine_with_warmup_schedule():
    from fid_bench.finetune.module import cosine_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=20, steps_per_epoch=4, warmup_epochs=1, min_lr_ratio=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == sorted(lrs[:4]) and lrs[0] < 0.5  # linear warm-up
    assert lrs[4] == pytest.approx(1.0)  # peak right after warm-up
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # then decays
    assert lrs[-1] == pytest.approx(0.1, abs=0.02)  # towards min_lr_ratio


# -- detector and predictor -------------------------------------------------------------------------------
@pytest.fixture
def trained(tmp_path):
    table = make_images(tmp_path / "img", 96)
    fold = make_fold(96, 24, 24)
    logger = RecordingLogger()
    job = make_job(table, tmp_path, logger=logger)
    det = detector(max_epochs=4, batch_size=16, augment={"hflip_p": 0.5, "crop_pad": 0})
    det.setup(job)
    scores = det.fit_predict(job, fold)
    return SimpleNamespace(table=table, fold=fold, logger=logger, det=det, scores=scores, job=job)


def test_detector_scores_val_and_test_with_best_epoch(trained):
    scores, fold, table = trained.scores, trained.fold, trained.table
    assert list(scores.columns) == ["id", "label", "score", "split", "group", "fold", "sha1"]
    val, test = scores[scores.split == "val"], scores[scores.split == "test"]
    assert val["id"].tolist() == table["id"].iloc[fold.val].tolist()
    assert test["id"].tolist() == table["id"].iloc[fold.test].tolist()
    assert test["label"].tolist() == table["label"].iloc[fold.test].tolist()
    assert ((scores.score >= 0) & (scores.score <= 1)).all()
    assert auc(test.label, test.score) > 0.8  # up-sampling is easy to learn

    # per-epoch metrics went to the job's logger, one step per epoch
    steps = [step for _, step in trained.logger.calls]
    assert steps == list(range(len(steps))) and len(steps) == 4
    for metrics, _ in trained.logger.calls:
        assert {"train_loss", "train_roc_auc", "val_loss", "val_roc_auc", "train_images_per_s"} <= set(
            metrics
        )
    # the returned val scores come from the best validation epoch, not the last one
    history = [m["val_roc_auc"] for m, _ in trained.logger.calls]
    assert auc(val.label, val.score) == pytest.approx(max(history), abs=1e-4)
    extra = trained.det.extra_metrics()
    assert extra["best_val_roc_auc"] == pytest.approx(max(history), abs=1e-6)
    assert extra["epochs_trained"] == 4 and extra["n_params"] > 0 and extra["world_size"] == 1


def test_predictor_round_trips_and_matches_test_scores(trained, tmp_path):
    predictor = pickle.loads(pickle.dumps(trained.det.predictor()))
    test = trained.scores[trained.scores.split == "test"]
    paths = trained.table["path"].iloc[trained.fold.test].tolist()
    np.testing.assert_allclose(predictor.predict_paths(paths), test.score.to_numpy(), atol=1e-5)
    assert predictor.prior == pytest.approx(trained.table["label"].iloc[trained.fold.train].mean())
    from fid_bench.evaluation.metrics import best_f1_threshold

    val = trained.scores[trained.scores.split == "val"]
    assert predictor.threshold == pytest.approx(best_f1_threshold(val.label.to_numpy(), val.score.to_numpy()))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    out = predictor.predict_paths([str(tmp_path / "bad.jpg"), paths[0], str(tmp_path / "missing.png")])
    assert (
        out[0] == predictor.prior
        and out[2] == predictor.prior
        and out[1] == pytest.approx(test.score.iloc[0], abs=1e-5)
    )


def test_early_stopping_and_seed_reproducibility(tmp_path):
    table = make_images(tmp_path / "img", 48)
    fold = make_fold(48, 12, 12)
    # lr 0: validation ROC-AUC never improves, so patience 1 stops after 2 epochs of 6
    still = detector(
        max_epochs=6,
        early_stopping_patience=1,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0},
    )
    still.fit_predict(make_job(table, tmp_path), fold)
    assert still.extra_metrics()["epochs_trained"] == 2
    a = detector(max_epochs=1).fit_predict(make_job(table, tmp_path / "a"), fold)
    b = detector(max_epochs=1).fit_predict(make_job(table, tmp_path / "b"), fold)
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)


def test_detector_with_timm_network_and_class_weight(tmp_path, monkeypatch):
    table = make_images(tmp_path / "img", 32)
    table.loc[:21, "label"] = [0] * 18 + [1] * 4
    net = {
        "_target_": "fid_bench.backbones.timm.TimmBackbone",
        "model_name": "test_resnet",
        "pretrained": False,
        "weights": None,
        "image_size": 16,
    }
    from fid_bench.balance import ClassWeight
    from fid_bench.finetune import module as finetune_module

    built = []

    class Recording(finetune_module.FinetuneModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(finetune_module, "FinetuneModule", Recording)
    job = make_job(table, tmp_path, balance=ClassWeight())
    det = detector(backbone=net, max_epochs=1, freeze_backbone=True, unfreeze_after=None)
    scores = det.fit_predict(job, make_fold(32, 5, 5))
    assert len(scores) == 10 and scores.score.between(0, 1).all()
    # the loss weights, by value: 22 training rows, 18 real and 4 fake -> 22 / (2 * count)
    np.testing.assert_allclose(built[0].class_weight.tolist(), [22 / 36, 22 / 8], rtol=1e-6)
    predictor = pickle.loads(pickle.dumps(det.predictor()))
    assert predictor.backbone["model_name"] == "test_resnet"
    np.testing.assert_allclose(
        predictor.predict_paths(table["path"].iloc[27:].tolist()),
        scores[scores.split == "test"].score,
        atol=1e-5,
    )


def test_cross_validation_prefixes_epoch_metrics_per_fold(tmp_path):
    table = make_images(tmp_path / "img", 32)
    logger = RecordingLogger()
    job = make_job(table, tmp_path, logger=logger)
    det = detector(max_epochs=1, folds=2)
    for k in range(2):
        det.fit_predict(job, make_fold(32, 6, 6, index=k))
    keys = set().union(*(m for m, _ in logger.calls))
    assert "fold0/val_roc_auc" in keys and "fold1/val_roc_auc" in keys and "val_roc_auc" not in keys
    assert det.extra_metrics()["epochs_trained"] == 1


def test_bad_trainer_config_is_one_line_error(tmp_path):
    table = make_images(tmp_path / "img", 16)
    job = make_job(table, tmp_path)
    with pytest.raises(FidBenchError, match="trainer config"):
        detector(max_epochs=1, trainer={"accelerator": "no_such_device"}).fit_predict(
            job, make_fold(16, 4, 4)
        )
    with pytest.raises(FidBenchError, match="decoded_cache"):
        detector(decoded_cache="sometimes")
    with pytest.raises(FidBenchError, match="monitor"):
        detector(monitor="val_f1")


# -- configs (Hydra compose) -----------------------------------------------------------------------------
def test_spectrum_with_finetune_is_one_clear_error(compose_cfg, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_cfg("model=spectrum", "classifier=finetune")
    det = instantiate(cfg.classifier)
    job = Job(samples=Samples(pd.DataFrame()), balance=Balance(), cache_dir=tmp_path, output_dir=tmp_path)
    with pytest.raises(FidBenchError, match="model=spectrum has no trainable network.*classifier=logreg"):
        det.setup(job)


def test_small_cnn_config_selects_finetune_with_its_recipe(compose_cfg):
    from hydra.utils import instantiate

    from fid_bench.backbones.small_cnn import SmallCNN
    from fid_bench.finetune.detector import FinetuneDetector

    cfg = compose_cfg("model=small_cnn")
    det = instantiate(cfg.classifier)
    assert isinstance(det, FinetuneDetector)
    assert (
        det.max_epochs == cfg.classifier.max_epochs and det.optimizer_cfg["lr"] == cfg.classifier.optimizer.lr
    )
    assert det.augment.crop_pad == cfg.classifier.augment.crop_pad
    net = instantiate(cfg.model.backbone)
    assert isinstance(net, SmallCNN) and net.input_size == 32
    assert instantiate(compose_cfg("model=small_cnn", "data.image_size=48").model.backbone).input_size == 48
    # the detector receives the backbone, trainer and folds it reads through its own config node
    assert det.backbone_cfg["_target_"].endswith("SmallCNN") and det.trainer_cfg["accelerator"] == "cpu"
    assert det.folds == 1 and instantiate(compose_cfg("model=small_cnn", "cv.folds=3").classifier).folds == 3
    # trainer.max_epochs, when given, wins over the recipe; null falls back to it
    assert det._hardware()["trainer_kwargs"]["max_epochs"] == det.max_epochs
    det1 = instantiate(compose_cfg("model=small_cnn", "trainer.max_epochs=1").classifier)
    assert det1._hardware()["trainer_kwargs"]["max_epochs"] == 1


@pytest.mark.parametrize("model", ["resnet50", "vit_b16"])
def test_timm_models_default_to_finetune(compose_cfg, model):
    cfg = compose_cfg(f"model={model}", "model.pretrained=false", "data.image_size=64")
    assert cfg.classifier._target_.endswith("FinetuneDetector")
    assert cfg.model.backbone.pretrained is False and cfg.model.backbone.image_size == 64
    assert compose_cfg(f"model={model}", "classifier=logreg").classifier._target_.endswith("FeatureDetector")


@pytest.mark.parametrize("name", ["cpu", "gpu", "ddp"])
def test_trainer_configs_build_a_lightning_trainer(compose_cfg, name):
    from fid_bench.finetune.detector import HARNESS_KEYS

    cfg = compose_cfg("model=small_cnn", f"trainer={name}")
    keys = set(cfg.trainer) - set(HARNESS_KEYS)
    import inspect

    import pytorch_lightning as pl

    assert keys <= set(inspect.signature(pl.Trainer).parameters)
    assert set(HARNESS_KEYS) <= set(cfg.trainer)
    if name != "cpu":
        assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.pin_memory
    if name == "ddp":
        assert cfg.trainer.strategy == "ddp"
    assert math.isfinite(cfg.classifier.max_epochs)


# -- the real job flow -----------------------------------------------------------------------------------
def test_run_job_small_cnn_logs_epochs_final_metrics_and_a_loadable_model(compose_cfg):
    import mlflow

    from fid_bench.jobs.experiment import run_job

    cfg = compose_cfg(
        "model=small_cnn",
        "data.image_size=16",
        "model.backbone.widths=[4,8]",
        "trainer.max_epochs=2",
        "trainer.num_workers=0",
    )
    value = run_job(cfg)
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.metrics["roc_auc"] == pytest.approx(value)
    for key in ("roc_auc", "f1", "threshold", "epochs_trained", "train_images_per_s"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run.info.run_id, "val_roc_auc")
    assert sorted(m.step for m in history) == [0, 1]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2

    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    images = sorted(Path(cfg.data.root).rglob("*.png"))[:4]
    out = model.predict(pd.DataFrame({"path": [str(p) for p in images]}))
    assert len(out) == 4 and out["score"].between(0, 1).all()


def test_recipe_reaches_the_lightning_trainer(tmp_path):
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    table = make_images(tmp_path / "img", 8)
    job = make_job(table, tmp_path)
    det = detector(
        max_epochs=7,
        accumulate_grad_batches=3,
        gradient_clip_val=0.25,
        early_stopping_patience=2,
        trainer={"sync_batchnorm": True},
    )
    trainer = det._trainer(job, det._hardware(), tmp_path / "ck", "", True)
    assert trainer.max_epochs == 7 and trainer.accumulate_grad_batches == 3
    assert trainer.gradient_clip_val == 0.25
    stop = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
    ckpt = next(cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint))
    assert (stop.monitor, stop.patience, stop.mode) == ("val_roc_auc", 2, "max")
    assert (ckpt.monitor, ckpt.mode, ckpt.save_top_k) == ("val_roc_auc", "max", 1)
    # a value in the trainer config wins over the recipe
    det2 = detector(
        max_epochs=7, accumulate_grad_batches=3, trainer={"max_epochs": 1, "accumulate_grad_batches": 2}
    )
    trainer2 = det2._trainer(job, det2._hardware(), tmp_path / "ck2", "", False)
    assert trainer2.max_epochs == 1 and trainer2.accumulate_grad_batches == 2
    assert not any(isinstance(cb, (EarlyStopping, ModelCheckpoint)) for cb in trainer2.callbacks)


def test_predictor_logged_before_the_backbones_package_still_loads(tmp_path):
    """An old pickle holds ``network`` (a finetune.networks target) and weights under ``backbone.model.``."""
    import pickle

    from fid_bench.backbones.timm import TimmBackbone
    from fid_bench.finetune.detector import FinetunePredictor
    from fid_bench.finetune.module import BinaryNet

    table = make_images(tmp_path / "img", 4)
    torch.manual_seed(0)
    built = TimmBackbone("test_resnet", pretrained=False, image_size=16).build()
    net = BinaryNet(built)
    cfg = {"model_name": "test_resnet", "pretrained": False, "weights": None, "image_size": 16}
    new = FinetunePredictor(
        {"_target_": "fid_bench.backbones.timm.TimmBackbone", **cfg},
        net.state_dict(),
        built.preprocessing.finetune_dict(),
    )
    old_state = dict(new.__getstate__())
    old_state.pop("backbone")
    old_state["network"] = {"_target_": "fid_bench.finetune.networks.timm_network", **cfg}
    old_state["state_dict"] = {
        k.replace("backbone.", "backbone.model.", 1) if k.startswith("backbone.") else k: v
        for k, v in net.state_dict().items()
    }
    old = FinetunePredictor.__new__(FinetunePredictor)
    old.__setstate__(old_state)
    old = pickle.loads(pickle.dumps(old))
    assert old.backbone["_target_"] == "fid_bench.backbones.timm.TimmBackbone"
    paths = table["path"].tolist()
    np.testing.assert_allclose(old.predict_paths(paths), new.predict_paths(paths), atol=1e-6)


def test_flip_test_time_augmentation_scores_an_image_and_its_mirror_alike(tmp_path):
    """``tta_hflip``: eval-mode logits are mirror-invariant and differ from the plain ones;
    training-mode logits are untouched; the detector's test scores and its predictor's agree."""
    from fid_bench.backbones.small_cnn import SmallCNN
    from fid_bench.finetune.detector import FinetunePredictor
    from fid_bench.finetune.module import BinaryNet

    torch.manual_seed(0)
    built = SmallCNN(image_size=16, widths=[4, 8]).build()
    plain, tta = BinaryNet(built), BinaryNet(built, tta_hflip=True)
    tta.load_state_dict(plain.state_dict())
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    plain.eval(), tta.eval()
    with torch.no_grad():
        mirrored = tta(x.flip(3))
        assert torch.allclose(tta(x), mirrored, atol=1e-6)
        assert not torch.allclose(
            plain(x), plain(x.flip(3)), atol=1e-4
        )  # the network itself is not symmetric
        assert torch.allclose(tta(x), 0.5 * (plain(x) + plain(x.flip(3))), atol=1e-6)
    plain.train(), tta.train()
    torch.manual_seed(1)
    a = plain(x)
    torch.manual_seed(1)
    assert torch.allclose(a, tta(x))  # training sees one view only

    table = make_images(tmp_path / "img", 48)
    fold = make_fold(48, 12, 12)
    job = make_job(table, tmp_path)
    det = detector(max_epochs=1, batch_size=16, tta_hflip=True)
    det.setup(job)
    scores = det.fit_predict(job, fold)
    predictor = pickle.loads(pickle.dumps(det.predictor()))
    assert predictor.tta_hflip is True
    test = scores[scores.split == "test"]
    paths = table["path"].iloc[fold.test].tolist()
    np.testing.assert_allclose(predictor.predict_paths(paths), test.score.to_numpy(), atol=1e-5)
    predictor.tta_hflip = False
    predictor._net = None
    assert not np.allclose(predictor.predict_paths(paths), test.score.to_numpy(), atol=1e-5)
    state = predictor.__getstate__()
    state.pop("tta_hflip")  # a model logged before the option existed
    old = FinetunePredictor.__new__(FinetunePredictor)
    old.__setstate__(state)
    assert old.tta_hflip is False
