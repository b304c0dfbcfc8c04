"""BigGAN's G and D (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis").

Written after the authors' PyTorch code (ajbrock/BigGAN-PyTorch: BigGAN.py, layers.py), 16/32/64/128 px.

Rules kept from the authors' code:

- Architecture tables ``G_arch``/``D_arch``: bottom width 4 and one up-sampling GBlock per doubling in G
  (channel multipliers 32 px: 4,4,4,4; 64 px: 16,16,8,4,2; 128 px: 16,16,8,4,2,1, as in → out chain);
  D blocks with outputs 32 px: 4,4,4,4 (downsample T,T,F,F); 64 px: 1,2,4,8,16 (T,T,T,T,F);
  128 px: 1,2,4,8,16,16 (T,T,T,T,T,F), all × ``width``; D is "wide" (hidden channels = out channels).
- Hierarchical latents (``hier``): z splits into (blocks + 1) equal chunks; the first goes to the linear
  layer, chunk i+1 joins the shared class embedding as the conditioning vector of block i's two norms,
  ``cat(shared(y), z_chunk)`` in that order. Without ``hierarchical``: all of z to the linear layer,
  the norms get ``shared(y)``. One shared ``nn.Embedding(num_classes, shared_dim)``, never spectrally
  normalised ("applying SN to G's embedding seems to randomly cripple G").
- ``ccbn``: batch norm without affine (running stats, momentum 0.1), then ``(1 + gain(c)) · x + bias(c)``
  with gain and bias linear layers without bias (``which_linear`` with ``bias=False``), spectrally
  normalised with the rest of G.
- GBlock: ccbn-ReLU-upsample(nearest ×2)-conv3x3-ccbn-ReLU-conv3x3, shortcut upsample-conv1x1 (learnable
  since every G block upsamples). Output: batch norm (affine) - ReLU - conv3x3 - tanh.
- DBlock: ReLU (out of place, skipped in the first block: ``preactivation = index > 0``) - conv3x3 - ReLU
  - conv3x3 - avgpool 2 (when downsampling); shortcut conv1x1 when channels change or the block
  downsamples, else identity; with preactivation conv1x1 then pool, in the first block pool then conv1x1
  (the same values either way, a 1x1 conv and 2x2 averaging commute: the order only saves compute).
- D output: ReLU, global sum pooling, linear to 1 plus the projection ``<embed(y), h>``.
- Self-attention (SAGAN block, ``ganforge.nets.attention.SelfAttention``) after a block, spectrally
  normalised with its net; init "ortho" (``orthogonal_``), "N02" (N(0, 0.02)) or "xavier"/"glorot" on
  the weight of every Conv2d, Linear and Embedding (the shared embedding and attention convs included);
  spectral norm on every conv and linear of G and every conv, linear and embedding of D.

Deviations from the authors' code:

- 16 px (not in the authors' tables): G is the 32 px table with two blocks (4 → 8 → 16), D the 32 px
  table with one downsampling block then two plain ones (16 → 8, 8, 8).
- ``G(z, y)`` takes class labels and applies the shared embedding itself (the authors pass ``G.shared(y)``).
- Unconditional nets (``num_classes=0``, not in the authors' code): G's norms get the z chunk alone when
  hierarchical, and are plain affine batch norms otherwise; D has no projection.
- A ``z_dim`` that does not split into equal chunks is a ConfigError (the authors shrink z to a multiple).
- Biases start at zero (the authors' init touches weights only and leaves PyTorch's uniform biases).
- An unknown init style is a ConfigError (the authors print a warning and keep PyTorch's init).
- Spectral norm is PyTorch's ``parametrizations.spectral_norm`` (1 power iteration per training forward,
  eps 1e-12 as the authors', but u, v warmed up by 15 iterations when wrapped; the authors' starts from a
  random u and keeps no v); it wraps the layers after the init.
- ``bn_eps`` also sets the output batch norm's eps (the authors' output norm always uses 1e-5).
- Self-attention goes after the first block whose actual output resolution is named; the authors key on
  their table's ``resolution`` entries, which label all four 32 px D blocks 16 (three of them output 8x8)
  and repeat 4 for the last two D blocks at 64/128 px, adding one attention layer per matching block;
  a resolution no block produces is a ConfigError here and silently ignored there.
- ``data_shape[0]`` image channels in and out (the authors: 3); D returns logits of shape (B,), not (B, 1).
- Not offered: non-shared per-block class embeddings (``G_shared=False``), cross-replica/``mybn`` batch
  norm, standing stats, other ``norm_style``s, kernel sizes, activations, skinny D, ``output_dim`` > 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.attention import SelfAttention
from ganforge.nets.conditional import DiscriminatorHead
from ganforge.nets.dcgan import spectral_norm_after_init

RESOLUTIONS = (16, 32, 64, 128)
INITS = ("ortho", "N02", "xavier", "glorot")

# G: channel multipliers from the 4x4 input through each block's output (the authors' in/out_channels)
G_CHANNELS = {16: (4, 4, 4), 32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1)}
# D: each block's output multiplier and whether it downsamples (the authors' out_channels, downsample)
D_BLOCKS = {
    16: ((4, True), (4, False), (4, False)),
    32: ((4, True), (4, True), (4, False), (4, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
}


def _resolution(data_shape: Sequence[int]) -> int:
    """The square image size, a ConfigError unless (C, H, W) with H = W in 16/32/64/128."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in RESOLUTIONS:
        raise ConfigError(
            f"model biggan makes square images of {'/'.join(map(str, RESOLUTIONS))} px, but the data has "
            f"shape {tuple(data_shape)}; set data.resolution to one of those"
        )
    return int(data_shape[1])


