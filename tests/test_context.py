"""Component 4: clipping, a transcript rendered once per item, compaction, and the context budget."""

import json

import pytest
from conftest import common_prefix_length, make_agent, make_workspace

import mini_coding_agent as mca


def read_call(path, start=1, end=200):
    return "<tool>" + json.dumps({"name": "read_file", "args": {"path": path, "start": start, "end": end}}) + "</tool>"


def shell_call(command):
    return "<tool>" + json.dumps({"name": "run_shell", "args": {"command": command}}) + "</tool>"


def test_clip_keeps_head_and_tail_and_says_how_much_was_cut():
    text = "HEAD" + "-" * 100 + "TAIL"
    clipped = mca.clip(text, 20)
    assert clipped.startswith("HEAD") and clipped.endswith("TAIL")
    assert "[truncated 88 chars]" in clipped
    assert mca.clip("short", 20) == "short"


def test_empty_history_renders_as_empty(repo):
    assert make_agent(repo, []).history_text() == "- empty"


def test_items_render_with_their_role_tool_and_sorted_args(repo):
    agent = make_agent(repo, [read_call("hello.txt", 1, 2), "<final>done</final>"])
    agent.ask("look")
    assert agent.history_text() == (
        "[user] look\n"
        '[tool:read_file] {"end": 2, "path": "hello.txt", "start": 1}\n'
        "# hello.txt\n   1: alpha\n   2: beta\n(more lines follow; read on with start=3)\n"
        "[assistant] done")


def test_a_long_result_is_clipped_in_the_transcript_but_kept_whole_in_the_session(repo):
    (repo / "long.txt").write_text("".join(f"line {n}\n" for n in range(300)))
    agent = make_agent(repo, [read_call("long.txt"), "<final>done</final>"])
    agent.ask("read")
    item = agent.session["history"][1]
    assert "line 199" in item["content"]
    rendered = agent.transcript[1]
    assert len(rendered) <= mca.ITEM_CHARS + mca.ARGS_CHARS + 50
    assert "[truncated" in rendered and "line 199" in rendered


def test_items_never_change_once_rendered(repo):
    calls = [read_call("hello.txt", n, n) for n in (1, 2, 3)] + [shell_call("echo hi")] * 2
    agent = make_agent(repo, calls + ["<final>done</final>"], max_steps=10)
    agent.ask("work")
    prompts = agent.model_client.prompts
    for before, after in zip(prompts, prompts[1:], strict=False):
        transcript_before = before.split("\n\nMemory:\n")[0]
        assert after.startswith(transcript_before)


def test_a_repeated_unchanged_read_is_a_short_pointer(repo):
    agent = make_agent(repo, [read_call("hello.txt"), shell_call("true"), read_call("hello.txt"),
                              "<final>done</final>"])
    agent.ask("read twice")
    assert agent.transcript[-2].endswith("(unchanged since the same read above)")
    assert agent.transcript[1].endswith("   3: gamma")


def test_a_read_after_a_write_of_that_path_renders_in_full(repo):
    agent = make_agent(repo, [
        read_call("hello.txt"),
        '<tool name="patch_file" path="hello.txt"><old_text>beta</old_text><new_text>BETA</new_text></tool>',
        read_call("hello.txt"), "<final>done</final>"])
    agent.ask("edit")
    assert agent.transcript[-2].endswith("   3: gamma") and "BETA" in agent.transcript[-2]


def test_a_read_after_the_file_changed_otherwise_renders_in_full(repo):
    agent = make_agent(repo, [read_call("hello.txt"), shell_call("echo delta >> hello.txt"),
                              read_call("hello.txt"), "<final>done</final>"])
    agent.ask("edit")
    assert "   4: delta" in agent.transcript[-2]


