"""Exponential moving average of every trained module's weights.

theta_ema <- d theta_ema + (1 - d) theta, with the warm-up d_n = min(decay, (1 + n) / (10 + n))
used by diffusers' ``EMAModel`` (``use_ema_warmup=False`` form), so early averages are not
dominated by the random initialisation. Only trained parameters are averaged (a LoRA's adapter,
not its frozen base). The average is float32, beside the weights or, with ``device="cpu"``, in
host memory (the same values: the update is the same float32 lerp).
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, modules: dict[str, torch.nn.Module], decay: float, device=None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {f"{name}.{k}": p.detach().to(device=device or p.device, dtype=torch.float32, copy=True)
                       for name, m in modules.items() for k, p in m.named_parameters() if p.requires_grad}

    def _params(self, modules):
        for name, m in modules.items():
            for k, p in m.named_parameters():
                key = f"{name}.{k}"
                if key in self.shadow:
                    yield key, p

    @torch.no_grad()
    def update(self, modules: dict[str, torch.nn.Module]) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for key, p in self._params(modules):
            shadow = self.shadow[key]
            shadow.lerp_(p.detach().to(device=shadow.device, dtype=torch.float32), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, modules: dict[str, torch.nn.Module]) -> None:
        for key, p in self._params(modules):
            p.copy_(self.shadow[key].to(device=p.device, dtype=p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.contiguous() for k, v in self.shadow.items()}
        state["__num_updates__"] = torch.tensor(self.num_updates, dtype=torch.int64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self.num_updates = int(state.pop("__num_updates__"))
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[0]}")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])


class GroupEMAs:
    """One :class:`EMA` per optimizer group, updated when its group steps, saved as one state dict.

    A one-group method's state keeps the plain keys of :meth:`EMA.state_dict` (so checkpoints of
    earlier runs still load); several groups prefix theirs with ``<group>/``.
    """

    def __init__(self, emas: dict[str, EMA]):
        self.emas = emas

    def update(self, group: str, modules: dict[str, torch.nn.Module]) -> None:
        if group in self.emas:
            self.emas[group].update(modules)

    def copy_to(self, modules: dict[str, torch.nn.Module]) -> None:
        for ema in self.emas.values():
            ema.copy_to(modules)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if len(self.emas) == 1:
            return next(iter(self.emas.values())).state_dict()
        return {f"{g}/{k}": v for g, ema in self.emas.items() for k, v in ema.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if len(self.emas) == 1:
            next(iter(self.emas.values())).load_state_dict(state)
            return
        for g, ema in self.emas.items():
            ema.load_state_dict({k[len(g) + 1:]: v for k, v in state.items() if k.startswith(f"{g}/")})
