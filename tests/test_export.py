import json

import numpy as np
import pytest
import torch

import mbnas
from mbnas.__main__ import main
from mbnas.errors import ConfigError
from mbnas.export import (
    ExportRequest,
    TimmUnsupported,
    arch_def,
    export_arch,
    export_onnx,
    export_torchscript,
    export_trial,
    timm_recipe,
)
from mbnas.trainer import load_weights

TINY = mbnas.ArchSpec.from_dict({
    "name": "tiny", "resolution": 32, "num_classes": 10, "stem": {"out": 8},
    "stages": [{"block": "fused", "expand": 2, "out": 16, "depth": 2, "stride": 2},
               {"block": "mbconv", "expand": [3, 6], "kernel": 5, "out": 24, "stride": 2,
                "se": 0.25, "act": "hswish"}],
    "head": {"channels": 48}})


def tiny_with(**stage) -> mbnas.ArchSpec:
    """TINY with its second stage replaced."""
    row = {"out": 24, "stride": 2, **({} if "mid" in stage else {"expand": 3}), **stage}
    return mbnas.ArchSpec.from_dict({**TINY.to_dict(), "stages": [
        {"block": "fused", "expand": 2, "out": 16, "depth": 2, "stride": 2}, row]})


# Each verified with benchmarks/timm_compat.py (timm 1.0.31): timm builds mbnas's network,
# parameters and outputs equal.
def test_timm_strings_of_the_references_are_timms_own():
    assert arch_def(mbnas.load_arch("efficientnet_b0"))[:2] == [
        ["ds_r1_k3_s1_c16_se0.25"], ["ir_r2_k3_s2_e6_c24_se0.25"]]
    assert arch_def(mbnas.load_arch("efficientnet_v2_s"))[:2] == [
        ["cn_r2_k3_s1_e1_c24_skip"], ["er_r4_k3_s2_e4_c48"]]
    v2 = arch_def(mbnas.load_arch("mobilenet_v2"))
    assert v2[0] == ["ds_r1_k3_s1_c16"] and v2[3] == ["ir_r4_k3_s2_e6_c64"]
    v3 = arch_def(mbnas.load_arch("mobilenet_v3_large"))
    assert v3[0] == ["ds_r1_k3_s1_c16_nre"]
    assert v3[3] == ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"]
    assert arch_def(TINY) == [["er_r2_k3_s2_e2_c16"],
                              ["ir_r1_k5_s2_e3_c24_se0.25_nhs", "ir_r1_k5_s1_e6_c24_se0.25_nhs"]]


def test_timm_recipe_names_class_head_and_layers():
    v3 = timm_recipe(mbnas.load_arch("mobilenet_v3_large"))
    assert v3["class"] == "MobileNetV3" and v3["arch_def"][-1] == ["cn_r1_k1_s1_c960"]
    assert v3["kwargs"] | {"act_layer": "hard_swish", "num_features": 1280, "stem_size": 16,
                           "se_from_exp": True} == v3["kwargs"]
    assert v3["kwargs"]["se_layer"] == {"gate_layer": "hard_sigmoid", "force_act_layer": "relu",
                                        "rd_round_fn": "round_channels"}
    assert v3["kwargs"]["norm_layer"] == {"eps": 0.001, "momentum": 0.01}
    b0 = timm_recipe(mbnas.load_arch("efficientnet_b0"))
    assert b0["class"] == "EfficientNet" and b0["kwargs"]["num_features"] == 1280
    assert b0["kwargs"]["se_layer"] == {"gate_layer": "sigmoid", "force_act_layer": "swish"}
    assert "norm_layer" not in b0["kwargs"]
    json.dumps(v3), json.dumps(b0)  # plain data only


@pytest.mark.parametrize("stage, message", [
    ({"block": "fused", "expand": 1, "se": 0.25, "stride": 1, "out": 16},
     "stage2.block1: a non-expanding Fused-MBConv with SE"),
    ({"block": "conv", "se": 0.25}, "stage2.block1: a conv with SE"),
    ({"block": "mbconv", "mid": 100}, "stage2.block1: expanded width 100"),
    ({"block": "skip"}, "stage2.block1: a skip layer that projects"),
    ({"block": "mbconv", "out": 20}, "stage2.block1: output width 20"),
])
def test_timm_refuses_what_it_cannot_build_naming_the_block(stage, message):
    with pytest.raises(TimmUnsupported, match=message):
        timm_recipe(tiny_with(**stage))


def test_mobilenet_v1_is_timms_own_and_one_px_stems_are_refused():
    # timm's mobilenetv1_100: dsa blocks (activated pointwise conv, no residual), no head conv.
    recipe = timm_recipe(mbnas.load_arch("mobilenet_v1"))
    assert recipe["arch_def"] == [["dsa_r1_k3_s1_c64"], ["dsa_r2_k3_s2_c128"],
                                  ["dsa_r2_k3_s2_c256"], ["dsa_r6_k3_s2_c512"],
                                  ["dsa_r2_k3_s2_c1024"]]
    assert recipe["kwargs"]["num_features"] == 0
    with pytest.raises(TimmUnsupported, match="stem: stride 1"):
        timm_recipe(TINY.replace(stem=TINY.stem.__class__(out=8, stride=1)))


def test_identity_skips_leave_no_timm_layer_and_non_expanding_blocks_use_ds_and_cn():
    arch = tiny_with(block=["mbconv", "skip", "fused"], expand=[1, 1, 1], stride=1, out=16)
    assert arch_def(arch)[1] == ["ds_r1_k3_s1_c16", "cn_r1_k3_s1_e1_c16_skip"]


