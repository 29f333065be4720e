"""Which weights a model option needs, read from what its backbone class declares.

``fid-bench weights get`` fetches them and the offline check before a job looks for them; neither
knows any family. A class with ``weight_source()`` (every ``Backbone``) is instantiated from the
``model.backbone`` node (cheap: constructors build no network) and asked. An encoder class that
declares nothing follows the known-file convention (``onnx_files.file_source``), else the model
option's own ``pretrained``/``weights`` keys say whether there was anything to fetch.
"""

from __future__ import annotations

from typing import Any

from fid_bench.backbones.onnx_files import file_source
from fid_bench.backbones.weights import LOCAL_OR_RANDOM, NO_PRETRAINED, WeightSource
from fid_bench.errors import FidBenchError, one_line, user_error


def model_weights(cfg: Any) -> WeightSource:
    """The weight source of a composed config's ``model.backbone`` (bad values: one-line error)."""
    from hydra.utils import get_class, instantiate
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, "model.backbone", default=None)
    if node is None:
        return NO_PRETRAINED
    target = str(node.get("_target_") or "")
    try:
        cls = get_class(target)
    except Exception as err:  # noqa: BLE001 - hydra raises ImportError/ValueError/... by case
        raise FidBenchError(f"model.backbone._target_={target}: cannot import it ({one_line(err)})") from None
    if callable(getattr(cls, "weight_source", None)):
        try:
            return instantiate(node).weight_source()
        except FidBenchError:
            raise
        except Exception as err:  # noqa: BLE001 - Hydra wraps the constructor's own one-line error
            cause = user_error(err)
            raise FidBenchError(str(cause) if cause else f"model.backbone: {one_line(err)}") from None
    declared = file_source(node)
    if declared is not None:
        return declared
    model = cfg.model
    if not model.get("pretrained", False) or model.get("weights"):
        return LOCAL_OR_RANDOM
    return NO_PRETRAINED
