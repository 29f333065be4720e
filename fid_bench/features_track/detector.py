"""The features track (frozen encoder): cached features -> [StandardScaler] -> scikit-learn / LightGBM estimator.

``FeatureDetector`` is what ``conf/classifier/{logreg,knn,rf,gboost,lightgbm}.yaml`` build; it
receives the parts of the config it reads (``encoder: ${model.backbone}``, ``features:
${features}``, see ``conf/classifier/_features.yaml``) and builds estimator and encoder itself.
``setup`` extracts features once per job (through the content-addressed cache, so a sweep over
classifiers and balancings pays for extraction only once); ``fit_predict`` fits a fresh pipeline
per fold on the balanced training rows and scores the untouched validation and test rows.

Class weights reach the estimator in one of two ways, chosen per estimator:

* estimators whose ``fit`` takes ``sample_weight`` (logistic regression, forests, gradient
  boosting, LightGBM) get one weight per training row, routed through the pipeline;
* estimators that do not (kNN) are wrapped in ``ClassWeightedProba``: their predicted class
  probabilities are multiplied by the class weights and renormalised (a prior correction). For a
  (distance-)weighted neighbour vote this is exactly what row weights would mean: every
  neighbour's vote counts ``weight[its class]`` times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from fid_bench.backbones import layers as block_layers
from fid_bench.backbones.weights import file_sha256
from fid_bench.config import to_plain
from fid_bench.contract import FEATURES_TRACK, Detector, Job, Predictor, scores_frame
from fid_bench.data.decode import ImageDecodeError, check_image
from fid_bench.data.samples import LABELLED_SPLITS
from fid_bench.errors import FidBenchError, one_line
from fid_bench.evaluation.metrics import validation_threshold
from fid_bench.features import extract
from fid_bench.features.aligned import with_alignment
from fid_bench.features.augmented import Augment, augmented_config, parse_augment
from fid_bench.features.concat import CONCAT_TARGET, expand_members
from fid_bench.features.encoders import build_encoder

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from fid_bench.data.splits import Fold

log = logging.getLogger(__name__)

POSITIVE = 1  # label of "generated"


class ClassWeightedProba(ClassifierMixin, BaseEstimator):
    """Apply class weights to an estimator that cannot take sample weights, at prediction time.

    ``predict_proba`` returns ``p_c * w_c / sum_k p_k * w_k``. Picklable and clonable like any
    scikit-learn estimator, so the correction travels with the fitted pipeline into predictors.
    """

    def __init__(self, estimator: Any, class_weight: dict[int, float]) -> None:
        self.estimator = estimator
        self.class_weight = class_weight

    def fit(self, X: np.ndarray, y: np.ndarray) -> ClassWeightedProba:
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        self.weights_ = np.array([float(self.class_weight.get(int(c), 1.0)) for c in self.classes_])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        weighted = self.estimator_.predict_proba(X) * self.weights_
        total = weighted.sum(axis=1, keepdims=True)
        # a row with no probability mass anywhere keeps it that way instead of dividing by zero
        return np.divide(weighted, total, out=np.zeros_like(weighted), where=total > 0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def thread_limit(threads: int | None) -> AbstractContextManager[Any]:
    """Cap OpenMP/BLAS threads (threadpoolctl) for a fit or predict; ``None`` = library defaults.

    Measured on a busy 2-core machine: HistGradientBoosting on 2,400 x 287 features took 89 s with
    its default threads and 15 s with one, as spinning OpenMP threads fight other processes.
    LightGBM manages its own pool, so its configs also pass ``n_jobs``.
    """
    if threads is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def _takes_sample_weight(estimator: Any) -> bool:
    from sklearn.utils.validation import has_fit_parameter

    return has_fit_parameter(estimator, "sample_weight")


def _positive_proba(name: str, pipeline: Pipeline, X: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Probability of label 1 for each row of ``X`` (empty in, empty out)."""
    if len(X) == 0:
        return np.empty(0, dtype=np.float64)
    try:
        with thread_limit(threads):
            proba = pipeline.predict_proba(X)
    except Exception as err:  # noqa: BLE001 - estimators raise many types; the user needs one line
        log.debug("predict_proba failed", exc_info=True)
        raise FidBenchError(f"classifier={name}: prediction failed: {one_line(err)}") from err
    col = list(pipeline.classes_).index(POSITIVE)
    return np.asarray(proba[:, col], dtype=np.float64)


