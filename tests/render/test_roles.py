"""Role hygiene: every default is typed and described, and role-prefixed (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = ["storage", "ingress", "tls", "mysql", "solr", "seek"]


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_cover_every_default(role: str) -> None:
    """meta/argument_specs.yml lists exactly the defaults, each with a type and description."""
    defaults = yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options), set(defaults) ^ set(options)
    for name, option in options.items():
        assert name.startswith(f"{role}_"), f"{name} is not prefixed with {role}_"
        assert option.get("type") and option.get("description"), name


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_comment(role: str) -> None:
    """Each default is preceded by a one-line comment."""
    lines = (ROLES_DIR / role / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")) and line != "---":
            assert lines[index - 1].startswith("# "), f"{role}: {line} has no comment"


@pytest.mark.parametrize("role", ROLES)
def test_main_includes_validate_first(role: str) -> None:
    """tasks/main.yml only includes phase files, validate.yml first."""
    tasks = yaml.safe_load((ROLES_DIR / role / "tasks" / "main.yml").read_text())
    assert tasks[0]["ansible.builtin.include_tasks"] == "validate.yml"
    assert all("ansible.builtin.include_tasks" in task for task in tasks)
