"""Closed-form ridge aligner vs the paper's SGD recipe, on the same cached features, side by side.

Two feature sets:

* synthetic: N images, d -> D with a decaying spectrum (power law, like pooled CNN features) and a
  target that is a noisy linear map of the features, so held-out R² has a known ceiling;
* concept world (``--world``): real features of the world's backbones (world-cnn, world-ae) and the
  tiny CLIP's image embeddings on N world images.

Both aligners get identical rows; the same held-out rows (10%, by index hash) score them.

    python benchmarks/bench_aligners.py                 # N=50,000, d=2048 -> D=512
    python benchmarks/bench_aligners.py --n 20000 --world
"""

from __future__ import annotations

import argparse
import time

import torch

from t2c_captum.aligners import LinearAligner, SGDAligner


def synthetic(n: int, d: int, D: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features with a power-law spectrum; targets = a random linear map + noise (ceiling R² ~0.9)."""
    gen = torch.Generator().manual_seed(seed)
    spectrum = torch.arange(1, d + 1, dtype=torch.float32) ** -0.8
    spectrum *= (d / (spectrum**2).sum()) ** 0.5  # average variance 1 per dimension, mean 0.5
    basis = torch.linalg.qr(torch.randn(d, d, generator=gen))[0]
    X = torch.empty(n, d)
    W = torch.randn(d, D, generator=gen) / d**0.5
    Y = torch.empty(n, D)
    for start in range(0, n, 10_000):
        rows = min(10_000, n - start)
        z = torch.randn(rows, d, generator=gen) * spectrum
        X[start : start + rows] = z @ basis.T + 0.5
        signal = X[start : start + rows] @ W
        noise_scale = 0.33 * (signal - signal.mean(0)).std()
        Y[start : start + rows] = signal + noise_scale * torch.randn(rows, D, generator=gen)
    return X, Y


def world(n: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Features of the concept world's backbones and the tiny CLIP's image embeddings."""
    from t2c_captum import extract_features, load_backbone, load_space
    from t2c_captum.world.adapters import world_source

    space = load_space("world-clip")
    out = {}
    for name in ("world-cnn", "world-ae"):
        store = extract_features(
            world_source("train", n=n, factor="shape"),
            {"source": load_backbone(name), "target": space},
            progress=False,
        )
        data = store.load()
        out[name] = (data["source"], data["target"])
    return out


def run(name: str, X: torch.Tensor, Y: torch.Tensor, chunk: int = 8192) -> dict[str, float]:
    indices = torch.arange(X.shape[0])
    held = LinearAligner().holdout(indices)
    t0 = time.perf_counter()
    ridge = LinearAligner()
    for start in range(0, X.shape[0], chunk):  # streamed, as from a feature store
        ridge.partial_fit(X[start : start + chunk], Y[start : start + chunk], indices[start : start + chunk])
    ridge._ensure_solved()
    t_ridge = time.perf_counter() - t0
    t0 = time.perf_counter()
    sgd = SGDAligner().fit(X, Y, indices)
    t_sgd = time.perf_counter() - t0
    r2_ridge = ridge.evaluate(X[held], Y[held]).r2
    r2_sgd = sgd.evaluate(X[held], Y[held]).r2
    row = {
        "closed_form_s": t_ridge,
        "sgd_s": t_sgd,
        "speedup": t_sgd / t_ridge,
        "closed_form_r2": r2_ridge,
        "sgd_r2": r2_sgd,
        "alpha": ridge.fit_stats_["alpha"],
    }
    print(
        f"{name:<34} N={X.shape[0]:>6} d={X.shape[1]:>4} D={Y.shape[1]:>3} | closed-form "
        f"{t_ridge:6.2f} s R² {r2_ridge:.4f} (alpha {row['alpha']:.2g}) | SGD x5 {t_sgd:6.2f} s "
        f"R² {r2_sgd:.4f} | SGD/closed-form time {row['speedup']:.2f}x",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--D", type=int, default=512)
    parser.add_argument("--world", action="store_true", help="also run on concept-world features")
    parser.add_argument("--world-n", type=int, default=20_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    X, Y = synthetic(args.n, args.d, args.D)
    run("synthetic (power-law spectrum)", X, Y)
    del X, Y
    if args.world:
        for name, (X, Y) in world(args.world_n).items():
            run(f"concept world: {name} -> world-clip", X, Y)


if __name__ == "__main__":
    main()
