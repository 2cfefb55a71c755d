"""Benchmark: does a model, or a change to the agent, get real coding work done?

Eight small coding tasks, each generated afresh in a temporary git repository
(a few files of code and a README), each with a check that can fail and never
asks a model.  The agent runs on each as a user would run it: the command line,
one-shot, `--approval auto`, inside the task's repository.  The figures come
from the session file the run leaves behind.

    python tests/bench_tasks.py --model qwen2.5-coder:1.5b
    python tests/bench_tasks.py --tasks fix_bug,rename --repeat 3 --json results.json

Standard library only, like the agent.  Not collected by pytest; its checks are
tested against scripted replies in tests/test_bench_tasks.py.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "mini_coding_agent.py"
RUN_TIMEOUT = 1200   # seconds one task run may take: a 1.5B model on 2 cores needs a few minutes


def code(text):
    """A file's text, written indented in this file for reading."""
    return textwrap.dedent(text).lstrip("\n")


def run_python(repo, *args, stdin=None):
    """Run Python in the task's repository; returns (exit code, stdout + stderr)."""
    try:
        done = subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True, input=stdin,
                              timeout=30)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    return done.returncode, done.stdout + done.stderr


def unittest_passes(repo, *args):
    """True if `python -m unittest` passes in the repository."""
    code_, output = run_python(repo, "-m", "unittest", *args)
    return code_ == 0 and "Ran 0 tests" not in output


def tool(name, **args):
    """A scripted reply that calls a tool, as the protocol teaches."""
    return "<tool>" + json.dumps({"name": name, "args": args}) + "</tool>"


def patch(path, old, new):
    """A scripted reply that patches a file, in the XML form."""
    return f'<tool name="patch_file" path="{path}"><old_text>{old}</old_text><new_text>{new}</new_text></tool>'


# --- port: answer a question about the code ---------------------------------------

PORT_FILES = {
    "README.md": "# tinyserve\n\nA tiny static file server for local development. Settings live in settings.py.\n",
    "settings.py": code("""
        # Settings of the development server.
        HOST = "127.0.0.1"
        PORT = 8731
        DEBUG = False
        """),
    "server.py": code("""
        import http.server

        from settings import HOST, PORT


        def main():
            server = http.server.HTTPServer((HOST, PORT), http.server.SimpleHTTPRequestHandler)
            server.serve_forever()


        if __name__ == "__main__":
            main()
        """),
}


def port_check(repo, answer):
    return "8731" in answer, f"answer: {answer[:80]!r}"


# --- locate: where is a function defined ------------------------------------------

LOCATE_FILES = {
    "README.md": "# timeutil\n\nHelpers for durations and timestamps.\n",
    "src/timeutil/__init__.py": "from .format import describe\nfrom .parsing import parse_duration\n",
    "src/timeutil/parsing.py": code('''
        import re

        UNITS = {"s": 1, "m": 60, "h": 3600}


        def parse_duration(text):
            """Seconds in a duration such as '1h30m' or '45s'."""
            return sum(int(n) * UNITS[unit] for n, unit in re.findall(r"(\\d+)([smh])", text))
        '''),
    "src/timeutil/format.py": code('''
        def describe(seconds):
            """A duration in words, e.g. '2 minutes'."""
            minutes, seconds = divmod(seconds, 60)
            return f"{minutes} minutes" if minutes else f"{seconds} seconds"
        '''),
    "tests/test_parsing.py": code("""
        import unittest

        from timeutil import parse_duration


        class TestParse(unittest.TestCase):
            def test_minutes(self):
                self.assertEqual(parse_duration("2m"), 120)
        """),
}


def locate_check(repo, answer):
    return "timeutil/parsing.py" in answer, f"answer: {answer[:80]!r}"


# --- fix_bug: make a failing test pass without touching it ------------------------

