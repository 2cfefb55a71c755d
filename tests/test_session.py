"""Component 5: the agent loop, working memory, sessions that survive anything, resuming, undo."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import CHILD_ENV, make_agent, make_workspace

import mini_coding_agent as mca


def saved(agent):
    """The session as it is on disk."""
    return json.loads(agent.session_path.read_text())


# --- the loop ------------------------------------------------------------------

def test_a_tool_call_then_a_final_answer(repo):
    agent = make_agent(repo, ['<tool>{"name": "read_file", "args": {"path": "hello.txt", "end": 2}}</tool>',
                              "<final>It holds alpha and beta.</final>"])
    assert agent.ask("What is in hello.txt?") == "It holds alpha and beta."
    roles = [item["role"] for item in agent.session["history"]]
    assert roles == ["user", "tool", "assistant"]
    tool = agent.session["history"][1]
    assert tool["name"] == "read_file" and tool["args"] == {"path": "hello.txt", "end": 2}
    assert tool["content"] == "# hello.txt\n   1: alpha\n   2: beta\n(more lines follow; read on with start=3)"
    assert agent.session["memory"]["files"] == ["hello.txt"]
    assert "# hello.txt" in agent.model_client.prompts[1]


def test_retry_notices_are_recorded_and_do_not_use_up_steps(repo):
    agent = make_agent(repo, ["", "<tool>oops</tool>", '<tool>{"name": "list_files", "args": {}}</tool>',
                              "<final>done</final>"], max_steps=2)
    assert agent.ask("list") == "done"
    notices = [item["content"] for item in agent.session["history"] if item["content"].startswith("Runtime notice")]
    assert len(notices) == 2
    assert "Runtime notice" in agent.model_client.prompts[1]


def test_the_attempt_cap_stops_endless_malformed_replies(repo):
    agent = make_agent(repo, ["<final></final>"] * 50, max_steps=2)
    answer = agent.ask("anything")
    assert answer == "Stopped after 6 attempts: too many malformed model responses."
    assert len(agent.model_client.prompts) == max(3 * 2, 2 + 4)
    assert agent.session["history"][-1]["content"] == answer


def test_the_step_limit_stops_the_loop(repo):
    calls = [f'<tool>{{"name": "read_file", "args": {{"path": "hello.txt", "start": {n}}}}}</tool>' for n in (1, 2, 3)]
    agent = make_agent(repo, calls + ["<final>never reached</final>"], max_steps=3)
    answer = agent.ask("loop")
    assert answer.startswith("Stopped after 3 tool steps")
    assert saved(agent)["history"][-1]["content"] == answer


def test_xml_tools_edit_files(repo):
    agent = make_agent(repo, [
        '<tool name="write_file" path="app.py"><content>def f():\n    return 1\n</content></tool>',
        '<tool name="patch_file" path="app.py"><old_text>return 1</old_text><new_text>return 2</new_text></tool>',
        "<final>ok</final>"])
    assert agent.ask("make app.py") == "ok"
    assert (repo / "app.py").read_text() == "def f():\n    return 2\n"


MALFORMED = [
    "", " ", "\n\n", "<tool>", "<tool></tool>", "<tool>{}</tool>", "<tool>null</tool>", "<tool>42</tool>",
    '<tool>"text"</tool>', "<tool>{'name': 'x'}</tool>", '<tool>{"name": null}</tool>',
    '<tool>{"name": ["read_file"]}</tool>', '<tool>{"name": {"a": 1}, "args": {}}</tool>',
    '<tool>{"name": "read_file", "args": "path=a"}</tool>', '<tool>{"name": "read_file", "args": null}</tool>',
    '<tool>{"name": "read_file", "args": {"path": 5}}</tool>',
    '<tool>{"name": "read_file", "args": {"path": "hello.txt", "start": 1e999}}</tool>',
    '<tool>{"name": "read_file", "args": {"path": "hello.txt", "end": -1}}</tool>',
    '<tool>{"name": "read_file", "args": {"path": "\\ud800\\udfff\\ud800"}}</tool>',
    '<tool>{"name": "write_file", "args": {"path": "s.txt", "content": "\\ud800"}}</tool>',
    '<tool>{"name": "run_shell", "args": {"command": "echo \\ud800"}}</tool>',
    '<tool>{"name": "\\u0000\\u001b[31m", "args": {}}</tool>',
    '<tool>{"name": "delegate", "args": {"task": "x", "max_steps": 99999999999999999999}}</tool>',
    "<tool>" + "[" * 50000 + "</tool>", "<tool>" + '{"a":' * 5000 + "1" + "}" * 5000 + "</tool>",
    "<tool>" + "9" * 6000 + "</tool>", "<tool " + "x" * 5000, '<tool name="">body</tool>',
    '<tool name="nosuch">body</tool>', '<tool name="read_file"></tool>',
    "<final></final>", "<final>\n\t </final>", "<tool>{" + '"k": "v", ' * 20000 + "}</tool>",
    "<tool>{\"name\": \"list_files\", \"args\": {}}" + "garbage" * 30000,
    '<tool>{"name": "patch_file", "args": {"path": "hello.txt", "old_text": "", "new_text": "x"}}</tool>',
]


@pytest.mark.parametrize("reply", MALFORMED, ids=range(len(MALFORMED)))
def test_any_reply_is_survived_and_a_final_answer_still_lands(repo, reply):
    agent = make_agent(repo, [reply, "<final>recovered</final>", "<final>recovered</final>"], max_steps=3)
    assert agent.ask("go") == "recovered"
    assert saved(agent)["history"][-1]["content"] == "recovered"
    assert mca.SessionStore(agent.session_store.root).load(agent.session["id"])["id"] == agent.session["id"]


def test_a_huge_reply_or_control_characters_are_a_final_answer(repo):
    agent = make_agent(repo, ["word " * 40000 + "<final>ok</final>", "\x00\x1b[2J\x9b"])
    assert agent.ask("go") == "ok"
    assert agent.ask("again") == "\x00\x1b[2J\x9b"


def test_ctrl_c_during_a_model_call_records_interrupted_and_keeps_the_session(repo):
    class Interrupting:
        def complete(self, prompt, max_new_tokens):
            raise KeyboardInterrupt
    agent = mca.MiniAgent(Interrupting(), make_workspace(repo), mca.SessionStore(repo / "s"))
    with pytest.raises(KeyboardInterrupt):
        agent.ask("long job")
    history = saved(agent)["history"]
    assert [item["content"] for item in history] == ["long job", "interrupted by the user"]


def test_a_request_stopped_with_ctrl_c_reaches_the_model_as_a_fact_not_as_an_answer_to_copy(repo):
    class InterruptedOnce(mca.FakeModelClient):
        chat = True   # chat turns, as with Ollama

        def complete(self, prompt, max_new_tokens):
            if not self.prompts:
                self.prompts.append(prompt)
                raise KeyboardInterrupt
            return super().complete(prompt, max_new_tokens)
    client = InterruptedOnce(["<final>in total()</final>"])
    agent = mca.MiniAgent(client, make_workspace(repo), mca.SessionStore(repo / "s"))
    with pytest.raises(KeyboardInterrupt):
        agent.ask("where is the total computed?")
    assert agent.ask("where is the total computed?") == "in total()"
    turns = client.prompts[1][1:]   # the 1.5B model answered "interrupted by the user" when shown it
    assert turns == [{"role": "user", "content": "where is the total computed?"},
                     {"role": "user", "content": "(that request has no answer: interrupted by the user)"},
                     {"role": "user", "content": "where is the total computed?"}]


def test_a_persons_no_ends_the_request_and_the_model_is_not_asked_to_answer_it(repo, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    run = '<tool>{"name": "run_shell", "args": {"command": "python app.py"}}</tool>'
    agent = make_agent(repo, [run, "<final>Error: Approval required to run the shell command.</final>"],
                       approval_policy="ask")   # the answer the 1.5B model gave to a no
    assert agent.ask("check app.py") == "Stopped, as you said no. Say what to do instead."
    assert agent.stopped and len(agent.model_client.prompts) == 1
    assert [item["role"] for item in agent.session["history"]] == ["user", "tool", "assistant"]
    for policy in ("never", "auto"):   # no one was asked: the model goes on
        agent = make_agent(repo, [run, "<final>done</final>"], approval_policy=policy)
        assert agent.ask("check app.py") == "done" and not agent.stopped


def test_a_request_a_person_said_no_to_reaches_the_model_as_a_fact_not_as_an_answer_to_copy(repo, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    client = mca.FakeModelClient(['<tool>{"name": "run_shell", "args": {"command": "rm todo.json"}}</tool>',
                                  "<final>Kept todo.json.</final>"])
    client.chat = True   # chat turns, as with Ollama
    agent = mca.MiniAgent(client, make_workspace(repo), mca.SessionStore(repo / "s"), approval_policy="ask",
                          small_model_help=False)
    assert agent.ask("clear the list") == mca.SAID_NO
    assert agent.ask("keep the file, then") == "Kept todo.json."   # the 1.5B model answered with SAID_NO
    turns = client.prompts[1]
    assert turns[-2] == {"role": "user", "content": f"(that request has no answer: {mca.SAID_NO})"}
    assert not any(mca.SAID_NO in turn["content"] for turn in turns if turn["role"] == "assistant")
    assert f"[stopped] {mca.SAID_NO}" in agent.history_text()   # and so in a one-string prompt
    stop = agent.session["history"][2]
    assert stop["stopped"] and mca.summary_line(stop) == f"- stopped: {mca.SAID_NO}"   # and compacted


def test_the_request_after_a_no_is_drafted_with_the_request_it_says_no_to(repo, monkeypatch):
    (repo / "cli.py").write_text("import sys\n\nprint(sys.argv)\n")
    answers = iter(["n"])   # the first draft refused, the rest approved
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers, "y"))
    draft = "```python\nimport argparse\nimport sys\n\nprint(sys.argv)\n```"
    agent = make_agent(repo, [draft, draft, *["<final>done</final>"] * 2, "(no draft)", "<final>ok</final>"],
                       small_model_help=True, approval_policy="ask")
    first = "Add a --top N option to cli.py that prints the N most common words."
    assert agent.ask(first) == mca.SAID_NO
    agent.ask("Use argparse: python cli.py FILE --top 3.")   # as a person answers a no
    agent.ask("Add a docstring to cli.py.")   # after an answer: this request alone
    drafts = [text for text in map(mca.flat_text, agent.model_client.prompts) if mca.REWRITE_SYSTEM in text]
    assert len(drafts) == 3 and f"Request: {first}\nUse argparse: python cli.py FILE --top 3.\n\n" in drafts[1]
    assert "Request: Add a docstring to cli.py.\n\n" in drafts[2]
    two_nos = [{"role": "user", "content": "a"}, {"role": "assistant", "content": mca.SAID_NO, "request": "a"},
               {"role": "user", "content": "b"}, {"role": "assistant", "content": mca.SAID_NO, "request": "b"}]
    assert mca.unanswered(two_nos) == ["a", "b"]   # a correction of a correction: both
    for why in ("Stopped after 6 tool steps", mca.INTERRUPTED):   # "go on", or anything: not a correction
        stop = {"role": "assistant", "content": why, "stopped": True, "request": first}
        assert mca.unanswered([{"role": "user", "content": first}, stop]) == []


def test_model_errors_propagate_after_the_request_is_saved(repo):
    agent = make_agent(repo, [])
    with pytest.raises(RuntimeError, match="no scripted replies"):
        agent.ask("hello")
    assert saved(agent)["history"][0]["content"] == "hello"


# --- working memory ----------------------------------------------------------

def test_memory_task_files_and_notes(repo):
    for n in range(10):
        (repo / f"f{n}.txt").write_text(f"{n}\n")
    reads = [f'<tool>{{"name": "read_file", "args": {{"path": "f{n}.txt"}}}}</tool>' for n in range(10)]
    reread = '<tool>{"name": "read_file", "args": {"path": "f3.txt"}}</tool>'
    agent = make_agent(repo, [*reads, reread, "<final>read them all</final>"], max_steps=20)
    agent.ask("x" * 400)
    memory = agent.session["memory"]
    assert memory["task"] == "x" * 300
    assert memory["files"] == ["f2.txt", "f4.txt", "f5.txt", "f6.txt", "f7.txt", "f8.txt", "f9.txt", "f3.txt"]
    assert len(memory["notes"]) == 5 and memory["notes"][-1] == "answer: read them all"
    assert memory["notes"][-2] == "read_file: # f3.txt"


# --- the session store ---------------------------------------------------------

def test_the_session_is_saved_after_every_item(repo):
    agent = make_agent(repo, ['<tool>{"name": "list_files", "args": {}}</tool>', "<final>done</final>"])
    agent.ask("list")
    assert saved(agent)["history"] == agent.session["history"]
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", agent.session["id"])


def test_store_save_load_latest(repo, tmp_path):
    store = mca.SessionStore(tmp_path / "sessions")
    assert store.latest() is None
    first, second = mca.new_session(repo), mca.new_session(repo)
    second["id"] += "b"
    store.save(first)
    time.sleep(0.02)
    store.save(second)
    assert store.latest() == second["id"]
    assert store.load(first["id"]) == first
    assert store.path(first["id"]) == tmp_path / "sessions" / f"{first['id']}.json"


@pytest.mark.parametrize("session_id", ["nope", "../etc/passwd", "a/b", ".hidden", ""])
def test_loading_a_missing_or_malformed_id_says_so(tmp_path, session_id):
    with pytest.raises(ValueError) as caught:
        mca.SessionStore(tmp_path).load(session_id)
    assert "session" in str(caught.value)


@pytest.mark.parametrize("content, problem", [
    ('{"id": "x", "history": [], "memo', "cannot be read"),
    ("[]", "the session is not an object"),
    ('{"id": "x", "history": {}, "memory": {"task": "", "files": [], "notes": []}}', "history"),
    ('{"id": "x", "history": [{"role": "tool", "content": "c"}], "memory": {"task": "", "files": [], '
     '"notes": []}}', "history"),
    ('{"id": "x", "history": [], "memory": []}', "memory"),
    ('{"id": "x", "history": [], "memory": {"task": "", "files": [], "notes": []}, "undo": [], "stats": [], '
     '"compactions": [{"start": 5, "summary": ""}]}', "compaction"),
    ("\xff\xfe", "cannot be read"),
])
def test_a_damaged_session_file_is_named_in_one_clear_sentence(tmp_path, content, problem):
    store = mca.SessionStore(tmp_path)
    (tmp_path / "x.json").write_bytes(content.encode("utf-8", "surrogateescape") if isinstance(content, str)
                                      else content)
    with pytest.raises(ValueError) as caught:
        store.load("x")
    assert str(tmp_path / "x.json") in str(caught.value) and problem in str(caught.value)


def test_resume_carries_history_and_memory(repo):
    agent = make_agent(repo, ['<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',
                              "<final>first answer</final>"])
    agent.ask("first request")
    resumed = mca.MiniAgent.from_session(mca.FakeModelClient(["<final>second answer</final>"]),
                                         make_workspace(repo), agent.session_store, agent.session["id"])
    assert resumed.session["memory"] == agent.session["memory"]
    assert resumed.ask("second request") == "second answer"
    prompt = resumed.model_client.prompts[0]
    assert "first request" in prompt and "   1: alpha" in prompt and "first answer" in prompt
    assert [item["role"] for item in saved(resumed)["history"]] == ["user", "tool", "assistant", "user", "assistant"]


def test_reset_empties_history_and_memory(repo):
    agent = make_agent(repo, ["<final>a</final>"])
    agent.ask("q")
    agent.reset()
    assert saved(agent)["history"] == [] and saved(agent)["memory"] == {"task": "", "files": [], "notes": []}
    assert agent.history_text() == "- empty"


def test_a_session_holding_any_text_survives_a_save(repo):
    agent = make_agent(repo, ["<final>\ud800 lone surrogate and \x00 nul</final>"])
    agent.ask("go")
    assert saved(agent)["history"][-1]["content"] == "\ud800 lone surrogate and \x00 nul"


SAVER = textwrap.dedent("""
    import sys, mini_coding_agent as mca
    store = mca.SessionStore(sys.argv[1])
    session = mca.new_session(".")
    session["id"] = "victim"
    n = 0
    while True:
        n += 1
        session["history"].append({"role": "user", "content": "x" * 5000 + str(n), "created_at": "t"})
        store.save(session)
        if n == 1:
            print("saving", flush=True)
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_during_saves_never_leaves_a_broken_session(tmp_path):
    folder = tmp_path / "sessions"
    for delay in (0.0, 0.01, 0.03, 0.05, 0.08, 0.13, 0.2, 0.3):
        process = subprocess.Popen([sys.executable, "-c", SAVER, str(folder)], stdout=subprocess.PIPE,
                                   env=CHILD_ENV)
        assert process.stdout.readline() == b"saving\n"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        session = mca.SessionStore(folder).load("victim")
        assert session["history"][-1]["content"].startswith("x" * 5000)
    leftovers = [path.name for path in folder.iterdir()
                 if path.name not in ("victim.json", ".gitignore")]
    assert all(name.startswith(".mca-") and name.endswith(".tmp") for name in leftovers)


