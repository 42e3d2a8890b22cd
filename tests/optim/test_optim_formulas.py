"""Each optimizer against the formulas of docs/optimizers.md, computed independently over flat
tensors."""

from __future__ import annotations

import pytest
import torch
from optim_testkit import (
    FlatProblem,
    ReferenceAdamW,
    ReferenceSGD,
    classification_batch,
    flat,
    make_closure,
    reference_direction,
    reference_rho,
    small_mlp,
)

from gsam_repro.optim import GSAM, SAM, WeightedSAM, create_optimizer

LR = {"sgd": 0.1, "adamw": 0.01}
LR_FACTORS = [1.0, 0.55, 0.1]  # lr_max, midway, lr_min: rho moves through its whole range


def build(kind: str, base: str, model: torch.nn.Module, adaptive=False, grad_clip=None):
    lr = LR[base]
    base_args = (
        {"momentum": 0.9, "weight_decay": 5e-3}
        if base == "sgd"
        else {"betas": (0.8, 0.99), "weight_decay": 0.1}
    )
    common = dict(base=base, lr=lr, adaptive=adaptive, grad_clip=grad_clip, lr_min=lr * 0.1,
                  model=model, **base_args)
    if kind == "sam":
        return create_optimizer("sam", model.parameters(), rho=0.2, **common)
    if kind == "gsam":
        return create_optimizer("gsam", model.parameters(), rho_max=0.3, rho_min=0.1, alpha=0.4,
                                **common)
    return create_optimizer("weighted", model.parameters(), rho=0.2, lam=0.7, **common)


def reference_run(kind, base, adaptive=False, grad_clip=None, steps=3):
    model = small_mlp()
    x, y = classification_batch()
    problem = FlatProblem(model, x, y)
    w = problem.flat_params()
    lr = LR[base]
    if base == "sgd":
        base_opt = ReferenceSGD(lr, momentum=0.9, weight_decay=5e-3)
    else:
        base_opt = ReferenceAdamW(lr, betas=(0.8, 0.99), weight_decay=0.1)
    history = []
    for t in range(steps):
        lr_t = lr * LR_FACTORS[t]
        if kind == "gsam":
            rho = reference_rho(lr_t, 0.3, 0.1, lr, lr * 0.1)
        else:
            rho = 0.2
        out = reference_direction(problem, w, rho, kind, alpha=0.4, lam=0.7, adaptive=adaptive)
        d = out["d"]
        if grad_clip is not None:
            d = d * min(1.0, grad_clip / (float(d.norm()) + 1e-6))
        w = base_opt.step(w, d, lr=lr_t)
        history.append({"w": w, "rho": rho, **out})
    return history


def package_run(kind, base, adaptive=False, grad_clip=None, steps=3):
    model = small_mlp()
    x, y = classification_batch()
    opt = build(kind, base, model, adaptive=adaptive, grad_clip=grad_clip)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: LR_FACTORS[min(t, 2)])
    history = []
    for _ in range(steps):
        opt.step(make_closure(model, x, y))
        scheduler.step()
        history.append({"w": flat(model), **opt.stats})
    return history


def assert_same_history(ours, reference):
    for step, (got, want) in enumerate(zip(ours, reference, strict=True)):
        torch.testing.assert_close(got["w"], want["w"], rtol=1e-9, atol=1e-12,
                                   msg=lambda m, s=step: f"step {s}: {m}")
        for key in ("f", "f_p", "h", "grad_norm", "grad_p_norm", "cos"):
            torch.testing.assert_close(got[key], want[key].to(got[key].dtype), rtol=1e-9,
                                       atol=1e-12, msg=lambda m, k=key: f"{k}: {m}")
        assert float(got["rho"]) == pytest.approx(want["rho"], rel=1e-12)


@pytest.mark.parametrize("base", ["sgd", "adamw"])
@pytest.mark.parametrize("kind", ["sam", "gsam", "weighted"])
def test_three_steps_match_the_formulas(kind, base):
    assert_same_history(package_run(kind, base), reference_run(kind, base))


@pytest.mark.parametrize("adaptive", ["paper", "asam"])
@pytest.mark.parametrize("kind", ["sam", "gsam", "weighted"])
def test_adaptive_perturbations_match_the_formulas(kind, adaptive):
    assert_same_history(package_run(kind, "sgd", adaptive=adaptive),
                        reference_run(kind, "sgd", adaptive=adaptive))


def test_adaptive_modes_really_differ_from_plain():
    plain = package_run("gsam", "sgd")[-1]["w"]
    for adaptive in ("paper", "asam"):
        assert (package_run("gsam", "sgd", adaptive=adaptive)[-1]["w"] - plain).abs().max() > 1e-6


def test_clipping_the_final_direction_matches_the_formula():
    ours = package_run("gsam", "sgd", grad_clip=0.05)
    assert_same_history(ours, reference_run("gsam", "sgd", grad_clip=0.05))
    unclipped = package_run("gsam", "sgd")
    assert (ours[-1]["w"] - unclipped[-1]["w"]).abs().max() > 1e-6


