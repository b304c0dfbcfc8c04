"""StyleGAN2's generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN"), following the conventions of the authors' StyleGAN2-ADA code (NVlabs/stylegan2-ada-pytorch,
``training/networks.py``, ``torch_utils/ops/upfirdn2d.py``, ``conv2d_resample.py``).

G: a mapping network (z normalised by its second moment, an optional label embedding, ``mapping_layers``
equalized-lr linear layers with lr multiplier 0.01) gives w, broadcast to one w per layer (``num_ws``);
the synthesis network starts from a learned 4x4 constant, and every layer is a modulated 3x3 conv with
weight demodulation, per-pixel noise, bias and leaky ReLU; ToRGB layers (1x1 modulated convs without
demodulation) are summed over the resolutions through FIR upsampling ("skip"). G has no output tanh (as
the authors'): images are unbounded, trained toward data in [-1, 1]. D: fromRGB, residual blocks of two
3x3 convs (the second one FIR-filtered and strided) down to 4x4, then minibatch stddev, a conv and two
linear layers; conditional D projects onto a mapped label embedding (``cmap``).

Rules kept from the authors' code:

- equalized learning rate: a weight is stored N(0, 1)/lr_mul and used as weight·lr_mul/√fan_in; a bias is
  stored at ``bias_init`` and used as bias·lr_mul (so it starts at bias_init·lr_mul; the style affines
  have lr_mul 1 and start at 1); leaky ReLU has slope 0.2 and gain √2, then the clamp to ±conv_clamp;
- resampling with the [1, 3, 3, 1] filter (2-D outer product, normalised to sum 1): up = zero insertion,
  padding (2, 1), filter ×4; down = padding (1, 1), filter, every second pixel. An up conv is a transposed
  stride-2 conv then the filter (paddings (1, 1) for 3x3), a down conv is the filter (paddings (2, 2) for
  3x3) then a stride-2 conv, the authors' geometry and weight orientation;
- w indexing: block r uses ws[i], ws[i+1] for its convs and ws[i+2] for its ToRGB, which is the w of the
  next block's first conv; num_ws = number of convs + 1 = 2·log2(resolution) − 2;
- w_avg tracks w by ``w_avg ← lerp(w_avg, mean_batch(w), 1 − β)`` on every training-mode mapping call
  (not for the style-mixing draw); truncation lerps ws toward w_avg by ψ for the first
  ``truncation_cutoff`` ws (all when None);
- conditional D: the label goes through its own mapping network (z_dim 0, embed → normalise → 8 layers
  with lr multiplier 0.01, the authors' default, as their ``train.py`` sets no other) to ``cmap``; the
  logit is <out, cmap>/√cmap_dim.

Deviations from the authors' code:

- plain PyTorch only: no custom CUDA kernels (upfirdn2d, bias_act, fma) nor conv2d_gradfix; FIR
  resampling is zero insertion + F.pad + a depthwise conv2d with the 4x4 filter, the modulated conv a
  grouped conv over the batch (double backward works through all of it);
- the modulated conv is always the fused one (per-sample weights, grouped conv); the authors switch to
  the unfused form (scale activations, shared weight, scale outputs) in training mode: same function,
  other rounding;
- no mixed precision: no FP16 blocks (``num_fp16_res``), no FP16 pre-normalisation, no channels_last;
  ``conv_clamp`` is offered but off by default (the authors set 256 with FP16);
- labels are integer class ids (B,), one-hot encoded inside (the authors take a c_dim float vector);
- style mixing happens inside ``StyleGAN2Generator.forward`` in training mode (probability
  ``style_mixing``), not in the loss; one crossover per batch as there, applied with a mask over the ws
  axis instead of a slice at a tensor index (``G.styles``, which the path-length regulariser uses too,
  so its ws are mixed as in the authors' loss);
- truncation with a cutoff is a ``torch.where`` over the ws axis, not an in-place slice assignment;
- minibatch stddev: when the group size does not divide the batch, the group is the largest divisor of
  the batch not above it (the authors' reshape fails there); groups are strided (samples i, i + N/G, ...)
  as there;
- D returns logits of shape (B,), not (B, 1); D offers "resnet" and "orig", not "skip";
- no Freeze-D (``freeze_layers``), no ``fused_modconv``/``force_fp32`` switches, no pickling machinery;
  bad settings raise ConfigError instead of failing asserts;
- module and state-dict names are this module's own: the authors' checkpoints do not load as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError

LRELU_SLOPE = 0.2
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}  # the gain that keeps the variance
NOISE_MODES = ("random", "const", "none")
G_ARCHITECTURES = ("skip", "orig", "resnet")
D_ARCHITECTURES = ("resnet", "orig")
RESOLUTIONS = (16, 32, 64, 128, 256)
FIR_TAPS = (1, 3, 3, 1)


def _resolution(data_shape: Sequence[int], who: str) -> int:
    """The side of the square images ``data_shape`` (C, H, W) describes; a ConfigError unless it is one of
    RESOLUTIONS."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in RESOLUTIONS:
        raise ConfigError(
            f"{who}: StyleGAN2 makes square images of {'/'.join(map(str, RESOLUTIONS))} px, but the data "
            f"has shape {tuple(data_shape)}; set data.resolution to one of those"
        )
    return int(data_shape[1])


