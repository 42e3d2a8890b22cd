"""Shared pieces of the optimizer tests: a small model and problem, and an independent reference.

The reference works on one flat parameter vector and writes the formulas of docs/optimizers.md
out directly, so it shares no code with gsam_repro.optim."""

from __future__ import annotations

import torch
from torch.func import functional_call

EPS = 1e-12


def small_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    )
    return model.to(dtype)


def classification_batch(seed: int = 1, n: int = 32, dtype: torch.dtype = torch.float64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=generator)
    return x, y


def make_closure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


class FlatProblem:
    """f(w) for a flat parameter vector w of `model`, on a fixed batch."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.x, self.y = x, y

    def flat_params(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).clone()

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = shape.numel()
            params[name] = w[offset : offset + size].view(shape)
            offset += size
        out = functional_call(self.model, params, (self.x,))
        return torch.nn.functional.cross_entropy(out, self.y)

    def value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = w.detach().clone().requires_grad_(True)
        value = self.loss(w)
        (grad,) = torch.autograd.grad(value, w)
        return value.detach(), grad


def reference_rho(lr, rho_max, rho_min, lr_max, lr_min):
    if lr_max == lr_min:
        return rho_max
    return max(0.0, rho_min + (rho_max - rho_min) * (lr - lr_min) / (lr_max - lr_min))


def reference_direction(problem: FlatProblem, w: torch.Tensor, rho: float, kind: str,
                        alpha: float = 0.0, lam: float = 0.0, adaptive=False) -> dict:
    """d and the measured quantities for one step at w, straight from the formulas."""
    f, g = problem.value_and_grad(w)
    if adaptive is False:
        eps = rho * g / (g.norm() + EPS)
    elif adaptive == "paper":
        eps = rho * w.abs() * g / (g.norm() + EPS)
    elif adaptive == "asam":
        eps = rho * w * w * g / ((w.abs() * g).norm() + EPS)
    else:
        raise AssertionError(adaptive)
    f_p, g_p = problem.value_and_grad(w + eps)
    if kind == "sam":
        d = g_p
    elif kind == "gsam":
        g_perp = g - (g @ g_p) / (g_p @ g_p + EPS) * g_p
        d = g_p - alpha * g_perp
    elif kind == "weighted":
        d = (1 + lam) * g_p - lam * g
    else:
        raise AssertionError(kind)
    cos = (g @ g_p) / (g.norm() * g_p.norm())
    return {"d": d, "f": f, "f_p": f_p, "h": f_p - f, "grad_norm": g.norm(),
            "grad_p_norm": g_p.norm(), "cos": cos}


class ReferenceSGD:
    """torch.optim.SGD's update written out: weight decay into the gradient, then momentum."""

    def __init__(self, lr, momentum, weight_decay):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buf = None

    def step(self, w, d, lr=None):
        lr = self.lr if lr is None else lr
        d = d + self.weight_decay * w
        self.buf = d.clone() if self.buf is None else self.momentum * self.buf + d
        return w - lr * self.buf


class ReferenceAdamW:
    """AdamW written out: decoupled decay w *= 1 - lr*wd, then the bias-corrected Adam step."""

    def __init__(self, lr, betas=(0.9, 0.999), weight_decay=0.0, eps=1e-8):
        self.lr, self.betas, self.weight_decay, self.eps = lr, betas, weight_decay, eps
        self.m = self.v = None
        self.t = 0

    def step(self, w, d, lr=None):
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        if self.m is None:
            self.m, self.v = torch.zeros_like(w), torch.zeros_like(w)
        w = w * (1 - lr * self.weight_decay)
        self.m = b1 * self.m + (1 - b1) * d
        self.v = b2 * self.v + (1 - b2) * d * d
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        return w - lr * m_hat / (v_hat.sqrt() + self.eps)


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])
