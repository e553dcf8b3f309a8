"""A two-network method for the loop's tests: a generator and a critic with their own optimizers.

The critic steps on every step and the generator on every third step, after the critic (the
K-critic-updates-per-generator-update pattern of distribution-matching and GAN training). Runnable
as a script so the tests can SIGKILL it and start it under torchrun:

    python tests/two_networks.py OUT --steps 40 [--batch-size 8] [--resume latest] [--slow 0.05]

It writes OUT/final.safetensors (every trained weight, EMA applied) when the run finishes.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.training.method import Group, Method  # noqa: E402


class Points:
    def __init__(self, n=48):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 4, generator=g) * 0.5 + 1.0

    def __len__(self):
        return len(self.x)

    def batch(self, idx):
        return {"x": self.x[torch.as_tensor(idx)]}


class TwoNetworks(Method):
    name = "two-networks"

    def __init__(self, dropout=0.0, slow=0.0):
        torch.manual_seed(0)
        self.generator = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                             torch.nn.Linear(8, 4))
        self.critic = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.data, self.slow, self.seen = Points(), slow, []

    def trainable(self):
        return {"generator": self.generator, "critic": self.critic}

    def groups(self):
        return {"critic": Group(("critic",), ema=False), "generator": Group(("generator",), lr_scale=0.5)}

    def updates(self, step):
        return ["critic", "generator"] if step % 3 == 2 else ["critic"]

    def dataset(self):
        return self.data

    def group_loss(self, group, modules, batch, rand):
        self.seen.append(group)
        real = batch["x"]
        z = rand.randn(4)
        if group == "critic":
            with torch.no_grad():
                fake = modules["generator"](z)
            c = modules["critic"]
            loss = c(fake).mean() - c(real).mean() + 0.1 * (c(real) ** 2).mean()
            return loss, {"gap": float(loss.detach())}
        return -modules["critic"](modules["generator"](z)).mean(), {}

    def on_step_end(self, step, logs):
        time.sleep(self.slow)


def weights(modules) -> dict:
    return {f"{n}.{k}": v.detach().clone().contiguous() for n, m in modules.items() for k, v in m.state_dict().items()}


def main():
    from safetensors.torch import save_file

    from studio.training.config import TrainerConfig
    from studio.training.loop import train

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--resume", default="")
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    a = p.parse_args()
    cfg = TrainerConfig(steps=a.steps, batch_size=a.batch_size, lr=1e-2, ema_decay=0.9, checkpoint_every=2,
                        checkpoints_limit=0, max_grad_norm=1.0, adam_eps=1.0, tracker="none", progress=False,
                        log_every=5, resume=a.resume)
    result = train(TwoNetworks(a.dropout, a.slow), cfg, a.out)
    if not result.interrupted:
        save_file(weights(result.modules), str(Path(a.out) / "final.safetensors"))


if __name__ == "__main__":
    main()
