"""Every test here runs on the embedded and on the scale-out backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.backends import BACKENDS, backend_changes


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def backend_settings(backend: str) -> AsyncIterator[dict[str, str]]:
    """Settings changes for ``backend``, kept for the whole test (platforms restart on them)."""
    async with backend_changes(backend) as changes:
        yield changes
