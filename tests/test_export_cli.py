"""End to end: a smoke search, exported with ONNX and TorchScript; every artefact loads and
computes what the exported architecture with its weights computes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mbnas
from mbnas.trainer import load_weights

pytestmark = pytest.mark.slow
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"


def mbnas_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MBNAS_CACHE": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "mbnas", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_search_export_and_every_artefact_computes_the_same(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    mbnas_cli("search", "+budget.macs=0.5M", "name=e2e", "n_trials=3", "preset=smoke",
              f"space={TINY_SPACE}", "data.synthetic_size=128", "latency=none", cwd=tmp_path)
    run = tmp_path / "runs" / "e2e"
    done = mbnas_cli("export", f"run={run}", "onnx=true", "torchscript=true", "pt2=true",
                     "keep_supernet=false",
                     "format=json", cwd=tmp_path)
    assert "warm-up" not in done.stderr and "Warning" not in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    names = {Path(p).name for p in result["files"]}
    assert {"best.yaml", "best.pt", "best.onnx", "best.torchscript.pt", "best.pt2"} <= names
    assert "supernet.pt" in done.stdout and not (run / "supernet.pt").exists()
    arch = mbnas.load_arch(run / "best.yaml")
    model = mbnas.build(arch).eval()
    load_weights(model, run / "best.pt")
    session = ort.InferenceSession(str(run / "best.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(run / "best.torchscript.pt"))
    program = torch.export.load(run / "best.pt2").module()
    for batch in (1, 8):
        x = torch.randn(batch, 3, arch.resolution, arch.resolution)
        expected = model(x).detach()
        assert torch.allclose(scripted(x), expected, atol=1e-5)
        assert torch.allclose(program(x), expected, atol=1e-5)
        (logits,) = session.run(None, {"image": x.numpy()})
        assert np.allclose(logits, expected.numpy(), atol=1e-5)
    if result["timm"] is not None:
        assert json.loads((run / "best.timm.json").read_text()) == result["timm"]
    else:
        assert result["timm_refused"] and "best.timm.json" not in names
