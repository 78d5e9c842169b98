"""Classification networks with one interface for CAM / Grad-CAM and deep features.

:func:`build_network` makes any of :data:`ARCHS`. Every network has

* ``forward(x) -> logits`` of shape ``(N, n_classes)`` for ``x`` of shape ``(N, C, H, W)``, or
  ``(N, C, D, H, W)`` for a network built with ``spatial_dims=3``;
* ``embed(x) -> features`` of shape ``(N, embed_dim)``: the penultimate features, after global
  average pooling (what deep-learning radiomics takes, seed 002);
* ``target_layer``: the name (for ``model.get_submodule(name)``) of the last convolutional
  feature map, ``(N, embed_dim, h, w)`` (``(N, embed_dim, d, h, w)`` in 3D), whose global
  average is ``embed(x)``. The classifier is one linear layer on that average, so class
  activation maps (CAM, Zhou et al. 2016: the classifier weights times this map) and Grad-CAM
  both use this layer;
* ``config``: what :func:`build_network` needs to make the same network again (stored in
  checkpoints).

Architectures
-------------
``densenet3block`` (seed 000, own code; see :class:`DenseNet3Block` for the reconstruction),
``densenet121``, ``resnet50`` and ``resnet101`` (MONAI, ImageNet layout: 7x7 stride-2 stem),
``vgg19`` (own code, MONAI has none: VGG-19 with batch norm and a global-average-pool head),
``vit`` (MONAI ViT encoder; classified from the average of its patch tokens, which are laid
out as a map for CAM).

2D and 3D: every network is made for ``spatial_dims`` 2 or 3 from one class, its layers looked
up in MONAI's factories (``Conv[Conv.CONV, spatial_dims]``, ``Norm``, ``Pool``, ``Dropout``) or
passed to MONAI's own ``spatial_dims``. A 3D network takes cubes of side ``image_size``.

Pretrained weights are read only from a file the user gives (``weights=Path``); nothing is
downloaded. A her2dlr checkpoint of another architecture, input size, channel count or number of
spatial dimensions is refused.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from monai.networks.layers.factories import Conv, Dropout, Norm, Pool
from monai.networks.nets import DenseNet121, ResNet
from torch import Tensor, nn

from her2dlr.errors import InputError, nearest

__all__ = [
    "ARCHS",
    "CHECKPOINT_FORMAT",
    "CLINICAL_ARCHS",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_VOLUME_SIZE",
    "SPATIAL_DIMS",
    "VGG19",
    "CamNetwork",
    "DenseNet3Block",
    "DenseNet121Net",
    "ResNetNet",
    "ViTNet",
    "build_network",
    "check_arch",
    "check_spatial_dims",
    "default_image_size",
    "list_archs",
    "load_weights",
]

CHECKPOINT_FORMAT = "her2dlr-deep-checkpoint"
#: Allowed values of ``spatial_dims``: 2 (images ``(N, C, H, W)``) or 3 (volumes ``(N, C, D, H, W)``).
SPATIAL_DIMS = (2, 3)


def check_spatial_dims(spatial_dims: Any, owner: str = "build_network") -> int:
    """Return ``spatial_dims`` when it is 2 or 3, else raise an error naming ``owner``."""
    if isinstance(spatial_dims, bool) or spatial_dims not in SPATIAL_DIMS:
        raise InputError(f"The 'spatial_dims' parameter of {owner} must be 2 (images) or 3 (volumes). "
                         f"Got {spatial_dims!r} instead.")
    return int(spatial_dims)


@runtime_checkable
class CamNetwork(Protocol):
    """What every network of :func:`build_network` offers."""

    target_layer: str
    embed_dim: int
    config: dict[str, Any]

    def embed(self, x: Tensor) -> Tensor: ...

    def __call__(self, x: Tensor) -> Tensor: ...


# --------------------------------------------------------------------------- seed 000
class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck) then BN-ReLU-Conv3x3 giving ``growth_rate`` new maps."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, dropout: float, spatial_dims: int = 2
                 ) -> None:
        super().__init__()
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        width = bn_size * growth_rate
        self.norm1 = norm(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = norm(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv(width, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.dropout(self.conv2(self.relu2(self.norm2(out))))
        return torch.cat([x, out], dim=1)  # x_k = H_k([x_0, ..., x_{k-1}])


class _DenseBlock(nn.Sequential):
    def __init__(self, n_layers: int, in_channels: int, growth_rate: int, bn_size: int, dropout: float,
                 spatial_dims: int = 2) -> None:
        super().__init__(OrderedDict(
            (f"layer{i + 1}", _DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, dropout, spatial_dims))
            for i in range(n_layers)
        ))


class _Transition(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 2) -> None:
        super().__init__(OrderedDict([
            ("norm", Norm[Norm.BATCH, spatial_dims](in_channels)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=False)),
            ("pool", Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)),
        ]))


class DenseNet3Block(nn.Module):
    """The three-dense-block network of seed 000 (Xu et al., Front Oncol 2022), reconstructed.

    The paper states: input 64 x 64 rectangular ROIs; three dense blocks of two types, type 1
    with 4 layers and type 2 with 32 layers, every layer connected to all later layers of its
    block (``x_k = H_k([x_0, ..., x_{k-1}])``); class-weighted cross-entropy; CAM on the last
    convolutional layer; deep features from its global average pool. The exact layout
    (figure 1, supplementary table 1) is not in the text, so this reconstruction follows the
    DenseNet-BC design the paper cites (Huang et al. 2017):

    * stem: 3x3 convolution with stride 2 (``2 * growth_rate`` maps), BN, ReLU, 2x2 max-pool
      (64 -> 16, the /4 stem of the ImageNet DenseNets);
    * dense block 1: type 1, 4 layers, at 16 x 16; transition (BN-ReLU-1x1 conv halving the
      maps, 2x2 average pool);
    * dense block 2: type 1, 4 layers, at 8 x 8; transition;
    * dense block 3: type 2, 32 layers, at 4 x 4;
    * BN, ReLU (the CAM target, ``features.relu_final``: 426 maps of 4 x 4 for a 64 x 64
      input), global average pool, dropout, linear.

    A "layer" is the DenseNet-B composite BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) with growth
    rate k = 12. The two short blocks work at the higher resolutions (edges, speckle); the deep
    block works where it is cheap and builds the abstract features the CAM shows. The order of
    the blocks, the growth rate and the stem are choices of this reconstruction, all arguments:
    ``stem_stride=1`` keeps the blocks at 32, 16 and 8 pixels (finer CAM, about 4x the compute,
    too slow to cross-validate on two CPU cores), ``stem_pool=False`` halves the reduction again.
    With ``spatial_dims=3`` every layer is its 3D counterpart (the paper is 2D).

    Parameters
    ----------
    in_channels : int, default=1
    n_classes : int, default=2
    block_layers : sequence of int, default=(4, 4, 32)
    growth_rate : int, default=12
    bn_size : int, default=4
        Bottleneck width in multiples of ``growth_rate``.
    compression : float, default=0.5
        Fraction of maps kept by a transition.
    dropout : float, default=0.0
        Dropout after each layer's 3x3 convolution.
    head_dropout : float, default=0.2
        Dropout before the classifier.
    stem_stride : {1, 2}, default=2
        Stride of the stem convolution.
    stem_pool : bool, default=True
        2x2 max-pool after the stem.
    spatial_dims : {2, 3}, default=2
        Images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, *, block_layers: Sequence[int] = (4, 4, 32),
                 growth_rate: int = 12, bn_size: int = 4, compression: float = 0.5, dropout: float = 0.0,
                 head_dropout: float = 0.2, stem_stride: int = 2, stem_pool: bool = True,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        dims = check_spatial_dims(spatial_dims, "DenseNet3Block")
        conv, norm = Conv[Conv.CONV, dims], Norm[Norm.BATCH, dims]
        if not block_layers or any(int(n) < 1 for n in block_layers):
            raise InputError(f"block_layers must be positive layer counts; got {list(block_layers)}.")
        if not 0.0 < compression <= 1.0:
            raise InputError(f"compression must be in (0, 1]; got {compression}.")
        if stem_stride not in (1, 2):
            raise InputError(f"stem_stride must be 1 or 2; got {stem_stride!r}.")
        channels = 2 * growth_rate
        layers: list[tuple[str, nn.Module]] = [
            ("conv0", conv(in_channels, channels, kernel_size=3, stride=stem_stride, padding=1, bias=False)),
            ("norm0", norm(channels)),
            ("relu0", nn.ReLU(inplace=True)),
        ]
        if stem_pool:
            layers.append(("pool0", Pool[Pool.MAX, dims](kernel_size=2, stride=2)))
        for i, n in enumerate(block_layers):
            layers.append((f"denseblock{i + 1}", _DenseBlock(int(n), channels, growth_rate, bn_size, dropout, dims)))
            channels += int(n) * growth_rate
            if i < len(block_layers) - 1:
                out = max(int(channels * compression), 1)
                layers.append((f"transition{i + 1}", _Transition(channels, out, dims)))
                channels = out
        layers += [("norm_final", norm(channels)), ("relu_final", nn.ReLU(inplace=False))]
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = Pool[Pool.ADAPTIVEAVG, dims](1)
        self.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, n_classes)
        self.target_layer = "features.relu_final"
        self.embed_dim = channels
        self.config: dict[str, Any] = {}
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, norm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features, shape (N, embed_dim)."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (N, n_classes)."""
        return self.classifier(self.dropout(self.embed(x)))


