"""Where the project's Hydra config lives, and the one way code outside the app composes it.

The config ships inside the package (``fid_bench/conf``; the top-level ``conf/`` of a checkout is a
link to it), so ``pip install .`` carries it and ``python -m fid_bench`` works from any directory.
Users add their own groups or options without editing it, through Hydra's search path:
``python -m fid_bench hydra.searchpath=[file:///my/conf] model=my_model``.

Commands that need the project config outside the Hydra app (``fid-bench audit``, extra data sets of
``eval.extra``) use ``compose`` and ``load_option`` here, never a path of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fid_bench.errors import FidBenchError, UsageError, one_line

CONFIG_NAME = "config"


def conf_dir() -> Path:
    """The folder of the packaged config (``fid_bench/conf``)."""
    return Path(__file__).resolve().parent / "conf"


def group_options(group: str) -> list[str]:
    """The options of a config group, e.g. ``group_options("data") == ["demo", "folder", "kaggle"]``."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


def load_option(group: str, name: str, *, what: str | None = None) -> DictConfig:
    """One option's YAML as it is (no defaults list, no interpolation resolved).

    ``what`` says where the choice was made, for the error message (e.g. ``eval.extra 'shoes'``).
    """
    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        where = f"{what}: " if what else ""
        raise FidBenchError(f"{where}unknown {group}={name!r}; choose one of {group_options(group)}")
    node = OmegaConf.load(path)
    assert isinstance(node, DictConfig)
    return node


def compose(
    overrides: Sequence[str] = (), config_name: str = CONFIG_NAME, config_dir: Path | None = None
) -> DictConfig:
    """The project config with command-line style ``overrides``, as ``python -m fid_bench`` composes it.

    ``config_dir`` replaces the packaged config folder (a user's own copy). Bad overrides (an unknown group option, a mistyped key) become one ``FidBenchError`` line.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir or conf_dir()), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise FidBenchError(f"config: {one_line(err)}") from None


def to_plain(value: Any) -> Any:
    """A config node as plain Python containers (interpolations resolved); anything else unchanged.

    Detectors and readers receive nodes from ``hydra.utils.instantiate`` and keep plain values.
    """
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def unset_values(node: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """Keys holding Hydra's mandatory marker ``???`` (e.g. ``data.root``), without resolving anything.

    OmegaConf's own ``missing_keys`` resolves interpolations on the way and fails on the first one
    that points at a missing value (``data.reader.root: ${..root}``) instead of naming the key.
    """
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    out = []
    for key in keys:
        path = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        if OmegaConf.is_missing(node, key):
            out.append(path)
        elif not OmegaConf.is_interpolation(node, key):
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig):
                out += unset_values(child, f"{path}.")
    return out


def require_set(cfg: DictConfig) -> None:
    """One line naming the mandatory values the command line left unset (before any run starts)."""
    unset = [k for k in unset_values(cfg) if not k.startswith("hydra.")]
    if unset:
        raise UsageError(
            f"{', '.join(unset)} must be set on the command line, e.g. {unset[0]}=... "
            f"({'it has' if len(unset) == 1 else 'they have'} no default)"
        )


#: readers that build their data themselves (their root need not exist before the run)
GENERATED_READERS = ("fid_bench.data.readers.DemoReader",)
#: the reader of data=multi (no data.root of its own)
MULTI_READER = "fid_bench.data.multi.MultiReader"


def require_data_root(cfg: DictConfig) -> None:
    """One line when ``data.root`` names no folder, before any MLflow experiment or run is created
    (a mistyped root would otherwise leave an experiment named after the data set, with one FAILED run).
    """
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "root" not in data or OmegaConf.is_missing(data, "root"):
        return
    target = OmegaConf.select(data, "reader._target_", default="", throw_on_resolution_failure=False)
    if target in GENERATED_READERS:
        return
    if target == MULTI_READER:
        return  # data=multi: each source has its own root, checked by its own reader
    try:
        root = data.root
    except Exception as err:  # noqa: BLE001 - an interpolation that cannot be resolved
        raise FidBenchError(f"data.root: {one_line(err)}") from None
    if root is None or not str(root).strip():
        raise UsageError("data.root is empty; set it to the data set's folder, e.g. data.root=/data/cifake")
    path = Path(str(root)).expanduser()
    if not path.is_absolute():
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            path = Path(HydraConfig.get().runtime.cwd) / path
    if not path.is_dir():
        raise FidBenchError(f"data.root={root}: no such folder (data={data.get('name', '?')})")