def extract_unique(
    encoder: Any,
    paths: Sequence[str],
    sha1s: Sequence[str],
    cache_dir: Path,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """``encoder.extract`` with each distinct image (sha1) extracted once.

    Returns ``(features, inverse, stats)``: one float32 row per distinct image, and for every input
    position the row holding its features (``features[inverse]`` is aligned with ``paths``).
    """
    sha1_arr = np.asarray(sha1s, dtype=object)
    uniq, first, inverse = np.unique(sha1_arr.astype(str), return_index=True, return_inverse=True)
    feats, stats = encoder.extract(
        [paths[i] for i in first], [str(s) for s in uniq], Path(cache_dir), **kwargs
    )
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] != len(uniq):
        raise FidBenchError(
            f"feature extraction returned shape {feats.shape} for {len(uniq)} images; expected ({len(uniq)}, D)"
        )
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
        example = paths[int(first[np.flatnonzero(bad)[0]])]
        raise FidBenchError(
            f"encoder produced NaN or infinite features for {int(bad.sum())} image(s), e.g. {example}"
        )
    return feats, inverse.reshape(-1), dict(stats)


def selected_columns(encoder: Any, cache_dir: Path, dim: int, select: Any) -> list[int]:
    """The columns ``features.select`` keeps of ``encoder``'s cached rows (their block layout)."""
    row_layout = encoder.describe().get("layout") if hasattr(encoder, "describe") else None
    if not row_layout:
        meta = extract.feature_cache(encoder, cache_dir).read_meta() or {}
        row_layout = (meta.get("encoder") or {}).get("layout")
    if not row_layout:
        raise FidBenchError(
            f"features.select={select} needs block features: set model.layers (e.g. all) on an ONNX, "
            "timm or open_clip transformer"
        )
    return block_layers.select_columns(row_layout, dim, select).tolist()


#: the feature normalisations a feature classifier offers (``classifier.normalise``)
NORMALISATIONS = ("auto", "standard", "l2", "none")


def auto_normalisation(encoder: Any) -> str:
    """``normalise=auto`` for ``encoder``: ``l2`` for one learned embedding, else ``standard``."""
    from fid_bench.features.encoders import FrozenEncoder
    from fid_bench.features.onnx import OnnxEncoder

    inner = encoder
    while hasattr(inner, "inner"):  # format alignment wraps the encoder
        inner = inner.inner
    if isinstance(inner, OnnxEncoder):
        return "l2" if inner.layers is None else "standard"
    if isinstance(inner, FrozenEncoder):
        return "l2" if getattr(inner.backbone, "layers", None) is None else "standard"
    return "standard"


