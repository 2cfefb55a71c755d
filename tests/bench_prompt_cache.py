"""Benchmark: how much of each prompt the server's prefix cache can reuse.

Runs a scripted four-turn session through the real CLI against the local test
server, in a git repository whose `git status` the agent's own writes change:
200-line file reads, shell output, a search, edits, three restarts with
--resume, and a delegation to a helper.  Then it prints the figures of the
issues "prompt cache" and "the cache survives restarts and delegation":

    python tests/bench_prompt_cache.py
    python tests/bench_prompt_cache.py --agent /path/to/older/mini_coding_agent.py   # before a change
    python tests/bench_prompt_cache.py --replay-on http://127.0.0.1:11434 --replay-model smollm2:135m

--replay-on re-sends the captured prompts, in order, to a real Ollama-compatible
server (num_predict 1) and prints its prompt tokens, cached tokens and
prompt-evaluation time. Not collected by pytest (the name does not start with test_).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest import MODULE, OllamaFixture, common_prefix_length  # noqa: E402

import mini_coding_agent as mca  # noqa: E402


def module_text(name, functions):
    """A plausible Python module of about 4 lines per function."""
    lines = [f'"""The {name} module of the demo app."""', "", "import json", "import os", ""]
    for i in range(functions):
        lines += [f"def {name}_step_{i}(data, retries={i % 4}):",
                  f'    """Apply step {i} of the {name} pipeline to the data."""',
                  f"    result = [value * {i + 1} for value in data if value % {i % 7 + 2}]",
                  "    return json.dumps(result) if os.environ.get('DEBUG') else result", ""]
    return "\n".join(lines) + "\n"


def make_repo(root):
    """A small but realistic project, committed to git: docs, a package of ~250-line modules, tests."""
    (root / "src" / "app").mkdir(parents=True)
    (root / "tests").mkdir()
    readme = ["# demo-app", "", "A small data pipeline used to try mini-coding-agent.", ""]
    readme += [f"- step {i}: multiplies the input and filters it; see src/app/core.py" for i in range(40)]
    (root / "README.md").write_text("\n".join(readme) + "\n")
    (root / "AGENTS.md").write_text("Run the tests with `python -m pytest -q`. Keep functions short.\n" * 8)
    (root / "pyproject.toml").write_text('[project]\nname = "demo-app"\nversion = "0.3.0"\n')
    (root / "src" / "app" / "__init__.py").write_text("")
    (root / "src" / "app" / "core.py").write_text(module_text("core", 55))
    (root / "src" / "app" / "cli.py").write_text(module_text("cli", 50))
    (root / "tests" / "test_core.py").write_text(module_text("test_core", 30))
    for command in (["init", "-q", "-b", "main"], ["add", "."],
                    ["-c", "user.email=bench@example.com", "-c", "user.name=bench", "commit", "-q", "-m", "start"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)


def tool(name, **args):
    return "<tool>" + json.dumps({"name": name, "args": args}) + "</tool>"


SHELL = "python -c \"import sys; [print(f'tests/test_core.py::test_{i} PASSED') for i in range(60)]\""
HELPER_TASK = "Find which functions in src/app/cli.py take a retries argument"
TURNS = [
    ("Find where the pipeline steps are defined and summarise core.py", [
        tool("list_files", path="."),
        tool("read_file", path="README.md", start=1, end=200),
        tool("search", pattern="def core_step_1", path="src"),
        tool("read_file", path="src/app/core.py", start=1, end=200),
        tool("run_shell", command=SHELL, timeout=30),
        '<tool name="write_file" path="NOTES.md"><content># Notes\n\ncore.py has 55 steps.\n</content></tool>',
        "<final>core.py defines 55 pipeline steps, core_step_0 to core_step_54.</final>",
    ]),
    ("Add a docstring line to core_step_3 and run the tests", [
        tool("read_file", path="src/app/core.py", start=1, end=40),
        '<tool name="patch_file" path="src/app/core.py"><old_text>    """Apply step 3 of the core '
        'pipeline to the data."""</old_text><new_text>    """Apply step 3 of the core pipeline to the '
        'data (tripled)."""</new_text></tool>',
        '<tool name="write_file" path="tests/test_step3.py"><content>from app.core import core_step_3\n\n\n'
        'def test_step3():\n    assert core_step_3([1, 2, 3]) is not None\n</content></tool>',
        tool("run_shell", command=SHELL, timeout=30),   # after the edits: no answer goes back for a check
        "<final>Patched core_step_3's docstring and added tests/test_step3.py.</final>",
    ]),
    ("Now check cli.py for the same pattern; let a helper look", [
        tool("read_file", path="src/app/cli.py", start=1, end=120),
        tool("delegate", task=HELPER_TASK, max_steps=3),
        tool("search", pattern="retries", path="src/app/cli.py"),        # the helper's steps
        tool("read_file", path="src/app/cli.py", start=1, end=60),
        "<final>Every cli_step_N function takes retries.</final>",        # the helper's answer
        tool("run_shell", command="git status --short || true", timeout=10),
        tool("list_files", path="tests"),
        "<final>cli.py follows the same pattern; no change needed.</final>",
    ]),
    ("Summarise what this session changed", [
        tool("run_shell", command="git diff --stat || true", timeout=10),
        "<final>NOTES.md and tests/test_step3.py are new; core.py has one docstring changed.</final>",
    ]),
]


