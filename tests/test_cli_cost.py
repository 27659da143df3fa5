import json
import subprocess
import sys

import pytest

from mbnas.__main__ import main
from mbnas.cost.latency import Latency


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbnas", *args], capture_output=True, text=True,
                          timeout=300)


def test_cost_json_has_integer_macs_and_params(capsys):
    assert main(["cost", "arch=mobilenet_v2", "format=json", "latency.measure=false"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["macs"] == 300_774_272 and result["params"] == 3_504_872
    assert [row["name"] for row in result["stages"]][0] == "stem"


def test_cost_overrides_scale_the_network(capsys):
    main(["cost", "arch=mobilenet_v2", "format=json", "latency.measure=false", "width=0.75",
          "resolution=160"])
    result = json.loads(capsys.readouterr().out)
    assert result["resolution"] == 160 and result["macs"] < 300_774_272 * 0.75 * (160 / 224) ** 2


def test_cost_reports_the_configured_statistic_of_the_repeats(monkeypatch, capsys):
    timed = Latency(median_ms=10.0, min_ms=8.0, iqr_ms=1.0, repeats=5, threads=1)
    monkeypatch.setattr("mbnas.commands.cost.measure_config", lambda arch, cfg: timed)
    args = ["cost", "arch=mobilenet_v2", "format=json"]
    assert main(args) == 0
    fastest = json.loads(capsys.readouterr().out)
    assert main([*args, "latency.statistic=median"]) == 0
    typical = json.loads(capsys.readouterr().out)
    assert (fastest["latency_statistic"], fastest["latency_ms"]) == ("min", 8.0)
    assert (typical["latency_statistic"], typical["latency_ms"]) == ("median", 10.0)


def test_cost_table_with_measured_latency(tmp_path):
    arch = tmp_path / "mine.yaml"
    arch.write_text(
        "resolution: 32\nstem: {out: 8}\nstages:\n- {block: fused, expand: 2, out: 16}\n"
        "head: {channels: 32}\nnum_classes: 10\n")
    done = run_cli("cost", f"arch={arch}", "latency.repeats=3", "latency.warmup=1")
    assert done.returncode == 0, done.stderr
    assert "stage1" in done.stdout and "head" in done.stdout and " ms min (median " in done.stdout


@pytest.mark.parametrize("args, fragment", [
    (["arch=mobilenet_v9"], "efficientnet_b0"),
    (["widht=0.5"], "widht"),
    (["width=abc"], "width"),
    (["format=xml"], "table, json"),
    (["arch=/no/such/file.yaml"], "no such file"),
])
def test_bad_input_gives_one_message_and_no_traceback(args, fragment):
    done = run_cli("cost", "latency.measure=false", *args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_command_and_help():
    assert run_cli("frobnicate").returncode == 2
    done = run_cli("--help")
    assert done.returncode == 0 and "cost" in done.stdout
