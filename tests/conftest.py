"""Shared pytest configuration: hypothesis profiles and device markers."""

import os

from hypothesis import HealthCheck, settings

# `ci` keeps the suite inside CI's budget; `thorough` is for a long local run:
#   HYPOTHESIS_PROFILE=thorough pytest
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