class FeatureDetector(Detector):
    """Frozen encoder + cached features + a scikit-learn compatible classifier (see module docstring).

    Args:
        estimator: an unfitted classifier with ``fit`` and ``predict_proba``, or its config node
            (``_target_``: built here); cloned for every fold.
        name: short name for tags, the leaderboard and error messages (``classifier=<name>``).
        normalise: what the features go through before the estimator: ``standard`` (a
            ``StandardScaler`` fitted on the training rows), ``l2`` (each row scaled to unit length,
            as CLIP embeddings are compared), ``none`` (``None``: ``none``), or ``auto``: ``l2`` for
            one learned embedding (an ONNX or torch encoder's output), ``standard`` for anything
            else (hand-made features such as spectrum, whose units differ per feature; several
            encoders or transformer blocks side by side, whose magnitudes differ per part).
        scale: the older switch, kept so older command lines mean what they meant: when set,
            ``True`` means ``normalise=standard`` and ``False`` ``none``, whatever ``normalise`` says.
        threads: cap on the threads fit and predict may use (see ``thread_limit``); ``None`` leaves
            the libraries' defaults. The configs use 1: sweeps get their parallelism from running
            jobs side by side, and oversubscribed OpenMP pools slow down many times over.
        encoder: the ``model.backbone`` node: a backbone (frozen here) or a hand-made encoder;
            ``None`` refuses to run (a model with no frozen encoder).
        features: the ``features`` node: ``batch_size``, ``num_workers``, ``device`` of extraction.
        align: the ``data.align`` node (``{format, quality, size}`` or null): images re-encoded first.
        **unused: other keys under ``classifier`` are ignored with a warning. A model config may
            carry a fine-tuning recipe there (epochs, batch size, ...) that means nothing to a
            feature classifier; mistyped command-line keys never get here (Hydra rejects them).
    """

    track = FEATURES_TRACK

    def __init__(
        self,
        estimator: Any,
        name: str = "classifier",
        scale: bool | None = None,
        threads: int | None = None,
        encoder: Any = None,
        normalise: str | None = None,
        features: Any = None,
        align: Any = None,
        **unused: Any,
    ) -> None:
        if unused:
            log.warning(
                "classifier=%s: ignoring option(s) %s (not used by a feature classifier)",
                name,
                ", ".join(sorted(unused)),
            )
        estimator = to_plain(estimator)
        if isinstance(estimator, dict) and "_target_" in estimator:
            from hydra.utils import instantiate

            estimator = instantiate(estimator)
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
            raise FidBenchError(
                f"classifier={name}: estimator {type(estimator).__name__} needs fit() and predict_proba()"
            )
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise FidBenchError(
                f"classifier={name}: threads must be a positive integer or null, got {threads!r}"
            )
        self.estimator = estimator
        self.name = name
        if scale is not None:
            wanted = "standard" if scale else "none"
            if normalise is not None and str(normalise).lower() != wanted:
                log.info(
                    "classifier=%s: scale=%s means normalise=%s (not %s)", name, scale, wanted, normalise
                )
            normalise = wanted
        normalise = "none" if normalise is None else normalise
        if str(normalise).lower() not in NORMALISATIONS:
            raise FidBenchError(
                f"classifier={name}: normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}"
            )
        self.normalise = str(normalise).lower()
        # what auto resolves to once the encoder is known (setup); standard until then
        self._normalise = "standard" if self.normalise == "auto" else self.normalise
        self.scale = self._normalise == "standard"
        self.threads = threads
        # one row per distinct image, and per table row the index of its features (-1: none);
        # a 100k-row table with duplicates then holds each vector once
        self._features: np.ndarray | None = None
        self._row_index: np.ndarray | None = None
        self._stats: dict[str, float] = {}
        self._encoder_cfg: dict[str, Any] | None = to_plain(encoder)
        self.align = to_plain(align)  # data.align: every image re-encoded the same way first
        feats = to_plain(features) or {}
        self._extract_kwargs: dict[str, Any] = {
            "batch_size": int(feats.get("batch_size", 64)),
            "num_workers": int(feats.get("num_workers", 2)),
            "device": str(feats.get("device", "auto")),
        }
        # features.augment: K altered copies of every training row, extracted per fold (cached)
        self.augment: Augment | None = parse_augment(feats.get("augment"))
        self.select = feats.get("select")
        self._columns: list[int] | None = None
        self._cache_dir: Path | None = None
        self._pipeline: Pipeline | None = None
        self._prior = 0.5
        self._threshold = 0.5
        self._model_files: dict[str, str] = {}

    # -- setup: features for every labelled row, once per job --------------------------------------
    def setup(self, job: Job) -> None:
        if self._encoder_cfg is not None:
            # data.align wraps every encoder, so features (and their cache key) are of aligned images
            self._encoder_cfg = with_alignment(expand_members(self._encoder_cfg), self.align)
        if self.augment is not None and (self._encoder_cfg or {}).get("_target_") == CONCAT_TARGET:
            raise FidBenchError(
                "features.augment does not support model=concat; augment one encoder at a time"
            )
        encoder = build_encoder(self._encoder_cfg)
        if self.normalise == "auto":
            self._normalise = auto_normalisation(encoder)
            log.info("classifier=%s: normalise=auto -> %s", self.name, self._normalise)
        self._cache_dir = Path(job.cache_dir)
        # the model's files as trained on (an ONNX graph): logged, and checked again by predict
        self._model_files = encoder.model_files() if hasattr(encoder, "model_files") else {}
        if self._model_files:
            job.logger.log_params({"model_file_sha256": ",".join(self._model_files.values())})

        table = job.samples.table
        # folds only ever draw labelled rows; predict rows are scored later through the predictor
        use = table["split"].isin(LABELLED_SPLITS).to_numpy() & (table["sha1"].astype(str) != "").to_numpy()
        positions = np.flatnonzero(use)
        if positions.size == 0:
            raise FidBenchError(
                f"classifier={self.name}: no labelled, readable images to extract features from"
            )
        t0 = time.perf_counter()
        feats, inverse, stats = extract_unique(
            encoder,
            table["path"].iloc[positions].astype(str).tolist(),
            table["sha1"].iloc[positions].astype(str).tolist(),
            self._cache_dir,
            **self._extract_kwargs,
        )
        if self.select is not None:
            self._columns = selected_columns(encoder, self._cache_dir, feats.shape[1], self.select)
            feats = np.ascontiguousarray(feats[:, self._columns])
        seconds = time.perf_counter() - t0
        self._features = feats
        self._row_index = np.full(len(table), -1, dtype=np.int64)
        self._row_index[positions] = inverse
        # extraction's own "seconds" is replaced by extract_seconds, which includes deduplication
        self._stats = {
            k: float(v) for k, v in stats.items() if isinstance(v, (int, float, np.number)) and k != "seconds"
        }
        self._stats["extract_seconds"] = seconds
        self._stats["feature_dim"] = float(feats.shape[1])
        log.info(
            "features: %d images, dim %d, cache hit ratio %.2f, %.1f s",
            positions.size,
            feats.shape[1],
            self._stats.get("cache_hit_ratio", float("nan")),
            seconds,
        )

    def extra_metrics(self) -> dict[str, float]:
        return dict(self._stats)

    def _augmented(self, table: pd.DataFrame, train: np.ndarray) -> list[np.ndarray]:
        """Features of each augmented copy of the training rows ``train`` (one array per copy, aligned
        with ``train``). Only training rows ever get here: held-out rows stay as they are."""
        assert self.augment is not None and self._encoder_cfg is not None and self._cache_dir is not None
        paths = table["path"].iloc[train].astype(str).tolist()
        sha1s = table["sha1"].iloc[train].astype(str).tolist()
        out = []
        for copy in range(self.augment.copies):
            encoder = build_encoder(augmented_config(self._encoder_cfg, self.augment, copy))
            feats, inverse, stats = extract_unique(
                encoder, paths, sha1s, self._cache_dir, **self._extract_kwargs
            )
            self._stats["augment_n_extracted"] = self._stats.get("augment_n_extracted", 0.0) + float(
                stats.get("n_extracted", 0.0)
            )
            if self._columns is not None:  # features.select: the same blocks as the plain rows
                feats = feats[:, self._columns]
            out.append(feats[inverse])
        return out

    def features_for(self, rows: np.ndarray, what: str = "fold") -> np.ndarray:
        """Feature matrix for table positions ``rows`` (a new array, one row per position)."""
        if self._features is None or self._row_index is None:
            raise FidBenchError(f"classifier={self.name}: setup(job) must run before fit_predict")
        index = self._row_index[np.asarray(rows, dtype=np.int64)]
        missing = index < 0
        if missing.any():
            raise FidBenchError(
                f"classifier={self.name}: {int(missing.sum())} {what} row(s) have no features "
                "(unlabelled or unreadable images cannot be in a fold)"
            )
        return self._features[index]

    # -- one fold ------------------------------------------------------------------------------------
    def _pipeline_for(self, class_weight: dict[int, float] | None) -> tuple[Pipeline, bool]:
        """A fresh pipeline, and whether row weights go to its ``estimator`` step."""
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import Normalizer, StandardScaler

        est = clone(self.estimator)
        routed = _takes_sample_weight(est)
        if class_weight is not None and not routed:
            est = ClassWeightedProba(est, class_weight)
        steps: list[tuple[str, Any]] = []
        if self._normalise == "standard":
            steps.append(("scale", StandardScaler()))
        elif self._normalise == "l2":
            steps.append(("l2", Normalizer(norm="l2")))
        steps.append(("estimator", est))
        return Pipeline(steps), routed

    def _check_fits(self, n_rows: int) -> None:
        k = getattr(self.estimator, "n_neighbors", None)
        if isinstance(k, (int, np.integer)) and k > n_rows:
            raise FidBenchError(f"classifier={self.name}: n_neighbors={k} > training rows {n_rows}")

    def fit_predict(self, job: Job, fold: Fold) -> pd.DataFrame:
        table = job.samples.table
        train = np.asarray(fold.train, dtype=np.int64)
        self.features_for(train, "training")  # fail on a featureless row before any work
        y_train = table["label"].to_numpy()[train]
        if not np.isin(y_train, (0, 1)).all():
            raise FidBenchError(f"classifier={self.name}: training rows must be labelled 0 or 1")
        y_train = y_train.astype(np.int64)

        balance = job.balance
        idx = np.arange(len(y_train)) if balance is None else np.asarray(balance.resample(y_train))
        if (
            idx.ndim != 1
            or not np.issubdtype(idx.dtype, np.integer)
            or (idx.size and (idx.min() < 0 or idx.max() >= len(y_train)))
        ):
            raise FidBenchError(
                f"balance={getattr(balance, 'name', balance)}: resample() returned invalid positions"
            )
        # one gather straight into the (possibly resampled) training matrix: no intermediate copy
        X_fit, y_fit = self.features_for(train[idx], "training"), y_train[idx]
        if self.augment is not None:
            copies = self._augmented(table, train)
            X_fit = np.concatenate([X_fit, *(c[idx] for c in copies)])
            y_fit = np.tile(y_fit, 1 + len(copies))
        classes = np.unique(y_fit)
        if classes.size < 2:
            raise FidBenchError(
                f"classifier={self.name}: fold {fold.index} trains on {y_fit.size} row(s) of class "
                f"{classes.tolist()} only; both real (0) and generated (1) images are needed"
            )
        class_weight = None if balance is None else balance.class_weights(y_fit)
        sample_weight = None if balance is None else balance.sample_weight(y_fit)

        self._check_fits(len(y_fit))
        pipeline, routed = self._pipeline_for(class_weight)
        fit_params = (
            {"estimator__sample_weight": sample_weight} if routed and sample_weight is not None else {}
        )
        t0 = time.perf_counter()
        try:
            with thread_limit(self.threads):
                pipeline.fit(X_fit, y_fit, **fit_params)
        except Exception as err:  # noqa: BLE001 - sklearn/LightGBM raise many types; the user needs one line
            log.debug("fit failed", exc_info=True)
            raise FidBenchError(
                f"classifier={self.name}: fit failed on fold {fold.index}: {one_line(err)}"
            ) from err
        fit_seconds = time.perf_counter() - t0
        job.logger.log_metrics(
            {"fit_seconds": fit_seconds, "n_train_fit": float(len(y_fit))}, step=fold.index
        )

        frames = []
        for split, rows in (("val", fold.val), ("test", fold.test)):
            rows = np.asarray(rows, dtype=np.int64)
            proba = _positive_proba(self.name, pipeline, self.features_for(rows, split), self.threads)
            frames.append(scores_frame(table, rows, proba, split, fold.index))
        held_out = np.concatenate([f["score"].to_numpy() for f in frames])
        if held_out.size > 1 and np.ptp(held_out) == 0:
            # e.g. boosting with fewer training rows than its minimum leaf size: no split at all
            log.warning(
                "classifier=%s: fold %d gives every held-out row the same score %.4g (%d training rows); "
                "the model learned nothing",
                self.name,
                fold.index,
                held_out[0],
                len(y_fit),
            )
        self._pipeline = pipeline
        self._threshold = validation_threshold(frames[0])
        # the share of generated images as the data has it (before balancing): the honest guess
        # for an image the predictor cannot read
        self._prior = float(y_train.mean())
        return pd.concat(frames, ignore_index=True)

    def predictor(self) -> FeaturePredictor:
        if self._pipeline is None or self._encoder_cfg is None or self._cache_dir is None:
            raise FidBenchError(f"classifier={self.name}: no fitted model yet; run fit_predict first")
        return FeaturePredictor(
            encoder_cfg=self._encoder_cfg,
            pipeline=self._pipeline,
            cache_dir=self._cache_dir,
            prior=self._prior,
            threshold=self._threshold,
            name=self.name,
            threads=self.threads,
            columns=self._columns,
            model_files=self._model_files,
            **self._extract_kwargs,
        )


