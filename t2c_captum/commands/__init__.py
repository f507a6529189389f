"""Sub-commands of ``t2c`` that build on aligners and concept banks.

Each module defines ``register(app)`` and is picked up by :mod:`t2c_captum.cli`.
"""