FIX_BUG_FILES = {
    "README.md": "# stats\n\nSmall statistics helpers. Run the tests with `python -m unittest`.\n",
    "stats.py": code('''
        def mean(numbers):
            """The arithmetic mean of a non-empty list of numbers."""
            return sum(numbers) / (len(numbers) + 1)


        def spread(numbers):
            """The largest number minus the smallest."""
            return max(numbers) - min(numbers)
        '''),
    "test_stats.py": code("""
        import unittest

        from stats import mean, spread


        class TestStats(unittest.TestCase):
            def test_mean(self):
                self.assertEqual(mean([2, 4, 6]), 4)

            def test_spread(self):
                self.assertEqual(spread([3, 9, 4]), 6)


        if __name__ == "__main__":
            unittest.main()
        """),
}


def fix_bug_check(repo, answer):
    untouched, passes = (repo / "test_stats.py").read_text() == FIX_BUG_FILES["test_stats.py"], unittest_passes(repo)
    return untouched and passes, f"tests pass: {passes}, test file untouched: {untouched}"


# --- implement: a function from its docstring, checked by tests the agent never sees

IMPLEMENT_FILES = {
    "README.md": "# textkit\n\nText helpers for URLs.\n",
    "textkit.py": code('''
        def slugify(text):
            """Turn a title into a URL slug.

            Lower-case the text, replace every run of characters that are not
            letters or digits with a single hyphen, and remove hyphens at the
            start and end.  slugify("Hello, World!") == "hello-world"
            """
            raise NotImplementedError
        '''),
}
IMPLEMENT_HIDDEN_TESTS = code("""
    import unittest
    from textkit import slugify

    class Hidden(unittest.TestCase):
        def test_examples(self):
            self.assertEqual(slugify("Hello, World!"), "hello-world")
            self.assertEqual(slugify("  Python 3.12 -- What's New?  "), "python-3-12-what-s-new")
            self.assertEqual(slugify("already-a-slug"), "already-a-slug")
            self.assertEqual(slugify("***"), "")

    unittest.main()
    """)


def implement_check(repo, answer):
    status, output = run_python(repo, "-", stdin=IMPLEMENT_HIDDEN_TESTS)
    return status == 0, output.strip().splitlines()[-1] if output.strip() else "no output"


# --- add_flag: a new command-line flag ----------------------------------------------

ADD_FLAG_FILES = {
    "README.md": "# greet\n\nUsage: `python greet.py NAME` prints a greeting.\n",
    "greet.py": code("""
        import argparse


        def main():
            parser = argparse.ArgumentParser(description="Greet someone.")
            parser.add_argument("name")
            args = parser.parse_args()
            print(f"Hello, {args.name}!")


        if __name__ == "__main__":
            main()
        """),
}


def add_flag_check(repo, answer):
    plain, loud = run_python(repo, "greet.py", "Bob"), run_python(repo, "greet.py", "--shout", "Bob")
    solved = plain == (0, "Hello, Bob!\n") and loud == (0, "HELLO, BOB!\n")
    return solved, f"plain {plain[1].strip()[:40]!r}, --shout {loud[1].strip()[:40]!r}"


# --- rename: a function, across several files -----------------------------------------

RENAME_FILES = {
    "README.md": "# billing\n\nInvoices. `billing.calc_total` adds up line items.\n",
    "billing.py": code('''
        def calc_total(items, tax_rate=0.0):
            """The total of (price, quantity) items, with tax."""
            subtotal = sum(price * quantity for price, quantity in items)
            return round(subtotal * (1 + tax_rate), 2)
        '''),
    "invoice.py": code("""
        from billing import calc_total


        def invoice_line(customer, items):
            return f"{customer}: {calc_total(items, tax_rate=0.2):.2f}"
        """),
    "test_billing.py": code("""
        import unittest

        from billing import calc_total
        from invoice import invoice_line


        class TestBilling(unittest.TestCase):
            def test_total(self):
                self.assertEqual(calc_total([(2.5, 2), (1.0, 3)]), 8.0)

            def test_line(self):
                self.assertEqual(invoice_line("ACME", [(10.0, 1)]), "ACME: 12.00")
        """),
}


def rename_check(repo, answer):
    left = [path.name for path in repo.glob("*.py") if "calc_total" in path.read_text()]
    defined = "def compute_total(" in (repo / "billing.py").read_text()
    return not left and defined and unittest_passes(repo), f"calc_total still in {left}" if left else ""


