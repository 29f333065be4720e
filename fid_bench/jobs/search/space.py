"""Search spaces: ``hparams_search.params`` in the config, turned into Optuna suggestions.

A space maps dotted config keys to distributions::

    params:
      classifier.estimator.learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
      classifier.estimator.num_leaves: {type: int, low: 8, high: 128, log: true}
      classifier.estimator.boosting_type: {type: categorical, choices: [gbdt, dart]}

Every key must already exist in the composed config (a search space overlay may declare a default
for a key the classifier config does not set), so a typo fails before the first trial instead of
silently tuning nothing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    import optuna

_MISSING = object()
_FIELDS = {
    "float": ({"type", "low", "high"}, {"log", "step"}),
    "int": ({"type", "low", "high"}, {"log", "step"}),
    "categorical": ({"type", "choices"}, set()),
}


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))


def _fail(key: str, why: str) -> FidBenchError:
    return FidBenchError(f"hparams_search.params.{key}: {why}")


def _number(key: str, field: str, value: Any, kind: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, f"{field} must be a number, got {value!r}")
    if kind == "int" and not float(value).is_integer():
        raise _fail(key, f"{field} must be an integer for type int, got {value!r}")
    if not math.isfinite(value):
        raise _fail(key, f"{field} must be finite, got {value!r}")
    return int(value) if kind == "int" else float(value)


def parse_param(key: str, spec: Any) -> Param:
    """Validate one ``key: {type: ..., ...}`` entry; every mistake is a one-line FidBenchError."""
    if not isinstance(spec, Mapping):
        raise _fail(key, f"expected a mapping like {{type: float, low: ..., high: ...}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise _fail(key, f"type must be one of {sorted(_FIELDS)}, got {kind!r}")
    required, optional = _FIELDS[kind]
    missing = sorted(required - set(spec))
    if missing:
        raise _fail(key, f"type {kind} needs {missing}")
    unknown = sorted(set(spec) - required - optional)
    if unknown:
        raise _fail(key, f"unknown field(s) {unknown} for type {kind}")

    if kind == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices:
            raise _fail(key, f"choices must be a non-empty list, got {choices!r}")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            # Optuna stores choices as JSON scalars; lists or mappings cannot be choices
            raise _fail(key, f"choices must be numbers, strings, booleans or null, got {bad[0]!r}")
        return Param(key=key, type=kind, choices=tuple(choices))

    low = _number(key, "low", spec["low"], kind)
    high = _number(key, "high", spec["high"], kind)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise _fail(key, f"log must be true or false, got {log!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(key, "step", step, kind)
        if step <= 0:
            raise _fail(key, f"step must be positive, got {step!r}")
        if log:
            raise _fail(key, "step and log cannot be combined")
    if low > high:
        raise _fail(key, f"low ({low}) must not exceed high ({high})")
    if log and low <= 0:
        raise _fail(key, f"log scale needs low > 0, got {low}")
    return Param(key=key, type=kind, low=low, high=high, log=log, step=step)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{a.b: spec}`` and ``{a: {b: spec}}`` alike -> ``[("a.b", spec)]``.

    Dotted keys read best in YAML; nested ones are what a command-line addition such as
    ``+hparams_search.params.classifier.estimator.C={type:float,low:0.1,high:10}`` produces.
    """
    out = []
    for key, node in params.items():
        path = f"{prefix}{key}"
        if (
            isinstance(node, Mapping)
            and node
            and not ("type" in node and not isinstance(node["type"], Mapping))
        ):
            out += _flatten(node, f"{path}.")
        else:
            out.append((path, node))
    return out


def parse_space(cfg: DictConfig) -> list[Param]:
    """All searched parameters of ``cfg.hparams_search.params``, checked against ``cfg``."""
    params = cfg.hparams_search.get("params")
    if params is None or (isinstance(params, DictConfig) and len(params) == 0):
        raise FidBenchError("hparams_search.params is empty: declare at least one parameter to search")
    if not isinstance(params, DictConfig):
        raise FidBenchError(f"hparams_search.params must be a mapping of config keys, got {params!r}")
    space = []
    for key, spec in _flatten(OmegaConf.to_container(params, resolve=True)):
        if key == "hparams_search" or key.startswith("hparams_search."):
            raise _fail(key, "the search cannot tune its own settings")
        node = OmegaConf.select(cfg, key, default=_MISSING)
        if node is _MISSING:
            raise _fail(key, "no such key in the config (declare a default in the search space file)")
        if isinstance(node, (DictConfig, ListConfig)):
            raise _fail(key, "is a config section, not a value; choose one of its keys")
        space.append(parse_param(key, spec))
    return space


def apply_params(cfg: DictConfig, values: Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with each dotted key set to its value (``cfg`` itself is left as is)."""
    out = copy.deepcopy(cfg)
    for key, value in values.items():
        OmegaConf.update(out, key, value, merge=False, force_add=False)
    return out
