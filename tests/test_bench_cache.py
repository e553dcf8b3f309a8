"""The benchmarks' FID cache and the app history they feed: a cached FID names the weights it scored, and an
export records only figures of the weights it ships (benchmarks/instaflow.py, shared by benchmarks/dmd.py)."""

import json
import shutil
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import instaflow  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


@pytest.fixture()
def bench(tmp_path, monkeypatch, tiny_pipeline_dir):
    """instaflow.py pointed at a temporary cache and results folder, with a stand-in for studio fid that
    counts its calls; a copy of the tiny pipeline as the scored model."""
    (tmp_path / "fid").mkdir()
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(instaflow, "ROOT", tmp_path)
    monkeypatch.setattr(instaflow, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(instaflow, "JUDGE", tmp_path / "no-judge")
    calls = []

    def fake_fid(cfg):
        calls.append(cfg.fake)
        (tmp_path / "fid" / cfg.out.split("/")[-1]).write_text(json.dumps({"fid": 10.0 + len(calls)}))

    monkeypatch.setattr(instaflow, "compute_fid", fake_fid)
    model = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, model)
    return tmp_path, model, calls


def _row(model) -> dict:
    return {"name": "m 1-step", "model": str(model), "steps": 1, "guidance": 1.0, "n": 8}


def _other_weights(model) -> None:
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))


def test_cached_fid_is_reused_for_the_same_weights_and_rescored_for_others(bench):
    root, model, calls = bench
    first, again = _row(model), _row(model)
    instaflow.fid_rows([first])
    instaflow.fid_rows([again])
    assert len(calls) == 1 and again["fid"] == first["fid"] == 11.0
    assert again["unet_id"] == instaflow.unet_id(model)

    _other_weights(model)
    retrained = _row(model)
    instaflow.fid_rows([retrained])
    assert len(calls) == 2 and retrained["fid"] == 12.0 and retrained["unet_id"] != first["unet_id"]
    assert len(list((root / "fid").glob("*.stale-*.json"))) == 1  # the old figure is kept aside, not lost


def test_export_records_only_figures_of_the_shipped_weights_once(bench, tmp_path_factory):
    root, model, _ = bench
    scored = _row(model)
    instaflow.fid_rows([scored])
    foreign = {**scored, "name": "m 2-step", "steps": 2, "unet_id": "0" * 16}
    (root / "results" / "instaflow.json").write_text(json.dumps(
        {"rows": [scored, foreign], "judge": {"test_top1": 91.0}, "machine": {"date": "2026-12-07 12:00:00"}}))
    app = tmp_path_factory.mktemp("app")
    shutil.copytree(model, app / "student")
    names = {str(model): "student"}

    assert instaflow.record_history(app, "instaflow", names) == 1
    assert instaflow.record_history(app, "instaflow", names) == 0
    history = json.loads((app / "fid_history.json").read_text())
    assert [(r["model"], r["steps"], r["fid"], r["judge_top1"]) for r in history] == [("student", 1, 11.0, 91.0)]

    retrained = tmp_path_factory.mktemp("app")  # a model retrained since the benchmark: the figures are not its own
    shutil.copytree(model, retrained / "student")
    _other_weights(retrained / "student")
    assert instaflow.record_history(retrained, "instaflow", names) == 0
    assert not (retrained / "fid_history.json").exists()
