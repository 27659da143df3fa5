import pytest

from mbnas.budget import Budget, check_reachable
from mbnas.errors import ConfigError
from mbnas.units import format_count, parse_count, parse_milliseconds


@pytest.mark.parametrize("text, value", [("300M", 300_000_000), ("1.2G", 1_200_000_000),
                                         ("3e8", 300_000_000), (5_000_000, 5_000_000),
                                         ("5_000k", 5_000_000), ("250m", 250_000_000)])
def test_counts_as_people_write_them(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text, value", [("25ms", 25.0), (25, 25.0), ("0.025s", 25.0),
                                         ("12.5", 12.5)])
def test_milliseconds(text, value):
    assert parse_milliseconds(text) == value


@pytest.mark.parametrize("bad", ["300X", "lots", "-5M", "", True, "0"])
def test_malformed_counts_name_the_budget(bad):
    with pytest.raises(ConfigError, match="budget.macs.*300M"):
        Budget.from_config({"macs": bad})


def test_unknown_budget_key():
    with pytest.raises(ConfigError, match="budget.flops.*budget.macs"):
        Budget.from_config({"flops": "300M"})


def test_constraints_and_violations():
    budget = Budget.from_config({"macs": "300M", "latency_ms": "25ms"})
    assert budget.describe() == "macs ≤ 300.00M MACs, latency_ms ≤ 25.00 ms"
    fits = {"macs": 250e6, "params": 4e6, "latency_ms": 20.0}
    assert all(v <= 0 for v in budget.constraints(fits).values())
    assert budget.violations(fits) == []
    over = {"macs": 330e6, "params": 4e6, "latency_ms": 20.0}
    assert budget.constraints(over)["macs"] == pytest.approx(0.1)
    assert budget.violations(over) == ["330.00M MACs > budget 300.00M MACs"]
    assert budget.slug() == "macs300M-lat25ms"


def test_impossible_budget_names_the_smallest_reachable_cost():
    budget = Budget.from_config({"macs": "1M"})
    with pytest.raises(ConfigError, match=r"budget.macs.*smallest member.*12.00M MACs"):
        check_reachable(budget, {"macs": 12e6, "params": 1e6}, "default")
    check_reachable(Budget.from_config({"macs": "20M"}), {"macs": 12e6}, "default")


def test_format_count():
    assert format_count(300_774_272) == "300.77M" and format_count(999) == "999"


def test_within_budget_view_samples_only_members_that_fit():
    import random

    from mbnas.budget import WithinBudget
    from mbnas.cost import count
    from mbnas.space import load_space

    space = load_space("default")
    view = WithinBudget(space, Budget.from_config({"macs": "300M"}), probes=16)
    rng = random.Random(0)
    members = [view.sample_random(rng) for _ in range(10)]
    assert all(count(arch).macs <= 300e6 for arch in members)
    assert count(view.largest()).macs <= 300e6 < count(space.largest()).macs
    assert count(view.largest()).macs >= max(count(arch).macs for arch in members[:1])
    assert view.smallest() == space.smallest() and "macs≤300.00M" in view.name
    assert WithinBudget(space, Budget()).name == space.name
