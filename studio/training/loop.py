"""The one training loop every method uses, on accelerate.

Features: mixed precision, gradient accumulation over every trained module, clipping, EMA,
LR warm-up and schedule, TensorBoard, tqdm on the main process, atomic checkpoints with a
retention limit, exact resume (data order and randomness are functions of the step, see
``studio.training.batches`` and ``studio.training.randomness``), a stop with a one-line error on a NaN/inf
loss (nothing is saved after the last good checkpoint), and SIGTERM -> checkpoint + clean exit.
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
from studio.training.batches import stream_indices
from studio.training.checkpoints import list_checkpoints, load_checkpoint, read_state, resolve_resume, save_checkpoint
from studio.devices import use_cpu
from studio.training.ema import EMA
from studio.training.method import Method
from studio.training.randomness import StepRandom, stream_seed
from studio.training.config import TrainerConfig, lr_factor, resolve_mixed_precision, validate


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


def _make_optimizer(cfg: TrainerConfig, params):
    kw = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    return torch.optim.RAdam(params, **kw) if cfg.optimizer == "radam" else torch.optim.AdamW(params, **kw)


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


def train(method: Method, cfg: TrainerConfig, out_dir) -> TrainResult:
    out_dir = Path(out_dir)
    validate(cfg)
    accelerator = Accelerator(cpu=use_cpu(), mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
                              log_with="tensorboard" if cfg.tracker == "tensorboard" else None,
                              project_dir=str(out_dir))
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    method.setup(device)
    raw = method.trainable()
    names = list(raw)
    params = [p for m in raw.values() for p in m.parameters() if p.requires_grad]
    optimizer = _make_optimizer(cfg, params)
    # The LR is set from the step each iteration (stateless, so resume is exact). Not a prepared
    # scheduler: accelerate steps those once per process, which would shift the schedule.
    *wrapped, optimizer = accelerator.prepare(*raw.values(), optimizer)
    modules = dict(zip(names, wrapped))
    plain = {n: accelerator.unwrap_model(m) for n, m in modules.items()}
    params = [p for m in plain.values() for p in m.parameters() if p.requires_grad]
    ema = EMA(plain, cfg.ema_decay) if cfg.ema_decay > 0 else None

    start, before = 0, 0.0
    ckpt = resolve_resume(out_dir, cfg.resume)
    if ckpt is not None:
        start = load_checkpoint(accelerator, ckpt, ema)
        before = float(read_state(ckpt).get("seconds", 0.0))
        if accelerator.is_main_process:
            print(f"resumed from {ckpt} at step {start}")
    if cfg.tracker == "tensorboard":
        accelerator.init_trackers("logs", config={k: v for k, v in asdict(cfg).items()
                                                  if isinstance(v, (int, float, str, bool))})

    data = method.dataset()
    n = len(data)
    B, accum = cfg.batch_size, cfg.grad_accum
    for m in modules.values():
        m.train()
    bar = tqdm(total=cfg.steps, initial=start, desc=method.name, dynamic_ncols=True,
               disable=not (cfg.progress and accelerator.is_main_process))
    step, interrupted, t0 = start, False, time.perf_counter()
    with _SigtermFlag() as sigterm:
        while step < cfg.steps:
            method.on_step_start(step)
            nonfinite = 0.0
            for micro in range(accum):
                pos = ((step * accum + micro) * world + rank) * B
                batch = _to_device(data.batch(stream_indices(n, cfg.seed, pos, B)), device)
                rand = StepRandom(cfg.seed, step, micro, rank, world, B, device)
                torch.manual_seed(stream_seed(cfg.seed, "torch", step, micro, rank))  # dropout etc.
                last = micro == accum - 1
                with contextlib.ExitStack() as stack:
                    if not last and world > 1:
                        for m in modules.values():
                            stack.enter_context(accelerator.no_sync(m))
                    with accelerator.autocast():
                        loss, logs = method.loss(modules, batch, rand)
                    nonfinite += float(not torch.isfinite(loss.detach()).item())
                    accelerator.backward(loss / accum)
            flags = torch.tensor([nonfinite, float(sigterm.raised)], device=device)
            if world > 1:
                flags = accelerator.reduce(flags, reduction="sum")
            if flags[0].item() > 0:
                good = list_checkpoints(out_dir)
                where = f"last good checkpoint {good[-1]}" if good else "no checkpoint was saved yet"
                raise NonFiniteLoss(f"non-finite loss (nan or inf) at step {step + 1}; stopped without saving "
                                    f"({where}); lower --lr or check the data")
            if cfg.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                logs = {**logs, "grad_norm": float(grad_norm)}
            lr = cfg.lr * lr_factor(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(plain)
            method.on_step_end(step, logs)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                logs = {"loss": float(loss.detach()), "lr": lr, **logs}
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
                if bar.disable and accelerator.is_main_process:
                    print(f"{method.name} step {step}/{cfg.steps} loss {logs['loss']:.4f}", flush=True)
                if cfg.tracker == "tensorboard":
                    accelerator.log(logs, step=step)
            if flags[1].item() > 0:
                interrupted = True
                path = save_checkpoint(accelerator, out_dir, step, ema, cfg.checkpoints_limit,
                                       before + time.perf_counter() - t0)
                if accelerator.is_main_process:
                    print(f"SIGTERM: saved {path}; continue with --resume latest")
                break
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(accelerator, out_dir, step, ema, cfg.checkpoints_limit,
                                before + time.perf_counter() - t0)
    bar.close()
    for tracker in accelerator.trackers:  # not end_training(): that also destroys the process group
        tracker.finish()
    if ema is not None and not interrupted:
        ema.copy_to(plain)
    return TrainResult(step, interrupted, plain, round(before + time.perf_counter() - t0, 3))
