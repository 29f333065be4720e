"""Several data sets read as one (``data=multi``): each source by its own reader, rows tagged with the source.

``data.sources`` lists the sources, each ``{name, data, root}`` plus optional ``max_per_class``,
``strict`` and ``reader: {...}`` (settings of that reader). Every source is composed from its own
``conf/data/<data>.yaml`` and read through its own reader, with that reader's bad-input rules: a
broken file is a counted skip (or, with ``strict``, a one-line error) named with its source.

In the merged table:

* ``group`` is the source name (a source's own groups, e.g. generator names, are replaced), so
  ``cv.leave_one_source_out`` and the per-group metrics see one group per source;
* ``id`` is ``<source>/<id>``, unique across sources (skipped rows are named the same way);
* every labelled row is in the ``train`` pool: a source's own train/test split is not kept, so the
  hold-out test rows are drawn from every source alike (``make_folds`` draws them, stratified by
  class and duplicate-aware);
* ``max_per_class`` (per source, or ``data.max_per_class`` for all) keeps at most that many rows per
  class, drawn at random before the files are checked, so a 120,000-image source does not swamp a
  2,000-image one; ``balance_sources`` then draws every source and class down to the smallest count.
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fid_bench.config import to_plain
from fid_bench.data.samples import SAMPLE_COLUMNS, SKIP_COLUMNS, Samples
from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)

_SOURCE_KEYS = {"name", "data", "root", "max_per_class", "strict", "reader"}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def parse_sources(sources: Any) -> list[dict[str, Any]]:
    """``data.sources`` checked: a list of mappings with a unique, metric-safe ``name``, ``data`` and ``root``."""
    sources = to_plain(sources)
    if not isinstance(sources, list) or not sources:
        raise FidBenchError(
            "data=multi needs data.sources, a list like [{name: cifake, data: folder, root: /data/cifake}, ...]"
        )
    out, seen = [], set()
    for i, spec in enumerate(sources):
        if not isinstance(spec, dict):
            raise FidBenchError(f"data.sources[{i}] must be a mapping {{name, data, root}}, got {spec!r}")
        missing = [k for k in ("name", "data", "root") if not spec.get(k)]
        if missing:
            raise FidBenchError(
                f"data.sources[{i}] lacks {missing[0]!r} (each source needs name, data, root)"
            )
        unknown = sorted(set(spec) - _SOURCE_KEYS)
        if unknown:
            raise FidBenchError(
                f"data.sources[{i}] ({spec['name']}): unknown key {unknown[0]!r}; allowed: {sorted(_SOURCE_KEYS)}"
            )
        name = str(spec["name"])
        if not _NAME.match(name):
            raise FidBenchError(
                f"data.sources[{i}]: name {name!r} may hold only letters, digits, '_', '-' and '.' "
                "(it becomes part of metric names)"
            )
        if name in seen:
            raise FidBenchError(f"data.sources: the name {name!r} is used twice; names must be unique")
        if str(spec["data"]) == "multi":
            raise FidBenchError(f"data.sources[{i}] ({name}): a source cannot itself be data=multi")
        seen.add(name)
        out.append(spec)
    return out


def _cap(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FidBenchError(f"{what} must be null or a positive whole number, got {value!r}")
    return value


class MultiReader:
    """Reads every source of ``data.sources`` with its own reader and merges them (see the module docstring)."""

    def __init__(
        self,
        sources: Any,
        *,
        name: str = "multi",
        strict: bool = False,
        max_per_class: int | None = None,
        balance_sources: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.sources = parse_sources(sources)
        self.name = name
        self.strict = bool(strict)
        self.max_per_class = _cap(max_per_class, "data.max_per_class")
        self.balance_sources = bool(balance_sources)
        self.seed = int(seed)
        self.cache_dir = str(cache_dir) if cache_dir is not None else None

    def _reader(self, spec: dict[str, Any]) -> Any:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        name = str(spec["name"])
        data_cfg = _data_option(str(spec["data"]), name)
        data_cfg.root = str(Path(str(spec["root"])).expanduser())
        data_cfg.name = name
        data_cfg.strict = bool(spec.get("strict", self.strict))
        for key, value in (spec.get("reader") or {}).items():
            data_cfg.reader[key] = value
        # the reader's interpolations (${..root}, ${features.cache_dir}) resolve in a config of its own
        cfg = OmegaConf.create(
            {"data": data_cfg, "features": {"cache_dir": self.cache_dir or "."}, "seed": self.seed}
        )
        return instantiate(cfg.data.reader)

    def read(self) -> Samples:
        tables, skipped, unreadable = [], [], []
        for spec in self.sources:
            name = str(spec["name"])
            cap = _cap(spec.get("max_per_class", self.max_per_class), f"data.sources {name!r}: max_per_class")
            # a seed per source: adding a source does not change which rows another one keeps
            seed = self.seed + zlib.crc32(name.encode())
            part = self._reader(spec).read(max_per_class=cap, seed=seed)
            n_labelled = int(part.labelled().shape[0])
            if len(part.skipped):
                reasons = part.skipped.groupby("reason").size()
                log.warning(
                    "data.sources %s: skipped %d of %d labelled rows (%s)",
                    name,
                    len(part.skipped),
                    n_labelled + len(part.skipped),
                    ", ".join(f"{k}={v}" for k, v in reasons.items()),
                )
            table = part.table.copy()
            table["id"] = name + "/" + table["id"].astype(str)
            table["group"] = name
            table.loc[table["split"] == "test", "split"] = "train"  # one pool: see the module docstring
            tables.append(table)
            for frame, out in ((part.skipped, skipped), (part.unreadable_predict, unreadable)):
                if len(frame):
                    out.append(frame.assign(id=name + "/" + frame["id"].astype(str)))
        table = pd.concat(tables, ignore_index=True)[SAMPLE_COLUMNS]
        if self.balance_sources:
            table = balance_by_source(table, self.seed)
        counts = table[table["label"].isin((0, 1))].groupby(["group", "label"]).size().unstack(fill_value=0)
        log.info(
            "data=multi: %s",
            "; ".join(f"{g}: {int(r.get(0, 0))} real, {int(r.get(1, 0))} fake" for g, r in counts.iterrows()),
        )
        return Samples(
            table=table.reset_index(drop=True),
            skipped=_frames(skipped),
            name=self.name,
            unreadable_predict=_frames(unreadable),
        )


def _data_option(option: str, source: str) -> Any:
    """``conf/data/<option>.yaml`` as it is (the data layer reads the packaged option itself)."""
    from omegaconf import OmegaConf

    folder = Path(__file__).resolve().parents[1] / "conf" / "data"
    path = folder / f"{option}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "multi")
        raise FidBenchError(f"data.sources {source!r}: unknown data={option!r}; choose one of {choices}")
    return OmegaConf.load(path)


def balance_by_source(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every (source, class) cell of the labelled rows drawn down to the smallest cell (seeded); predict rows kept."""
    labelled = table["label"].isin((0, 1)).to_numpy() & (table["split"] != "predict").to_numpy()
    cells = table[labelled].groupby(["group", "label"]).indices
    sources = sorted(set(table.loc[labelled, "group"]))
    missing = [f"{s}/{'real' if c == 0 else 'fake'}" for s in sources for c in (0, 1) if (s, c) not in cells]
    if missing:
        raise FidBenchError(f"data.balance_sources: source class {missing[0]} has no rows to balance with")
    n = min(len(v) for v in cells.values())
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(~labelled).tolist()
    labelled_pos = np.flatnonzero(labelled)
    for key in sorted(cells):
        pos = labelled_pos[cells[key]]
        keep.extend(np.sort(rng.choice(pos, size=n, replace=False)).tolist())
    log.info("data.balance_sources: %d rows per source and class", n)
    return table.iloc[np.sort(np.asarray(keep, dtype=np.int64))]


def _frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=SKIP_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SKIP_COLUMNS]
