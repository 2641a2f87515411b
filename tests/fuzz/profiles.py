"""Hypothesis profiles of the fuzz tier, chosen by ``SHOAL_FUZZ_PROFILE``.

- ``quick`` (the default, used by ``make test``): a few dozen cases per target, the whole
  tier well under a minute on two cores;
- ``thorough`` (``make fuzz``): about thirty times as many, shrinking failures.

The quick profile does not shrink a failing case (shrinking a large document can take
minutes); it prints the case as found, and ``make fuzz`` shrinks. Deadlines are off (a
loaded machine must not fail a case for being slow); a hang is caught by pytest-timeout
instead. :func:`fuzz` gives a target its settings, ``weight`` scaling the number of cases for
targets that are much cheaper or dearer than the others.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILE_VARIABLE = "SHOAL_FUZZ_PROFILE"

settings.register_profile(
    "shoal-fuzz-quick",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=True,
)
settings.register_profile(
    "shoal-fuzz-thorough",
    settings.get_profile("shoal-fuzz-quick"),
    max_examples=1000,
    phases=list(Phase),
)


def fuzz(weight: float = 1.0) -> settings:
    """The settings of a fuzz target under the selected profile."""
    name = os.environ.get(PROFILE_VARIABLE, "quick")
    try:
        base = settings.get_profile(f"shoal-fuzz-{name}")
    except Exception:
        raise ValueError(f"{PROFILE_VARIABLE}={name!r}: use quick or thorough") from None
    return settings(base, max_examples=max(1, round(base.max_examples * weight)))
