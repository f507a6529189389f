"""Concept-to-text on the concept world: do decoded captions name what is in the image?

The world decoder (``t2c_captum.world.decoder.world_decoder``: a small GPT-2 trained on the captions
of 2400 training images embedded by the tiny CLIP's text encoder, text only) decodes

* the tiny CLIP's own image embeddings of test images (``--split val`` for val images: tune there);
* every world backbone's features (world-cnn, world-ae, world-vit) aligned to the tiny CLIP
  (closed-form aligner, ``--n-train`` images);

with the default decoding (projection onto the text memory, greedy). A caption names a factor value
when it contains one of the world's words for it (``SYNONYMS``; background and position phrases are
removed first, so a "striped background" is not a striped object). Printed: share of captions naming
the true shape, the true colour, and both.

Then, for each injected shift task (``SHIFT_TASKS``), the shift direction (mean aligned target − mean
aligned source, ``--n-shift`` images per side) is decoded and checked for the shifted value.

    python benchmarks/world_decoder.py                    # a few minutes on 2 busy cores (decoder cached)
    python benchmarks/world_decoder.py --n-test 500 --n-shift 300
    python benchmarks/world_decoder.py --split val --n-test 1000 --n-shift 300
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--split", choices=("test", "val"), default="test", help="images captioned (tune on val)"
    )
    parser.add_argument("--n-test", type=int, default=2000, help="images of the split captioned")
    parser.add_argument("--n-train", type=int, default=3000, help="aligner training images")
    parser.add_argument("--n-shift", type=int, default=500, help="images per side of each shift pair")
    parser.add_argument("--strategy", default="greedy", help="greedy, beam or nucleus")
    parser.add_argument("--no-project", action="store_true", help="decode without the text-memory projection")
    args = parser.parse_args()

    from t2c_captum.features import extract_features
    from t2c_captum.world.adapters import WORLD_BACKBONES, fit_world_aligner, world_source
    from t2c_captum.world.decoder import caption_accuracy, world_decoder, world_shift_captions
    from t2c_captum.world.weights import weights_digest

    start = time.perf_counter()
    t0 = time.perf_counter()
    decoder = world_decoder(progress=True)
    train_s = time.perf_counter() - t0
    stats = decoder.training_stats
    print(
        f"date {datetime.date.today()}; world-clip weights {weights_digest('world-clip')}; decoder: "
        f"{stats['n_captions']} captions, vocabulary {stats['vocabulary_size']}, "
        f"loss {stats['final_loss']:.3f}, "
        f"{sum(p.numel() for p in decoder.parameters())} parameters, ready in {train_s:.0f} s "
        f"(training run took {stats['seconds_this_run']:.0f} s when it was built)"
    )
    opts = {"strategy": args.strategy, "project": not args.no_project}
    source = world_source(args.split, n=args.n_test)
    samples = source.items.samples
    rows = []
    space_emb = None
    encoders: dict[str, tuple[Any, Any]] = {}
    for name in WORLD_BACKBONES:
        backbone, space, aligner = fit_world_aligner(name, args.n_train)
        encoders[name] = (backbone, aligner)
    space_emb = extract_features(source, {"space": space}, progress=False).load(["space"])["space"]
    rows.append(
        ("world-clip (own image embeddings)", caption_accuracy(decoder.decode(space_emb, **opts), samples))
    )
    examples = decoder.decode(space_emb[:3], **opts)
    for name, (backbone, aligner) in encoders.items():
        feats = extract_features(source, {"source": backbone}, progress=False).load(["source"])["source"]
        rows.append(
            (f"{name} aligned", caption_accuracy(decoder.decode(aligner.transform(feats), **opts), samples))
        )
    print(
        f"\ncaptions of {args.n_test} {args.split} images ({args.strategy}, "
        f"projection {'off' if args.no_project else 'on'})\n"
    )
    print("| input | names shape | names colour | names both |")
    print("| --- | --- | --- | --- |")
    for name, acc in rows:
        print(
            f"| {name} | {100 * acc['shape']:.1f}% | {100 * acc['colour']:.1f}% | {100 * acc['all']:.1f}% |"
        )
    print(
        "\nexamples (tiny CLIP): "
        + " / ".join(f"{s.colour} {s.shape}: {c!r}" for s, c in zip(samples, examples, strict=False))
    )

    print(f"\nshift directions (mean aligned target - mean aligned source, n={args.n_shift} per side)\n")
    print("| task | encoder | names the shifted value | caption |")
    print("| --- | --- | --- | --- |")
    named: dict[str, list[bool]] = {}
    encoders["world-clip (own)"] = (space, None)
    for name, (encoder, aligner) in encoders.items():
        for row in world_shift_captions(decoder, encoder, aligner, n=args.n_shift, strategy=args.strategy):
            named.setdefault(name, []).append(row["named"])
            print(f"| {row['task']} | {name} | {'yes' if row['named'] else 'no'} | {row['caption']} |")
    print()
    for name, hits in named.items():
        print(f"{name}: {sum(hits)}/{len(hits)} shift directions name the shifted value")
    print(f"\ndone in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
