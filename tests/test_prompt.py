"""Component 2: the prompt's sections, its append-only layout, the budget, and the cache figures."""

import json
import re

from conftest import MODEL, common_prefix_length, make_agent, make_workspace

import mini_coding_agent as mca

LABELS = ["Rules:", "Tools:", "Valid response examples:", "Workspace:", "Transcript:", "Memory:",
          "Current user request:"]


def test_every_section_label_stands_alone_in_this_order(repo):
    agent = make_agent(repo, [])
    lines = agent.prompt("add a test").splitlines()
    positions = [lines.index(label) for label in LABELS]
    assert positions == sorted(positions)
    assert lines[0].startswith("You are mini-coding-agent")
    assert lines[-1] == "add a test"


def test_the_prefix_lists_each_tool_once_with_its_signature(repo):
    prefix = make_agent(repo, []).prefix
    assert "- read_file(path: str, start: int=1, end: int=start+199) [safe] " in prefix
    assert "- run_shell(command: str, timeout: int=20) [approval required] " in prefix
    assert "- write_file(path: str, content: str) [approval required] " in prefix
    assert "- delegate(task: str, max_steps: int=3) [safe] " in prefix
    tool_lines = [line for line in prefix.splitlines() if re.match(r"- \w+\(", line)]
    assert len(tool_lines) == 7


def test_delegate_is_offered_only_below_the_depth_limit(repo):
    assert "- delegate(" not in make_agent(repo, [], depth=1, max_depth=1).prefix


def examples_of(prefix):
    return prefix.split("Valid response examples:\n")[1].split("\n\nWorkspace:")[0].splitlines()


def test_every_example_parses_and_shows_both_call_forms(repo):
    examples = examples_of(make_agent(repo, []).prefix)
    kinds = [mca.MiniAgent.parse(line)[0] for line in examples]
    assert kinds == ["tool", "tool"]   # no <final> example: models wrote its words as their answer, or into files
    assert examples[0].startswith("<tool>{") and examples[1].startswith('<tool name="patch_file"')


def test_examples_name_a_real_source_file_and_hold_no_values_worth_copying(repo):
    workspace = make_workspace(repo)
    workspace.files = "- README.md\n- tests/test_app.py: def test_one()\n- src/app.py: def main()"
    agent = mca.MiniAgent(mca.FakeModelClient([]), workspace, mca.SessionStore(repo / "sessions"))
    examples = examples_of(agent.prefix)
    assert '"path": "src/app.py"' in examples[0] and 'path="src/app.py"' in examples[1]
    assert "def main" not in "\n".join(examples) and "hello" not in "\n".join(examples)


def test_the_prefix_is_built_once_and_never_changes(repo):
    agent = make_agent(repo, ['<tool>{"name": "list_files", "args": {}}</tool>', "<final>done</final>"])
    prefix = agent.prefix
    agent.ask("list")
    assert agent.prefix is prefix
    assert all(prompt.startswith(prefix) for prompt in agent.model_client.prompts)


def test_memory_text_format(repo):
    agent = make_agent(repo, [])
    assert agent.memory_text() == "Memory:\n- task: -\n- files: -\n- notes:\n  - none"
    agent.session["memory"] = {"task": "fix it", "files": ["a.py", "b.py"], "notes": ["one", "two"]}
    assert agent.memory_text() == "Memory:\n- task: fix it\n- files: a.py, b.py\n- notes:\n  - one\n  - two"


def test_each_prompt_extends_the_previous_one_before_its_small_tail(repo):
    calls = ['<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',
             '<tool>{"name": "list_files", "args": {}}</tool>',
             '<tool>{"name": "search", "args": {"pattern": "beta"}}</tool>']
    agent = make_agent(repo, calls + ["<final>done</final>"])
    agent.ask("look around")
    agent.model_client.outputs.append("<final>again</final>")
    agent.ask("and again")
    prompts = agent.model_client.prompts
    for before, after in zip(prompts, prompts[1:], strict=False):
        tail = before[before.index("\n\nMemory:\n"):]
        assert after.startswith(before[:-len(tail)])
        assert len(tail) < 600


def test_model_calls_are_measured(repo):
    agent = make_agent(repo, ['<tool>{"name": "list_files", "args": {}}</tool>', "<final>done</final>"])
    agent.ask("list")
    first, second = agent.session["stats"]
    prompts = agent.model_client.prompts
    assert first == {"prompt_chars": len(prompts[0]), "budget_chars": agent.prompt_budget, "reused_chars": 0}
    assert second["prompt_chars"] == len(prompts[1])
    assert second["reused_chars"] == common_prefix_length(prompts[0], prompts[1]) > len(agent.prefix)


