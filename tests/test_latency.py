import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch

import mbnas
from mbnas.__main__ import main
from mbnas.cost.block_set import arch_entries, block_set_digest, space_entries
from mbnas.cost.device_script import (
    NETWORK_REPEATS,
    error_summary,
    fit_line,
    fit_model,
    fit_overhead,
    generated_weights,
    keep_freed_memory,
    measure_in_chunks,
    onnxruntime_call,
    predict,
    print_check,
)
from mbnas.cost.latency import Latency, LatencyConfig, measure
from mbnas.cost.latency_table import LatencyTable
from mbnas.cost.runtimes import onnx_bytes, without_weights
from mbnas.errors import ConfigError
from mbnas.search.latency import LatencyEstimateConfig, MeasuredLatency, latency_estimator
from mbnas.space import available_spaces, load_space
from mbnas.space_latency import check_space_table

FIXTURES = Path(__file__).parent / "fixtures"
MICRO_SPACE = FIXTURES / "micro_space.yaml"
TINY_SPACE = FIXTURES / "tiny_space.yaml"
QUICK = ["calibrate=3", "check=2", "latency.repeats=2", "latency.warmup=1"]


def build_table(tmp_path: Path, runtime: str, *extra: str) -> Path:
    out = tmp_path / f"micro-{runtime}.json"
    assert main(["latency", "build", f"space={MICRO_SPACE}", f"out={out}",
                 f"latency.runtime={runtime}", "format=json", *QUICK, *extra]) == 0
    return out


def test_measured_latency_is_a_positive_median():
    latency = measure("mobilenet_v3_small", threads=1, warmup=1, repeats=3)
    assert latency.median_ms > 0 and latency.repeats == 3 and latency.threads == 1


def test_onnxruntime_measures_the_exported_network():
    pytest.importorskip("onnxruntime")
    latency = measure("mobilenet_v3_small", warmup=1, repeats=3, runtime="onnxruntime")
    assert latency.median_ms > 0 and latency.runtime == "onnxruntime"


def test_entries_cover_stem_every_block_and_head():
    arch = mbnas.load_arch("mobilenet_v2")
    keys = [e.key for e in arch_entries(arch)]
    assert keys[0].startswith("stem|") and keys[-1].startswith("head|")
    assert len(keys) == arch.total_blocks + 2
    assert "|r112" in keys[1]  # the first block sees the stem's 112x112 output
    v1 = arch_entries(mbnas.load_arch("mobilenet_v1"))  # a head without a 1x1 conv
    assert v1[-1].key.startswith("head|1024|None|") and v1[-1].module() is not None


@pytest.mark.parametrize("name", [*available_spaces(), str(TINY_SPACE)])
def test_a_spaces_block_set_holds_every_members_entries(name):
    space = load_space(name)
    keys = {e.key for e in space_entries(space)}
    rng = random.Random(0)
    for arch in [space.smallest(), space.largest(), *(space.sample_random(rng) for _ in range(30))]:
        assert {e.key for e in arch_entries(arch)} <= keys


def test_a_block_set_holds_heads_with_and_without_a_hidden_layer():
    space = load_space(MICRO_SPACE).replace(head_hidden=(None, 64))
    keys = {e.key for e in space_entries(space)}
    for arch in (space.smallest(), space.largest()):
        assert {e.key for e in arch_entries(arch)} <= keys
    assert space.smallest().head.hidden is None and space.largest().head.hidden == 64


def test_block_sets_differ_between_spaces_and_choices():
    micro = load_space(MICRO_SPACE)
    digest = block_set_digest(e.key for e in space_entries(micro))
    assert digest == block_set_digest(e.key for e in reversed(space_entries(micro)))
    assert digest != block_set_digest(e.key for e in space_entries(micro.replace(resolution=64)))
    assert digest != block_set_digest(e.key for e in space_entries(load_space(TINY_SPACE)))


