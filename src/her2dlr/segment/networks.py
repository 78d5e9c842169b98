"""Lesion segmentation networks (MONAI), 2D and 3D from one factory.

:func:`build_seg_network` makes any of :data:`SEG_ARCHS` for ``spatial_dims`` 2 (images
``(N, C, H, W)``) or 3 (volumes ``(N, C, D, H, W)``). Every network is a :class:`SegNetwork`:

* ``forward(x) -> logits`` of shape ``(N, out_channels, *spatial)`` (channel 1: lesion);
* ``config``: the keyword arguments of :func:`build_seg_network` that make it again (stored in
  checkpoints);
* ``size_multiple``: every input side must be a multiple of it (one halving per level);
* :meth:`SegNetwork.activation_layers`: the names (for ``model.get_submodule(name)``) of its
  activation modules (ReLU, PReLU, ...) in the order the forward pass runs them, so feature
  maps can be read from a named layer with a forward hook.

``features`` are the widths of the levels, from the input down: ``(16, 32, 64, 128, 256)`` is
five levels, four halvings. SegResNet doubles its width at each level, so for it only the
first width and the number of levels can be chosen (a list that does not double is refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from her2dlr.errors import InputError, nearest

__all__ = ["ACTIVATION_TYPES", "DEFAULT_FEATURES", "SEG_ARCHS", "SegNetwork", "build_seg_network"]

#: Name -> description of the segmentation networks.
SEG_ARCHS: dict[str, str] = {
    "unet": "MONAI UNet: residual units (2 per level), PReLU, instance norm",
    "attention_unet": "MONAI AttentionUnet: U-Net whose skip connections are gated by attention (Oktay et al. 2018)",
    "segresnet": "MONAI SegResNet: residual encoder, light decoder, group norm (Myronenko 2018)",
}
#: Level widths used when ``features`` is not given.
DEFAULT_FEATURES: dict[str, tuple[int, ...]] = {
    "unet": (16, 32, 64, 128, 256),
    "attention_unet": (16, 32, 64, 128, 256),
    "segresnet": (16, 32, 64, 128),
}
#: Module types listed by :meth:`SegNetwork.activation_layers` (gates such as Sigmoid are not).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)
_SEGRESNET_BLOCKS_DOWN = (1, 2, 2, 4, 4, 4)


class SegNetwork(nn.Module):
    """A segmentation network with the configuration that rebuilds it.

    Parameters
    ----------
    net : torch.nn.Module
        The MONAI network; its logits are returned unchanged.
    config : dict
        Keyword arguments of :func:`build_seg_network`.
    size_multiple : int
        Input sides must be multiples of it.
    """

    def __init__(self, net: nn.Module, config: dict[str, Any], size_multiple: int) -> None:
        super().__init__()
        self.net = net
        self.config = dict(config)
        self.size_multiple = int(size_multiple)
        self._activations: list[str] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, out_channels, *spatial)`` of ``x`` ``(N, in_channels, *spatial)``."""
        return self.net(x)

    def activation_layers(self) -> list[str]:
        """Names of the activation submodules in the order a forward pass calls them.

        Found once by running a small zero input through the network with hooks (module
        registration order is not call order in every MONAI network); a module called twice
        is listed at its first call.
        """
        if self._activations is None:
            order: list[str] = []
            hooks = []
            for name, module in self.named_modules():
                if isinstance(module, ACTIVATION_TYPES):
                    hooks.append(module.register_forward_hook(
                        lambda mod, args, out, name=name: order.append(name) if name not in order else None))
            param = next(self.parameters())
            side = 2 * self.size_multiple  # instance norm needs more than one element at the deepest level
            x = torch.zeros((1, self.config["in_channels"]) + (side,) * self.config["spatial_dims"],
                            device=param.device, dtype=param.dtype)
            was_training = self.training
            try:
                self.eval()
                with torch.no_grad():
                    self(x)
            finally:
                self.train(was_training)
                for hook in hooks:
                    hook.remove()
            self._activations = order
        return list(self._activations)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"The '{name}' parameter of build_seg_network must be an int >= {low}. "
                         f"Got {value!r} instead.")
    return value


