"""``python -m t2c_captum.world.train``: run :func:`main` and exit with its status."""

from __future__ import annotations

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