# --------------------------------------------------------------------------- VGG-19
VGG19_LAYOUT = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


class VGG19(nn.Module):
    """VGG-19 (Simonyan & Zisserman 2014, configuration E) with batch norm and a GAP head.

    Sixteen 3x3 convolutions in five stages, each stage ending with a 2x2 max-pool. The three
    fully connected layers of the original (120 M parameters, made for 224 x 224 ImageNet
    images) are replaced by global average pooling, dropout and one linear layer, which makes
    the network CAM-ready and usable at any input size >= 32 (>= 16 for volumes).
    Written here because MONAI has no VGG.

    Parameters
    ----------
    in_channels : int, default=1
    n_classes : int, default=2
    head_dropout : float, default=0.5
    spatial_dims : {2, 3}, default=2
        3x3 or 3x3x3 convolutions.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, *, head_dropout: float = 0.5,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        dims = check_spatial_dims(spatial_dims, "VGG19")
        conv, norm = Conv[Conv.CONV, dims], Norm[Norm.BATCH, dims]
        layers: list[tuple[str, nn.Module]] = []
        channels = in_channels
        last_stage = len(VGG19_LAYOUT)
        for s, widths in enumerate(VGG19_LAYOUT, start=1):
            for j, width in enumerate(widths, start=1):
                final = s == last_stage and j == len(widths)
                layers += [
                    (f"conv{s}_{j}", conv(channels, width, kernel_size=3, padding=1, bias=False)),
                    (f"bn{s}_{j}", norm(width)),
                    (f"relu{s}_{j}", nn.ReLU(inplace=not final)),
                ]
                channels = width
            if s < last_stage:
                layers.append((f"pool{s}", Pool[Pool.MAX, dims](kernel_size=2, stride=2)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = Pool[Pool.ADAPTIVEAVG, dims](1)
        self.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, n_classes)
        self.target_layer = f"features.relu{last_stage}_{len(VGG19_LAYOUT[-1])}"
        self.embed_dim = channels
        self.config: dict[str, Any] = {}
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features, shape (N, 512)."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (N, n_classes)."""
        return self.classifier(self.dropout(self.embed(x)))


