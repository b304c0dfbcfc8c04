"""Self-attention for GANs (SAGAN, Zhang et al. 2019, "Self-Attention Generative Adversarial Networks").

As the authors' ``sn_non_local_block_sim`` (brain-research/self-attention-gan, non_local.py): 1x1
convolutions without bias to queries θ (C/8 channels), keys φ (C/8) and values g (C/2), keys and
values max-pooled 2x2 (a quarter of the positions), softmax over the keys, a 1x1 convolution from the
C/2 attended values back to C, and the output x + γ·o with γ a learned scalar starting at 0 (the block
starts as the identity). Every convolution is spectrally normalised (optional here, on by default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import maybe_sn


class SelfAttention(nn.Module):
    """x + γ·o(attention of every position over the pooled positions); needs C divisible by 8 and an
    even height and width (the 2x2 pooling)."""

    def __init__(self, channels: int, spectral_norm: bool = True) -> None:
        super().__init__()
        if channels % 8:
            raise ConfigError(f"self-attention needs a multiple of 8 channels (C/8 queries), got {channels}")

        def conv(c_in: int, c_out: int) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, 1, bias=False)
            nn.init.xavier_uniform_(layer.weight)
            return maybe_sn(layer, spectral_norm)

        self.query, self.key = conv(channels, channels // 8), conv(channels, channels // 8)
        self.value, self.out = conv(channels, channels // 2), conv(channels // 2, channels)
        self.gamma = nn.Parameter(torch.zeros(()))

    def attention(self, x: Tensor) -> Tensor:
        """The attention map (B, H·W, H·W/4): for each position, a distribution over the pooled keys."""
        query = self.query(x).flatten(2)  # (B, C/8, HW)
        key = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, C/8, HW/4)
        return torch.softmax(query.transpose(1, 2) @ key, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        value = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, C/2, HW/4)
        attended = (value @ self.attention(x).transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.gamma * self.out(attended)