# --- write_tests: tests that pass on the module and catch a broken copy ---------------

WRITE_TESTS_FILES = {
    "README.md": "# stack\n\nA small stack class.\n",
    "stack.py": code('''
        class Stack:
            """Last in, first out."""

            def __init__(self):
                self.items = []

            def push(self, item):
                self.items.append(item)

            def pop(self):
                """Remove and return the newest item; IndexError if empty."""
                if not self.items:
                    raise IndexError("pop from an empty stack")
                return self.items.pop()

            def peek(self):
                return self.items[-1]

            def __len__(self):
                return len(self.items)
        '''),
}


def write_tests_check(repo, answer):
    if not (repo / "test_stack.py").is_file():
        return False, "no test_stack.py"
    passes = unittest_passes(repo, "test_stack")
    module = repo / "stack.py"
    module.write_text(module.read_text().replace("return self.items.pop()", "return self.items.pop(0)"))
    catches = not unittest_passes(repo, "test_stack")
    return passes and catches, f"pass on stack.py: {passes}, fail on a broken copy: {catches}"


# --- config: change one setting ------------------------------------------------------------

CONFIG_FILES = {
    "README.md": "# fetcher\n\nDownloads files. Settings are in config.ini.\n",
    "config.ini": "[network]\nmax_retries = 3\ntimeout = 30\n\n[logging]\nlevel = INFO\n",
    "fetcher.py": code("""
        import configparser

        config = configparser.ConfigParser()
        config.read("config.ini")
        RETRIES = config.getint("network", "max_retries")
        """),
}


def config_check(repo, answer):
    import configparser
    config = configparser.ConfigParser()
    try:
        config.read(repo / "config.ini")
        values = (config["network"]["max_retries"], config["network"]["timeout"], config["logging"]["level"])
    except (configparser.Error, KeyError) as exc:
        return False, f"config.ini lost a setting ({exc})"
    return values == ("5", "30", "INFO"), f"max_retries, timeout, level = {values}"


# --- the table ---------------------------------------------------------------------------

@dataclass
class Task:
    name: str
    request: str
    files: dict
    check: object      # check(repo, answer) -> (solved, what was seen)
    solution: list     # scripted replies that solve the task, for the benchmark's own tests


TASKS = [
    Task("port", "Which TCP port does the development server listen on? Answer with the number.",
         PORT_FILES, port_check,
         [tool("read_file", path="settings.py"), "<final>It listens on port 8731.</final>"]),
    Task("locate", "In which file is the function parse_duration defined? Answer with the file's path.",
         LOCATE_FILES, locate_check,
         [tool("search", pattern="def parse_duration"), "<final>src/timeutil/parsing.py</final>"]),
    Task("fix_bug", "The tests fail (python -m unittest). Fix the bug in stats.py so that they pass, "
         "without changing the tests.", FIX_BUG_FILES, fix_bug_check,
         [tool("read_file", path="stats.py"), patch("stats.py", "(len(numbers) + 1)", "len(numbers)"),
          tool("run_shell", command="python -m unittest"), "<final>Fixed the mean's divisor.</final>"]),
    Task("implement", "Implement slugify in textkit.py as its docstring describes.",
         IMPLEMENT_FILES, implement_check,
         [tool("read_file", path="textkit.py"),
          patch("textkit.py", "    raise NotImplementedError",
                '    import re\n    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")'),
          tool("run_shell", command="python -c \"import textkit; print(textkit.slugify('Hello, World!'))\""),
          "<final>slugify is implemented.</final>"]),
    Task("add_flag", "Add a --shout flag to greet.py that prints the greeting in upper case.",
         ADD_FLAG_FILES, add_flag_check,
         [tool("read_file", path="greet.py"),
          patch("greet.py", '    parser.add_argument("name")',
                '    parser.add_argument("name")\n    parser.add_argument("--shout", action="store_true")'),
          patch("greet.py", '    print(f"Hello, {args.name}!")',
                '    greeting = f"Hello, {args.name}!"\n    print(greeting.upper() if args.shout else greeting)'),
          tool("run_shell", command="python greet.py --shout Bob"), "<final>Added --shout.</final>"]),
    Task("rename", "Rename the function calc_total to compute_total everywhere in the project.",
         RENAME_FILES, rename_check,
         [tool("search", pattern="calc_total"),
          tool("run_shell", command="sed -i 's/calc_total/compute_total/g' billing.py invoice.py test_billing.py"),
          tool("run_shell", command="python -m unittest"), "<final>Renamed in three files.</final>"]),
    Task("write_tests", "Write unit tests for stack.py in a new file test_stack.py (use unittest).",
         WRITE_TESTS_FILES, write_tests_check,
         [tool("read_file", path="stack.py"),
          '<tool name="write_file" path="test_stack.py"><content>import unittest\nfrom stack import Stack\n\n\n'
          "class TestStack(unittest.TestCase):\n    def test_last_in_first_out(self):\n        s = Stack()\n"
          "        s.push(1)\n        s.push(2)\n        self.assertEqual(s.pop(), 2)\n\n"
          "    def test_empty_pop(self):\n        with self.assertRaises(IndexError):\n            Stack().pop()\n"
          "</content></tool>", tool("run_shell", command="python -m unittest test_stack"),
          "<final>Wrote test_stack.py.</final>"]),
    Task("config", "Set max_retries to 5 in config.ini.", CONFIG_FILES, config_check,
         [patch("config.ini", "max_retries = 3", "max_retries = 5"), "<final>max_retries is 5.</final>"]),
]


