import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from studio.models.backbone import load_pipeline
from studio.cli import main


def test_finetune_an_existing_pipeline_skips_the_vae_stage(tiny_pipeline_dir, fake_fmnist, tmp_path):
    out = tmp_path / "ft"
    rc = main(["teacher", "train", "--init", str(tiny_pipeline_dir), "--data-dir", str(fake_fmnist), "--out", str(out),
               "--steps", "2", "--batch-size", "4", "--tracker", "none", "--no-progress", "--ema-decay", "0"])
    assert rc == 0
    assert not (out / "stages" / "vae").exists()
    rel = "vae/diffusion_pytorch_model.safetensors"
    before, after = load_file(str(tiny_pipeline_dir / rel)), load_file(str(out / rel))
    assert all(torch.equal(before[k], after[k]) for k in before)
    u0 = load_file(str(tiny_pipeline_dir / "unet/diffusion_pytorch_model.safetensors"))
    u1 = load_file(str(out / "unet/diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(u0[k], u1[k]) for k in u0)
    assert len(load_pipeline(out).tokenizer) == len(load_pipeline(tiny_pipeline_dir).tokenizer)


def test_a_given_autoencoder_replaces_stage_one(tiny_pipeline_dir, fake_fmnist, tmp_path):
    out = tmp_path / "t"
    rc = main(["teacher", "train", "--vae", str(tiny_pipeline_dir / "vae"), "--data-dir", str(fake_fmnist),
               "--out", str(out), "--steps", "1", "--batch-size", "4", "--tracker", "none", "--no-progress"])
    assert rc == 0 and not (out / "stages" / "vae").exists()
    rel = "vae/diffusion_pytorch_model.safetensors"
    before, after = load_file(str(tiny_pipeline_dir / rel)), load_file(str(out / rel))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_missing_or_unfit_autoencoder_is_refused(tiny_pipeline_dir, fake_fmnist, tmp_path, capsys):
    common = ["--data-dir", str(fake_fmnist), "--steps", "1", "--tracker", "none", "--no-progress"]
    assert main(["teacher", "train", "--vae", str(tmp_path / "none"), "--out", str(tmp_path / "a"), *common]) != 0
    assert "no autoencoder there" in capsys.readouterr().err
    assert main(["teacher", "train", "--vae", str(tiny_pipeline_dir / "vae"), "--init", str(tiny_pipeline_dir),
                 "--out", str(tmp_path / "b"), *common]) != 0
    assert "pass one" in capsys.readouterr().err
    vae = AutoencoderKL.from_pretrained(str(tiny_pipeline_dir / "vae"))
    AutoencoderKL(**{**vae.config, "latent_channels": 8}).save_pretrained(str(tmp_path / "vae8"))
    assert main(["teacher", "train", "--vae", str(tmp_path / "vae8"), "--out", str(tmp_path / "c"), *common]) != 0
    assert "makes latents of 8 channels" in capsys.readouterr().err
