from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# A shared 2-core CI machine makes wall-clock deadlines flaky; the examples
# themselves are what the tests are about.
settings.register_profile(
    "convo_sim", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("convo_sim")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