# --- undo ------------------------------------------------------------------------

def test_undo_reverts_writes_and_patches_one_step_at_a_time(repo):
    agent = make_agent(repo, [
        '<tool name="write_file" path="new.txt"><content>brand new</content></tool>',
        '<tool name="patch_file" path="hello.txt"><old_text>beta</old_text><new_text>BETA</new_text></tool>',
        '<tool name="write_file" path="hello.txt"><content>replaced</content></tool>',
        "<final>done</final>"])
    agent.ask("edit")
    assert (repo / "hello.txt").read_text() == "replaced"
    assert agent.undo() == "Undid the write_file of hello.txt: restored its earlier content."
    assert (repo / "hello.txt").read_text() == "alpha\nBETA\ngamma\n"
    assert agent.undo() == "Undid the patch_file of hello.txt: restored its earlier content."
    assert (repo / "hello.txt").read_text() == "alpha\nbeta\ngamma\n"
    assert agent.undo() == "Undid the write_file of new.txt: removed the file, which did not exist before."
    assert not (repo / "new.txt").exists()
    assert agent.undo() == "Nothing to undo."
    assert saved(agent)["history"][-1]["content"].startswith("/undo: Undid the write_file of new.txt")


def test_undo_works_across_resume_and_keeps_the_json_small(repo):
    big = "line of text\n" * 20000
    (repo / "big.txt").write_text(big)
    agent = make_agent(repo, ['<tool name="write_file" path="big.txt"><content>small</content></tool>',
                              "<final>shrunk</final>"])
    agent.ask("shrink big.txt")
    assert agent.session_path.stat().st_size < 10000
    resumed = mca.MiniAgent.from_session(mca.FakeModelClient([]), make_workspace(repo),
                                         mca.SessionStore(agent.session_store.root), agent.session["id"])
    assert resumed.undo().startswith("Undid the write_file of big.txt")
    assert (repo / "big.txt").read_text() == big


