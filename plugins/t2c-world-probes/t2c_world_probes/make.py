"""Refit the shipped probe: ``python -m t2c_world_probes.make [--n 3000]`` (writes the package data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from t2c_captum.world.adapters import fit_world_aligner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000, help="world training images")
    args = parser.parse_args()
    _, _, aligner = fit_world_aligner("world-cnn", args.n)
    saved = aligner.save(Path(__file__).parent / "probes" / "world-cnn")
    print(f"wrote {saved} (held-out R² {aligner.fit_stats_.get('holdout_r2_from_stats', float('nan')):.3f})")


if __name__ == "__main__":
    main()
