"""Runs never destroy work, and bad input is a one-line error: every item of issue 29's data-safety list."""

import gzip
import json
import multiprocessing
import shutil

import numpy as np
import pytest
import torch

from studio import StudioError
from studio.cli import main
from studio.training.checkpoints import list_checkpoints


def teacher(out, data_dir, *extra):
    return ["teacher", "train", "--data-dir", str(data_dir), "--out", str(out), "--vae-steps", "2",
            "--vae-batch-size", "4", "--steps", "3", "--batch-size", "4", "--checkpoint-every", "1",
            "--tracker", "none", "--no-progress", *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def finished_teacher(fake_fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    assert main(teacher(out, fake_fmnist)) == 0
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_new_run_refuses_a_folder_holding_a_pipeline(finished_teacher, fake_fmnist, tmp_path, capsys):
    out = _copy(finished_teacher, tmp_path / "t")
    before = (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert main(teacher(out, fake_fmnist, "--lr", "0.01")) == 2
    err = one_line_error(capsys)
    assert "already holds a run" in err and "--resume latest" in err and "--overwrite" in err
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_reflow_train_refuses_to_replace_a_student(tiny_pipeline_dir, tmp_path, capsys):
    from distill.reflow.config import PairsConfig
    from distill.reflow.pairs import generate_pairs

    prompts = tmp_path / "p.txt"
    prompts.write_text("a photo of a bag\n")
    pairs = generate_pairs(PairsConfig(teacher=str(tiny_pipeline_dir), prompts=str(prompts), num=2, steps=1,
                                       shard_size=2, batch_size=2, out=str(tmp_path / "pairs")))
    student = _copy(tiny_pipeline_dir, tmp_path / "student")  # stands for a finished one-step student
    (student / "studio_model.json").write_text(json.dumps({"kind": "one-step-student", "steps": 1, "guidance": 1}))
    capsys.readouterr()
    rc = main(["reflow", "train", "--init", str(tiny_pipeline_dir), "--pairs", str(pairs), "--out", str(student),
               "--steps", "1", "--batch-size", "2", "--tracker", "none", "--no-progress"])
    assert rc == 2 and "already holds a run" in one_line_error(capsys)
    assert json.loads((student / "studio_model.json").read_text())["kind"] == "one-step-student"


def test_overwrite_starts_clean_and_keeps_other_files(finished_teacher, fake_fmnist, tmp_path):
    out = _copy(finished_teacher, tmp_path / "t")
    (out / "notes.txt").write_text("mine")
    old = [p.name for p in list_checkpoints(out / "stages" / "unet")]
    assert old[-1] == "step-00000003"
    assert main(teacher(out, fake_fmnist, "--overwrite", "--vae-steps", "1", "--steps", "2")) == 0
    assert [p.name for p in list_checkpoints(out / "stages" / "unet")] == ["step-00000001", "step-00000002"]
    assert [p.name for p in list_checkpoints(out / "stages" / "vae")] == ["step-00000001"]  # the VAE retrained
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vae_steps"] == 1 and cfg["train"]["steps"] == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_a_folder_with_only_the_config_of_a_failed_start_is_not_a_run(fake_fmnist, tmp_path):
    out = tmp_path / "t"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"train": {"lr": 99.0}}))
    assert main(teacher(out, fake_fmnist, "--vae-steps", "1", "--steps", "1")) == 0


def test_resume_refuses_other_settings_and_names_them(finished_teacher, fake_fmnist, tmp_path, capsys):
    out = _copy(finished_teacher, tmp_path / "t")
    assert main(teacher(out, fake_fmnist, "--resume", "latest", "--lr", "0.01", "--batch-size", "2")) == 2
    err = one_line_error(capsys)
    assert "--lr 0.001 -> 0.01" in err and "--batch-size 4 -> 2" in err
    assert main(teacher(out, fake_fmnist, "--resume", "latest", "--dataset", "fashion-mnist:test")) == 2
    assert "--dataset fashion-mnist -> fashion-mnist:test" in one_line_error(capsys)


