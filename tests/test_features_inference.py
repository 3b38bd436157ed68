"""How the backbone runs over many images: channels_last always, bf16 only where native and probed faster."""

import pytest
import torch
import torch.nn.functional as F

from conftest import smooth_textures
from pixelnn.features import inference as I
from pixelnn.features.backbones import load_backbone
from pixelnn.features.projection import fit_projection, project_taps
from pixelnn.regress.precision import Choice

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) float in [0, 1], plain NCHW."""
    return torch.from_numpy(smooth_textures(n, size, seed)).permute(0, 3, 1, 2).float().div(255).contiguous()


def test_taps_are_the_backbone_s_float32_taps_in_channels_last_whatever_the_input_layout():
    backbone = load_backbone("vgg16-hed")
    images = _images(3, 32, seed=0)
    with torch.no_grad():
        plain = backbone(images)
    taps = I.run_backbone(backbone, images)
    assert len(taps) == len(plain) == 5
    for t, p in zip(taps, plain):
        assert t.dtype == torch.float32 and t.shape == p.shape
        assert t.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(t, p, rtol=1e-4, atol=1e-3 * p.abs().max().item())


def test_bf16_taps_give_reduced_descriptors_within_a_cosine_of_0_999():
    """What `pass_arithmetic` may pick on a CPU with native bf16 (emulated elsewhere: slow, still correct)."""
    backbone = load_backbone("vgg16-hed")
    images = _images(2, 32, seed=1)
    fp32 = I.run_backbone(backbone, images, I.FP32)
    bf16 = I.run_backbone(backbone, images, Choice("bf16", True, ""))
    assert all(t.dtype == torch.float32 for t in bf16)
    basis = fit_projection(torch.randn(4000, sum(t.shape[1] for t in fp32)), 16)
    cos = F.cosine_similarity(project_taps(bf16, basis, (32, 32)), project_taps(fp32, basis, (32, 32)), dim=-1)
    assert cos.mean() >= 0.999
    assert not torch.equal(bf16[0], fp32[0])  # it really ran in bf16


def test_no_bf16_probe_where_the_cpu_would_emulate_it(monkeypatch):
    monkeypatch.setattr(I, "native_bf16", lambda: False)
    monkeypatch.setattr(I, "probe", lambda *a: pytest.fail("probed without native bf16"))
    choice = I.pass_arithmetic(torch.nn.Identity(), 96, 16, 10**6)
    assert choice.precision == "fp32" and choice.channels_last and "no native bf16" in choice.note


def test_a_short_pass_is_not_worth_the_probe_but_follows_one_already_made(monkeypatch):
    monkeypatch.setattr(I, "native_bf16", lambda: True)
    monkeypatch.setattr(I, "_PROBED", {})
    monkeypatch.setattr(I, "probe", lambda *a: pytest.fail("probed a short pass"))
    backbone = torch.nn.Identity()
    choice = I.pass_arithmetic(backbone, 96, 16, I.PROBE_MIN - 1)
    assert choice.precision == "fp32" and "not probed" in choice.note
    monkeypatch.setattr(I, "probe", lambda *a: Choice("bf16", True, "probed"))
    assert I.pass_arithmetic(backbone, 96, 16, I.PROBE_MIN).note == "probed"
    # a later short pass (the last chunk of a bank) is computed as the long one was
    assert I.pass_arithmetic(backbone, 96, 16, 10).note == "probed"
    # another size or batch is another probe
    assert "not probed" in I.pass_arithmetic(backbone, 64, 16, 10).note


class _FakeClock:
    """perf_counter for the probe: each backbone run advances it by what its precision 'costs'."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.now, self.seconds, self.runs = 0.0, seconds, []

    def perf_counter(self) -> float:
        return self.now

    def run_backbone(self, backbone, images, choice):
        self.runs.append((choice.precision, choice.channels_last, tuple(images.shape)))
        self.now += self.seconds[choice.precision]


@pytest.mark.parametrize(
    ("seconds", "picked"),
    [({"fp32": 1.0, "bf16": 0.5}, "bf16"), ({"fp32": 1.0, "bf16": 0.9}, "fp32"), ({"fp32": 1.0, "bf16": 2.0}, "fp32")],
)
def test_the_probe_keeps_bf16_only_when_it_is_measurably_faster(monkeypatch, seconds, picked):
    clock = _FakeClock(seconds)
    monkeypatch.setattr(I.time, "perf_counter", clock.perf_counter)
    monkeypatch.setattr(I, "run_backbone", clock.run_backbone)
    choice = I.probe(torch.nn.Identity(), 24, 4)
    assert choice.precision == picked and choice.channels_last
    assert {(p, cl) for p, cl, _ in clock.runs} == {("fp32", True), ("bf16", True)}
    assert {shape for _, _, shape in clock.runs} == {(4, 3, 24, 24)}
    assert f"fp32 {seconds['fp32'] / 4 * 1000:.1f}" in choice.note


def test_the_probe_runs_once_per_backbone_size_and_batch(monkeypatch):
    clock = _FakeClock({"fp32": 1.0, "bf16": 0.5})
    monkeypatch.setattr(I.time, "perf_counter", clock.perf_counter)
    monkeypatch.setattr(I, "run_backbone", clock.run_backbone)
    monkeypatch.setattr(I, "native_bf16", lambda: True)
    monkeypatch.setattr(I, "_PROBED", {})
    backbone = torch.nn.Identity()
    first = I.pass_arithmetic(backbone, 24, 4, I.PROBE_MIN)
    runs = len(clock.runs)
    assert first.precision == "bf16" and runs > 0
    assert I.pass_arithmetic(backbone, 24, 4, I.PROBE_MIN) is first and len(clock.runs) == runs
    I.pass_arithmetic(backbone, 24, 8, I.PROBE_MIN)
    assert len(clock.runs) == 2 * runs