# --------------------------------------------------------------------------- MONAI networks
class DenseNet121Net(DenseNet121):
    """MONAI DenseNet-121 (2D or 3D) with ``embed`` and ``target_layer`` (``class_layers.relu``).

    Parameter names are MONAI's, so MONAI-format DenseNet-121 weights load as they are.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, *, dropout: float = 0.0,
                 spatial_dims: int = 2) -> None:
        super().__init__(spatial_dims=check_spatial_dims(spatial_dims, "DenseNet121Net"), in_channels=in_channels,
                         out_channels=n_classes,
                         dropout_prob=dropout, pretrained=False)
        self.class_layers.relu = nn.ReLU(inplace=False)  # hooks need the map kept
        self.target_layer = "class_layers.relu"
        self.embed_dim = int(self.class_layers.out.in_features)
        self.config: dict[str, Any] = {}

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features, shape (N, 1024)."""
        h = self.class_layers.relu(self.features(x))
        return self.class_layers.flatten(self.class_layers.pool(h))

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (N, n_classes)."""
        return self.class_layers.out(self.embed(x))


RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class ResNetNet(ResNet):
    """MONAI ResNet-50 / -101 (2D or 3D, bottleneck blocks, ImageNet stem) with ``embed`` and ``target_layer``.

    The stem is the ImageNet one (7x7 convolution with stride 2, max-pool) and the shortcut
    projections have no bias, so converted ImageNet weights fit by shape.

    Parameters
    ----------
    depth : {50, 101}
    in_channels, n_classes : int
    spatial_dims : {2, 3}, default=2
    """

    def __init__(self, depth: int = 50, in_channels: int = 1, n_classes: int = 2, *, spatial_dims: int = 2) -> None:
        if depth not in RESNET_LAYERS:
            raise InputError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}; got {depth!r}.")
        super().__init__(block="bottleneck", layers=list(RESNET_LAYERS[depth]), block_inplanes=[64, 128, 256, 512],
                         spatial_dims=check_spatial_dims(spatial_dims, "ResNetNet"), n_input_channels=in_channels,
                         conv1_t_size=7, conv1_t_stride=2,
                         num_classes=n_classes, bias_downsample=False)
        self.target_layer = "layer4"
        self.embed_dim = int(self.fc.in_features)
        self.config: dict[str, Any] = {}

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features, shape (N, 2048)."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (N, n_classes)."""
        return self.fc(self.embed(x))