def prefix_figures(prompts):
    """Per request after the first: the share of its prompt that repeats the previous prompt's start,
    and the share of the previous prompt (what the server has cached) that it reuses."""
    reuse, kept, fresh = [], [], len(prompts[0])
    for before, now in zip(prompts, prompts[1:], strict=False):
        common = common_prefix_length(now, before)
        reuse.append(common / len(now))
        kept.append(common / len(before))
        fresh += len(now) - common
    return reuse, kept, fresh


def run_session(server, repo, agent):
    """The turns through the CLI, one-shot, each after the first with --resume latest.

    Returns the wall time and the index of each turn's first prompt.
    """
    started, firsts = time.perf_counter(), []
    for number, (request, replies) in enumerate(TURNS):
        server.script(*replies)
        firsts.append(len(server.prompts))
        resume = ["--resume", "latest"] if number else []
        done = subprocess.run([sys.executable, str(agent), "--cwd", str(repo), "--host", server.url, "--approval",
                               "auto", "--max-steps", "12", *resume, request], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "NO_COLOR": "1"})
        if done.returncode != 0:
            sys.exit(f"turn {number + 1} failed: {done.stderr[-800:]}")
    return time.perf_counter() - started, firsts


def kept_share(now, before):
    """The share of the previous prompt (what the server's cache holds) that a prompt reuses."""
    return common_prefix_length(now, before) / len(before)


def restart_and_helper_figures(prompts, firsts):
    """Reuse at each resume, at the helper's first call, and at the parent's first call after the helper."""
    print("\nat each resume (share of the previous prompt reused; target >= 0.90):")
    for turn, first in enumerate(firsts[1:], 2):
        print(f"  turn {turn}: {kept_share(prompts[first], prompts[first - 1]):.3f}")
    helper = [n for n, prompt in enumerate(prompts)   # the helper's prompts hold its task and rules
              if prompt.rsplit("Current user request:\n", 1)[-1].startswith(HELPER_TASK)
              or f"<|user|>\n{HELPER_TASK}" in prompt]
    before, after = prompts[helper[0] - 1], prompts[helper[-1] + 1]
    print(f"helper's first call: {kept_share(prompts[helper[0]], before):.3f} of the parent's last prompt "
          "(target >= 0.90)")
    own = common_prefix_length(after, before)
    served = common_prefix_length(after, prompts[helper[-1]])
    print(f"parent after the helper: {served:,} chars served from the helper's last prompt, where its own "
          f"previous prompt would give {own:,} (target: at least that)")


