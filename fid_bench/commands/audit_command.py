"""``fid-bench audit``: audit the configured data set before training, print the report.

Owns the command line of the audit (flags, Hydra-style overrides, ``--fix`` / ``--json`` /
``--markdown`` output files, the ``--strict`` exit status) and the lookup and composition of the
project config the command needs (``compose_config``, over ``fid_bench.config``). What is audited and
how is ``fid_bench.audit``; reading the configured data set is ``fid_bench.data.readers``.

Exit status: 0 when the audit ran (warnings or not; 1 with ``--strict`` when it warned), 1 on a
user error (bad config, unreadable data set, a file that cannot be written), 2 on bad arguments;
errors are one line on stderr.

May import: ``fid_bench.audit``, ``fid_bench.data``, ``fid_bench.errors``, ``fid_bench.commands.common``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from fid_bench.audit import (
    AuditReport,
    audit_samples,
    audit_settings,
    audit_sources,
    check_settings,
    clean_manifest,
)
from fid_bench.commands.common import OneLineParser, run_handler
from fid_bench.config import compose, conf_dir
from fid_bench.data.readers import read_configured_samples
from fid_bench.data.samples import LABEL_NAMES, Samples
from fid_bench.errors import FidBenchError, one_line

PROG = "fid-bench audit"
DESCRIPTION = (
    "Audit a data set: counts, unreadable files, duplicates, label conflicts, leaks, "
    "near-duplicates and attribute shortcuts. Overrides are Hydra-style, e.g. "
    "'data=folder data.root=/data/cifake'."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench audit``."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=kaggle data.root=/x")
    parser.add_argument(
        "--fix", metavar="OUT.csv", type=Path, help="write a cleaned manifest (id,path,label,split)"
    )
    parser.add_argument("--json", metavar="OUT.json", type=Path, help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="OUT.md", type=Path, help="write the report as Markdown")
    parser.add_argument(
        "--near-dup-threshold", metavar="N", type=int, default=None,
        help="also find near-duplicates: Hamming distance <= N between 64-bit perceptual hashes (off by default)",
    )  # fmt: skip
    parser.add_argument(
        "--shortcut-auc", type=float, default=None, help="warn at this single-attribute ROC-AUC"
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="processes for reading headers (default: audit.workers, else the CPU count up to 8)",
    )  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when the audit warns")
    parser.add_argument("--config-dir", type=Path, default=None, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    """``fid-bench audit [overrides...] [--fix OUT.csv] [--json OUT.json] [--near-dup-threshold N]``."""
    parser = OneLineParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    try:
        args = parser.parse_intermixed_args(argv)  # overrides may come after the flags
        try:
            check_settings(args.shortcut_auc, args.near_dup_threshold)
        except FidBenchError as err:
            parser.error(str(err))  # a flag out of range is a bad argument: exit code 2
    except SystemExit as exit_:  # --help, or a bad argument already reported on one line
        return int(exit_.code or 0)
    return run_handler(run, args, PROG)


def run(args: argparse.Namespace) -> int:
    """Compose the config, read the data set, audit it, print and write the report."""
    from omegaconf import OmegaConf

    cfg = compose_config(list(args.overrides), args.config_dir or conf_dir())
    settings = audit_settings(cfg)
    if args.near_dup_threshold is not None:
        settings["near_dup_threshold"] = args.near_dup_threshold
    if args.shortcut_auc is not None:
        settings["shortcut_auc"] = args.shortcut_auc
    if args.workers is not None:
        settings["workers"] = args.workers
    elif OmegaConf.select(cfg, "audit.workers", default=None) is None:
        settings["workers"] = min(os.cpu_count() or 1, 8)  # this entry point is safe for worker processes
    check_settings(settings["shortcut_auc"], settings["near_dup_threshold"])
    samples = read_configured_samples(cfg)
    report = audit_samples(samples, **settings)
    print(report.to_markdown(), end="")
    # data=multi: every source on its own too, so a shortcut inside one source is named with it
    per_source = (
        audit_sources(samples, **settings) if OmegaConf.select(cfg, "data.sources", default=None) else {}
    )
    for part in per_source.values():
        print("\n" + part.to_markdown(), end="")
    if args.json:
        _write_text(args.json, json.dumps(report.to_dict(), indent=1))
        print(f"\nreport written to {args.json}")
    if args.markdown:
        _write_text(args.markdown, report.to_markdown())
    if args.fix:
        _write_fix(samples, report, args.fix)
    return 1 if args.strict and (report.warnings or any(p.warnings for p in per_source.values())) else 0


# ----------------------------------------------------------------------------- config


def _settings_defaults(conf_dir: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    path = conf_dir / "audit.yaml"
    if not path.exists():
        return {}
    node = OmegaConf.load(path)
    return dict(OmegaConf.to_container(node.get("audit", node), resolve=True))  # type: ignore[arg-type]


def compose_config(overrides: list[str], config_dir: Path) -> Any:
    """The project config with ``overrides``; ``cfg.audit`` always holds conf/audit.yaml's settings.

    ``audit.*`` overrides are applied here, so they work whether or not config.yaml includes audit.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    own = [o for o in overrides if o.lstrip("+~").startswith("audit.")]
    cfg = compose([o for o in overrides if o not in own], config_dir=config_dir)
    try:
        audit = OmegaConf.create({"audit": _settings_defaults(config_dir)})
        if "audit" in cfg:
            audit = OmegaConf.merge(audit, {"audit": cfg.audit})
        audit = OmegaConf.merge(audit, OmegaConf.from_dotlist([o.lstrip("+") for o in own]))
        OmegaConf.set_struct(cfg, False)
        cfg.audit = audit.audit
        return cfg
    except OmegaConfBaseException as err:
        raise FidBenchError(f"config: {one_line(err)}") from None


# ----------------------------------------------------------------------------- output files


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        raise FidBenchError(f"cannot write {path}: {err.strerror or err}") from None


def _write_fix(samples: Samples, report: AuditReport, out: Path) -> None:
    manifest, removed = clean_manifest(samples, report)
    removed_path = out.with_name(out.stem + ".removed.csv")
    _write_text(out, manifest.to_csv(index=False))
    _write_text(removed_path, removed.to_csv(index=False))
    print(f"\ncleaned manifest: {out} ({len(manifest)} rows kept, {len(removed)} removed; images untouched)")
    for (reason, split, label), n in removed.groupby(["reason", "split", "label"]).size().items():
        print(f"  removed {n:6d} {split}/{LABEL_NAMES[int(label)]}: {reason}")
    if len(removed):
        print(f"  every removed row with its reason: {removed_path}")


if __name__ == "__main__":
    sys.exit(main())
