"""The command line as a subprocess, against the scripted Ollama server."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import CHILD_ENV, MODEL, MODULE, run_cli
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
    assert "3 a limit (--max-steps, malformed replies) stopped it" in " ".join(done.stdout.split())
    for flag in FLAGS:
        assert flag in done.stdout


def test_runs_as_a_module_too(repo):
    done = subprocess.run([sys.executable, "-m", "mini_coding_agent", "--version"], capture_output=True, text=True,
                          cwd=repo, env=CHILD_ENV)
    assert done.returncode == 0 and done.stdout.strip() == f"mini-coding-agent {mca.__version__}"


def test_a_three_turn_session_edits_files_and_carries_history_forward(ollama, repo):
    ollama.script('<tool name="write_file" path="calc.py"><content>def add(a, b):\n    return a + b\n'
                  '</content></tool>', "<final>Created calc.py.</final>",   # the agent asks for a check:
                  '<tool>{"name": "run_shell", "args": {"command": "python -c \\"import calc\\""}}</tool>',
                  "<final>Created calc.py.</final>")
    first = agent_cli(ollama, repo, "--approval", "auto", "Create calc.py with add()")
    assert (first.returncode, first.stdout) == (0, "Created calc.py.\n")
    assert "The model changed calc.py and ran nothing since: its answer is sent back for a check." in first.stderr
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"

    ollama.script('<tool name="write_file" path="test_calc.py"><content>from calc import add\n\n\n'
                  'def test_add():\n    assert add(2, 3) == 5\n</content></tool>', "<final>Added a test.</final>",
                  "<final>Added a test.</final>")
    second = agent_cli(ollama, repo, "--approval", "auto", "--resume", "latest", "Add a test")
    assert (second.returncode, second.stdout) == (0, "Added a test.\n")
    assert (repo / "test_calc.py").exists()

    ollama.script("(no draft)",   # add() is in calc.py: it is read first, and a draft asked for
                  '<tool name="patch_file" path="calc.py"><old_text>return a + b</old_text>'
                  '<new_text>return int(a) + int(b)</new_text></tool>', "<final>Patched add().</final>",
                  "<final>Patched add().</final>")
    third = agent_cli(ollama, repo, "--approval", "auto", "--resume", "latest", "Make add() coerce to int")
    assert (third.returncode, third.stdout) == (0, "Patched add().\n")
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return int(a) + int(b)\n"

    [path] = sessions(repo)
    session = json.loads(path.read_text())
    said = [item["content"] for item in session["history"] if item["role"] == "user"]
    assert [text for text in said if not text.startswith("[check]")] == \
        ["Create calc.py with add()", "Add a test", "Make add() coerce to int"]
    assert said[1] == mca.CHECK_REQUEST.format(files="calc.py") and len(said) == 6
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
    assert f"go on with: {sys.executable} {MODULE} --cwd {repo} --host {ollama.url} --resume" in done.stderr


@pytest.mark.parametrize("ending", ["/quit\n", "", "/exit\nnever read\n"])
def test_the_repl_leaves_on_quit_or_end_of_input(ollama, repo, ending):
    done = agent_cli(ollama, repo, input=ending)
    assert done.returncode == 0
    assert ollama.generate_requests == []


def test_a_line_ending_in_backslash_continues(ollama, repo):
    ollama.script("<final>ok</final>")
    agent_cli(ollama, repo, input="first line \\\nsecond line\n")
    assert ollama.prompts[0].endswith("<|user|>\nfirst line \nsecond line\n")   # the last chat turn


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
    (["--temperature", "nan", "hi"], 2, "--temperature: must be at least 0 and at most 2, got nan"),
    (["--top-p", "5", "hi"], 2, "--top-p: must be above 0 and at most 1, got 5"),
    (["--ollama-timeout", "inf", "hi"], 2, "must be above 0 and at most 86400, got inf"),
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


def test_a_folder_the_agent_may_not_write_ends_in_one_clear_line(ollama, repo, monkeypatch, capsys):
    def refuse(path, *args, **kwargs):   # as in someone else's checkout (root may write anywhere)
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(mca.Path, "mkdir", refuse)
    assert mca.main(["--cwd", str(repo), "--host", ollama.url, "hi"]) == mca.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"error: could not write {repo / '.mini-coding-agent'} (Permission denied); " in err
    assert "work in a folder you may write to" in err and "Traceback" not in err


def test_a_session_that_cannot_be_saved_ends_the_request_in_one_clear_line(ollama, repo, monkeypatch, capsys):
    write_atomic = mca.write_atomic
    def disk_full(path, *chunks, **kwargs):
        if path.suffix == ".json":
            raise OSError(28, "No space left on device", str(path))
        return write_atomic(path, *chunks, **kwargs)
    monkeypatch.setattr(mca, "write_atomic", disk_full)
    ollama.script("<final>done</final>")
    assert mca.main(["--cwd", str(repo), "--host", ollama.url, "hi"]) == mca.EXIT_ERROR
    err = capsys.readouterr().err
    assert "error: could not write " in err and "(No space left on device); free some disk space" in err


def test_num_ctx_beyond_the_models_context_length_stops_before_any_request(ollama, repo):
    ollama.context_length = 8192
    done = agent_cli(ollama, repo, "--num-ctx", "16384", "hi")
    assert done.returncode == 2 and ollama.generate_requests == []
    assert done.stderr == "error: --num-ctx 16384 is more than qwen3.5:4b takes (8192 tokens); " \
                          "use --num-ctx 8192 or less.\n"


@pytest.mark.parametrize("model_length, sent", [(8192, 8192), (32768, 16384), (None, 16384)])
def test_without_num_ctx_the_window_comes_from_the_model(ollama, repo, model_length, sent):
    ollama.context_length = model_length   # None: /api/show does not say
    ollama.script("<final>ok</final>")
    done = agent_cli(ollama, repo, "hi")
    assert done.returncode == 0 and ollama.generate_requests[0]["options"]["num_ctx"] == sent
    assert f"{sent:,} tokens" in done.stderr   # the welcome box says which window is in force


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


def test_resume_alone_goes_on_with_the_latest_session(ollama, repo):
    ollama.script("<final>one</final>", "<final>two</final>")
    agent_cli(ollama, repo, "first")
    done = agent_cli(ollama, repo, "second", "--resume")
    [session] = sessions(repo)
    assert done.returncode == 0 and "resumed" in done.stderr
    assert [item["content"] for item in json.loads(session.read_text())["history"]] == \
        ["first", "one", "second", "two"]


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
    deadline = time.monotonic() + 30
    while not ollama.generate_requests and time.monotonic() < deadline:   # the model is asked
        time.sleep(0.05)
    time.sleep(0.2)
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
    for delay in (0.2, 0.4, 0.6, 0.9):
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


# --- a hostile repository: the agent's own folder, git, proxies, other processes ------

posix_only = pytest.mark.skipif(os.name != "posix", reason="symlinks and signals need POSIX here")


@posix_only
@pytest.mark.parametrize("planted", [".mini-coding-agent", ".mini-coding-agent/sessions",
                                     ".mini-coding-agent/repl-history", ".mini-coding-agent/sessions/x.undo"])
def test_a_symlink_in_the_agents_own_folder_stops_it_at_start(ollama, repo, tmp_path, planted):
    target = tmp_path / "target"
    target.mkdir() if not planted.endswith("history") else target.write_text("line\n" * 1500)
    (repo / planted).parent.mkdir(parents=True, exist_ok=True)
    (repo / planted).symlink_to(target)
    done = agent_cli(ollama, repo, "--approval", "auto", "hi")
    assert done.returncode == 2 and ollama.prompts == []
    assert done.stderr == f"error: {repo / planted} is a symlink, and the agent follows no link in its folder, " \
                          ".mini-coding-agent; remove it (it came with the repository) and start again.\n"
    assert (target.is_dir() and not list(target.iterdir())) or target.read_text() == "line\n" * 1500


def ship(path, kind):
    """Put a file, a FIFO or a folder where the agent expects something else, as a repository could."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_text("shipped\n")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


