"""Test settings: hypothesis runs a fixed sequence of examples, so CI is repeatable.

Set HYPOTHESIS_PROFILE=explore to draw fresh random examples locally.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
