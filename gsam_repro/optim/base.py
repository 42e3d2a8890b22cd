"""The machinery every sharpness-aware optimizer here shares (SAM, GSAM, the weighted baseline).

`SharpnessAware` runs the two passes of one step: the closure at w gives g, w moves to w + eps,
the closure at w + eps gives g_p, w comes back, a subclass turns (g, g_p) into the direction d,
and the wrapped base optimizer (SGD, AdamW, any torch optimizer) applies d with its own momentum
and weight decay. Subclasses only write `direction()`.

Speed and memory: all vector work uses multi-tensor `torch._foreach_*` ops and per-tensor
reductions, with scalars kept as 0-dim tensors, so a step never waits on the device. The only
parameter-sized buffer kept is g itself, taken over from `p.grad` without a copy; w + eps is undone
by subtracting eps again, recomputed from g and one scalar (the adaptive modes keep eps as a
second buffer, because |w| changes when w is perturbed).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from gsam_repro.optim.blocks import cache_blocks
from gsam_repro.optim.cheap_steps import CheapSteps
from gsam_repro.optim.distributed import average_across_workers, batchnorm_buffers, is_ddp
from gsam_repro.optim.reductions import EPS, global_dot_and_norm, global_norm
from gsam_repro.optim.rho import check_rho_schedule, rho_at
from gsam_repro.optim.rules import ADAPTIVE_MODES as ADAPTIVE_MODES
from gsam_repro.optim.rules import check_adaptive
from gsam_repro.optim.stats import as_stat
from gsam_repro.optim.variants import FULL, REUSE, VARIANT_OPTIONS, StepPlan

PLAN_KEY = "sharpness_aware_steps"  # the cheap variants' part of a state dict
# Options every sharpness-aware optimizer takes, whatever its own constructor names.
SHARPNESS_AWARE_OPTIONS = (*VARIANT_OPTIONS, "m")


class SharpnessAware(CheapSteps, torch.optim.Optimizer):
    """Base of SAM, GSAM and WeightedSAM: two passes per step, then the base optimizer steps.

    `base_optimizer` is a torch optimizer class (built here on `params` with `**base_kwargs`) or
    an optimizer instance (then `params` must be None). Either way this object shares the base
    optimizer's `param_groups`, so an LR scheduler can be attached to it directly, and rho_t is
    read from `param_groups[0]["lr"]` at every step.

    rho schedule: rho_max/rho_min at lr_max/lr_min (lr_max defaults to the lr at construction;
    a rho_min other than rho_max needs an explicit lr_min; without rho_min rho is constant).
    `adaptive`: False, "paper"
    (eps = rho |w| g / ||g||) or "asam" (eps = rho w^2 g / || |w| g ||). `grad_clip`: clip the
    global norm of the final direction. `model`: the module being trained; with it the second
    forward pass leaves BatchNorm statistics untouched, and a DistributedDataParallel model gets
    both passes under `no_sync` with only the final direction averaged across workers.
    `rho_name` is how error messages name rho_max (SAM and WeightedSAM call it `rho`).

    The cheap variants (`every`, `looksam`/`looksam_alpha`, `switch_prob`/`switch_seed`,
    `start_fraction` with `total_steps`; see gsam_repro.optim.variants) run the method on some
    steps only; they act in `step(closure)` (first_step/second_step always run the method).
    `m`: m-sharpness, the method per chunk of m examples with the directions averaged; the
    closure then takes a `Chunk` (see gsam_repro.optim.chunks).
    """

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer] | torch.optim.Optimizer = torch.optim.SGD,
        *,
        rho_max: float = 0.05,
        rho_min: float | None = None,
        lr_max: float | None = None,
        lr_min: float | None = None,
        adaptive: bool | str | None = False,
        grad_clip: float | None = None,
        model: torch.nn.Module | None = None,
        rho_name: str = "rho_max",
        every: int | None = None,
        looksam: int | None = None,
        looksam_alpha: float | None = None,
        switch_prob: float | None = None,
        switch_seed: int | None = None,
        start_fraction: float | None = None,
        total_steps: int | None = None,
        m: int | None = None,
        **base_kwargs: Any,
    ):
        if isinstance(base_optimizer, torch.optim.Optimizer):
            if params is not None:
                raise ValueError(
                    "params: pass None when base_optimizer is an optimizer instance "
                    "(its param_groups are used)"
                )
            if base_kwargs:
                raise ValueError(
                    f"{next(iter(base_kwargs))}: base optimizer arguments only apply when "
                    "base_optimizer is a class"
                )
            base = base_optimizer
        elif isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer):
            base = base_optimizer(params, **base_kwargs)
        else:
            raise ValueError(
                f"base_optimizer: expected a torch optimizer class or instance, "
                f"got {base_optimizer!r}"
            )
        check_adaptive(adaptive)
        if adaptive is None:
            adaptive = False
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (or None for no clipping), got {grad_clip}")
        if model is not None and not isinstance(model, torch.nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")

        super().__init__(base.param_groups, base.defaults)
        self.base_optimizer = base
        self.param_groups = base.param_groups

        initial_lr = self.param_groups[0]["lr"]
        self.lr_max = float(initial_lr if lr_max is None else lr_max)
        self.lr_min = self.lr_max if lr_min is None else float(lr_min)
        self.rho_max = float(rho_max)
        self.rho_min = self.rho_max if rho_min is None else float(rho_min)
        check_rho_schedule(
            self.rho_max, self.rho_min, self.lr_max, self.lr_min, rho_name=rho_name
        )
        if rho_min is not None and float(rho_min) != float(rho_max) and lr_min is None:
            # Without lr_min the schedule would be flat (lr_min = lr_max): rho_min would never
            # be reached while the learning rate decays, silently.
            raise ValueError(
                f"lr_min: rho_min ({rho_min}) differs from {rho_name} ({rho_max}), so rho must "
                "follow the learning rate, which needs lr_min (the learning rate at which rho "
                f"reaches rho_min; lr_max defaults to the initial lr, {initial_lr}); pass lr_min, "
                f"or leave rho_min out for a constant rho"
            )
        self.adaptive = adaptive
        self.grad_clip = grad_clip
        self.model = model
        self.stats: dict[str, Tensor] = {}
        # Set by first_step, used by second_step.
        self._pending: dict[str, Any] | None = None
        # The gradient tensors second_step left holding d, until zero_grad() clears them: a
        # backward pass into them adds g to the old d (see first_step).
        self._left_direction: list[tuple[Tensor, weakref.ref]] = []
        self.configure_steps(
            every=every, looksam=looksam, looksam_alpha=looksam_alpha, switch_prob=switch_prob,
            switch_seed=switch_seed, start_fraction=start_fraction, total_steps=total_steps, m=m,
        )

    def configure_steps(self, *, m: int | None = None, **options: Any) -> None:
        """Set the cheap-variant options (a `StepPlan`'s keywords) and m before the first step."""
        plan = StepPlan(**options)
        if plan.looksam is not None and self.adaptive is not False:
            raise ValueError(
                f"looksam applies to the plain perturbation only, not adaptive={self.adaptive!r}"
            )
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"m must be an integer >= 1, got {m!r}")
        if m is not None and plan.looksam is not None:
            raise ValueError("m: LookSAM's reuse steps are defined for whole batches; "
                             "use m without looksam")
        self.plan = plan
        self.m = m
        self._store_orthogonal = False

    @property
    def passes_per_step(self) -> float:
        """Forward+backward passes per step: 2, or the exact average under a cheap variant."""
        return self.plan.passes_per_step()

    # ----------------------------------------------------------------------------- the schedule
    def rho_now(self) -> float | Tensor:
        """rho_t for the learning rate the base optimizer will use at this step."""
        return rho_at(
            self.param_groups[0]["lr"],
            rho_max=self.rho_max,
            rho_min=self.rho_min,
            lr_max=self.lr_max,
            lr_min=self.lr_min,
        )

    # ------------------------------------------------------------------------- the direction
    elementwise_direction = True

    def direction(
        self, grads_p: list[Tensor], grads: list[Tensor], dot: Tensor, grad_p_norm: Tensor
    ) -> None:
        """Overwrite `grads_p` (g_p, in p.grad) with the update direction d, in place.

        `grads` holds g, `dot` is <g, g_p> and `grad_p_norm` is ||g_p||. SAM keeps d = g_p.
        A class whose d is elementwise in (g, g_p) given the two scalars sets
        `elementwise_direction = True`, and is then called once per cache-sized block."""

    # ------------------------------------------------------------------------------- the step
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """One sharpness-aware step; returns the closure's loss at w.

        `closure` clears nothing itself: it runs forward and backward and returns the loss. It is
        called at w and at w + eps with gradients cleared before each call. With a GradScaler,
        the closure backpropagates `grad_scaler.scale(loss)` and returns the unscaled loss; call
        `grad_scaler.update()` after this step, as usual."""
        if closure is None:
            raise ValueError(
                "closure: a sharpness-aware step needs a closure that runs forward and backward "
                "and returns the loss (or use first_step()/second_step())"
            )
        kind = self.plan.next_kind()
        if kind != FULL:
            return self._single_pass_step(closure, grad_scaler, reuse=kind == REUSE)
        if self.m is not None:
            return self._chunked_step(closure, grad_scaler)
        self._store_orthogonal = self.plan.looksam is not None
        with self._maybe_no_sync():
            self.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = closure()
            self.first_step(loss, grad_scaler=grad_scaler)
            assert self._pending is not None
            loss_p = None
            if not self._pending["skip"]:
                with torch.enable_grad():
                    loss_p = closure()
        self.second_step(loss_p, grad_scaler=grad_scaler)
        return loss

    @torch.no_grad()
    def first_step(
        self, loss: Any = None, grad_scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """From w with g in p.grad: keep g, move to w + eps, clear the gradients.

        For custom loops: backward at w, first_step(loss), forward+backward at w + eps,
        second_step(loss_p). Under DistributedDataParallel, run both backward passes inside
        `model.no_sync()` yourself (step() does this for you)."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            raise RuntimeError("first_step: no parameter has a gradient; did backward() run?")
        self._check_fresh_gradients()
        grads = [p.grad for p in params]
        rho = self.rho_now()
        grad_norm = global_norm(grads)
        pending: dict[str, Any] = {
            "params": params,
            "grads": grads,  # g, kept in self.state[p]["g"] too
            "loss": loss,
            "rho": rho,
            "grad_norm": grad_norm,
            "skip": False,
            "scale": None,
        }
        self._pending = pending
        for p, grad in zip(params, grads, strict=True):
            self.state[p]["g"] = grad  # taken over, not copied
            p.grad = None
        if grad_scaler is not None and grad_scaler.is_enabled():
            # Gradients are scaled by S; eps and d do not change under a common scale, but an
            # inf/nan g would poison w + eps, so check it here, as GradScaler.step itself would.
            # Under DDP every worker must make the same choice (they all-reduce d afterwards).
            overflow = (~torch.isfinite(grad_norm)).float()
            if is_ddp(self.model):
                torch.distributed.all_reduce(overflow, op=torch.distributed.ReduceOp.MAX)
            if overflow.item():
                pending["skip"] = True
                return
        self._save_batchnorm()

        g_bufs = grads
        if self.adaptive is False:
            scale = rho / (grad_norm + EPS)
            torch._foreach_addcmul_(params, g_bufs, [scale] * len(params))
            pending["scale"] = scale
        else:
            eps_bufs = [self._buffer(p, "e") for p in params]
            torch._foreach_copy_(eps_bufs, params)
            if self.adaptive == "paper":
                torch._foreach_abs_(eps_bufs)
                torch._foreach_mul_(eps_bufs, g_bufs)
                torch._foreach_mul_(eps_bufs, rho / (grad_norm + EPS))
            else:  # asam: || |w| g || == || w g ||, then one more factor of w gives w^2 g
                torch._foreach_mul_(eps_bufs, g_bufs)
                scale = rho / (global_norm(eps_bufs) + EPS)
                torch._foreach_mul_(eps_bufs, params)
                torch._foreach_mul_(eps_bufs, scale)
            torch._foreach_add_(params, eps_bufs)

    @torch.no_grad()
    def second_step(
        self, loss_p: Any = None, grad_scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """From w + eps with g_p in p.grad: back to w, build d, average it across workers,
        clip it, and let the base optimizer step (through `grad_scaler.step` when given)."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("second_step() called without first_step()")
        self._pending = None
        params = pending["params"]
        g_bufs = [self.state[p]["g"] for p in params]

        if pending["skip"]:
            # Non-finite g under a GradScaler: hand g back so the scaler sees it and skips. A
            # worker whose own g was finite skips because another's was not: it shows the scaler
            # an inf too, so every worker lowers its scale alike.
            for p, g in zip(params, g_bufs, strict=True):
                p.grad = g
            if torch.isfinite(pending["grad_norm"]):
                params[0].grad.fill_(float("inf"))
            grad_scaler.step(self.base_optimizer)
            self._remember_left_gradients(params)
            nan = as_stat(None, pending["grad_norm"])
            self.stats = {
                "f": as_stat(pending["loss"], pending["grad_norm"]),
                "f_p": nan,
                "h": nan,
                "rho": as_stat(pending["rho"], pending["grad_norm"]),
                "grad_norm": pending["grad_norm"],
                "grad_p_norm": nan,
                "cos": nan,
            }
            return
        params, directions = self._direction_at_w(pending, loss_p, grad_scaler)
        self._apply(params, directions, grad_scaler)

    def _direction_at_w(
        self, pending: dict[str, Any], loss_p: Any, grad_scaler: torch.amp.GradScaler | None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Back to w, d built in p.grad, stats set; returns the parameters and their d.

        Memory traffic decides a CPU step's time, so the work is fused by blocks (see
        gsam_repro.optim.blocks): the reductions read g and g_p once, then restoring w and
        building d read each block of g once for both."""
        params, g_bufs = pending["params"], pending["grads"]
        self._restore_batchnorm()
        for p in params:
            if p.grad is None:  # no gradient at w + eps: g_p is zero there
                p.grad = torch.zeros_like(p)
        grads_p = [p.grad for p in params]
        dot, grad_p_norm = global_dot_and_norm(g_bufs, grads_p)
        if self._store_orthogonal:
            self._store_orthogonal = False
            self._keep_orthogonal(params, g_bufs, grads_p, dot, pending["grad_norm"],
                                  pending["rho"])
        blockwise = self._elementwise_direction()
        undo = g_bufs if self.adaptive is False else [self.state[p]["e"] for p in params]
        scale = pending["scale"]
        for block_w, block_undo, block_g, block_gp in cache_blocks(params, undo, g_bufs, grads_p):
            if self.adaptive is False:  # w + eps - scale * g
                torch._foreach_addcmul_(block_w, block_undo, [scale] * len(block_w), value=-1)
            else:
                torch._foreach_sub_(block_w, block_undo)
            if blockwise:
                self.direction(block_gp, block_g, dot, grad_p_norm)
        if not blockwise:
            self.direction(grads_p, g_bufs, dot, grad_p_norm)
        self._set_stats(pending["loss"], loss_p, pending["rho"], pending["grad_norm"],
                        grad_p_norm, dot, grad_scaler)
        return params, grads_p

    def _elementwise_direction(self) -> bool:
        """Whether `direction` may run block by block: the class defining it says so with
        `elementwise_direction = True` (a subclass that overrides `direction` must say it again;
        one that reduces over all tensors, or keeps them, gets whole lists)."""
        for klass in type(self).__mro__:
            if "direction" in vars(klass):
                return bool(vars(klass).get("elementwise_direction", False))
        return False

    def _apply(
        self, params: list[Tensor], directions: list[Tensor],
        grad_scaler: torch.amp.GradScaler | None,
    ) -> None:
        """Average d across workers, unscale, clip, and let the base optimizer step."""
        if is_ddp(self.model):
            average_across_workers(directions)
        if grad_scaler is not None and grad_scaler.is_enabled():
            grad_scaler.unscale_(self.base_optimizer)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        if grad_scaler is not None and grad_scaler.is_enabled():
            grad_scaler.step(self.base_optimizer)
        else:
            self.base_optimizer.step()
        self._remember_left_gradients(params)

    def _set_stats(
        self, loss: Any, loss_p: Any, rho: Any, grad_norm: Tensor, grad_p_norm: Tensor,
        dot: Tensor, grad_scaler: torch.amp.GradScaler | None,
    ) -> None:
        # cos is the same with or without a common gradient scale; the norms are reported unscaled.
        cos = dot / (grad_norm * grad_p_norm + EPS)
        f = as_stat(loss, grad_norm)
        f_p = as_stat(loss_p, grad_norm)
        rho = as_stat(rho, grad_norm)
        if grad_scaler is not None and grad_scaler.is_enabled():
            inv_scale = 1.0 / grad_scaler.get_scale()
            grad_norm, grad_p_norm = grad_norm * inv_scale, grad_p_norm * inv_scale
        self.stats = {
            "f": f,
            "f_p": f_p,
            "h": f_p - f,
            "rho": rho,
            "grad_norm": grad_norm,
            "grad_p_norm": grad_p_norm,
            "cos": cos,
        }
    # ------------------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (param_groups are shared; g is scratch, not saved),
        plus, under a cheap variant, its step count, generator and LookSAM buffer."""
        state = self.base_optimizer.state_dict()
        if self.plan.active:
            params = [p for group in self.param_groups for p in group["params"]]
            state[PLAN_KEY] = {
                **self.plan.state_dict(),
                "kept": [self.state[p].get("v") for p in params],
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base optimizer and share its (new) param_groups again."""
        state_dict = dict(state_dict)
        plan_state = state_dict.pop(PLAN_KEY, None)
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        if plan_state is not None:
            self.plan.load_state_dict(plan_state)
            params = [p for group in self.param_groups for p in group["params"]]
            for p, kept in zip(params, plan_state["kept"], strict=True):
                if kept is None:
                    self.state[p].pop("v", None)
                else:
                    self._buffer(p, "v").copy_(kept)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients (as torch does) and forget the last step's direction."""
        super().zero_grad(set_to_none=set_to_none)
        self._left_direction = []

    # ----------------------------------------------------------------------------- helpers
    def _remember_left_gradients(self, params: list[Tensor]) -> None:
        # weak references: gradients set to None are freed at once, as without this check
        self._left_direction = [(p, weakref.ref(p.grad)) for p in params if p.grad is not None]

    def _check_fresh_gradients(self) -> None:
        """Raise when p.grad is still the tensor second_step left holding d: backward added g
        into the previous direction (or never ran), so g would be wrong. Gradients cleared by
        set_to_none (opt.zero_grad() or model.zero_grad()) are new tensors and pass."""
        left, self._left_direction = self._left_direction, []
        for p, grad in left:
            if p.grad is not None and p.grad is grad():
                raise RuntimeError(
                    "first_step: the gradients still hold the previous step's direction "
                    "(backward adds into it); call opt.zero_grad() before the backward pass at w"
                )

    def _buffer(self, p: Tensor, name: str) -> Tensor:
        state = self.state[p]
        if name not in state:
            state[name] = torch.empty_like(p, memory_format=torch.preserve_format)
        return state[name]

    def _maybe_no_sync(self) -> contextlib.AbstractContextManager:
        if is_ddp(self.model):
            return self.model.no_sync()  # type: ignore[union-attr]
        return contextlib.nullcontext()

    def _save_batchnorm(self) -> None:
        buffers = batchnorm_buffers(self.model)
        self._batchnorm_saved = (buffers, [b.clone() for b in buffers])

    def _restore_batchnorm(self) -> None:
        buffers, saved = getattr(self, "_batchnorm_saved", ([], []))
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)
        self._batchnorm_saved = ([], [])

    def extra_buffers(self) -> Iterator[Tensor]:
        """Every parameter-sized tensor this wrapper keeps (not the base optimizer's)."""
        for state in self.state.values():
            for value in state.values():
                if isinstance(value, Tensor) and value.dim() > 0:
                    yield value