@posix_only
@pytest.mark.parametrize("shipped, kind", [(".mini-coding-agent", "file"), (".mini-coding-agent", "fifo"),
                                           (".mini-coding-agent/sessions", "file"),
                                           (".mini-coding-agent/sessions/children", "fifo")])
@pytest.mark.parametrize("resume", [[], ["--resume", "latest"]])
def test_the_agents_own_folder_shipped_as_a_file_stops_it_in_one_sentence(ollama, repo, shipped, kind, resume):
    ship(repo / shipped, kind)
    done = agent_cli(ollama, repo, "--approval", "auto", *resume, "hi", timeout=10)
    assert done.returncode == 2 and ollama.prompts == [] and "Traceback" not in done.stderr
    assert done.stderr == f"error: {repo / shipped} is not a folder, and the agent keeps its sessions in " \
                          ".mini-coding-agent; remove it (it came with the repository) and start again.\n"


def test_python_dash_m_inside_a_repository_imports_none_of_its_modules(repo):
    for name in ("argparse", "difflib", "json", "secrets"):   # each would stop the agent
        (repo / f"{name}.py").write_text("raise SystemExit('the repository ran its own code')\n")
    done = subprocess.run([sys.executable, "-m", "mini_coding_agent", "--version"], capture_output=True,
                          text=True, cwd=repo, env=CHILD_ENV)
    assert (done.returncode, done.stderr) == (0, "") and done.stdout == f"mini-coding-agent {mca.__version__}\n"


