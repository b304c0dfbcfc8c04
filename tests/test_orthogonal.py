"""BigGAN's orthogonal regularization (Brock et al. 2019): its gradient is the one the authors' code adds."""

from __future__ import annotations

import torch
from torch import nn

from ganforge.losses import OrthogonalRegularization
from helpers import train_run


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(3, 4)  # excluded, as BigGAN's shared embedding
        self.linear = nn.Linear(4, 5)  # a 5x4 matrix (its bias: excluded)
        self.conv = nn.Conv2d(2, 3, 3)  # reshaped to 3x18


def test_gradient_is_the_authors_two_beta_off_diagonal_gram_times_w():
    torch.manual_seed(0)
    g, beta = Small(), 1e-2
    value = OrthogonalRegularization(weight=beta)(g, ())
    grads = dict(zip(["embed", "linear_w", "linear_b", "conv_w", "conv_b"], torch.autograd.grad(
        value, [g.embed.weight, g.linear.weight, g.linear.bias, g.conv.weight, g.conv.bias], allow_unused=True
    ), strict=True))  # fmt: skip
    for name, param in (("linear_w", g.linear.weight), ("conv_w", g.conv.weight)):
        w = param.detach().reshape(param.shape[0], -1)
        eye = torch.eye(w.shape[0])
        expected = beta * 2 * ((w @ w.t()) * (1 - eye)) @ w  # BigGAN-PyTorch utils.ortho
        torch.testing.assert_close(grads[name].reshape(w.shape), expected)
    assert grads["embed"] is None and grads["linear_b"] is None and grads["conv_b"] is None
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    g.linear.weight.data = q[:5, :4] / q[:5, :4].norm(dim=1, keepdim=True)
    g.conv.weight.data.zero_()
    lin = g.linear.weight.detach()
    off = lin @ lin.t() - torch.diag(torch.diagonal(lin @ lin.t()))
    torch.testing.assert_close(OrthogonalRegularization(beta)(g, ()), 0.5 * beta * off.pow(2).sum())


def test_any_task_trains_with_it(tmp_path):
    summary = train_run(
        tmp_path, "experiment=pix2pix_sr_digits", "model.generator.width=8", "model.discriminator.width=8",
        "loss/g_penalty=orthogonal", "train.steps=2",
    )  # fmt: skip
    assert summary["status"] == "finished" and summary["last"]["train/g_reg"] > 0
