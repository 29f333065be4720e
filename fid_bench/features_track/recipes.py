"""Several feature recipes of one frozen encoder in one detector, their log-odds averaged (``classifier=recipes``).

Each member is a ``FeatureDetector`` built from the run's own classifier settings with a few of them
replaced: ``select`` (which cached blocks), ``augment`` (which training-time alterations), ``normalise``,
``estimator`` keys (e.g. ``{C: 0.05}``) and ``encoder`` keys (e.g. ``{layers: null}`` for the
encoder's own output). Members trained on differently altered copies of the same images err on
different held-out sources, so their mean log-odds generalise better than any one of them
(docs/BENCHMARKS.md, "Recipe ensembles"). Every member extracts through the feature cache, so
members sharing an encoder and a block layout share one extraction.

The combination needs no fitting: the score of a row is the sigmoid of the mean of the members'
log-odds; the threshold is chosen on the validation rows like any feature classifier's.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fid_bench.config import to_plain
from fid_bench.contract import FEATURES_TRACK, Detector, Job, Predictor
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.metrics import validation_threshold
from fid_bench.features_track.detector import FeatureDetector

if TYPE_CHECKING:
    from fid_bench.data.splits import Fold

log = logging.getLogger(__name__)

#: keys a member may set; anything else is a typo and refused in one line
MEMBER_KEYS = ("name", "select", "augment", "normalise", "estimator", "encoder")
#: probabilities are clipped to [EPS, 1 - EPS] before taking log-odds
EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def mean_logit(scores: Sequence[np.ndarray]) -> np.ndarray:
    """The sigmoid of the members' mean log-odds (one probability per row)."""
    z = np.mean([logit(s) for s in scores], axis=0)
    return 1.0 / (1.0 + np.exp(-z))


def _merged(base: Any, extra: Any) -> Any:
    """``base`` with the keys of ``extra`` replaced (one level deep, as a member's overrides are)."""
    if extra is None:
        return copy.deepcopy(base)
    if not isinstance(extra, Mapping):
        raise FidBenchError(f"classifier=recipes: member overrides must be a mapping, got {extra!r}")
    out = dict(copy.deepcopy(base) or {})
    out.update(copy.deepcopy(dict(extra)))
    return out


def parse_members(members: Any) -> list[dict[str, Any]]:
    """``classifier.members`` checked: a list of at least two mappings with known keys only."""
    members = to_plain(members)
    if not isinstance(members, list) or len(members) < 2:
        raise FidBenchError(
            "classifier=recipes needs classifier.members, a list of at least two recipes such as "
            "[{select: ['6:cls']}, {encoder: {layers: null}}]"
        )
    out = []
    for i, member in enumerate(members):
        if not isinstance(member, dict):
            raise FidBenchError(f"classifier.members[{i}] must be a mapping, got {member!r}")
        unknown = sorted(set(member) - set(MEMBER_KEYS))
        if unknown:
            raise FidBenchError(
                f"classifier.members[{i}]: unknown key(s) {', '.join(unknown)}; "
                f"a member may set {', '.join(MEMBER_KEYS)}"
            )
        out.append(dict(member))
    return out


class RecipeEnsemble(Detector):
    """Members built from the shared settings plus each member's overrides (see the module docstring).

    Args:
        members: the recipes, each a mapping of ``MEMBER_KEYS``; at least two.
        estimator, normalise, threads, encoder, features, align, name: the shared settings, as
            ``FeatureDetector`` takes them; a member's ``estimator`` and ``encoder`` keys replace
            the shared ones, its ``select``/``augment`` replace ``features.select``/``features.augment``.
    """

    track = FEATURES_TRACK

    def __init__(
        self,
        members: Any,
        estimator: Any,
        name: str = "recipes",
        normalise: str | None = "standard",
        threads: int | None = None,
        encoder: Any = None,
        features: Any = None,
        align: Any = None,
        scale: bool | None = None,
        **unused: Any,
    ) -> None:
        if unused:
            log.warning(
                "classifier=%s: ignoring option(s) %s (not used by a recipe ensemble)",
                name,
                ", ".join(sorted(unused)),
            )
        self.name = name
        self.specs = parse_members(members)
        base_estimator = to_plain(estimator)
        base_encoder = to_plain(encoder)
        base_features = to_plain(features) or {}
        self.member_names: list[str] = []
        self.members: list[FeatureDetector] = []
        for i, spec in enumerate(self.specs):
            feats = dict(base_features)
            for key in ("select", "augment"):
                if key in spec:
                    feats[key] = copy.deepcopy(spec[key])
            shared_seed = (base_features.get("augment") or {}).get("seed")
            if isinstance(feats.get("augment"), dict) and shared_seed is not None:
                # a member's alterations are seeded like the run's own (features.augment.seed)
                feats["augment"].setdefault("seed", shared_seed)
            label = str(spec.get("name") or f"m{i}")
            self.member_names.append(label)
            self.members.append(
                FeatureDetector(
                    estimator=_merged(base_estimator, spec.get("estimator")),
                    name=f"{name}[{label}]",
                    normalise=spec.get("normalise", normalise),
                    scale=scale,
                    threads=threads,
                    encoder=_merged(base_encoder, spec.get("encoder")) if base_encoder is not None else None,
                    features=feats,
                    align=align,
                )
            )
        if len(set(self.member_names)) != len(self.member_names):
            raise FidBenchError(f"classifier=recipes: member names must be unique, got {self.member_names}")
        self._threshold = 0.5

    def setup(self, job: Job) -> None:
        for member in self.members:
            member.setup(job)

    def fit_predict(self, job: Job, fold: Fold) -> pd.DataFrame:
        frames = [member.fit_predict(job, fold) for member in self.members]
        first = frames[0]
        for name, frame in zip(self.member_names[1:], frames[1:], strict=True):
            if not (frame["id"].to_numpy() == first["id"].to_numpy()).all():
                raise FidBenchError(f"classifier=recipes: member {name} scored other rows than the first")
        out = first.copy()
        out["score"] = mean_logit([f["score"].to_numpy() for f in frames])
        self._threshold = validation_threshold(out[out["split"] == "val"])
        return out

    def predictor(self) -> RecipePredictor:
        return RecipePredictor(
            [m.predictor() for m in self.members], names=self.member_names, threshold=self._threshold
        )

    def extra_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, member in zip(self.member_names, self.members, strict=True):
            stats = member.extra_metrics()
            out.update({f"recipes/{name}/{k}": v for k, v in stats.items()})
            for key in ("n_extracted", "augment_n_extracted", "extract_seconds"):
                if key in stats:
                    out[key] = out.get(key, 0.0) + float(stats[key])
        return out


class RecipePredictor(Predictor):
    """The members' predictors, their log-odds averaged (picklable, logged as the run's model)."""

    def __init__(self, members: Sequence[Predictor], *, names: Sequence[str], threshold: float = 0.5) -> None:
        self.members = list(members)
        self.names = list(names)
        self.threshold = float(threshold)
        self.prior = float(np.mean([float(getattr(m, "prior", 0.5)) for m in self.members]))

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        if not paths:
            return np.empty(0, dtype=np.float64)
        return mean_logit([np.asarray(m.predict_paths(list(paths)), dtype=np.float64) for m in self.members])

    def predict_labels(self, paths: list[str]) -> np.ndarray:
        return (self.predict_paths(paths) >= self.threshold).astype(np.int64)

    def check_files(self) -> None:
        for member in self.members:
            if hasattr(member, "check_files"):
                member.check_files()