@posix_only
def test_the_repository_git_config_runs_nothing_even_with_approval_never(ollama, tmp_path):
    from test_workspace import git, plant_hostile_git_config
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    plant_hostile_git_config(repo, tmp_path / "pwned")
    ollama.script("<final>fine</final>")
    done = agent_cli(ollama, repo, "--approval", "never", "hi")
    assert done.returncode == 0 and not list(tmp_path.glob("pwned*"))


def test_a_session_leaves_git_status_clean(ollama, tmp_path):
    from test_workspace import git
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    ollama.script("(no draft)",   # the coach asks for a.txt rewritten whole first: no code comes
                  '<tool name="patch_file" path="a.txt"><old_text>a</old_text><new_text>b</new_text></tool>',
                  '<tool name="patch_file" path="a.txt"><old_text>b</old_text><new_text>a</new_text></tool>',
                  "<final>changed and changed back</final>")
    done = agent_cli(ollama, repo, "--approval", "auto", "change a.txt and back")
    assert done.returncode == 0 and list((repo / ".mini-coding-agent" / "sessions").glob("*.undo/*.bak"))
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            capture_output=True, text=True)
    assert status.stdout == ""


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that records what reaches it and answers 502."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append(self.path)
                self.send_error(502)

            do_POST = do_GET
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        import threading
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_requests_to_this_machine_never_go_through_a_proxy(ollama, repo):
    proxy = RecordingProxy()
    ollama.script("<final>local</final>")
    env = {name: proxy.url for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy")}
    env.update(no_proxy="", NO_PROXY="")
    done = agent_cli(ollama, repo, "a secret prompt", env=env)
    proxy.httpd.shutdown()
    assert done.returncode == 0 and done.stdout == "local\n"
    assert proxy.seen == [] and "a secret prompt" in ollama.prompts[0]


@posix_only
def test_two_processes_on_one_session_lose_nothing(ollama, repo):
    ollama.script("<final>first answer</final>", "<final>second answer</final>")
    holder = subprocess.Popen([sys.executable, str(MODULE), "--cwd", str(repo), "--host", ollama.url],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "NO_COLOR": "1"})
    holder.stdin.write("first request\n")
    holder.stdin.flush()
    assert holder.stdout.readline().endswith("first answer\n")
    [held] = sessions(repo)
    busy = agent_cli(ollama, repo, "--resume", held.stem, "hi")
    assert busy.returncode == 2 and "is open in another agent" in busy.stderr and busy.stderr.count("\n") == 1
    other = agent_cli(ollama, repo, "--resume", "latest", "second request")
    assert other.returncode == 0 and other.stdout == "second answer\n"
    assert "skipping a session" in other.stderr and "open in another agent" in other.stderr
    holder.stdin.close()
    assert holder.wait(timeout=10) == 0
    contents = sorted(json.dumps(mca.SessionStore(held.parent).load(path.stem)["history"]) for path in sessions(repo))
    assert len(contents) == 2
    assert "first answer" in contents[0] + contents[1] and "second answer" in contents[0] + contents[1]
    assert not list(held.parent.glob("*.lock"))


