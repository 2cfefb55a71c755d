"""The task benchmark's own checks: each passes on its scripted solution and fails when nothing is done."""

import json
import shutil

import bench_tasks
import pytest
from conftest import MODEL

pytestmark = pytest.mark.skipif(not shutil.which("git"), reason="the benchmark's repositories need git")


def run_benchmark(ollama, tmp_path, capsys):
    results = tmp_path / "results.json"
    assert bench_tasks.main(["--host", ollama.url, "--model", MODEL, "--json", str(results), "--timeout", "60"]) == 0
    printed = capsys.readouterr().out
    return json.loads(results.read_text()), printed


def test_every_task_is_solved_by_its_scripted_solution(ollama, tmp_path, capsys):
    for task in bench_tasks.TASKS:
        ollama.script(*task.solution)
    figures, printed = run_benchmark(ollama, tmp_path, capsys)
    assert [(run["task"], run["solved"]) for run in figures["runs"]] == [(t.name, True) for t in bench_tasks.TASKS]
    assert figures["summary"]["solve_rate"] == 1.0 and figures["summary"]["malformed"] == 0
    first = figures["runs"][0]
    assert (first["calls"], first["steps"], first["prompt_tokens"], first["new_tokens"]) == (2, 1, 200, 20)
    progress = [line for line in printed.splitlines() if line.startswith("[")]
    assert len(progress) == 8 and all(" solved " in line for line in progress)
    assert "solved 8 of 8 runs (100%)" in printed


def test_no_task_is_solved_by_replies_that_do_nothing(ollama, tmp_path, capsys):
    ollama.script(*["<final>I looked, and everything seems fine as it is.</final>"] * len(bench_tasks.TASKS))
    figures, printed = run_benchmark(ollama, tmp_path, capsys)
    assert [run["solved"] for run in figures["runs"]] == [False] * len(bench_tasks.TASKS)
    assert figures["summary"]["solved"] == 0 and "solved 0 of 8 runs (0%)" in printed


def test_the_write_tests_check_needs_tests_that_catch_a_broken_stack(tmp_path):
    task = next(task for task in bench_tasks.TASKS if task.name == "write_tests")
    bench_tasks.make_repo(task, tmp_path / "repo")
    (tmp_path / "repo" / "test_stack.py").write_text(
        "import unittest\nfrom stack import Stack\n\nclass T(unittest.TestCase):\n"
        "    def test_len(self):\n        self.assertEqual(len(Stack()), 0)\n")
    solved, seen = task.check(tmp_path / "repo", "")
    assert not solved and "fail on a broken copy: False" in seen
