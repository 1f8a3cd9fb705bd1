"""Fixtures of the render tests: every configuration rendered once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.render.harness import CONFIGS, load_manifests, render


class Rendered:
    """The manifests one configuration produced."""

    def __init__(self, name: str, out: Path, artifacts: Path) -> None:
        self.name = name
        self.config = CONFIGS[name]
        self.out = out
        self.artifacts = artifacts
        self.manifests: list[tuple[Path, dict[str, Any]]] = load_manifests(out)

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return the rendered objects, optionally only those of ``kind``."""
        return [obj for _, obj in self.manifests if kind is None or obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """Return the one object of ``kind`` called ``name``."""
        found = [obj for obj in self.objects(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind}/{name}, found {len(found)}"
        return found[0]


_cache: dict[str, Rendered] = {}


@pytest.fixture(scope="session", params=sorted(CONFIGS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Each configuration's rendered manifests (rendered once per session)."""
    name = request.param
    if name not in _cache:
        directory = tmp_path_factory.mktemp(f"render-{name}")
        out = render(directory, CONFIGS[name])
        _cache[name] = Rendered(name, out, directory / "inventory" / "artifacts")
    return _cache[name]
