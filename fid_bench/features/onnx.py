"""A frozen encoder that runs an ONNX file with ONNX Runtime: fast CPU inference, no torch involved.

``OnnxEncoder`` implements the encoder contract extraction uses (``fid_bench.features.encoders``):

* ``transform`` (DataLoader workers): decode-side preprocessing in PIL and numpy, as declared in
  config -- resize (``shortest`` side to ``image_size / crop_pct`` then a centre crop, ``squash``
  to a square, or ``longest`` side then zero padding) with a PIL filter. It returns ``uint8
  [H, W, 3]``, a quarter of the float tensor, to ship from a worker.
* ``resize=native``: no down-scaling at all (resizing erases the traces generators leave in the
  pixels); ``crops`` windows of the input size cut from the original pixels, on an even ``grid``
  over the image or at ``random`` positions (seeded by ``crop_seed`` and the image's pixels, so
  the same image always gets the same crops), their features averaged into one row (one cached
  vector per image, so every classifier and ``features.select`` work unchanged). An image whose
  shorter side is below the input size is first resized up to it (aspect kept): padding would add
  borders no real photo has, a cue a detector could learn instead. The windows come from
  ``fid_bench.backbones.native_crops``, which the torch encoders use too.
* ``encode`` (main process): scaling by ``mean``/``std`` and the session, in chunks of
  ``batch_size``. The session is created on first use in the process that encodes, never in
  workers, and never pickled (a predictor logged to MLflow carries the config, not the session).

Input and output are found in the file: the single image input (``N x 3 x H x W``); as output the
one named ``output`` when given, else one whose name contains ``embed`` (``image_embeds``), else
the first 2-D output. ``token=cls`` (or ``mean``) takes the first hidden-state output
(``N x T x D``) instead and keeps its first token (or the mean over tokens). ``expose`` names inner
tensors of the graph to return instead of its own outputs (e.g. a backbone's hidden states under a
head): the session then runs a cached copy of the file cut at them (``fid_bench.backbones.onnx_graph``).

``layers`` (``all`` or block indices) takes transformer block outputs instead, pooled by ``pool``
(``cls``, ``mean`` of the tokens after the first, or ``both``; see ``fid_bench.backbones.layers``):
the blocks are found in the graph and exposed as outputs of a derived file in the weights cache
(``fid_bench.features.onnx_layers``), and one session run gives them all.

The cache identity is the file's sha256 (for a known file, its pinned digest, so a fully cached job
needs neither the file nor onnxruntime) + the preprocessing + the input/output choice, so features
of different files, preprocessing or outputs never mix. Execution providers: CPU by default, CUDA
when extraction runs on a GPU; ``providers=[tensorrt, cuda, cpu]`` asks for others, and one the
installed onnxruntime does not offer is left out with one warning line.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.backbones import layers as block_layers
from fid_bench.backbones import onnx_files
from fid_bench.backbones.base import lib_version
from fid_bench.backbones.native_crops import crop_spec, native_windows
from fid_bench.backbones.onnx_graph import UINT8_INPUT
from fid_bench.errors import FidBenchError, one_line
from fid_bench.features.encoders import Encoder

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: OpenAI CLIP's normalisation (the defaults: the known files are CLIP towers)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: images per session call when ``model.batch_size`` is null: one for a graph that quantises its
#: activations at run time (their scale is taken over the whole batch, so with more images an
#: image's features depend on its batch-mates: min cosine 0.964-0.974 against one at a time on the
#: CLIP int8 file), else 32; one per call costs that file about 11 % of its speed on the CPU
#: (docs/BENCHMARKS.md, "Session batch size")
AUTO_BATCH = {"dynamic": 1, "other": 32}
RESIZE_MODES = ("shortest", "squash", "longest", "native")
TOKENS = (None, "cls", "mean")
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
#: key of the ONNX metadata entry where ``fid-bench export-onnx`` records the preprocessing
PREPROCESS_META = "fid_bench.preprocess"
#: ``model.graph_optimization`` -> onnxruntime's GraphOptimizationLevel member
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def preprocess_config(
    image_size: int,
    resize: str,
    crop_pct: float,
    interpolation: str,
    mean: Sequence[float],
    std: Sequence[float],
    crops: int = 1,
    crop_mode: str = "grid",
    crop_seed: int = 0,
    draft: bool = False,
) -> dict[str, Any]:
    """The preprocessing as one checked, JSON-ready dict (identity, metadata, export).

    The crop settings are part of it only with ``resize=native`` (other modes' dicts, hence the
    identities of their features, are what they were before native scoring existed); ``draft`` only
    when on (reduced-scale JPEG decoding changes the pixels, so it keys its own features)."""
    try:
        size = int(image_size)
        pct = float(crop_pct)
        mean_l = [float(v) for v in mean]
        std_l = [float(v) for v in std]
    except (TypeError, ValueError):
        raise FidBenchError(
            f"model: image_size, crop_pct, mean and std must be numbers, got "
            f"{image_size!r}, {crop_pct!r}, {mean!r}, {std!r}"
        ) from None
    if size < 1 or size != image_size:
        raise FidBenchError(f"model.image_size must be a positive integer, got {image_size!r}")
    if resize not in RESIZE_MODES:
        raise FidBenchError(f"model.resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if not 0.0 < pct <= 1.0:
        raise FidBenchError(f"model.crop_pct must be in (0, 1], got {crop_pct!r}")
    if str(interpolation) not in _INTERPOLATIONS:
        raise FidBenchError(
            f"model.interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}"
        )
    if len(mean_l) != 3 or len(std_l) != 3 or min(std_l) <= 0:
        raise FidBenchError(f"model.mean and model.std need 3 values each (std > 0), got {mean!r}, {std!r}")
    out = {
        "image_size": size,
        "resize": resize,
        "crop_pct": pct,
        "interpolation": str(interpolation),
        "mean": mean_l,
        "std": std_l,
    }
    if resize == "native":
        out.update(crop_spec(crops, crop_mode, crop_seed))
    if draft:
        if resize == "native":
            raise FidBenchError(
                "model.draft needs a resize that scales down; resize=native keeps every pixel"
            )
        out["draft"] = True
    return out


def draft_size(pp: dict[str, Any]) -> tuple[int, int] | None:
    """The smallest decoded size the preprocessing needs (both sides), when ``draft`` is on.

    A JPEG can be decoded at 1/2, 1/4 or 1/8 scale (the DCT scaled, far less work than a full decode
    and resize); Pillow picks the largest reduction whose result is still at least this size on both
    sides, so the resize that follows only ever scales down, as it does from the full image."""
    if not pp.get("draft"):
        return None
    side = math.floor(pp["image_size"] / pp["crop_pct"]) if pp["resize"] == "shortest" else pp["image_size"]
    return side, side


def preprocess_image(img: Image.Image, pp: dict[str, Any]) -> np.ndarray:
    """``img`` resized and cropped as ``pp`` says: ``uint8 [size, size, 3]``."""
    from PIL import Image as PILImage

    size = pp["image_size"]
    resample = getattr(PILImage.Resampling, pp["interpolation"].upper())
    img = img.convert("RGB")
    w, h = img.size
    if pp["resize"] == "native":  # windows of the original pixels (fid_bench.backbones.native_crops)
        return native_windows(img, size, pp, pp["interpolation"])
    if pp["resize"] == "squash":
        img = img.resize((size, size), resample)
    elif pp["resize"] == "shortest":
        # sizes and offsets rounded as torchvision's Resize and CenterCrop round them (which timm and
        # open_clip use), so an exported encoder sees the pixels its torch original saw
        short = math.floor(size / pp["crop_pct"])  # timm's crop_pct: resize beyond the crop, then cut
        if w <= h:
            nw, nh = short, int(short * h / w)
        else:
            nw, nh = int(short * w / h), short
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample)
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    else:  # longest side to size, the rest padded with zeros (as open_clip's "longest" mode)
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = PILImage.new("RGB", (size, size))
        canvas.paste(img.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
        img = canvas
    return np.asarray(img, dtype=np.uint8)


class OnnxEncoder(Encoder):
    """Any ONNX image encoder under ONNX Runtime (see the module docstring).

    Args:
        path: the ``.onnx`` file; wins over ``file``.
        file: a known file's name (``fid_bench.backbones.onnx_files.KNOWN``), fetched into
            ``weights_dir`` on first use unless fetching is off.
        weights_dir: the weights cache (``None``: ``onnx_files.default_weights_dir()``).
        input_name / output: names in the graph; ``None`` auto-detects.
        token: ``cls`` or ``mean`` to pool a hidden-state output ``N x T x D``; ``None`` uses a 2-D output.
        layers: ``None`` (the output above), ``all`` or block indices: transformer block outputs instead.
        pool: how ``layers`` are pooled: ``cls``, ``mean`` (tokens after the first) or ``both``.
        expose: inner tensors of the graph made its outputs (a cached cut copy of the file runs).
        image_size, resize, crop_pct, interpolation, mean, std: the preprocessing.
        providers: execution providers by name or alias (``cpu``, ``cuda``, ``tensorrt``);
            ``None``: CUDA then CPU when extraction runs on a GPU, else CPU.
        threads: ONNX Runtime intra-op threads (``None``: its default, one per core).
        allow_spinning: let idle intra-op threads spin; off by default because spinning threads
            compete with the DataLoader workers that decode images on the same cores.
        batch_size: images per ``session.run`` call; ``None``: ``AUTO_BATCH`` (1 for a graph that
            quantises activations at run time, else 32).
        fuse_normalise: run a cached copy of the graph that takes the ``uint8`` pixels and normalises
            them itself (``onnx_graph.with_uint8_input``): the same features, no per-batch numpy work.
        graph_optimization: ONNX Runtime's graph optimisation level (``disable``, ``basic``,
            ``extended``, ``all``); see docs/BENCHMARKS.md for the measurements behind the defaults.
        draft: decode JPEGs at a reduced scale (1/2 to 1/8) when the input size allows it
            (``draft_size``); changes the pixels slightly, so it is part of the identity when on.
        quantise: ``dynamic`` or ``static``: run a checked int8 copy of the file
            (``fid_bench.features.onnx_quantise``); the method joins the identity (with the
            onnxruntime version for ``dynamic``, the copy's content hash for ``static``).
    """

    version = 1
    #: ``transform`` needs only the config: extraction starts decoding while the session is created
    transform_before_load = True

    def __init__(
        self,
        path: str | None = None,
        file: str | None = None,
        weights_dir: str | None = None,
        input_name: str | None = None,
        output: str | None = None,
        token: str | None = None,
        expose: Sequence[str] | None = None,
        image_size: int = 224,
        resize: str = "shortest",
        crop_pct: float = 1.0,
        interpolation: str = "bicubic",
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        allow_spinning: bool = False,
        batch_size: int | None = None,
        layers: Any = None,
        pool: Any = "cls",
        crops: int = 1,
        crop_mode: str = "grid",
        crop_seed: int = 0,
        fuse_normalise: bool = True,
        graph_optimization: str = "all",
        draft: bool = False,
        quantise: str | None = None,
    ) -> None:
        super().__init__()
        if file and not path:
            onnx_files.known(str(file))  # an unknown name fails now, in one line
        self.path = str(path) if path else None
        self.file = str(file) if file else None
        self.weights_dir = str(weights_dir) if weights_dir else None
        self.input_name = input_name or None
        self.output = output or None
        if token not in TOKENS:
            raise FidBenchError(f"model.token must be null, cls or mean, got {token!r}")
        self.token = token
        self.layers = block_layers.layer_spec(layers)
        self.pools = block_layers.pool_spec(pool)
        if self.layers is not None and (self.token or self.output):
            raise FidBenchError("model.layers replaces model.token and model.output: set those to null")
        self.preprocess = preprocess_config(
            image_size, resize, crop_pct, interpolation, mean, std, crops, crop_mode, crop_seed, draft
        )
        self.draft_size = draft_size(self.preprocess)
        # the same float32 operations in the session instead of numpy: the features do not change
        # (tests/test_onnx_speed.py compares them), so it is not part of the identity
        self.fuse_normalise = bool(fuse_normalise)
        if str(graph_optimization) not in GRAPH_OPTIMIZATION:
            raise FidBenchError(
                f"model.graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION)}, got {graph_optimization!r}"
            )
        self.graph_optimization = str(graph_optimization)
        if quantise not in (None, "dynamic", "static"):
            raise FidBenchError(f"model.quantise must be null, dynamic or static, got {quantise!r}")
        self.quantise = quantise
        if isinstance(expose, str):
            expose = [expose]
        self.expose = [str(e) for e in expose] if expose else None
        if self.expose and self.layers is not None:
            # the blocks are found in (and keyed by) the source graph, not in a cut copy of it
            raise FidBenchError("model.layers and model.expose cannot be combined: set one of them to null")
        self.providers = [str(p) for p in providers] if providers else None
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise FidBenchError(f"model.threads must be a positive integer or null, got {threads!r}")
        self.threads = int(threads) if threads is not None else None
        self.allow_spinning = bool(allow_spinning)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise FidBenchError(
                f"model.batch_size must be a positive integer or null (auto), got {batch_size!r}"
            )
        self.batch_size = batch_size
        self._io: dict[str, Any] = {}
        mean_a = np.asarray(self.preprocess["mean"], dtype=np.float32)
        std_a = np.asarray(self.preprocess["std"], dtype=np.float32)
        # (x / 255 - mean) / std as one multiply-add per pixel
        self._scale = (1.0 / (255.0 * std_a)).astype(np.float32)
        self._offset = (-mean_a / std_a).astype(np.float32)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an encoder pickled before these settings existed: the defaults, which keep its features
        defaults = {
            "fuse_normalise": True,
            "graph_optimization": "all",
            "quantise": None,
            "draft_size": None,
        }
        self.__dict__.update({**defaults, **state})

    # -- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"onnx:{self.file}" if self.file and not self.path else f"onnx:{Path(self.path or '').name}"

    @property
    def identity_name(self) -> str:
        # content addressed: the same file under another name, path or preset shares its features
        return f"onnx:{self.file_sha256()[:12]}"

    def file_path(self) -> Path:
        """The file the session runs: the source, or its cached copy cut at ``expose``."""
        source = self.source_path()
        if not self.expose:
            return source
        from fid_bench.backbones.onnx_graph import expose

        root = self.weights_dir or onnx_files.default_weights_dir()
        return expose(source, self.expose, self.file_sha256(), root)

    def source_path(self) -> Path:
        """The ONNX file: ``path``, or the known file in the weights cache (fetched when allowed)."""
        if self.path:
            p = Path(self.path).expanduser()
            if not p.is_file():
                raise FidBenchError(f"model.path={self.path}: no such ONNX file")
            return p.resolve()
        if not self.file:
            raise FidBenchError("model=onnx needs the file: model.path=FILE.onnx")
        return onnx_files.ensure(self.file, self.weights_dir)

    def file_sha256(self) -> str:
        """The file's sha256: pinned for a known file (checked on load), hashed once per process otherwise."""
        if self.file and not self.path:
            return onnx_files.known(self.file).sha256
        from fid_bench.backbones.weights import file_sha256

        return file_sha256(self.source_path())

    def model_files(self) -> dict[str, str]:
        # a known file is checked against its pinned digest whenever it is loaded; a path is not
        return {str(self.source_path()): self.file_sha256()} if self.path else {}

    def _identity_fields(self) -> dict[str, Any]:
        return {
            "file_sha256": self.file_sha256(),
            "preprocess": self.preprocess,
            # auto-detection is a fixed rule over a fixed file: the rule stands for its result
            "input": self.input_name or "auto",
            "output": self.output or "auto",
            "token": self.token,
            # only present with layers, so the identity of an encoder without them stays what it was
            **({"layers": self.layers, "pool": self.pools} if self.layers is not None else {}),
            **({"expose": self.expose} if self.expose else {}),
            # only present when quantised (see _quantise_identity)
            **({"quantise": self._quantise_identity()} if self.quantise else {}),
            # a graph quantising activations at run time: features of one image at a time since
            # AUTO_BATCH existed (before, they depended on the image's batch-mates); an explicit
            # model.batch_size > 1 keeps that dependence and says so
            **({"batch": self.session_batch()} if self.quantises_dynamically() else {}),
        }

    def quantised_file(self) -> Path:
        """Where the int8 copy of the file the session would run is cached (whether or not it is there)."""
        from fid_bench.features.onnx_quantise import quantised_path

        weights = self.weights_dir or onnx_files.default_weights_dir()
        # a new onnxruntime may quantise differently: its own copy
        spec = json.dumps({"expose": self.expose, "onnxruntime": lib_version("onnxruntime")}, sort_keys=True)
        return quantised_path(self.file_sha256(), str(self.quantise), weights, spec)

    def ensure_quantised(self) -> Path:
        """The int8 copy: made now when dynamic and absent; refused when its check failed."""
        from fid_bench.features import onnx_quantise as q

        dest = self.quantised_file()
        if not dest.is_file():
            if self.quantise == "static":
                raise FidBenchError(
                    f"model.quantise=static: no calibrated int8 copy of {self.name} yet ({dest.name}); make and "
                    f"check it with `fid-bench quantise-onnx model=... --method static --calibrate DIR`"
                )
            q.quantise(self.file_path(), dest, "dynamic", self.input_name)
        report = q.read_report(dest)
        if report and not report.get("passed"):
            raise FidBenchError(
                f"model.quantise={self.quantise}: the int8 copy of {self.name} was {q.summary(report)}"
            )
        if not report and not getattr(self, "_checking", False):
            log.warning(
                "onnx: the %s int8 copy of %s is not checked against fp32 yet (`fid-bench quantise-onnx`)",
                self.quantise,
                self.name,
            )
        return dest

    def _quantise_identity(self) -> dict[str, Any]:
        """What the int8 features depend on beyond the source: a dynamic copy is a fixed function of
        the source and the onnxruntime that made it (no file needed to name it); a static copy also of
        its calibration images, so its own content hash names it."""
        from fid_bench.features.onnx_quantise import RECIPE_VERSION

        if self.quantise == "dynamic":
            return {"method": "dynamic", "recipe": RECIPE_VERSION, "onnxruntime": lib_version("onnxruntime")}
        from fid_bench.backbones.weights import file_sha256

        path = self.quantised_file()
        if not path.is_file():
            raise FidBenchError(
                f"model.quantise=static: no calibrated int8 copy of {self.name} yet ({path.name}); make and "
                f"check it with `fid-bench quantise-onnx model=... --method static --calibrate DIR`"
            )
        return {"method": "static", "sha256": file_sha256(path)}

    # -- loading --------------------------------------------------------------------------------
    def chosen_providers(self) -> list[str]:
        """The providers to ask for, restricted to what the installed onnxruntime offers (CPU last)."""
        import onnxruntime as ort

        available = list(ort.get_available_providers())
        wanted = self.providers or (["cuda", "cpu"] if str(self.device).startswith("cuda") else ["cpu"])
        names = [PROVIDER_ALIASES.get(p.lower(), p) for p in wanted]
        chosen = [p for p in dict.fromkeys(names) if p in available]
        missing = [p for p in dict.fromkeys(names) if p not in available]
        if missing:
            log.warning(
                "onnx: %s not offered by this onnxruntime (it offers %s); running on %s",
                ", ".join(missing),
                ", ".join(available),
                ", ".join(chosen or ["CPUExecutionProvider"]),
            )
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        return chosen

    def load(self) -> None:
        if self._model is not None:
            return
        import onnxruntime as ort

        path = self.source_path()
        if self.file and not self.path:
            from fid_bench.backbones.weights import file_sha256

            actual = file_sha256(path)
            expected = onnx_files.known(self.file).sha256
            if actual != expected:
                raise FidBenchError(
                    f"{path}: sha256 {actual[:12]}... is not the pinned {expected[:12]}... of {self.file}; "
                    f"delete it and run `fid-bench weights get {self.file}`, or pass model.path=FILE.onnx"
                )
        if self.batch_size is not None and self.batch_size > 1 and self.quantises_dynamically():
            # allowed (it is faster), but a batch of one class then shifts that class's features: a leak
            log.warning(
                "onnx: model.batch_size=%d on %s, which quantises activations per session call: each image's "
                "features depend on their batch-mates (null: one image per call)",
                self.batch_size,
                self.name,
            )
        path = self.file_path()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[self.graph_optimization]
        )
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        opts.log_severity_level = 3  # onnxruntime's own warnings (e.g. unused initialisers) are noise here
        blocks: dict[str, Any] = {}
        run_path = path
        if self.layers is not None:
            from fid_bench.features.onnx_layers import derived_file

            weights = self.weights_dir or onnx_files.default_weights_dir()
            try:
                run_path, chosen, names, n_blocks = derived_file(
                    path, self.file_sha256(), self.layers, weights
                )
            except FidBenchError:
                raise
            except Exception as err:  # noqa: BLE001 - onnx raises its own types for unreadable graphs
                raise FidBenchError(
                    f"{path}: cannot read the graph for model.layers ({one_line(err, 200)})"
                ) from None
            blocks = {"blocks": chosen, "names": names, "n_blocks": n_blocks}
        if self.quantise:
            if blocks:
                raise FidBenchError(
                    "model.quantise and model.layers cannot be combined yet: set one of them to null"
                )
            run_path = self.ensure_quantised()
            from fid_bench.features.onnx_quantise import read_report

            self._loaded_info.update(
                quantised_file=str(run_path), quantise_checked=bool(read_report(run_path).get("passed"))
            )
        if self.fuse_normalise:
            from fid_bench.backbones.onnx_graph import with_uint8_input

            weights = self.weights_dir or onnx_files.default_weights_dir()
            try:
                run_path = with_uint8_input(
                    run_path, self.file_sha256(), self.input_name, self._scale, self._offset, weights
                )
            except FidBenchError:
                raise
            except Exception as err:  # noqa: BLE001 - onnx raises its own types for unreadable graphs
                raise FidBenchError(
                    f"{path}: cannot prepend the normalisation to the graph ({one_line(err, 200)}); "
                    "set model.fuse_normalise=false"
                ) from None
        try:
            session = ort.InferenceSession(
                str(run_path), sess_options=opts, providers=self.chosen_providers()
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types for bad files
            raise FidBenchError(f"{run_path}: onnxruntime cannot load it ({one_line(err, 200)})") from None
        self._io = self._detect_io(session, path)
        if blocks:
            self._io["blocks"] = blocks
            self._loaded_info.update(
                derived_file=str(run_path),
                blocks_in_graph=blocks["n_blocks"],
                layout=block_layers.layout(blocks["blocks"], self.pools),
            )
        self._check_metadata(session, path)
        self._model = session
        if self.fuse_normalise:
            self._loaded_info.update(fused_file=str(run_path))
        self._loaded_info.update(
            path=str(path),
            providers=list(session.get_providers()),
            onnxruntime=lib_version("onnxruntime"),
            input=self._io["input"],
            output=self._io["output"],
            output_shape=self._io["output_shape"],
            token=self.token,
            preprocess=self.preprocess,
            threads=self.threads,
        )
        log.info(
            "onnx: %s on %s, input %s, output %s%s",
            path.name,
            ", ".join(session.get_providers()),
            self._io["input"],
            self._io["output"],
            f" ({self.token} token)" if self.token else "",
        )

    def _detect_io(self, session: Any, path: Path) -> dict[str, Any]:
        inputs = session.get_inputs()
        fused = [i for i in inputs if i.name == UINT8_INPUT] if self.fuse_normalise else []
        if fused:
            inp = fused[0]
            n, h, w, c = inp.shape
            shape = [n, c, h, w]
        elif self.input_name:
            match = [i for i in inputs if i.name == self.input_name]
            if not match:
                raise FidBenchError(
                    f"{path.name}: no input {self.input_name!r}; it has {', '.join(i.name for i in inputs)}"
                )
            inp = match[0]
        else:
            images = [i for i in inputs if len(i.shape) == 4]
            if len(images) != 1:
                raise FidBenchError(
                    f"{path.name}: cannot tell the image input among "
                    f"{', '.join(f'{i.name}{list(i.shape)}' for i in inputs)}; set model.input_name"
                )
            inp = images[0]
        if not fused:
            shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise FidBenchError(
                f"{path.name}: input {inp.name} has shape {shape}; an N x 3 x H x W image is needed"
            )
        size = self.preprocess["image_size"]
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        if any(d != size for d in fixed):
            raise FidBenchError(
                f"{path.name}: input {inp.name} is {shape[2]} x {shape[3]} but model.image_size={size}"
            )
        outputs = session.get_outputs()
        batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        try:
            out = self._choose_output(outputs, path)
        except FidBenchError:
            if self.layers is None:
                raise
            # the block outputs are what runs: a file without a 2-D output of its own (a backbone
            # inside a larger model, e.g. dinov2_vits14) still gives its blocks
            return {
                "input": inp.name,
                "output": "blocks",
                "output_shape": [],
                "fixed_batch": batch,
                "uint8": bool(fused),
            }
        rank = len(out.shape)
        if self.token and rank != 3:
            raise FidBenchError(
                f"{path.name}: model.token={self.token} needs a hidden-state output (N x T x D); "
                f"{out.name} has shape {list(out.shape)}"
            )
        if not self.token and rank != 2:
            raise FidBenchError(
                f"{path.name}: output {out.name} has shape {list(out.shape)}; choose a 2-D output "
                "(model.output=NAME) or pool a hidden state with model.token=cls"
            )
        return {
            "input": inp.name,
            "output": out.name,
            "output_shape": list(out.shape),
            "fixed_batch": batch,
            "uint8": bool(fused),
        }

    def _choose_output(self, outputs: Sequence[Any], path: Path) -> Any:
        listing = ", ".join(f"{o.name}{list(o.shape)}" for o in outputs)
        if self.output:
            match = [o for o in outputs if o.name == self.output]
            if not match:
                raise FidBenchError(f"{path.name}: no output {self.output!r}; it has {listing}")
            return match[0]
        if self.token:
            hidden = [o for o in outputs if len(o.shape) == 3]
            if not hidden:
                raise FidBenchError(
                    f"{path.name}: model.token={self.token} but no N x T x D output among {listing}"
                )
            return hidden[0]
        named = [o for o in outputs if "embed" in o.name.lower() and len(o.shape) == 2]
        flat = [o for o in outputs if len(o.shape) == 2]
        if named or flat:
            return (named or flat)[0]
        raise FidBenchError(
            f"{path.name}: no 2-D output among {listing}; set model.output=NAME, or model.token=cls "
            "for the first token of a hidden-state output"
        )

    def _check_metadata(self, session: Any, path: Path) -> None:
        """Warn when the file records (``export-onnx``) another preprocessing than the config's."""
        meta = session.get_modelmeta().custom_metadata_map or {}
        if PREPROCESS_META not in meta:
            return
        try:
            recorded = json.loads(meta[PREPROCESS_META])
        except ValueError:
            return
        differ = {k: v for k, v in recorded.items() if k in self.preprocess and self.preprocess[k] != v}
        if differ:
            log.warning(
                "onnx: %s was exported with preprocessing %s; the config says %s (set model.%s=... to match)",
                path.name,
                json.dumps(differ),
                json.dumps({k: self.preprocess[k] for k in differ}),
                next(iter(differ)),
            )

    # -- per image and per batch --------------------------------------------------------------------
    def transform(self, img: Image.Image) -> np.ndarray:
        return preprocess_image(img, self.preprocess)

    def normalise(self, batch: Any) -> np.ndarray:
        """``uint8 [B, H, W, 3]`` (or a list of them) -> the float32 ``[B, 3, H, W]`` the session takes."""
        arr = np.stack([np.asarray(b) for b in batch]) if not isinstance(batch, np.ndarray) else batch
        x = arr.astype(np.float32) * self._scale + self._offset
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def encode(self, batch: Any) -> np.ndarray:
        if self._model is None:
            self.load()
        items = batch if isinstance(batch, np.ndarray) else np.stack([np.asarray(b) for b in batch])
        if items.ndim == 5:  # resize=native: [B, crops, H, W, 3] -> the crops' features averaged
            b, n = items.shape[:2]
            flat = self.encode(items.reshape(b * n, *items.shape[2:]))
            return flat.reshape(b, n, -1).mean(axis=1)
        step = self._io["fixed_batch"] or self.session_batch()
        outs = [self.run(self.session_input(items[i : i + step])) for i in range(0, len(items), step)]
        return np.concatenate(outs) if outs else np.empty((0, 0), dtype=np.float32)

    def session_batch(self) -> int:
        """Images per session call: ``model.batch_size``, or when null ``AUTO_BATCH`` of the graph."""
        if self.batch_size is not None:
            return self.batch_size
        return AUTO_BATCH["dynamic" if self.quantises_dynamically() else "other"]

    def quantises_dynamically(self) -> bool:
        """Whether the graph the session runs quantises activations at run time (the file's own int8
        or a ``model.quantise=dynamic`` copy)."""
        from fid_bench.backbones.onnx_graph import quantises_dynamically

        if self.quantise:  # a dynamic copy does; a static one has its scales fixed by calibration
            return self.quantise == "dynamic"
        if self.file and not self.path:
            return onnx_files.known(self.file).quantises_dynamically
        return quantises_dynamically(self.source_path())

    def session_input(self, batch: np.ndarray) -> np.ndarray:
        """What the session takes for ``uint8 [B, H, W, 3]`` pixels: themselves when the normalisation
        is fused into the graph, else ``normalise(batch)``."""
        if self._model is None:
            self.load()
        if self._io.get("uint8"):
            return np.ascontiguousarray(batch, dtype=np.uint8)
        return self.normalise(batch)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The session on a batch as ``session_input`` makes it -> ``[B, D]`` float32 (padded to a fixed batch)."""
        if self._model is None:
            self.load()
        n = len(x)
        fixed = self._io["fixed_batch"]
        if fixed and n < fixed:
            x = np.concatenate([x, np.zeros((fixed - n, *x.shape[1:]), dtype=x.dtype)])
        blocks = self._io.get("blocks")
        if blocks:
            hidden = self._model.run(blocks["names"], {self._io["input"]: x})
            parts = [block_layers.pool_tokens(np.asarray(h)[:n], self.pools) for h in hidden]
            return np.concatenate(parts, axis=1).astype(np.float32, copy=False)
        (out,) = self._model.run([self._io["output"]], {self._io["input"]: x})
        out = np.asarray(out)[:n]
        if self.token == "cls":
            out = out[:, 0]
        elif self.token == "mean":
            out = out.mean(axis=1)
        return np.asarray(out, dtype=np.float32).reshape(n, -1)
