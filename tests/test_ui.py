"""The Gradio app: endpoints through gradio_client, concurrency, the models-folder jail, a real browser."""

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client.exceptions import AppError
from PIL import Image

from studio import StudioError
from studio.models.backbone import save_pipeline
from studio.diffusion.flow import flow_scheduler
from studio.models.model_info import write_model_info
from ui.actions import check_generate
from ui.registry import ModelRegistry

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def models_dir(tiny_pipeline, tmp_path_factory):
    import copy

    root = tmp_path_factory.mktemp("models")
    save_pipeline(tiny_pipeline, root / "teacher")
    write_model_info(root / "teacher", "teacher", steps=25, guidance=5.0)
    student = copy.deepcopy(tiny_pipeline)
    student.scheduler = flow_scheduler()
    save_pipeline(student, root / "distilled" / "student")
    write_model_info(root / "distilled" / "student", "one-step-student", steps=1, guidance=1.0)
    from studio.data import FASHION_MNIST_CLASSES
    from studio.models.classifier import build_classifier, save_classifier

    from consistency.model import Precond, build_unet
    from consistency.objective import consistency_info
    from consistency.sampling import save_model

    # a class-conditional consistency model (c_noise 0.25 ln sigma: a studio model folder, not a diffusers pipeline)
    unet = build_unet(10, block_out_channels=(16, 16, 16), norm_num_groups=8, attention_head_dim=8).eval()
    save_model(unet, root / "ict", 1281, Precond(0.87, 0.25))
    write_model_info(root / "ict", **consistency_info(list(FASHION_MNIST_CLASSES), 1281, "fashion-mnist",
                                                      Precond(0.87, 0.25)))
    torch.manual_seed(0)  # an untrained judge: the app only has to compute and show its agreement
    save_classifier(build_classifier("resnet18-small", 10, 4), root / "classifier",
                    {"arch": "resnet18-small", "width": 4, "class_names": list(FASHION_MNIST_CLASSES),
                     "resolution": 32, "channels": 1, "test_top1": 10.0})
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(models_dir, fake_fmnist):
    from gradio_client import Client

    from ui.app import UIConfig, launch

    port = _free_port()
    app = launch(UIConfig(models=str(models_dir), port=port, data_dir=str(fake_fmnist), concurrency=2), block=False)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False), port
    app.close()