def time_build_and_save(repo, items=1000, rounds=50):
    """Milliseconds to record one more step and build the next prompt, at `items` history items."""
    store = mca.SessionStore(repo / ".mini-coding-agent" / "bench")
    agent = mca.MiniAgent(mca.FakeModelClient([]), mca.WorkspaceContext.build(repo), store)
    read = agent.run_tool("read_file", {"path": "src/app/core.py"})
    for i in range(items):
        agent.record({"role": "tool", "name": "read_file", "args": {"path": "src/app/core.py", "start": i + 1},
                      "content": read[: 200 + i % 1800]})
    agent.prompt("go on")   # any compaction happens here, before the clock starts
    started = time.perf_counter()
    for i in range(rounds):
        agent.record({"role": "tool", "name": "run_shell", "args": {"command": f"echo {i}"},
                      "content": f"exit_code: 0\nstdout:\n{i}\nstderr:\n(empty)"})
        agent.prompt("go on")
    return (time.perf_counter() - started) / rounds * 1000, len(agent.session["history"])


def replay(requests, host, model, num_ctx):
    """Send the captured prompts (or chat turns) to a real server in order; print what its cache did."""
    print(f"\nreplay on {host} ({model}, num_ctx {num_ctx}):")
    print(f"{'req':>4} {'prompt tok':>11} {'cached tok':>11} {'eval s':>8}")
    total = cached = seconds = 0
    for number, sent in enumerate(requests, 1):
        chat = "messages" in sent
        body = json.dumps({"model": model, **({"messages": sent["messages"]} if chat else {"prompt": sent["prompt"]}),
                           "stream": False, "think": False,
                           "options": {"num_predict": 1, "num_ctx": num_ctx, "temperature": 0}}).encode()
        request = urllib.request.Request(f"{host.rstrip('/')}/api/{'chat' if chat else 'generate'}", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=900) as response:
            reply = json.loads(response.read())
        tokens, hit = reply.get("prompt_eval_count", 0), reply.get("prompt_eval_cached_count", 0)
        took = reply.get("prompt_eval_duration", 0) / 1e9
        total, cached, seconds = total + tokens, cached + hit, seconds + took
        print(f"{number:>4} {tokens:>11} {hit:>11} {took:>8.2f}")
    print(f"total: {total} prompt tokens, {cached} served from cache ({cached / max(total, 1):.1%}), "
          f"{seconds:.1f} s of prompt evaluation")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", type=Path, default=MODULE, help="the agent file to run (to compare versions)")
    parser.add_argument("--replay-on", metavar="HOST", help="a real Ollama-compatible server to replay on")
    parser.add_argument("--replay-model", default="smollm2:135m", help="model name on that server")
    args = parser.parse_args()
    server = OllamaFixture()
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder)
        make_repo(repo)
        wall, firsts = run_session(server, repo, args.agent)
        prompts = server.prompts
        num_ctx = {request["options"].get("num_ctx") for request in server.generate_requests}
        reuse, kept, fresh = prefix_figures(prompts)
        sizes = [len(prompt) for prompt in prompts]
        print(f"agent:                {args.agent}")
        print(f"requests:             {len(prompts)} in {len(TURNS)} CLI runs (num_ctx sent: {sorted(num_ctx)})")
        print(f"prompt chars:         mean {statistics.mean(sizes):,.0f}, max {max(sizes):,}")
        print(f"prefix reuse:         mean {statistics.mean(reuse):.3f}, min {min(reuse):.3f} "
              "(share of each prompt that repeats the previous one)")
        print(f"previous prompt kept: mean {statistics.mean(kept):.3f}, min {min(kept):.3f} "
              "(share of the previous prompt, the server's cache, that the next one reuses)")
        print(f"fresh chars:          {fresh:,} of {sum(sizes):,} ({fresh / sum(sizes):.1%}) evaluated afresh")
        print(f"wall time:            {wall:.2f} s for {len(TURNS)} CLI runs")
        restart_and_helper_figures(prompts, firsts)
        if args.agent == MODULE:
            millis, items = time_build_and_save(repo)
            print(f"\nrecord + prompt:      {millis:.2f} ms per step at {items} history items")
        if args.replay_on:
            replay(server.generate_requests, args.replay_on, args.replay_model, sorted(num_ctx)[0])
    server.close()


if __name__ == "__main__":
    main()
