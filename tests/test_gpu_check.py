"""The GPU check script's CPU dry run (tiny preset): every part runs and the JSON holds every row."""

import json
import subprocess
import sys

from conftest import REPO, subprocess_env


def test_gpu_check_dry_run_writes_every_row(tmp_path):
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--work", str(tmp_path / "w"),
                        "--out", str(tmp_path)], env={**subprocess_env(), "PYTHON": sys.executable},
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["device"] == "cpu (dry run)" and result["one_step_ms_per_image"] > 0
    assert result["cfg_25_step_ms_per_image"] > result["one_step_ms_per_image"]
    rows = result["train_step_memory_batch_1"]
    assert {"full default", "+ 8-bit AdamW", "LoRA rank 64 + checkpointing"} <= set(rows)
    assert all(len(r["losses"]) == 1 for r in rows.values())
    steps = result["mixed_precision_steps"]
    assert len(steps["losses"]) == 4 and steps["all_finite"]
