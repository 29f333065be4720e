"""Honest evaluation in a job: audit, intervals, groups, leave-one-group-out, extra sets, perturbations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fid_bench.data.splits import leave_one_group_out
from fid_bench.errors import FidBenchError


def _table(groups: list[str], labels: list[int]) -> pd.DataFrame:
    n = len(groups)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "path": [f"/x/{i}.png" for i in range(n)],
            "label": labels,
            "split": "train",
            "group": groups,
            "sha1": [f"{i:040x}" for i in range(n)],
        }
    )


def test_leave_one_group_out_tests_each_group_with_shared_real_images():
    groups = [""] * 40 + ["gan"] * 20 + ["diffusion"] * 20
    labels = [0] * 40 + [1] * 40
    table = _table(groups, labels)
    folds = leave_one_group_out(table, val_fraction=0.2, test_fraction=0.25, seed=0)
    assert [f.name for f in folds] == ["diffusion", "gan"]
    g = table["group"].to_numpy()
    for fold in folds:
        held = set(np.flatnonzero(g == fold.name))
        assert held <= set(fold.test)  # the whole group is tested
        assert not held & (set(fold.train) | set(fold.val))  # and never trained on
        real_test = [i for i in fold.test if g[i] == ""]
        assert len(real_test) == 10  # 25 % of the shared real rows join every test set
        assert not set(fold.train) & set(fold.test) and not set(fold.val) & set(fold.test)
        other = "gan" if fold.name == "diffusion" else "diffusion"
        assert set(np.flatnonzero(g == other)) <= set(fold.train) | set(fold.val)


def test_leave_one_group_out_never_trains_on_copies_of_test_images():
    """Copies planted across groups (and inside the shared real rows) stay out of train and val."""
    groups = [""] * 40 + ["gan"] * 20 + ["diffusion"] * 20
    labels = [0] * 40 + [1] * 40
    table = _table(groups, labels)
    sha1 = table["sha1"].to_numpy().copy()
    sha1[60:65] = sha1[40:45]  # five diffusion images are byte copies of gan images
    sha1[70] = sha1[50]
    sha1[1] = sha1[0]  # a real photo present twice
    table["sha1"] = sha1
    folds = leave_one_group_out(table, val_fraction=0.2, test_fraction=0.25, seed=0)
    assert len(folds) == 2
    for fold in folds:
        trained = set(sha1[np.concatenate([fold.train, fold.val])])
        tested = set(sha1[fold.test])
        assert not trained & tested, fold.name
        # the copies of the held-out group are tested with it, not dropped from evaluation alone
        copies = {40, 41, 42, 43, 44, 50} if fold.name == "gan" else {60, 61, 62, 63, 64, 70}
        assert copies <= set(fold.test)


def test_group_metrics_roc_auc_equals_a_hand_computation():
    """Each generator's fakes against the real test rows; train rows and other groups stay out."""
    from fid_bench.evaluation.generalisation import group_metrics

    scores = pd.DataFrame(
        {
            "split": ["test"] * 7 + ["train"] * 2,
            "label": [0, 0, 0, 1, 1, 1, 1, 0, 1],
            "group": ["", "", "", "gan", "gan", "diffusion", "diffusion", "", "gan"],
            "score": [0.1, 0.4, 0.35, 0.8, 0.3, 0.2, 0.9, 0.99, 0.01],
        }
    )
    m = group_metrics(scores, threshold=0.5)
    # gan fakes 0.8 and 0.3 against reals 0.1, 0.4, 0.35: 0.8 beats 3, 0.3 beats 1 -> 4 of 6 pairs
    assert m["group/gan/roc_auc"] == pytest.approx(4 / 6)
    # diffusion 0.2 and 0.9: 0.2 beats 1, 0.9 beats 3 -> 4 of 6 as well; 0.2 < 0.5 so accuracy 4 of 5
    assert m["group/diffusion/roc_auc"] == pytest.approx(4 / 6)
    assert m["group/gan/n"] == 5 and m["group/diffusion/n"] == 5
    assert m["group/diffusion/accuracy"] == pytest.approx(4 / 5)


class _EnergyPredictor:
    """Scores an image by its horizontal high-frequency energy, a value blur and JPEG change."""

    threshold = 0.5
    prior = 0.5

    def __init__(self) -> None:
        self.seen: list[str] = []

    @staticmethod
    def score(img: Image.Image) -> float:
        arr = np.asarray(img.convert("L"), dtype=np.float64)
        return float(1.0 - np.exp(-np.abs(np.diff(arr, axis=1)).mean() / 40.0))

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        from fid_bench.data.decode import load_rgb

        self.seen.extend(paths)
        return np.array([self.score(load_rgb(p)) for p in paths])


