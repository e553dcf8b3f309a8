"""Teacher couplings for reflow: (x0 noise, x1 = ODE endpoint latent, prompt id) in safetensors shards.

Reflow (Rectified Flow, Liu et al. 2022, sec. 2.2; InstaFlow, Liu et al. 2023, sec. 3.1)
trains on the coupling (X0, X1) that a teacher's probability-flow ODE induces: X0 ~ N(0, I)
latent noise, X1 the latent the teacher's solver (with classifier-free guidance) reaches from
it. Pair k uses the noise of seed ``seed + k`` and prompt ``k mod P``.

Layout of a pairs directory: ``manifest.json`` (teacher, solver, steps, guidance, seeds,
prompts, shard size) and ``shard-NNNNN.safetensors`` with tensors ``x0``, ``x1``,
``prompt_id`` and ``seed``. Shard j holds pairs [j S, (j + 1) S). Under torchrun/accelerate
process r writes the shards j with j mod world = r, so seeds are disjoint by construction.
Each shard is written to a temporary file and renamed; a rerun skips finished shards. A rerun
with a larger ``--num`` (all else equal) extends the set: the pairs already made are kept, a
partial last shard is completed, and the new shards are generated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from studio import StudioError
from studio.cli.schema import validate
from studio.files import atomic_path, write_json
from studio.models.backbone import load_pipeline
from studio.data.prompts import prompts_from
from studio.devices import process_state, resolve_device
from studio.models.model_info import read_model_info, sampling_settings
from studio.diffusion.noise import image_noise
from studio.diffusion.sampling import SOLVERS, is_stochastic, make_scheduler, sample_latents

from distill.reflow.config import PairsConfig

MANIFEST = "manifest.json"
_KEYS = ("teacher", "prompts", "num", "steps", "solver", "guidance", "seed", "shard_size", "store_dtype")


def shard_path(out: Path, j: int) -> Path:
    return out / f"shard-{j:05d}.safetensors"


def shards_of_rank(num: int, shard_size: int, rank: int, world: int) -> list[int]:
    """Shard indices process ``rank`` of ``world`` generates."""
    return [j for j in range(-(-num // shard_size)) if j % world == rank]


def _check_manifest(out: Path, manifest: dict) -> None:
    """Refuse a folder holding pairs made with other settings; a manifest with no shard yet (a run that
    stopped before its first shard) is replaced, so a corrected retry is not refused."""
    path = out / MANIFEST
    if not path.is_file() or not any(out.glob("shard-*.safetensors")):
        return
    try:
        old = {"store_dtype": "float32", **json.loads(path.read_text())}  # sets made before the option: float32
    except ValueError:
        raise StudioError(f"{path} is unreadable; move the folder away or use a new --out") from None
    diff = [k for k in _KEYS if old.get(k) != manifest.get(k)]
    if diff == ["num"] and manifest["num"] > old["num"]:
        return  # extending the set: pair k is the same pair for any num > k
    if diff:
        raise StudioError(f"{out} holds pairs made with other settings ({', '.join(diff)} differ); "
                          "use a new --out, the same settings, or only a larger --num to extend it")


def _finished(path: Path, rows: int) -> bool:
    """Whether shard ``path`` exists, reads, and holds all its ``rows`` pairs; a truncated or corrupt
    shard is made again (and a set's partial last shard grows on extension)."""
    try:
        return path.is_file() and len(_memmap(path)["seed"]) == rows
    except (StudioError, ValueError, OSError):
        return False


def _check_solver(scheduler, solver: str) -> None:
    if is_stochastic(scheduler):
        what = f"--solver {solver}" if solver != "auto" else f"the teacher's own {type(scheduler).__name__}"
        raise StudioError(f"{what} injects fresh noise at its steps, so the pairs would be neither a deterministic "
                          "coupling nor reproducible; use an ODE solver (dpmsolver, ddim, euler, heun, pndm, unipc)")


def _write_shard(path: Path, tensors: dict) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


def generate_pairs(cfg: PairsConfig) -> Path:
    """Generate (or complete) the pairs directory ``cfg.out``; returns it. The teacher loads (and its
    solver is checked) before the manifest is written, so a failed start leaves nothing to refuse."""
    validate(cfg)
    if cfg.guidance is None:  # the teacher's recommended guidance, recorded as a number in the manifest
        cfg = replace(cfg, guidance=sampling_settings(cfg.teacher)[1])
    if cfg.solver != "auto":
        _check_solver(SOLVERS[cfg.solver](), cfg.solver)
    state = process_state()
    out = Path(cfg.out)
    prompts = prompts_from(cfg.prompts, cfg.data_dir or None)
    teacher_kind = read_model_info(cfg.teacher)["kind"] if Path(cfg.teacher).is_dir() else "teacher"
    if teacher_kind != "teacher" and cfg.solver not in ("auto", "euler"):
        raise StudioError(f"{cfg.teacher} is a flow model ({teacher_kind}); it samples with --solver euler, "
                          f"not {cfg.solver!r}")
    manifest = {**asdict(cfg), "prompts": prompts, "prompt_source": cfg.prompts, "teacher_kind": teacher_kind,
                "x0": "latent noise N(0, I), seed + k", "x1": "teacher ODE endpoint latent (unet input scale)"}
    for k in ("out", "device", "data_dir", "batch_size", "dtype"):
        manifest.pop(k)
    _check_manifest(out, manifest)
    mine = [j for j in shards_of_rank(cfg.num, cfg.shard_size, state.process_index, state.num_processes)
            if not _finished(shard_path(out, j), min(cfg.num, (j + 1) * cfg.shard_size) - j * cfg.shard_size)]
    if mine:
        pipe = load_pipeline(cfg.teacher, dtype=cfg.dtype,
                             device=resolve_device(cfg.device) if cfg.device else state.device)
        _check_solver(make_scheduler(pipe, cfg.solver), cfg.solver)
    state.wait_for_everyone()
    if state.is_main_process:
        write_json(out / MANIFEST, manifest)
    state.wait_for_everyone()
    if mine:
        shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
        bar = tqdm(total=sum(min(cfg.num, (j + 1) * cfg.shard_size) - j * cfg.shard_size for j in mine), desc=f"pairs (rank {state.process_index})", unit="pair")
        for j in mine:
            lo, hi = j * cfg.shard_size, min(cfg.num, (j + 1) * cfg.shard_size)
            parts = {"x0": [], "x1": []}
            for b in range(lo, hi, cfg.batch_size):
                ks = list(range(b, min(hi, b + cfg.batch_size)))
                seeds = [cfg.seed + k for k in ks]
                batch_prompts = [prompts[k % len(prompts)] for k in ks]
                x1 = sample_latents(pipe, batch_prompts, cfg.steps, cfg.guidance, seeds, cfg.solver)
                parts["x0"].append(image_noise(shape, seeds, "cpu", torch.float32))
                parts["x1"].append(x1.float().cpu())
                bar.update(len(ks))
            ks, store = torch.arange(lo, hi), getattr(torch, cfg.store_dtype)
            _write_shard(shard_path(out, j), {"x0": torch.cat(parts["x0"]).to(store),
                                              "x1": torch.cat(parts["x1"]).to(store),
                                              "prompt_id": ks % len(prompts), "seed": ks + cfg.seed})
        bar.close()
    state.wait_for_everyone()
    return out


_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}


