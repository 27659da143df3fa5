"""NAS-Bench-Macro in mbnas: op-list stages, the benchmark's space, its costs, its supernet, and
the code <-> ArchSpec helpers of benchmarks/nas_bench_macro.py.

Tests that need the benchmark's table (../shared/data/nas-bench-macro/) skip where it is absent;
the pinned costs below are copied from it, so the rest runs anywhere.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

import mbnas
from mbnas.arch import ArchSpec
from mbnas.errors import ConfigError
from mbnas.export import export_arch
from mbnas.space import space_from_dict

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "nas_bench_macro.py"
TABLE = ROOT / "../shared/data/nas-bench-macro/nas-bench-macro_cifar10.json"
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason=f"no NAS-Bench-Macro table at {TABLE}")

sys.path.insert(0, str(SCRIPT.parent))  # as when run: the script imports its sibling modules
_spec = importlib.util.spec_from_file_location("nas_bench_macro", SCRIPT)
nbm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbm)

SPACE = mbnas.load_space("nas_bench_macro")
# code: (params, MACs) as the table gives them (its `flops` are MACs)
PINNED = {"00000000": (387_882, 7_713_280), "22222222": (2_932_586, 105_660_928),
          "11111111": (1_588_874, 53_246_464), "01201201": (1_283_434, 46_109_184),
          "10000000": (396_298, 12_128_768), "12021012": (2_014_602, 67_092_992)}
# Skip at a strided first layer (a projection), in the middle, at the end; no skip; all skip.
CODES = ["00000000", "02010210", "20120012", "10201102", "22222222"]
LAYER_NAMES = {f"stage{i}.block{j}.op" for i, depth in ((1, 2), (2, 3), (3, 3))
               for j in range(1, depth + 1)}


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MBNAS_CACHE": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


# ---------------------------------------------------------------- op-list parsing


def op_space(ops, **stage) -> dict:
    return {"name": "ops", "resolution": 32, "num_classes": 10, "stem": {"out": 8, "stride": 1},
            "stages": [{"ops": ops, "depth": 2, "out": 16, "stride": 2, **stage}],
            "head": {"channels": 32}}


MBCONV = {"block": "mbconv", "kernel": 3, "expand": 3}


def test_op_list_reads_skip_named_and_default_named_ops():
    ops = ["skip", MBCONV, {"block": "ds", "kernel": 5, "act": "hswish"},
           {"block": "fused", "kernel": 3, "expand": 4, "name": "fused4"}]
    space = space_from_dict(op_space(ops))
    stage = space.stages[0]
    assert stage.op_names == ("skip", "mbconv_k3_e3_relu", "ds_k5_hswish", "fused4")
    assert stage.op("fused4").expand == 4 and stage.op("ds_k5_hswish").kernel == 5
    assert stage.block == () and space.size == 4 ** 2


@pytest.mark.parametrize("ops, stage, match", [
    (["skip", "mbconv3"], {}, r"ops\[1\]: unknown op 'mbconv3'"),
    ([], {}, "expected a non-empty list of ops"),
    (["skip", MBCONV], {"kernel": [3, 5]}, "kernel: given beside ops"),
    (["skip", MBCONV], {"block": "mbconv"}, "block: given beside ops"),
    (["skip", {"block": "ds", "kernel": 3, "expand": 3}], {}, "a ds op does not expand"),
    (["skip", {"block": "mbconv", "kernel": 3}], {}, "expand: missing for a mbconv op"),
    (["skip", MBCONV, dict(MBCONV)], {}, "op 'mbconv_k3_e3_relu' is listed twice"),
    ([{**MBCONV, "name": "a"}, {"block": "ds", "name": "a"}], {}, "op 'a' is listed twice"),
])
def test_op_list_errors_name_the_place_and_the_fix(ops, stage, match):
    with pytest.raises(ConfigError, match=match):
        space_from_dict(op_space(ops, **stage))


# ---------------------------------------------------------------- counting and building


@pytest.mark.parametrize("code", sorted(PINNED))
def test_params_and_macs_equal_the_table(code):
    cost = mbnas.count(nbm.arch_of_code(SPACE, code))
    assert (cost.params, cost.macs) == PINNED[code]


@needs_table
def test_every_code_costs_what_the_table_says(capsys):
    assert nbm.main(["--table", str(TABLE), "params"]) == 0
    assert "6561" in capsys.readouterr().out


@pytest.mark.parametrize("code", CODES)
def test_members_build_and_run(code):
    model = mbnas.build(nbm.arch_of_code(SPACE, code)).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("sharing", ["nested", "separate"])
def test_extracted_subnets_equal_the_supernet(sharing):
    torch.manual_seed(0)
    supernet = mbnas.Supernet(SPACE, sharing=sharing).eval()
    with torch.no_grad():  # informative BatchNorm statistics, not the identity
        for name, buffer in supernet.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    for code in CODES:
        arch = nbm.arch_of_code(SPACE, code)
        extracted, built = supernet.extract(arch).eval(), mbnas.build(arch).eval()
        built.load_state_dict(extracted.state_dict(), strict=True)
        supernet.set_active(arch)
        with torch.no_grad():
            outputs = [net(x) for net in (supernet, extracted, built)]
        assert outputs[0].abs().max() > 1e-3, code             # informative, not all zero
        for got in outputs[1:]:
            torch.testing.assert_close(got, outputs[0], rtol=1e-4, atol=1e-5)


def test_separate_weights_give_every_op_its_own():
    nested, separate = (sum(p.numel() for p in mbnas.Supernet(SPACE, sharing=s).parameters())
                        for s in ("nested", "separate"))
    assert separate > nested


# ---------------------------------------------------------------- sampling and membership


def test_sampled_trials_are_members_named_per_layer():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        arch = SPACE.sample(trial)
        assert SPACE.contains(arch) and set(trial.params) == LAYER_NAMES
        assert nbm.code_of_arch(SPACE, arch) == nbm.code_of_choices(SPACE, trial.params)


def test_size_smallest_and_largest():
    assert SPACE.size == 6561 == len(set(nbm.all_codes(SPACE)))
    assert nbm.code_of_arch(SPACE, SPACE.smallest()) == "00000000"
    assert nbm.code_of_arch(SPACE, SPACE.largest()) == "22222222"


@pytest.mark.parametrize("code", CODES)
def test_choices_replay_the_member(code):
    arch = nbm.arch_of_code(SPACE, code)
    replayed = SPACE.sample(optuna.trial.FixedTrial(SPACE.choices(arch)))
    assert replayed == arch.replace(name=SPACE.name)


def test_per_stage_op_lists_choose_one_op_per_stage():
    space = SPACE.replace(per="stage")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    arch = space.sample(trial)
    assert set(trial.params) == {"stage1.op", "stage2.op", "stage3.op"} and space.size == 27
    assert all(len({b.type for b in blocks}) == 1 for blocks in arch.stage_blocks())
    assert space.choices(arch) == trial.params


def test_equivalent_codes_are_the_same_network():
    # An identity skip moves freely within its stage; a strided (projecting) one does not.
    same = [nbm.arch_of_code(SPACE, code).replace(name="") for code in ("00010000", "00001000")]
    assert mbnas.count(same[0]) == mbnas.count(same[1])
    assert nbm.canonical_code(SPACE, "00001000") == nbm.canonical_code(SPACE, "00010000")
    assert nbm.canonical_code(SPACE, "00100000") != nbm.canonical_code(SPACE, "00010000")


# ---------------------------------------------------------------- export and the script


@pytest.mark.parametrize("write", [ArchSpec.save, export_arch], ids=["save", "export_arch"])
def test_arch_yaml_round_trips_to_its_code(write, tmp_path):
    for code in CODES:
        arch = nbm.arch_of_code(SPACE, code)
        loaded = ArchSpec.from_yaml(write(arch, tmp_path / f"{code}.yaml"))
        assert loaded == arch and nbm.code_of_arch(SPACE, loaded) == code


def test_arch_and_code_commands_invert_each_other(tmp_path, capsys):
    assert nbm.main(["arch", "12021012"]) == 0
    path = tmp_path / "a.yaml"
    path.write_text(capsys.readouterr().out)
    assert nbm.main(["code", str(path)]) == 0
    assert capsys.readouterr().out == "12021012\n"
    done = run("-m", "mbnas", "cost", f"arch={path}", "format=json", "latency.measure=false",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] == PINNED["12021012"][0]


@pytest.mark.parametrize("argv, match", [
    (["arch", "1202101"], "is not a code of space 'nas_bench_macro'; give 8 digits"),
    (["arch", "12031012"], "each 0 skip, 1 mbconv_k3_e3, 2 mbconv_k5_e6"),
    (["code", "mobilenet_v2"], "is not a choice of space 'nas_bench_macro'"),
    (["code", "missing.yaml"], "no such file"),
])
def test_bad_input_is_one_line_and_status_2(argv, match, capsys):
    assert nbm.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and err.startswith(f"nas_bench_macro {argv[0]}")


def test_non_member_yaml_names_where_it_differs(tmp_path, capsys):
    arch = nbm.arch_of_code(SPACE, "12021012")
    wider = (dataclasses.replace(arch.stages[0], out=48), *arch.stages[1:])
    path = arch.replace(stages=wider).save(tmp_path / "wide.yaml")
    assert nbm.main(["code", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from every member of space 'nas_bench_macro'" in err


@needs_table
def test_oracle_writes_a_row_per_sampler_and_budget(tmp_path, capsys):
    out = tmp_path / "oracle.json"
    argv = ["--table", str(TABLE), "oracle", "--budgets", "60M", "--seeds", "2",
            "--max-trials", "40", "--out", str(out)]
    assert nbm.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["sampler"] for row in rows] == ["tpe", "random", "nsga2"]
    for row in rows:
        for run in row["runs"]:
            assert not run["found"] or run["in_budget"] <= min(run["all"], 40)
    assert "| nsga2 | 60M |" in capsys.readouterr().out


@pytest.mark.slow
def test_smoke_search_exports_a_member_within_budget(tmp_path):
    done = run("-m", "mbnas", "search", "space=nas_bench_macro", "preset=smoke",
               "+budget.macs=40M", f"runs_dir={tmp_path / 'runs'}", "name=nbm", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    coded = run(str(SCRIPT), "code", str(tmp_path / "runs" / "nbm" / "best.yaml"), cwd=tmp_path)
    assert coded.returncode == 0, coded.stderr
    code = coded.stdout.strip()
    if TABLE.is_file():
        macs = json.loads(TABLE.read_text())[code]["flops"]
    else:
        macs = mbnas.count(nbm.arch_of_code(SPACE, code)).macs
    assert macs <= 40_000_000


CIFAR_TARBALL = ROOT / "../shared/data/cifar10-train-jpeg.tar.gz"


@needs_table
@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_TARBALL.is_file(), reason="no full CIFAR-10 in ../shared")
def test_optimum_scores_every_network_within_budget(tmp_path, capsys):
    out = tmp_path / "optimum.json"
    argv = ["--table", str(TABLE), "optimum", "--budgets", "13M", "--top", "3",
            "--set", "reference_archs=4", "--cache", str(tmp_path), "--out", str(out)]
    assert nbm.main(argv) == 0
    row = json.loads(out.read_text())["rows"][0]
    table = json.loads(TABLE.read_text())
    assert row["networks"] == row["in_budget"] == 4  # no two equivalent codes within 13M
    scores = [f["score"] for f in row["favourites"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    for favourite in row["favourites"]:
        assert table[favourite["code"]]["flops"] <= 13_000_000
        assert favourite["top_fraction"] in {0.25, 0.5, 0.75, 1.0}
    assert "networks scored" in capsys.readouterr().out


@needs_table
def test_optimum_refuses_a_budget_that_fits_no_code_before_any_work(tmp_path, capsys):
    argv = ["--table", str(TABLE), "optimum", "--budgets", "30M,5M", "--cache", str(tmp_path)]
    assert nbm.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5M MACs fits no code; the smallest needs 7.71M" in err
    assert not any(tmp_path.iterdir())  # nothing unpacked, nothing scored
