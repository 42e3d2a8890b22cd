"""The CIFAR nets have the published sizes and shapes; timm names work; bad names are helped."""

from __future__ import annotations

import pytest
import torch

from gsam_repro.errors import UsageError
from gsam_repro.models import create_model

# Parameter counts published with the architectures (10 classes): ResNet-18 for CIFAR 11.17 M,
# WRN-16-8 11.0 M and WRN-28-10 36.5 M (Zagoruyko & Komodakis 2016, Table 2).
PUBLISHED_MILLIONS = {"resnet18_cifar": (11.17, 0.01), "wrn16_8": (11.0, 0.05),
                      "wrn28_10": (36.5, 0.05)}


def _count(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("name", ["resnet18_cifar", "wrn16_8", "wrn28_10", "small_cnn"])
def test_cifar_nets_map_32x32_images_to_class_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    if name in PUBLISHED_MILLIONS:
        millions, tolerance = PUBLISHED_MILLIONS[name]
        assert _count(model) == pytest.approx(millions, abs=tolerance)


def test_generic_wide_resnet_names_and_one_channel_inputs():
    model = create_model("wrn10_2", num_classes=4, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 4)
    with pytest.raises(UsageError, match="depth must be 6n \\+ 4"):
        create_model("wrn12_2", num_classes=4)


def test_model_kwargs_reach_the_constructor():
    narrow = create_model("small_cnn", num_classes=10, width=8)
    wide = create_model("small_cnn", num_classes=10, width=32)
    assert _count(narrow) < _count(wide)
    with pytest.raises(UsageError, match="model.kwargs: small_cnn"):
        create_model("small_cnn", num_classes=10, depth=3)


def test_any_timm_model_by_name_is_built_untrained():
    model = create_model("resnet18", num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(UsageError) as caught:
        create_model("wrn16-8", num_classes=10)
    assert "unknown model 'wrn16-8'" in str(caught.value) and "wrn16_8" in str(caught.value)
    with pytest.raises(UsageError, match="resnet50"):
        create_model("resnet_50", num_classes=10)


def test_mixer_s8_is_the_s16_mixer_with_8_pixel_patches():
    """Table 1's Mixer-S/8, which timm does not register: same blocks and width as S/16 (so the
    same parameter count up to the patch embedding and the token-mixing MLPs), 784 tokens."""
    from gsam_repro.models import create_model

    with torch.device("meta"):
        s8 = create_model("mixer_s8_224", num_classes=1000)
        s16 = create_model("mixer_s16_224", num_classes=1000)
    assert s8.stem.proj.kernel_size == (8, 8) and s8.stem.num_patches == (224 // 8) ** 2
    assert len(s8.blocks) == len(s16.blocks) == 8
    assert s8.embed_dim == s16.embed_dim == 512
    # the token-mixing MLP reads all 784 tokens (196 for S/16); its hidden width is 0.5 x 512
    assert s8.blocks[0].mlp_tokens.fc1.in_features == 784
    assert s8.blocks[0].mlp_tokens.fc1.out_features == 256
