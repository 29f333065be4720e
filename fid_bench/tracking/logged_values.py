"""What MLflow stores: a job's config as params, and Python values as param, tag and metric values.

MLflow limits keys and values (``mlflow.utils.validation``); the limits are repeated here so that
importing this module stays cheap. Keys keep only the characters MLflow accepts, values are
stringified and truncated, so no logging call fails a finished job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from numbers import Number
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000


def param_text(value: Any) -> str:
    """A param's text: None -> "null", booleans in lower case, containers as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_key(key: str) -> str:
    """A key MLflow accepts: word characters, "." "-" " " "/" ":" only, at most ``MAX_KEY_LENGTH``."""
    return truncate(re.sub(r"[^\w.\- /:]", "_", key), MAX_KEY_LENGTH)


def metric_value(value: Any) -> float | None:
    """``value`` as a metric (booleans and numpy scalars included); None when it is not a number."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (Number, np.number)):
        return float(value)
    try:
        return float(np.asarray(value).item())
    except (TypeError, ValueError):
        return None


def resolved_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The job's config as plain containers, interpolations resolved, without the ``hydra`` node."""
    if isinstance(cfg, DictConfig):
        # leave the hydra node out before resolving: its own interpolations (job.num...) may be unset
        job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
        return OmegaConf.to_container(job, resolve=True, throw_on_missing=False)
    container = dict(cfg)
    container.pop("hydra", None)
    return container


def flatten_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, str]:
    """Resolved config as ``{"a.b.c": "value"}``; the ``hydra`` node is left out.

    Values are stringified (None -> "null", lists as JSON) and truncated to MLflow's param limit.
    """
    container = resolved_config(cfg)
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            out[safe_key(prefix)] = truncate(param_text(node), MAX_PARAM_VAL_LENGTH)

    walk("", container)
    return out