def test_resume_refuses_a_checkpoint_past_steps_and_extends_a_run(finished_teacher, fake_fmnist, tmp_path, capsys):
    out = _copy(finished_teacher, tmp_path / "t")
    assert main(teacher(out, fake_fmnist, "--resume", "latest", "--steps", "2")) == 2
    err = one_line_error(capsys)
    assert "at step 3, past --steps 2" in err
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 3  # nothing was rewritten
    assert main(teacher(out, fake_fmnist, "--resume", "latest", "--steps", "5", "--log-every", "2")) == 0
    assert list_checkpoints(out / "stages" / "unet")[-1].name == "step-00000005"
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 5


def test_resume_of_a_corrupt_checkpoint_is_a_one_line_error(finished_teacher, fake_fmnist, tmp_path, capsys):
    out = _copy(finished_teacher, tmp_path / "t")
    last = list_checkpoints(out / "stages" / "unet")[-1]
    weights = next(last.glob("model*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(teacher(out, fake_fmnist, "--resume", "latest")) == 2
    err = one_line_error(capsys)
    assert f"cannot resume from checkpoint {last}" in err and "delete it" in err


def _append(root, k):
    from ui.history import append_record

    for i in range(k):
        append_record(root, {"model": f"m{i}", "fid": float(i)})


def test_two_processes_appending_to_the_fid_history_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(tmp_path, 100)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    records = json.loads((tmp_path / "fid_history.json").read_text())
    assert len(records) == 200
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def _save_stats(path, seed):
    from studio.fid.stats import save_stats

    rng = np.random.default_rng(seed)
    for _ in range(30):
        save_stats(path, rng.normal(size=64), np.eye(64), 10, {"seed": seed})


def test_two_processes_saving_the_same_statistics_file_never_clobber_each_other(tmp_path):
    from studio.fid.stats import load_stats

    path = tmp_path / "ref.npz"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_stats, args=(path, s)) for s in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    mu, sigma, n, meta = load_stats(path)
    assert mu.shape == (64,) and n == 10 and meta["seed"] in (0, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["ref.npz"]


@pytest.fixture()
def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a photo of a bag\na photo of a coat\n")
    return path


def _pairs(teacher_dir, prompts, out, *extra):
    return ["reflow", "pairs", "--teacher", str(teacher_dir), "--prompts", str(prompts), "--num", "4", "--steps", "1",
            "--shard-size", "2", "--batch-size", "2", "--guidance", "1", "--out", str(out), *extra]


def test_a_truncated_shard_is_remade(tiny_pipeline_dir, prompt_file, tmp_path):
    from safetensors.torch import load_file

    from distill.reflow.pairs import PairsDataset

    out = tmp_path / "pairs"
    assert main(_pairs(tiny_pipeline_dir, prompt_file, out)) == 0
    shard = out / "shard-00001.safetensors"
    good = {k: v.clone() for k, v in load_file(str(shard)).items()}  # not views of the file cut below
    shard.write_bytes(shard.read_bytes()[:-40])
    with pytest.raises(StudioError, match="truncated"):
        PairsDataset(out)
    assert main(_pairs(tiny_pipeline_dir, prompt_file, out)) == 0
    again = load_file(str(shard))
    assert all(torch.equal(again[k], good[k]) for k in good)


def test_a_pairs_run_that_failed_before_its_teacher_loaded_does_not_block_the_retry(tiny_pipeline_dir, prompt_file,
                                                                                   tmp_path, capsys):
    out = tmp_path / "pairs"
    missing = tmp_path / "no-teacher"
    assert main(_pairs(missing, prompt_file, out)) == 2
    assert "not a diffusers pipeline directory" in one_line_error(capsys)
    assert not (out / "manifest.json").exists()
    out.mkdir(exist_ok=True)  # a manifest left by an older studio, before any shard: replaced
    (out / "manifest.json").write_text(json.dumps({"teacher": str(missing)}))
    assert main(_pairs(tiny_pipeline_dir, prompt_file, out)) == 0
    assert json.loads((out / "manifest.json").read_text())["teacher"] == str(tiny_pipeline_dir)


def test_stochastic_solvers_and_negative_guidance_are_refused_for_pairs(tiny_pipeline_dir, prompt_file, tmp_path,
                                                                        capsys):
    assert main(_pairs(tiny_pipeline_dir, prompt_file, tmp_path / "a", "--solver", "euler-ancestral")) == 2
    assert "injects fresh noise" in one_line_error(capsys)
    assert main(_pairs(tiny_pipeline_dir, prompt_file, tmp_path / "b", "--guidance", "-3")) == 2
    assert "--guidance must be at least 0, got -3.0" in one_line_error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_fid_refuses_an_unwritable_out_before_computing(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    out_dir = tmp_path / "result_dir"
    out_dir.mkdir()
    assert main(["fid", str(folder), str(folder), "--out", str(out_dir)]) == 2
    assert "is a folder" in one_line_error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["fid-stats", str(folder), "--out", str(blocker / "ref.npz")]) == 2
    assert "cannot be written" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "imgs", "result_dir"]  # no temp file left
    assert not any(out_dir.iterdir())


def test_a_corrupted_gzip_idx_file_is_a_one_line_error(tmp_path):
    from studio.data.fashion_mnist import read_idx, write_idx

    write_idx(tmp_path / "a.gz", np.arange(100 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(100, 28, 28))
    raw = bytearray((tmp_path / "a.gz").read_bytes())
    for where in (20, len(raw) // 2):  # a broken deflate stream (zlib.error) and a bad checksum
        bad = bytearray(raw)
        bad[where:where + 4] = b"\xff\x00\xff\x00"
        (tmp_path / "b.gz").write_bytes(bytes(bad))
        with pytest.raises(StudioError, match="cannot read IDX file") as e:
            read_idx(tmp_path / "b.gz")
        assert "\n" not in str(e.value)
    gzip.decompress(bytes(raw))  # the original was fine


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--steps", "-1"], "--steps must be at least 1, got -1"),
    (["--guidance", "-2"], "--guidance must be at least 0"),
    (["--num", "0"], "--num must be at least 1"),
])
def test_sample_refuses_out_of_range_options(tiny_pipeline_dir, tmp_path, capsys, argv, words):
    assert main(["sample", str(tiny_pipeline_dir), "--prompt", "a bag", "--out", str(tmp_path / "g.png"), *argv]) == 2
    assert words in one_line_error(capsys)
    assert not (tmp_path / "g.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_a_one_line_error(tiny_pipeline_dir, tmp_path, capsys):
    assert main(["sample", str(tiny_pipeline_dir), "--prompt", "a bag", "--device", "cuda",
                 "--out", str(tmp_path / "g.png")]) == 2
    assert "no CUDA GPU" in one_line_error(capsys)
    assert main(["fid", str(tmp_path), str(tmp_path), "--device", "cuda:0"]) == 2
    assert "use --device cpu" in one_line_error(capsys)
    assert main(["sample", str(tiny_pipeline_dir), "--prompt", "a bag", "--device", "gpu0"]) == 2
    assert "not a device name" in one_line_error(capsys)


def test_resume_refuses_folders_whose_settings_or_state_it_cannot_know(finished_teacher, fake_fmnist, tmp_path,
                                                                      capsys):
    bare = _copy(finished_teacher, tmp_path / "bare")
    (bare / "config.json").unlink()  # e.g. a pipeline copied in by hand
    assert main(teacher(bare, fake_fmnist, "--resume", "latest")) == 2
    assert "but no config.json, so its settings are unknown" in one_line_error(capsys)
    done = _copy(finished_teacher, tmp_path / "done")
    shutil.rmtree(done / "stages" / "unet" / "checkpoints")
    assert main(teacher(done, fake_fmnist, "--resume", "latest")) == 2
    assert "finished run (model_index.json) and no checkpoint to continue from" in one_line_error(capsys)
    assert main(teacher(done, fake_fmnist, "--resume", "latest", "--overwrite")) == 2
    assert "give only one of them" in one_line_error(capsys)
