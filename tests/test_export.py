import pytest
import torch

import mbnas
from mbnas.export import arch_string, export_arch, export_onnx, export_torchscript, export_trial

TINY = mbnas.ArchSpec.from_dict({
    "name": "tiny", "resolution": 32, "num_classes": 10, "stem": {"out": 8},
    "stages": [{"block": "fused", "expand": 2, "out": 16, "depth": 2, "stride": 2},
               {"block": "mbconv", "expand": [3, 6], "kernel": 5, "out": 24, "stride": 2,
                "se": 0.25, "act": "hswish"}],
    "head": {"channels": 48}})


def test_timm_style_strings_follow_timm_notation():
    assert arch_string(mbnas.load_arch("efficientnet_b0"))[1] == ["ir_r2_k3_s2_e6_c24_se0.25_nsw"]
    assert arch_string(mbnas.load_arch("efficientnet_v2_s"))[0] == ["er_r2_k3_s1_e1_c24_nsw"]
    v2 = arch_string(mbnas.load_arch("mobilenet_v2"))
    assert v2[0] == ["ir_r1_k3_s1_e1_c16_nr6"] and v2[3] == ["ir_r4_k3_s2_e6_c64_nr6"]
    assert arch_string(TINY)[1] == ["ir_r1_k5_s2_e3_c24_se0.25_nhs",
                                    "ir_r1_k5_s1_e6_c24_se0.25_nhs"]


def test_exported_yaml_carries_comments_and_loads_back(tmp_path):
    path = export_arch(TINY, tmp_path / "best.yaml", {"accuracy": 0.5})
    text = path.read_text()
    assert text.startswith("# accuracy: 0.5") and "er_r2_k3_s2_e2_c16_nre" in text
    assert mbnas.load_arch(path) == TINY


def test_export_trial_writes_weights_that_load_strictly(tmp_path):
    model = mbnas.build(TINY)
    paths = export_trial(TINY, tmp_path / "best", {}, model, torchscript=True)
    assert [p.name for p in paths] == ["best.yaml", "best.pt", "best.torchscript.pt"]
    fresh = mbnas.build(mbnas.load_arch(paths[0]))
    fresh.load_state_dict(torch.load(paths[1]))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(fresh.eval()(x), model.eval()(x))


def test_torchscript_matches_the_network(tmp_path):
    model = mbnas.build(TINY).eval()
    path = export_torchscript(model, TINY, tmp_path / "m.pt")
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(torch.jit.load(str(path))(x), model(x), atol=1e-5)


def test_onnx_matches_the_network(tmp_path):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    from onnx.reference import ReferenceEvaluator

    model = mbnas.build(TINY).eval()
    path = export_onnx(model, TINY, tmp_path / "m.onnx")
    x = torch.randn(1, 3, 32, 32)
    (logits,) = ReferenceEvaluator(str(path)).run(None, {"image": x.numpy()})
    assert torch.allclose(torch.from_numpy(logits), model(x).detach(), atol=1e-4)
