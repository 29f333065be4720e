"""docs/EXTENDING.md is tested: each worked example is written out as the guide says (new modules into a
package on ``sys.path``, config files into a folder on ``hydra.searchpath``, ``diff`` blocks applied to a
copy of the package run in a subprocess), a tiny job runs on the demo data on the CPU, and the new part
shows up. Each test also checks that the example touches exactly the number of files its section states."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TINY

GUIDE = REPO / "docs" / "EXTENDING.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.M | re.S)
STATED = re.compile(r"Files to touch: \*\*(\d+)\*\*")


@dataclass(frozen=True)
class Block:
    lang: str
    files: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Example:
    stated: int
    blocks: tuple[Block, ...]

    @property
    def files(self) -> set[str]:
        return {f for b in self.blocks for f in b.files}


def sections() -> dict[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def example(title: str) -> Example:
    body = sections()[title]
    stated = STATED.search(body)
    assert stated, f"section {title!r} states no 'Files to touch: **N**'"
    blocks = []
    for lang, info, text in BLOCK.findall(body):
        m = re.search(r"file=(\S+)", info)
        if m:
            blocks.append(Block(lang, tuple(m.group(1).split(",")), text))
    assert blocks, f"section {title!r} has no block naming its file"
    return Example(int(stated.group(1)), tuple(blocks))


def check_count(ex: Example) -> None:
    """The number of files the example touches is the number the guide states; a diff touches the
    files its info string names, no more."""
    for b in ex.blocks:
        if b.lang == "diff":
            patched = set(re.findall(r"^\+\+\+ b/(\S+)", b.text, re.M))
            assert patched == set(b.files), (patched, b.files)
    assert len(ex.files) == ex.stated, f"touches {sorted(ex.files)}, the guide says {ex.stated}"


def write_overlay(ex: Example, root: Path) -> tuple[Path, Path]:
    """New config files under ``root/conf`` and new modules under ``root/py`` (diffs are not written)."""
    conf, py = root / "conf", root / "py"
    for b in ex.blocks:
        if b.lang == "diff":
            continue
        (path,) = b.files
        if path.startswith("conf/"):
            dest = conf / path[len("conf/") :]
            dest.parent.mkdir(parents=True, exist_ok=True)
        else:
            dest = py / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            folder = dest.parent
            while folder != py:  # every folder of the module a package
                (folder / "__init__.py").touch()
                folder = folder.parent
        dest.write_text(b.text, encoding="utf-8")
    conf.mkdir(parents=True, exist_ok=True)
    return conf, py


def searchpath(conf: Path) -> str:
    return f"hydra.searchpath=[file://{conf}]"


@pytest.fixture
def overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Write an example's new files; its modules import from a fresh ``mypkg`` each test."""

    def _write(ex: Example) -> Path:
        conf, py = write_overlay(ex, tmp_path / "overlay")
        monkeypatch.syspath_prepend(str(py))
        return conf

    yield _write
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def patched_copy(ex: Example, root: Path) -> Path:
    """A copy of the fid_bench package with the example's new modules written and its diffs applied."""
    shutil.copytree(REPO / "fid_bench", root / "fid_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for b in ex.blocks:
        if b.lang == "diff":
            patch = root / "example.diff"
            patch.write_text(b.text, encoding="utf-8")
            proc = subprocess.run(
                ["git", "apply", "-v", str(patch)], cwd=root, capture_output=True, text=True
            )
            assert proc.returncode == 0, f"the guide's diff no longer applies:\n{proc.stderr}"
        else:
            (path,) = b.files
            (root / path).write_text(b.text, encoding="utf-8")
    return root


def run_in_copy(root: Path, script: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def only_run():
    import mlflow

    client = mlflow.MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(exps)
    return run


# ----------------------------------------------------------------------------- the guide itself
def test_every_section_states_its_file_count_and_the_table_agrees() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| \[[^\]]+\]\(#([\w-]+)\) \| (\d+) \|", text, re.M))
    from tests.test_docs import slug

    for title in sections():
        if title == "Glossary" or title.startswith("Glossary"):
            continue
        ex = example(title)
        assert table.get(slug(title)) == str(ex.stated), f"{title}: the table says {table.get(slug(title))}"


def test_the_count_check_catches_a_wrong_count_and_a_diff_touching_more() -> None:
    one = Block("yaml", ("conf/classifier/a.yaml",), "name: a\n")
    check_count(Example(1, (one,)))
    with pytest.raises(AssertionError):
        check_count(Example(2, (one,)))
    sneaky = Block(
        "diff",
        ("fid_bench/cli.py",),
        "--- a/fid_bench/cli.py\n+++ b/fid_bench/cli.py\n+++ b/fid_bench/x.py\n",
    )
    with pytest.raises(AssertionError):
        check_count(Example(1, (sneaky,)))


# ----------------------------------------------------------------------------- config-only examples
def test_a_classifier_is_one_config_file(compose_cfg, overlay) -> None:
    from fid_bench.jobs.experiment import run_job

    ex = example("A classifier")
    check_count(ex)
    conf = overlay(ex)
    run_job(compose_cfg(searchpath(conf), "model=spectrum", "classifier=extra_trees"))
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["classifier"] == "extra_trees"
    assert run.data.params["classifier.estimator._target_"] == "sklearn.ensemble.ExtraTreesClassifier"
    assert 0.0 <= run.data.metrics["roc_auc"] <= 1.0


def tiny_onnx_encoder(path: Path) -> Path:
    """N x 3 x H x W -> the channel means times a fixed matrix (``image_embeds``, N x 4), any H and W."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 10
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixel_values"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["image_embeds"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["n", 4])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def test_an_onnx_encoder_is_one_config_file(compose_cfg, overlay, isolated: Path) -> None:
    from fid_bench.jobs.experiment import run_job

    ex = example("An encoder: an ONNX file")
    check_count(ex)
    conf = overlay(ex)
    tiny_onnx_encoder(isolated / "models" / "my_encoder.onnx")  # where the guide's option looks
    cfg = compose_cfg(searchpath(conf), "model=my_encoder", "classifier=logreg")
    run_job(cfg)
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "my_encoder"
    # the features of the file's encoder were extracted (none were cached before) and cached
    assert run.data.metrics["cache_hit_ratio"] == 0.0
    run_job(cfg)  # a second job reuses them
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [run.info.experiment_id], order_by=["attributes.start_time DESC"]
    )
    assert runs[0].data.metrics["cache_hit_ratio"] == 1.0


def test_a_preset_is_one_config_file(compose_cfg, overlay) -> None:
    ex = example("A preset")
    check_count(ex)
    conf = overlay(ex)
    cfg = compose_cfg(searchpath(conf), "experiment=spectrum_trees", "eval.bootstrap=50")
    assert cfg.model.name == "spectrum" and cfg.classifier.name == "rf"
    assert cfg.classifier.estimator.n_estimators == 50 and cfg.task_name == "spectrum_trees"
    assert cfg.eval.bootstrap == 50  # an override after the preset wins
    from fid_bench.jobs.experiment import run_job

    run_job(cfg)
    assert only_run().data.tags["model"] == "spectrum"


# ----------------------------------------------------------------------------- new modules
def test_a_hand_made_encoder_is_a_module_and_a_config_file(compose_cfg, overlay) -> None:
    from fid_bench.features.encoders import build_encoder
    from fid_bench.jobs.experiment import run_job

    ex = example("An encoder: hand-made")
    check_count(ex)
    conf = overlay(ex)
    cfg = compose_cfg(searchpath(conf), "model=colour_stats", "classifier=logreg")
    run_job(cfg)
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "colour_stats"
    from PIL import Image

    enc = build_encoder(cfg.model.backbone)
    img = Image.new("RGB", (4, 4), (255, 0, 51))
    np.testing.assert_allclose(enc.encode([enc.transform(img)])[0], [1, 0, 0.2, 0, 0, 0], atol=1e-6)


@pytest.mark.slow  # builds a torch network: about 20 s on a loaded two-core machine
def test_a_torch_backbone_family_declares_its_weights(compose_cfg, overlay) -> None:
    from hydra.utils import instantiate

    from fid_bench.backbones.weight_sources import model_weights
    from fid_bench.backbones.weights import HubWeights
    from fid_bench.jobs.experiment import run_job

    ex = example("An encoder: a torch backbone family")
    check_count(ex)
    conf = overlay(ex)
    run_job(compose_cfg(searchpath(conf), "model=tiny_conv", "classifier=logreg"))
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "tiny_conv"
    # `weights get` and the offline check read the family's own declaration
    cfg = compose_cfg(searchpath(conf), "model=tiny_conv", "model.pretrained=true")
    source = model_weights(cfg)
    assert isinstance(source, HubWeights) and source.repo_id == "my-org/tiny-conv"
    problem = source.offline_problem("tiny_conv", "spectrum")
    assert problem and "my-org/tiny-conv" in problem, problem
    assert instantiate(cfg.model.backbone).weight_source() == source


def test_a_data_reader_serves_training_and_predict(compose_cfg, overlay, isolated: Path) -> None:
    from PIL import Image

    from fid_bench.data.readers import read_samples
    from fid_bench.jobs.experiment import run_job

    ex = example("A data reader")
    check_count(ex)
    conf = overlay(ex)
    root = isolated / "listed"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for i in range(40):
        label = i % 2
        pixels = rng.integers(0, 120, (24, 24, 3), dtype=np.uint8) + (120 if label else 0)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "img" / f"{i}.png")
        lines.append(f"img/{i}.png,{label}")
    lines += ["img/40.png,7", "img/41.png,fake", "../outside.png,1"]  # counted skips, no traceback
    (root / "images.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = compose_cfg(
        searchpath(conf), "data=list", f"data.root={root}", "model=spectrum", "classifier=logreg", tiny=False
    )
    run_job(cfg)
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["data"] == "list"
    to_score = read_samples(cfg.data, to_score=True)  # what `predict data=list ...` reads
    assert len(to_score.table) == 40
    assert len(to_score.skipped) == 3
    # the same overrides serve `fid-bench audit` and `fid-bench predict`
    from fid_bench.cli import main

    data = [searchpath(conf), "data=list", f"data.root={root}"]
    assert main(["audit", *data, "--json", str(isolated / "audit.json")]) == 0
    assert (isolated / "audit.json").is_file()
    assert main(["predict", "--run", run.info.run_id, "--out", "scored.csv", *data]) == 0
    import pandas as pd

    scored = pd.read_csv("scored.csv")
    # every listed row gets a score, the skipped ones the training prior (no row is lost)
    assert len(scored) == 43 and scored["score"].between(0, 1).all()
    assert {"img/40.png", "img/41.png", "../outside.png"} <= set(scored["id"])


def test_a_detector_kind_declares_its_track(compose_cfg, overlay) -> None:
    from fid_bench.jobs.experiment import run_job

    ex = example("A detector kind")
    check_count(ex)
    conf = overlay(ex)
    run_job(compose_cfg(searchpath(conf), "classifier=brightness"))
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["track"] == "heuristic" and run.data.tags["classifier"] == "brightness"
    assert 0.0 <= run.data.metrics["roc_auc"] <= 1.0


# ----------------------------------------------------------------------------- edits of the package
JOBS = """
import os, sys
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
import fid_bench
from fid_bench.jobs.experiment import run_job
conf = os.path.join(os.path.dirname(fid_bench.__file__), "conf")
assert conf.startswith({root!r}), conf  # the patched copy, not the worktree
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    for clf in ("logreg", "knn"):
        cfg = compose("config", overrides={tiny!r} + ["model=spectrum", "classifier=" + clf, "eval.bootstrap=200"],
                      return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = os.getcwd()
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        run_job(cfg)
import mlflow
client = mlflow.MlflowClient()
runs = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time ASC"])
for r in runs:
    m = r.data.metrics
    print("METRIC", m["youden_j_ci_low"], m["youden_j"], m["youden_j_ci_high"])
from fid_bench.cli import main
sys.exit(main(["compare", runs[0].info.run_id, runs[1].info.run_id, "--bootstrap", "200", "--out", "cmp"]))
"""


def test_a_metric_is_two_files(tmp_path: Path) -> None:
    ex = example("A metric with its interval and paired test")
    check_count(ex)
    root = patched_copy(ex, tmp_path / "copy")
    out = run_in_copy(root, JOBS.format(root=str(root), tiny=TINY), cwd=tmp_path)
    bounds = [tuple(map(float, line.split()[1:])) for line in out.splitlines() if line.startswith("METRIC")]
    assert len(bounds) == 2
    for low, value, high in bounds:
        assert 0.0 <= low <= value <= high <= 1.0
    paired = (tmp_path / "cmp").glob("*_paired.csv")
    import pandas as pd

    (table,) = [pd.read_csv(p) for p in paired]
    row = table[table["metric"] == "youden_j"]
    assert len(row) == 1 and row["method"].iloc[0] == "paired bootstrap"
    assert 0.0 <= row["p_value"].iloc[0] <= 1.0
    # registered as tabulated: a column of compare's metric table too
    (metrics_table,) = [p for p in (tmp_path / "cmp").glob("*.csv") if not p.name.endswith("_paired.csv")]
    assert "youden_j" in pd.read_csv(metrics_table).columns


def test_a_statistical_test_is_one_file(tmp_path: Path) -> None:
    ex = example("A statistical test")
    check_count(ex)
    root = patched_copy(ex, tmp_path / "copy")
    out = run_in_copy(
        root,
        """
        import numpy as np, pandas as pd
        from fid_bench.evaluation.paired import compare_scores, mcnemar_test
        y = np.array([0, 1] * 20)
        same = mcnemar_test(y, y * 0.8, y * 0.9, 0.5, 0.5)
        assert same.p_value == 1.0 and same.diff == 0.0
        better = mcnemar_test(y, y.astype(float), np.full(40, 0.7), 0.5, 0.5)  # B calls every row generated
        assert better.diff == 0.5 and better.p_value < 1e-4, better
        pairs = pd.DataFrame({"label": y, "score_a": y * 0.9 + 0.05, "score_b": np.linspace(0, 1, 40)})
        print("METHODS", sorted({r.method for r in compare_scores(pairs, 0.5, 0.5, n_boot=50)}))
        """,
        cwd=tmp_path,
    )
    assert "'McNemar'" in out and "'DeLong'" in out


def test_a_command_is_a_module_and_a_line_in_cli(tmp_path: Path) -> None:
    ex = example("A command")
    check_count(ex)
    root = patched_copy(ex, tmp_path / "copy")
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-m", "fid_bench.cli", "metrics", "--headline"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["roc_auc", "maximize"]
    bad = subprocess.run(
        [sys.executable, "-m", "fid_bench.cli", "metrics", "--nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
