"""Closed-form ridge aligner vs the paper's SGD recipe, on the same cached features, side by side.

Two feature sets:

* synthetic: N images, d -> D with a decaying spectrum (power law, like pooled CNN features) and a
  target that is a noisy linear map of the features, so held-out R² has a known ceiling;
* concept world (``--world``): real features of the world's backbones (world-cnn, world-ae) and the
  tiny CLIP's image embeddings on N world images.

Both aligners get identical rows; the same held-out rows (10%, by index hash) score them.

    python benchmarks/bench_aligners.py                 # N=50,000, d=2048 -> D=512
    python benchmarks/bench_aligners.py --n 20000 --world
    python benchmarks/bench_aligners.py --parts         # the fit's building blocks, each way it could run
    python benchmarks/bench_aligners.py --alternate 3   # fit and sklearn Ridge timed in turn (noisy boxes)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _synthetic import cpu_description, timed

from t2c_captum.aligners import LinearAligner, SGDAligner
from t2c_captum.aligners.base import r2_score
from t2c_captum.aligners.linear import COARSE_ALPHAS


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


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    return r2_score(torch.from_numpy(np.asarray(pred, dtype=np.float32)), torch.from_numpy(target))


def run(
    name: str, X: torch.Tensor, Y: torch.Tensor, chunk: int = 8192, repeat: int = 1, sklearn: bool = True,
    quiet: bool = False,
) -> dict[str, dict[str, float]]:
    """Every fitter on the same fitting rows, scored on the same held-out rows; prints one line each."""
    indices = torch.arange(X.shape[0])
    held = LinearAligner().holdout(indices)
    Xh, Yh = X[held], Y[held]

    def streamed() -> LinearAligner:  # as from a feature store, chunk by chunk
        ridge = LinearAligner()
        for start in range(0, X.shape[0], chunk):
            rows = slice(start, start + chunk)
            ridge.partial_fit(X[rows], Y[rows], indices[rows])
        ridge.solve()
        return ridge

    fitters: dict[str, Callable[[], Any]] = {
        "LinearAligner.fit (alpha chosen)": lambda: LinearAligner().fit(X, Y, indices),
        f"LinearAligner, streamed {chunk:,}": streamed,
    }
    if sklearn:
        from sklearn.linear_model import Ridge, RidgeCV

        Xt, Yt = X[~held].numpy(), Y[~held].numpy()
        fitters["sklearn Ridge(alpha=1, cholesky)"] = lambda: Ridge(alpha=1.0, solver="cholesky").fit(Xt, Yt)
        fitters["sklearn RidgeCV (LOO, 9 alphas)"] = lambda: RidgeCV(alphas=COARSE_ALPHAS).fit(Xt, Yt)
    fitters["SGDAligner (paper recipe, 5 epochs)"] = lambda: SGDAligner().fit(X, Y, indices)
    rows: dict[str, dict[str, float]] = {}
    if not quiet:  # first calls pay one-off imports and kernel set-up: not part of any fit's time
        run("warm-up", X[:300, :16], Y[:300, :4], chunk, 1, sklearn, quiet=True)
    for label, fit in fitters.items():
        seconds, model = timed(fit, repeat)
        if isinstance(model, LinearAligner | SGDAligner):
            r2 = model.evaluate(Xh, Yh).r2
        else:
            r2 = _r2(model.predict(Xh.numpy()), Yh.numpy())
        rows[label] = {"seconds": seconds, "r2": r2}
    if quiet:
        return rows
    base = rows.get("sklearn Ridge(alpha=1, cholesky)", rows["LinearAligner.fit (alpha chosen)"])["seconds"]
    print(f"{name}: N={X.shape[0]:,} ({int((~held).sum()):,} fitting, {int(held.sum()):,} held out), "
          f"d={X.shape[1]} -> D={Y.shape[1]}, best of {repeat}")
    work = work_ratio(int((~held).sum()), int(held.sum()), X.shape[1], Y.shape[1])
    print(f"  (work of the fit against sklearn Ridge's, counted in flops: at least {work:.2f}x)")
    for label, row in rows.items():
        ratio = row["seconds"] / base
        print(f"  {label:<38} {row['seconds']:7.2f} s  {ratio:5.2f}x  held-out R² {row['r2']:.4f}")
    return rows


def parts(n: int, d: int, D: int, repeat: int) -> dict[str, float]:
    """The closed-form fit's building blocks, each timed every way it could be computed on this CPU
    (the choices in ``t2c_captum.aligners.linear`` are these figures)."""
    from scipy.linalg import lapack
    from scipy.linalg.blas import ssyrk

    X, Y = synthetic(n, d, D)
    xc, yc = X - X.mean(0), Y - Y.mean(0)
    a = xc.numpy()
    corr = (xc.T.double() @ xc.double()) / n
    corr /= torch.outer(corr.diagonal().sqrt(), corr.diagonal().sqrt())
    system = corr + 1e-3 * torch.eye(d, dtype=torch.float64)
    rhs = (xc.T.double() @ yc.double()) / n

    def torch_cholesky() -> torch.Tensor:
        return torch.cholesky_solve(rhs, torch.linalg.cholesky_ex(system)[0])

    def lapack_cholesky() -> np.ndarray:
        factor, _ = lapack.dpotrf(system.numpy().T.copy(), lower=1, clean=0, overwrite_a=1)
        return lapack.dpotrs(factor, rhs.numpy(), lower=1)[0]

    blocks: dict[str, Callable[[], Any]] = {
        "Sxx: NumPy a.T @ a (BLAS syrk)": lambda: a.T @ a,
        "Sxx: SciPy ssyrk": lambda: ssyrk(1.0, a.T, trans=0, lower=1),
        "Sxx: torch X.T @ X (gemm)": lambda: xc.T @ xc,
        "Sxy: torch X.T @ Y": lambda: xc.T @ yc,
        "Sxy: NumPy X.T @ Y": lambda: a.T @ yc.numpy(),
        "eigh float32 (torch)": lambda: torch.linalg.eigh(corr.float()),
        "eigh float64 (torch)": lambda: torch.linalg.eigh(corr),
        "Cholesky solve float64: torch": torch_cholesky,
        "Cholesky solve float64: LAPACK via SciPy": lapack_cholesky,
    }
    print(f"building blocks at N={n:,}, d={d} -> D={D}, best of {repeat}")
    rows = {}
    for label, fn in blocks.items():
        rows[label] = timed(fn, repeat)[0]
        print(f"  {label:<42} {rows[label]:7.3f} s")
    return rows


def work_ratio(n_fit: int, n_held: int, d: int, D: int) -> float:
    """Floating-point operations of ``LinearAligner.fit`` (alpha chosen on held-out rows) over those of
    scikit-learn's single-alpha Cholesky ridge on the fitting rows: the time ratio both would take at
    one BLAS rate. A lower bound for the fit (the eigendecomposition is counted at its reduction to
    tridiagonal form and its back-transform only).

    scikit-learn: ``XᵀX`` on one triangle (``syrk``) and ``XᵀY`` over the fitting rows, one Cholesky
    factorisation and solve. The fit: the same products over fitting *and* held-out rows, one
    eigendecomposition (10/3 d³), the held-out Gram rotated into its basis (``Vᵀ H V``, 4 d³), three
    ``[d, d] @ [d, D]`` products (the targets and the held-out ``XᵀY`` rotated, ``R Rᵀ``), and the
    chosen strength's Cholesky solve in float64 (counted twice: half the float32 rate)."""
    n = n_fit + n_held
    cholesky = d**3 / 3 + 2 * d * d * D
    baseline = n_fit * d * (d + 1) + 2 * n_fit * d * D + cholesky
    fit = n * d * (d + 1) + 2 * n * d * D + 10 / 3 * d**3 + 4 * d**3 + 3 * 2 * d * d * D + 2 * cholesky
    return fit / baseline


