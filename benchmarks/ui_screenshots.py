"""Check a search's TensorBoard and optuna-dashboard views in a real browser, with screenshots.

    python benchmarks/ui_screenshots.py [--run runs/<name>] [--out ui-screenshots]

Without ``--run`` it first runs a tiny search (the test fixture space, smoke preset) in a
temporary folder. It then serves the run with TensorBoard and optuna-dashboard, checks through
their JSON APIs what a user should see (the study views first, the warm-up curve, trials in
groups of ten, named objectives, constraints on every trial), and saves headless-Chromium
screenshots of each page into ``--out``. Prints one row per check and per screenshot.

Optional tools, not dependencies of mbnas (install them where you run this):

    apt-get install -y chromium          # or set CHROMIUM=/path/to/chrome
    pip install optuna-dashboard         # or --dashboard-path DIR holding it (pip --target DIR)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TINY_SEARCH = ["search", "+budget.macs=0.5M", "preset=smoke", "name=ui", "n_trials=12",
               f"space={ROOT / 'tests' / 'fixtures' / 'tiny_space.yaml'}",
               "data.synthetic_size=128"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 60.0) -> object:
    """GET ``url`` as JSON, retrying until the server is up or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def serve(stack: ExitStack, args: list[str], env: dict[str, str]) -> None:
    """Start a server for the duration of ``stack``."""
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)


def screenshot(url: str, path: Path, size: str = "1400,1600") -> str:
    """Save a headless-Chromium screenshot of ``url``; describe how much it shows."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "chromium"
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--window-size={size}", "--virtual-time-budget=20000",
                    f"--screenshot={path}", url], check=True, capture_output=True, timeout=180)
    with Image.open(path) as image:
        colours = len(image.convert("RGB").getcolors(1 << 24) or [])
    return f"{colours} colours"


def dashboard_command() -> list[str]:
    """optuna-dashboard's console script, or its entry point run by this Python."""
    script = shutil.which("optuna-dashboard")
    if script:
        return [script]
    return [sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; "
            "sys.exit(main())"]


def check(rows: list[tuple[str, str]], name: str, ok: bool, detail: str) -> None:
    rows.append((f"{'ok  ' if ok else 'FAIL'} {name}", detail))


def tensorboard_checks(base: str, rows: list[tuple[str, str]]) -> None:
    """The tags a user should see, in the order they sort."""
    scalars = get_json(f"{base}/data/plugin/scalars/tags")
    images = get_json(f"{base}/data/plugin/images/tags")
    groups = sorted({tag.split("/")[0] for tags in scalars.values() for tag in tags})
    check(rows, "TensorBoard groups sort study, supernet, trials, hparams",
          groups[0] == "1 study" and groups[1] == "2 supernet" and groups[-1] == "hparam",
          ", ".join(groups[:4]) + ", ...")
    figures = sorted(tag for tags in images.values() for tag in tags if tag.startswith("1 study"))
    check(rows, "study figures", len(figures) >= 3, ", ".join(figures))
    per_chart = max(sum(1 for tags in scalars.values() if tag in tags)
                    for tags in scalars.values() for tag in tags if tag.startswith("3 trials"))
    check(rows, "at most 10 trials per trial chart", per_chart <= 10, f"{per_chart} runs")


def dashboard_checks(base: str, rows: list[tuple[str, str]]) -> None:
    """Named objectives and constraints, as optuna-dashboard serves them."""
    study = get_json(f"{base}/api/studies/1")
    names = study.get("objective_names")
    check(rows, "dashboard objective names", bool(names) and names[0] == "accuracy", str(names))
    trials = study["trials"]
    constrained = sum(1 for t in trials if t.get("constraints"))
    check(rows, "dashboard constraints on trials", constrained == len(trials),
          f"{constrained} of {len(trials)} trials")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a search run folder; default: a tiny search")
    parser.add_argument("--out", type=Path, default=Path("ui-screenshots"))
    parser.add_argument("--dashboard-path", help="folder holding optuna_dashboard (pip --target)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if args.dashboard_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.dashboard_path,
                                                          env.get("PYTHONPATH")]))
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        run = args.run
        if run is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            subprocess.run([sys.executable, "-m", "mbnas", *TINY_SEARCH], cwd=folder, env=env,
                           check=True, capture_output=True)
            run = folder / "runs" / "ui"
        tb_port, dash_port = free_port(), free_port()
        serve(stack, [sys.executable, "-m", "tensorboard.main", "--logdir", str(run),
                      "--port", str(tb_port), "--host", "127.0.0.1"], env)
        storage = f"sqlite:///{(run / 'study.db').resolve()}"
        serve(stack, [*dashboard_command(), storage, "--port", str(dash_port),
                      "--host", "127.0.0.1"], env)
        tb, dash = f"http://127.0.0.1:{tb_port}", f"http://127.0.0.1:{dash_port}"
        rows: list[tuple[str, str]] = []
        tensorboard_checks(tb, rows)
        dashboard_checks(dash, rows)
        pages = {"tensorboard-timeseries": f"{tb}/#timeseries",
                 "tensorboard-images": f"{tb}/#images", "tensorboard-scalars": f"{tb}/#scalars",
                 "tensorboard-hparams": f"{tb}/#hparams",
                 "dashboard-study": f"{dash}/dashboard/studies/1",
                 "dashboard-trials": f"{dash}/dashboard/studies/1/trials"}
        for name, url in pages.items():
            path = args.out / f"{name}.png"
            rows.append((f"shot {path}", screenshot(url, path)))
    width = max(len(name) for name, _ in rows)
    for name, detail in rows:
        print(f"{name:<{width}}  {detail}")
    return 1 if any(name.startswith("FAIL") for name, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
