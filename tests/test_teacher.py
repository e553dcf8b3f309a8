import torch
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
