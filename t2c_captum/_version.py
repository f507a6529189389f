"""The library's version (one place; the package and every artifact writer read it here)."""

__version__ = "0.1.0"
