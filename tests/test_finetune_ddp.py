"""The DDP path on CPU: two processes through Lightning's own ``ddp`` strategy.

The job runs as a script in a subprocess, because Lightning's ``ddp`` launcher starts the other
rank by re-running the script (as it would re-run ``python -m fid_bench``). Each rank writes what
it saw; the test checks that both ranks trained on disjoint halves of the data and ended with the
same weights (gradients were synchronised), and that the scores are sane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import CONF_DIR, REPO

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd
    import torch
    from omegaconf import OmegaConf
    from PIL import Image

    from fid_bench.balance import NoBalance
    from fid_bench.data.samples import Samples
    from fid_bench.contract import Job, NullLogger
    from fid_bench.finetune.detector import FinetuneDetector

    out = Path(sys.argv[1])
    images = out / "images"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        label = i % 2
        arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        if label:  # 2x nearest-neighbour up-sampling: an easy "generated" trace
            arr = np.repeat(np.repeat(arr[::2, ::2], 2, axis=0), 2, axis=1)
        path = images / f"img{i:03d}.png"
        if not path.exists():  # rank 0 may still be writing while rank 1 starts: same bytes anyway
            images.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.png")
            Image.fromarray(arr).save(tmp)
            os.replace(tmp, path)
        rows.append({"id": f"img{i:03d}", "path": str(path), "label": label, "split": "train", "group": "",
                     "sha1": f"{i:040x}"})
    table = pd.DataFrame(rows)
    fold = SimpleNamespace(index=0, train=np.arange(48), val=np.arange(48, 64), test=np.arange(64, 80))
    trainer = OmegaConf.load(sys.argv[2])
    trainer.merge_with({"accelerator": "cpu", "devices": 2, "precision": "32-true", "num_workers": 0,
                        "pin_memory": False, "progress_bar": False})
    backbone = {"_target_": "fid_bench.backbones.small_cnn.SmallCNN", "image_size": 16, "widths": [8, 16]}
    job = Job(samples=Samples(table), balance=NoBalance(), cache_dir=out / "cache",
              output_dir=out / "run", logger=NullLogger())
    det = FinetuneDetector(backbone=backbone, trainer=trainer, folds=None,
                           max_epochs=4, batch_size=8, seed=0, early_stopping_patience=None,
                           optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
                           augment={"hflip_p": 0.0})
    det.setup(job)
    scores = det.fit_predict(job, fold)
    info = dict(det.last_fit)
    info.pop("history")
    info["env_rank"] = os.environ.get("LOCAL_RANK", "0")
    info["scores"] = scores[scores.split == "test"]["score"].tolist()
    info["labels"] = scores[scores.split == "test"]["label"].tolist()
    info["weight_sum"] = float(sum(v.double().sum() for v in det.predictor().state_dict.values()))
    (out / f"rank{info['global_rank']}.json").write_text(json.dumps(info))
    """
)


def test_ddp_two_cpu_processes_share_the_data_and_the_weights(tmp_path: Path):
    from sklearn.metrics import roc_auc_score

    script = tmp_path / "ddp_job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(CONF_DIR / "trainer" / "ddp.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["global_rank"] for r in ranks] == [0, 1] and [r["env_rank"] for r in ranks] == ["0", "1"]
    assert all(r["world_size"] == 2 for r in ranks)
    # the distributed sampler gave each rank half of the 48 training rows per epoch, 4 epochs
    assert [r["samples_seen"] for r in ranks] == [24 * 4, 24 * 4]
    # synchronised gradients: both ranks end with the same weights and the same scores
    assert abs(ranks[0]["weight_sum"] - ranks[1]["weight_sum"]) < 1e-6 * max(1.0, abs(ranks[0]["weight_sum"]))
    assert ranks[0]["scores"] == ranks[1]["scores"]
    assert roc_auc_score(ranks[0]["labels"], ranks[0]["scores"]) > 0.8
    assert ranks[0]["best_path"] and Path(ranks[0]["best_path"]).exists()
