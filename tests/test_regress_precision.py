import time

import pytest
import torch

from pixelnn.errors import ConfigError
from pixelnn.regress import precision as P


def _timed_trial(seconds: dict[tuple[str, bool], float], calls: list):
    """A trial that sleeps as long as the given option 'takes', recording what was tried."""

    def trial(option: P.Choice) -> None:
        calls.append((option.precision, option.channels_last))
        time.sleep(seconds[(option.precision, option.channels_last)])

    return trial


def test_auto_never_tries_bf16_where_the_cpu_would_emulate_it(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda: False)
    calls = []
    choice = P.choose("auto", _timed_trial({("fp32", False): 0.002, ("fp32", True): 0.0}, calls))
    assert choice.precision == "fp32" and not choice.bf16
    assert {p for p, _ in calls} == {"fp32"}
    assert "no native bf16" in choice.note


def test_auto_takes_bf16_only_when_it_is_measurably_faster(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda: True)
    fast_bf16 = {("fp32", False): 0.03, ("fp32", True): 0.03, ("bf16", False): 0.01, ("bf16", True): 0.02}
    choice = P.choose("auto", _timed_trial(fast_bf16, []))
    assert choice.precision == "bf16" and not choice.channels_last and "measured faster" in choice.note
    slow_bf16 = {("fp32", False): 0.02, ("fp32", True): 0.01, ("bf16", False): 0.03, ("bf16", True): 0.03}
    choice = P.choose("auto", _timed_trial(slow_bf16, []))
    assert choice.precision == "fp32" and choice.channels_last and "not measurably faster" in choice.note


def test_a_fixed_precision_probes_only_the_layout(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda: False)
    for fixed in ("fp32", "bf16"):
        calls = []
        t = {(fixed, False): 0.0, (fixed, True): 0.01}
        choice = P.choose(fixed, _timed_trial(t, calls))
        assert choice.precision == fixed and not choice.channels_last
        assert {p for p, _ in calls} == {fixed} and "fixed by --precision" in choice.note


def test_unknown_precision_is_refused_by_name():
    with pytest.raises(ConfigError, match="fp16"):
        P.choose("fp16", lambda option: None)


def test_a_choice_sets_autocast_and_layout():
    x = torch.rand(2, 3, 8, 8)
    bf16 = P.Choice("bf16", True, "")
    with bf16.autocast():
        out = torch.nn.functional.conv2d(bf16.layout(x), torch.rand(4, 3, 3, 3))
    assert out.dtype == torch.bfloat16
    assert bf16.layout(x).is_contiguous(memory_format=torch.channels_last)
    fp32 = P.Choice("fp32", False, "")
    with fp32.autocast():
        assert torch.nn.functional.conv2d(fp32.layout(x), torch.rand(4, 3, 3, 3)).dtype == torch.float32
    assert fp32.layout(x).is_contiguous()


def test_cpu_summary_names_the_cpu_and_what_it_can_do():
    c = P.cpu_summary()
    assert c["model"] and c["torch_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "NEON", "SVE256", "VSX")
    assert isinstance(c["native_bf16"], bool) and c["native_bf16"] == P.native_bf16()
    assert c["model"] in P.describe_cpu()
