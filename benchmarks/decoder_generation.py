"""Caption generation speed with and without the key/value cache, side by side in one run.

The world decoder (``t2c_captum.world.decoder.world_decoder``; trained and cached on first use) decodes
the tiny CLIP's image embeddings of ``--n`` val images with greedy, beam (4) and nucleus decoding,
once with the GPT-2 key/value cache (the default: the prefix is run once, each step feeds one new
token) and once recomputing the whole sequence each step (``use_cache=False``). The two runs of each
strategy alternate ``--repeats`` times and the best time of each is kept (the CPU may be shared);
their captions are checked to be identical.

    OMP_NUM_THREADS=1 python benchmarks/decoder_generation.py
    OMP_NUM_THREADS=1 python benchmarks/decoder_generation.py --n 500 --repeats 3 --batch-size 64
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
    parser.add_argument("--n", type=int, default=500, help="val images captioned")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each setting (best kept)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows decoded together")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    from t2c_captum.features import extract_features
    from t2c_captum.spaces import load_space
    from t2c_captum.world.adapters import world_source
    from t2c_captum.world.decoder import world_decoder

    decoder = world_decoder(progress=True)
    space = load_space("world-clip")
    emb = extract_features(world_source("val", n=args.n), {"space": space}, progress=False).load(["space"])[
        "space"
    ]
    x = decoder.project(emb)  # once, outside the timing: only generation is measured
    for use_cache in (True, False):  # warm-up
        decoder.decode(x[:16], project=False, use_cache=use_cache)
    print(
        f"date {datetime.date.today()}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} thread(s); {args.n} val images, batch {args.batch_size}, "
        f"best of {args.repeats}\n"
    )
    print("| strategy | cached captions/s | uncached captions/s | speed-up | same captions |")
    print("| --- | --- | --- | --- | --- |")
    cases: dict[str, dict[str, Any]] = {
        "greedy": {"strategy": "greedy"},
        "beam (4)": {"strategy": "beam", "beam_size": 4},
        "nucleus (p 0.9)": {"strategy": "nucleus", "top_p": 0.9, "seed": 0},
    }
    for name, options in cases.items():
        best = {True: float("inf"), False: float("inf")}
        captions: dict[bool, list[str]] = {}
        for _ in range(args.repeats):
            for use_cache in (True, False):
                start = time.perf_counter()
                captions[use_cache] = decoder.decode(
                    x, project=False, batch_size=args.batch_size, use_cache=use_cache, **options
                )
                best[use_cache] = min(best[use_cache], time.perf_counter() - start)
        on, off = args.n / best[True], args.n / best[False]
        same = "yes" if captions[True] == captions[False] else "NO"
        print(f"| {name} | {on:.0f} | {off:.0f} | {on / off:.2f}x | {same} |")


if __name__ == "__main__":
    main()
