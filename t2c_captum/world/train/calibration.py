"""The calibration document: its markdown tables and rewriting it while keeping the hand-written notes."""

from __future__ import annotations

from pathlib import Path

from t2c_captum.world.generator import FACTORS

from .settings import TrainSettings

CALIBRATION_DOC = Path(__file__).resolve().parents[3] / "docs" / "world-calibration.md"


def calibration_markdown(cal: dict, command: str, seconds: float, cfg: TrainSettings) -> str:
    """Human-readable calibration tables."""
    factors = list(FACTORS)
    lines = [
        "# Concept-world calibration", "",
        f"Produced by `{command}` (seed {cfg.seed}, {seconds / 60:.1f} min wall time on "
        f"{cfg.threads} CPU threads; train {cfg.n_train}, val {cfg.n_val}, test {cfg.n_test}, "
        f"compositional {cfg.n_compositional} images).", "",
        "## Tiny CLIP zero-shot top-1 (prompts: `FACTOR_TEMPLATES`)", "",
        "| split | " + " | ".join(factors) + " |",
        "|---" * (len(factors) + 1) + "|",
    ]
    for split in ("test", "compositional"):
        row = cal["world-clip"][f"zero_shot_{split}"]
        lines.append(f"| {split} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
    lines += [
        "", "## ShapeCNN own head (shape)", "",
        f"test {cal['world-cnn']['head_shape_test']:.3f}, "
        f"compositional {cal['world-cnn']['head_shape_compositional']:.3f}", "",
    ]
    if "world-vit" in cal:
        lines += ["## WorldViT own heads (one per factor)", "",
                  "| split | " + " | ".join(factors) + " |", "|---" * (len(factors) + 1) + "|"]
        for split in ("test", "compositional"):
            row = cal["world-vit"][f"heads_{split}"]
            lines.append(f"| {split} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
        lines.append("")
    lines += [
        "## Linear probes (logistic regression fitted on val, evaluated on test)", "",
        "| model | " + " | ".join(factors) + " |",
        "|---" * (len(factors) + 1) + "|",
    ]
    for name in cal:
        row = cal[name]["probe_test"]
        lines.append(f"| {name} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
    return "\n".join(lines) + "\n"


#: Everything from this line on in the calibration document is hand-written and kept on rewrites.
NOTES_MARKER = "<!-- notes below are kept when the training script rewrites this file -->"


def write_calibration(path: Path, tables: str) -> None:
    """Write the generated tables, keeping the hand-written notes after ``NOTES_MARKER``."""
    old = path.read_text() if path.is_file() else ""
    notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tables + "\n" + notes)
