"""The metrics of a run: which ones fit the data, the extractor, cached reference features, and
the torchmetrics objects that measure generated samples during training (DDP-safe states)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity.metric_prc import prc_features_to_metric
from torch_fidelity.utils import extract_featuresdict_from_input_id_cached
from torchmetrics import Metric
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance

from ganforge.data.base import GANDataModule, Population
from ganforge.errors import ConfigError
from ganforge.latents import LATENT_CHUNK, LatentSequence, truncated_normal  # noqa: F401 (re-exported)
from ganforge.metrics.classifier import ClassifierSpec, cached_classifier, holdout_split
from ganforge.metrics.conditional import IntraFID, RealHoldout, classification_accuracy_score
from ganforge.metrics.density_coverage import DensityCoverage, FakeFeatures
from ganforge.metrics.features import (
    CLASSIFIER,
    INCEPTION,
    INCEPTION_CLEAN,
    SELFSUP,
    Extractor,
    FeatureLayer,
    InceptionUnavailable,
    extractor_input,
    inception_weights,
    to_uint8,
    weights_sha256,
)
from ganforge.metrics.modes import (
    MIXTURE_MODE_SAMPLES,
    STACKED_MODE_SAMPLES,
    ModeCoverage,
    assign_modes,
    stacked_modes,
)
from ganforge.metrics.selfsup import SelfSupSpec, cached_selfsup, input_size, resize_uint8
from ganforge.metrics.settings import (
    CONDITIONAL_METRICS,
    IMAGE_METRICS,
    REFERENCE_METRICS,
    RESIZES,
    MetricSettings,
    check_task,
    check_values,
)
from ganforge.seeding import mix_seed

log = logging.getLogger(__name__)


def is_mixture(datamodule: GANDataModule) -> bool:
    return hasattr(datamodule, "centers") and not datamodule.is_image


def is_stacked(datamodule: GANDataModule) -> bool:
    return datamodule.labelled_source() is not datamodule


def choose(settings: MetricSettings, datamodule: GANDataModule) -> list[str]:
    """The metrics to compute; a ConfigError for one that cannot work on this data."""
    if is_mixture(datamodule):
        names = settings.names or ["modes"]
        wrong = [n for n in names if n in (*IMAGE_METRICS, *CONDITIONAL_METRICS)]
        if wrong:
            raise ConfigError(f"metrics {wrong} need image data; 2D mixture data uses metrics=[modes]")
        return names
    if not datamodule.is_image:
        raise ConfigError("metrics need image data or a Gaussian mixture with known centres; use metrics=[]")
    check_task(settings.names, "generation")
    names = settings.names or (["fid", "modes"] if is_stacked(datamodule) else ["fid", "kid"])
    if "modes" in names and not is_stacked(datamodule):
        raise ConfigError("metrics=[modes] needs data with known modes (ring8, grid25, stacked)")
    if "is" in names and is_stacked(datamodule):
        raise ConfigError("the Inception Score is not defined for stacked digits; use fid, kid, prc, modes")
    check_conditional(names, settings.conditional, datamodule)
    if "prc" in names and settings.prc_neighborhood >= settings.num_samples:  # k-th neighbour of n - 1
        raise ConfigError(
            f"metrics.prc_neighborhood={settings.prc_neighborhood} needs more than that many samples: "
            f"metrics.num_samples={settings.num_samples} (precision/recall use the k-th nearest neighbour)"
        )
    if "dc" in names and settings.dc_neighborhood >= settings.num_samples:
        raise ConfigError(
            f"metrics.dc_neighborhood={settings.dc_neighborhood} needs more than that many samples: "
            f"metrics.num_samples={settings.num_samples} (density/coverage: k-th nearest real neighbour)"
        )
    return names


def check_conditional(names: list[str], conditional: bool | None, datamodule: GANDataModule) -> None:
    """A ConfigError when a metric of class-conditional models (``intra_fid``, ``cas``) meets unlabelled
    data or an unconditional model (``conditional`` None: not known yet)."""
    wanted = [n for n in names if n in CONDITIONAL_METRICS]
    if not wanted:
        return
    if is_stacked(datamodule) or datamodule.labelled_source().num_classes < 2:
        raise ConfigError(
            f"metrics {wanted} measure a class-conditional model: they need labelled data "
            "(digits, mnist, cifar10, class folders)"
        )
    if conditional is False:
        raise ConfigError(
            f"metrics {wanted} measure a class-conditional model: set model.conditional=true or drop them"
        )


def extractor_kind(settings: MetricSettings, datamodule: GANDataModule, announce: bool = False) -> str:
    """``classifier``, ``inception`` or ``selfsup``. ``auto`` takes the classifier when the data has labels,
    else Inception when its weights are at hand (or can be fetched), else the self-supervised network
    (``announce``: say so in one log line)."""
    source = datamodule.labelled_source()
    check_values(settings)
    kind = settings.extractor
    why = ""
    if kind == "auto":
        kind, why = auto_extractor(settings, datamodule)
        if announce and why:
            log.info("metrics: %s", why)
    if settings.resize != RESIZES[0] and kind != "inception":
        chose = f" ({why})" if why else ""
        raise ConfigError(
            f"metrics.resize={settings.resize} is for metrics.extractor=inception (the {kind} extractor "
            f"takes images at its own size){chose}"
        )
    if kind == "classifier" and source.num_classes < 2:
        raise ConfigError(
            "metrics.extractor=classifier needs labelled data (class subfolders); use selfsup (trained on "
            "the images, no labels) or inception"
        )
    if is_stacked(datamodule) and kind != "classifier":
        raise ConfigError("stacked digits are measured with metrics.extractor=classifier")
    return kind


def auto_extractor(settings: MetricSettings, datamodule: GANDataModule) -> tuple[str, str]:
    """``metrics.extractor=auto``'s choice and, when it falls back to the self-supervised network, why."""
    if is_stacked(datamodule) or datamodule.labelled_source().num_classes > 1:
        return "classifier", ""
    try:
        inception_weights(settings.weights_path)
        return "inception", ""
    except InceptionUnavailable as err:
        return "selfsup", (
            "metrics.extractor=auto chose selfsup, a network trained without labels on the reference images "
            f"(Chen et al. 2020): the data has no labels and the FID Inception weights are not available "
            f"({err.reason}); its values are tagged fid[selfsup:...] and do not compare with Inception FIDs"
        )


