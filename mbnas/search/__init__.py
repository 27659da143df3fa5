"""The search: an Optuna study over a SearchSpace under hard MAC / parameter / latency budgets,
run in a run folder, reported and exported."""

from mbnas.search.config import ExportConfig, SearchConfig, space_defaults
from mbnas.search.report import format_report, report, report_run
from mbnas.search.run import export_run, load_run, run_search

__all__ = ["ExportConfig", "SearchConfig", "export_run", "format_report", "load_run", "report",
           "report_run", "run_search", "space_defaults"]