def test_perturbation_metrics_score_the_perturbed_pixels(tmp_path):
    from fid_bench.data.decode import load_rgb
    from fid_bench.evaluation.generalisation import perturbation_metrics
    from fid_bench.evaluation.metrics import compute_metrics
    from fid_bench.evaluation.perturb import parse_perturbation

    root = _folder_set(tmp_path / "set", n=6)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    rows = pd.DataFrame({"path": paths, "label": [1 if "/fake/" in p else 0 for p in paths]})
    predictor = _EnergyPredictor()
    metrics, curve = perturbation_metrics(["blur1", "jpeg75"], rows, predictor, tmp_path / "work")
    y = rows["label"].to_numpy()
    clean = compute_metrics(y, predictor.predict_paths(paths), 0.5, warn=False)
    for name in ("blur1", "jpeg75"):
        pert = parse_perturbation(name)
        by_hand = np.array([_EnergyPredictor.score(pert(load_rgb(p))) for p in paths])
        want = compute_metrics(y, by_hand, 0.5, warn=False)
        assert metrics[f"{name}/log_loss"] == pytest.approx(want["log_loss"], rel=1e-3)
        assert metrics[f"{name}/log_loss"] != pytest.approx(clean["log_loss"], rel=1e-3)
        assert metrics[f"{name}/roc_auc"] == pytest.approx(want["roc_auc"])
    assert list(curve["perturbation"]) == ["blur1", "jpeg75"]
    assert all(str(tmp_path / "work" / "perturbed") in p for p in predictor.seen[: 2 * len(paths)])


def test_leave_one_group_out_bad_fractions_name_their_key():
    table = _table([""] * 10 + ["gan"] * 5 + ["sd"] * 5, [0] * 10 + [1] * 10)
    with pytest.raises(FidBenchError, match=r"^data\.val_fraction must be in \(0, 1\), got 1\.5$"):
        leave_one_group_out(table, val_fraction=1.5, test_fraction=0.2, seed=0)
    with pytest.raises(FidBenchError, match=r"^data\.test_fraction must be in \(0, 1\), got 0\.0$"):
        leave_one_group_out(table, val_fraction=0.2, test_fraction=0, seed=0)


def test_leave_one_group_out_uses_both_splits_and_missing_groups_are_shared():
    """The data set's own test rows take part; a missing group (NaN) is a shared real row, not a group."""
    table = _table([""] * 40 + ["gan"] * 20 + ["diffusion"] * 20, [0] * 40 + [1] * 40)
    table["group"] = table["group"].replace("", None)
    table.loc[table.index % 2 == 1, "split"] = "test"
    folds = leave_one_group_out(table, val_fraction=0.2, test_fraction=0.25, seed=0)
    assert [f.name for f in folds] == ["diffusion", "gan"]
    for fold in folds:
        assert len(fold.train) + len(fold.val) + len(fold.test) == 80  # every row, own test split included
        assert sum(1 for i in fold.test if i < 40) == 10  # 25 % of the shared real rows


def test_leave_one_group_out_needs_two_named_groups():
    table = _table([""] * 10 + ["gan"] * 10, [0] * 10 + [1] * 10)
    with pytest.raises(FidBenchError, match="at least 2 named groups"):
        leave_one_group_out(table, val_fraction=0.2, test_fraction=0.2, seed=0)