class _TokenMap(nn.Module):
    """Patch tokens ``(N, h * w, D)`` laid out as a feature map ``(N, D, h, w)`` (``(N, D, d, h, w)`` in 3D)."""

    def __init__(self, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, tokens: Tensor) -> Tensor:
        n, _, dim = tokens.shape
        return tokens.transpose(1, 2).reshape(n, dim, *self.grid)


class ViTNet(nn.Module):
    """MONAI Vision Transformer encoder classified from the mean of its patch tokens.

    The encoder (patch embedding, transformer blocks, final layer norm) is MONAI's ``ViT``;
    instead of a class token, the patch tokens are laid out as a ``(D, h, w)`` map
    (``(D, d, h, w)`` in 3D; ``token_map``, the CAM target) and averaged, and one linear layer classifies the average:
    the same head as the CNNs, so ``embed`` and CAM mean the same thing for every network.
    Default size: ViT-B/16. Needs the ``einops`` package (a MONAI dependency for attention).

    Parameters
    ----------
    in_channels, n_classes : int
    image_size : int, default=224
        Must be a multiple of ``patch_size``.
    patch_size : int, default=16
    hidden_size, mlp_dim, num_layers, num_heads : int
        Encoder size (768, 3072, 12, 12).
    dropout : float, default=0.0
    spatial_dims : {2, 3}, default=2
        Square patches of images or cubic patches of volumes.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, *, image_size: int = 224, patch_size: int = 16,
                 hidden_size: int = 768, mlp_dim: int = 3072, num_layers: int = 12, num_heads: int = 12,
                 dropout: float = 0.0, spatial_dims: int = 2) -> None:
        super().__init__()
        dims = check_spatial_dims(spatial_dims, "ViTNet")
        try:
            import einops  # noqa: F401
        except ImportError:
            raise InputError("The 'vit' network needs the einops package: pip install einops.") from None
        from monai.networks.nets import ViT

        if image_size % patch_size:
            raise InputError(f"vit: image_size {image_size} must be a multiple of patch_size {patch_size}.")
        if hidden_size % num_heads:
            raise InputError(f"vit: hidden_size {hidden_size} must be a multiple of num_heads {num_heads}.")
        self.encoder = ViT(in_channels=in_channels, img_size=image_size, patch_size=patch_size,
                           hidden_size=hidden_size, mlp_dim=mlp_dim, num_layers=num_layers, num_heads=num_heads,
                           proj_type="conv", classification=False, dropout_rate=dropout, spatial_dims=dims)
        self.token_map = _TokenMap((image_size // patch_size,) * dims)
        self.pool = Pool[Pool.ADAPTIVEAVG, dims](1)
        self.classifier = nn.Linear(hidden_size, n_classes)
        self.target_layer = "token_map"
        self.embed_dim = hidden_size
        self.config: dict[str, Any] = {}

    def embed(self, x: Tensor) -> Tensor:
        """Mean patch token, shape (N, hidden_size)."""
        tokens, _ = self.encoder(x)
        return torch.flatten(self.pool(self.token_map(tokens)), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (N, n_classes)."""
        return self.classifier(self.embed(x))


