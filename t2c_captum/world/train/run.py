"""Train the world's tiny CLIP, ShapeCNN, AutoEncoder and ViT, save them and write their calibration.

The entry points: ``train_world`` (render, train, calibrate, save), ``main`` (the command line
``python -m t2c_captum.world.train``, whose description is this docstring's first line) and
``save_model`` (one model's weights and config).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from t2c_captum._exceptions import WorldError
from t2c_captum.world.generator import make_split
from t2c_captum.world.weights import DEFAULT_WEIGHTS_DIR, REGENERATE_COMMAND, load_world_model

from .calibration import CALIBRATION_DOC, calibration_markdown, write_calibration
from .data import render_array
from .evaluate import calibrate
from .fitters import train_ae, train_clip, train_cnn, train_vit
from .settings import TrainSettings

#: the models trained in one random stream (CLIP, then CNN, then AE); world-vit has its own seed
CHAINED = ("world-clip", "world-cnn", "world-ae")


def save_model(model: nn.Module, name: str, out_dir: Path, meta: dict) -> None:
    """Write ``<name>.safetensors`` (float tensors as fp16) and ``<name>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(out_dir / f"{name}.safetensors"), metadata={"name": name})
    config = {"name": name, "class": type(model).__name__, "hparams": model.hparams, **meta}
    (out_dir / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n")


def train_world(
    out_dir: Path | str | None = None,
    settings: TrainSettings | None = None,
    calibration_path: Path | str | None = None,
    command: str = REGENERATE_COMMAND,
    vit_only: bool = False,
) -> dict:
    """Train all world models, save them into ``out_dir`` and return the calibration.

    Args:
        out_dir: where weights and configs go (default: the package's ``world/weights``).
        settings: training settings (default: the full run).
        calibration_path: where to write the markdown calibration (None: don't write).
        command: command line recorded in the configs and the calibration document.
        vit_only: train only world-vit (it has its own seed, so it comes out as in a full run) and
            load the other models from ``out_dir``; the calibration covers all of them.

    Returns:
        The calibration dict (also stored in every model's JSON config).
    """
    cfg = settings or TrainSettings()
    out = Path(out_dir) if out_dir is not None else DEFAULT_WEIGHTS_DIR
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    start = time.time()
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test,
             "compositional": cfg.n_compositional}
    data = {}
    for split, n in sizes.items():
        samples = make_split(split, n)
        data[split] = (render_array(samples), samples)
    print(f"rendered {sum(sizes.values())} images ({time.time() - start:.0f}s)", flush=True)
    train_x, train_s = data["train"]
    if vit_only:
        # CNN and AE draw their initialisation after the CLIP's training: only the ViT stands alone
        models: dict[str, nn.Module] = {m: load_world_model(m, out) for m in CHAINED}
        trained: list[str] = []
    else:
        models = {
            "world-clip": train_clip(train_x, train_s, cfg),
            "world-cnn": train_cnn(train_x, train_s, cfg),
            "world-ae": train_ae(train_x, cfg),
        }
        trained = list(CHAINED)
    if cfg.vit_steps > 0:
        models["world-vit"] = train_vit(train_x, train_s, cfg)
        trained.append("world-vit")
    cal = calibrate(models, data)
    seconds = time.time() - start
    meta = {"command": command, "seed": cfg.seed, "training": asdict(cfg),
            "wall_time_s": round(seconds, 1), "calibration": cal}
    for name in trained:
        save_model(models[name], name, out, meta)
    text = calibration_markdown(cal, command, seconds, cfg)
    print(text, flush=True)
    if calibration_path is not None:
        write_calibration(Path(calibration_path), text)
    return cal


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m t2c_captum.world.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images")
    parser.add_argument("--out", type=Path, default=None, help="output folder for weights")
    parser.add_argument("--vit-only", action="store_true",
                        help="retrain only world-vit (about 6 min) and load the other models from the "
                             "output folder; the calibration is rewritten for all of them")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="markdown calibration file (default: docs/world-calibration.md "
                             "for the full run into the default folder)")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        import tempfile

        args.out = Path(tempfile.mkdtemp(prefix="t2c-world-"))
    calibration = args.calibration
    if calibration is None and not args.quick and args.out is None:
        calibration = CALIBRATION_DOC
    command = "python -m t2c_captum.world.train" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
    ).rstrip()
    settings = TrainSettings.quick() if args.quick else TrainSettings()
    try:
        train_world(args.out, settings, calibration, command, vit_only=args.vit_only)
    except WorldError as err:
        parser.error(f"{err} (--vit-only needs the other world models in the output folder)")
    print(f"weights written to {args.out or DEFAULT_WEIGHTS_DIR}")
    return 0