def check(settings: MetricSettings, datamodule: GANDataModule) -> list[str]:
    """Everything that can be checked before training: metric choice, extractor, Inception weights."""
    names = choose(settings, datamodule)
    if any(n in IMAGE_METRICS or n == "intra_fid" for n in names):
        kind = extractor_kind(settings, datamodule, announce=True)
        if kind == "inception":
            inception_weights(settings.weights_path)
        if kind == "selfsup":
            if "is" in names:
                raise ConfigError(
                    "the Inception Score needs class logits, which metrics.extractor=selfsup does not have; "
                    "use fid, kid, prc, dc (or metrics.extractor=inception)"
                )
            selfsup_setup(settings, datamodule)  # its settings: one line now, not after training
    return names


class RealImages(Dataset):
    """uint8 real images at fixed indices, the input torch-fidelity reads reference features from."""

    def __init__(self, datamodule: GANDataModule, indices: list[int], rgb: bool) -> None:
        self.datamodule, self.indices, self.rgb = datamodule, indices, rgb

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tensor:
        return extractor_input(self.datamodule.items([self.indices[i]])[0][0], self.rgb).contiguous()


def build_extractor(
    settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path, device: torch.device
) -> Extractor:
    """The extractor of ``settings``; the classifier and the self-supervised network are trained on first
    use and then cached."""
    kind = extractor_kind(settings, datamodule)
    if kind == "inception":
        weights = inception_weights(settings.weights_path)
        if settings.resize == "clean":  # clean-fid's resize (Parmar et al. 2022): its own cache entries
            return Extractor(INCEPTION_CLEAN, weights, "inception-clean", {"rgb": True, "resize": "clean"})
        return Extractor(INCEPTION, weights, "inception", {"rgb": True, "resize": "torch_fidelity"})
    if kind == "selfsup":
        return selfsup_extractor(settings, datamodule, cache_dir, device)
    source, index, spec = classifier_setup(settings, datamodule)
    path, accuracy, cached = cached_classifier(
        lambda: labelled_images(source, index), spec, source.fingerprint(), cache_dir, device
    )
    info = {
        "rgb": False,
        "resize": "none",  # the classifier takes the images at their own size
        "classifier_accuracy": accuracy,
        "classifier_cached": cached,
        "classifier": str(path),
    }
    return Extractor(CLASSIFIER, str(path), f"clf{Path(path).stem}", info)