def _channels(channel_base: int, channel_max: int, res: int, who: str) -> int:
    """Feature maps at resolution ``res``: min(channel_base // res, channel_max), at least one."""
    channels = min(channel_base // res, channel_max)
    if channels < 1:
        raise ConfigError(f"{who}: channel_base={channel_base} leaves no channels at {res}x{res}; raise it")
    return channels


def _check_activation(name: str) -> None:
    if name not in ACTIVATION_GAINS:
        raise ConfigError(f"unknown activation {name!r} for StyleGAN2 layers; choose linear or lrelu")


def bias_act(x: Tensor, activation: str = "linear", gain: float = 1.0, clamp: float | None = None) -> Tensor:
    """Activation, times its variance-keeping gain (√2 for lrelu) times ``gain``, then clamped to ±clamp:
    the authors' bias_act after the bias (added by the caller)."""
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    scale = ACTIVATION_GAINS[activation] * gain
    if scale != 1.0:
        x = x * scale
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x / √(mean(x²) + eps) along ``dim``: puts z (and the label embedding) on the unit sphere·√dim."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------------------
# FIR resampling


def setup_filter(taps: Sequence[float] = FIR_TAPS) -> Tensor:
    """The 2-D low-pass filter of the separable ``taps``: their outer product, normalised to sum 1."""
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    f = torch.outer(t, t)
    return f / f.sum()


def _fir(x: Tensor, f: Tensor, pad: tuple[int, int], gain: float = 1.0) -> Tensor:
    """Pad both spatial axes by ``pad`` (before, after) with zeros, then convolve every channel with
    ``f``·gain (a true convolution: the filter flipped for conv2d's correlation)."""
    c = x.shape[1]
    kernel = (f * gain).flip(0, 1).to(dtype=x.dtype, device=x.device)
    kernel = kernel.view(1, 1, *f.shape).expand(c, 1, *f.shape)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, kernel, groups=c)


