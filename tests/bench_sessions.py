"""Benchmark: what saving and loading a long session costs.

Builds a session step by step as the agent does (each step a tool result of
200 to 4,000 chars, a stats row and a memory update, then a save) and prints, at
1,000 and 10,000 steps: the size on disk, the median time of the last 100
saves, the time to load it, and the peak memory of that load.

    python tests/bench_sessions.py
    python tests/bench_sessions.py --agent /path/to/older/mini_coding_agent.py   # before a change

Not collected by pytest (the name does not start with test_).
"""

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "mini_coding_agent.py"
CHECKPOINTS = (1_000, 10_000)


def load_agent(path):
    """The agent module at `path` (this version, or an older one to compare with)."""
    spec = importlib.util.spec_from_file_location("agent_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(session, n):
    """One step's worth of changes, as the agent makes them."""
    session["history"].append({"role": "tool", "name": "read_file", "args": {"path": f"src/m{n % 40}.py"},
                               "content": "    x = compute(x)  # a line of code\n" * (5 + n % 100),
                               "created_at": "2026-11-25T00:00:00+00:00"})
    session["stats"].append({"prompt_chars": 30000 + n, "reused_chars": 29000, "prompt_eval_count": 9000,
                             "prompt_eval_cached_count": 8800, "prompt_eval_duration": 123456789,
                             "eval_count": 60, "eval_duration": 987654321, "done_reason": "stop"})
    memory = session["memory"]
    memory["files"] = (memory["files"] + [f"src/m{n % 40}.py"])[-8:]
    memory["notes"] = (memory["notes"] + [f"read_file: # src/m{n % 40}.py, {n} lines"])[-5:]


def size_on_disk(folder):
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", type=Path, default=AGENT, help="the agent file to measure")
    args = parser.parse_args()
    mca = load_agent(args.agent)
    print(f"agent: {args.agent}")
    print(f"{'steps':>7} {'on disk':>10} {'save (median)':>14} {'load':>9} {'load peak memory':>17}")
    with tempfile.TemporaryDirectory() as folder:
        store = mca.SessionStore(Path(folder))
        session = mca.new_session(folder)
        session["id"] = "long"
        times = []
        for n in range(1, max(CHECKPOINTS) + 1):
            step(session, n)
            started = time.perf_counter()
            store.save(session)
            times.append(time.perf_counter() - started)
            if n in CHECKPOINTS:
                started = time.perf_counter()
                loaded = mca.SessionStore(Path(folder)).load("long")
                took = time.perf_counter() - started
                assert len(loaded["history"]) == n
                tracemalloc.start()   # a second load, traced: tracing slows it down
                mca.SessionStore(Path(folder)).load("long")
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                print(f"{n:>7,} {size_on_disk(Path(folder)) / 2**20:>8.1f} MB "
                      f"{statistics.median(times[-100:]) * 1000:>11.2f} ms {took * 1000:>6.0f} ms "
                      f"{peak / 2**20:>14.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
