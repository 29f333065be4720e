"""Every option of every config group composes through Hydra and builds its objects.

A YAML that only breaks when somebody picks it (a renamed ``_target_``, a key a search space points
at that no longer exists) fails here first. Objects are built with ``model.pretrained=false``:
networks are constructed with random weights, nothing is downloaded.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fid_bench.config import compose, conf_dir, group_options, load_option
from fid_bench.errors import FidBenchError

GROUPS = ("data", "model", "classifier", "balance", "trainer", "hparams_search", "experiment")


def _compose(*overrides: str) -> DictConfig:
    return compose(["data=demo", "model.pretrained=false", *overrides])


def _targets(node: Any, path: str = "") -> list[tuple[str, DictConfig]]:
    """Every node with a ``_target_`` directly below ``node`` (not nested targets: those are built
    by their parent, e.g. a classifier's estimator)."""
    out = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node.get(key)
            if isinstance(child, DictConfig) and "_target_" in child:
                out.append((f"{path}{key}", child))
    return out


def test_every_group_has_options_and_the_packaged_config_is_the_checkouts() -> None:
    for group in GROUPS:
        assert group_options(group), group
    # conf/ at the top of a checkout is the packaged config, not a copy that could drift
    top = Path(__file__).resolve().parents[1] / "conf"
    assert top.resolve() == conf_dir().resolve()


@pytest.mark.parametrize("option", group_options("data"))
def test_data_options_build_their_reader(option: str, tmp_path: Path) -> None:
    if option == "multi":  # a root per source
        cfg = _compose("data=multi", f"data.sources=[{{name: a, data: folder, root: {tmp_path}}}]")
        reader = instantiate(cfg.data.reader)
        assert callable(reader.read)
        assert Path(str(reader.sources[0]["root"])) == tmp_path
        return
    cfg = _compose(f"data={option}", f"data.root={tmp_path}")
    reader = instantiate(cfg.data.reader)
    assert callable(reader.read)
    assert Path(str(reader.root)) == tmp_path  # the user's root reaches the reader


@pytest.mark.parametrize("option", group_options("model"))
def test_model_options_build_every_object(option: str) -> None:
    cfg = _compose(f"model={option}")
    built = _targets(cfg.model)
    assert built, f"model={option} declares nothing to build"
    for key, node in built:
        obj = instantiate(node)
        assert obj is not None, key


@pytest.mark.parametrize("option", group_options("classifier"))
def test_classifier_options_build_a_detector(option: str) -> None:
    from fid_bench.contract import Detector

    model = "small_cnn" if option == "finetune" else "spectrum"
    cfg = _compose(f"model={model}", f"classifier={option}")
    detector = instantiate(cfg.classifier)
    assert isinstance(detector, Detector)
    assert detector.name == cfg.classifier.name == option


@pytest.mark.parametrize("option", group_options("balance"))
def test_balance_options_build_a_strategy(option: str) -> None:
    import numpy as np

    cfg = _compose(f"balance={option}")
    strategy = instantiate(cfg.balance)
    labels = np.array([0] * 9 + [1] * 3)
    kept = np.asarray(strategy.resample(labels))
    assert kept.size and set(kept.tolist()) <= set(range(labels.size))
    weights = strategy.class_weights(labels)
    # a strategy either changes the rows or weights the classes, never both; "none" does neither
    changes_rows = sorted(kept.tolist()) != list(range(labels.size))
    assert not (changes_rows and weights), option
    assert (option == "none") == (not changes_rows and not weights)


@pytest.mark.parametrize("option", group_options("trainer"))
def test_trainer_options_are_trainer_arguments(option: str) -> None:
    """Every key the finetune detector hands to Lightning is an argument of ``Trainer``."""
    import pytorch_lightning as pl

    from fid_bench.finetune.detector import HARNESS_KEYS

    cfg = _compose(f"trainer={option}", "model=small_cnn")
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    passed = {k for k in cfg.trainer.keys() if k not in HARNESS_KEYS and k != "_target_"}
    assert passed, option
    assert passed <= accepted, sorted(passed - accepted)


@pytest.mark.parametrize("option", group_options("hparams_search"))
def test_search_spaces_point_at_existing_keys(option: str) -> None:
    import optuna

    cfg = _compose(f"hparams_search={option}")
    space = cfg.hparams_search
    assert space.params, f"hparams_search={option} searches nothing"
    for key in space.params:
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", f"{option}: {key}"
    if space.classifier:
        assert cfg.classifier.name == space.classifier
    assert isinstance(instantiate(space.sampler), optuna.samplers.BaseSampler)
    if space.pruner is not None:
        assert isinstance(instantiate(space.pruner), optuna.pruners.BasePruner)


@pytest.mark.parametrize("option", group_options("experiment"))
def test_experiment_presets_compose(option: str) -> None:
    cfg = _compose(f"experiment={option}")
    # a preset is a global overlay: it must leave a complete, buildable job behind
    assert instantiate(cfg.classifier) is not None
    assert OmegaConf.to_container(cfg, resolve=True)


def test_compose_reports_a_bad_option_in_one_line() -> None:
    with pytest.raises(FidBenchError) as err:
        compose(["model=no_such_model"])
    assert "\n" not in str(err.value)
    assert "no_such_model" in str(err.value)
    assert "Config search path" not in str(err.value)


def test_load_option_names_the_choices() -> None:
    assert load_option("data", "folder").reader._target_.endswith("FolderReader")
    with pytest.raises(
        FidBenchError, match=r"unknown data='nope'; choose one of \['demo', 'folder', 'kaggle', 'multi'\]"
    ):
        load_option("data", "nope")


@pytest.mark.parametrize(
    ("overrides", "track", "source"),
    [
        (["model=spectrum"], "features", "config default"),
        (["model=resnet50"], "finetune", "model default"),
        (["model=resnet50", "classifier=knn"], "features", "command line"),
        (["model=spectrum", "classifier=finetune"], "finetune", "command line"),
        (["hparams_search=lightgbm"], "features", "preset"),
    ],
)
def test_run_tags_say_which_track_and_who_chose_the_classifier(
    compose_cfg: Any, overrides: list[str], track: str, source: str
) -> None:
    from fid_bench.jobs.job_spec import JobSpec

    tags = JobSpec.of_config(compose_cfg(*overrides)).run.tags
    assert (tags["track"], tags["classifier_source"]) == (track, source)