def _zero_insert(x: Tensor) -> Tensor:
    """(B, C, H, W) → (B, C, 2H, 2W) with x at the even positions and zeros elsewhere."""
    b, c, h, w = x.shape
    x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, 1, 0, 0, 0, 1))
    return x.reshape(b, c, 2 * h, 2 * w)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling: zero insertion, padding, the FIR filter ×4 (so that a constant image stays
    constant away from the border)."""
    k = f.shape[-1]
    return _fir(_zero_insert(x), f, ((k + 1) // 2, (k - 2) // 2), gain=4.0)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x downsampling: padding, the FIR filter (anti-aliasing), then every second pixel."""
    k = f.shape[-1]
    return _fir(x, f, ((k - 1) // 2, (k - 2) // 2))[:, :, ::2, ::2]


def _conv_up2(x: Tensor, w: Tensor, f: Tensor, padding: int, groups: int) -> Tensor:
    """Conv at twice the resolution (SG2's order): a stride-2 transposed conv with ``w`` (O, I/groups,
    k, k), then the FIR filter ×4; paddings as the authors' conv2d_resample, so the size exactly doubles."""
    out_c, in_per_group, k, _ = w.shape
    # conv_transpose2d wants (in, out/groups, k, k); the authors use the weight unflipped here
    wt = w.reshape(groups, out_c // groups, in_per_group, k, k).transpose(1, 2)
    wt = wt.reshape(groups * in_per_group, out_c // groups, k, k)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # 2(H-1) + k
    fk = f.shape[-1]
    pad = (padding + (fk + 1) // 2 - (k - 1), padding + (fk - 2) // 2 - (k - 2))
    return _fir(x, f, pad, gain=4.0)


def _conv_down2(x: Tensor, w: Tensor, f: Tensor, padding: int, groups: int = 1) -> Tensor:
    """Conv at half the resolution: the FIR filter (padded as the authors' conv2d_resample), then a
    stride-2 conv with ``w``."""
    fk = f.shape[-1]
    x = _fir(x, f, (padding + (fk - 1) // 2, padding + (fk - 2) // 2))
    return F.conv2d(x, w, stride=2, groups=groups)


# ---------------------------------------------------------------------------------------------------------
# Equalized learning-rate layers


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate: weight stored N(0,1)/lr_mul, used as
    weight·lr_mul/√in_features; bias stored at ``bias_init``, used as bias·lr_mul (the authors' rule)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        return bias_act(F.linear(x, w, b), self.activation)


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate (weight N(0,1), used as weight/√(in·k·k)), 'same' padding, optional
    FIR up (transposed conv, then filter) or down (filter, then strided conv) by 2, bias, activation with
    its gain (times ``gain`` of forward), clamp to ±conv_clamp·gain."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = FIR_TAPS,
    ) -> None:
        super().__init__()
        _check_activation(activation)
        if up not in (1, 2) or down not in (1, 2) or up * down == 4:
            raise ConfigError(f"EqualConv2d: up={up}, down={down}; each is 1 or 2, not both 2")
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.up == 2:
            x = _conv_up2(x, w, self.resample_filter, self.padding, groups=1)
        elif self.down == 2:
            x = _conv_down2(x, w, self.resample_filter, self.padding)
        else:
            x = F.conv2d(x, w, padding=self.padding)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).view(1, -1, 1, 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.activation, gain, clamp)


# ---------------------------------------------------------------------------------------------------------
# Modulated convolution


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: int = 1,
    padding: int | None = None,
    resample_filter: Tensor | None = None,
) -> Tensor:
    """Conv of every sample with its own weight w·s (s: its style per input channel), demodulated
    (w'' = w'/√(Σ_{in,kh,kw} w'² + 1e-8) per output channel) so that unit-variance inputs give
    unit-variance outputs; done as one conv over the batch in groups. ``up`` = 2: transposed conv, then
    the FIR filter (``resample_filter``, [1, 3, 3, 1] when None)."""
    batch, in_c, height, width = x.shape
    out_c, _, kh, kw = weight.shape
    if padding is None:
        padding = kh // 2
    w = weight.to(x.dtype).unsqueeze(0) * styles.to(x.dtype).view(batch, 1, in_c, 1, 1)  # (B, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    w = w.reshape(batch * out_c, in_c, kh, kw)
    x = x.reshape(1, batch * in_c, height, width)
    if up == 2:
        f = resample_filter if resample_filter is not None else setup_filter().to(x.device)
        x = _conv_up2(x, w, f, padding, groups=batch)
    elif up == 1:
        x = F.conv2d(x, w, padding=padding, groups=batch)
    else:
        raise ConfigError(f"modulated_conv2d: up={up}; use 1 or 2")
    return x.reshape(batch, out_c, *x.shape[2:])


# ---------------------------------------------------------------------------------------------------------
# Generator


class MappingNetwork(nn.Module):
    """z (and the one-hot label, embedded) → w: inputs normalised by their second moment, ``num_layers``
    lrelu EqualLinear with lr multiplier ``lr_mul``; broadcast to (B, num_ws, w_dim) unless ``num_ws`` is
    None; tracks ``w_avg`` (unless ``w_avg_beta`` is None) for truncation."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        num_classes: int = 0,
        lr_mul: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"mapping network: num_layers={num_layers}; it needs at least one layer")
        if z_dim + num_classes == 0:
            raise ConfigError("mapping network: no input (z_dim=0 and no classes)")
        self.z_dim, self.w_dim, self.num_ws, self.num_classes = z_dim, w_dim, num_ws, num_classes
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if num_classes else 0
        self.embed = EqualLinear(num_classes, embed_features) if num_classes else None
        sizes = [z_dim + embed_features] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, activation="lrelu", lr_mul=lr_mul)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.w_avg: Tensor | None
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))
        else:
            self.w_avg = None

    def forward(
        self,
        z: Tensor | None,
        y: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = True,
    ) -> Tensor:
        """ws (B, num_ws, w_dim) (or w (B, w_dim) when num_ws is None); ``update_w_avg`` False for a draw
        that must not move w_avg (the style-mixing one)."""
        parts = []
        if self.z_dim:
            if z is None:
                raise ValueError("this mapping network needs z")
            parts.append(normalize_2nd_moment(z))
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional StyleGAN2 network needs the class labels y")
            dtype = z.dtype if z is not None else self.embed.weight.dtype
            parts.append(normalize_2nd_moment(self.embed(F.one_hot(y.long(), self.num_classes).to(dtype))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for layer in self.layers:
            x = layer(x)
        if self.w_avg is not None and self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(x.detach().mean(0).to(self.w_avg.dtype), 1.0 - self.w_avg_beta)
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if self.w_avg is None:
                raise ConfigError("truncation needs a mapping network that tracks w_avg (w_avg_beta set)")
            truncated = torch.lerp(self.w_avg.to(x.dtype).expand_as(x), x, truncation_psi)
            if truncation_cutoff is None or self.num_ws is None:
                x = truncated
            else:
                first = torch.arange(self.num_ws, device=x.device) < truncation_cutoff
                x = torch.where(first.view(1, -1, 1), truncated, x)
        return x


class SynthesisLayer(nn.Module):
    """Style affine (w → per-input-channel scale, bias init 1), modulated + demodulated 3x3 conv (up 2
    optional), noise·``noise_strength`` (init 0), bias, lrelu·√2·gain, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = FIR_TAPS,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", gain: float = 1.0) -> Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter)
        if noise_mode == "random":
            noise = torch.randn(
                x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype
            )
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        x = x + self.bias.to(x.dtype).view(1, -1, 1, 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, "lrelu", gain, clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation (styles scaled by 1/√in_channels, the authors' weight gain),
    bias, no activation, clamp."""

    def __init__(
        self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x + self.bias.to(x.dtype).view(1, -1, 1, 1), "linear", 1.0, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of G: (the 4x4 constant | up conv0), conv1, and ToRGB (every block for "skip", the
    last one otherwise); "resnet" adds a 1x1 up skip, both branches ×√0.5."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.const = nn.Parameter(torch.randn(out_channels, 4, 4)) if in_channels == 0 else None
        self.conv0 = None
        if in_channels:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, 2, conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, 1, conv_clamp)
        self.torgb = None
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp)
        self.skip = None
        if in_channels and architecture == "resnet":
            self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, up=2)
        self.num_conv = 1 + (self.conv0 is not None)
        self.num_torgb = int(self.torgb is not None)
        self.register_buffer("resample_filter", setup_filter())

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: list[Tensor], noise_mode: str
    ) -> tuple[Tensor, Tensor | None]:
        if self.const is not None:
            x = self.const.to(ws[0].dtype).unsqueeze(0).expand(ws[0].shape[0], -1, -1, -1)
            x = self.conv1(x, ws[0], noise_mode)
        elif self.skip is not None:
            skip = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[0], noise_mode)
            x = skip + self.conv1(x, ws[1], noise_mode, gain=math.sqrt(0.5))
        else:
            x = self.conv0(x, ws[0], noise_mode)
            x = self.conv1(x, ws[1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.torgb is not None:
            rgb = self.torgb(x, ws[self.num_conv])
            img = rgb if img is None else img + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) → image (B, img_channels, resolution, resolution), from a learned 4x4
    constant through one block per resolution; no output nonlinearity (SG2 has no tanh)."""

    def __init__(
        self,
        w_dim: int,
        resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        noise_mode: str = "random",
        conv_clamp: float | None = None,
        architecture: str = "skip",
    ) -> None:
        super().__init__()
        if resolution not in (4, 8) + RESOLUTIONS:
            raise ConfigError(f"StyleGAN2 synthesis: resolution {resolution} is not a power of two in 4..256")
        if architecture not in G_ARCHITECTURES:
            raise ConfigError(
                f"StyleGAN2 generator: unknown architecture {architecture!r}; "
                f"choose {'/'.join(G_ARCHITECTURES)}"
            )
        _check_noise_mode(noise_mode)
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.noise_mode = noise_mode
        resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleList()
        self.num_ws = 0
        self.block_ws: list[tuple[int, int]] = []  # (first w, number of ws) of every block
        for res in resolutions:
            c_in = _channels(channel_base, channel_max, res // 2, "StyleGAN2 generator") if res > 4 else 0
            c_out = _channels(channel_base, channel_max, res, "StyleGAN2 generator")
            block = SynthesisBlock(
                c_in, c_out, w_dim, res, img_channels, res == resolution, architecture, conv_clamp
            )
            self.block_ws.append((self.num_ws, block.num_conv + block.num_torgb))
            self.num_ws += block.num_conv
            self.blocks.append(block)
        self.num_ws += 1  # the last ToRGB

    def forward(self, ws: Tensor, noise_mode: str | None = None) -> Tensor:
        noise_mode = self.noise_mode if noise_mode is None else noise_mode
        _check_noise_mode(noise_mode)
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"synthesis wants ws of shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}"
            )
        x = img = None
        for block, (first, count) in zip(self.blocks, self.block_ws, strict=True):
            x, img = block(x, img, list(ws[:, first : first + count].unbind(1)), noise_mode)
        return img


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ConfigError(
            f"StyleGAN2 generator: unknown noise_mode {noise_mode!r}; choose {'/'.join(NOISE_MODES)}"
        )


def crossover_index(num_ws: int, prob: float, device: torch.device | None = None) -> Tensor:
    """The style-mixing crossover for one batch (a 0-dim int64 tensor, no host sync): uniform in
    [1, num_ws) with probability ``prob``, else num_ws (no mixing)."""
    cut = torch.randint(1, num_ws, (), device=device)
    use = torch.rand((), device=device) < prob
    return torch.where(use, cut, torch.full_like(cut, num_ws))


class StyleGAN2Generator(nn.Module):
    """StyleGAN2's G: z (and the class id y) → mapping → ws → synthesis → image (no tanh). In training mode
    with ``style_mixing`` > 0 a second w (from a fresh z, same labels) takes over the layers from a random
    crossover on, with that probability (SG2's mixing regularisation)."""

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        mapping_lr_mul: float = 0.01,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_classes: int = 0,
        style_mixing: float = 0.0,
        noise_mode: str = "random",
        conv_clamp: float | None = None,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        resolution = _resolution(data_shape, "model.generator")
        if not 0.0 <= style_mixing <= 1.0:
            raise ConfigError(f"model.generator.style_mixing={style_mixing} is a probability, in [0, 1]")
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.style_mixing = style_mixing
        self.synthesis = SynthesisNetwork(
            w_dim, resolution, data_shape[0], channel_base, channel_max, noise_mode, conv_clamp, "skip"
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim, w_dim, self.num_ws, mapping_layers, num_classes, mapping_lr_mul, w_avg_beta
        )

    def mix_styles(self, ws: Tensor, z: Tensor, y: Tensor | None, truncation_psi: float = 1.0) -> Tensor:
        """ws with the layers from a random crossover on (see ``crossover_index``) taken from the ws of
        a fresh z (same labels; w_avg not updated by that draw)."""
        other = self.mapping(torch.randn_like(z), y, truncation_psi, update_w_avg=False)
        cut = crossover_index(self.num_ws, self.style_mixing, ws.device)
        later = torch.arange(self.num_ws, device=ws.device) >= cut
        return torch.where(later.view(1, -1, 1), other, ws)

    def styles(self, z: Tensor, y: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """The ws synthesis gets for ``z``: the mapping's, style-mixed in training mode (what the
        path-length regulariser differentiates, as the authors' loss, whose every G call mixes)."""
        ws = self.mapping(z, y, truncation_psi)
        if self.training and self.style_mixing > 0:
            ws = self.mix_styles(ws, z, y, truncation_psi)
        return ws

    def forward(self, z: Tensor, y: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        return self.synthesis(self.styles(z, y, truncation_psi))


# ---------------------------------------------------------------------------------------------------------
# Discriminator


class MinibatchStdDev(nn.Module):
    """Appends ``num_channels`` channels: the std over a group of samples (i, i + N/G, ...), averaged
    over the channels of each of num_channels slices and the pixels. The group has min(group_size, N)
    samples, or the largest divisor of N below that when it does not divide N (sizes are static: no
    host sync)."""

    def __init__(self, group_size: int | None = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else max(1, min(self.group_size, n))
        while n % g:
            g -= 1
        f = self.num_channels
        groups = x.reshape(g, n // g, f, c // f, h, w)
        std = (groups.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (N/G, F, C/F, H, W)
        std = std.mean(dim=(2, 3, 4))  # (N/G, F)
        std = std.view(1, n // g, f, 1, 1).expand(g, -1, -1, h, w).reshape(n, f, h, w)
        return torch.cat([x, std], dim=1)


class DiscriminatorBlock(nn.Module):
    """One resolution of D: (fromRGB on the first), conv0 3x3, conv1 3x3 down 2, both lrelu; "resnet":
    plus a 1x1 down skip (no bias, linear), both branches ×√0.5."""

    def __init__(
        self,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        first: bool,
        architecture: str,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.fromrgb = None
        if first:
            self.fromrgb = EqualConv2d(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = EqualConv2d(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(
            tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp
        )
        self.skip = None
        if architecture == "resnet":
            self.skip = EqualConv2d(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor) -> Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        if self.skip is None:
            return self.conv1(self.conv0(x))
        skip = self.skip(x, gain=math.sqrt(0.5))
        return skip + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's D: image → fromRGB → blocks down to 4x4 → minibatch stddev, conv, fc, out → logits
    (B,). Conditional (``num_classes`` > 0): projection onto the label mapped by its own mapping network,
    <out, cmap>/√cmap_dim."""

    def __init__(
        self,
        data_shape: Sequence[int],
        channel_base: int = 32768,
        channel_max: int = 512,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_channels: int = 1,
        num_classes: int = 0,
        cond: str = "projection",
        cmap_dim: int | None = None,
        conv_clamp: float | None = None,
        mapping_layers: int = 8,
    ) -> None:
        super().__init__()
        resolution = _resolution(data_shape, "model.discriminator")
        if architecture not in D_ARCHITECTURES:
            raise ConfigError(
                f"model.discriminator: unknown architecture {architecture!r}; "
                f"choose {'/'.join(D_ARCHITECTURES)}"
            )
        if num_classes and cond != "projection":
            raise ConfigError(
                f"StyleGAN2's D conditions by projection only (model.cond=projection), got {cond!r}"
            )
        self.num_classes = num_classes
        who = "model.discriminator"
        sizes = (2**i for i in range(2, int(math.log2(resolution)) + 1))
        channels = {r: _channels(channel_base, channel_max, r, who) for r in sizes}
        c4 = channels[4]
        if mbstd_channels < 0 or (mbstd_channels and c4 % mbstd_channels):
            raise ConfigError(f"{who}: mbstd_channels={mbstd_channels} must divide the {c4} channels at 4x4")
        res, blocks = resolution, []
        while res > 4:
            blocks.append(
                DiscriminatorBlock(
                    channels[res],
                    channels[res // 2],
                    data_shape[0],
                    res == resolution,
                    architecture,
                    conv_clamp,
                )
            )
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_channels) if mbstd_channels else None
        self.conv = EqualConv2d(c4 + mbstd_channels, c4, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.cmap_dim = (cmap_dim or c4) if num_classes else 0
        self.out = EqualLinear(c4, self.cmap_dim or 1)
        self.mapping = None
        if num_classes:
            self.mapping = MappingNetwork(
                0, self.cmap_dim, None, mapping_layers, num_classes, w_avg_beta=None
            )

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.mapping is None:
            return x.squeeze(1)
        if y is None:
            raise ValueError("a conditional StyleGAN2 discriminator needs the class labels: D(x, y)")
        cmap = self.mapping(None, y).to(x.dtype)
        return (x * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)
