"""Training throughput: MMLGNetClassifier.fit (skorch) against a plain PyTorch loop,
and the cost of today's default training recipe against the earlier one.

The plain loop and the estimator with the earlier recipe (no spectral path, Adam, constant
lr, no augmentation, no label smoothing) train the same module with the same loss,
optimiser, data (1000 samples, 64 HSI + 1 LiDAR bands, 11 x 11) and batch size: their
ratio is skorch's overhead. The third line is the estimator with its defaults (spectral
path, AdamW, cosine schedule, augmentation, label smoothing): its ratio to the second is
what the better recipe costs at the same number of epochs. The figure is samples per
second over the epochs after the first (warm-up).

    python benchmarks/bench_training.py [--n 1000] [--epochs 4] [--batch-size 64]
"""

import argparse
import platform
import time

import numpy as np
import torch

from sklearn_mmlgnet import MMLGNetClassifier
from sklearn_mmlgnet.losses import symmetric_contrastive_loss
from sklearn_mmlgnet.nn import MMLGNetModule


def data(n, bands=65, P=11, n_classes=6, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, n_classes, n)
    X = rng.normal(size=(n, bands, P, P)).astype(np.float32)
    X[np.arange(n), y] += 1.0
    return X, y, rng.normal(size=(n_classes, 512)).astype(np.float32)


def plain_loop(X, y, emb, epochs, batch_size):
    torch.manual_seed(0)
    # the module of the earlier recipe (EARLIER_RECIPE's module__ parameters)
    module = MMLGNetModule(X.shape[1] - 1, 1, torch.as_tensor(emb), spectral_channels=(),
                           class_bias=False)
    opt = torch.optim.Adam(module.parameters(), lr=5e-4)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)),
        batch_size=batch_size, shuffle=True, drop_last=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        module.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = symmetric_contrastive_loss(module(xb), yb)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


#: The recipe of the releases before the current defaults (what the plain loop does).
EARLIER_RECIPE = dict(module__spectral_channels=(), module__class_bias=False, optimizer="adam",
                      weight_decay=0.0, lr_schedule=None, augment=False, label_smoothing=0.0)


def skorch_fit(X, y, emb, epochs, batch_size, **recipe):
    clf = MMLGNetClassifier(text_embeddings=emb, max_epochs=epochs, batch_size=batch_size,
                            random_state=0, **recipe)
    clf.fit(X, y)
    return list(clf.history_[:, "dur"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args()
    X, y, emb = data(a.n)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")
    print(f"data: {a.n} samples x {X.shape[1]} bands x 11 x 11, batch {a.batch_size}, "
          f"{a.epochs} epochs (first is warm-up)")
    results = {}
    runs = [("plain PyTorch loop", plain_loop),
            ("fit, earlier recipe", lambda *args: skorch_fit(*args, **EARLIER_RECIPE)),
            ("fit, default recipe", skorch_fit)]
    for name, fn in runs:
        times = fn(X, y, emb, a.epochs, a.batch_size)
        per_epoch = float(np.mean(times[1:])) if len(times) > 1 else times[0]
        results[name] = a.n / per_epoch
        print(f"{name:>24}: {per_epoch:6.2f} s/epoch  {results[name]:8.0f} samples/s")
    ratio = results["plain PyTorch loop"] / results["fit, earlier recipe"]
    print(f"wrapper overhead: plain loop is {ratio:.3f}x the throughput of the estimator")
    cost = results["fit, earlier recipe"] / results["fit, default recipe"]
    print(f"default recipe: {cost:.2f}x the seconds per epoch of the earlier recipe")


if __name__ == "__main__":
    main()