def classifier_setup(
    settings: MetricSettings, datamodule: GANDataModule
) -> tuple[GANDataModule, list[int], ClassifierSpec]:
    """(labelled data, the items it is trained and tested on, its spec): the metrics classifier."""
    source = datamodule.labelled_source()
    n = source.num_items()
    limit = int(settings.classifier.get("max_items", 60000))
    index = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].tolist()
    options = {k: v for k, v in settings.classifier.items() if k != "max_items"}
    spec = ClassifierSpec(in_channels=source.data_shape[0], num_classes=source.num_classes, **options)
    return source, index, spec


SELFSUP_OPTIONS = {f.name for f in fields(SelfSupSpec)} - {"in_channels"}


def selfsup_setup(settings: MetricSettings, datamodule: GANDataModule) -> tuple[list[int], SelfSupSpec]:
    """(the items the self-supervised network is trained on, its spec): ``metrics.selfsup.*`` checked, the
    side it works at (``size``: the data's, at most 64 px, unless set) filled in."""
    options = dict(settings.selfsup)
    unknown = sorted(set(options) - SELFSUP_OPTIONS)
    if unknown:
        raise ConfigError(
            f"metrics.selfsup.{unknown[0]}: no such setting; choose from {', '.join(sorted(SELFSUP_OPTIONS))}"
        )
    if options.get("size") is None:
        options["size"] = input_size(datamodule.data_shape[-1])
    for key in ("size", "width", "proj_dim", "steps", "max_items"):
        if key in options and (not isinstance(options[key], int) or options[key] < 1):
            raise ConfigError(f"metrics.selfsup.{key} must be a positive integer, got {options[key]!r}")
    if "batch_size" in options and (not isinstance(options["batch_size"], int) or options["batch_size"] < 2):
        raise ConfigError(
            f"metrics.selfsup.batch_size must be an integer of at least 2 (contrastive pairs), got "
            f"{options['batch_size']!r}"
        )
    if not 0 < float(options.get("crop_scale", 0.5)) <= 1:
        raise ConfigError(f"metrics.selfsup.crop_scale must lie in (0, 1], got {options['crop_scale']}")
    for key in ("temperature", "lr"):
        if key in options and not float(options[key]) > 0:
            raise ConfigError(f"metrics.selfsup.{key} must be positive, got {options[key]}")
    spec = SelfSupSpec(in_channels=datamodule.data_shape[0], **options)
    n = datamodule.num_items()
    index = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed))[: spec.max_items].tolist()
    return index, spec


def selfsup_extractor(
    settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path, device: torch.device | str
) -> Extractor:
    """The self-supervised extractor of ``datamodule``'s images (those the reference set is drawn from),
    trained on first use and cached by data fingerprint + spec."""
    index, spec = selfsup_setup(settings, datamodule)

    def load() -> Tensor:
        chunks = torch.tensor(index).split(4096)
        return torch.cat([resize_uint8(to_uint8(datamodule.items(c.tolist())[0]), spec.size) for c in chunks])

    path, record, cached = cached_selfsup(load, spec, datamodule.fingerprint(), cache_dir, device)
    info = {
        "rgb": False,
        # the network's input side: the images' own (none), or an antialiased bilinear resize to it
        "resize": "none" if spec.size == datamodule.data_shape[-1] else f"bilinear{spec.size}",
        "selfsup": str(path),
        "selfsup_cached": cached,
        "selfsup_top1": float(record["top1"]),
        "selfsup_images": int(record["num_images"]),
    }
    return Extractor(SELFSUP, str(path), f"ssl{path.stem}", info)


def real_holdout(
    settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path, device: torch.device
) -> RealHoldout:
    """The classification accuracy score's real data: the metrics classifier's items split into its
    training and held-out shares, and the accuracy of that classifier (trained on the real share)."""
    source, index, spec = classifier_setup(settings, datamodule)
    images, labels = labelled_images(source, index)
    path, accuracy, _ = cached_classifier(
        lambda: (images, labels), spec, source.fingerprint(), cache_dir, device
    )
    test, train = holdout_split(len(images), spec)
    return RealHoldout(images, labels, train, test, spec, accuracy, weights_sha256(path))