def _folder_set(root: Path, n: int = 12) -> Path:
    """A plain real/fake folder with the demo-like up-sampling fingerprint on the fakes."""
    rng = np.random.default_rng(1)
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            if cls == "fake":
                arr = np.repeat(np.repeat(arr[::2, ::2], 2, axis=0), 2, axis=1)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def _run(compose_cfg, *overrides: str):
    import mlflow

    from fid_bench.jobs.experiment import run_job

    run_job(compose_cfg("model=spectrum", "classifier=logreg", *overrides))
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("demo")
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def test_job_reports_intervals_groups_audit_extra_sets_and_perturbations(compose_cfg, isolated, capsys):
    extra = _folder_set(isolated / "other")
    client, run = _run(
        compose_cfg,
        "eval.bootstrap=200",
        f"eval.extra=[{{name: other, data: folder, root: {extra}}}]",
        "eval.perturb=[jpeg75,blur1]",
    )
    m = run.data.metrics
    assert m["roc_auc_ci_low"] <= m["roc_auc"] <= m["roc_auc_ci_high"]
    assert 0.0 <= m["roc_auc_ci_low"] and m["roc_auc_ci_high"] <= 1.0
    assert m["f1_ci_low"] <= m["f1_ci_high"]
    # the demo carries generator groups: metrics per group on the test rows
    # each generator's fakes are scored against the real test images
    for g in ("upsample_x2", "upsample_x4"):
        assert 0.0 <= m[f"group/{g}/roc_auc"] <= 1.0 and m[f"group/{g}/n"] < m["n_test"]
    assert m["other/n"] == 24 and 0.0 <= m["other/roc_auc"] <= 1.0
    for name in ("jpeg75", "blur1"):
        assert 0.0 <= m[f"{name}/roc_auc"] <= 1.0
        assert m[f"{name}/n"] == m["n_test"]
    assert m["audit/label_conflict_groups"] == 0 and m["audit/leak_test_rows"] == 0
    # the leaderboard shows the honest-evaluation columns next to the in-distribution ones
    from fid_bench.cli import main as cli

    assert cli(["leaderboard", "--experiment", "demo", "--format", "markdown"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| #"))
    for column in ("roc_auc 95% CI", "other/roc_auc", "jpeg75/roc_auc", "blur1/roc_auc", "audit/n_warnings"):
        assert column in header, (column, header)
    robustness = {a.path for a in client.list_artifacts(run.info.run_id, "robustness")}
    assert robustness == {"robustness/robustness.csv", "robustness/robustness.png"}
    assert client.list_artifacts(run.info.run_id, "audit")


def test_extra_set_normalisation_rewrites_images(compose_cfg, isolated):
    extra = _folder_set(isolated / "other")
    _run(
        compose_cfg,
        "eval.bootstrap=0",
        f"eval.extra=[{{name: other, data: folder, root: {extra}}}]",
        "eval.normalise_extra={size: 24, jpeg_quality: 90}",
    )
    written = sorted((isolated / "eval" / "extra" / "other").glob("*.jpg"))
    assert len(written) == 24
    with Image.open(written[0]) as img:
        assert img.size == (24, 24) and img.format == "JPEG"


def test_leave_one_group_out_job_logs_each_held_out_group(compose_cfg):
    _, run = _run(compose_cfg, "cv.leave_one_group_out=true", "eval.bootstrap=0")
    m = run.data.metrics
    assert m["n_folds"] == 3  # the demo's three generators, each held out in turn
    assert {"logo/upsample_x2/roc_auc", "logo/upsample_x4/roc_auc", "logo/upsample_smooth/roc_auc"} <= set(m)


def test_bad_perturbation_and_extra_set_are_one_line_errors(compose_cfg):
    from fid_bench.jobs.experiment import run_job

    with pytest.raises(FidBenchError, match="unknown perturbation"):
        run_job(compose_cfg("eval.perturb=[sharpen3]", "eval.bootstrap=0"))
    with pytest.raises(FidBenchError, match="unknown data"):
        run_job(compose_cfg("eval.extra=[{name: x, data: nope, root: /tmp}]", "eval.bootstrap=0"))


def test_group_metrics_treat_a_missing_group_as_no_group():
    """Real rows whose group is NaN (not "") are the shared reals, not a group called 'nan'."""
    from fid_bench.evaluation.generalisation import group_metrics

    scores = pd.DataFrame(
        {
            "split": ["test"] * 7,
            "label": [0, 0, 0, 1, 1, 1, 1],
            "group": [np.nan, np.nan, np.nan, "gan", "gan", "diffusion", "diffusion"],
            "score": [0.1, 0.4, 0.35, 0.8, 0.3, 0.2, 0.9],
        }
    )
    m = group_metrics(scores, threshold=0.5)
    assert m["group/gan/roc_auc"] == pytest.approx(4 / 6) and m["group/gan/n"] == 5
    assert not any(k.startswith("group/nan/") for k in m)


def test_read_extra_set_honours_its_strict_setting(tmp_path):
    from omegaconf import OmegaConf

    from fid_bench.data.job_inputs import read_extra_set
    from fid_bench.jobs.job_spec import extra_set

    root = _folder_set(tmp_path / "other", n=3)
    (root / "fake" / "broken.png").write_bytes(b"not an image")
    features = OmegaConf.create({"cache_dir": str(tmp_path / "cache")})
    spec = {"name": "other", "data": "folder", "root": str(root)}
    assert len(read_extra_set(extra_set(spec, features))) == 6  # the broken file skipped
    with pytest.raises(FidBenchError, match="broken.png"):
        read_extra_set(extra_set({**spec, "strict": True}, features))


def test_normalise_images_writes_the_asked_jpeg_quality(tmp_path):
    from fid_bench.data.jpeg_quality import estimate_quality
    from fid_bench.evaluation.generalisation import normalise_images

    root = _folder_set(tmp_path / "set", n=1)
    for quality in (30, 95):
        (out,) = normalise_images([str(root / "real" / "0.png")], tmp_path / f"q{quality}", 16, quality)
        with Image.open(out) as img:
            assert img.size == (16, 16) and estimate_quality(img.quantization) == quality


def test_robustness_plot_names_each_family_in_the_legend(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from fid_bench.evaluation.generalisation import robustness_plot

    closed = []
    monkeypatch.setattr(plt, "close", closed.append)  # keep the figure to read its legend
    curve = pd.DataFrame(
        {
            "family": ["jpeg", "jpeg", "blur"],
            "perturbation": ["jpeg75", "jpeg50", "blur1"],
            "severity": [0.25, 0.5, 1.0],
            "roc_auc": [0.8, 0.7, 0.6],
        }
    )
    robustness_plot(curve, 0.9, tmp_path / "r.png")
    (fig,) = closed
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["blur", "jpeg", "clean"]