def test_the_line_is_fitted_robustly_and_the_overhead_paid_once():
    pairs = [(x, 0.5 + 2.0 * x) for x in (1.0, 2.0, 3.0, 4.0)] + [(2.5, 40.0)]  # one outlier
    assert fit_line(pairs) == pytest.approx({"offset_ms": 0.5, "scale": 2.0})
    overhead = fit_overhead([(n, 0.01 + 2e-7 * n) for n in (100, 10_000, 1_000_000)])
    assert overhead == pytest.approx({"call_overhead_ms": 0.01, "overhead_ms_per_element": 2e-7})
    table = {"model": {**overhead, "offset_ms": 0.2, "scale": 1.0, "scale_per_mparam": 0.0,
                       "mparams_range": [0.0, 1.0]},
             "entries": {"a": 1.11, "b": 2.21}, "elements": {"a": 0, "b": 500_000},
             "params": {"a": 1000, "b": 2000}}
    assert predict(table, ["a", "b", "a"]) == pytest.approx(0.2 + 1.1 + 2.1 + 1.1)
    # A negative offset (fitted under load, say) never predicts less than one call.
    table["model"]["offset_ms"] = -5.0
    assert predict(table, ["a"]) == pytest.approx(0.01)
    errors = error_summary([{"error": e} for e in (0.01, -0.02, 0.03, -0.5)])
    assert errors["median_abs_error"] == pytest.approx(0.025)
    assert errors["p90_abs_error"] == errors["max_abs_error"] == 0.5


def test_networks_with_more_weights_are_fitted_a_larger_scale_held_to_the_calibrated_range():
    def truth(work: float, mparams: float) -> float:
        return 0.1 + (1.05 + 0.04 * mparams) * work

    members = [(w, m) for w, m in zip((1.0, 2.0, 1.5, 3.0, 2.5, 1.2, 4.0, 2.2),
                                      (0.3, 2.5, 1.0, 0.6, 3.5, 2.0, 1.5, 0.9))]
    points = [(w, m, truth(w, m)) for w, m in members]
    points[3] = (3.0, 0.6, 3 * truth(3.0, 0.6))  # a timing spoilt by another process
    model = fit_model(points)
    assert model["offset_ms"] == pytest.approx(0.1, abs=1e-3)
    assert model["scale"] == pytest.approx(1.05, abs=1e-3)
    assert model["scale_per_mparam"] == pytest.approx(0.04, abs=1e-3)
    assert model["mparams_range"] == [0.3, 3.5]
    # Too few members for three coefficients: the robust line alone.
    assert fit_model(points[:4])["scale_per_mparam"] == 0.0
    # A network beyond the calibrated range is predicted with the scale at the range's end.
    table = {"model": {**model, "call_overhead_ms": 0.0, "overhead_ms_per_element": 0.0},
             "entries": {"big": 2.0}, "elements": {"big": 0}, "params": {"big": 9_000_000}}
    assert predict(table, ["big"]) == pytest.approx(truth(2.0, 3.5), rel=1e-3)