def _check_features(arch: str, features: Sequence[int] | None) -> tuple[int, ...]:
    if features is None:
        return DEFAULT_FEATURES[arch]
    feats = tuple(features) if not isinstance(features, (str, bytes)) else ()
    if len(feats) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in feats):
        raise InputError(f"The 'features' parameter of build_seg_network must be two or more level widths "
                         f"(ints >= 1), e.g. (16, 32, 64). Got {features!r} instead.")
    if arch == "segresnet":
        doubling = tuple(feats[0] * 2**i for i in range(len(feats)))
        if feats != doubling:
            raise InputError(f"SegResNet doubles its width at every level: features {feats} should be {doubling} "
                             "(only the first width and the number of levels can be chosen).")
        if feats[0] % 8 or len(feats) > len(_SEGRESNET_BLOCKS_DOWN):
            raise InputError(f"SegResNet's first width must be a multiple of 8 (group norm of 8 groups) and it "
                             f"has at most {len(_SEGRESNET_BLOCKS_DOWN)} levels. Got features {feats}.")
    return feats


def build_seg_network(arch: str = "unet", *, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                      features: Sequence[int] | None = None, dropout: float = 0.0) -> SegNetwork:
    """Make a segmentation network.

    Parameters
    ----------
    arch : {"unet", "attention_unet", "segresnet"}, default="unet"
        See :data:`SEG_ARCHS`.
    spatial_dims : {2, 3}, default=2
        Images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``.
    in_channels : int, default=1
        Image channels, plus one for a box prompt.
    out_channels : int, default=2
        Background and lesion.
    features : sequence of int, optional
        Level widths from the input down (default :data:`DEFAULT_FEATURES`).
    dropout : float, default=0.0

    Returns
    -------
    SegNetwork
        With ``config`` (``build_seg_network(**model.config)`` makes it again),
        ``size_multiple`` and ``activation_layers()``.

    Raises
    ------
    InputError
        Unknown arch (with the nearest known one), bad sizes, spatial_dims other than 2 or 3.

    Examples
    --------
    >>> net = build_seg_network("unet", features=(8, 16, 32))
    >>> net(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 2, 32, 32])
    >>> net.activation_layers()[0]
    'net.model.0.conv.unit0.adn.A'
    """
    if arch not in SEG_ARCHS:
        raise InputError(f"Unknown segmentation network '{arch}'. Known: {', '.join(SEG_ARCHS)}."
                         f"{nearest(str(arch), SEG_ARCHS)}")
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise InputError(f"The 'spatial_dims' parameter of build_seg_network must be 2 (images) or 3 (volumes). "
                         f"Got {spatial_dims!r} instead.")
    _check_int("in_channels", in_channels, 1)
    _check_int("out_channels", out_channels, 2)
    feats = _check_features(arch, features)
    if not 0.0 <= float(dropout) < 1.0:
        raise InputError(f"The 'dropout' parameter of build_seg_network must be in [0, 1). Got {dropout!r} instead.")
    net = _make(arch, spatial_dims, in_channels, out_channels, feats, float(dropout))
    config = {"arch": arch, "spatial_dims": int(spatial_dims), "in_channels": in_channels,
              "out_channels": out_channels, "features": list(feats), "dropout": float(dropout)}
    return SegNetwork(net, config, size_multiple=2 ** (len(feats) - 1))


def _make(arch: str, dims: int, in_ch: int, out_ch: int, feats: tuple[int, ...], dropout: float) -> nn.Module:
    from monai.networks.nets import AttentionUnet, SegResNet, UNet

    strides = (2,) * (len(feats) - 1)
    if arch == "unet":
        return UNet(dims, in_ch, out_ch, channels=feats, strides=strides, num_res_units=2, dropout=dropout)
    if arch == "attention_unet":
        return AttentionUnet(dims, in_ch, out_ch, channels=feats, strides=strides, dropout=dropout)
    levels = len(feats)
    return SegResNet(dims, init_filters=feats[0], in_channels=in_ch, out_channels=out_ch,
                     dropout_prob=dropout or None, blocks_down=_SEGRESNET_BLOCKS_DOWN[:levels],
                     blocks_up=(1,) * (levels - 1))