#: encoder targets stored by models logged before ``fid_bench.backbones`` existed -> today's
_LEGACY_ENCODERS = {
    "fid_bench.features.encoders.SpectrumEncoder": "fid_bench.features.spectrum.SpectrumEncoder",
    "fid_bench.features.encoders.TimmEncoder": "fid_bench.backbones.timm.TimmBackbone",
    "fid_bench.features.encoders.OpenClipEncoder": "fid_bench.backbones.open_clip.OpenClipBackbone",
}


class FeaturePredictor(Predictor):
    """A fitted feature pipeline plus the encoder *config* (weights are loaded on first use).

    ``threshold`` is the F1-maximising threshold on the last fold's validation rows (0.5 when
    undefined), the same rule as the ``threshold`` metric; a caller may overwrite the attribute. ``unreadable`` lists ``(path, reason)`` for images the last
    ``predict_paths`` could not read; they were given ``prior``.
    """

    def __init__(
        self,
        encoder_cfg: dict[str, Any],
        pipeline: Pipeline,
        cache_dir: str | Path,
        *,
        threshold: float = 0.5,
        prior: float = 0.5,
        name: str = "classifier",
        threads: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        device: str = "auto",
        columns: list[int] | None = None,
        model_files: dict[str, str] | None = None,
    ) -> None:
        self.encoder_cfg = dict(encoder_cfg)
        self.columns = columns
        #: ``{path: sha256}`` of the encoder's files at training time (``check_files``)
        self.model_files = dict(model_files or {})
        self.pipeline = pipeline
        self.cache_dir = str(cache_dir)
        self.threshold = float(threshold)
        self.prior = float(prior)
        self.name = name
        self.threads = threads
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.device = device
        self.unreadable: list[tuple[str, str]] = []
        self._encoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # never pickle a loaded network: the config rebuilds it where the predictor is used
        state = dict(self.__dict__)
        state["_encoder"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # models logged before the backbones package name the encoder classes that built them
        cfg = dict(state.get("encoder_cfg") or {})
        if cfg.get("_target_") in _LEGACY_ENCODERS:
            cfg["_target_"] = _LEGACY_ENCODERS[cfg["_target_"]]
            if not cfg["_target_"].endswith("SpectrumEncoder"):
                cfg = {
                    k: v for k, v in cfg.items() if k not in ("amp", "init_seed")
                }  # frozen-encoder defaults
            state = {**state, "encoder_cfg": cfg}
        self.__dict__.update(state)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            self._encoder = build_encoder(self.encoder_cfg)
        return self._encoder

    def check_files(self) -> None:
        """Refuse, in one line naming both digests, an encoder file that is not the one trained on
        (an ONNX graph replaced at its path would score with other features and no warning)."""
        for path, logged in getattr(self, "model_files", {}).items():
            try:
                now = file_sha256(path)
            except OSError as err:
                raise FidBenchError(f"model file {path} of the run is unreadable: {err.strerror}") from None
            if now != logged:
                raise FidBenchError(
                    f"model file {path} has sha256 {now}, not the sha256 {logged} logged with the run "
                    "(the file was replaced since training; restore it or train again)"
                )

    def predict_paths(self, paths: list[str]) -> np.ndarray:

        paths = [str(p) for p in paths]
        scores = np.full(len(paths), self.prior, dtype=np.float64)
        self.unreadable = []
        ok, ok_sha1 = [], []
        for i, path in enumerate(paths):
            try:
                info = check_image(path)
            except (ImageDecodeError, OSError) as err:  # OSError: e.g. a name too long for the filesystem
                self.unreadable.append((path, one_line(err)))
                continue
            ok.append(i)
            ok_sha1.append(info.sha1)
        if self.unreadable:
            log.warning(
                "%d of %d image(s) unreadable, scored with the training prior %.3f; first: %s",
                len(self.unreadable),
                len(paths),
                self.prior,
                self.unreadable[0][1],
            )
        if ok:
            feats, inverse, _ = extract_unique(
                self.encoder,
                [paths[i] for i in ok],
                ok_sha1,
                Path(self.cache_dir),
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                device=self.device,
            )
            if getattr(self, "columns", None) is not None:  # features.select (absent in older pickles)
                feats = feats[:, self.columns]
            scores[ok] = _positive_proba(self.name, self.pipeline, feats, self.threads)[inverse]
        return scores

    def predict_labels(self, paths: list[str]) -> np.ndarray:
        """1 (generated) where the score reaches ``threshold``, else 0."""
        return (self.predict_paths(paths) >= self.threshold).astype(np.int64)