def _mm_resnet_options(self: Any, widths: tuple[int, ...] = (16, 32, 64, 128), blocks: int = 1,
                       multi_stage: bool = True, multi_scale: bool = True, proj_dim: int = 32,
                       dropout: float = 0.2, n_clinical: int = 0) -> None:
    """The options of ``mm_resnet`` in the deep stage: MMResNet's (``n_clinical`` is set by the trainer
    from ``clinical_columns``)."""


def _mm_resnet(in_channels: int, n_classes: int, spatial_dims: int, **options: Any) -> nn.Module:
    from her2dlr.deep.deeptepp import MMResNet

    if "widths" in options:
        options["widths"] = tuple(options["widths"])
    return MMResNet(in_channels, n_classes, spatial_dims=spatial_dims, **options)


# --------------------------------------------------------------------------- registry
class _Entry(NamedTuple):
    make: Callable[..., nn.Module]  # (in_channels, n_classes, image_size, spatial_dims, **options)
    signature: Callable[..., Any]  # its keyword arguments are the allowed options
    min_size: int  # smallest image side
    min_size_3d: int  # smallest volume side (3D crops are small: memory grows with the cube)
    description: str


_REGISTRY: dict[str, _Entry] = {
    "densenet3block": _Entry(lambda c, k, s, d, **o: DenseNet3Block(c, k, spatial_dims=d, **o),
                             DenseNet3Block.__init__, 16, 16, "three dense blocks (4, 4, 32 layers), seed 000, 64x64"),
    "densenet121": _Entry(lambda c, k, s, d, **o: DenseNet121Net(c, k, spatial_dims=d, **o),
                          DenseNet121Net.__init__, 32, 32, "MONAI DenseNet-121"),
    "resnet50": _Entry(lambda c, k, s, d, **o: ResNetNet(50, c, k, spatial_dims=d, **o), lambda self: None, 32, 16,
                       "MONAI ResNet-50"),
    "resnet101": _Entry(lambda c, k, s, d, **o: ResNetNet(101, c, k, spatial_dims=d, **o), lambda self: None, 32, 16,
                        "MONAI ResNet-101 (seed 002)"),
    "vgg19": _Entry(lambda c, k, s, d, **o: VGG19(c, k, spatial_dims=d, **o), VGG19.__init__, 32, 16,
                    "VGG-19 with batch norm, GAP head"),
    "vit": _Entry(lambda c, k, s, d, **o: ViTNet(c, k, image_size=s, spatial_dims=d, **o), ViTNet.__init__, 16, 16,
                  "MONAI ViT-B/16 encoder, mean-token head"),
    "mm_resnet": _Entry(lambda c, k, s, d, **o: _mm_resnet(c, k, d, **o), _mm_resnet_options, 16, 16,
                        "multi-scale multi-stage ResNet, DeepTEPP's network (seed 004), clinical fusion at the head"),
}
ARCHS = tuple(_REGISTRY)
#: Networks with a clinical-pathological input at the head (``forward(x, clinical)``).
CLINICAL_ARCHS = ("mm_resnet",)
#: Input size each network is usually trained at (images).
DEFAULT_IMAGE_SIZE = {"densenet3block": 64, "densenet121": 224, "resnet50": 224, "resnet101": 224, "vgg19": 224,
                      "vit": 224, "mm_resnet": 64}