def _check(width: int, num_classes: int, init: str) -> None:
    """ConfigErrors for settings shared by G and D: a positive width, classes >= 0, a known init."""
    if width < 1:
        raise ConfigError(f"model biggan: width must be a positive integer, got {width}")
    if num_classes < 0:
        raise ConfigError(f"model biggan: num_classes must be >= 0 (0: unconditional), got {num_classes}")
    if init not in INITS:
        raise ConfigError(f"model biggan: init must be one of {', '.join(INITS)}, got {init!r}")


def _attention(
    resolutions: Sequence[int], produced: list[int], channels: Sequence[int], net: str
) -> dict[int, SelfAttention]:
    """Block index → SelfAttention for each named resolution, after the first block that outputs it."""
    wrong = sorted(set(resolutions) - set(produced))
    if wrong:
        raise ConfigError(
            f"model.attention_res={list(resolutions)}: BigGAN {net}'s blocks produce "
            f"{sorted(set(produced))} px features, not {wrong}"
        )
    # without spectral norm here: the net initialises every conv, then wraps them all
    return {produced.index(r): SelfAttention(channels[produced.index(r)], False) for r in set(resolutions)}


def biggan_init(net: nn.Module, style: str) -> None:
    """The authors' ``init_weights``: every Conv2d/Linear/Embedding weight orthogonal ("ortho"), N(0, 0.02)
    ("N02") or Xavier-uniform ("xavier"/"glorot"); biases zero. Call before spectral norm wraps the layers."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if style == "ortho":
                nn.init.orthogonal_(m.weight)
            elif style == "N02":
                nn.init.normal_(m.weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, 1, k // 2)


class ConditionalBatchNorm(nn.Module):
    """The authors' ``ccbn``: batch norm without affine, then ``(1 + gain(c)) · x + bias(c)`` with bias-free
    linear layers from the conditioning vector c (shared class embedding and/or a z chunk); the net that
    holds it spectrally normalises the two linears with its other layers."""

    def __init__(self, channels: int, cond_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=eps, affine=False)
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        gain = (1 + self.gain(c))[:, :, None, None]
        return self.bn(x) * gain + self.bias(c)[:, :, None, None]


class GBlock(nn.Module):
    """norm-ReLU-up-conv3x3-norm-ReLU-conv3x3 + up-conv1x1 shortcut; the norms are ccbn when the block gets
    a conditioning vector (``cond_dim`` > 0), else plain affine batch norms."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conditional = cond_dim > 0

        def norm(channels: int) -> nn.Module:
            if self.conditional:
                return ConditionalBatchNorm(channels, cond_dim, eps)
            return nn.BatchNorm2d(channels, eps=eps)

        self.norm1, self.conv1 = norm(c_in), _conv(c_in, c_out)
        self.norm2, self.conv2 = norm(c_out), _conv(c_out, c_out)
        self.shortcut = _conv(c_in, c_out, 1)  # learnable: every G block upsamples

    def _norm(self, layer: nn.Module, x: Tensor, c: Tensor | None) -> Tensor:
        return layer(x, c) if self.conditional else layer(x)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self._norm(self.norm1, x, c)), scale_factor=2)
        h = self.conv2(F.relu(self._norm(self.norm2, self.conv1(h), c)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class BigGANGenerator(nn.Module):
    """z (and class y) → linear → 4x4 → GBlocks with (class-)conditional BN → BN-ReLU-conv3x3-tanh.

    ``hierarchical``: z is split over the linear layer and the blocks' norms; ``shared_dim``: size of the
    class embedding shared by all blocks; ``attention_res``: SAGAN self-attention after the block that
    outputs each resolution.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 128,
        width: int = 32,
        shared_dim: int = 128,
        num_classes: int = 0,
        attention_res: Sequence[int] = (),
        hierarchical: bool = True,
        spectral_norm: bool = True,
        init: str = "ortho",
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        res = _resolution(data_shape)
        _check(width, num_classes, init)
        if num_classes and shared_dim < 1:
            raise ConfigError(f"model biggan: shared_dim must be positive with classes, got {shared_dim}")
        channels = [m * width for m in G_CHANNELS[res]]
        n = len(channels) - 1
        slots = n + 1 if hierarchical else 1
        if z_dim < 1:
            raise ConfigError(f"model biggan: z_dim must be a positive integer, got {z_dim}")
        if z_dim % slots:
            fit = slots * max(1, z_dim // slots)
            raise ConfigError(
                f"model biggan: hierarchical z_dim={z_dim} must split into {slots} equal chunks (one for the "
                f"linear layer, one per block: {n} at {res} px), e.g. z_dim={fit}, or set hierarchical=false"
            )
        self.z_dim, self.num_classes, self.width = z_dim, num_classes, width
        self.hierarchical, self.chunk_size = hierarchical, z_dim // slots
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        cond_dim = (shared_dim if num_classes else 0) + (self.chunk_size if hierarchical else 0)
        self.linear = nn.Linear(self.chunk_size, channels[0] * 16)
        self.blocks = nn.ModuleList(GBlock(channels[i], channels[i + 1], cond_dim, bn_eps) for i in range(n))
        produced = [8 * 2**i for i in range(n)]
        attention = _attention(attention_res, produced, channels[1:], "G")
        self.attention = nn.ModuleDict({str(produced[i]): a for i, a in sorted(attention.items())})
        self.output = nn.Sequential(
            nn.BatchNorm2d(channels[-1], eps=bn_eps), nn.ReLU(), _conv(channels[-1], data_shape[0])
        )
        biggan_init(self, init)
        if spectral_norm:  # every conv and linear, not the shared embedding (as the authors)
            spectral_norm_after_init(self, (nn.Conv2d, nn.Linear))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if z.shape[1] != self.z_dim:
            raise ValueError(f"BigGAN G expects z of {self.z_dim} features, got shape {tuple(z.shape)}")
        n = len(self.blocks)
        chunks: Sequence[Tensor | None]
        if self.hierarchical:
            first, *chunks = torch.split(z, self.chunk_size, 1)
        else:
            first, chunks = z, [None] * n
        shared = None
        if self.shared is not None:
            if y is None:
                raise ValueError("a class-conditional BigGAN G needs the class labels: G(z, y)")
            shared = self.shared(y)
        h = self.linear(first).view(z.shape[0], -1, 4, 4)
        for block, chunk in zip(self.blocks, chunks, strict=True):
            parts = [p for p in (shared, chunk) if p is not None]
            h = block(h, torch.cat(parts, 1) if parts else None)
            if str(h.shape[-1]) in self.attention:  # a shape, known when tracing: no host sync
                h = self.attention[str(h.shape[-1])](h)
        return self.output(h).tanh()


class DBlock(nn.Module):
    """(ReLU-)conv3x3-ReLU-conv3x3(-avgpool) + shortcut, as the authors' DBlock (wide: hidden = out
    channels); the shortcut is conv1x1-pool with ``preactivation``, pool-conv1x1 without it."""

    def __init__(self, c_in: int, c_out: int, preactivation: bool, downsample: bool) -> None:
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1, self.conv2 = _conv(c_in, c_out), _conv(c_out, c_out)
        self.shortcut_conv = _conv(c_in, c_out, 1) if c_in != c_out or downsample else None

    def shortcut(self, x: Tensor) -> Tensor:
        if self.preactivation:
            x = x if self.shortcut_conv is None else self.shortcut_conv(x)
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return x if self.shortcut_conv is None else self.shortcut_conv(x)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x  # out of place: the shortcut needs x itself
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self.shortcut(x)


class BigGANDiscriminator(nn.Module):
    """image → DBlocks (+ self-attention) → ReLU → global sum pool → linear, plus the projection
    ``<embed(y), h>`` with classes; spectral norm on every conv, linear and embedding by default."""

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int = 32,
        num_classes: int = 0,
        cond: str = "projection",
        attention_res: Sequence[int] = (),
        spectral_norm: bool = True,
        init: str = "ortho",
    ) -> None:
        super().__init__()
        res = _resolution(data_shape)
        _check(width, num_classes, init)
        if num_classes and cond != "projection":
            raise ConfigError(
                f"model biggan: the discriminator conditions by projection only, got cond={cond!r}"
            )
        self.num_classes = num_classes
        outs = [m * width for m, _ in D_BLOCKS[res]]
        downs = [d for _, d in D_BLOCKS[res]]
        ins = [data_shape[0], *outs[:-1]]
        produced, size = [], res
        for down in downs:
            size //= 2 if down else 1
            produced.append(size)
        attention = _attention(attention_res, produced, outs, "D")
        layers: list[nn.Module] = []
        for i, (c_in, c_out, down) in enumerate(zip(ins, outs, downs, strict=True)):
            layers.append(DBlock(c_in, c_out, preactivation=i > 0, downsample=down))
            if i in attention:
                layers.append(attention[i])
        self.blocks = nn.Sequential(*layers)
        self.head = DiscriminatorHead(outs[-1], num_classes, "projection", spectral_norm=False)
        biggan_init(self, init)
        if spectral_norm:  # every conv, linear and embedding (the authors' SNConv2d/SNLinear/SNEmbedding)
            spectral_norm_after_init(self, (nn.Conv2d, nn.Linear, nn.Embedding))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.head(F.relu(self.blocks(x)).sum((2, 3)), y)
        assert isinstance(out, Tensor)  # a projection head returns the logits alone
        return out
