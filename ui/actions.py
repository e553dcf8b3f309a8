"""What the app's buttons do, without Gradio: input checks, generation, FID runs.

Built on the studio's public Python API (``studio.diffusion.sampling.generate``,
``studio.fid.run.compute_fid``), never on CLI parsing. Every bad input raises a
:class:`StudioError` whose message says in plain words what to change.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Callable

from studio import StudioError
from studio.fid.run import FIDConfig, FIDOptions, compute_fid
from studio.images import make_grid, save_png
from studio.models.generators import ClassGenerator, generate_from_prompts, label_of_prompt
from studio.models.model_info import sampling_settings
from studio.diffusion.sampling import generate

from ui.history import append_record
from ui.registry import ModelRegistry

JUDGE = "classifier"  # the models folder's classifier for class agreement (`studio cda squeeze`), if any
LIMITS = {"steps": (1, 100), "guidance": (0.0, 20.0), "num_images": (1, 16), "seed": (-1, 2**31 - 1),
          "fid_n": (100, 10000), "prompt_chars": 300}
DATASET_REFERENCES = ("fashion-mnist:test", "fashion-mnist:train")


def _bounded(value, lo, hi, what: str, whole: bool = False):
    if value is None:
        raise StudioError(f"{what} is empty; enter a number from {lo} to {hi}")
    if whole and float(value) != int(value):
        raise StudioError(f"{what} must be a whole number from {lo} to {hi}; you entered {value}")
    if not lo <= value <= hi:
        raise StudioError(f"{what} must be between {lo} and {hi}; you entered {value}")
    return int(value) if whole else value


def check_generate(prompt: str, seed, steps, guidance, num_images) -> tuple[str, int, int, float, int]:
    prompt = (prompt or "").strip()
    if not prompt:
        raise StudioError("the prompt is empty; type what to draw, e.g. 'a photo of a bag'")
    if len(prompt) > LIMITS["prompt_chars"]:
        raise StudioError(f"the prompt is {len(prompt)} characters long; keep it under {LIMITS['prompt_chars']}")
    seed = _bounded(seed, *LIMITS["seed"], "the seed (-1 picks a random one)", whole=True)
    steps = _bounded(steps, 0, LIMITS["steps"][1], "the number of steps of the right model (0: its own)",
                     whole=True)
    guidance = float(_bounded(guidance, *LIMITS["guidance"], "the guidance scale"))
    num = _bounded(num_images, *LIMITS["num_images"], "the number of images", whole=True)
    return prompt, (secrets.randbelow(2**31) if seed == -1 else seed), steps, guidance, num


def _run(registry: ModelRegistry, name: str, prompt: str, seed: int, steps: int, guidance: float, num: int,
         out_dir: Path, progress: Callable[[int, int], None] | None) -> dict:
    pipe = registry.pipeline(name)
    if isinstance(pipe, ClassGenerator):  # the prompt's class name picks the label, before the clock starts
        if pipe.class_names:
            label_of_prompt(prompt, pipe.class_names)
        guidance = 0.0
    t0 = time.perf_counter()
    if isinstance(pipe, ClassGenerator):
        images = generate_from_prompts(pipe, [prompt] * num, steps, seed, num, progress)
    else:
        images = generate(pipe, [prompt] * num, steps=steps, guidance=guidance, seed=seed, batch_size=num,
                          callback=progress)
    seconds = time.perf_counter() - t0
    folder = out_dir / uuid.uuid4().hex
    paths = []
    for k, image in enumerate(images):
        meta = {"parameters": json.dumps({"model": name, "prompt": prompt, "seed": seed + k, "steps": steps,
                                          "guidance": guidance})}
        paths.append(str(save_png(make_grid(image[None], nrow=1, pad=0), folder / f"{k:02d}.png", meta)))
    return {"model": name, "paths": paths, "seconds": seconds, "steps": steps, "guidance": guidance}


def generate_pair(registry: ModelRegistry, out_dir, prompt: str, seed, steps, guidance, num_images,
                  fast_model: str, slow_model: str, progress: Callable[[int, int], None] | None = None) -> dict:
    """Any two models side by side: ``fast_model`` (left) with its recommended settings, ``slow_model`` (right)
    with ``steps``/``guidance``, or with its own recommended settings where ``steps`` is 0."""
    prompt, seed, steps, guidance, num = check_generate(prompt, seed, steps, guidance, num_images)
    out_dir = Path(out_dir)
    if steps == 0:
        steps, guidance = sampling_settings(registry.path(slow_model))
    fast_steps, fast_guidance = sampling_settings(registry.path(fast_model))
    fast = _run(registry, fast_model, prompt, seed, fast_steps, fast_guidance, num, out_dir, None)
    slow = _run(registry, slow_model, prompt, seed, steps, guidance, num, out_dir, progress)
    return {"seed": seed, "fast": fast, "slow": slow}


def references(data_root: str | None) -> list[str]:
    """FID references offered: dataset splits, image folders directly under the data root, .npz files."""
    refs = list(DATASET_REFERENCES)
    if data_root and Path(data_root).is_dir():
        root = Path(data_root).resolve()
        for p in sorted(root.iterdir()):
            if p.is_dir() and p.resolve().is_relative_to(root) and not p.name.startswith("."):
                refs.append(f"folder:{p.name}")
            elif p.suffix == ".npz" and p.is_file() and p.resolve().is_relative_to(root):
                refs.append(f"stats:{p.name}")
    return refs


def _reference_spec(ref: str, data_root: str | None) -> str:
    if ref not in references(data_root):
        raise StudioError(f"{ref!r} is not one of the offered references; pick one from the list")
    if ref.startswith(("folder:", "stats:")):
        return str(Path(data_root).resolve() / ref.split(":", 1)[1])
    return ref


def fid_metrics(registry: ModelRegistry, reference: str) -> tuple[str, str]:
    """(metrics, classifier) of an FID run against ``reference``: FID alone against a statistics file
    (it holds no features); FID, KID and precision/recall otherwise; and class agreement against a
    dataset split when the models folder holds a classifier (``JUDGE``)."""
    if reference.startswith("stats:"):
        return "fid", ""
    judge = registry.root / JUDGE
    if reference in DATASET_REFERENCES and (judge / "classifier.json").is_file():
        return "fid,kid,pr,agreement", str(judge)
    return "fid,kid,pr", ""


def run_fid(registry: ModelRegistry, model: str, reference: str, n, steps, data_root: str | None = None,
            data_dir: str | None = None) -> dict:
    """FID, KID, precision/recall and class agreement (see :func:`fid_metrics`) of ``model`` (n samples,
    ``steps``; 0 = the model's recommended) against ``reference``, appended to the history."""
    n = _bounded(n, *LIMITS["fid_n"], "the number of samples", whole=True)
    steps = _bounded(steps, 0, LIMITS["steps"][1], "the number of steps (0: the model's own)", whole=True)
    path = registry.path(model)
    spec = _reference_spec(reference, data_root)
    steps, guidance = sampling_settings(path, steps or None)
    metrics, judge = fid_metrics(registry, reference)
    result = compute_fid(FIDConfig(real=spec, fake=str(path), opts=FIDOptions(
        num=n, steps=steps, guidance=guidance, data_dir=data_dir or "", device=registry.device, metrics=metrics,
        classifier=judge)))
    pr, kid, agree = result.get("precision_recall", {}), result.get("kid", {}), result.get("agreement", {})
    record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "model": model, "kind": registry.info(model)["kind"],
              "steps": steps, "guidance": guidance, "reference": reference, "n": n,
              "fid": round(result["fid"], 4), "kid": _round(kid.get("kid_mean"), 6),
              "kid_std": _round(kid.get("kid_std"), 6), "precision": _round(pr.get("precision"), 4),
              "recall": _round(pr.get("recall"), 4), "agreement": _round(agree.get("agreement"), 2),
              "judge_top1": (agree.get("judge") or {}).get("test_top1"), "seconds": result["seconds"]}
    append_record(registry.root, record)
    return record


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)
