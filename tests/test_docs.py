"""The documents that promise things about the code keep their promises."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "functions" / "manifest.json").read_text())


def test_every_http_function_is_described_in_openapi():
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    described = {path.strip("/").split("/")[0] for path in spec["paths"]}
    http = {
        name for name, fn in MANIFEST["functions"].items() if fn["trigger"] == "http"
    }

    assert http - described == set()


def test_every_function_in_the_manifest_has_its_entry_point():
    for name, fn in MANIFEST["functions"].items():
        source = (ROOT / "functions" / name / "main.py").read_text()
        assert f"def {fn['entry_point']}(" in source, name


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n## ")[0]

    assert "make demo" in head and "make test" in head
