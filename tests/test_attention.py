"""SAGAN self-attention (Zhang et al. 2019) by hand, and placed in model=resnet's G and D."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError
from ganforge.nets.attention import SelfAttention
from ganforge.nets.resnet import ResNetDiscriminator, ResNetGenerator
from helpers import train_run


def test_self_attention_by_hand():
    torch.manual_seed(0)
    block = SelfAttention(16, spectral_norm=False)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 16, 4, 4)
    wq, wk = block.query.weight[:, :, 0, 0], block.key.weight[:, :, 0, 0]  # (2, 16)
    wv, wo = block.value.weight[:, :, 0, 0], block.out.weight[:, :, 0, 0]  # (8, 16), (16, 8)
    pooled = F.max_pool2d(x, 2)  # 1x1 convs commute with nothing here: pool after the projection
    expected = torch.empty_like(x)
    for b in range(2):
        q = torch.einsum("oc,chw->ohw", wq, x[b]).reshape(2, 16)  # a query per position
        k = F.max_pool2d(torch.einsum("oc,chw->ohw", wk, x[b])[None], 2)[0].reshape(2, 4)
        v = F.max_pool2d(torch.einsum("oc,chw->ohw", wv, x[b])[None], 2)[0].reshape(8, 4)
        for p in range(16):
            weights = torch.softmax(q[:, p] @ k, dim=0)  # over the 4 pooled positions
            expected[b, :, p // 4, p % 4] = x[b, :, p // 4, p % 4] + 0.7 * wo @ (v @ weights)
    torch.testing.assert_close(block(x), expected)
    assert pooled.shape == (2, 16, 2, 2)
    torch.testing.assert_close(block.attention(x).sum(-1), torch.ones(2, 16))


def test_gamma_starts_at_zero_so_the_block_starts_as_the_identity():
    block = SelfAttention(32)
    x = torch.randn(3, 32, 8, 8)
    assert float(block.gamma) == 0.0 and torch.equal(block(x), x)
    (grad,) = torch.autograd.grad(block(x).square().sum(), block.gamma)
    assert grad != 0  # γ learns from the first step


def test_resnet_places_attention_at_the_named_resolutions():
    g = ResNetGenerator((1, 16, 16), z_dim=8, width=16, attention_res=[8])
    d = ResNetDiscriminator((1, 16, 16), width=16, attention_res=[8])
    assert list(g.attention) == ["8"] and sum(isinstance(m, SelfAttention) for m in d.modules()) == 1
    assert g(torch.randn(4, 8)).shape == (4, 1, 16, 16) and d(torch.randn(4, 1, 16, 16)).shape == (4,)
    plain = ResNetDiscriminator((1, 16, 16), width=16)  # without attention: the keys it always had
    assert not any("gamma" in k for k in plain.state_dict())
    with pytest.raises(ConfigError, match="attention_res"):
        ResNetGenerator((1, 16, 16), z_dim=8, width=16, attention_res=[32])
    with pytest.raises(ConfigError, match="attention_res"):
        ResNetDiscriminator((1, 16, 16), width=16, attention_res=[16])


def test_a_resnet_run_with_attention_trains(tmp_path):
    summary = train_run(tmp_path, "model=resnet", "model.attention_res=[8]", "train.steps=2")
    assert summary["status"] == "finished"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "generator.attention.8.gamma" in state and any(k.endswith(".gamma") and "disc" in k for k in state)