def test_undo_refuses_when_the_file_changed_since(repo):
    agent = make_agent(repo, ['<tool name="write_file" path="hello.txt"><content>agent text</content></tool>',
                              "<final>done</final>"])
    agent.ask("edit")
    (repo / "hello.txt").write_text("the user's own edit")
    assert agent.undo() == "Cannot undo the write_file of hello.txt: the file changed on disk after the agent wrote it."
    assert (repo / "hello.txt").read_text() == "the user's own edit"


def test_denied_or_failed_writes_leave_nothing_to_undo(repo):
    agent = make_agent(repo, ['<tool name="patch_file" path="hello.txt"><old_text>zzz</old_text>'
                              "<new_text>y</new_text></tool>", "<final>done</final>"])
    agent.ask("edit")
    assert agent.undo() == "Nothing to undo."


# --- a session file is untrusted input ------------------------------------------------

def planted_session(repo, **changes):
    """Save a session as a repository could ship it, with `changes` applied to the saved JSON."""
    agent = make_agent(repo, ['<tool name="write_file" path="hello.txt"><content>new</content></tool>',
                              "<final>ok</final>"])
    agent.ask("change hello.txt")
    session = saved(agent)
    session.update(changes)
    agent.session_path.write_text(json.dumps(session))
    return agent


def test_a_session_whose_id_is_not_its_file_name_is_refused(repo):
    agent = planted_session(repo, id="../../../../outside")
    with pytest.raises(ValueError, match="holds the session '../../../../outside'"):
        agent.session_store.load(agent.session["id"])


def test_undo_copies_must_be_names_the_agent_made(repo, tmp_path):
    (tmp_path / "id_rsa").write_text("PRIVATE KEY")
    agent = planted_session(repo)
    session = saved(agent)
    session["undo"][-1]["copy"] = "../../../../../id_rsa"
    agent.session_path.write_text(json.dumps(session))
    with pytest.raises(ValueError, match="an undo entry names a copy the agent did not make"):
        agent.session_store.load(agent.session["id"])
    with pytest.raises(OSError, match="not the name of an undo copy"):
        agent.session_store.copy(agent.session["id"], "../../../../../id_rsa")


def test_undo_obeys_the_protected_folders(repo):
    (repo / ".git").mkdir()
    config = repo / ".git" / "config"
    config.write_text("[core]\n")
    agent = planted_session(repo)
    session = saved(agent)
    session["undo"][-1].update(path=".git/config", sha256=mca.sha256(config.read_bytes()))
    agent.session_path.write_text(json.dumps(session))
    resumed = mca.MiniAgent.from_session(mca.FakeModelClient([]), make_workspace(repo), agent.session_store,
                                         agent.session["id"])
    assert resumed.undo() == "Cannot undo the write_file of .git/config: the agent does not write inside " \
                             ".git or .mini-coding-agent."
    assert config.read_text() == "[core]\n"


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_session_files_and_undo_copies_are_for_the_user_only(repo):
    agent = planted_session(repo)
    copies = list(agent.session_store.path(agent.session["id"], ".undo").iterdir())
    assert stat.S_IMODE(agent.session_path.stat().st_mode) == 0o600
    assert [stat.S_IMODE(copy.stat().st_mode) for copy in copies if copy.suffix == ".bak"] == [0o600]


