"""Two CPU processes under DistributedDataParallel (gloo): each worker perturbs and decomposes on
its own batch (both passes under no_sync), and only the final direction d is averaged."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
import torch.distributed as dist
from optim_testkit import classification_batch, make_closure, small_mlp
from torch.nn.parallel import DistributedDataParallel

from gsam_repro.optim import GSAM


def worker(rank: int, world: int, store: str, output: str) -> None:
    """One DDP worker: a GSAM step on its own batch; saves d, the new w and its gap."""
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model = small_mlp(seed=0)
    ddp = DistributedDataParallel(model)
    x, y = classification_batch(seed=100 + rank)
    opt = GSAM(ddp.parameters(), torch.optim.SGD, lr=0.1, rho_max=0.3, alpha=0.4, model=ddp)
    opt.step(make_closure(ddp, x, y))
    result = {"d": [p.grad.clone() for p in model.parameters()],
              "w": [p.detach().clone() for p in model.parameters()],
              "h": opt.stats["h"]}

    # A GradScaler step where only rank 1's gradient overflows: every worker must skip it, lower
    # its scale, and none may hang in a collective the other never reaches.
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)

    def scaled_closure():
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        scaler.scale(loss * (float("inf") if rank == 1 else 1.0)).backward()
        return loss

    opt.step(scaled_closure, grad_scaler=scaler)
    scaler.update()
    result["w_after_overflow"] = [p.detach().clone() for p in model.parameters()]
    result["scale_after_overflow"] = scaler.get_scale()

    # A plain step of a cheap variant (late phase, before its start): g averaged the same way.
    plain_model = small_mlp(seed=0)
    plain_ddp = DistributedDataParallel(plain_model)
    plain = GSAM(plain_ddp.parameters(), torch.optim.SGD, lr=0.1, rho_max=0.3, alpha=0.4,
                 model=plain_ddp, start_fraction=1.0, total_steps=1)
    plain.step(make_closure(plain_ddp, x, y))
    result["plain_d"] = [p.grad.clone() for p in plain_model.parameters()]
    torch.save(result, output)
    dist.destroy_process_group()


def local_direction(rank):
    """What worker `rank` computes alone: its own g, eps, g_p and d."""
    model = small_mlp(seed=0)
    x, y = classification_batch(seed=100 + rank)
    opt = GSAM(model.parameters(), torch.optim.SGD, lr=0.1, rho_max=0.3, alpha=0.4)
    opt.step(make_closure(model, x, y))
    return [p.grad.clone() for p in model.parameters()], opt.stats["h"]


def local_gradient(rank):
    model = small_mlp(seed=0)
    x, y = classification_batch(seed=100 + rank)
    make_closure(model, x, y)()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.slow
def test_two_workers_average_only_the_final_direction_and_skip_overflows_together(tmp_path):
    # Computed first: it also imports what optimizers need, which forked workers then reuse
    # (a fresh interpreter spends ~10 s on those imports).
    directions, gaps = zip(*(local_direction(rank) for rank in range(2)), strict=True)
    context = multiprocessing.get_context("fork")
    outputs = [tmp_path / f"rank{rank}.pt" for rank in range(2)]
    workers = [
        context.Process(target=worker, args=(rank, 2, str(tmp_path / "store"), str(outputs[rank])))
        for rank in range(2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        if process.is_alive():
            process.terminate()
        assert process.exitcode == 0
    results = [torch.load(path) for path in outputs]

    mean_direction = [(a + b) / 2 for a, b in zip(*directions, strict=True)]
    initial = list(small_mlp(seed=0).parameters())
    for rank, result in enumerate(results):
        for got, want in zip(result["d"], mean_direction, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)
        for w, w0, d in zip(result["w"], initial, mean_direction, strict=True):
            torch.testing.assert_close(w, w0.detach() - 0.1 * d, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(result["h"], gaps[rank])  # the gap is per worker
        for skipped, w in zip(result["w_after_overflow"], result["w"], strict=True):
            torch.testing.assert_close(skipped, w)
        assert result["scale_after_overflow"] == 512.0
        mean_gradient = [(a + b) / 2 for a, b in zip(local_gradient(0), local_gradient(1),
                                                     strict=True)]
        for got, want in zip(result["plain_d"], mean_gradient, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)

    # The per-worker directions really differ, so averaging g (no no_sync) would be caught.
    assert max((a - b).abs().max() for a, b in zip(*directions, strict=True)) > 1e-4
