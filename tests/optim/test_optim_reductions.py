"""The global norm and dot product over parameter lists, for every memory layout a model has."""

from __future__ import annotations

import torch

from gsam_repro.optim.sam import global_dot, global_dot_and_norm, global_norm


def tensors(seed):
    generator = torch.Generator().manual_seed(seed)
    conv = torch.randn(8, 4, 3, 3, generator=generator)
    return [
        conv,  # contiguous
        torch.randn(8, 4, 3, 3, generator=generator).to(memory_format=torch.channels_last),
        torch.randn(16, generator=generator),
        torch.randn(6, 10, generator=generator)[:, ::2],  # strided, not dense
        torch.randn(5, 7, generator=generator).T,  # transposed
    ]


def reference(values):
    return torch.cat([v.reshape(-1) for v in values])


def test_global_norm_equals_the_norm_of_everything_concatenated():
    values = tensors(0)
    torch.testing.assert_close(global_norm(values), reference(values).norm())


def test_global_dot_equals_the_dot_of_everything_concatenated():
    first, second = tensors(0), tensors(1)
    want = reference(first) @ reference(second)
    torch.testing.assert_close(global_dot(first, second), want)


def test_global_dot_with_different_layouts_on_each_side():
    first, second = tensors(0), tensors(1)
    second[0] = second[0].to(memory_format=torch.channels_last)  # contiguous vs channels_last
    second[1] = second[1].contiguous()
    want = reference(first) @ reference(second)
    torch.testing.assert_close(global_dot(first, second), want)


def test_float64_is_kept_and_half_precision_is_summed_in_float32():
    values = [torch.randn(100, dtype=torch.float64)]
    assert global_norm(values).dtype == torch.float64
    halves = [torch.full((4096,), 300.0, dtype=torch.float16)]  # its squares overflow in fp16
    torch.testing.assert_close(global_norm(halves), torch.tensor(300.0 * 64.0))


def test_dot_and_norm_together_equal_each_alone():
    first, second = tensors(0), tensors(1)
    dot, norm = global_dot_and_norm(first, second)
    torch.testing.assert_close(dot, reference(first) @ reference(second))
    torch.testing.assert_close(norm, reference(second).norm())