def run_class(cls, steps=5, **kwargs):
    model = small_mlp()
    x, y = classification_batch()
    opt = cls(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3,
              **kwargs)
    for _ in range(steps):
        opt.step(make_closure(model, x, y))
    return flat(model)


def test_gsam_with_alpha_zero_and_constant_rho_is_sam():
    sam = run_class(SAM, rho=0.2)
    gsam = run_class(GSAM, rho_max=0.2, rho_min=0.2, alpha=0.0)
    torch.testing.assert_close(gsam, sam, rtol=1e-12, atol=1e-14)
    assert (run_class(GSAM, rho_max=0.2, alpha=0.5) - sam).abs().max() > 1e-6


def test_weighted_with_lambda_zero_is_sam():
    sam = run_class(SAM, rho=0.2)
    torch.testing.assert_close(run_class(WeightedSAM, rho=0.2, lam=0.0), sam, rtol=1e-12,
                               atol=1e-14)
    assert (run_class(WeightedSAM, rho=0.2, lam=0.5) - sam).abs().max() > 1e-6


def test_the_two_halves_equal_step_with_a_closure():
    x, y = classification_batch()
    model_a, model_b = small_mlp(), small_mlp()
    opt_a = GSAM(model_a.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, alpha=0.3)
    opt_b = GSAM(model_b.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, alpha=0.3)
    for _ in range(3):
        opt_a.step(make_closure(model_a, x, y))

        opt_b.zero_grad()
        loss = torch.nn.functional.cross_entropy(model_b(x), y)
        loss.backward()
        opt_b.first_step(loss)
        loss_p = torch.nn.functional.cross_entropy(model_b(x), y)
        loss_p.backward()
        opt_b.second_step(loss_p)
    torch.testing.assert_close(flat(model_b), flat(model_a), rtol=0, atol=0)
    torch.testing.assert_close(opt_b.stats["h"], opt_a.stats["h"], rtol=0, atol=0)


def test_step_returns_the_loss_at_w_and_sets_d_as_the_gradient():
    model = small_mlp()
    x, y = classification_batch()
    problem = FlatProblem(model, x, y)
    w = problem.flat_params()
    opt = GSAM(model.parameters(), torch.optim.SGD, lr=0.0, rho_max=0.3, alpha=0.4)
    loss = opt.step(make_closure(model, x, y))
    want = reference_direction(problem, w, 0.3, "gsam", alpha=0.4)
    torch.testing.assert_close(loss.detach(), want["f"])
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(grads, want["d"], rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(flat(model), w, rtol=1e-15, atol=1e-15)  # lr 0: w is restored


class Quadratic(torch.nn.Module):
    """f(w) = 1/2 (w - w*)^T H (w - w*), with H's eigenvalues known."""

    def __init__(self, eigenvalues, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        n = len(eigenvalues)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
        self.q = q
        self.eigenvalues = torch.tensor(eigenvalues, dtype=torch.float64)
        self.hessian = q @ torch.diag(self.eigenvalues) @ q.T
        self.w_star = torch.randn(n, generator=generator, dtype=torch.float64)
        self.w = torch.nn.Parameter(torch.randn(n, generator=generator, dtype=torch.float64))

    def forward(self):
        delta = self.w - self.w_star
        return 0.5 * delta @ self.hessian @ delta


def quadratic_step(quadratic, rho):
    opt = SAM(quadratic.parameters(), torch.optim.SGD, lr=1e-3, rho=rho)

    def closure():
        loss = quadratic()
        loss.backward()
        return loss

    g = quadratic.hessian @ (quadratic.w.detach() - quadratic.w_star)
    opt.step(closure)
    return g, opt.stats


def test_quadratic_surrogate_gap_has_the_closed_form():
    quadratic = Quadratic([5.0, 2.0, 1.0, 0.5, 0.1])
    rho = 0.3
    g, stats = quadratic_step(quadratic, rho)
    g_hat = g / g.norm()
    closed_form = rho * g.norm() + 0.5 * rho**2 * g_hat @ quadratic.hessian @ g_hat
    torch.testing.assert_close(stats["h"], closed_form, rtol=1e-10, atol=1e-12)


def test_quadratic_gap_along_the_top_eigenvector_is_rho_squared_lambda_max_over_two():
    quadratic = Quadratic([5.0, 2.0, 1.0, 0.5, 0.1])
    top = quadratic.q[:, 0]  # eigenvector of 5.0
    with torch.no_grad():
        quadratic.w.copy_(quadratic.w_star + 0.7 * top)
    rho = 0.3
    g, stats = quadratic_step(quadratic, rho)
    excess = stats["h"] - rho * stats["grad_norm"]
    torch.testing.assert_close(excess, torch.tensor(rho**2 * 5.0 / 2, dtype=torch.float64),
                               rtol=1e-9, atol=1e-12)
    assert float(stats["cos"]) == pytest.approx(1.0, abs=1e-12)  # g_p stays along H's top axis
