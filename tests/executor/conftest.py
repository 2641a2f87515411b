"""Fixtures for the executor tests: runners (twin and real), settings, the base image."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from executor.docker_runner import DockerRunner
from executor.memory_runner import MemoryRunner
from executor.runner import ContainerRunner, ImageInfo

from .support import BASE_IMAGE


@pytest.fixture
def test_label() -> str:
    """A label value unique to this test, to find (and clean up) its containers."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(
    params=["memory", pytest.param("docker", marks=pytest.mark.docker)],
)
async def runner(request: pytest.FixtureRequest, test_label: str) -> AsyncIterator[ContainerRunner]:
    """Each runner implementation in turn; containers of the test are removed afterwards."""
    impl: ContainerRunner
    if request.param == "memory":
        impl = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    else:
        impl = DockerRunner.connect()
    try:
        yield impl
    finally:
        for container in await impl.list_labelled({"shoal.test": test_label}):
            await impl.remove(container)
        await impl.close()