def test_a_session_is_held_by_one_process_and_a_dead_holder_is_taken_over(tmp_path):
    store = mca.SessionStore(tmp_path / "sessions")
    store.lock("s1")
    with pytest.raises(mca.SessionBusy, match=f"process {os.getpid()}"):
        store.lock("s1")
    store.unlock("s1")
    store.lock("s1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.path("s2", ".lock").write_text(dead.stdout)
    store.lock("s2")   # its holder is gone: taken over
    assert store.holder("s2") == os.getpid()


def test_an_empty_reply_is_recorded_as_an_empty_response(repo):
    agent = make_agent(repo, ["", "<final>ok</final>"])
    assert agent.ask("hi") == "ok"
    assert "empty response" in agent.session["history"][1]["content"]
    assert agent.session["history"][1]["role"] == "assistant"


# --- sessions from other versions, and memory that holds only what happened -------------

@pytest.mark.parametrize("change, problem", [
    (lambda s: s["stats"].append({"prompt_chars": "lots"}), None),               # shown as '-' by /stats
    (lambda s: s["undo"][0].pop("sha256"), "undo[0] has no 'sha256'"),
    (lambda s: s["memory"].update(notes=[{"note": 1}]), "memory.notes[0] is not a str"),
    (lambda s: s["history"].append({"role": "tool", "content": "x"}), "history[3] is malformed"),
    (lambda s: s.update(workspace={"cwd": "."}), "workspace has no 'repo_root'"),
    (lambda s: s.pop("undo"), "the session has no 'undo'"),
    (lambda s: s.pop("workspace"), None),   # written as soon as an agent works on it
])
def test_a_session_that_is_not_as_the_agent_saves_it_is_named_and_no_command_raises(repo, change, problem):
    agent = planted_session(repo)
    session = saved(agent)
    change(session)
    agent.session_path.write_text(json.dumps(session))
    store = mca.SessionStore(agent.session_store.root)
    if problem:
        with pytest.raises(ValueError, match=re.escape(problem)):
            store.load(agent.session["id"])
        return
    resumed = mca.MiniAgent.from_session(mca.FakeModelClient([]), make_workspace(repo), store, agent.session["id"])
    for command in ("/stats", "/memory", "/session", "/undo", "/help"):
        assert mca.COMMANDS[command](resumed)


def test_no_repl_command_ends_the_session_with_a_traceback(repo, capsys, monkeypatch):
    agent = make_agent(repo, [])
    monkeypatch.setattr(agent, "undo", lambda: 1 / 0)
    mca.run_line(agent, mca.Display(), "/undo")
    assert capsys.readouterr().err == "error: /undo failed: division by zero\n"


def test_refused_paths_never_enter_the_memory_and_the_prompt_keeps_fitting(repo):
    long_paths = [f'<tool>{{"name": "read_file", "args": {{"path": "{"x" * 2000}{n}"}}}}</tool>' for n in range(8)]
    agent = make_agent(repo, [*long_paths, "<final>gave up</final>", "<final>still fine</final>"],
                       num_ctx=8192, max_steps=10)
    agent.ask("read them")
    assert agent.session["memory"]["files"] == []
    assert len(agent.memory_text()) < 2000
    assert agent.ask("and now?") == "still fine"


@pytest.mark.skipif(os.name != "posix", reason="symlinks need POSIX here")
def test_undo_of_a_path_that_now_leads_outside_is_one_sentence(repo, tmp_path):
    agent = make_agent(repo, ['<tool name="write_file" path="sub/a.txt"><content>mine</content></tool>',
                              "<final>ok</final>"])
    agent.ask("write sub/a.txt")
    outside = tmp_path / "outside"
    (repo / "sub").rename(outside)
    (repo / "sub").symlink_to(outside)
    assert agent.undo() == "Cannot undo the write_file of sub/a.txt: path escapes workspace: sub/a.txt."
    assert (outside / "a.txt").read_text() == "mine"


def test_the_cli_agent_reads_the_files_a_request_names_before_the_model_starts(repo):
    agent = make_agent(repo, ["<final>it greets</final>"], small_model_help=True)
    assert agent.ask("What does hello.txt say? And nothing.txt?") == "it greets"
    item = agent.session["history"][1]
    assert (item["role"], item["name"], item["args"]) == ("tool", "read_file", {"path": "hello.txt"})
    assert "2: beta" in item["content"] and len(agent.session["history"]) == 3
    assert "[tool:read_file]" in agent.model_client.prompts[0]   # the model saw it


def test_the_small_model_layer_is_on_by_default_and_switches_off_as_a_whole(repo):
    store = mca.SessionStore(repo / ".mini-coding-agent" / "sessions")
    helped = mca.MiniAgent(mca.FakeModelClient(["<final>ok</final>"]), make_workspace(repo), store)
    helped.ask("What does hello.txt say?")   # the file it names is read first
    assert [item.get("name") for item in helped.session["history"]] == [None, "read_file", None]
    plain = make_agent(repo, ['<tool_call>{"name": "cat", "arguments": {"file": "hello.txt"}}</tool_call>'],
                       small_model_help=False)
    assert plain.ask("What does hello.txt say?").startswith("<tool_call>")   # not a call it knows
    assert [item["role"] for item in plain.session["history"]] == ["user", "assistant"]


@pytest.mark.parametrize("request_, read, drafted", [
    ("to_celsius gives wrong results. Fix it.", ["units/convert.py"], True),   # no file named, a function
    ("Give TempReading a to_celsius() method.", ["units/convert.py"], True),   # the one file with both
    ("Make to_celsius round like fmt_temp.", [], False),   # two files: which is meant is not guessed
    ("Make the conversions round to one digit.", [], False),   # no name written as code
    ("test_freezing fails: fix to_celsius.", ["units/convert.py"], True),   # the test is not the one to change
    ("Make describe() return a shorter text.", ["units/convert.py"], True),   # a method
    ("Why does test_freezing fail?", ["test_units.py"], False),   # a test, in no source file: its own
    ("The test test_freezing fails. Fix the code so it passes.", ["test_units.py"], False),   # not the test
    ("Add a test like test_freezing for 212 F.", ["test_units.py"], True),   # a test added: drafted
])
def test_the_one_file_that_defines_the_functions_a_request_names_is_read_first(repo, request_, read, drafted):
    (repo / "units").mkdir()
    (repo / "units" / "convert.py").write_text("class TempReading:\n    def describe(self):\n        return 'a'\n\n\n"
                                              "def to_celsius(f):\n    return f - 32\n")
    (repo / "report.py").write_text("def fmt_temp(c):\n    return f'{c} C'\n")
    (repo / "test_units.py").write_text("def test_freezing():\n    assert to_celsius(32) == 0\n")
    agent = make_agent(repo, ["(no draft)", "<final>ok</final>"], small_model_help=True)
    agent.ask(request_)
    assert [item["args"]["path"] for item in agent.session["history"] if item["role"] == "tool"] == read
    assert any(mca.REWRITE_SYSTEM in prompt for prompt in agent.model_client.prompts) == drafted


def test_a_draft_gets_the_checks_of_an_edit_and_the_edits_it_calls_for(repo):
    (repo / "billing.py").write_text("def calc_total(items):\n    return sum(items)\n")
    (repo / "invoice.py").write_text("from billing import calc_total\nprint(calc_total([]))\n")
    draft = "```python\ndef compute_total(items):\n    return sum(items)\n```"
    run = '<tool>{"name": "run_shell", "args": {"command": "python invoice.py"}}</tool>'
    agent = make_agent(repo, [draft, run, "<final>Renamed.</final>"], small_model_help=True)
    assert agent.ask("Rename calc_total to compute_total everywhere in the project.") == "Renamed."
    assert (repo / "invoice.py").read_text() == "from billing import compute_total\nprint(compute_total([]))\n"
    drafted = agent.session["history"][2]["content"]
    assert drafted.startswith("[check] Changed billing.py as the request asks.\n")
    assert "\nnote: changed to match: invoice.py (renamed calc_total to compute_total)\n" in drafted


def test_a_named_file_just_read_twice_is_not_read_again_and_refused(repo):
    read = '<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>'
    agent = make_agent(repo, [read, "<final>alpha</final>", "<final>still alpha</final>"], small_model_help=True)
    agent.ask("What does hello.txt say?")   # the agent's read, then the model's own identical one
    agent.ask("And what did hello.txt say before?")
    results = [item["content"] for item in agent.session["history"] if item["role"] == "tool"]
    assert len(results) == 2 and not any(result.startswith("error:") for result in results)


def test_the_test_run_a_request_names_runs_first_and_the_model_sees_its_failure(repo):
    (repo / "test_one.py").write_text("import unittest\n\n\nclass T(unittest.TestCase):\n"
                                      "    def test_one(self):\n        self.assertEqual(1 + 1, 3)\n")
    agent = make_agent(repo, ["<final>1 + 1 is not 3</final>"], small_model_help=True)
    agent.ask("The tests fail (python -m unittest). Why?")
    [tool] = [item for item in agent.session["history"] if item["role"] == "tool"]
    assert tool["args"]["command"] == "python -m unittest" and tool["content"].startswith("exit_code: 1")
    assert "AssertionError: 2 != 3" in tool["content"]
    never = make_agent(repo, ["<final>ok</final>"], small_model_help=True, approval_policy="never")
    never.ask("The tests fail (python -m unittest). Why?")   # nothing runs that would only be denied
    assert [item["role"] for item in never.session["history"]] == ["user", "assistant"]
    told = make_agent(repo, ["no draft", "<final>ok</final>"], small_model_help=True)
    told.ask("Fix test_one.py, but do not run python -m unittest: it is slow.")   # drafted first
    assert [item["role"] for item in told.session["history"]] == ["user", "tool", "assistant"]   # read


@pytest.mark.parametrize("output, code, noted", [
    ("no tests ran in 0.01s", 5, True),   # pytest
    ("Ran 0 tests in 0.000s", 5, True),   # unittest, Python 3.12 and later
    ("Ran 0 tests in 0.000s", 0, True),   # unittest before 3.12: "OK", taken for a pass
    ("Ran 3 tests in 0.001s", 0, False),
    ("error: bad config", 5, False)])     # another exit 5
def test_a_test_run_that_found_no_tests_says_so(repo, output, code, noted):
    command = f"{sys.executable} -c \"print('{output}'); raise SystemExit({code})\""
    agent = make_agent(repo, [], small_model_help=True)
    result = agent.run_tool("run_shell", {"command": command})
    assert result.startswith(f"exit_code: {code}\n")
    assert result.endswith(f"\nnote: {mca.NO_TESTS_RAN}") == noted


USAGE_ERROR = ("import sys; sys.stderr.write('ERROR: usage: python -m pytest [options]\\n"
               "python -m pytest: error: unrecognized arguments: --cov=.\\n'); raise SystemExit({code})")
GREET = "import argparse\nargparse.ArgumentParser().parse_args()\n"
GNU_TOOL = "import sys\nsys.stderr.write(\"ls: unrecognized option '--cov=.'\\n\")\nraise SystemExit(2)\n"


@pytest.mark.parametrize("command, noted", [
    (f'{sys.executable} -c "{USAGE_ERROR.format(code=4)}"', True),   # pytest-cov not installed
    (f'{sys.executable} -c "{USAGE_ERROR.format(code=1)}"', False),  # a failing test's output
    (f"{sys.executable} ../ls.py", True),             # GNU's wording, from a program outside
    (f"{sys.executable} greet.py --cov=.", False),    # the repository's own: adding it may be the work
    (f"{sys.executable} tool.py", False)])            # ... also when it names itself by its path
def test_an_installed_program_that_stopped_at_an_option_it_lacks_is_run_again_without(repo, command, noted):
    (repo / "greet.py").write_text(GREET)
    (repo / "tool.py").write_text(GNU_TOOL.replace("ls:", "./tool.py:"))
    (repo.parent / "ls.py").write_text(GNU_TOOL)
    agent = make_agent(repo, [], small_model_help=True)
    result = agent.run_tool("run_shell", {"command": command})
    assert result.startswith(("exit_code: 1", "exit_code: 2", "exit_code: 4"))
    assert "unrecognized " in result and "--cov=." in result
    assert result.endswith("so nothing was run: run it again without --cov=.") == noted
    plain = make_agent(repo, [], small_model_help=False)
    assert "note:" not in plain.run_tool("run_shell", {"command": command})


# --- asking once for a check of the request's edits (the CLI agent does) ----------------

WRITE_APP = '<tool name="write_file" path="app.py"><content>print(1)\n</content></tool>'
RUN_APP = '<tool>{"name": "run_shell", "args": {"command": "python app.py"}}</tool>'


def test_an_answer_after_untested_edits_is_sent_back_once_for_a_check(repo):
    replies = [WRITE_APP, "<final>It prints 1.</final>", RUN_APP, "<final>Checked: it prints 1.</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    assert agent.ask("make app.py print 1") == "Checked: it prints 1."
    history = agent.session["history"]
    assert [item["role"] for item in history] == ["user", "tool", "assistant", "user", "tool", "assistant"]
    assert history[3]["content"] == mca.CHECK_REQUEST.format(files="app.py")
    assert "[check] You changed app.py" in agent.model_client.prompts[2]
    assert "exit_code: 0" in history[4]["content"] and not agent.stopped


def test_only_the_answer_taken_is_remembered_not_one_sent_back(repo):
    replies = [WRITE_APP, "<final>It prints 1.</final>", RUN_APP, "<final>Checked: it prints 1.</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    agent.ask("make app.py print 1")
    saved = agent.session_store.load(agent.session["id"])["memory"]["notes"]
    answers = [note for note in saved if note.startswith("answer: ")]
    assert answers == ["answer: Checked: it prints 1."]   # the next request's memory has no "It prints 1."


def test_a_model_that_answers_again_is_taken_at_its_word(repo):
    agent = make_agent(repo, [WRITE_APP, "<final>done</final>", "<final>still done</final>"], small_model_help=True)
    assert agent.ask("make app.py") == "still done"
    assert len(agent.model_client.prompts) == 3


def test_the_check_is_asked_for_once_per_request(repo):
    edit_again = '<tool name="patch_file" path="app.py"><old_text>1</old_text><new_text>2</new_text></tool>'
    agent = make_agent(repo, [WRITE_APP, "<final>1</final>", RUN_APP, edit_again, "<final>2</final>",
                              WRITE_APP, "<final>next request</final>", "<final>checked</final>"],
                       small_model_help=True)
    assert agent.ask("make app.py print 1, then 2") == "2"   # edited after its check: not sent back again
    assert agent.ask("now 1 again") == "checked"             # a new request: asked again
    checks = [item for item in agent.session["history"] if item["content"].startswith("[check]")]
    assert len(checks) == 2


def test_an_earlier_requests_answer_given_again_goes_back_once(repo):
    replies = ["<final>min 2.5 max 4.0</final>",   # as Qwen2.5-Coder-1.5B answered a second request
               "<final>min 2.5 max 4.0</final>", "<final>Added the line.</final>",
               "<final>min 2.5 max 4.0</final>", "<final>min 2.5 max 4.0</final>", "<final>min 2.5 max 4.0</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    agent.ask("What does cli.py print for 3 and 5?")
    assert agent.ask("Add a docstring line to summary.") == "Added the line."
    assert agent.session["history"][-2]["content"] == mca.COPIED_REQUEST.format(
        request="Add a docstring line to summary.")
    assert agent.ask("What does cli.py print for 3 and 5?") == "min 2.5 max 4.0"   # asked again: kept
    assert agent.ask("And for 2 and 9?") == "min 2.5 max 4.0"   # sent back once, then taken at its word
    assert sum(item["content"].startswith("[check] That is your answer") for item in agent.session["history"]) == 2


def test_an_earlier_answer_given_after_this_requests_edits_goes_back_for_what_was_done(repo):
    first = "<final>app.py now prints 1.</final>"
    replies = [WRITE_APP, RUN_APP, first,   # as Qwen2.5-Coder-1.5B answered a second request it had done
               '<tool name="write_file" path="app.py"><content>print(2)\n</content></tool>', RUN_APP, first,
               "<final>app.py now prints 2.</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    agent.ask("make the program print 1")
    assert agent.ask("make it print 2") == "app.py now prints 2."
    assert agent.session["history"][-2]["content"] == mca.COPIED_AFTER_EDITS.format(
        request="make it print 2", files="app.py")


MAIN_PY = ("import sys\n\nfrom inventory import load\n\n\ndef main(argv):\n    items = load(argv[1])\n"
           "    print(len(items))\n\n\nif __name__ == \"__main__\":\n    main(sys.argv)\n")
DRAFT = MAIN_PY.replace("    items = load(argv[1])\n", "    try:\n        items = load(argv[1])\n"
                        "    except FileNotFoundError:\n        sys.exit(f\"no such file: {argv[1]}\")\n")
MISSING_FILE = ("main.py crashes when the CSV file does not exist. Make it exit with a clear error instead, "
                "as 1.2.0 did.")   # a version number is not a new file to write


def test_a_change_to_the_one_file_a_request_names_is_drafted_whole_first(repo):
    (repo / "main.py").write_text(MAIN_PY)
    replies = [f"```python\n{DRAFT}```",   # Qwen2.5-Coder-1.5B, asked for the whole file
               '<tool>{"name": "run_shell", "args": {"command": "python main.py nosuch.csv"}}</tool>',
               "<final>main.py now exits with a clear error.</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    assert agent.ask(MISSING_FILE) == "main.py now exits with a clear error."
    assert (repo / "main.py").read_text() == DRAFT
    draft_prompt = agent.model_client.prompts[0]
    assert draft_prompt.startswith(f"<|system|>\n{mca.REWRITE_SYSTEM}") and MAIN_PY in draft_prompt
    history = agent.session["history"]
    assert [item["role"] for item in history] == ["user", "tool", "user", "tool", "assistant"]
    assert history[2]["content"].startswith("[check] Changed main.py as the request asks.\n")
    assert "+    except FileNotFoundError:" in history[2]["content"]
    assert agent.undo().startswith("Undid") and (repo / "main.py").read_text() == MAIN_PY   # as any edit


@pytest.mark.parametrize("request_, drafted", [
    ("Add a median line to report.py's output. Put a median(values) function in stats.py.",
     ["stats.py", "report.py"]),   # each with the whole request, the one report.py imports first
    ("Add a median(values) function to stats.py and say so in README.md.", ["stats.py"]),   # code only
    ("Make report.py, stats.py and README.md say median.", []),   # more than two: the model's work
    ("test_stats.py fails. Fix stats.py.", ["stats.py"]),   # a test file is drafted only to add a test
    ("Add median(values) to stats.py and a test for it in test_stats.py.", ["stats.py", "test_stats.py"]),
])
def test_each_of_two_source_files_a_request_names_is_drafted_in_turn(repo, request_, drafted):
    (repo / "stats.py").write_text("def mean(values):\n    return sum(values) / len(values)\n")
    (repo / "report.py").write_text("from stats import mean\n\nprint(mean([1, 2]))\n")
    (repo / "README.md").write_text("# stats\n")
    (repo / "test_stats.py").write_text("from stats import mean\n\n\ndef test_mean():\n    assert mean([2]) == 2\n")
    drafts = [f"```python\n{(repo / path).read_text()}# median\n```" for path in drafted]
    run = '<tool>{"name": "run_shell", "args": {"command": "python report.py"}}</tool>'
    agent = make_agent(repo, [*drafts, *[run] * bool(drafted), "<final>Done.</final>"], small_model_help=True)
    assert agent.ask(request_) == "Done."
    asked = [prompt for prompt in agent.model_client.prompts if mca.REWRITE_SYSTEM in prompt]
    assert len(asked) == len(drafted) and all(request_ in prompt for prompt in asked)
    assert all(f"The file {path} now:" in prompt for path, prompt in zip(drafted, asked, strict=True))
    assert [path for path in ("README.md", "report.py", "stats.py", "test_stats.py")
            if (repo / path).read_text().endswith("# median\n")] == sorted(drafted)


def test_when_the_first_of_two_drafts_is_not_written_the_second_is_not_asked_for(repo):
    (repo / "stats.py").write_text("def mean(values):\n    return sum(values) / len(values)\n")
    (repo / "report.py").write_text("from stats import mean\n\nprint(mean([1, 2]))\n")
    replies = ["```python\ndef median(values):\n    return 0\n```",   # not whole: not written
               "<final>Not done.</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    assert agent.ask("Add a median line to report.py's output. Put median(values) in stats.py.") == "Not done."
    assert sum(mca.REWRITE_SYSTEM in prompt for prompt in agent.model_client.prompts) == 1
    assert (repo / "report.py").read_text() == "from stats import mean\n\nprint(mean([1, 2]))\n"


@pytest.mark.parametrize("request_, drafted", [
    ("main.py uses the deprecated datetime.utcnow(), e.g. in main(). Replace it.", True),   # no files
    ("Write tests for main.py in a new file test_main.py.", False),   # the work is a file to create
    ("Add a notes.md that says what main.py does.", False),
])
def test_a_request_that_names_a_file_not_there_yet_gets_no_draft_of_the_one_that_is(repo, request_, drafted):
    (repo / "main.py").write_text(MAIN_PY)
    agent = make_agent(repo, ["(no draft)", "<final>ok</final>"], small_model_help=True)
    agent.ask(request_)
    assert (mca.REWRITE_SYSTEM in agent.model_client.prompts[0]) == drafted


def test_a_long_file_is_not_drafted_when_the_request_names_none_of_its_definitions(repo):
    (repo / "main.py").write_text(MAIN_PY + "# a comment line\n" * (mca.REWRITE_MAX_CHARS // 17))
    agent = make_agent(repo, ["<final>ok</final>"], small_model_help=True)
    agent.ask(MISSING_FILE)
    assert not any(mca.REWRITE_SYSTEM in prompt for prompt in agent.model_client.prompts)


HELPERS = "".join(f'\n\ndef helper_{i}(value):\n    """Value plus {i}: the rest of a long file."""\n'
                  f"    return value + {i}\n" for i in range(30))
LONG_PY = f"import sys\n{HELPERS}\n\ndef average(numbers):\n    return sum(numbers) / len(numbers)\n"
AVERAGE = ("import math\n\n\ndef average(numbers):\n    if not numbers:\n        return None\n"
           "    return math.fsum(numbers) / len(numbers)\n")


@pytest.mark.parametrize("usage", ["", "\n\nExample usage:\n```python\nprint(average([]))\n```\n"])
def test_in_a_long_file_the_one_definition_a_request_names_is_drafted_whole(repo, usage):
    (repo / "averages.py").write_text(LONG_PY)
    check = '<tool>{"name": "run_shell", "args": {"command": "python -c \'import averages\'"}}</tool>'
    agent = make_agent(repo, [f"```python\n{AVERAGE}```{usage}", check, "<final>average returns None.</final>"],
                       small_model_help=True)   # a second block that only calls it is not the draft
    agent.ask("Make average in averages.py return None for an empty list.")
    assert len(LONG_PY) > mca.REWRITE_MAX_CHARS
    assert (repo / "averages.py").read_text() == "import sys\nimport math\n" + LONG_PY[11:].replace(
        "    return sum(numbers)", "    if not numbers:\n        return None\n    return math.fsum(numbers)")
    draft_prompt = agent.model_client.prompts[0]
    assert "The function average in averages.py now:" in draft_prompt and "helper_1" not in draft_prompt
    assert agent.session["history"][2]["content"].startswith("[check] Changed averages.py as")


@pytest.mark.parametrize("draft", [
    f"```python\n{LONG_PY.replace('sum(numbers)', 'sum(numbers or [0])')}```",   # the whole file again
    f"```python\n{AVERAGE}\nprint(average([]))\n```",                           # an example call
])
def test_a_definitions_draft_that_holds_more_than_definitions_is_not_written(repo, draft):
    (repo / "averages.py").write_text(LONG_PY)
    agent = make_agent(repo, [draft, "<final>ok</final>"], small_model_help=True)
    agent.ask("Make average in averages.py return None for an empty list.")
    assert (repo / "averages.py").read_text() == LONG_PY
    assert "The function average in averages.py now:" in agent.model_client.prompts[0]


def test_a_method_a_request_names_in_a_long_file_has_its_class_drafted(repo):
    queue = "class Queue:\n    def __init__(self):\n        self.items = []\n\n    def pop(self):\n" \
            "        return self.items.pop(0)\n"
    (repo / "fifo.py").write_text(LONG_PY + "\n\n" + queue)
    agent = make_agent(repo, ["(no draft)", "<final>ok</final>"], small_model_help=True)
    agent.ask("Make pop in fifo.py raise IndexError on an empty queue.")
    assert f"The class Queue in fifo.py now:\n```\n{queue}```" in agent.model_client.prompts[0]


@pytest.mark.parametrize("request_, draft, policy", [
    ("What does main.py print?", DRAFT, "auto"),                      # a question
    ("Explain how main.py handles a missing file.", DRAFT, "auto"),  # asks, does not order
    (MISSING_FILE, DRAFT, "never"),                                   # nothing may be written
    (MISSING_FILE, "```python\nimport sys\n# ... the rest as before\n```", "auto"),   # a sketch
    (MISSING_FILE, f"```python\n{DRAFT.replace('except', 'except(')}```", "auto"),  # broken
    (MISSING_FILE, "I would wrap load() in a try block.", "auto"),   # no code
])
def test_no_draft_is_written_unless_the_request_orders_a_change_and_the_draft_is_whole(
        repo, request_, draft, policy):
    (repo / "main.py").write_text(MAIN_PY)
    agent = make_agent(repo, [draft, "<final>ok</final>"], small_model_help=True, approval_policy=policy)
    agent.ask(request_)
    assert (repo / "main.py").read_text() == MAIN_PY
    asked = not request_.endswith("?") and policy != "never" and not request_.startswith("Explain")
    drafted = [prompt for prompt in agent.model_client.prompts if mca.REWRITE_SYSTEM in prompt]
    assert len(drafted) == asked   # asked for only where a change is ordered and may be written


@pytest.mark.parametrize("request_, ordered", [
    ("Find the bug in main.py and fix it.", True),              # a question word, then an order
    ("Could you make main.py exit cleanly on a missing file?", True),   # an order, asked politely
    ("Why does main.py crash? Fix it.", True),
    ("What does main.py print? Then make it print the total.", True),
    ("Find where main.py sets the delimiter.", False),          # "set", but not as an order
    ("Which function handles the CSV file? Give the file and the function.", False),
    ("Does main.py use the csv module and handle errors?", False),
])
def test_a_request_orders_a_change_when_a_clause_starts_with_a_change_verb(request_, ordered):
    assert mca.orders_change(request_) == ordered


@pytest.mark.parametrize("no_to", ["test run", "draft"])
def test_a_no_to_what_the_coach_runs_before_the_model_ends_the_request(repo, monkeypatch, no_to):
    (repo / "main.py").write_text(MAIN_PY)
    answers = iter(["n"] if no_to == "test run" else ["y", "n"])   # the test run, then the draft
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    agent = make_agent(repo, [f"```python\n{DRAFT}```", "<final>never asked</final>"],
                       small_model_help=True, approval_policy="ask")
    assert agent.ask("The tests fail (python -m unittest). " + MISSING_FILE) == mca.SAID_NO
    assert agent.stopped and (repo / "main.py").read_text() == MAIN_PY
    assert len(agent.model_client.prompts) == (no_to == "draft")   # only the draft was asked for
    assert agent.session["history"][-1]["content"] == mca.SAID_NO


def test_a_no_to_an_edit_the_coach_adds_to_the_models_ends_the_request(repo, monkeypatch):
    answers = iter(["y", "n"])   # the model's write approved, the coach's import refused
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    write = '<tool name="write_file" path="clock.py"><content>def now():\n    return time.time()\n</content></tool>'
    listing = '<tool>{"name": "list_files", "args": {}}</tool>'
    agent = make_agent(repo, [write + listing, "<final>never asked</final>"], small_model_help=True,
                       approval_policy="ask")
    assert agent.ask("Write clock.py with a now() function.") == mca.SAID_NO
    assert [item["name"] for item in agent.session["history"] if item["role"] == "tool"] == ["write_file"]
    assert "import time" not in (repo / "clock.py").read_text() and len(agent.model_client.prompts) == 1


def test_an_answer_while_a_name_taken_away_is_still_used_goes_back_while_the_model_makes_progress(repo):
    (repo / "billing.py").write_text("def calc_total(items):\n    return sum(items)\n")
    (repo / "invoice.py").write_text("from billing import calc_total\nprint(calc_total([]))\n")
    patch = '<tool name="patch_file" path="{}"><old_text>{}</old_text><new_text>{}</new_text></tool>'
    replies = ["(no draft)",   # the request names calc_total: its file is read, a draft asked for
               patch.format("billing.py", "def calc_total", "def compute_total"), "<final>patched billing.py</final>",
               patch.format("invoice.py", "import calc_total", "import compute_total"), "<final>done</final>",
               "<final>done</final>",   # no progress since: not sent back for that again, but for a check
               "<final>done, as said</final>"]
    agent = make_agent(repo, replies, small_model_help=True)
    assert agent.ask("give calc_total a clearer name") == "done, as said"   # the new name is the model's
    sent_back = [item["content"] for item in agent.session["history"][1:] if item["role"] == "user"]
    assert len(sent_back) == 3 and sent_back[2] == mca.CHECK_REQUEST.format(files="billing.py, invoice.py")
    assert sent_back[0].startswith("[check] Not done yet: warning: billing.py no longer defines calc_total")
    assert "invoice.py:1: from billing import calc_total" in sent_back[0]
    assert "invoice.py:1:" not in sent_back[1] and "invoice.py:2: print(calc_total([]))" in sent_back[1]



def test_the_coach_changes_the_uses_of_a_definition_the_request_renames(repo):
    (repo / "billing.py").write_text("def calc_total(items):\n    return sum(items) if items else calc_total([0])\n")
    (repo / "invoice.py").write_text("from billing import calc_total\nprint(calc_total([]))\n")
    (repo / "shop.py").write_text("def calc_total(cart):\n    return len(cart)\n")   # its own: not billing's
    rename = '<tool name="patch_file" path="billing.py"><old_text>def calc_total</old_text>' \
             '<new_text>def compute_total</new_text></tool>'
    agent = make_agent(repo, [rename, "<final>renamed</final>", "<final>checked</final>"], small_model_help=True)
    assert agent.ask("Rename calc_total to compute_total everywhere.") == "checked"   # after the check's send-back
    assert (repo / "billing.py").read_text() == \
        "def compute_total(items):\n    return sum(items) if items else compute_total([0])\n"
    assert (repo / "invoice.py").read_text() == "from billing import compute_total\nprint(compute_total([]))\n"
    assert (repo / "shop.py").read_text() == "def calc_total(cart):\n    return len(cart)\n"
    result = agent.session["history"][1]["content"]
    assert result == ("patched billing.py\nnote: changed to match: billing.py (renamed calc_total to compute_total); "
                      "invoice.py (renamed calc_total to compute_total)")
    assert mca.CHECK_REQUEST.format(files="billing.py, invoice.py") in agent.session["history"][3]["content"]
    assert [change["path"] for change in agent.session["undo"]] == ["billing.py", "billing.py", "invoice.py"]

TESTS_IN_THE_ANSWER = (   # as the 1.5B model answered, having written no file
    "Unit tests for stack.py in test_stack.py (use unittest):\n\n```python\nimport unittest\nfrom stack import "
    "Stack\n\nclass TestStack(unittest.TestCase):\n    def test_push(self):\n        stack = Stack()\n        "
    "stack.push(1)\n        self.assertEqual(stack.pop(), 1)\n```\n\nThis test suite covers push and pop.")


def test_code_an_answer_holds_for_the_new_file_the_request_names_is_written_there(repo):
    (repo / "stack.py").write_text("class Stack:\n    def __init__(self):\n        self.items = []\n")
    run_tests = '<tool>{"name": "run_shell", "args": {"command": "python -m unittest test_stack"}}</tool>'
    agent = make_agent(repo, [TESTS_IN_THE_ANSWER, run_tests, "<final>The tests fail: Stack has no push.</final>"],
                       small_model_help=True)
    request = "Write unit tests for stack.py in a new file test_stack.py (use unittest)."
    assert agent.ask(request) == "The tests fail: Stack has no push."
    assert (repo / "test_stack.py").read_text().startswith("import unittest\nfrom stack import Stack\n\nclass")
    history = agent.session["history"]
    assert [item["role"] for item in history] == ["user", "tool", "assistant", "tool", "user", "tool", "assistant"]
    assert history[3]["content"].startswith("(ran write_file; your answer held the code for test_stack.py, so it "
                                            "was written there)\nwrote test_stack.py")
    assert history[4]["content"] == mca.CHECK_REQUEST.format(files="test_stack.py")


@pytest.mark.parametrize("request_text", [
    "How would unit tests in test_stack.py look?",             # a question: shown, not written
    "Write unit tests for stack.py in test_stack.py or tests.py.",   # two new files: which one?
    "Write unit tests for stack.py."])                           # no new file named
def test_code_in_an_answer_is_written_only_to_the_one_new_file_a_request_asks_for(repo, request_text):
    (repo / "stack.py").write_text("class Stack:\n    pass\n")
    agent = make_agent(repo, [TESTS_IN_THE_ANSWER], small_model_help=True)
    assert agent.ask(request_text) == TESTS_IN_THE_ANSWER
    assert sorted(path.name for path in repo.glob("*.py")) == ["stack.py"]


def test_code_in_an_answer_is_not_written_where_nothing_may_be_written(repo):
    agent = make_agent(repo, [TESTS_IN_THE_ANSWER], small_model_help=True, approval_policy="never")
    assert agent.ask("Write unit tests in test_stack.py.") == TESTS_IN_THE_ANSWER
    assert [item["role"] for item in agent.session["history"]] == ["user", "assistant"]
    assert not (repo / "test_stack.py").exists()


@pytest.mark.parametrize("replies, settings", [
    ([WRITE_APP, RUN_APP, "<final>ran it</final>"], {}),                      # the model checked on its own
    (['<tool>{"name": "run_shell", "args": {"command": "exit 1"}}</tool>', "<final>it fails</final>"], {}),   # no edit
    (['<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>', "<final>read</final>"], {}),   # no edit
    (['<tool name="write_file" path="notes.md"><content>x</content></tool>', "<final>done</final>"], {}),   # no code
    ([WRITE_APP, "<final>done</final>"], {"approval_policy": "never"}),     # the write was refused: nothing changed
    ([WRITE_APP, "<final>done</final>"], {"small_model_help": False}),      # the plain agent asks nothing
    ([WRITE_APP, "<final>done</final>"], {"max_steps": 2}),                 # too few steps left to check
])
def test_no_check_is_asked_for_when_there_is_nothing_to_check_or_no_way(repo, replies, settings):
    agent = make_agent(repo, replies, **{"small_model_help": True, **settings})
    answer = agent.ask("go")
    assert answer == replies[-1].removeprefix("<final>").removesuffix("</final>")
    assert not any(item["content"].startswith("[check]") for item in agent.session["history"])


def test_a_failed_edit_with_a_note_before_its_error_is_not_taken_for_an_edit(repo):
    plan = (WRITE_APP +
            '<tool name="patch_file" path="nothing.py"><old_text>a</old_text><new_text>b</new_text></tool>'
            '<tool>{"name": "list_files", "args": {}}</tool>')
    agent = make_agent(repo, [plan, "<final>done</final>", "<final>done</final>"], small_model_help=True)
    agent.ask("edit")
    failed_patch = agent.session["history"][2]
    assert failed_patch["content"] == ("error: tool patch_file failed: no such file: nothing.py\n"
                                       "(it failed, so the calls after it in your reply were not run)")
    assert agent.session["history"][4]["content"] == mca.CHECK_REQUEST.format(files="app.py")
    assert "nothing.py" not in agent.session["memory"]["files"]
