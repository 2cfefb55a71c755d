"""The command line on a real terminal (a pseudo-terminal): streaming, Ctrl-C, approvals, colour."""

import json
import os
import re
import subprocess
import time

import pytest
from conftest import CHILD_ENV, CLI, MODEL, processes_running

pytestmark = pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX")

if os.name == "posix":
    import fcntl
    import pty
    import select
    import struct
    import termios

ESCAPE = re.compile(r"\x1b[\[\]()#;?]*[0-9;?]*[A-Za-z]")
PROMPT = "mini-coding-agent> "


class Terminal:
    """The CLI running on a pseudo-terminal that a test types into and reads from."""

    def __init__(self, args, cwd, env=None, stdout=None):
        main, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        environment = {**CHILD_ENV, "TERM": "xterm", "HOME": str(cwd), "NO_COLOR": "1", **(env or {})}
        self.process = subprocess.Popen([*CLI, *args], cwd=cwd, env=environment,
                                        stdin=child, stdout=stdout or child, stderr=child,
                                        preexec_fn=take_terminal)
        os.close(child)
        self.fd, self.output, self.mark = main, "", 0

    def read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.fd, 65536).decode("utf-8", errors="replace")
            except OSError:   # the child closed the terminal
                return False
        return bool(ready)

    def expect(self, text, timeout=10):
        """Wait until `text` appears after what was already expected; returns the output up to it."""
        deadline = time.monotonic() + timeout
        while text not in self.output[self.mark:]:
            if time.monotonic() > deadline or self.process.poll() is not None and not self.read(0.2):
                raise AssertionError(f"{text!r} never appeared; output was:\n{self.output[-3000:]}")
            self.read(0.05)
        end = self.output.index(text, self.mark) + len(text)
        seen, self.mark = self.output[self.mark:end], end
        return seen

    def type(self, text):
        os.write(self.fd, text.encode())

    def finish(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.read(0.05)
        while self.read(0.05):
            pass
        os.close(self.fd)
        return self.process.wait(timeout=1)


def take_terminal():
    """In the child: a session of its own with the pseudo-terminal as its controlling terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def start(ollama, repo):
    terminals = []

    def starter(*args, env=None):
        terminal = Terminal(["--cwd", str(repo), "--host", ollama.url, *args], repo, env)
        terminals.append(terminal)
        return terminal
    yield starter
    for terminal in terminals:
        if terminal.process.poll() is None:
            terminal.process.kill()
            terminal.process.wait()


def session_history(repo):
    [path] = (repo / ".mini-coding-agent" / "sessions").glob("*.json")
    return json.loads(path.read_text())["history"]


def test_streamed_text_appears_before_the_reply_is_complete(ollama, start):
    ollama.script({"delay": 1.2, "chunks": ["<final>Str", "eaming ", "is ", "live</final>"], "chunk_delay": 0.3})
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("tell me\n")
    terminal.expect("waiting for the model... 1 s")
    terminal.expect("Str")
    first_seen = time.monotonic()
    terminal.expect("live")
    assert time.monotonic() - first_seen > 0.6
    terminal.expect(PROMPT)
    screen = terminal.output
    assert screen.count("Streaming is live") == 1 and "</final>" not in screen
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_ctrl_c_during_a_slow_reply_returns_to_the_prompt(ollama, start, repo):
    ollama.script({"delay": 30, "text": "<final>far too late</final>"}, "<final>second answer</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("slow question\n")
    terminal.expect("waiting for the model")
    started = time.monotonic()
    terminal.type("\x03")
    terminal.expect("Interrupted: the request was stopped; the session is saved.")
    terminal.expect(PROMPT)
    assert time.monotonic() - started < 3
    terminal.type("next question\n")
    terminal.expect("second answer")
    terminal.type("/exit\n")
    assert terminal.finish() == 0
    assert "Traceback" not in terminal.output
    contents = [item["content"] for item in session_history(repo)]
    assert contents == ["slow question", "interrupted by the user", "next question", "second answer"]


def test_ctrl_c_during_a_shell_command_kills_it_and_returns_to_the_prompt(ollama, start, repo):
    ollama.script('<tool>{"name": "run_shell", "args": {"command": "sleep 45; touch finished.txt", '
                  '"timeout": 100}}</tool>', "<final>after</final>")
    terminal = start("--approval", "auto")
    terminal.expect(PROMPT)
    terminal.type("run it\n")
    terminal.expect("-> run_shell: sleep 45")
    time.sleep(0.5)
    terminal.type("\x03")
    terminal.expect("Interrupted")
    terminal.expect(PROMPT)
    assert processes_running("sleep 45") == []
    terminal.type("/exit\n")
    assert terminal.finish() == 0
    assert not (repo / "finished.txt").exists()


def press_until(terminal, key, text, tries=5):
    """Press a key until `text` appears: a key pressed while readline is between showing its prompt and
    waiting for input is only acted on at the next key, a race in readline itself."""
    for _ in range(tries):
        terminal.type(key)
        try:
            return terminal.expect(text, timeout=1)
        except AssertionError:
            continue
    raise AssertionError(f"{text!r} never appeared; output was:\n{terminal.output[-2000:]}")


@pytest.mark.parametrize("keys", ["\x03", "\x04"])
def test_ctrl_c_or_ctrl_d_at_an_empty_prompt_leaves_with_a_resume_command_that_works(ollama, start, repo, keys):
    ollama.script("<final>noted</final>", "<final>I remember</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("remember me\n")
    terminal.expect("noted")
    terminal.expect(PROMPT)
    press_until(terminal, keys, "go on with: ")
    terminal.expect("\n")
    assert terminal.finish() == 0
    assert "Traceback" not in terminal.output
    hint = terminal.output.split("go on with: ")[1].splitlines()[0]
    pasted = subprocess.run(["bash", "-c", hint + " 'what did I ask?'"], cwd="/", capture_output=True,
                            text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=30)
    assert pasted.returncode == 0 and pasted.stdout == "I remember\n"
    assert "remember me" in ollama.prompts[-1]


def test_ctrl_c_clears_a_half_typed_line_and_the_session_goes_on(ollama, start):
    ollama.script("<final>the real question was answered</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("a half-typed thou")
    terminal.expect("thou")
    press_until(terminal, "\x03", PROMPT)
    terminal.type("the real question\n")
    terminal.expect("the real question was answered")
    terminal.type("/exit\n")
    assert terminal.finish() == 0
    assert ollama.prompts[0].endswith("<|user|>\nthe real question\n")


def test_a_pasted_traceback_is_one_request(ollama, start):
    ollama.script("<final>one request</final>")
    terminal = start(env={"NO_COLOR": ""})
    terminal.expect(PROMPT)
    paste = 'Traceback (most recent call last):\n  File "a.py", line 1\nZeroDivisionError: division by zero'
    terminal.type(f"\x1b[200~{paste}\x1b[201~")
    terminal.type("\n")
    terminal.expect("one request")
    terminal.type("/exit\n")
    assert terminal.finish() == 0
    assert len(ollama.prompts) == 1 and ollama.prompts[0].rstrip().endswith(paste)


def test_leaving_before_any_request_saves_nothing(start, repo):
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("\x04")
    terminal.expect("Nothing was done, so no session was saved.")
    assert terminal.finish() == 0
    assert not list((repo / ".mini-coding-agent" / "sessions").glob("*.json"))


def test_an_edit_shows_a_diff_and_always_stops_later_questions(ollama, start, repo):
    ollama.script(
        '<tool name="patch_file" path="hello.txt"><old_text>beta</old_text><new_text>BETA</new_text></tool>',
        '<tool name="write_file" path="other.txt"><content>new file</content></tool>',
        '<tool>{"name": "run_shell", "args": {"command": "echo shell ran"}}</tool>',
        "<final>the model is not asked again after a no</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("edit things\n")
    diff = terminal.expect("[a]lways for patch_file this session: ")
    assert "--- a/hello.txt" in diff and "-beta" in diff and "+BETA" in diff
    terminal.type("y\n")
    terminal.expect("[a]lways for write_file this session: ")
    terminal.type("a\n")
    shell = terminal.expect("[a]lways for run_shell this session: ")
    assert "$ echo shell ran" in shell and "(timeout 20 s)" in shell
    terminal.type("n\n")
    terminal.expect("Stopped, as you said no. Say what to do instead.")   # the user has the next word
    terminal.expect(PROMPT)
    assert (repo / "hello.txt").read_text() == "alpha\nBETA\ngamma\n"
    assert (repo / "other.txt").read_text() == "new file"
    assert "error: approval denied for run_shell" in terminal.output and len(ollama.prompts) == 3
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_always_means_no_more_questions_for_that_tool(ollama, start, repo):
    writes = [f'<tool name="write_file" path="f{n}.txt"><content>{n}</content></tool>' for n in range(3)]
    ollama.script(*writes, "<final>wrote three</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("write three files\n")
    terminal.expect("this session: ")
    terminal.type("a\n")
    terminal.expect("wrote three")
    assert terminal.output.count("[a]lways for write_file") == 1
    assert sorted(path.name for path in repo.glob("f*.txt")) == ["f0.txt", "f1.txt", "f2.txt"]
    terminal.type("/exit\n")
    terminal.finish()


def test_startup_with_the_server_down_gives_advice_and_exits_1(repo):
    terminal = Terminal(["--cwd", str(repo), "--host", "http://127.0.0.1:9"], repo)
    terminal.expect("ollama serve")
    assert terminal.finish() == 1
    assert "Traceback" not in terminal.output and PROMPT not in terminal.output


def test_startup_with_a_missing_model_lists_models_and_exits_1(ollama, repo):
    ollama.models = ["llama3.2:latest"]
    terminal = Terminal(["--cwd", str(repo), "--host", ollama.url], repo)
    terminal.expect(f"ollama pull {MODEL}")
    assert terminal.finish() == 1
    assert "installed: llama3.2:latest" in terminal.output


def test_no_color_means_no_escape_codes(ollama, start):
    ollama.script({"chunks": ["<tool>{\"name\": \"list_files\", ", "\"args\": {}}</tool>"]},
                  {"chunks": ["<final>plain ", "text</final>"]})
    terminal = start(env={"NO_COLOR": "1"})
    terminal.expect(PROMPT)
    terminal.type("list\n")
    terminal.expect("plain text")
    terminal.type("/exit\n")
    terminal.finish()
    assert not ESCAPE.search(terminal.output), repr(ESCAPE.search(terminal.output))


def test_colour_on_a_terminal_without_no_color(ollama, repo):
    ollama.script('<tool>{"name": "list_files", "args": {}}</tool>', "<final>coloured</final>")
    terminal = Terminal(["--cwd", str(repo), "--host", ollama.url], repo, {"NO_COLOR": ""})
    terminal.expect(PROMPT)
    terminal.type("list\n")
    terminal.expect("coloured")
    terminal.type("/exit\n")
    terminal.finish()
    assert "\x1b[36m-> list_files" in terminal.output


def test_one_shot_on_a_terminal_prints_only_the_answer_on_stdout(ollama, repo):
    ollama.script('<tool>{"name": "list_files", "args": {}}</tool>',
                  {"chunks": ["<final>just ", "this</final>"]})
    terminal = Terminal(["--cwd", str(repo), "--host", ollama.url, "what is here?"], repo, {"NO_COLOR": ""},
                        stdout=subprocess.PIPE)
    terminal.expect("-> list_files")
    assert terminal.finish() == 0
    assert terminal.process.stdout.read() == b"just this\n"
    assert "just this" not in terminal.output


def test_unknown_commands_and_help(ollama, start):
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("/frobnicate\n")
    terminal.expect("Unknown command /frobnicate; /help lists the commands.")
    terminal.type("/help\n")
    listed = terminal.expect("next line.")
    for command in ("/help", "/memory", "/session", "/stats", "/undo", "/reset", "/exit"):
        assert command in listed
    terminal.type("/exit\n")
    assert terminal.finish() == 0
    assert ollama.generate_requests == []


def test_repl_history_is_kept_between_sessions(ollama, start, repo):
    ollama.script("<final>one</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("remember this line\n")
    terminal.expect("one")
    terminal.type("/exit\n")
    terminal.finish()
    assert "remember this line" in (repo / ".mini-coding-agent" / "repl-history").read_text()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_repl_history_shipped_as_a_fifo_or_folder_is_not_used(ollama, start, repo, kind):
    history = repo / ".mini-coding-agent" / "repl-history"
    history.parent.mkdir()
    os.mkfifo(history) if kind == "fifo" else history.mkdir()
    ollama.script("<final>one</final>")
    terminal = start()
    terminal.expect(f"warning: {history} is not a regular file, so the REPL's history is not kept; remove it.")
    terminal.expect(PROMPT, timeout=5)   # a FIFO read would wait here for ever
    terminal.type("a request\n")
    terminal.expect("one")
    terminal.type("/exit\n")
    assert terminal.finish() == 0 and "Traceback" not in terminal.output


@pytest.mark.parametrize("flags, streamed", [([], True), (["--no-stream"], False)])
def test_a_terminal_streams_unless_told_not_to(ollama, start, flags, streamed):
    ollama.script({"chunks": ["<final>who", "le</final>"]})
    terminal = start(*flags)
    terminal.expect(PROMPT)
    terminal.type("hi\n")
    terminal.expect("whole")
    terminal.type("/exit\n")
    terminal.finish()
    assert ollama.generate_requests[-1]["stream"] is streamed


def test_a_streamed_answer_stops_at_its_closing_tag(ollama, start):
    ollama.script({"chunks": ["<final>the ans", "wer</fi", "nal> and trailing junk"], "chunk_delay": 0.1})
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("hi\n")
    terminal.expect("the answer")
    terminal.expect(PROMPT)
    terminal.type("/exit\n")
    terminal.finish()
    assert "trailing junk" not in terminal.output and "</fi" not in terminal.output


def test_an_untagged_answer_appears_exactly_once_on_the_terminal(ollama, start):
    ollama.script({"chunks": ["The server ", "listens on ", "port 8731."], "chunk_delay": 0.05})
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("which port?\n")
    terminal.expect(PROMPT)
    assert terminal.output.count("listens on port 8731") == 1
    terminal.type("/exit\n")
    assert terminal.finish() == 0


@pytest.mark.parametrize("opening, closing", [("", ""), ("<final>", "</final>")])
def test_an_answer_read_out_of_json_is_shown_as_read_after_what_streamed(ollama, start, opening, closing):
    ollama.script({"chunks": [opening + '{ "output": "The server ', 'listens on port 8731." }' + closing],
                   "chunk_delay": 0.05})
    terminal = start()   # seen from Qwen2.5-Coder-1.5B, both: the streamed JSON was all the screen showed
    terminal.expect(PROMPT)
    terminal.type("which port?\n")
    terminal.expect(PROMPT)
    assert "\r\nThe server listens on port 8731.\r\n" in terminal.output
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_an_untagged_answer_still_reaches_a_stdout_that_is_not_the_terminal(ollama, repo):
    ollama.script({"chunks": ["The server ", "listens on ", "port 8731."]})
    terminal = Terminal(["--cwd", str(repo), "--host", ollama.url, "which port?"], repo, stdout=subprocess.PIPE)
    assert terminal.finish() == 0
    assert terminal.process.stdout.read() == b"The server listens on port 8731.\n"


def test_thinking_streams_dimmed_and_is_not_the_answer(ollama, repo):
    ollama.script({"thinking_chunks": ["Hmm, the user ", "greets me."], "chunks": ["<final>Hello!</final>"],
                   "chunk_delay": 0.05})
    terminal = Terminal(["--cwd", str(repo), "--host", ollama.url, "hi"], repo, {"NO_COLOR": ""},
                        stdout=subprocess.PIPE)
    terminal.expect("greets me.")
    assert terminal.finish() == 0
    assert terminal.process.stdout.read() == b"Hello!\n"
    assert "\x1b[2mHmm, the user " in terminal.output   # dimmed


def test_a_streamed_write_is_shown_once_as_its_summary(ollama, start, repo):
    body = "".join(f"line {n} of a long file\n" for n in range(40))
    ollama.script({"chunks": ['<tool name="write_file" path="long.txt"><content>', body, "</content></tool>"],
                   "chunk_delay": 0.05}, "<final>written</final>")
    terminal = start("--approval", "auto")
    terminal.expect(PROMPT)
    terminal.type("write long.txt\n")
    terminal.expect("written")
    assert "line 7 of a long file" not in terminal.output and "-> write_file long.txt" in terminal.output
    assert (repo / "long.txt").read_text() == body
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_a_shell_result_shows_its_exit_code_and_the_end_of_its_output(ollama, start):
    command = "python3 -c \"import sys; [print('ok', n) for n in range(30)]; sys.exit('Error: the last line')\""
    ollama.script('<tool>{"name": "run_shell", "args": {"command": ' + json.dumps(command) + "}}</tool>",
                  "<final>seen</final>")
    terminal = start("--approval", "auto")
    terminal.expect(PROMPT)
    terminal.type("run it\n")
    shown = terminal.expect("seen")
    assert "exit_code: 1" in shown and "ok 29" in shown and "Error: the last line" in shown
    assert "ok 3\r\n" not in shown   # the start of a long output is not what matters
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_a_helpers_steps_are_indented(ollama, start):
    ollama.script('<tool>{"name": "delegate", "args": {"task": "look at hello.txt"}}</tool>',
                  '<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',
                  "<final>alpha</final>", "<final>the helper saw alpha</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("ask a helper\n")
    shown = terminal.expect("the helper saw alpha")
    assert "\r-> delegate: look at hello.txt" in shown and "\r    -> helper read_file hello.txt" in shown
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_a_long_diff_can_be_seen_whole_before_approving(ollama, start, repo):
    content = "".join(f"new line {n}\n" for n in range(100))
    ollama.script(f'<tool name="write_file" path="big.txt"><content>{content}</content></tool>', "<final>ok</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("write big.txt\n")
    first = terminal.expect("[v]iew the whole diff: ")
    assert "+new line 10\r\n" in first and "+new line 50\r\n" not in first and "+new line 99" in first
    assert "lines not shown: answer v to see them all" in first
    terminal.type("v\n")
    whole = terminal.expect("this session: ")
    assert all(f"+new line {n}\r\n" in whole for n in range(100))
    terminal.type("y\n")
    terminal.expect("ok")
    assert (repo / "big.txt").read_text() == content
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_enter_at_the_approval_question_denies_and_says_so(ollama, start, repo):
    ollama.script('<tool name="write_file" path="new.txt"><content>x</content></tool>', "<final>fine</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("write new.txt\n")
    terminal.expect("this session: ")
    terminal.type("\n")
    terminal.expect("Denied (Enter means no): write_file was not run.")
    terminal.expect("Stopped, as you said no.")
    assert not (repo / "new.txt").exists()
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_an_edit_that_changes_nothing_is_not_asked_about(ollama, start, repo):
    ollama.script("(no draft)",   # the coach asks for hello.txt rewritten whole first: no code comes
                  '<tool name="write_file" path="hello.txt"><content>alpha\nbeta\ngamma\n</content></tool>',
                  "<final>unchanged</final>")
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("rewrite hello.txt as it is\n")
    shown = terminal.expect("unchanged")
    assert "approve write_file?" not in shown and "wrote hello.txt" in shown
    terminal.type("/exit\n")
    assert terminal.finish() == 0


def test_an_edit_the_coach_makes_is_shown_and_asked_about_like_the_models(ollama, start, repo):
    (repo / "billing.py").write_text("def calc_total(items):\n    return sum(items)\n")
    (repo / "invoice.py").write_text("from billing import calc_total\nprint(calc_total([]))\n")
    ollama.script("(no draft)", '<tool name="patch_file" path="billing.py"><old_text>def calc_total'
                  '</old_text><new_text>def compute_total</new_text></tool>', *["<final>renamed</final>"] * 3)
    terminal = start()
    terminal.expect(PROMPT)
    terminal.type("Rename calc_total to compute_total.\n")
    terminal.expect("[a]lways for patch_file this session: ")
    terminal.type("y\n")
    asked = terminal.expect("[a]lways for write_file this session: ")
    assert "The coach changes invoice.py: renamed calc_total to compute_total." in asked
    assert "-from billing import calc_total" in asked and "+print(compute_total([]))" in asked
    terminal.type("n\n")
    terminal.expect("Stopped, as you said no.")   # to the coach as to the model: the request ends
    terminal.expect(PROMPT)
    assert (repo / "invoice.py").read_text() == "from billing import calc_total\nprint(calc_total([]))\n"
    [said] = [item["content"] for item in session_history(repo) if item.get("name") == "patch_file"]
    assert "warning: billing.py no longer defines calc_total" in said and "changed to match" not in said   # left
    terminal.type("/exit\n")
    assert terminal.finish() == 0