# --- running and measuring ----------------------------------------------------------------

def make_repo(task, root):
    """A fresh git repository holding the task's files, committed."""
    root.mkdir(parents=True)
    for name, text in task.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for command in (["init", "-q"], ["add", "."], ["-c", "user.email=bench@example.com", "-c", "user.name=bench",
                                                   "commit", "-q", "-m", "start"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)


def load_session(repo):
    """The session the run left, read by the agent's own loader (or as plain JSON, for older agents)."""
    folder = repo / ".mini-coding-agent" / "sessions"
    paths = list(folder.glob("*.json"))
    if len(paths) != 1:
        return None
    sys.path.insert(0, str(AGENT.parent))
    import mini_coding_agent as mca
    try:
        return mca.SessionStore(folder).load(paths[0].stem)
    except ValueError:
        return json.loads(paths[0].read_text())


def session_figures(repo):
    """What the run's session records: model calls, tool steps, malformed replies, tokens."""
    session = load_session(repo)
    if session is None:
        return {}
    history, stats = session["history"], session.get("stats", [])
    prompt, cached, new = (sum(row.get(key, 0) for row in stats)
                           for key in ("prompt_eval_count", "prompt_eval_cached_count", "eval_count"))
    malformed = [item for item in history if item["role"] == "assistant"
                 and item["content"].startswith("Runtime notice")]
    return {"calls": len(stats), "steps": sum(item["role"] == "tool" for item in history),
            "malformed": len(malformed), "prompt_tokens": prompt, "cached_tokens": cached, "new_tokens": new,
            "tokens": prompt + new}


def run_task(task, args, root):
    """Run the agent once on a fresh copy of the task; returns the run's figures."""
    repo = root / "repo"
    make_repo(task, repo)
    command = [sys.executable, str(args.agent), "--cwd", str(repo), "--approval", "auto"]
    for flag in ("host", "model", "num_ctx", "max_steps"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    started = time.monotonic()
    try:
        done = subprocess.run([*command, task.request], capture_output=True, text=True, timeout=args.timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
        answer, exit_code = done.stdout.strip(), done.returncode
    except subprocess.TimeoutExpired:
        answer, exit_code = "", "timeout"
    seconds = time.monotonic() - started
    solved, seen = task.check(repo, answer)
    return {"task": task.name, "solved": bool(solved), "exit": exit_code, "seconds": round(seconds, 1),
            "seen": seen, **session_figures(repo)}


def median(runs, key):
    """The median of a figure over some runs, or None if none has it."""
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def summary(runs, wall):
    """The figures over all runs: solve rate, and medians per solved task."""
    solved = [run for run in runs if run["solved"]]
    prompt, cached = sum(run.get("prompt_tokens", 0) for run in runs), sum(run.get("cached_tokens", 0) for run in runs)
    return {"runs": len(runs), "solved": len(solved), "solve_rate": round(len(solved) / max(len(runs), 1), 3),
            "median_calls_solved": median(solved, "calls"), "median_seconds_solved": median(solved, "seconds"),
            "median_tokens_solved": median(solved, "tokens"),
            "malformed": sum(run.get("malformed", 0) for run in runs),
            "cached_share": round(cached / prompt, 3) if prompt else None, "wall_seconds": round(wall, 1)}


def print_table(runs, totals):
    """Per task: how many runs solved it, and the median figures of its runs."""
    print(f"\n{'task':12} {'solved':>7} {'calls':>6} {'steps':>6} {'malformed':>9} {'prompt tok':>11} "
          f"{'cached':>7} {'new tok':>8} {'seconds':>8}")
    for task in dict.fromkeys(run["task"] for run in runs):
        mine = [run for run in runs if run["task"] == task]
        prompt = sum(run.get("prompt_tokens", 0) for run in mine)
        cached = sum(run.get("cached_tokens", 0) for run in mine) / prompt if prompt else 0
        cells = [median(mine, key) for key in ("calls", "steps", "malformed", "prompt_tokens")]
        print(f"{task:12} {sum(run['solved'] for run in mine):>3}/{len(mine):<3} "
              + " ".join(f"{'-' if value is None else f'{value:g}':>{width}}"
                         for value, width in zip(cells, (6, 6, 9, 11), strict=True))
              + f" {cached:>7.0%} {median(mine, 'new_tokens') or 0:>8g} {median(mine, 'seconds'):>8.1f}")
    print(f"\nsolved {totals['solved']} of {totals['runs']} runs ({totals['solve_rate']:.0%}); per solved run "
          f"median {totals['median_calls_solved'] or 0:g} calls, {totals['median_tokens_solved'] or 0:.0f} tokens, "
          f"{totals['median_seconds_solved'] or 0:.1f} s; {totals['malformed']} malformed replies; "
          f"wall time {totals['wall_seconds']:.0f} s")


def build_parser():
    parser = argparse.ArgumentParser(description="Run the agent on small coding tasks and check the results.")
    parser.add_argument("--host", help="Ollama server (default: what the agent itself uses)")
    parser.add_argument("--model", help="model name (default: the agent's default)")
    parser.add_argument("--num-ctx", type=int, help="passed on to the agent")
    parser.add_argument("--max-steps", type=int, help="passed on to the agent")
    parser.add_argument("--tasks", help=f"comma-separated, from: {', '.join(task.name for task in TASKS)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per task (small models are noisy)")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--agent", type=Path, default=AGENT, help="the agent file to run (to compare versions)")
    parser.add_argument("--timeout", type=int, default=RUN_TIMEOUT, help="seconds allowed per task run")
    parser.add_argument("--keep", type=Path, help="keep each run's repository under this folder")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    wanted = args.tasks.split(",") if args.tasks else [task.name for task in TASKS]
    unknown = set(wanted) - {task.name for task in TASKS}
    if unknown:
        sys.exit(f"unknown task(s): {', '.join(sorted(unknown))}")
    plan = [task for task in TASKS if task.name in wanted for _ in range(args.repeat)]
    runs, started = [], time.monotonic()
    for number, task in enumerate(plan, 1):
        with tempfile.TemporaryDirectory() as scratch:
            root = args.keep / f"{number:02d}-{task.name}" if args.keep else Path(scratch)
            run = run_task(task, args, root)
        runs.append(run)
        print(f"[{number}/{len(plan)}] {task.name:12} {'solved' if run['solved'] else 'FAILED':6} "
              f"calls {run.get('calls', '-')}, steps {run.get('steps', '-')}, malformed {run.get('malformed', '-')}, "
              f"{run['seconds']} s  ({run['seen']})", flush=True)
    totals = summary(runs, time.monotonic() - started)
    print_table(runs, totals)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": totals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