#: Cube side of volumes by default: a 64^3 crop holds as many voxels as a 512 x 512 image.
DEFAULT_VOLUME_SIZE = {"densenet3block": 32, "densenet121": 64, "resnet50": 64, "resnet101": 64, "vgg19": 64,
                       "vit": 64, "mm_resnet": 32}


def list_archs() -> dict[str, str]:
    """Arch name -> one-line description."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def check_arch(arch: str) -> str:
    """Return ``arch`` when known, else raise an error listing the known ones and the nearest."""
    if arch not in _REGISTRY:
        raise InputError(f"Unknown network '{arch}'. Known: {', '.join(ARCHS)}.{nearest(arch, ARCHS)}")
    return arch


def default_image_size(arch: str, spatial_dims: int = 2) -> int:
    """The usual input side of ``arch``: :data:`DEFAULT_IMAGE_SIZE` in 2D, :data:`DEFAULT_VOLUME_SIZE` in 3D."""
    check_arch(arch)
    table = DEFAULT_VOLUME_SIZE if check_spatial_dims(spatial_dims, "default_image_size") == 3 else DEFAULT_IMAGE_SIZE
    return table[arch]


def _option_names(fn: Callable[..., Any]) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    fixed = ("self", "in_channels", "n_classes", "image_size", "spatial_dims")
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in fixed]


def build_network(arch: str, *, in_channels: int = 1, n_classes: int = 2, image_size: int = 64,
                  spatial_dims: int = 2, weights: str | os.PathLike[str] | None = None, **options: Any) -> nn.Module:
    """Make a classification network with ``forward``, ``embed`` and ``target_layer``.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHS`.
    in_channels : int, default=1
        1 (grey) or 3.
    n_classes : int, default=2
    image_size : int, default=64
        Input height and width (and depth in 3D); needed by ``vit``, checked against each
        network's minimum.
    spatial_dims : {2, 3}, default=2
        Images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``.
    weights : path, optional
        Local file of weights to start from: a her2dlr checkpoint (must be of the same arch,
        input size, channels and spatial dimensions) or a state dict with this network's
        parameter names. Never downloaded.
    **options
        Arch-specific arguments (e.g. ``growth_rate``, ``block_layers`` for ``densenet3block``;
        ``patch_size``, ``hidden_size`` for ``vit``; ``dropout`` / ``head_dropout``).

    Returns
    -------
    torch.nn.Module
        With ``target_layer`` (str), ``embed_dim`` (int), ``embed(x)`` and ``config`` (dict).

    Raises
    ------
    InputError
        Unknown arch (lists the known ones and the nearest), unknown option, too small an
        input, spatial_dims other than 2 or 3, or weights that do not fit.

    Examples
    --------
    >>> net = build_network("densenet3block", image_size=64)
    >>> net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 2])
    >>> net.get_submodule(net.target_layer).__class__.__name__
    'ReLU'
    >>> vol = build_network("densenet3block", image_size=16, spatial_dims=3, block_layers=(1, 1, 2)).eval()
    >>> vol(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 2])
    """
    check_arch(arch)
    dims = check_spatial_dims(spatial_dims)
    entry = _REGISTRY[arch]
    min_size = entry.min_size_3d if dims == 3 else entry.min_size
    for name, value, low in (("in_channels", in_channels, 1), ("n_classes", n_classes, 2),
                             ("image_size", image_size, min_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"The '{name}' parameter of build_network('{arch}') must be an int >= {low}. "
                             f"Got {value!r} instead.")
    allowed = _option_names(entry.signature)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"Unknown option(s) {unknown} for network '{arch}'. Allowed: {allowed or 'none'}."
                         f"{nearest(unknown[0], allowed)}")
    model = entry.make(in_channels, n_classes, image_size, dims, **options)
    model.config = {"arch": arch, "in_channels": in_channels, "n_classes": n_classes, "image_size": image_size,
                    "spatial_dims": dims, "options": dict(options)}
    if weights is not None:
        load_weights(model, weights)
    return model


def _read_state(path: Path) -> tuple[Mapping[str, Tensor], dict[str, Any] | None]:
    if not path.is_file():
        raise InputError(f"Weights file not found: {path}.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"Cannot read weights {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}."
                         " Expected a her2dlr checkpoint or a PyTorch state dict.") from None
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj["model_state"], obj
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"{path} holds no state dict (a mapping of parameter names to tensors).")
    return obj, None


def load_weights(model: nn.Module, weights: str | os.PathLike[str]) -> list[str]:
    """Load weights from a local file into ``model``; return the parameter names left as initialised.

    A her2dlr checkpoint must match the model's arch, input size, channel count and number of
    spatial dimensions (checkpoints without it are 2D). Parameters
    whose shapes differ (a classifier with another number of classes) are skipped with a
    warning; when fewer than half of the model's tensors can be loaded the file is refused.

    Raises
    ------
    InputError
        Missing or unreadable file, a checkpoint of another network, or weights that do not fit.
    """
    path = Path(weights)
    state, meta = _read_state(path)
    config = getattr(model, "config", {}) or {}
    if meta is not None and config:
        meta = {**meta, "spatial_dims": meta.get("spatial_dims", 2)}
        config = {**config, "spatial_dims": config.get("spatial_dims", 2)}
        for key, what in (("arch", "architecture"), ("image_size", "input size"), ("in_channels", "channel count"),
                          ("spatial_dims", "spatial dimensions")):
            if meta.get(key) != config.get(key):
                raise InputError(
                    f"Checkpoint {path} is for {what} {meta.get(key)!r} (arch {meta.get('arch')!r}, "
                    f"{meta.get('image_size')} px, {meta.get('in_channels')} channel(s), {meta['spatial_dims']}D); "
                    f"this network is {config.get(key)!r} (arch {config.get('arch')!r}, {config.get('image_size')} "
                    f"px, {config.get('in_channels')} channel(s), {config['spatial_dims']}D)."
                )
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(usable) < len(own) / 2:
        example = next(iter(state), "none")
        raise InputError(
            f"Weights {path} do not fit network '{config.get('arch', type(model).__name__)}': only {len(usable)} of "
            f"{len(own)} tensors match by name and shape (file key e.g. {example!r}, network key e.g. "
            f"{next(iter(own))!r})."
        )
    skipped = sorted(k for k in own if k not in usable)
    if skipped:
        warnings.warn(f"{len(skipped)} tensor(s) not in {path} or of another shape keep their initial values: "
                      f"{skipped[:6]}{' ...' if len(skipped) > 6 else ''}", stacklevel=2)
    model.load_state_dict(usable, strict=False)
    return skipped
