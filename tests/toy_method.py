"""A small regression method for trainer tests: two linear modules, a known optimum."""

import torch

from studio.training.method import Method


class ToyData:
    def __init__(self, n=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.w = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
        self.y = self.x @ self.w.T

    def __len__(self):
        return len(self.x)

    def batch(self, idx):
        idx = torch.as_tensor(idx)
        return {"x": self.x[idx], "y": self.y[idx]}


class ToyMethod(Method):
    name = "toy"

    def __init__(self, noise=0.0, nan_at_step=None, dropout=0.0):
        torch.manual_seed(0)
        self.a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(dropout))
        self.b = torch.nn.Linear(8, 1)
        self.noise, self.nan_at_step, self.calls = noise, nan_at_step, 0
        self.data = ToyData()

    def trainable(self):
        return {"a": self.a, "b": self.b}

    def dataset(self):
        return self.data

    def loss(self, modules, batch, rand):
        self.calls += 1
        x = batch["x"] + self.noise * rand.randn(4)
        loss = ((modules["b"](modules["a"](x)) - batch["y"]) ** 2).mean()
        if self.nan_at_step is not None and self.calls >= self.nan_at_step:
            loss = loss * float("nan")
        return loss, {}
