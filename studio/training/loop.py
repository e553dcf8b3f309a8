"""The one training loop every method uses, on accelerate.

Features: mixed precision, gradient accumulation over every trained module, clipping, EMA,
LR warm-up and schedule, TensorBoard, tqdm on the main process, atomic checkpoints with a
retention limit, exact resume (data order and randomness are functions of the step, see
``studio.training.batches`` and ``studio.training.randomness``), a stop with a one-line error on
a NaN/inf loss (nothing is saved after the last good checkpoint), and SIGTERM -> checkpoint +
clean exit. Methods with several networks get one optimizer (and EMA) per group, stepped in the
order :meth:`Method.updates` gives (``studio.training.method``).

Per-group keys. Group g of G at step s draws its micro-batch m from data-stream position
(((s G + g) accum + m) world + rank) B and its randomness from the key (seed, s, m, group);
with one group these are the one-network loop's positions and keys, unchanged.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from studio import StudioError
from studio.cli.schema import validate
from studio.devices import use_cpu
from studio.training.batches import stream_indices
from studio.training.checkpoints import (list_checkpoints, load_checkpoint, read_state, resume_point, save_checkpoint,
                                        save_trainable_only)
from studio.training.config import TrainerConfig, lr_factor, resolve_mixed_precision
from studio.training.ema import EMA, GroupEMAs
from studio.training.method import Method
from studio.training.randomness import StepRandom, stream_seed


class NonFiniteLoss(StudioError):
    pass


@dataclass
class TrainResult:
    step: int
    interrupted: bool
    modules: dict  # unwrapped trained modules (EMA weights loaded if EMA is on and the run finished)
    seconds: float = 0.0  # training time to reach ``step``, summed over resumed segments


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _make_optimizer(cfg: TrainerConfig, params, lr: float, device):
    kw = dict(lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw8bit":
        return adamw8bit(device)(params, **kw)
    return torch.optim.RAdam(params, **kw) if cfg.optimizer == "radam" else torch.optim.AdamW(params, **kw)


def adamw8bit(device):
    """bitsandbytes' ``AdamW8bit`` (Dettmers et al. 2022, block-wise 8-bit optimizer states), after a probe
    step on ``device``: where it does not install or run, a one-line error says so."""
    try:
        import bitsandbytes as bnb

        probe = torch.nn.Parameter(torch.ones(4096, device=device))  # >= 4096 values: the 8-bit path
        probe.grad = torch.ones_like(probe)
        bnb.optim.AdamW8bit([probe], lr=1e-3).step()
    except Exception as e:  # noqa: BLE001 - a missing package, library or kernel all mean "not here"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise StudioError(f"--optimizer adamw8bit needs bitsandbytes running on {device} ({first}); "
                          "pip install bitsandbytes, or use --optimizer adamw") from None
    return bnb.optim.AdamW8bit


class _SigtermFlag:
    def __init__(self):
        self.raised = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. inside a UI worker): no handler
            self._old = None
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _check_groups(method: Method, raw: dict) -> dict:
    groups = method.groups()
    owned = [n for g in groups.values() for n in g.modules]
    if sorted(owned) != sorted(raw) or len(set(owned)) != len(owned):
        raise ValueError(f"{method.name}: every trained module must be in exactly one group; "
                         f"modules {sorted(raw)}, groups {dict((k, g.modules) for k, g in groups.items())}")
    return groups


def train(method: Method, cfg: TrainerConfig, out_dir) -> TrainResult:
    out_dir = Path(out_dir)
    validate(cfg)
    accelerator = Accelerator(cpu=use_cpu(), mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
                              log_with="tensorboard" if cfg.tracker == "tensorboard" else None,
                              project_dir=str(out_dir))
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    method.setup(device)
    raw = method.trainable()
    groups = _check_groups(method, raw)

    def trainable(mods, g):
        return [p for n in groups[g].modules for p in mods[n].parameters() if p.requires_grad]

    optimizers = [_make_optimizer(cfg, trainable(raw, g), cfg.lr * groups[g].lr_scale, device) for g in groups]
    # The LR is set from the step each iteration (stateless, so resume is exact). Not a prepared
    # scheduler: accelerate steps those once per process, which would shift the schedule.
    prepared = accelerator.prepare(*raw.values(), *optimizers)
    modules = dict(zip(raw, prepared[:len(raw)]))
    opts = dict(zip(groups, prepared[len(raw):]))
    plain = {n: accelerator.unwrap_model(m) for n, m in modules.items()}
    params = {g: trainable(plain, g) for g in groups}
    every_param = [p for ps in params.values() for p in ps]
    save_trainable_only(accelerator)
    ema_device = "cpu" if cfg.ema_device == "cpu" else None
    kept = {g: EMA({n: plain[n] for n in groups[g].modules}, cfg.ema_decay, ema_device) for g in groups
            if groups[g].ema and cfg.ema_decay > 0}
    emas = GroupEMAs(kept) if kept else None

    start, before = 0, 0.0
    ckpt = resume_point(out_dir, cfg.resume, cfg.steps)
    if ckpt is not None:
        start = load_checkpoint(accelerator, ckpt, list(plain.values()), emas)
        before = float(read_state(ckpt).get("seconds", 0.0))
        if accelerator.is_main_process:
            print(f"resumed from {ckpt} at step {start}")
    if cfg.tracker == "tensorboard":
        accelerator.init_trackers("logs", config={k: v for k, v in asdict(cfg).items()
                                                  if isinstance(v, (int, float, str, bool))})

    data = method.dataset()
    n = len(data)
    B, accum, G, multi = cfg.batch_size, cfg.grad_accum, len(groups), len(groups) > 1
    index = {g: i for i, g in enumerate(groups)}
    for m in modules.values():
        m.train()
    bar = tqdm(total=cfg.steps, initial=start, desc=method.name, dynamic_ncols=True,
               disable=not (cfg.progress and accelerator.is_main_process))
    step, interrupted, t0 = start, False, time.perf_counter()
    with _SigtermFlag() as sigterm:
        while step < cfg.steps:
            method.on_step_start(step)
            lr = cfg.lr * lr_factor(cfg, step)
            logs, losses = {}, {}
            todo = method.updates(step)
            if not todo:
                raise ValueError(f"{method.name}: updates({step}) names no group")
            for g in todo:
                keys = (g,) if multi else ()
                for p in every_param:  # only this group's loss reaches its optimizer
                    p.grad = None
                nonfinite = 0.0
                for micro in range(accum):
                    pos = (((step * G + index[g]) * accum + micro) * world + rank) * B
                    batch = _to_device(data.batch(stream_indices(n, cfg.seed, pos, B)), device)
                    rand = StepRandom(cfg.seed, step, micro, rank, world, B, device, *keys)
                    torch.manual_seed(stream_seed(cfg.seed, "torch", step, micro, rank, *keys))  # dropout etc.
                    last = micro == accum - 1
                    with contextlib.ExitStack() as stack:
                        if not last and world > 1:
                            for m in modules.values():
                                stack.enter_context(accelerator.no_sync(m))
                        with accelerator.autocast():
                            loss, glogs = method.group_loss(g, modules, batch, rand)
                        nonfinite += float(not torch.isfinite(loss.detach()).item())
                        accelerator.backward(loss / accum)
                flags = torch.tensor([nonfinite, float(sigterm.raised)], device=device)
                if world > 1:
                    flags = accelerator.reduce(flags, reduction="sum")
                if flags[0].item() > 0:
                    good = list_checkpoints(out_dir)
                    where = f"last good checkpoint {good[-1]}" if good else "no checkpoint was saved yet"
                    what = f"{g} loss" if multi else "loss"
                    raise NonFiniteLoss(f"non-finite {what} (nan or inf) at step {step + 1}; stopped without saving "
                                        f"({where}); lower --lr or check the data")
                if cfg.max_grad_norm > 0:
                    glogs = {**glogs, "grad_norm": float(accelerator.clip_grad_norm_(params[g], cfg.max_grad_norm))}
                for group in opts[g].param_groups:
                    group["lr"] = lr * groups[g].lr_scale
                opts[g].step()
                opts[g].zero_grad(set_to_none=True)
                if emas is not None:
                    emas.update(g, plain)
                losses[g] = float(loss.detach())
                logs.update({f"{g}/{k}": v for k, v in glogs.items()} if multi else glogs)
            method.on_step_end(step, logs)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                shown = {f"loss_{g}": v for g, v in losses.items()} if multi else {"loss": losses[todo[-1]]}
                logs = {**shown, "lr": lr, **logs}
                bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()})
                if bar.disable and accelerator.is_main_process:
                    print(f"{method.name} step {step}/{cfg.steps} " + " ".join(f"{k} {v:.4f}" for k, v in shown.items()),
                          flush=True)
                if cfg.tracker == "tensorboard":
                    accelerator.log(logs, step=step)
            if flags[1].item() > 0:
                interrupted = True
                path = save_checkpoint(accelerator, out_dir, step, emas, cfg.checkpoints_limit,
                                       before + time.perf_counter() - t0)
                if accelerator.is_main_process:
                    print(f"SIGTERM: saved {path}; continue with --resume latest")
                break
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(accelerator, out_dir, step, emas, cfg.checkpoints_limit,
                                before + time.perf_counter() - t0)
    bar.close()
    for tracker in accelerator.trackers:  # not end_training(): that also destroys the process group
        tracker.finish()
    if emas is not None and not interrupted:
        emas.copy_to(plain)
    return TrainResult(step, interrupted, plain, round(before + time.perf_counter() - t0, 3))
