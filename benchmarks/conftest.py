"""The benchmark suite's convention (``pytest benchmarks``).

Each benchmark times our implementation and a reference *in the same run* (machines are noisy;
absolute times differ between machines, ratios travel) and calls ``record(...)``, which

- appends ``{name, params, value, unit, reference_value, ratio}`` to
  ``benchmarks/results/latest.json`` (``ratio`` = how many times better ours is: value /
  reference_value for throughputs, reference_value / value for times and bytes),
- fails the test when the ratio falls below the benchmark's ``floor``, or more than 20% below the
  ratio committed in ``benchmarks/baseline.json`` for the same name and params,
- fails the test when ``baseline.json`` has no entry for that name and params (unless the run is
  ``--update-baseline``, which adds it), so that a renamed benchmark or changed params cannot
  silently drop out of the regression check,
- and the session ends with a table of every record.

``pytest benchmarks --update-baseline`` merges the run's records into ``baseline.json``, keeping
per record the lower of the committed and the new ratio. The committed file is the lowest ratio
of three such runs on an idle 2-core machine: a noisy machine's run then stays above 80% of it,
and a real regression still falls below.

``timeit(fn)`` is the shared timer: warmup calls, then the median of repeated calls.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "latest.json"
BASELINE = HERE / "baseline.json"
REGRESSION_TOLERANCE = 0.8  # a ratio may fall to 80% of its committed baseline
HIGHER_IS_BETTER = {"M steps/s", "samples/s", "images/s", "steps/s"}

_records: list[dict] = []


def timeit(fn, warmup: int = 2, repeat: int = 7, min_time: float = 0.0) -> float:
    """Median seconds of one call of ``fn`` (after ``warmup`` calls); each timed call loops
    ``fn`` until ``min_time`` seconds pass, so very short calls are measured over many runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        times.append(elapsed / n)
    return statistics.median(times)


def _key(name: str, params: dict) -> str:
    return name + json.dumps(params, sort_keys=True)


def _baseline() -> dict:
    if not BASELINE.is_file():
        return {}
    return {_key(r["name"], r["params"]): r for r in json.loads(BASELINE.read_text())}


def pytest_addoption(parser):
    parser.addoption("--update-baseline", action="store_true",
                     help="merge this run's ratios into benchmarks/baseline.json, keeping the "
                          "lower ratio per record and adding records it has no entry for")


def _missing_baseline(name: str, params: dict, request) -> str:
    test_file = Path(request.node.path).relative_to(HERE.parent).as_posix()
    return (f"{name} {json.dumps(params)}: no entry in benchmarks/baseline.json; "
            f"add it on an idle machine with `pytest {test_file} -k "
            f"{request.node.originalname} --update-baseline` run 3 times (baseline.json keeps "
            "the lowest ratio of the runs) and commit baseline.json")


@pytest.fixture
def record(request):
    """record(name, params, value, unit, reference_value, floor=None) -> the record."""
    updating = request.config.getoption("--update-baseline")

    def _record(name: str, params: dict, value: float, unit: str, reference_value: float,
                floor: float | None = None) -> dict:
        higher = unit in HIGHER_IS_BETTER
        ratio = value / reference_value if higher else reference_value / value
        rec = {"name": name, "params": params, "value": value, "unit": unit,
               "reference_value": reference_value, "ratio": round(ratio, 3)}
        _records.append(rec)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(_records, indent=1) + "\n")
        if floor is not None:
            assert ratio >= floor, f"{name} {params}: ratio {ratio:.2f} below its floor {floor}"
        base = _baseline().get(_key(name, params))
        if base is None:
            assert updating, _missing_baseline(name, params, request)
        else:
            limit = REGRESSION_TOLERANCE * base["ratio"]
            assert ratio >= limit, (f"{name} {params}: ratio {ratio:.2f} is more than 20% below "
                                    f"the committed baseline {base['ratio']:.2f}")
        return rec

    return _record


def pytest_sessionstart(session):
    _records.clear()


def pytest_sessionfinish(session):
    if not (session.config.getoption("--update-baseline") and _records):
        return
    merged = _baseline()
    for rec in _records:
        old = merged.get(_key(rec["name"], rec["params"]))
        if old is None or rec["ratio"] < old["ratio"]:
            merged[_key(rec["name"], rec["params"])] = rec
    records = sorted(merged.values(), key=lambda r: _key(r["name"], r["params"]))
    BASELINE.write_text(json.dumps(records, indent=1) + "\n")


def pytest_terminal_summary(terminalreporter):
    if not _records:
        return
    tr = terminalreporter
    tr.section("benchmarks (ratio = ours vs reference, higher is better)")
    params = [", ".join(f"{k}={v}" for k, v in r["params"].items()) for r in _records]
    width = max(40, *map(len, params))
    tr.write_line(f"{'name':<28} {'params':<{width}} {'ours':>12} {'reference':>12} "
                  f"{'unit':<10} {'ratio':>7}")
    for r, p in zip(_records, params):
        tr.write_line(f"{r['name']:<28} {p:<{width}} {r['value']:>12.4g} "
                      f"{r['reference_value']:>12.4g} {r['unit']:<10} {r['ratio']:>7.2f}")
    tr.write_line(f"written to {RESULTS}")