def test_registry_lists_models_and_refuses_escapes(models_dir, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(models_dir / "teacher", outside)
    link = models_dir / "linked"
    link.symlink_to(outside, target_is_directory=True)
    try:
        reg = ModelRegistry(models_dir)
        assert reg.names() == ["distilled/student", "ict", "teacher"]  # the link out of the folder is not listed
        assert reg.info("distilled/student")["kind"] == "one-step-student"
        for bad in ["../outside", str(outside), "linked", "teacher/../../outside", "/etc", "", "teacher/unet"]:
            with pytest.raises(StudioError):
                reg.path(bad)
    finally:
        link.unlink()


def test_input_checks_explain_the_bounds():
    for args, words in [(("", 0, 25, 5, 1), "prompt is empty"), (("x", 0, 101, 5, 1), "between 0 and 100"),
                        (("x", 0, 25, 30, 1), "guidance scale must be between"),
                        (("x", 0, 25, 5, 17), "number of images must be between 1 and 16"),
                        (("x", -2, 25, 5, 1), "seed"), (("x" * 301, 0, 25, 5, 1), "keep it under 300")]:
        with pytest.raises(StudioError, match=words):
            check_generate(*args)
    _, seed, *_ = check_generate("a bag", -1, 2, 1.0, 1)
    assert 0 <= seed < 2**31


def test_generate_endpoint_returns_pngs_with_parameters(served):
    client, _ = served
    fast, fast_time, slow, slow_time, seed = client.predict(
        "a photo of a bag", 7, 3, 2.0, 2, "distilled/student", "teacher", api_name="/generate")
    assert seed == 7 and len(fast) == 2 and len(slow) == 2
    assert "1 step(s)" in fast_time and "3 step(s)" in slow_time and "ms" in slow_time
    meta = json.loads(Image.open(slow[1]["image"]).info["parameters"])
    assert meta == {"model": "teacher", "prompt": "a photo of a bag", "seed": 8, "steps": 3, "guidance": 2.0}
    assert Image.open(fast[0]["image"]).size == (32, 32)


def test_any_two_models_side_by_side_and_zero_steps_take_the_right_models_own(served):
    client, _ = served
    # the teacher on the left (its own 25 steps, guidance 5), the student on the right at its own 1 step
    left, left_time, right, right_time, _ = client.predict(
        "a photo of a bag", 5, 0, 9.0, 1, "teacher", "distilled/student", api_name="/generate")
    assert "25 step(s), guidance 5.0" in left_time and "1 step(s), guidance 1.0" in right_time
    assert json.loads(Image.open(right[0]["image"]).info["parameters"])["steps"] == 1
    # two one-step models, the right one given steps: the field applies
    _, _, right, right_time, _ = client.predict(
        "a photo of a bag", 5, 2, 1.0, 1, "distilled/student", "distilled/student", api_name="/generate")
    assert "2 step(s)" in right_time


def test_a_consistency_model_is_a_fast_model_whose_prompt_picks_the_class(served, models_dir):
    from consistency.generators import load_consistency

    client, _ = served
    for steps in (1, 2):  # beside itself at 2 steps: the slow side takes the steps field
        fast, fast_time, slow, slow_time, seed = client.predict(
            "a photo of an ankle boot", 3, steps, 1.0, 2, "ict", "ict", api_name="/generate")
        assert "1 step(s)" in fast_time and f"{steps} step(s)" in slow_time and "ms" in fast_time
        mine = load_consistency(models_dir / "ict").sample([9, 9], 3, steps, 2)  # ankle boot is class 9
        got = np.stack([np.asarray(Image.open(g["image"]).convert("RGB")) for g in slow]).astype(np.float32) / 255
        np.testing.assert_allclose(got, mine, atol=1 / 255 + 1e-6)
    with pytest.raises(AppError, match="names none of this model's classes; name one of: t-shirt/top, trouser"):
        client.predict("a photo of a cat", 3, 1, 1.0, 1, "ict", "teacher", api_name="/generate")
    text, *_ = client.predict("ict", "fashion-mnist:test", 100, 2, "FID", api_name="/fid")
    last = json.loads((models_dir / "fid_history.json").read_text())[-1]
    assert last["model"] == "ict" and last["kind"] == "consistency" and last["steps"] == 2
    assert last["fid"] > 0 and 0 <= last["agreement"] <= 100 and text.startswith(f"FID {last['fid']:.3f}")


def test_out_of_range_input_is_explained(served):
    client, _ = served
    with pytest.raises(AppError, match="maximum value 16"):  # Gradio's own bound check, in plain words
        client.predict("a bag", 0, 2, 1.0, 40, "distilled/student", "teacher", api_name="/generate")
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict("  ", 0, 2, 1.0, 1, "distilled/student", "teacher", api_name="/generate")
    with pytest.raises(AppError, match="number of images must be a whole number from 1 to 16; you entered 2.5"):
        client.predict("a bag", 0, 2, 1.0, 2.5, "distilled/student", "teacher", api_name="/generate")
    assert client.predict("a bag", 0, 2, 1.0, 1, "distilled/student", "teacher", api_name="/generate")[4] == 0


def test_sixteen_concurrent_generate_calls_all_succeed(served):
    client, _ = served
    jobs = [client.submit(f"a photo of a coat {k}", k, 2, 1.5, 1, "distilled/student", "teacher",
                          api_name="/generate") for k in range(16)]
    results = [job.result(timeout=600) for job in jobs]
    assert [r[4] for r in results] == list(range(16))
    assert all(len(r[0]) == 1 and len(r[2]) == 1 for r in results)


def test_model_picker_cannot_leave_the_models_folder(served):
    client, _ = served
    info = client.predict("teacher", api_name="/model_info")
    assert info["kind"] == "teacher"
    for bad in ["../../etc", "/etc/passwd", "teacher/../../x"]:
        with pytest.raises(AppError, match=f"Value: {bad} is not in the list of choices"):
            client.predict(bad, api_name="/model_info")
        assert client.predict("teacher", api_name="/model_info")["kind"] == "teacher"  # the server still answers


def test_fid_endpoint_appends_every_metric_to_the_history(served, models_dir):
    client, _ = served
    text, table, plot = client.predict("distilled/student", "fashion-mnist:test", 100, 0, "KID", api_name="/fid")
    history = json.loads((models_dir / "fid_history.json").read_text())
    last = history[-1]
    assert last["model"] == "distilled/student" and last["steps"] == 1 and last["fid"] > 0
    assert last["kid_std"] > 0 and 0 <= last["precision"] <= 1 and 0 <= last["recall"] <= 1
    assert 0 <= last["agreement"] <= 100 and last["judge_top1"] == 10.0  # the folder's classifier judged
    assert text.startswith(f"FID {last['fid']:.3f} · KID {last['kid']:.4f} ± {last['kid_std']:.4f}") and "N=100" in text
    assert table["headers"][8] == "KID ± std" and table["data"][0][1] == "distilled/student"  # newest first
    assert table["data"][0][8] == f"{last['kid']:.4f} ± {last['kid_std']:.4f}"
    assert plot["data"][-1][-1] == pytest.approx(last["kid"])  # the Plot menu's metric: KID
    recall_plot = client.predict("recall", api_name="/fid_plot")
    assert recall_plot["data"][-1][-1] == pytest.approx(last["recall"])
    with pytest.raises(AppError, match="folder:../../etc is not in the list of choices"):
        client.predict("distilled/student", "folder:../../etc", 100, 0, "FID", api_name="/fid")
    assert client.predict("teacher", api_name="/model_info")["kind"] == "teacher"


def test_uploads_over_the_limit_are_refused(served):
    import httpx

    _, port = served
    big = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": ("big.bin", b"0" * 2_000_000)})
    assert big.status_code == 413 and "maximum allowed size of 1048576 bytes" in big.text


def test_the_apps_temporary_folder_is_removed_when_it_closes(models_dir, fake_fmnist):
    from ui.app import UIConfig, launch

    app = launch(UIConfig(models=str(models_dir), port=_free_port(), data_dir=str(fake_fmnist)), block=False)
    folder = app.studio_out_dir
    assert folder.is_dir() and folder.name.startswith("studio-ui-")
    app.close()
    assert not folder.exists()


def _browser(p):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Debian chromium is not installed (`make test` installs it)")
    return p.chromium.launch(executable_path=chromium, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"])


def test_real_browser_types_a_prompt_and_gets_an_image(served):
    from playwright.sync_api import sync_playwright

    _, port = served
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/", timeout=60000)
        box = page.locator("#prompt textarea")
        box.fill("a photo of a sneaker")
        page.locator("#generate").click()
        page.locator("#fast-gallery img").first.wait_for(timeout=120000)
        page.locator("#slow-gallery img").first.wait_for(timeout=120000)
        page.screenshot(path=str(ARTIFACTS / "ui_generate.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "ui_generate.png").stat().st_size > 0


def test_real_browser_runs_fid_and_shows_the_kid_of_the_history(served, models_dir):
    import re

    from playwright.sync_api import sync_playwright

    _, port = served
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/", timeout=60000)
        page.get_by_role("tab", name="FID").click()
        n_box = page.locator("#fid-n input[type=number]")
        n_box.fill("100")
        n_box.press("Enter")
        page.locator("#fid-run").click()
        page.locator("#fid-result").get_by_text("KID").wait_for(timeout=300000)
        shown = page.locator("#fid-result").inner_text()
        history_text = page.locator("#fid-history").inner_text()
        page.screenshot(path=str(ARTIFACTS / "ui_fid.png"), full_page=True)
        browser.close()
    last = json.loads((models_dir / "fid_history.json").read_text())[-1]
    kid = re.search(r"KID (\d+\.\d{4}) ± (\d+\.\d{4})", shown)
    assert kid and (float(kid[1]), float(kid[2])) == (round(last["kid"], 4), round(last["kid_std"], 4))
    assert last["n"] == 100 and f"{last['kid']:.4f} ± {last['kid_std']:.4f}" in history_text


def test_history_table_is_readable_and_plots_skip_records_without_the_metric():
    from ui.fid_view import HEADERS, PLOTTED, plot_frame, summary, table

    old = {"time": "2026-11-28", "model": "teacher", "kind": "teacher", "steps": 25, "guidance": 5.0,
           "reference": "fashion-mnist:test", "n": 5000, "fid": 49.591, "seconds": None, "note": "instaflow.py"}
    new = {**old, "time": "2026-12-02 10:00:00", "steps": 1, "fid": 53.5412, "kid": 0.031234, "kid_std": 0.00211,
           "precision": 0.61, "recall": 0.4, "agreement": 87.3, "judge_top1": 91.89, "seconds": 412.3, "note": None}
    t = table([old, new])
    assert list(t.columns) == HEADERS and list(t["steps"]) == [1, 25]  # newest first
    assert list(t["KID ± std"]) == ["0.0312 ± 0.0021", "—"] and list(t["FID"]) == ["53.54", "49.59"]
    assert list(t["class agreement % (judge top-1)"]) == ["87.3 (91.9)", "—"] and list(t["note"]) == ["", "instaflow.py"]
    assert len(plot_frame([old, new], "FID")) == 2 and plot_frame([old, new], "KID")["value"].tolist() == [0.031234]
    assert set(PLOTTED.values()) <= set(new)  # every plotted metric is a history field
    assert summary(new).startswith("FID 53.541 · KID 0.0312 ± 0.0021 · precision 0.610 · recall 0.400 · class "
                                   "agreement 87.3 % (judge's test top-1 91.89 %)")
    assert summary(old) == "FID 49.591 — teacher, 25 step(s), N=5000"