def labelled_images(source: GANDataModule, index: list[int]) -> tuple[Tensor, Tensor]:
    """uint8 images and labels of ``source`` at ``index``."""
    xs, ys = [], []
    for chunk in torch.tensor(index).split(4096):
        x, y = source.items(chunk.tolist())
        xs.append(to_uint8(x))
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def reference_input(
    settings: MetricSettings, datamodule: GANDataModule, extractor: Extractor, cache_dir: str | Path
) -> dict[str, Any]:
    """The real reference set as torch-fidelity's ``input2`` keywords: ``num_samples`` real images
    fixed by the seed, cached under ``<cache_dir>/fidelity`` by data fingerprint + extractor + count.
    Training and ``ganforge-eval`` both read it, so they share one cache entry."""
    order = reference_order(settings, datamodule)
    return {
        "input2": RealImages(datamodule, order, extractor.info["rgb"]),
        "input2_cache_name": reference_name(settings, datamodule, extractor, len(order)),
        "cache_root": str(Path(cache_dir).expanduser() / "fidelity"),
    }


def reference_order(settings: MetricSettings, datamodule: GANDataModule) -> list[int]:
    """The items of the real reference set: ``metrics.num_samples`` of the training data (all when
    fewer), in an order fixed by ``metrics.seed``."""
    n_total = datamodule.num_items()
    n = min(settings.num_samples, n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(settings.seed))[:n].tolist()


def reference_labels(settings: MetricSettings, datamodule: GANDataModule) -> Tensor:
    """The class labels of the reference set, in its order (intra-FID compares class by class)."""
    order = torch.tensor(reference_order(settings, datamodule))
    return torch.cat([datamodule.items(chunk.tolist())[1] for chunk in order.split(4096)]).long()


def extractor_protocol(extractor: Extractor, layer: str) -> dict[str, Any]:
    """The extractor's part of a metric's protocol: its kind, torch-fidelity name, weights hash, layer
    and resize."""
    kinds = {CLASSIFIER: "classifier", SELFSUP: "selfsup"}
    return {
        "extractor": kinds.get(extractor.name, "inception"),
        "feature_extractor": extractor.name,
        "weights_sha256": weights_sha256(extractor.weights_path),
        "layer": layer,
        "resize": extractor.info["resize"],
    }


def protocol_tag(metric: str, protocol: Mapping[str, Any]) -> str:
    """A metric's protocol in one line, e.g. ``fid[classifier:ab12cd34|n=1797|ref=train:1797|resize=none]``:
    values with different tags were measured differently and do not compare."""
    ref = protocol["reference"]
    tag = (
        f"{metric}[{protocol['extractor']}:{protocol['weights_sha256'][:8]}|n={protocol['num_generated']}"
        f"|ref={ref['split']}:{ref['count']}|resize={protocol['resize']}"
    )
    if protocol.get("truncation") is not None:  # z: the latents truncated; w: toward StyleGAN's w_avg
        space = "w:" if protocol.get("truncation_space") == "w" else ""
        tag += f"|truncation={space}{protocol['truncation']:g}"
    return tag + "]"


def reference_features(
    settings: MetricSettings,
    datamodule: GANDataModule,
    extractor: Extractor,
    module: torch.nn.Module,
    cache_dir: str | Path,
    device: torch.device,
) -> tuple[dict[str, Tensor], bool]:
    """Features of the reference set from ``module`` (the built extractor): read from the cache, or
    computed and cached. Returns (features, from cache)."""
    reference = reference_input(settings, datamodule, extractor, cache_dir)
    root, name = Path(reference["cache_root"]), reference["input2_cache_name"]
    layers = module.get_requested_features_list()
    cached = all((root / f"{name}-{extractor.name}-features-{layer}.pt").is_file() for layer in layers)
    feats = extract_featuresdict_from_input_id_cached(
        2,
        module,
        **reference,
        batch_size=settings.batch_size,
        cuda=device.type == "cuda",
        verbose=False,
        save_cpu_ram=True,
    )
    return feats, cached


