"""The EMA's lag warning: when its averaging span is a large share of a run."""
from distill.training.ema import EMA_SPAN_WARN, ema_lag_note


def test_readme_short_run_is_warned():
    # README command 1 before 2026-12-04: --ema-decay 0.99 (span 100 steps) over 6 x 94 steps.
    note = ema_lag_note(0.99, 564)
    assert note is not None
    assert "--ema-decay 0.99" in note and "~100 optimizer steps" in note and "18%" in note


def test_long_run_is_not_warned():
    assert ema_lag_note(0.999, 100_000) is None  # the default decay on a guide-sized run


def test_warning_starts_above_the_share():
    steps = round(2 / EMA_SPAN_WARN)  # decay 0.5 averages over 2 steps
    assert ema_lag_note(0.5, steps) is None
    assert ema_lag_note(0.5, steps - 1) is not None
