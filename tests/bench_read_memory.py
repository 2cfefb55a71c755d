"""Benchmark: memory used by read_file on a 50 MB file (it should read only the lines it shows).

    python tests/bench_read_memory.py

Prints the peak memory Python allocated (tracemalloc) while reading lines 1-50
and the last 50 lines of a 50 MB file, next to reading the whole file into memory.
Not collected by pytest (the name does not start with test_).
"""

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mini_coding_agent as mca  # noqa: E402


def peak(action):
    """Peak bytes allocated while running action(), and its wall time."""
    tracemalloc.start()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top, seconds


def main():
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        line = "2026-11-24 03:55:00 INFO worker-7 processed job 123456 in 42 ms; queue depth 17\n"
        count = 50 * 1024 * 1024 // len(line)
        with open(root / "big.log", "w") as file:
            for _ in range(count // 1000):
                file.write(line * 1000)
        size = (root / "big.log").stat().st_size
        store = mca.SessionStore(root / ".mini-coding-agent" / "sessions")
        context = mca.WorkspaceContext(cwd=str(root), repo_root=str(root))
        agent = mca.MiniAgent(mca.FakeModelClient([]), context, store)
        lines = count // 1000 * 1000
        for label, args in [("read_file lines 1-50", {"path": "big.log", "start": 1, "end": 50}),
                            ("read_file the last 50 lines", {"path": "big.log", "start": lines - 49,
                                                             "end": lines})]:
            top, seconds = peak(lambda args=args: agent.run_tool("read_file", args))
            print(f"{label:<30} peak {top / 1024:>10,.0f} KiB   {seconds:6.2f} s   (file {size / 2**20:.0f} MiB)")
        top, seconds = peak(lambda: (root / "big.log").read_text().splitlines()[:50])
        print(f"{'whole file, for comparison':<30} peak {top / 1024:>10,.0f} KiB   {seconds:6.2f} s")


if __name__ == "__main__":
    main()
