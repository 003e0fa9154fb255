"""Smoke test of ``benchmarks/replay.py`` on the first requests of ``nova-100`` (both paths)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = Path(os.environ.get("PCIFLEET_WORKLOADS", str(ROOT.parent / "shared" / "workloads")))
NOVA_100 = WORKLOADS / "nova-100"

pytestmark = pytest.mark.skipif(not NOVA_100.is_dir(), reason=f"workloads not found at {WORKLOADS}")


@pytest.fixture(scope="module")
def replay() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "replay_benchmark", ROOT / "benchmarks" / "replay.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def last_json(text: str) -> dict[str, object]:
    line = text.strip().splitlines()[-1]
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize(
    ("path", "weigher"), [("service", "first"), ("service", "pack"), ("domain", "pack")]
)
def test_replay_prints_the_json_line_last(
    replay: ModuleType, capsys: pytest.CaptureFixture[str], path: str, weigher: str
) -> None:
    replay.main([str(NOVA_100), "--limit", "40", "--path", path, "--weigher", weigher])
    out = capsys.readouterr().out
    line = last_json(out)
    assert line["hosts"] == 100
    assert line["requests"] == 40
    assert line["placed"] == 40
    assert line["rejected"] == 0
    for key in ("p50_ms", "p99_ms", "total_s", "load_s", "peak_rss_mb"):
        value = line[key]
        assert isinstance(value, float | int)
        assert value >= 0
    assert line["nova_placed"] == 40
    assert line["lockstep_accepts_nova_host"] == 40
    assert "Compared with Nova" in out
    if weigher == "first" or path == "domain":
        # Nova's rule: the first requests land where Nova put them
        assert line["nova_same_host"] == 40


def test_percentile(replay: ModuleType) -> None:
    timings = [i / 1000 for i in range(1, 101)]
    assert replay.percentile_ms(timings, 0.5) == pytest.approx(50.0)
    assert replay.percentile_ms(timings, 0.99) == pytest.approx(99.0)
    assert replay.percentile_ms([], 0.5) == 0.0
