"""The speed options: precision="bf16" training, bf16 dense prediction, the dense
forward's prepared weights, the batched training loader, and the thread policy.

Speed itself is measured by benchmarks/bench_speed.py (ratios in one run), never here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier, cli
from sklearn_mmlgnet._net import BatchDihedralCollate, train_loader
from sklearn_mmlgnet._threads import command_line_wait_policy, free_cores, set_threads
from sklearn_mmlgnet.augment import random_dihedral
from sklearn_mmlgnet.nn import MMLGNetModule, SDHSINet
from sklearn_mmlgnet.nn._ops import _onednn_linear, linear_rows, reuse_plans

from .conftest import make_patches
from .test_nn import _randomize

ROOT = Path(__file__).resolve().parents[1]


def _with_precision(clf, precision):
    return clf.set_params(precision=precision)


def _sdhsi(**kw):
    return SDHSIClassifier(max_epochs=3, random_state=0, module__conv3d_channels=(4, 8),
                           module__spectral_kernels=(3, 3), module__hidden=16, **kw)


def _mmlgnet(**kw):
    return MMLGNetClassifier(text_embeddings=np.random.RandomState(0).normal(size=(3, 16)),
                             max_epochs=3, random_state=0, module__hsi_channels=(4, 8),
                             module__lidar_channels=(2, 4), module__fusion_dim=8,
                             module__spectral_channels=(8,), **kw)


@pytest.mark.parametrize("make", [_sdhsi, _mmlgnet], ids=["sdhsi", "mmlgnet"])
def test_bf16_training_runs_its_forward_in_bfloat16_and_predicts_finite_probabilities(make):
    X, y = make_patches(n_per_class=20, P=7)
    clf = _with_precision(make(), "bf16")
    seen = []
    clf.fit(X, y)  # build once, then watch the convolutions of a second fit
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, inp, out: seen.append(out.dtype) if isinstance(m, (torch.nn.Conv2d,
                                                                      torch.nn.Conv3d)) else None)
    try:
        clf.fit(X, y)
    finally:
        hook.remove()
    assert torch.bfloat16 in seen  # the training forward ran under bfloat16 autocast
    assert all(p.dtype == torch.float32 for p in clf.net_.module_.parameters())
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1)
    assert np.isfinite(clf.history_[:, "train_loss"]).all()


def test_fp32_is_the_default_and_other_precisions_are_refused_by_name():
    assert SDHSIClassifier().precision == "fp32"
    X, y = make_patches(n_per_class=5, P=7)
    for bad in ("fp16", "bfloat16", 16, None):
        with pytest.raises(InvalidParameterError, match="'precision' parameter"):
            _sdhsi(precision=bad).fit(X, y)
    if "precision" in MMLGNetClassifier().get_params():
        assert MMLGNetClassifier().precision == "fp32"
        with pytest.raises(InvalidParameterError, match="'precision' parameter"):
            _mmlgnet(precision="fp16").fit(X, y)


def test_the_batched_loader_draws_the_batches_and_symmetries_of_the_earlier_one():
    X = np.random.RandomState(0).normal(size=(50, 3, 5, 5)).astype(np.float32)
    torch.manual_seed(3)
    expected = random_dihedral(torch.as_tensor(X))
    torch.manual_seed(3)
    got, _ = BatchDihedralCollate()((X, np.zeros(50)))
    assert torch.equal(got, expected)

    from skorch.dataset import Dataset

    data = Dataset(X, np.arange(50))
    batches = list(train_loader(data, batch_size=16, shuffle=True))
    assert [len(b[1]) for b in batches] == [16, 16, 16]  # the remainder dropped
    assert len(set(torch.cat([b[1] for b in batches]).tolist())) == 48
    whole = list(train_loader(data, batch_size=64))  # smaller than a batch: kept
    assert [len(b[1]) for b in whole] == [50] and torch.equal(whole[0][0], torch.as_tensor(X))


def test_onednn_and_addmm_rows_agree():
    g = torch.Generator().manual_seed(0)
    w, b, z = (torch.randn(7, 5, generator=g), torch.randn(7, generator=g),
               torch.randn(11, 5, generator=g))
    expected = torch.relu(torch.addmm(b, z, w.t()))
    torch.testing.assert_close(linear_rows(w, b, relu=True)(z), expected, rtol=0, atol=1e-5)
    if _onednn_linear() is not None:
        torch.testing.assert_close(linear_rows(w.bfloat16(), b.bfloat16())(z.bfloat16()).float(),
                                   torch.addmm(b, z, w.t()), rtol=0, atol=0.1)


NETS = {
    "mmlgnet": lambda: MMLGNetModule(4, 1, torch.randn(3, 16, generator=torch.Generator()
                                                       .manual_seed(1)),
                                     hsi_channels=(4, 8), lidar_channels=(2, 4), fusion_dim=8,
                                     spectral_channels=(8,), aux_heads=True),
    "sdhsi": lambda: SDHSINet(5, 3, conv3d_channels=(3, 4), spectral_kernels=(3, 2),
                              conv2d_channels=6, hidden=8, student_hidden=5),
}


@pytest.mark.parametrize("name", list(NETS))
def test_dense_bfloat16_by_argument_or_autocast_stays_close_to_float32(name):
    net = _randomize(NETS[name]())
    x = torch.randn(1, net.in_channels, 16, 15, generator=torch.Generator().manual_seed(2))
    P = net.receptive_field
    ref = net.dense_logits(x, P, heads="mean")
    bf16 = net.dense_logits(x, P, heads="mean", dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, ref, rtol=0.05, atol=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(net.dense_logits(x, P, heads="mean"), bf16)
    with pytest.raises(ValueError, match="dtype must be one of"):
        net.dense_logits(x, P, dtype=torch.int8)


def test_prepared_weights_are_reused_only_inside_reuse_plans():
    net = _randomize(NETS["mmlgnet"]())
    x = torch.randn(1, net.in_channels, 12, 12)
    P = net.receptive_field
    before = net.dense_logits(x, P)
    store = {}
    with reuse_plans(store):
        torch.testing.assert_close(net.dense_logits(x, P), before)
        assert len(store) == 1
        net.dense_logits(x, P)
        assert len(store) == 1  # reused
    with torch.no_grad():
        for p in net.parameters():
            p.data.mul_(0.5)  # even through .data (no version counter): read afresh outside
    after = net.dense_logits(x, P)
    assert not torch.allclose(after, before)
    with torch.no_grad():
        ref = net.eval()(x.unfold(2, P, 1).unfold(3, P, 1).permute(0, 2, 3, 1, 4, 5)
                         .reshape(-1, net.in_channels, P, P))
    torch.testing.assert_close(after.permute(0, 2, 3, 1).reshape(-1, 3), ref, rtol=0, atol=1e-4)


def test_free_cores_and_set_threads():
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= free_cores() <= n
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(None) == torch.get_num_threads() >= 1
        with pytest.raises(ValueError, match="--threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def _wait_policy(argv0, env_policy=None):
    """OMP_WAIT_POLICY after importing the package in a fresh process named ``argv0``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    code = (f"import sys; sys.argv = [{argv0!r}]; import sklearn_mmlgnet, os; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return out.stdout.strip()


def test_the_command_line_sets_a_passive_wait_policy_before_torch_loads():
    assert _wait_policy("/usr/bin/mmlgnet") == "PASSIVE"
    assert _wait_policy("-m") == "PASSIVE"  # python -m sklearn_mmlgnet, while importing it
    assert _wait_policy("/usr/bin/mmlgnet", "ACTIVE") == "ACTIVE"  # the user's choice stays
    assert _wait_policy("notebook.py") == "None"  # a program importing the library: untouched
    env = {}
    assert command_line_wait_policy(env, force=True) is None  # torch is loaded here: too late
    assert env == {}


def test_threads_option(monkeypatch, capsys):
    args = cli.build_parser().parse_args(["demo", "--threads", "1"])
    assert args.threads == 1
    assert cli.build_parser().parse_args(["demo"]).threads is None
    before = torch.get_num_threads()
    try:
        assert cli.main(["demo", "--threads", "0"]) == cli.BAD_INPUT
    finally:
        torch.set_num_threads(before)
    assert "--threads" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_gpu_check_says_there_is_no_gpu():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "no CUDA device" in out.stderr