# --- the welcome box ----------------------------------------------------------------

def test_the_welcome_box_keeps_its_shape_for_a_long_path(repo, monkeypatch):
    from conftest import make_agent
    deep = repo / ("a-rather-long-folder-name-" * 5)
    deep.mkdir()
    monkeypatch.delenv("COLUMNS", raising=False)
    box = mca.build_welcome(make_agent(deep, []), MODEL, "http://127.0.0.1:11434").splitlines()
    assert len({len(line) for line in box}) == 1 and 68 <= len(box[0]) <= 84
    assert "MINI CODING AGENT" in "\n".join(box) and "MINI-CODING-AGENT" not in "\n".join(box)
    assert any("O   O" in line for line in box)
    [workspace] = [line for line in box if "workspace" in line]
    assert "..." in workspace


@pytest.mark.parametrize("columns", ["40", "67", "200"])
def test_the_welcome_box_fits_the_terminal(repo, monkeypatch, columns):
    from conftest import make_agent
    monkeypatch.setenv("COLUMNS", columns)
    box = mca.build_welcome(make_agent(repo, []), MODEL, "http://127.0.0.1:11434").splitlines()
    assert len({len(line) for line in box}) == 1 and len(box[0]) <= min(int(columns), 84)


# --- replies cut off at the token limit are never run -----------------------------------

def test_a_write_cut_off_at_the_token_limit_leaves_no_file_and_tells_the_model_why(ollama, repo):
    cut = '<tool name="write_file" path="big.py"><content>def one():\n    return 1\n\ndef two():\n    ret'
    ollama.script({"text": cut, "done_reason": "length"}, "<final>I will write it in parts.</final>")
    done = agent_cli(ollama, repo, "--approval", "auto", "--max-new-tokens", "40", "write big.py")
    assert done.returncode == 0 and done.stdout == "I will write it in parts.\n"
    assert not (repo / "big.py").exists()
    assert "cut off at the token limit (--max-new-tokens 40)" in ollama.prompts[1]
    assert "write a large file in parts" in ollama.prompts[1]
    assert "cut off" in done.stderr


def test_a_reply_cut_off_while_the_model_thinks_is_asked_again(ollama, repo):
    thinking_only = {"thinking_chunks": ["Let me think about this very carefully... " * 20], "text": "",
                     "done_reason": "length"}
    ollama.script(thinking_only, "<final>42</final>")
    done = agent_cli(ollama, repo, "--max-new-tokens", "100", "hard question")
    assert (done.returncode, done.stdout) == (0, "42\n") and len(ollama.prompts) == 2
    assert "cut off at the token limit (--max-new-tokens 100)" in ollama.prompts[1]


def test_a_request_stopped_by_a_limit_exits_non_zero_with_the_reason_on_stderr(ollama, repo):
    ollama.script(*['<tool>{"name": "list_files", "args": {}}</tool>'] * 2)
    done = agent_cli(ollama, repo, "--max-steps", "2", "loop")
    assert done.returncode == mca.EXIT_LIMIT and done.stdout == ""
    assert "Stopped after 2 tool steps" in done.stderr


# --- a session keeps the server's cache across restarts ---------------------------------