def test_the_budget_follows_num_ctx_and_max_new_tokens(repo):
    agent = make_agent(repo, [], num_ctx=8192, max_new_tokens=1000)
    assert agent.prompt_budget == int((8192 - 1000 - mca.TEMPLATE_TOKENS) * mca.CHARS_PER_TOKEN)


def test_stats_table_shows_each_call_and_totals():
    table = mca.stats_table([
        {"prompt_chars": 1000, "reused_chars": 0, "prompt_eval_count": 300, "prompt_eval_duration": 2_000_000_000},
        {"prompt_chars": 1200, "reused_chars": 900, "prompt_eval_count": 350, "eval_count": 20},
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["call", "prompt", "chars", "reused", "prompt", "tokens", "cached", "tok",
                                "eval", "s", "new", "tokens", "gen", "s"]
    assert lines[1].split() == ["1", "1,000", "0%", "300", "-", "2.00", "-", "-"]
    assert lines[2].split() == ["2", "1,200", "75%", "350", "-", "-", "20", "-"]
    assert lines[3].split() == ["total", "2,200", "41%", "650", "-", "2.00", "20", "-"]
    assert mca.stats_table([]) == "No model calls yet in this session."


# --- the same prompt as chat turns (what OllamaModelClient is sent) -------------------

def test_chat_turns_are_the_prefix_then_one_turn_per_step_ending_with_the_newest_result(repo):
    agent = make_agent(repo, ['<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',
                              "<tool>{\"name\": </tool>", "<final>it says alpha</final>"])
    agent.ask("What is in hello.txt?")
    turns = agent.messages("What is in hello.txt?")
    assert turns[0] == {"role": "system", "content": agent.prefix}
    assert [turn["role"] for turn in turns[1:]] == ["user", "assistant", "user", "user", "assistant"]
    assert turns[1]["content"] == "What is in hello.txt?"
    assert json.loads(turns[2]["content"].removeprefix("<tool>").removesuffix("</tool>")) == \
        {"name": "read_file", "args": {"path": "hello.txt"}}   # the call, as the model should write it
    assert turns[3]["content"].startswith("Result of read_file:\n") and "1: alpha" in turns[3]["content"]
    assert turns[4]["content"].startswith("Runtime notice")   # no stand-in for the reply: models copied it
    assert turns[5]["content"] == "<final>it says alpha</final>"


def test_chat_turns_only_grow_at_their_end(repo):
    replies = [f'<tool>{{"name": "read_file", "args": {{"path": "hello.txt", "start": {n}}}}}</tool>'
               for n in (1, 2, 3)] + ["<final>done</final>"]
    agent = make_agent(repo, replies)
    agent.model_client.chat = True   # a client that says so is sent chat turns
    agent.ask("read it")
    sent = agent.model_client.prompts
    assert len(sent) == 4 and all(isinstance(turns, list) for turns in sent)
    for earlier, later in zip(sent, sent[1:], strict=False):
        assert later[:len(earlier)] == earlier
    assert agent.session["stats"][-1]["reused_chars"] == len(mca.flat_text(sent[-2]))


def test_a_session_saved_before_the_map_existed_keeps_its_prefix(repo):
    agent = make_agent(repo, ["<final>one</final>"])
    agent.ask("hi")
    session = json.loads(agent.session_path.read_text())
    del session["workspace"]["files"]
    workspace = mca.WorkspaceContext(**{**session["workspace"], "files": "- new.py: def new()"})
    resumed = mca.MiniAgent(agent.model_client, workspace, agent.session_store, session=session)
    assert resumed.prefix == agent.prefix and "new.py" not in resumed.prefix


def test_the_working_memory_reaches_the_model_on_the_chat_path(repo, ollama):
    ollama.script('<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>', "<final>alpha</final>",
                  "<final>beta</final>", "<final>gamma</final>")
    client = mca.OllamaModelClient(MODEL, ollama.url, 0.2, 0.9, 10)
    store = mca.SessionStore(repo / ".mini-coding-agent" / "sessions")
    agent = mca.MiniAgent(client, make_workspace(repo), store, small_model_help=False)
    agent.ask("What is in hello.txt?")   # nothing in the memory yet: nothing added to the request
    agent.ask("And its second line?")
    agent.ask("Thanks.")
    assert {request["path"] for request in ollama.requests if request["method"] == "POST"} == {"/api/chat"}
    *_, before, second, third = (request["messages"] for request in ollama.generate_requests)
    assert before[1]["content"] == "What is in hello.txt?"
    memory = ("Memory:\n- task: What is in hello.txt?\n- files: hello.txt\n- notes:\n  - read_file: # hello.txt\n"
              "  - answer: alpha")
    assert second[-1]["content"] == f"And its second line?\n\n{memory}"   # as it stood when the request came
    assert third[:len(second)] == second   # and it stays as it was: the server's cache reuses all of it
    assert third[-1]["content"].endswith("  - answer: beta")