def reference_name(settings: MetricSettings, datamodule: GANDataModule, extractor: Extractor, n: int) -> str:
    return f"ganforge-{datamodule.fingerprint()}-{extractor.tag}-n{n}-s{settings.seed}"


def mode_samples(settings: MetricSettings, datamodule: GANDataModule) -> int:
    """Generated samples the mode metrics count: ``metrics.modes_num_samples``, else the count of
    the mode-collapse literature for the data (VEEGAN, PacGAN): 2,500 on 2D mixtures, 26,000 on
    stacked digits, where 2,500 uniform draws of the 1,000 modes cover only about 918 of them."""
    if settings.modes_num_samples is not None:
        return int(settings.modes_num_samples)
    return MIXTURE_MODE_SAMPLES if is_mixture(datamodule) else STACKED_MODE_SAMPLES


def block(n: int, rank: int, world: int) -> tuple[int, int]:
    """[begin, end) of ``rank``'s contiguous share of ``n`` items; the first ``n % world`` ranks hold
    one more."""
    size, extra = divmod(n, world)
    begin = rank * size + min(rank, extra)
    return begin, begin + size + (1 if rank < extra else 0)


class PrecisionRecall(FakeFeatures):
    """Improved precision and recall (Kynkäänniemi et al. 2019) of generated features against a
    fixed real set, computed by torch-fidelity; generated features are gathered across ranks."""

    def score(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        out = prc_features_to_metric(
            fake.float(),
            real.float(),
            prc_neighborhood=self.neighborhood,
            prc_batch_size=10000,
            save_cpu_ram=False,
            verbose=False,
        )
        return {"precision": out["precision"], "recall": out["recall"]}


class MetricSuite:
    """Measures a generator during training: prepare once, then :meth:`measure` at each evaluation.

    Every rank generates its share of the samples from a fixed seed; the torchmetrics states are
    reduced across ranks when computed, so every rank gets the same values.
    """

    def __init__(self, settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path) -> None:
        if settings.reference not in ("train", "all"):
            raise ConfigError(f"metrics.reference={settings.reference}: choose train or all")
        if settings.reference == "all":  # limited data: measured against the distribution it came from
            datamodule = Population(datamodule)
        self.settings = settings
        self.datamodule = datamodule
        self.cache_dir = cache_dir
        self.names = check(settings, datamodule)
        self.metrics: dict[str, Metric] = {}
        self.extractor_module: torch.nn.Module | None = None
        self.layers: list[str] = []
        self.rgb = False
        self.layer_of: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self.n_fake = 0  # generated samples for the image metrics (set by prepare: the real count)
        self.n_modes = 0  # generated samples for the mode metrics
        self.ref_labels: Tensor | None = None  # intra-FID: the reference set's labels, asked of G in order
        self.holdout: RealHoldout | None = None  # the classification accuracy score's real data
        self.extractor: Extractor | None = None
        self.truncation: float | None = None  # ψ of the latents (ganforge-eval truncation=); None: off
        self.truncation_space = "z"  # where ψ applies: z (the latents drawn here) or w (inside G: StyleGAN)

    @property
    def keys(self) -> set[str]:
        """The ``val/*`` keys a measurement returns (what ``metrics.monitor`` may name)."""
        outputs = {"prc": ("precision", "recall"), "modes": ("modes", "hq_frac", "reverse_kl")}
        outputs["dc"] = ("density", "coverage")
        outputs["cas"] = ("cas", "cas_real")
        keys = {f"val/{k}" for name in self.names for k in outputs.get(name, (name,))}
        return keys if is_mixture(self.datamodule) else keys - {"val/hq_frac"}

    @property
    def monitor(self) -> str:
        """The metric that picks ``best.ckpt``: ``metrics.monitor``, else FID, intra-FID, KID, modes."""
        if self.settings.monitor:
            return self.settings.monitor
        for name in ("fid", "intra_fid", "kid"):
            if name in self.names:
                return f"val/{name}"
        return "val/modes"

    def prepare(self, device: torch.device, rank: int = 0, world: int = 1) -> None:
        """Build the extractor and the metric objects, and load this rank's share of the real features."""
        s, dm = self.settings, self.datamodule
        self.n_modes = mode_samples(s, dm) if "modes" in self.names else 0
        if is_mixture(dm):
            self.metrics["modes"] = ModeCoverage(len(dm.centers)).to(device)
            self.info = {"n_modes": self.n_modes}
            return
        if "cas" in self.names:  # trains (or loads) the metrics classifier on the real training share
            self.holdout = real_holdout(s, dm, self.cache_dir, device)
        if not any(n in IMAGE_METRICS or n in ("intra_fid", "modes") for n in self.names):
            self.info = {"protocol": self.protocol(), "protocol_tags": self.protocol_tags()}
            return
        extractor = self.extractor = build_extractor(s, dm, self.cache_dir, device)
        self.layer_of = {
            **extractor.layers,
            "is": extractor.layers["isc"],
            "dc": extractor.layers["prc"],  # the same features as precision/recall
            "intra_fid": extractor.layers["fid"],
        }
        needed = {self.layer_of[n] for n in self.names if n in (*IMAGE_METRICS, "intra_fid")}
        if "modes" in self.names:
            needed.add("logits")  # stacked digits: the classified digit of every channel
        layers = sorted(needed)
        module = extractor.build(layers, device)
        self.extractor_module = module
        self.layers = layers
        real, cached = reference_features(s, dm, extractor, module, self.cache_dir, device)
        n_real = len(next(iter(real.values())))
        # as many generated samples as real ones: a reference set smaller than metrics.num_samples
        # (the 1,797 digits) sets both, since k-NN precision/recall and FID's bias depend on both sizes
        self.n_fake = n_real if any(n in IMAGE_METRICS for n in self.names) else 0
        if "intra_fid" in self.names:  # as many samples of each class as the reference set holds
            self.ref_labels = reference_labels(s, dm)
        self.info = {
            **extractor.info,
            "extractor": extractor.tag,
            "reference_cached": cached,
            "reference_samples": n_real,
            "n_real": n_real,
            "n_fake": self.n_fake,
            **({"n_modes": self.n_modes} if self.n_modes else {}),
        }
        lo, hi = block(n_real, rank, world)  # contiguous: the gathered states keep the reference's order
        share = {k: v[lo:hi].to(device) for k, v in real.items()}
        width = {layer: feats.shape[1] for layer, feats in real.items()}
        rgb = self.rgb = extractor.info["rgb"]

        def layer(metric: str) -> FeatureLayer:
            name = self.layer_of[metric]
            return FeatureLayer(module, layers.index(name), rgb, width[name])

        with warnings.catch_warnings():  # "will save all extracted features": bounded by num_samples here
            warnings.filterwarnings("ignore", message=".*save all extracted features.*")
            self._build_metrics(share, real, layer, n_real, device)
        self.info.update(protocol=self.protocol(), protocol_tags=self.protocol_tags())

    def protocol(self) -> dict[str, Any]:
        """How the metrics against the real reference set are measured: the extractor (and the SHA-256
        of its weights), the feature layer, generated samples, reference set, resize, truncation ψ; and
        for the classification accuracy score its classifier and real data. Values measured under
        different protocols do not compare."""
        s, out = self.settings, {}
        if self.extractor is not None and any(n in REFERENCE_METRICS for n in self.names):
            n_real = int(self.info.get("n_real", 0))
            out.update(
                **extractor_protocol(self.extractor, self.layer_of["fid"]),
                num_generated=self.n_fake or n_real,
                reference={"split": s.reference, "count": n_real, "seed": s.seed},
                truncation=self.truncation,
                **({"truncation_space": "w"} if self.truncation_space == "w" else {}),
            )
        if self.holdout is not None:
            h = self.holdout
            out["cas"] = {
                "classifier": h.spec.digest(),
                "real_weights_sha256": h.weights_sha256,
                "num_generated": len(h.train),
                "test": {"split": "train-holdout", "count": len(h.test)},
                "steps": h.spec.steps,
                "truncation": self.truncation,
            }
        return out

    def protocol_tags(self) -> dict[str, str]:
        """One tag per metric (``val/fid`` → ``fid[classifier:ab12cd34|n=1797|ref=train:1797|resize=none]``),
        for the W&B summary and the JSON files."""
        protocol, tags = self.protocol(), {}
        if "extractor" in protocol:
            for name in self.names:
                if name in REFERENCE_METRICS:
                    tags[f"val/{name}"] = protocol_tag(name, protocol)
        if "cas" in protocol:
            cas = protocol["cas"]
            tag = f"cas[classifier:{cas['classifier'][:8]}|n={cas['num_generated']}"
            tag += f"|test=holdout:{cas['test']['count']}"
            if cas["truncation"] is not None:
                space = "w:" if self.truncation_space == "w" else ""
                tag += f"|truncation={space}{cas['truncation']:g}"
            tags["val/cas"] = tag + "]"
        return tags

    def _build_metrics(
        self,
        share: dict[str, Tensor],
        real: dict[str, Tensor],
        layer: Callable,
        n_real: int,
        device: torch.device,
    ) -> None:
        s = self.settings
        if "fid" in self.names:
            fid = FrechetInceptionDistance(feature=layer("fid"), reset_real_features=False).to(device)
            fid.update(share[self.layer_of["fid"]], real=True)
            self.metrics["fid"] = fid
        if "kid" in self.names:
            size = min(s.kid_subset_size, self.n_fake, n_real)
            kid = KernelInceptionDistance(
                feature=layer("kid"),
                subsets=s.kid_subsets,
                subset_size=size,
                reset_real_features=False,
            ).to(device)
            kid.update(share[self.layer_of["kid"]].float(), real=True)
            self.metrics["kid"] = kid
        if "is" in self.names:
            self.metrics["is"] = InceptionScore(feature=layer("is"), splits=s.isc_splits).to(device)
        if "prc" in self.names:
            self.metrics["prc"] = PrecisionRecall(real[self.layer_of["prc"]], s.prc_neighborhood).to(device)
        if "dc" in self.names:
            self.metrics["dc"] = DensityCoverage(real[self.layer_of["dc"]], s.dc_neighborhood).to(device)
        if "intra_fid" in self.names:
            assert self.ref_labels is not None
            num_classes = self.datamodule.labelled_source().num_classes
            intra = IntraFID(real[self.layer_of["intra_fid"]], self.ref_labels, num_classes)
            self.metrics["intra_fid"] = intra.to(device)
        if "modes" in self.names:
            self.metrics["modes"] = ModeCoverage(self.datamodule.num_classes).to(device)

    def measure_module(
        self, module: Any, rank: int = 0, world: int = 1, final: bool | None = None
    ) -> dict[str, float]:
        """``val/*`` of a GANModule's generator (its EMA when on), this rank's share of the samples.

        ``final``: measure the classification accuracy score too, which trains a classifier (seconds on
        the CPU for digits): ganforge-eval always does, training only at its last step (None: whether
        the module reached ``train.steps``)."""
        conditional = bool(module.task.num_classes)
        check_conditional(self.names, conditional, self.datamodule)
        if final is None:
            final = module.g_step >= module.total_steps
        labels = module.task.sample_labels if conditional else None
        return self.measure(module.sample, module.task.z_dim, module.device, rank, world, labels, final)

    @torch.no_grad()
    def measure(
        self,
        sample: Callable[..., Tensor],
        z_dim: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        labels: Callable[[int, torch.Generator], Tensor | None] | None = None,
        final: bool = True,
    ) -> dict[str, float]:
        """Generate this rank's samples from fixed seeds, update, reduce and return ``val/*`` values.

        The samples of an evaluation are one fixed sequence (see ``LATENT_CHUNK``) split into
        contiguous blocks, one per rank: training under DDP, training on one process and
        ``ganforge-eval`` measure the same samples. Conditional generators get labels from
        ``labels(n, generator)`` (the module's ``sample_labels``: the training data's label
        distribution), fixed by the seed too. The random draws of the computation (KID subsets, IS
        splits) come from a seed without the rank, so every rank computes the same values. The global
        RNG is left untouched, so measuring does not change the training run.

        Intra-FID asks G for the reference set's labels, in its order, with the latents of the same
        sequence; the classification accuracy score (``final`` only) is computed whole on every rank.
        """
        if labels is None and any(n in CONDITIONAL_METRICS for n in self.names):
            check_conditional(self.names, False, self.datamodule)
        s = self.settings
        img, modes = block(self.n_fake, rank, world), block(self.n_modes, rank, world)
        spans = [b for b in (img, modes) if b[1] > b[0]]
        lo, hi = min((b[0] for b in spans), default=0), max((b[1] for b in spans), default=0)
        z_psi = self.truncation if self.truncation_space == "z" else None  # ψ in W: G applies it
        inputs = LatentSequence(s.seed, z_dim, labels, z_psi)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(mix_seed(s.seed, 2))
            for start in range(lo, hi, s.batch_size):
                end = min(start + s.batch_size, hi)
                z, y = inputs.rows(start, end)
                fake = sample(z.to(device)) if y is None else sample(z.to(device), y.to(device))
                self._update(fake, start, img, modes)
            if self.ref_labels is not None:
                self._update_intra(sample, inputs, device, *block(len(self.ref_labels), rank, world))
            torch.manual_seed(mix_seed(s.seed, 2))  # rank-independent: KID subsets, IS splits
            values = self._compute()
            for metric in self.metrics.values():
                metric.reset()
            if self.holdout is not None and final:
                values["cas"] = classification_accuracy_score(
                    sample, z_dim, self.holdout, mix_seed(s.seed, 13), s.batch_size, device, z_psi
                )
                values["cas_real"] = self.holdout.real_accuracy
        self.info.update(protocol=self.protocol(), protocol_tags=self.protocol_tags())  # ψ set late
        return {f"val/{k}": v for k, v in values.items()}

    def _update_intra(
        self, sample: Callable[..., Tensor], inputs: LatentSequence, device: torch.device, lo: int, hi: int
    ) -> None:
        """Intra-FID's samples ``lo .. hi - 1``: the latents of the sequence, the reference labels."""
        assert self.ref_labels is not None and self.extractor_module is not None
        index = self.layers.index(self.layer_of["intra_fid"])
        for start in range(lo, hi, self.settings.batch_size):
            end = min(start + self.settings.batch_size, hi)
            z, _ = inputs.rows(start, end)
            y = self.ref_labels[start:end].to(device)
            feats = self.extractor_module(extractor_input(sample(z.to(device), y), self.rgb))[index]
            self.metrics["intra_fid"].update(feats, y)

    def _update(self, fake: Tensor, start: int, img: tuple[int, int], modes: tuple[int, int]) -> None:
        """Feed samples ``start .. start + len(fake)`` of the sequence to the metrics whose block
        (``img``, ``modes``: this rank's [begin, end)) holds them."""
        dm = self.datamodule

        def rows(span: tuple[int, int]) -> slice:
            return slice(max(span[0] - start, 0), max(min(span[1] - start, len(fake)), 0))

        if is_mixture(dm):
            index, hq = assign_modes(fake[rows(modes)], dm.centers, dm.std)
            self.metrics["modes"].update(index, hq)
            return
        feats = self.extractor_module(extractor_input(fake, self.rgb))
        feats = dict(zip(self.layers, feats, strict=True))
        mine = rows(img)
        if mine.stop > mine.start:
            if "fid" in self.metrics:
                self.metrics["fid"].update(feats[self.layer_of["fid"]][mine], real=False)
            if "kid" in self.metrics:  # float32 kernels: 100 subsets of 1000² in float64 cost seconds
                self.metrics["kid"].update(feats[self.layer_of["kid"]][mine].float(), real=False)
            for name in ("is", "prc", "dc"):
                if name in self.metrics:
                    self.metrics[name].update(feats[self.layer_of[name]][mine])
        mine = rows(modes)
        if "modes" in self.metrics and mine.stop > mine.start:
            logits = feats["logits"][mine]
            k = dm.data_shape[0] // dm.labelled_source().data_shape[0]
            self.metrics["modes"].update(stacked_modes(logits.reshape(len(logits), k, -1)))

    def _compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, metric in self.metrics.items():
            value = metric.compute()
            if name == "intra_fid":  # the mean over the classes; the per-class values go to info
                out[name] = float(value.nanmean())
                self.info["intra_fid_per_class"] = {str(c): float(v) for c, v in enumerate(value.tolist())}
            elif name in ("kid", "is"):
                out[name] = float(value[0])
            elif isinstance(value, dict):
                out.update(value)
            else:
                out[name] = float(value)
        if "hq_frac" in out and not is_mixture(self.datamodule):
            del out["hq_frac"]  # every classified sample counts: the share is always 1
        return out
