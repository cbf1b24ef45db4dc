"""The networks: the forward contract, argument checks, and dense forward == patch forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn_mmlgnet.nn import MMLGNetModule, SDHSINet, TextSimilarityHead, mean_of_heads


def _randomize(net, seed=0):
    """Random weights and batch-norm statistics, so folding batch norm is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()


def _patches(x, P):
    """Every P x P patch of tiles (N, C, H, W), pixels in raster order: (N * R * W, C, P, P)."""
    p = x.unfold(2, P, 1).unfold(3, P, 1)  # (N, C, R, W, P, P)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1], P, P)


def _rows(maps):
    """(N, K, R, W) logit maps as (N * R * W, K) rows, pixels in raster order."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


TEXT = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
NETS = {
    "mmlgnet": lambda: MMLGNetModule(4, 1, TEXT, hsi_channels=(4, 8), lidar_channels=(2, 4),
                                     fusion_dim=8, spectral_channels=(8,)),
    "mmlgnet, students, 3 vs 1 stages": lambda: MMLGNetModule(
        4, 2, TEXT, hsi_channels=(4, 6, 8), lidar_channels=(3,), fusion_dim=8,
        spectral_channels=(8,), aux_heads=True),
    "mmlgnet, students, dot, no bias, text narrower": lambda: MMLGNetModule(
        4, 1, torch.eye(3, 4), hsi_channels=(4, 6), lidar_channels=(3, 5), fusion_dim=8,
        spectral_channels=(6, 5), aux_heads=True, similarity="dot", class_bias=False),
    "mmlgnet, hsi only, no spectral path, students": lambda: MMLGNetModule(
        5, 0, TEXT, hsi_channels=(4, 6), fusion_dim=8, spectral_channels=(), aux_heads=True),
    "mmlgnet, linear head, students": lambda: MMLGNetModule(
        4, 1, TEXT, hsi_channels=(4, 6), lidar_channels=(2, 3), fusion_dim=8,
        spectral_channels=(8,), head="linear", aux_heads=True),
    "sdhsi": lambda: SDHSINet(6, 3, conv3d_channels=(3, 4), spectral_kernels=(3, 2),
                              conv2d_channels=6, hidden=8, student_hidden=5),
    "sdhsi, students on stages 3 and 1": lambda: SDHSINet(
        6, 3, conv3d_channels=(3, 4), spectral_kernels=(3, 2), conv2d_channels=6, hidden=8,
        student_stages=(3, 1), student_hidden=5),
    "sdhsi, few bands shrink the kernels": lambda: SDHSINet(
        3, 3, conv3d_channels=(2, 3), spectral_kernels=(7, 5), conv2d_channels=4, hidden=8),
    "sdhsi, no students": lambda: SDHSINet(6, 3, conv3d_channels=(3,), spectral_kernels=(3,),
                                           conv2d_channels=6, hidden=8, aux_heads=False),
}


@pytest.mark.parametrize("heads", ["final", "mean", "all"])
@pytest.mark.parametrize("name", list(NETS))
def test_dense_forward_equals_the_patch_forward(name, heads):
    net = _randomize(NETS[name]())
    P = net.receptive_field + 2
    x = torch.randn(2, net.in_channels, P + 4, P + 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = net(_patches(x, P), heads=heads)
    dense = net.dense_logits(x, P, heads=heads)
    if heads == "all":
        (ref, ref_aux), (dense, dense_aux) = ref, dense
        assert len(dense_aux) == len(ref_aux) == len(net.aux)
        for d, r in zip(dense_aux, ref_aux):
            torch.testing.assert_close(_rows(d), r, rtol=0, atol=1e-4)
    assert dense.shape == (2, 3, 5, 4)
    torch.testing.assert_close(_rows(dense), ref, rtol=0, atol=1e-4)


def test_dense_forward_at_the_receptive_field_and_with_the_text_head_factorized():
    net = _randomize(MMLGNetModule(3, 1, TEXT, hsi_channels=(4, 8), lidar_channels=(2,),
                                   fusion_dim=4, spectral_channels=(4,)))
    P = net.receptive_field  # the least exact patch: no margin beyond the convolutions
    x = torch.randn(1, 4, 9, 6)
    with torch.no_grad():
        ref = net(_patches(x, P))
        z = torch.randn(7, 4)
        torch.testing.assert_close(net.head.factorized()(z), net.head(z), rtol=0, atol=1e-4)
    torch.testing.assert_close(_rows(net.dense_logits(x, P)), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["mmlgnet, students, 3 vs 1 stages", "sdhsi"])
def test_dense_forward_is_the_eval_function_and_leaves_the_module_alone(name):
    net = _randomize(NETS[name]())
    x = torch.randn(1, net.in_channels, 14, 13)
    P = net.receptive_field
    expected = net.dense_logits(x, P, heads="mean")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()  # batch statistics would change the answer (and the running statistics)
    torch.testing.assert_close(net.dense_logits(x, P, heads="mean"), expected)
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_dense_forward_checks_its_input():
    net = NETS["mmlgnet"]().eval()
    with pytest.raises(ValueError, match=r"patch_size must be an odd int of at least .*\(5\)"):
        net.dense_logits(torch.zeros(1, 5, 9, 9), 3)
    with pytest.raises(ValueError, match="patch_size must be an odd int"):
        net.dense_logits(torch.zeros(1, 5, 9, 9), 6)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(N, 5, H, W\)"):
        net.dense_logits(torch.zeros(1, 4, 9, 9), 5)
    with pytest.raises(ValueError, match="at least patch_size=7 pixels"):
        net.dense_logits(torch.zeros(1, 5, 9, 6), 7)
    with pytest.raises(ValueError, match="heads must be one of"):
        net.dense_logits(torch.zeros(1, 5, 9, 9), 5, heads="students")


@pytest.mark.parametrize("name", ["mmlgnet, students, 3 vs 1 stages", "sdhsi"])
def test_forward_heads_contract(name):
    net = _randomize(NETS[name]())
    x = torch.randn(4, net.in_channels, 9, 9)
    calls = []
    for head in net.aux:
        head.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        final = net(x)
        assert isinstance(final, torch.Tensor) and final.shape == (4, 3)
        assert not calls  # no student runs for the final head
        final2, aux = net(x, heads="all")
        torch.testing.assert_close(final2, final)
        assert len(aux) == len(net.aux) == len(calls)
        torch.testing.assert_close(net(x, heads="mean"), mean_of_heads([final] + aux))
    net.train()
    for heads in ("final", "mean", "all"):  # training: always the criterion's input
        out = net(x, heads=heads)
        assert isinstance(out, tuple) and len(out[1]) == len(net.aux)
    with pytest.raises(ValueError, match=r"heads must be one of \('final', 'mean', 'all'\); "
                                         r"got 'students'"):
        net(x, heads="students")


def test_without_students_mean_is_the_final_heads_probability_and_all_is_empty():
    net = _randomize(NETS["sdhsi, no students"]())
    x = torch.randn(3, 6, 7, 7)
    with torch.no_grad():
        final = net(x)
        assert net(x, heads="all")[1] == []
        torch.testing.assert_close(torch.softmax(net(x, heads="mean"), 1), torch.softmax(final, 1))
        net.train()
        assert isinstance(net(x), torch.Tensor)  # no students: logits while training too


def test_patches_below_the_receptive_field_are_replicate_padded():
    net = _randomize(NETS["mmlgnet"]())
    x = torch.randn(4, 5, 3, 3)
    with torch.no_grad():
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        torch.testing.assert_close(net(x), net(padded), rtol=0, atol=1e-6)
        assert net(x[:, :, 1:2, 1:2]).shape == (4, 3)  # single pixels (P = 1) too
    sd = SDHSINet(5, 2).eval()
    assert sd.receptive_field == 9 and sd(torch.zeros(2, 5, 1, 1)).shape == (2, 2)


def test_defaults_are_the_recipe():
    net = MMLGNetModule(10, 1, torch.eye(4, 8))
    assert [s[0].out_channels for s in net.hsi.stages] == [64, 128]
    assert [s[0].out_channels for s in net.lidar.stages] == [32, 64]
    assert net.fusion[0].out_features == 256 and net.fusion[2].p == 0.1
    assert net.spectral.out_features == 128 and net.spectral.mlp[0].out_features == 256
    assert isinstance(net.head, TextSimilarityHead) and net.head.normalize
    assert net.head.bias is not None and len(net.aux) == 0
    assert net.in_channels == 11 and net.receptive_field == 5
    sd = SDHSINet(30, 4)
    assert sd.student_hidden == 64 and sd.student_stages == (1, 2, 3, 4)
    assert all(isinstance(h, torch.nn.Sequential) and h[0].out_features == 64 for h in sd.aux)
    for old in ("predict_heads", "text_adapter", "return_aux"):
        assert not hasattr(net, old) and not hasattr(sd, old)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_hsi_bands=0), "module__n_hsi_bands must be an int >= 1; got 0"),
    (dict(n_lidar_bands=-1), "module__n_lidar_bands must be an int >= 0; got -1"),
    (dict(text_embeddings=np.zeros(3)), r"module__text_embeddings must be .* got shape \(3,\)"),
    (dict(text_embeddings=np.full((2, 3), np.nan)), "module__text_embeddings holds NaN"),
    (dict(hsi_channels=(4, 0)), "module__hsi_channels must be a non-empty sequence"),
    (dict(lidar_channels="ab"), "module__lidar_channels must be a sequence of positive ints"),
    (dict(fusion_dim=0), "module__fusion_dim must be an int >= 1; got 0"),
    (dict(temperature=0), "module__temperature must be a finite float > 0; got 0"),
    (dict(learn_temperature="yes"), "module__learn_temperature must be True or False"),
    (dict(head="mlp"), r"module__head must be one of \('text', 'linear'\); got 'mlp'"),
    (dict(aux_heads=1), "module__aux_heads must be True or False; got 1"),
    (dict(dropout=1.0), "module__dropout must be a finite float >= 0 and < 1; got 1.0"),
    (dict(spectral_channels=(8, -1)), "module__spectral_channels must be a non-empty"),
    (dict(similarity="l2"), r"module__similarity must be one of \('cosine', 'dot'\)"),
    (dict(class_bias=None), "module__class_bias must be True or False; got None"),
])
def test_mmlgnet_module_names_a_bad_argument(kwargs, match):
    args = dict(n_hsi_bands=4, n_lidar_bands=1, text_embeddings=np.eye(3, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MMLGNetModule(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_bands=0), "module__n_bands must be an int >= 1; got 0"),
    (dict(n_classes=0), "module__n_classes must be an int >= 1; got 0"),
    (dict(conv3d_channels=()), "module__conv3d_channels must be a non-empty sequence"),
    (dict(spectral_kernels=(3,)), "module__spectral_kernels has 1 entries but "
                                  "module__conv3d_channels has 3 stages"),
    (dict(conv2d_channels=0), "module__conv2d_channels must be an int >= 1; got 0"),
    (dict(hidden=2.5), "module__hidden must be an int >= 1; got 2.5"),
    (dict(dropout=-0.1), "module__dropout must be a finite float >= 0"),
    (dict(aux_heads="no"), "module__aux_heads must be True or False"),
    (dict(student_stages=(0, 3)), r"module__student_stages must be None or distinct stage "
                                  r"numbers in 1\.\.4 \(3 3-D stages, then the 2-D one\)"),
    (dict(student_stages=(3, 3)), "module__student_stages must be None or distinct"),
    (dict(student_stages=()), "module__student_stages must be None or distinct"),
    (dict(student_stages=(True,)), "module__student_stages must be None or distinct"),
    (dict(student_hidden=0), "module__student_hidden must be an int >= 1; got 0"),
])
def test_sdhsi_net_names_a_bad_argument(kwargs, match):
    args = dict(n_bands=6, n_classes=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SDHSINet(**args)


def test_students_read_their_stage_whole_through_a_bottleneck():
    net = SDHSINet(n_bands=12, n_classes=3, conv3d_channels=(4, 8), spectral_kernels=(3, 3),
                   conv2d_channels=16, student_stages=(2, 3), student_hidden=8)
    # stage 2 (8 channels x 8 bands left) read whole, mean and centre; the 2-D stage as is
    assert [head[0].in_features for head in net.aux] == [2 * 8 * 8, 2 * 16]
    assert all(head[0].out_features == 8 and head[-1].out_features == 3 for head in net.aux)
