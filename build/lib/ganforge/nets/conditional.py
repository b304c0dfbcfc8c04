"""Class conditioning shared by the architectures: conditional normalisation in G, the heads of D."""

from __future__ import annotations

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import maybe_sn, norm_layer

CONDITIONINGS = ("projection", "acgan")


class ConditionalNorm(nn.Module):
    """Conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018): a norm without affine, then a
    per-class gain and bias (from embeddings); any ``norm`` kind, ``none`` leaves the class affine only."""

    takes_labels = True

    def __init__(self, kind: str, channels: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        self.norm = norm_layer(kind, channels, dims, affine=False) or nn.Identity()
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
        return self.norm(x) * self.gain(y).view(shape) + self.bias(y).view(shape)


def generator_norm(kind: str, channels: int, num_classes: int = 0, dims: int = 2) -> nn.Module | None:
    """The norm of a generator layer: conditional on the class when ``num_classes`` > 0."""
    if num_classes:
        return ConditionalNorm(kind, channels, num_classes, dims)
    return norm_layer(kind, channels, dims)


def check_conditioning(cond: str, num_classes: int) -> None:
    if num_classes and cond not in CONDITIONINGS:
        raise ConfigError(f"model.cond must be one of {', '.join(CONDITIONINGS)}, got {cond!r}")


class DiscriminatorHead(nn.Module):
    """Features ``h`` (B, F) to one logit per sample: ``linear(h)``, plus for conditional models

    - ``projection`` (Miyato & Koyama 2018): ``+ <embed(y), h>``, the logit depends on the class;
    - ``acgan`` (Odena et al. 2017): also class logits (B, num_classes) — forward returns a pair.
    """

    def __init__(
        self, features: int, num_classes: int = 0, cond: str = "projection", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        check_conditioning(cond, num_classes)
        self.linear = maybe_sn(nn.Linear(features, 1), spectral_norm)
        self.embed: nn.Module | None = None
        self.classifier: nn.Module | None = None
        if num_classes and cond == "projection":
            embed = nn.Embedding(num_classes, features)
            nn.init.normal_(embed.weight, 0.0, features**-0.5)
            self.embed = maybe_sn(embed, spectral_norm)
        elif num_classes:
            self.classifier = maybe_sn(nn.Linear(features, num_classes), spectral_norm)

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a projection discriminator needs the class labels: D(x, y)")
            out = out + (self.embed(y) * h).sum(1)
        if self.classifier is not None:
            return out, self.classifier(h)
        return out