def alternate(X: torch.Tensor, Y: torch.Tensor, times: int) -> dict[str, list[float]]:
    """``LinearAligner.fit`` and scikit-learn's single-alpha ``Ridge`` timed in turn, ``times`` each, so
    that drifting machine speed reaches both alike; prints every time and the ratio of the bests."""
    from sklearn.linear_model import Ridge

    indices = torch.arange(X.shape[0])
    held = LinearAligner().holdout(indices)
    Xt, Yt = X[~held].numpy(), Y[~held].numpy()
    run("warm-up", X[:300, :16], Y[:300, :4], quiet=True)
    seconds: dict[str, list[float]] = {"LinearAligner.fit": [], "sklearn Ridge": []}
    for _ in range(times):
        seconds["LinearAligner.fit"].append(timed(lambda: LinearAligner().fit(X, Y, indices), 1)[0])
        seconds["sklearn Ridge"].append(timed(lambda: Ridge(alpha=1.0, solver="cholesky").fit(Xt, Yt), 1)[0])
    for label, times_s in seconds.items():
        print(f"  {label:<20} " + " ".join(f"{t:6.2f} s" for t in times_s))
    ratio = min(seconds["LinearAligner.fit"]) / min(seconds["sklearn Ridge"])
    work = work_ratio(int((~held).sum()), int(held.sum()), X.shape[1], Y.shape[1])
    print(f"  best against best: {ratio:.2f}x (their work, counted in flops: at least {work:.2f}x)")
    return seconds


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print every fitter's time, ratio and R² per feature set; return the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--D", type=int, default=512)
    parser.add_argument("--world", action="store_true", help="also run on concept-world features")
    parser.add_argument("--world-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="time each fitter so often, keep the best")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn rows")
    parser.add_argument("--parts", action="store_true", help="time the fit's building blocks instead")
    parser.add_argument("--alternate", type=int, default=0, metavar="K",
                        help="time the fit and sklearn's Ridge in turn, K times each, instead")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {cpu_description()}")
    if args.parts:
        return [parts(int(args.n * 0.9), args.d, args.D, max(args.repeat, 2))]
    X, Y = synthetic(args.n, args.d, args.D)
    if args.alternate:
        return [alternate(X, Y, args.alternate)]
    results = [run("synthetic (power-law spectrum)", X, Y, repeat=args.repeat, sklearn=not args.no_sklearn)]
    del X, Y
    if args.world:
        for name, (X, Y) in world(args.world_n).items():
            results.append(run(f"concept world: {name} -> world-clip", X, Y, repeat=args.repeat,
                               sklearn=not args.no_sklearn))
    return results


if __name__ == "__main__":
    main()
