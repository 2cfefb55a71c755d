"""The task benchmark's own checks: each passes on its scripted solution and fails when nothing is done."""

import json
import shutil

import bench_tasks
import pytest
from conftest import MODEL

import mini_coding_agent as mca

pytestmark = pytest.mark.skipif(not shutil.which("git"), reason="the benchmark's repositories need git")
NOTHING_DONE = "I looked, and everything seems fine as it is."


def test_the_tasks_cover_seventeen_kinds_split_once_into_two_halves():
    names = [task.name for task in bench_tasks.TASKS]
    assert len(names) == len(set(names)) == 34 and len(bench_tasks.KINDS) == 17
    tuning, held_out = bench_tasks.HALVES["tuning"], bench_tasks.HALVES["held-out"]
    assert sorted(tuning + held_out) == sorted(names) and not set(tuning) & set(held_out)
    assert {task.name for task in bench_tasks.FIRST_TASKS} <= set(tuning)   # tuned on before: never held out


class SolutionScript(mca.FakeModelClient):
    """A task's scripted solution; a whole-file draft the coach asks for first gets no code."""

    def complete(self, prompt, max_new_tokens):
        if mca.REWRITE_SYSTEM in mca.flat_text(prompt):
            return "(no draft)"
        return super().complete(prompt, max_new_tokens)


@pytest.mark.parametrize("task", bench_tasks.TASKS, ids=lambda task: task.name)
def test_a_task_is_solved_by_its_scripted_solution_and_not_by_doing_nothing(task, tmp_path):
    untouched = tmp_path / "untouched"
    bench_tasks.make_repo(task, untouched)
    assert not task.check(untouched, NOTHING_DONE)[0]   # the do-nothing control
    repo = tmp_path / "repo"
    bench_tasks.make_repo(task, repo)
    client = SolutionScript(task.solution)
    store = mca.SessionStore(repo / ".mini-coding-agent" / "sessions")
    earlier = [store.load(session_id) for session_id in store.newest_first()]   # resumed, as --resume
    agent = mca.MiniAgent(client, mca.WorkspaceContext.build(repo), store, approval_policy="auto",
                          session=earlier[0] if earlier else None)
    answer = agent.ask(task.request)   # as the command line runs it: the small-model layer is on
    solved, seen = task.check(repo, answer)
    assert solved and not agent.stopped and client.outputs == [], seen


def test_long_files_lengthen_the_python_files_a_request_names_and_nothing_else():
    for task in bench_tasks.TASKS:
        long = bench_tasks.lengthened(task)
        changed = {name for name in task.files if long.files[name] != task.files[name]}
        assert all(name.endswith(".py") and name.rsplit("/", 1)[-1] in task.request for name in changed)
        for name in changed:
            compile(long.files[name], name, "exec")
            assert len(long.files[name]) > 3000 > len(task.files[name])
    greet = bench_tasks.lengthened(next(task for task in bench_tasks.TASKS if task.name == "add_flag"))
    assert greet.files["greet.py"].endswith('if __name__ == "__main__":\n    main()\n')   # helpers before it


@pytest.mark.parametrize("name", ["add_flag", "implement", "validate_age"])
def test_a_task_with_long_files_is_still_solved_by_its_solution_and_not_by_doing_nothing(name, tmp_path):
    task = bench_tasks.lengthened(next(task for task in bench_tasks.TASKS if task.name == name))
    test_a_task_is_solved_by_its_scripted_solution_and_not_by_doing_nothing(task, tmp_path)


def run_benchmark(ollama, tmp_path, capsys, *flags):
    results = tmp_path / "results.json"
    assert bench_tasks.main(["--host", ollama.url, "--model", MODEL, "--json", str(results), "--timeout", "60",
                             *flags]) == 0
    return json.loads(results.read_text()), capsys.readouterr().out


def test_the_runner_runs_the_command_line_and_reads_its_session(ollama, tmp_path, capsys):
    tasks = [task for task in bench_tasks.TASKS if task.name in ("port", "timeout_default")]
    ollama.script(*tasks[0].solution, NOTHING_DONE)
    figures, printed = run_benchmark(ollama, tmp_path, capsys, "--tasks", "port,timeout_default")
    assert [(run["task"], run["half"], run["solved"]) for run in figures["runs"]] == [
        ("port", "tuning", True), ("timeout_default", "held-out", False)]
    first = figures["runs"][0]
    assert (first["calls"], first["steps"], first["prompt_tokens"], first["new_tokens"]) == (2, 1, 200, 20)
    assert "solved 1 of 2 runs (50%)" in printed
    assert "tuning half: solved 1 of 1 runs (100%)" in printed and "held-out half: solved 0 of 1 runs" in printed


def test_the_write_tests_check_needs_tests_that_catch_a_broken_stack(tmp_path):
    task = next(task for task in bench_tasks.TASKS if task.name == "write_tests")
    bench_tasks.make_repo(task, tmp_path / "repo")
    (tmp_path / "repo" / "test_stack.py").write_text(
        "import unittest\nfrom stack import Stack\n\nclass T(unittest.TestCase):\n"
        "    def test_len(self):\n        self.assertEqual(len(Stack()), 0)\n")
    solved, seen = task.check(tmp_path / "repo", "")
    assert not solved and "fail on a broken copy: False" in seen


def test_a_session_task_resumes_the_session_that_answered_its_earlier_request(ollama, tmp_path, capsys):
    task = next(task for task in bench_tasks.TASKS if task.name == "go_on_blank")
    ollama.script(*task.solution)
    figures, _ = run_benchmark(ollama, tmp_path, capsys, "--tasks", "go_on_blank", "--plain",
                               "--keep", str(tmp_path / "kept"))
    run = figures["runs"][0]
    assert (run["solved"], run["calls"], run["steps"]) == (True, 3, 2), run   # the earlier request's not counted
    history = bench_tasks.load_session(tmp_path / "kept" / "01-go_on_blank" / "repo")["history"]
    assert [item["content"] for item in history if item["role"] == "user"][:1] == [task.earlier[0][0]]


def test_a_session_tasks_check_fails_on_the_earlier_answer_given_again(tmp_path):
    task = next(task for task in bench_tasks.TASKS if task.name == "go_on_blank")
    bench_tasks.make_repo(task, tmp_path / "repo")
    (tmp_path / "repo" / "prices.py").write_text(   # the work done, the answer copied
        'def parse_price(text):\n    text = text.strip().lstrip("$").replace(",", ".")\n'
        "    return float(text) if text else 0.0\n\n\ndef total(texts):\n"
        "    return sum(parse_price(text) for text in texts)\n")
    assert task.check(tmp_path / "repo", "parse_price returns 0.0 for a blank price.")[0]
    solved, seen = task.check(tmp_path / "repo", bench_tasks.PRICES_ANSWER)
    assert not solved and "the earlier answer again: True" in seen
