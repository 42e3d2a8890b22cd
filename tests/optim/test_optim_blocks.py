"""Cache-sized blocks (gsam_repro.optim.blocks): they cover every element once, in memory order,
and a step run block by block equals the same step on whole tensors, bitwise."""

from __future__ import annotations

import pytest
import torch

from gsam_repro.optim import SAM, create_optimizer
from gsam_repro.optim import blocks as blocks_module
from gsam_repro.optim.blocks import cache_blocks, flat_views


def layouts(seed):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(8, 4, 3, 3, generator=generator),  # contiguous, split into pieces
        torch.randn(8, 4, 3, 3, generator=generator).to(memory_format=torch.channels_last),
        torch.randn(3, generator=generator),  # small: shares a block
        torch.randn(6, 10, generator=generator)[:, ::2],  # not dense: one whole piece
    ]


def test_blocks_cover_every_element_once_with_matching_pieces():
    first, second = layouts(0), layouts(1)
    got = cache_blocks(first, second, elements=50)
    assert len(got) > 3  # the 288-element tensors were split
    pieces_first = [t for block in got for t in block[0]]
    pieces_second = [t for block in got for t in block[1]]
    assert sum(t.numel() for t in pieces_first) == sum(t.numel() for t in first)
    for a, b in zip(pieces_first, pieces_second, strict=True):
        assert a.shape == b.shape
    # Writing through the pieces reaches every element of the originals exactly once.
    for piece in pieces_first:
        piece.add_(1000.0)
    for tensor, original in zip(first, layouts(0), strict=True):
        torch.testing.assert_close(tensor, original + 1000.0, rtol=0, atol=0)


def test_channels_last_pieces_follow_memory_order_and_mixed_layouts_stay_whole():
    a = torch.arange(24.0).view(1, 2, 3, 4).to(memory_format=torch.channels_last)
    (flat,) = flat_views([a])
    assert flat.data_ptr() == a.data_ptr()
    assert torch.equal(flat, a.permute(0, 2, 3, 1).reshape(-1))
    assert flat_views([a, a.contiguous()]) is None


def conv_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 5),
    ).double().to(memory_format=torch.channels_last)


def run(name, options, steps=3):
    model = conv_model()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 6, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=generator)
    opt = create_optimizer(name, model.parameters(), lr=0.1, momentum=0.9, **options)

    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name, options", [
    ("sam", {"rho": 0.05}),
    ("gsam", {"rho_max": 0.05, "alpha": 0.3}),
    ("weighted", {"rho": 0.05, "lam": 0.5}),
    ("sam", {"rho": 0.05, "adaptive": "asam"}),
])
def test_a_step_by_blocks_equals_the_step_on_whole_tensors(monkeypatch, name, options):
    whole = run(name, options)
    monkeypatch.setattr(blocks_module, "BLOCK_ELEMENTS", 7)
    by_blocks = run(name, options)
    for a, b in zip(whole, by_blocks, strict=True):
        assert torch.equal(a, b)


class Recording(SAM):
    """Overrides direction without declaring it elementwise: it must see whole lists."""

    seen: list[int] = []

    def direction(self, grads_p, grads, dot, grad_p_norm):
        self.seen.append(len(grads_p))


def test_a_direction_not_declared_elementwise_gets_whole_lists(monkeypatch):
    monkeypatch.setattr(blocks_module, "BLOCK_ELEMENTS", 7)
    model = conv_model()
    opt = Recording(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)

    def closure():
        loss = model(x).square().mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert Recording.seen == [len(list(model.parameters()))]