FAULTS_SCRIPT = """
import resource, sys, torch
from mbnas.cost.device_script import keep_freed_memory
variant, count, elements, warmup = sys.argv[1], *map(int, sys.argv[2:])
if variant == "kept":
    keep_freed_memory()
for _ in range(warmup):  # the heap grows to what the loop needs
    blocks = [torch.ones(elements) for _ in range(count)]
    del blocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    blocks = [torch.ones(elements) for _ in range(count)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(variant: str, count: int, elements: int, warmup: int = 2) -> int:
    """Page faults of five rounds of ``count`` float32 blocks of ``elements``, made and freed
    after ``warmup`` such rounds, in a new process with glibc's defaults (``system``) or freed
    memory kept (``kept``)."""
    done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, variant, str(count),
                           str(elements), str(warmup)], check=True, capture_output=True,
                          text=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_measurements_keep_freed_memory_so_calls_do_not_fault_pages_in_anew():
    # 40 blocks of 4 MB (a layer's activations), 1,024 pages each: glibc's defaults faulted all
    # 40,800 pages in anew in 5 of 6 runs (one block's 1,024 in the sixth; later 3 blocks' in 2
    # of 8); kept memory none in 10 of 12 runs, three blocks' in two, and later four blocks' in
    # 2 of 8. So the middle of three runs is judged against a quarter of the loop's pages.
    rounds = (8, 1 << 20)
    kept = sorted(page_faults("kept", *rounds) for _ in range(3))
    assert kept[1] < 40 * 1024 // 4, f"{kept} faults (defaults: {page_faults('system', *rounds)})"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_memory_holds_blocks_above_glibcs_largest_mmap_threshold():
    # A block of 48 MB, as PyTorch makes at every call of a large convolution to reorder its
    # weights: glibc maps blocks of 32 MB and more on their own whatever the threshold, so each
    # round faulted its 12,288 pages in anew. Kept, the heap grows for the first rounds (PyTorch
    # asks for 64-byte alignment, a little more than a freed block holds, until freed blocks
    # lie side by side: 7 rounds, 336 MB, in one run) and then serves every round.
    rounds = (1, 12 << 20, 12)
    kept = page_faults("kept", *rounds)
    assert kept < 5 * 12 * 1024 // 4, f"{kept} faults (defaults: {page_faults('system', *rounds)})"


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_table_build_and_lookup_round_trip(tmp_path, capsys, runtime):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    path = build_table(tmp_path, runtime)
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    space = load_space(MICRO_SPACE)
    assert built["entries"] == len(space_entries(space)) and built["complete"]
    table = LatencyTable.load(path)
    meta = table.meta
    assert meta["runtime"] == runtime and meta["threads"] == 1 and meta["batch"] == 1
    assert (meta["dtype"], meta["layout"]) == ("float32", "NCHW")
    assert runtime in meta["versions"] and meta["device"] and meta["date"]
    assert meta["allocator"] == keep_freed_memory()
    assert meta["other_cores"] is None or meta["other_cores"] >= 0  # None: under a second
    table.check_space(space)
    member = space.sample_random(random.Random(3))
    assert table.predict(member) > 0
    estimate = latency_estimator(LatencyEstimateConfig(mode="table", table=str(path)), space)
    assert estimate(member) == pytest.approx(table.predict(member))

    assert main(["latency", "check", f"space={MICRO_SPACE}", f"latency.table={path}", "check=2",
                 "latency.repeats=2", "latency.warmup=1", "format=json"]) == 0
    checked = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert checked["runtime"] == runtime and len(checked["checks"]) == 2
    assert checked["median_abs_error"] >= 0 and checked["p90_abs_error"] >= 0
    assert checked["drift"] is not None and checked["drift_corrected"]["median_abs_error"] >= 0
    assert "other_cores" in checked


def test_entries_are_measured_in_one_mixed_order_and_stored_by_key(tmp_path, monkeypatch, capsys):
    orders = []

    def recording(makers, *args, **kwargs):
        orders.append(list(makers))
        return measure_in_chunks(makers, *args, **kwargs)

    monkeypatch.setattr("mbnas.cost.device_script.measure_in_chunks", recording)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first = json.loads(build_table(tmp_path / "a", "torch").read_text())
    build_table(tmp_path / "b", "torch")
    entry_orders = [order for order in orders if set(order) == set(first["entries"])]
    assert len(entry_orders) == 2 and entry_orders[0] == entry_orders[1]  # the same shuffle
    assert entry_orders[0] != sorted(entry_orders[0])  # not one kind of block after another
    assert list(first["entries"]) == sorted(first["entries"])


def test_whole_networks_are_timed_with_more_repeats_than_blocks(tmp_path, monkeypatch, capsys):
    # A whole network meets more interference than a block; its minimum needs more samples.
    repeats = {}

    def recording(makers, warmup, count, *args, **kwargs):
        kinds = {"entries" if "|" in name else "networks" for name in makers}
        repeats.setdefault(kinds.pop(), set()).add(count)
        return measure_in_chunks(makers, warmup, count, *args, **kwargs)

    monkeypatch.setattr("mbnas.cost.device_script.measure_in_chunks", recording)
    monkeypatch.setattr("mbnas.space_latency.measure_in_chunks", recording)
    table = LatencyTable.load(build_table(tmp_path, "torch"))  # latency.repeats=2
    check_space_table(load_space(MICRO_SPACE), table, members=2, seed=7, warmup=1, repeats=2)
    assert repeats == {"entries": {2}, "networks": {2 * NETWORK_REPEATS}}
    assert table.meta["network_repeats"] == 2 * NETWORK_REPEATS


def test_a_check_tells_the_machines_drift_from_the_tables_error(tmp_path, monkeypatch, capsys):
    table = LatencyTable.load(build_table(tmp_path, "torch"))
    then = {n["name"]: n["measured_ms"] for n in table.document["networks"]}

    def twice_as_slow_now(makers, *args, **kwargs):
        # The table's members take twice what they took; the members checked take exactly
        # twice the table's prediction.
        now = {name: 2 * then[name] if name in then else 2 * predicted[name] for name in makers}
        return {name: {"median_ms": ms, "min_ms": ms, "spread": 0.0} for name, ms in now.items()}

    space = load_space(MICRO_SPACE)
    rng = random.Random(7)  # the members `check seed=7` draws
    predicted = {f"member-{i:03d}": table.predict(space.sample_random(rng)) for i in range(2)}
    monkeypatch.setattr("mbnas.space_latency.measure_in_chunks", twice_as_slow_now)
    result = check_space_table(space, table, members=2, seed=7, warmup=1, repeats=2)
    assert result["drift"] == pytest.approx(1.0)
    assert result["median_abs_error"] == pytest.approx(0.5)
    assert result["drift_corrected"]["max_abs_error"] == pytest.approx(0.0, abs=1e-9)


def test_a_table_for_another_space_or_block_set_is_refused(tmp_path, capsys):
    path = build_table(tmp_path, "torch")
    table = LatencyTable.load(path)
    with pytest.raises(ConfigError, match="built for space 'micro', not 'tiny'"):
        table.check_space(load_space(TINY_SPACE))
    micro = load_space(MICRO_SPACE)
    with pytest.raises(ConfigError, match="another block set"):
        table.check_space(micro.replace(resolution=64))
    with pytest.raises(ConfigError, match="built for 10 classes, the search has 100"):
        table.check_space(micro.replace(num_classes=100))
    capsys.readouterr()
    assert main(["latency", "check", f"space={TINY_SPACE}", f"latency.table={path}"]) == 2
    assert "was built for space 'micro'" in capsys.readouterr().err
    older = json.loads(path.read_text())
    older["format"] = "mbnas-latency-table/1"
    path.write_text(json.dumps(older))
    with pytest.raises(ConfigError, match="format mbnas-latency-table/1, this mbnas reads .*"
                                          "rebuild it with `python -m mbnas latency build "
                                          "space=micro"):
        LatencyTable.load(path)


def test_a_sampled_table_refuses_members_it_lacks(tmp_path, capsys):
    path = build_table(tmp_path, "torch", "members=0", "calibrate=2", "check=0")
    table = LatencyTable.load(path)
    assert not table.meta["complete"]
    space = load_space(MICRO_SPACE)
    lacking = next(a for a in (space.sample_random(random.Random(i)) for i in range(50))
                   if table.missing(a))
    with pytest.raises(ConfigError, match="has no entry for"):
        table.predict(lacking)


def test_exported_blocks_measured_by_the_device_script_make_a_table(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    bundle = tmp_path / "bundle"
    assert main(["latency", "export", f"space={MICRO_SPACE}", f"out={bundle}", "calibrate=3",
                 "check=2"]) == 0
    assert (bundle / "measure_blocks.py").is_file() and (bundle / "manifest.json").is_file()
    namespace: dict = {"__name__": "device"}  # run the copy, as a device would, not mbnas's
    exec(compile((bundle / "measure_blocks.py").read_text(), "measure_blocks.py", "exec"),
         namespace)
    out = tmp_path / "device-table.json"
    assert namespace["main"]([str(bundle), "--repeats", "2", "--warmup", "1",
                              "--out", str(out)]) == 0
    table = LatencyTable.load(out)
    table.check_space(load_space(MICRO_SPACE))
    assert table.meta["runtime"] == "onnxruntime" and "onnxruntime" in table.meta["versions"]
    assert table.predict(load_space(MICRO_SPACE).smallest()) > 0
    # Later, on the device: does the table still hold? Its members timed again, its drift.
    capsys.readouterr()
    assert namespace["main"]([str(bundle), "--check", str(out), "--repeats", "2",
                              "--warmup", "1"]) == 0
    printed = capsys.readouterr().out
    assert "error on 2 members: median" in printed and "drift: the calibration members" in printed
    for change in ("block set", "members"):
        other = json.loads(out.read_text())
        if change == "block set":
            other["meta"]["block_set"] = "another"
        else:  # another export's members (another seed) under the same names
            other["networks"][0]["keys"] = other["networks"][0]["keys"][1:]
        (tmp_path / "other.json").write_text(json.dumps(other))
        with pytest.raises(SystemExit, match="not one measured from the bundle"):
            namespace["main"]([str(bundle), "--check", str(tmp_path / "other.json")])
    with pytest.raises(SystemExit, match="missing.json: cannot read the table"):
        namespace["main"]([str(bundle), "--check", str(tmp_path / "missing.json")])
    # The bundle carries the weights' shapes, not their values: the script generates them.
    manifest = json.loads((bundle / "manifest.json").read_text())
    models = [*manifest["entries"], *manifest["networks"]]
    left_out = sum(4 * math.prod(w["shape"]) for m in models for w in m["weights"])
    files = sum((bundle / m["file"]).stat().st_size for m in models)
    assert files < left_out / 2  # with the weights inside, the files would outweigh them


def test_a_model_without_its_weights_runs_on_generated_ones():
    pytest.importorskip("onnxruntime")
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.BatchNorm2d(64),
                                 torch.nn.ReLU(), torch.nn.Conv2d(64, 128, 3))
    shape = (1, 3, 16, 16)
    real = onnx_bytes(module, shape)
    stripped, weights = without_weights(real)
    assert len(stripped) < len(real) / 20
    assert {tuple(w["shape"]) for w in weights} >= {(128, 64, 3, 3)}
    arrays = generated_weights(weights)
    assert all(arrays[w["name"]].shape == tuple(w["shape"]) for w in weights)
    (output,) = onnxruntime_call(stripped, shape, 1, weights)()
    assert output.shape == (1, 128, 12, 12) and numpy.isfinite(output).all()
    assert 0 < numpy.abs(output).std() < 100  # activations neither vanish nor blow up


def test_the_former_command_form_says_what_to_do(capsys):
    assert main(["latency", f"space={MICRO_SPACE}"]) == 2
    assert "latency build" in capsys.readouterr().err
    assert main(["latency", "build", f"space={MICRO_SPACE}"]) == 2
    assert "out: required" in capsys.readouterr().err


def test_table_mode_without_a_table_says_how_to_build_one():
    with pytest.raises(ConfigError, match="latency build space=micro"):
        latency_estimator(LatencyEstimateConfig(mode="table"), load_space(MICRO_SPACE))


def test_a_busy_machine_is_reported_once(monkeypatch, capsys):
    noisy = Latency(median_ms=10.0, min_ms=8.0, iqr_ms=5.0, repeats=10, threads=1)
    monkeypatch.setattr("mbnas.search.latency.measure_config", lambda arch, cfg: noisy)
    estimate = MeasuredLatency(LatencyConfig())
    arch = load_space(MICRO_SPACE).smallest()
    assert [estimate.measure(arch) for _ in range(4)] == [8.0] * 4  # the minimum, by default
    assert capsys.readouterr().out == ""  # one noisy candidate, or four, may be bad luck
    for _ in range(3):
        estimate.measure(arch)
    assert capsys.readouterr().out.count("varied 50% across repeats") == 1
    assert noisy.busy and not Latency(10.0, 9.9, 0.2, 10, 1).busy


def test_cpu_clock_times_one_thread_and_refuses_more():
    latency = measure("mobilenet_v3_small", warmup=1, repeats=3, clock="cpu")
    assert latency.median_ms > 0 and latency.min_ms <= latency.median_ms
    with pytest.raises(ConfigError, match="latency.clock"):
        LatencyConfig(clock="cpu", threads=2).settings()
    with pytest.raises(ConfigError, match="latency.runtime"):
        LatencyConfig(runtime="tensorrt").settings()


def test_latency_states_the_dtype_and_layout_it_measured():
    default = measure("mobilenet_v3_small", warmup=1, repeats=2)
    assert (default.dtype, default.layout) == ("float32", "NCHW")
    small = load_space(TINY_SPACE).smallest()
    other = measure(small, warmup=1, repeats=2, dtype="bfloat16", layout="NHWC")
    assert (other.dtype, other.layout) == ("bfloat16", "NHWC") and other.median_ms > 0
    with pytest.raises(ConfigError, match="float32 NCHW"):
        LatencyConfig(runtime="onnxruntime", layout="NHWC").settings()
    with pytest.raises(ConfigError, match="latency.dtype"):
        LatencyConfig(dtype="int8").settings()


def test_a_bundle_without_the_onnx_package_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    assert main(["latency", "export", f"space={MICRO_SPACE}", f"out={tmp_path / 'b'}"]) == 2
    assert "needs the onnx package: `pip install -c constraints.txt -e \".[onnx]\"`" in (
        capsys.readouterr().err)
    assert main(["latency", "build", f"space={MICRO_SPACE}", f"out={tmp_path / 't.json'}",
                 "latency.runtime=onnxruntime", *QUICK]) == 2
    assert "needs the onnx package" in capsys.readouterr().err


def test_a_device_check_without_check_members_gives_the_drift_alone(capsys):
    result = {"checks": [], "median_abs_error": None, "p90_abs_error": None, "drift": 0.05,
              "drift_corrected": {"median_abs_error": None, "p90_abs_error": None},
              "busy": False}
    assert print_check(result) == 0
    printed = capsys.readouterr().out
    assert "no check members" in printed and "run +5.0% against the build\n" in printed
