"""The command line as a subprocess, against the scripted Ollama server."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import MODEL, MODULE, run_cli
from test_session import MALFORMED

import mini_coding_agent as mca

FLAGS = ["--cwd", "--model", "--host", "--ollama-timeout", "--resume", "--approval", "--max-steps",
         "--max-new-tokens", "--temperature", "--top-p", "--num-ctx", "--no-stream", "--verbose", "--version"]


def agent_cli(ollama, repo, *args, **kwargs):
    return run_cli("--cwd", str(repo), "--host", ollama.url, *args, **kwargs)


def sessions(repo):
    return sorted((repo / ".mini-coding-agent" / "sessions").glob("*.json"))


def test_help_lists_every_flag():
    done = run_cli("--help")
    assert done.returncode == 0
    for flag in FLAGS:
        assert flag in done.stdout


def test_runs_as_a_module_too(repo):
    done = subprocess.run([sys.executable, "-m", "mini_coding_agent", "--version"], capture_output=True, text=True,
                          cwd=repo, env={**os.environ, "PYTHONPATH": str(MODULE.parent)})
    assert done.returncode == 0 and done.stdout.strip() == f"mini-coding-agent {mca.__version__}"


def test_a_three_turn_session_edits_files_and_carries_history_forward(ollama, repo):
    ollama.script('<tool name="write_file" path="calc.py"><content>def add(a, b):\n    return a + b\n'
                  '</content></tool>', "<final>Created calc.py.</final>")
    first = agent_cli(ollama, repo, "--approval", "auto", "Create calc.py with add()")
    assert (first.returncode, first.stdout) == (0, "Created calc.py.\n")
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"

    ollama.script('<tool name="write_file" path="test_calc.py"><content>from calc import add\n\n\n'
                  'def test_add():\n    assert add(2, 3) == 5\n</content></tool>', "<final>Added a test.</final>")
    second = agent_cli(ollama, repo, "--approval", "auto", "--resume", "latest", "Add a test")
    assert (second.returncode, second.stdout) == (0, "Added a test.\n")
    assert (repo / "test_calc.py").exists()

    ollama.script('<tool name="patch_file" path="calc.py"><old_text>return a + b</old_text>'
                  '<new_text>return int(a) + int(b)</new_text></tool>', "<final>Patched add().</final>")
    third = agent_cli(ollama, repo, "--approval", "auto", "--resume", "latest", "Make add() coerce to int")
    assert (third.returncode, third.stdout) == (0, "Patched add().\n")
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return int(a) + int(b)\n"

    [path] = sessions(repo)
    session = json.loads(path.read_text())
    requests = [item["content"] for item in session["history"] if item["role"] == "user"]
    assert requests == ["Create calc.py with add()", "Add a test", "Make add() coerce to int"]
    turn3_prompt = ollama.prompts[-2]
    assert "Created calc.py." in turn3_prompt and "wrote test_calc.py" in turn3_prompt


def test_one_shot_stdout_holds_only_the_answer(ollama, repo):
    ollama.script('<tool>{"name": "list_files", "args": {}}</tool>', "<final>Two files.</final>")
    done = agent_cli(ollama, repo, "--verbose", "What is here?")
    assert done.stdout == "Two files.\n"
    assert "MINI CODING AGENT" in done.stderr and "-> list_files ." in done.stderr
    assert "prompt" in done.stderr and "reused" in done.stderr
    assert "\x1b" not in done.stdout + done.stderr


def test_the_repl_reads_requests_and_slash_commands_from_stdin(ollama, repo):
    ollama.script("<final>Hello there.</final>")
    done = agent_cli(ollama, repo, input="/help\nhi\n/memory\n/session\n/stats\n/undo\n/nope\n/reset\n/memory\n/exit\n")
    assert done.returncode == 0
    out = done.stdout
    assert "/undo" in out and "/stats" in out and "/reset" in out
    assert "Hello there." in out
    assert "- task: hi" in out
    assert str(repo / ".mini-coding-agent" / "sessions") in out
    assert "   1 " in out   # the /stats row of the one model call
    assert "Nothing to undo." in out
    assert "Unknown command /nope" in done.stderr
    assert "Session history and memory cleared." in out
    assert out.rstrip().endswith("mini-coding-agent>")
    assert "go on with: mini-coding-agent --resume" in done.stderr


@pytest.mark.parametrize("ending", ["/quit\n", "", "/exit\nnever read\n"])
def test_the_repl_leaves_on_quit_or_end_of_input(ollama, repo, ending):
    done = agent_cli(ollama, repo, input=ending)
    assert done.returncode == 0
    assert ollama.generate_requests == []


def test_a_line_ending_in_backslash_continues(ollama, repo):
    ollama.script("<final>ok</final>")
    agent_cli(ollama, repo, input="first line \\\nsecond line\n")
    assert "Current user request:\nfirst line \nsecond line" in ollama.prompts[0]


def test_without_a_terminal_risky_tools_are_denied(ollama, repo):
    ollama.script('<tool name="write_file" path="x.txt"><content>x</content></tool>', "<final>denied</final>")
    done = agent_cli(ollama, repo, "write x.txt", input="y\n")
    assert done.returncode == 0 and not (repo / "x.txt").exists()
    assert "Input is not a terminal" in done.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--cwd", "/no/such/folder", "hi"], 2, "error: --cwd /no/such/folder is not a folder"),
    (["--resume", "20200101-000000-abcdef", "hi"], 2, "error: there is no session file "),
    (["--resume", "../../etc/passwd", "hi"], 2, "is not a session id"),
    (["--max-steps", "0", "hi"], 2, "must be at least 1"),
    (["--approval", "sometimes", "hi"], 2, "invalid choice"),
    (["--num-ctx", "900", "hi"], 2, "leaves no room for the transcript"),
    (["--model", "nosuch:1b", "hi"], 1, "ollama pull nosuch:1b"),
])
def test_user_errors_end_in_one_clear_line(ollama, repo, args, code, message):
    done = run_cli("--host", ollama.url, *(["--cwd", str(repo)] if "--cwd" not in args else []), *args)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("reply, message", [
    ({"status": 500, "error": "boom"}, "error: Ollama request failed with HTTP 500: boom"),
    ({"status": 503, "raw_body": b"<html>busy</html>"}, "HTTP 503: <html>busy</html>"),
    ({"raw_body": b"not json at all"}, "not JSON"),
    ({"text": "<final>cut</final>", "drop": True}, "error: The connection to Ollama"),
    ({"delay": 3, "text": "<final>late</final>"}, "did not answer within 1 s"),
])
def test_server_faults_end_the_step_with_a_message_and_keep_the_session(ollama, repo, reply, message):
    ollama.script(reply)
    done = agent_cli(ollama, repo, "--ollama-timeout", "1", "hello")
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    [path] = sessions(repo)
    assert json.loads(path.read_text())["history"][0]["content"] == "hello"
    ollama.script("<final>back again</final>")
    again = agent_cli(ollama, repo, "--resume", "latest", "retry")
    assert (again.returncode, again.stdout) == (0, "back again\n")


def test_the_repl_keeps_going_after_a_server_fault(ollama, repo):
    ollama.script({"status": 500, "error": "boom"}, "<final>fine now</final>")
    done = agent_cli(ollama, repo, input="first\nsecond\n")
    assert done.returncode == 0
    assert "HTTP 500: boom" in done.stderr and "fine now" in done.stdout


def test_a_server_that_is_down_is_found_before_any_request(repo):
    done = run_cli("--cwd", str(repo), "--host", "http://127.0.0.1:9", "hi")
    assert done.returncode == 1
    assert "Cannot reach Ollama at http://127.0.0.1:9" in done.stderr and "ollama serve" in done.stderr
    assert "MINI CODING AGENT" not in done.stderr


def test_a_missing_model_lists_what_is_installed(ollama, repo):
    ollama.models = ["llama3.2:latest", "qwen2.5-coder:7b"]
    done = agent_cli(ollama, repo, "hi")
    assert done.returncode == 1
    assert f"The model {MODEL} is not pulled (installed: llama3.2:latest, qwen2.5-coder:7b)" in done.stderr
    assert f"ollama pull {MODEL}" in done.stderr


def test_a_server_that_is_not_quite_ollama_gets_a_warning(ollama, repo):
    ollama.tags_body = b'{"object": "list", "data": []}'
    ollama.script("<final>works anyway</final>")
    done = agent_cli(ollama, repo, "hi")
    assert done.returncode == 0 and done.stdout == "works anyway\n"
    assert "not with Ollama's model list" in done.stderr


def test_num_ctx_beyond_the_models_context_length_is_warned(ollama, repo):
    ollama.context_length = 8192
    ollama.script("<final>ok</final>")
    done = agent_cli(ollama, repo, "--num-ctx", "16384", "hi")
    assert "--num-ctx 16384 is more than" in done.stderr and done.returncode == 0


def test_resume_latest_skips_a_damaged_session(ollama, repo):
    ollama.script("<final>one</final>")
    agent_cli(ollama, repo, "first")
    [good] = sessions(repo)
    time.sleep(0.05)
    (good.parent / "20991231-000000-ffffff.json").write_text('{"id": "broken", "hist')
    ollama.script("<final>two</final>")
    done = agent_cli(ollama, repo, "--resume", "latest", "second")
    assert done.returncode == 0 and "skipping a session" in done.stderr and "20991231-000000-ffffff" in done.stderr
    assert [item["content"] for item in json.loads(good.read_text())["history"]][-2:] == ["second", "two"]


def test_resume_latest_without_sessions_starts_fresh(ollama, repo):
    ollama.script("<final>fresh</final>")
    done = agent_cli(ollama, repo, "--resume", "latest", "hi")
    assert done.returncode == 0 and "starting a new one" in done.stderr


@pytest.mark.parametrize("reply", ["<tool>{broken", '<tool>{"name": 5}</tool>', "", "<tool " * 3000,
                                   '<tool>{"name": "read_file", "args": {"path": "\\ud800"}}</tool>',
                                   "\x1b]0;owned\x07<final>\x1b[2Jclean</final>"])
def test_hostile_replies_through_the_cli(ollama, repo, reply):
    ollama.script(reply, "<final>fine</final>")
    done = agent_cli(ollama, repo, "go")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "\x1b" not in done.stdout + done.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a subprocess")
def test_ctrl_c_during_a_slow_reply_exits_cleanly_with_the_session_saved(ollama, repo):
    ollama.script({"delay": 5, "text": "<final>too late</final>"})
    process = subprocess.Popen([sys.executable, str(MODULE), "--cwd", str(repo), "--host", ollama.url, "slow one"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 130
    assert "Traceback" not in err and "--resume" in err
    [path] = sessions(repo)
    history = json.loads(path.read_text())["history"]
    assert [item["content"] for item in history] == ["slow one", "interrupted by the user"]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_sigkill_at_any_moment_leaves_every_session_loadable(ollama, repo):
    store = mca.SessionStore(repo / ".mini-coding-agent" / "sessions")
    steps = [f'<tool name="write_file" path="f{n}.txt"><content>{"x" * 20000}</content></tool>' for n in range(40)]
    for delay in (0.15, 0.3, 0.45, 0.6, 0.8, 1.0):
        ollama.script(*steps, "<final>done</final>")
        process = subprocess.Popen([sys.executable, str(MODULE), "--cwd", str(repo), "--host", ollama.url,
                                    "--approval", "auto", "--max-steps", "50", "--resume", "latest", "write"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.kill()
        process.wait()
        ollama.replies.clear()
        for session_id in store.newest_first():
            assert store.load(session_id)["id"] == session_id
    ollama.script("<final>still fine</final>")
    assert agent_cli(ollama, repo, "--resume", "latest", "after all that").stdout == "still fine\n"


def test_every_malformed_reply_is_followed_by_an_answer_in_one_run(ollama, repo):
    for reply in MALFORMED:
        ollama.script(reply, "<final>recovered</final>", "<final>recovered</final>")
    requests = "".join(f"request {n}\n" for n in range(len(MALFORMED)))
    done = agent_cli(ollama, repo, "--max-steps", "3", input=requests, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert done.stdout.count("recovered") >= len(MALFORMED)


def test_a_secret_outside_the_workspace_never_reaches_a_prompt(ollama, repo, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keys.txt").write_text("TOP-SECRET-VALUE again\n")
    if os.name == "posix":
        (repo / "link.txt").symlink_to(secret)
        (repo / "linkdir").symlink_to(tmp_path / "outside")
    attempts = [
        '<tool>{"name": "read_file", "args": {"path": "../secret.txt"}}</tool>',
        f'<tool>{{"name": "read_file", "args": {{"path": "{secret}"}}}}</tool>',
        '<tool>{"name": "read_file", "args": {"path": "~/../secret.txt"}}</tool>',
        '<tool>{"name": "read_file", "args": {"path": "link.txt"}}</tool>',
        '<tool>{"name": "read_file", "args": {"path": "linkdir/keys.txt"}}</tool>',
        '<tool>{"name": "list_files", "args": {"path": ".."}}</tool>',
        '<tool>{"name": "list_files", "args": {"path": "linkdir"}}</tool>',
        '<tool>{"name": "search", "args": {"pattern": "SECRET"}}</tool>',
        '<tool>{"name": "search", "args": {"pattern": "SECRET", "path": ".."}}</tool>',
        '<tool>{"name": "patch_file", "args": {"path": "link.txt", "old_text": "TOP", "new_text": "X"}}</tool>',
        '<tool name="write_file" path="linkdir/planted.txt"><content>x</content></tool>',
        '<tool name="write_file" path="../planted.txt"><content>x</content></tool>',
    ]
    ollama.script(*attempts, "<final>gave up</final>")
    done = agent_cli(ollama, repo, "--approval", "auto", "--max-steps", "20", "find the secret")
    assert done.returncode == 0 and done.stdout == "gave up\n"
    assert len(ollama.prompts) == len(attempts) + 1
    assert not any("TOP-SECRET" in prompt for prompt in ollama.prompts)
    assert "TOP-SECRET" not in done.stdout + done.stderr
    assert secret.read_text() == "TOP-SECRET-VALUE\n"
    assert not (tmp_path / "planted.txt").exists() and not (tmp_path / "outside" / "planted.txt").exists()


def test_answers_print_on_a_terminal_that_cannot_encode_them(ollama, repo):
    ollama.script("<final>caf\u00e9 \u2713 \ud800 \U0001f600</final>")
    done = agent_cli(ollama, repo, "hi", env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert done.stdout.startswith("caf? ?")