def test_exported_yaml_carries_comments_writes_scalars_and_loads_back(tmp_path):
    arch = tiny_with(kernel=[5, 5], act=["relu", "relu"], depth=2)
    path = export_arch(arch, tmp_path / "best.yaml", {"accuracy": 0.5})
    text = path.read_text()
    assert text.startswith("# accuracy: 0.5") and "er_r2_k3_s2_e2_c16" in text
    assert "kernel: 5," in text and "act: relu}" in text and "[5, 5]" not in text
    assert mbnas.load_arch(path).stage_blocks() == arch.stage_blocks()
    refused = export_arch(tiny_with(block="conv", se=0.25), tmp_path / "conv.yaml").read_text()
    assert "# timm-style arch_def: none (stage2.block1: a conv with SE" in refused


def test_export_trial_writes_one_set_that_loads_strictly(tmp_path):
    model = mbnas.build(TINY)
    exported = export_trial(TINY, tmp_path / "best", {}, model, ExportRequest(torchscript=True))
    assert [p.name for p in exported.files] == ["best.yaml", "best.timm.json", "best.pt",
                                                "best.torchscript.pt"]
    assert json.loads((tmp_path / "best.timm.json").read_text()) == exported.timm
    fresh = mbnas.build(mbnas.load_arch(tmp_path / "best.yaml"))
    fresh.load_state_dict(torch.load(tmp_path / "best.pt"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(fresh.eval()(x), model.eval()(x))
    usage = exported.usage()
    assert "python -m mbnas train arch=" in usage and "torch.jit.load" in usage
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_an_interrupted_export_never_leaves_weights_of_another_trial(tmp_path, monkeypatch):
    export_trial(TINY, tmp_path / "best", {"trial": 1}, mbnas.build(TINY),
                 ExportRequest(torchscript=True))
    other = tiny_with(out=32)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mbnas.export.artefacts.export_torchscript", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_trial(other, tmp_path / "best", {"trial": 2}, mbnas.build(other),
                     ExportRequest(torchscript=True))
    # Interrupted before the swap: the old set is whole.
    load_weights(mbnas.build(mbnas.load_arch(tmp_path / "best.yaml")), tmp_path / "best.pt")
    monkeypatch.undo()
    export_trial(other, tmp_path / "best", {"trial": 2}, mbnas.build(other))
    assert not (tmp_path / "best.torchscript.pt").exists()  # the old set's, removed
    load_weights(mbnas.build(mbnas.load_arch(tmp_path / "best.yaml")), tmp_path / "best.pt")
    assert not list(tmp_path.glob(".*"))


def test_weights_of_another_architecture_are_refused_clearly(tmp_path):
    torch.save(mbnas.build(tiny_with(out=32)).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="weights do not match the architecture: .* tensors "
                                          "differ, first stages.1.0.*export the run again"):
        load_weights(mbnas.build(TINY), tmp_path / "w.pt")


def test_torchscript_matches_the_network_at_any_batch(tmp_path):
    model = mbnas.build(TINY).eval()
    path = export_torchscript(model, TINY, tmp_path / "m.pt")
    for batch in (1, 8):
        x = torch.randn(batch, 3, 32, 32)
        assert torch.allclose(torch.jit.load(str(path))(x), model(x), atol=1e-5)


def test_a_torch_export_program_matches_the_network_at_any_batch(tmp_path):
    model = mbnas.build(TINY).eval()
    exported = export_trial(TINY, tmp_path / "best", {}, model, ExportRequest(pt2=True))
    assert [p.name for p in exported.files][-1] == "best.pt2"
    assert "torch.export.load" in exported.usage()
    program = torch.export.load(tmp_path / "best.pt2").module()
    for batch in (1, 8):
        x = torch.randn(batch, 3, 32, 32)
        assert torch.allclose(program(x), model(x), atol=1e-5)


@pytest.mark.parametrize("dynamic_size", [False, True])
def test_onnx_runs_in_onnxruntime_at_batch_1_and_8(tmp_path, dynamic_size):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    model = mbnas.build(TINY).eval()
    path = export_onnx(model, TINY, tmp_path / "m.onnx", dynamic_size=dynamic_size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = [(1, 32), (8, 32)] + ([(3, 48)] if dynamic_size else [])
    for batch, size in shapes:
        x = torch.randn(batch, 3, size, size)
        (logits,) = session.run(None, {"image": x.numpy()})
        assert np.allclose(logits, model(x).detach().numpy(), atol=1e-5)


def test_a_network_trained_channels_last_exports_in_the_default_layout(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    model = mbnas.build(TINY).to(memory_format=torch.channels_last).eval()
    export_trial(TINY, tmp_path / "best", {}, model, ExportRequest(onnx=True))
    assert all(t.is_contiguous() for t in torch.load(tmp_path / "best.pt").values())
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)  # untouched
    session = ort.InferenceSession(str(tmp_path / "best.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)  # the batch axis stayed dynamic
    (logits,) = session.run(None, {"image": x.numpy()})
    assert np.allclose(logits, model(x).detach().numpy(), atol=1e-5)


def test_export_command_exports_a_standalone_architecture_as_json(tmp_path, capsys):
    assert main(["export", "arch=mobilenet_v3_small", f"out={tmp_path}", "format=json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["files"] == [str(tmp_path / "mobilenet_v3_small.yaml"),
                               str(tmp_path / "mobilenet_v3_small.timm.json")]
    assert result["timm"]["class"] == "MobileNetV3" and err == ""
    cifar_net = mbnas.load_space("cifar").smallest().save(tmp_path / "cifar_net.yaml")
    assert main(["export", f"arch={cifar_net}", f"out={tmp_path}", "format=json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["timm"] is None and "stem: stride 1" in result["timm_refused"]
    assert main(["export", f"out={tmp_path}"]) == 2
    assert "give exactly one of run= and arch=" in capsys.readouterr().err