def git_project(tmp_path):
    from test_workspace import git
    repo = tmp_path / "project"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "dev@example.com"],
                 ["config", "user.name", "Dev"]):
        git(repo, *args)
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_a_resumed_session_sends_the_same_prefix_and_hears_of_changes_once(ollama, tmp_path):
    repo = git_project(tmp_path)
    ollama.script('<tool name="write_file" path="b.txt"><content>b</content></tool>', "<final>wrote b</final>")
    assert agent_cli(ollama, repo, "--approval", "auto", "write b.txt").returncode == 0
    ollama.script("<final>still here</final>", "<final>and again</final>")
    assert agent_cli(ollama, repo, "--resume", "latest", "what changed?").returncode == 0
    assert agent_cli(ollama, repo, "--resume", "latest", "anything else?").returncode == 0
    first, _, resumed, again = ollama.prompts
    prefix_end = first.index("<|user|>")   # the end of the system message
    assert resumed[:prefix_end] == first[:prefix_end] == again[:prefix_end]
    assert "?? b.txt" not in first[:prefix_end]   # the prefix is the snapshot the session began with
    news = "[the repository changed since this session last ran]\n- status now:\n?? b.txt"
    assert news in resumed and again.count(news) == 1
    assert len(os.path.commonprefix([resumed, ollama.prompts[1]])) > 0.9 * prefix_end


# --- never a traceback, and nothing drives the terminal --------------------------------

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"   # would write the user's clipboard


def test_model_written_text_cannot_drive_the_terminal_through_memory(ollama, repo):
    ollama.script(f"<final>done {OSC52} and \x1b[2J</final>")
    done = agent_cli(ollama, repo, input="hello\n/memory\n/exit\n")
    assert done.returncode == 0 and "done" in done.stdout
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr


def test_a_servers_error_text_cannot_drive_the_terminal(ollama, repo):
    ollama.script({"status": 500, "error": f"boom {OSC52}\x1b[2J"})
    done = agent_cli(ollama, repo, "hi")
    assert done.returncode == 1 and "boom" in done.stderr and "\x1b" not in done.stderr


@posix_only
def test_a_folder_name_cannot_drive_the_terminal_from_the_welcome_box(ollama, tmp_path):
    folder = tmp_path / f"evil{OSC52}name"
    folder.mkdir()
    ollama.script("<final>ok</final>")
    done = run_cli("--cwd", str(folder), "--host", ollama.url, "hi")
    assert done.returncode == 0 and "evil" in done.stderr and "\x1b" not in done.stderr