def long_session(repo, steps, num_ctx):
    (repo / "big.py").write_text("".join(f"def function_{n}(x):\n    return x * {n}\n" for n in range(400)))
    calls = []
    for n in range(steps):
        calls.append(read_call("big.py", n + 1, n + 200) if n % 3 == 0 else shell_call(f"echo step-{n}-done"))
    agent = make_agent(repo, calls + ["<final>finished</final>"], max_steps=steps + 1, num_ctx=num_ctx)
    assert agent.ask("a long job") == "finished"
    return agent


@pytest.fixture(scope="module")
def session_of_200_steps(tmp_path_factory):
    """One 200-step session in 8,192 tokens of context, for the tests that only look at it."""
    repo = tmp_path_factory.mktemp("long") / "repo"
    repo.mkdir()
    return long_session(repo, 200, num_ctx=8192)


def test_a_200_step_session_stays_within_budget_and_sees_its_latest_results(session_of_200_steps):
    agent = session_of_200_steps
    budget = int((8192 - 512 - mca.TEMPLATE_TOKENS) * mca.CHARS_PER_TOKEN)
    prompts = agent.model_client.prompts
    assert len(prompts) == 201
    assert max(len(prompt) for prompt in prompts) <= budget
    for number, prompt in enumerate(prompts[1:], 1):   # prompt N follows the result of call N - 1
        latest = f"step-{number - 1}-done" if (number - 1) % 3 else f'"start": {number}}}'
        assert latest in prompt.split("\n\nMemory:\n")[0]
    assert "Rules:" in prompts[-1] and "Tools:" in prompts[-1]


def test_chat_turns_of_many_short_steps_stay_within_budget(repo):
    calls = [shell_call(f"echo {n}") for n in range(150)]
    agent = make_agent(repo, calls + ["<final>finished</final>"], max_steps=151, num_ctx=4096)
    agent.model_client.chat = True   # each step is two turns, whose wrapping the text transcript has not
    assert agent.ask("many small steps") == "finished"
    sizes = [len(mca.flat_text(turns)) for turns in agent.model_client.prompts]
    assert max(sizes) <= agent.prompt_budget and len(agent.session["compactions"]) >= 2
    assert agent.model_client.prompts[-1][-1]["content"].startswith("Result of run_shell:\nexit_code: 0\nstdout:\n149")


def test_compaction_is_rare_big_and_recorded(session_of_200_steps):
    agent = session_of_200_steps
    compactions = agent.session["compactions"]
    assert 2 <= len(compactions) <= 40
    reuse = [common_prefix_length(now, before) / len(now)
             for before, now in zip(agent.model_client.prompts, agent.model_client.prompts[1:], strict=False)]
    shrinking = [n for n, (before, now) in enumerate(zip(agent.model_client.prompts,
                                                        agent.model_client.prompts[1:], strict=False))
                 if len(now) < len(before)]
    assert len(shrinking) == len(compactions)
    steady = [share for n, share in enumerate(reuse) if n not in shrinking and n > 10]
    assert min(steady) > 0.8 and max(reuse[n] for n in shrinking) < 0.5   # steps add ~1,400 chars to ~9,000
    last = compactions[-1]
    assert last["summary"].startswith("[summary]") and 0 < last["start"] < len(agent.session["history"])
    assert agent.history_text().startswith("[summary]")


def test_a_resumed_session_renders_the_same_transcript(repo):
    agent = long_session(repo, 60, num_ctx=8192)
    resumed = mca.MiniAgent.from_session(mca.FakeModelClient([]), make_workspace(repo),
                                         mca.SessionStore(agent.session_store.root), agent.session["id"],
                                         num_ctx=8192)
    assert resumed.history_text() == agent.history_text()
    assert resumed.prompt("next") == agent.prompt("next")


def test_a_prompt_that_cannot_fit_is_refused_not_sent(repo):
    agent = make_agent(repo, [], num_ctx=600)
    try:
        agent.prompt("hi")
    except RuntimeError as error:
        assert "--num-ctx" in str(error)
    else:
        raise AssertionError("an over-budget prompt was built")
