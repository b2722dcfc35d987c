"""The placement benchmark never falls back to synthetic prices (issue 18 §1): without the catalog
it says so (``ok: false`` and the reason) instead of printing a figure."""

from __future__ import annotations

import json

import pytest

from bench import _placement_data, placement


def test_without_the_catalog_the_bench_reports_not_ok_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_placement_data, "CATALOG", tmp_path / "catalog")
    with pytest.raises(_placement_data.CatalogMissing, match="lacks aws_gpu_vms.csv"):
        _placement_data.catalog_rows()
    monkeypatch.setattr("sys.argv", ["placement.py"])
    assert placement.main() == 0
    (line,) = capsys.readouterr().out.splitlines()
    out = json.loads(line)
    assert out["ok"] is False and out["value"] is None and "no real prices" in out["reason"]


def test_the_catalog_gives_real_rows():
    rows = _placement_data.catalog_rows()
    assert len(rows) >= 200 and {r[0] for r in rows} >= {"H100", "A100-80", "L4"}
    assert all(len(r[3]) == 2 and r[4] > 0 for r in rows)