@posix_only
def test_ctrl_c_while_starting_up_is_one_sentence(ollama, repo):
    ollama.tags_delay = 5
    starting = subprocess.Popen([sys.executable, str(MODULE), "--cwd", str(repo), "--host", ollama.url, "hi"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not ollama.requests and time.monotonic() < deadline:   # the start-up check is under way
        time.sleep(0.02)
    starting.send_signal(signal.SIGINT)
    out, err = starting.communicate(timeout=10)
    assert starting.returncode == 130 and out == ""
    assert err == "\nInterrupted before the session started; nothing was saved.\n"


@posix_only
@pytest.mark.parametrize("planted", ["/dev/zero", "/dev/stdin"])
def test_a_planted_session_file_that_is_a_device_is_refused_at_once(ollama, repo, planted):
    sessions = repo / ".mini-coding-agent" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "20260101-000000-abcdef.json").symlink_to(planted)
    started = time.monotonic()
    done = agent_cli(ollama, repo, "--resume", "latest", "hi", timeout=20)
    assert time.monotonic() - started < 10 and done.returncode == 2
    assert "is a symlink" in done.stderr and "Traceback" not in done.stderr


# --- Ollama's own conventions for the host, and the model from the environment ---------

@pytest.mark.parametrize("form", ["{host}:{port}", "{host}", ":{port}", "http://{host}:{port}", "0.0.0.0:{port}",
                                  "  http://{host}:{port}/  "])
def test_the_host_takes_every_form_ollama_does(ollama, repo, form):
    host, port = "127.0.0.1", ollama.url.rsplit(":", 1)[1]
    if form == "{host}":   # no port means Ollama's own port
        assert mca.ollama_host("localhost") == "http://localhost:11434"
        return
    ollama.script("<final>reached</final>")
    done = run_cli("--cwd", str(repo), "--host", form.format(host=host, port=port), "hi")
    assert done.returncode == 0 and done.stdout == "reached\n"


def test_ollama_host_and_the_model_can_come_from_the_environment(ollama, repo):
    ollama.models.append("tiny:1b")
    ollama.script("<final>from the environment</final>")
    done = run_cli("--cwd", str(repo), "hi",
                   env={"OLLAMA_HOST": ollama.url.removeprefix("http://"), "MINI_CODING_AGENT_MODEL": "tiny:1b"})
    assert done.returncode == 0 and done.stdout == "from the environment\n"
    assert ollama.generate_requests[0]["model"] == "tiny:1b"


@pytest.mark.parametrize("host, source", [("ftp://example.com", "--host"), ("my host:1", "--host"),
                                          ("localhost:99999", "--host"), ("localhost:port", "OLLAMA_HOST")])
def test_a_bad_host_is_one_sentence(repo, host, source):
    args = ["--host", host] if source == "--host" else []
    done = run_cli("--cwd", str(repo), *args, "hi", env={"OLLAMA_HOST": host})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: {source} {host!r} is not an address Ollama takes")


def test_a_line_starting_with_a_path_is_a_request_not_a_command(ollama, repo):
    ollama.script("<final>because it is listed in .gitignore</final>")
    done = agent_cli(ollama, repo, input="/etc/hosts is ignored, why?\n/exit\n")
    assert "because it is listed" in done.stdout and "Unknown command" not in done.stderr
    assert ollama.prompts[0].endswith("<|user|>\n/etc/hosts is ignored, why?\n")


def test_the_welcome_box_says_when_a_session_is_resumed(ollama, repo):
    ollama.script("<final>one</final>", "<final>two</final>")
    first = agent_cli(ollama, repo, "first")
    assert "(resumed" not in first.stderr
    again = agent_cli(ollama, repo, "--resume", "latest", "second")
    assert "(resumed, 2 items)" in again.stderr


# --- packaging ----------------------------------------------------------------------------

def test_the_wheel_holds_the_module_and_its_command_and_needs_nothing(tmp_path):
    pytest.importorskip("hatchling", reason="the README's test command installs hatchling to build it")
    built = subprocess.run([sys.executable, "-c", "import sys; from hatchling.build import build_wheel; "
                            "print(build_wheel(sys.argv[1]))", str(tmp_path)], cwd=MODULE.parent,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    import zipfile
    with zipfile.ZipFile(tmp_path / built.stdout.strip()) as wheel:
        names = wheel.namelist()
        [metadata] = [name for name in names if name.endswith("/METADATA")]
        [entry_points] = [name for name in names if name.endswith("/entry_points.txt")]
        assert "mini-coding-agent = mini_coding_agent:main" in wheel.read(entry_points).decode()
        assert "Requires-Dist" not in wheel.read(metadata).decode()   # the standard library only
    assert [name for name in names if not name.endswith((".dist-info/RECORD", ".dist-info/WHEEL"))
            and ".dist-info/" not in name] == ["mini_coding_agent.py"]


def test_a_request_naming_a_file_gets_it_read_first_and_sent_as_chat_turns(ollama, repo):
    ollama.script("<final>alpha, beta, gamma</final>")
    done = agent_cli(ollama, repo, "What does hello.txt hold?")
    assert done.returncode == 0 and done.stdout.strip() == "alpha, beta, gamma"
    assert "read_file hello.txt" in done.stderr   # the user sees the read, as any step
    sent = ollama.generate_requests[0]["messages"]
    assert [turn["role"] for turn in sent] == ["system", "user", "assistant", "user"]
    assert "- files, with their top-level definitions:\n- README.md\n- hello.txt" in sent[0]["content"]
    assert sent[3]["content"].startswith("Result of read_file:\n") and "3: gamma" in sent[3]["content"]
    assert ollama.requests[-1]["path"] == "/api/chat"
