"""Every network: logits, embed and target_layer of the right shapes; CAM identity; weights from files."""

from __future__ import annotations

import pytest
import torch

from her2dlr.deep.networks import ARCHS, build_network, list_archs, load_weights
from her2dlr.deep.train import TrainSettings, make_checkpoint, model_from_checkpoint, save_checkpoint
from her2dlr.errors import InputError

SMALL = {  # arch -> (image size, options): small inputs keep the big networks fast
    "densenet3block": (32, {}),
    "densenet121": (32, {}),
    "resnet50": (32, {}),
    "resnet101": (32, {}),
    "vgg19": (32, {}),
    "vit": (32, {"patch_size": 16, "hidden_size": 64, "mlp_dim": 128, "num_layers": 2, "num_heads": 4}),
    "mm_resnet": (32, {"widths": (8, 16, 16, 32)}),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_arch_is_listed():
    assert set(SMALL) == set(ARCHS) == set(list_archs())


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_embed_and_target_layer(arch):
    if arch == "vit":
        pytest.importorskip("einops")
    size, options = SMALL[arch]
    torch.manual_seed(0)
    net = build_network(arch, in_channels=1, n_classes=3, image_size=size, **options).eval()
    x = torch.randn(2, 1, size, size)
    maps = {}
    layer = net.get_submodule(net.target_layer)
    handle = layer.register_forward_hook(lambda m, i, o: maps.setdefault("map", o))
    with torch.no_grad():
        logits = net(x)
        emb = net.embed(x)
    handle.remove()
    assert logits.shape == (2, 3)
    assert emb.shape == (2, net.embed_dim)
    fmap = maps["map"]
    # mm_resnet's embedding fuses every stage (and a 2x2 pooling) through projections: its target layer is the last
    # stage, of the last width, and the mean of its maps is not the embedding
    channels = options["widths"][-1] if arch == "mm_resnet" else net.embed_dim
    assert fmap.ndim == 4 and fmap.shape[:2] == (2, channels)
    if arch not in ("vgg19", "mm_resnet"):  # vgg19 max-pools once more after its last convolution
        torch.testing.assert_close(fmap.mean(dim=(2, 3)), emb, rtol=1e-4, atol=1e-5)
    assert net.config["arch"] == arch and net.config["image_size"] == size


def test_seed000_network_is_cam_ready():
    net = build_network("densenet3block", image_size=64).eval()
    assert net.embed_dim == 426  # 24 stem maps, (4, 4, 32) layers of growth 12, halved by the transitions
    x = torch.randn(3, 1, 64, 64)
    fmap = net.features(x)
    assert fmap.shape == (3, 426, 4, 4)
    cam = torch.einsum("kc,nchw->nkhw", net.classifier.weight, fmap)  # class activation maps
    logits = cam.mean(dim=(2, 3)) + net.classifier.bias
    torch.testing.assert_close(logits, net(x), rtol=1e-4, atol=1e-5)
    blocks = [len(getattr(net.features, f"denseblock{i}")) for i in (1, 2, 3)]
    assert blocks == [4, 4, 32]


def test_three_channels_and_grad_through_target_layer():
    net = build_network("densenet3block", in_channels=3, image_size=32)
    store = {}

    def keep(module, inputs, output):
        output.retain_grad()
        store["a"] = output

    net.get_submodule(net.target_layer).register_forward_hook(keep)
    net(torch.randn(2, 3, 32, 32))[:, 1].sum().backward()
    assert store["a"].grad is not None and store["a"].grad.abs().sum() > 0  # Grad-CAM has its gradients


def test_unknown_arch_names_known_and_nearest():
    with pytest.raises(InputError, match=r"Unknown network 'resnet105'.*Known: densenet3block.*Did you mean"):
        build_network("resnet105")


def test_bad_options_and_sizes():
    with pytest.raises(InputError, match="Allowed:.*growth_rate"):
        build_network("densenet3block", growth=12)
    with pytest.raises(InputError, match="image_size"):
        build_network("resnet50", image_size=16)
    with pytest.raises(InputError, match="n_classes"):
        build_network("vgg19", n_classes=1)


def _ckpt(tmp_path, net, name="best.pt"):
    settings = TrainSettings(arch=net.config["arch"], image_size=net.config["image_size"])
    return save_checkpoint(make_checkpoint(net, settings, epoch=1, kind="best"), tmp_path / name)


def test_weights_from_own_checkpoint(tmp_path):
    torch.manual_seed(1)
    net = build_network("densenet3block", image_size=32, growth_rate=4, block_layers=(1, 1, 2))
    path = _ckpt(tmp_path, net)
    other = build_network("densenet3block", image_size=32, growth_rate=4, block_layers=(1, 1, 2), weights=path)
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(net.eval()(x), other.eval()(x))
    again = model_from_checkpoint(path)
    torch.testing.assert_close(again(x), net(x))


def test_checkpoint_of_another_arch_or_size_is_refused(tmp_path):
    net = build_network("densenet3block", image_size=32, growth_rate=4, block_layers=(1, 1, 2))
    path = _ckpt(tmp_path, net)
    with pytest.raises(InputError, match="input size 32"):
        build_network("densenet3block", image_size=64, growth_rate=4, block_layers=(1, 1, 2), weights=path)
    with pytest.raises(InputError, match="architecture 'densenet3block'"):
        build_network("vgg19", image_size=32, weights=path)
    with pytest.raises(InputError, match="arch='densenet3block', not 'resnet50'"):
        model_from_checkpoint(path, arch="resnet50")


def test_plain_state_dict_weights(tmp_path):
    src = build_network("densenet3block", image_size=32, growth_rate=4, block_layers=(1, 1, 2), n_classes=3)
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    dst = build_network("densenet3block", image_size=32, growth_rate=4, block_layers=(1, 1, 2))
    with pytest.warns(UserWarning, match="classifier"):
        skipped = load_weights(dst, tmp_path / "plain.pt")  # another head: skipped, the rest loaded
    assert skipped == ["classifier.bias", "classifier.weight"]
    torch.save(build_network("vgg19", image_size=32).state_dict(), tmp_path / "vgg.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_weights(dst, tmp_path / "vgg.pt")
    with pytest.raises(InputError, match="not found"):
        load_weights(dst, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="Cannot read"):
        load_weights(dst, tmp_path / "junk.pt")