def _memmap(path: Path) -> dict[str, np.ndarray]:
    """Read-only memory maps of a safetensors file's tensors (8-byte header size, JSON header, data)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(meta["dtype"])
        if dtype is None:
            raise StudioError(f"{path}: tensor {name} has unsupported dtype {meta['dtype']}")
        start, end = meta["data_offsets"]
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=tuple(meta["shape"]))
        if out[name].nbytes != end - start:
            raise StudioError(f"{path}: tensor {name} is truncated; delete the shard and rerun `reflow pairs`")
    return out


class PairsDataset:
    """All shards of a pairs directory as one dataset: ``batch(indices)`` -> x0, x1, prompt_id."""

    def __init__(self, pairs_dir):
        root = Path(pairs_dir)
        if not (root / MANIFEST).is_file():
            raise StudioError(f"{root} is not a pairs directory (no {MANIFEST}); make one with `studio reflow pairs`")
        self.manifest = json.loads((root / MANIFEST).read_text())
        self.prompts = self.manifest["prompts"]
        num, size = self.manifest["num"], self.manifest["shard_size"]
        missing = [j for j in range(-(-num // size)) if not shard_path(root, j).is_file()]
        if missing:
            raise StudioError(f"{root} misses {len(missing)} shard(s) (first: {shard_path(root, missing[0]).name}); "
                              "rerun the same `studio reflow pairs` command to finish it")
        try:
            self.shards = [_memmap(shard_path(root, j)) for j in range(-(-num // size))]
        except (ValueError, json.JSONDecodeError, KeyError) as e:
            raise StudioError(f"{root}: a shard is corrupt ({e}); delete it and rerun `studio reflow pairs`") from None
        self.size = size
        self.num = num

    def __len__(self) -> int:
        return self.num

    def batch(self, indices) -> dict:
        idx = np.asarray(indices)
        shard, row = idx // self.size, idx % self.size
        take = {k: np.stack([self.shards[s][k][r] for s, r in zip(shard, row)]) for k in ("x0", "x1", "prompt_id")}
        for k in ("x0", "x1"):  # stored in float16 or float32 (the manifest's store_dtype); trained in float32
            take[k] = take[k].astype(np.float32)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in take.items()}
