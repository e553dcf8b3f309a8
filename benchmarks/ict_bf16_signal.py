"""How much bf16 autocast perturbs iCT's training signal, the student-target difference.

    python benchmarks/ict_bf16_signal.py   # -> benchmarks/results/ict_bf16_signal.json

iCT trains on d = f(x + sigma_{i+1} z, sigma_{i+1}) - f(x + sigma_i z, sigma_i) (iCT sec. 3), and
sigma_{i+1} - sigma_i shrinks as the curriculum raises N (11 -> 1281), so d shrinks while the
rounding error of each UNet pass does not. For N in 11, 161 and 1281, indices i drawn from the
training lognormal (iCT sec. 3.5) and Fashion-MNIST images, this measures the relative error
||d_p - d_64|| / ||d_64|| of d computed in fp32 and under bf16 autocast against float64 (median
over all samples of --batches batches of 32), and the same for the pseudo-Huber loss per sample.
The float64 reference runs a float64 copy of the UNet; the scalings and c_noise are the same
float32 values in every precision (``ConsistencyDenoiser`` computes them so), so the figures are the
rounding of the network passes and of x + sigma z.
The UNet is ``consistency.model.SMALL_UNET`` at its seeded random initialisation, or the UNet of
an exported ``ConsistencyModelPipeline`` given with --model.
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import write_result

from consistency.model import build_unet, consistency_model
from consistency.recipe import karras_sigmas, lognormal_weights
from studio.data import load_dataset
from studio.diffusion.adapter import append_dims
from studio.diffusion.losses import huber_c, pseudo_huber


def differences(unet, x, z, s_next, s_i, precision: str) -> torch.Tensor:
    """d = f(x + s_next z, s_next) - f(x + s_i z, s_i) in float64, float32 or bf16 autocast, as float64."""
    f = consistency_model(unet)
    dtype = torch.float64 if precision == "fp64" else torch.float32
    x, z, s_next, s_i = (t.to(dtype) for t in (x, z, s_next, s_i))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        student = f(x + append_dims(s_next, x.ndim) * z, s_next)
        target = f(x + append_dims(s_i, x.ndim) * z, s_i)
    return student.double() - target.double()


def measure(unet, unet64, images: torch.Tensor, n_scales: int, batches: int, seed: int) -> dict:
    """Median relative errors of d and of the per-sample loss, fp32 and bf16 against float64 (``unet64``)."""
    sigmas = karras_sigmas(n_scales)
    weights = lognormal_weights(sigmas)
    g = torch.Generator().manual_seed(seed)
    c = huber_c(images[0].numel())
    err = {"fp32": [], "bf16": []}
    loss_err = {"fp32": [], "bf16": []}
    for b in range(batches):
        x = images[b * 32:(b + 1) * 32]
        z = torch.randn(x.shape, generator=g)
        idx = torch.multinomial(weights, x.shape[0], replacement=True, generator=g)
        s_next, s_i = sigmas[idx + 1], sigmas[idx]
        ref = differences(unet64, x, z, s_next, s_i, "fp64")
        ref_loss = pseudo_huber(ref, torch.zeros_like(ref), c)
        for p in err:
            d = differences(unet, x, z, s_next, s_i, p)
            err[p].append((d - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1))
            loss_err[p].append((pseudo_huber(d, torch.zeros_like(d), c) - ref_loss).abs() / ref_loss)
    return {p: {"d_rel_error_median": float(torch.cat(err[p]).median()),
                "d_rel_error_p90": float(torch.cat(err[p]).quantile(0.9)),
                "loss_rel_error_median": float(torch.cat(loss_err[p]).median())} for p in err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="an exported ConsistencyModelPipeline (default: random init)")
    p.add_argument("--batches", type=int, default=4, help="batches of 32 images per N")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.model:
        from diffusers import ConsistencyModelPipeline

        unet = ConsistencyModelPipeline.from_pretrained(a.model).unet
    else:
        unet = build_unet(seed=a.seed)
    unet = unet.eval().float()
    data = load_dataset("fashion-mnist", resolution=32)
    images = torch.stack([data[k]["pixels"] for k in range(32 * a.batches)]).float()
    unet64 = copy.deepcopy(unet).double()
    rows = {}
    for n_scales in (11, 161, 1281):
        rows[str(n_scales)] = measure(unet, unet64, images, n_scales, a.batches, a.seed)
        print(n_scales, rows[str(n_scales)])
    write_result("ict_bf16_signal", {
        "what": __doc__.splitlines()[0],
        "command": "python benchmarks/ict_bf16_signal.py" + (f" --model {a.model}" if a.model else ""),
        "model": a.model or f"SMALL_UNET, random init seed {a.seed}",
        "samples_per_n": 32 * a.batches,
        "by_num_scales": rows,
    })


if __name__ == "__main__":
    main()
