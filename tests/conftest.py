"""Shared test fixtures: a scripted Ollama server on 127.0.0.1, workspaces, agents, the CLI."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import mini_coding_agent as mca

MODULE = Path(mca.__file__).resolve()
MODEL = "qwen3.5:4b"
# Child Pythons import the agent from here and may cache its compiled form: compiling the
# 4,000-line module costs ~80 ms at each start, and the suite starts about two hundred.
CHILD_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
CHILD_ENV["PYTHONPATH"] = str(MODULE.parent)
# The command line as `python -m mini_coding_agent` starts it, from that cache; the tests of
# start-up and of signals run `python mini_coding_agent.py`, the README's way.
CLI = [sys.executable, "-m", "mini_coding_agent"]


class OllamaHandler(BaseHTTPRequestHandler):
    """Speaks the parts of Ollama's HTTP API the agent uses (see shared/OLLAMA.md)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        server = self.server.fixture
        server.requests.append({"method": "GET", "path": self.path})
        if self.path == "/api/tags":
            time.sleep(server.tags_delay)
            if server.tags_body is not None:
                self.send_raw(200, server.tags_body)
                return
            models = [{"name": name, "model": name, "size": 1, "digest": "0" * 64,
                       "details": {"family": "qwen", "parameter_size": "4B"}} for name in server.models]
            self.send_json(200, {"models": models})
        elif self.path == "/api/version":
            self.send_json(200, {"version": "0.12.0"})
        elif self.path == "/":
            self.send_raw(200, b"Ollama is running", "text/plain")
        else:
            self.send_raw(404, b"404 page not found", "text/plain")

    def send_raw(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        server = self.server.fixture
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw)
        except ValueError:
            self.send_json(400, {"error": "invalid JSON body"})
            return
        server.requests.append({"method": "POST", "path": self.path, "body": payload})
        if self.path == "/api/show":
            if server.context_length is None:
                self.send_json(404, {"error": f"model '{payload.get('model')}' not found"})
            else:
                self.send_json(200, {"model_info": {"qwen3.context_length": server.context_length},
                                     **server.show_extra})
            return
        if self.path not in ("/api/generate", "/api/chat") or (self.path == "/api/chat" and not server.chat):
            self.send_raw(404, b"404 page not found", "text/plain")
            return
        if payload.get("model") not in server.models:
            self.send_json(404, {"error": f"model '{payload.get('model')}' not found"})
            return
        server.generate_requests.append(payload)
        if server.refuses_think and "think" in payload:
            self.send_json(400, {"error": f'"{payload["model"]}" does not support thinking'})
            return
        reply = server.next_reply()
        if isinstance(reply, str):
            reply = {"text": reply}
        if "serve" in reply:   # the test writes the whole HTTP response itself
            reply["serve"](self)
            return
        time.sleep(reply.get("delay", 0))
        if "status" in reply:
            body = reply.get("raw_body")
            if body is None:
                body = json.dumps({"error": reply.get("error", "failure")}).encode()
            self.send_raw(reply["status"], body)
            return
        if "raw_body" in reply:
            self.send_raw(200, reply["raw_body"])
            return
        if payload.get("stream", True):
            self.stream(reply)
        else:
            self.answer(reply, payload)

    def text_fields(self, text, thinking=None):
        """A reply's text (and thinking) as /api/generate or /api/chat carries it."""
        if self.path == "/api/chat":
            return {"message": {"role": "assistant", "content": text,
                                **({"thinking": thinking} if thinking is not None else {})}}
        return {"response": text, **({"thinking": thinking} if thinking is not None else {})}

    def final_fields(self, reply, text):
        fields = {"model": MODEL, "created_at": "2026-11-24T00:00:00Z", **self.text_fields(text), "done": True,
                  "done_reason": reply.get("done_reason", "stop"), "total_duration": 2_000_000,
                  "prompt_eval_count": 100, "prompt_eval_duration": 1_000_000,
                  "eval_count": 10, "eval_duration": 500_000}
        fields.update(reply.get("counters", {}))
        return fields

    def answer(self, reply, payload):
        text = reply.get("text", "".join(reply.get("chunks", [])))
        fields = self.final_fields(reply, text)
        if "thinking_chunks" in reply:   # only the whole reply carries the thinking; the stream sent it in pieces
            fields.update(self.text_fields(text, "".join(reply["thinking_chunks"])))
        body = json.dumps(fields).encode()
        if reply.get("drop"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_raw(200, body)

    def stream(self, reply):
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = reply.get("chunks") or [reply.get("text", "")]
        try:
            for thought in reply.get("thinking_chunks", []):
                self.chunk({"model": MODEL, "created_at": "2026-11-24T00:00:00Z",
                            **self.text_fields("", thought), "done": False})
                time.sleep(reply.get("chunk_delay", 0))
            for piece in pieces:
                self.chunk({"model": MODEL, "created_at": "2026-11-24T00:00:00Z", **self.text_fields(piece),
                            "done": False})
                time.sleep(reply.get("chunk_delay", 0))
            if reply.get("drop"):
                self.close_connection = True
                return
            if "stream_error" in reply:
                self.chunk({"error": reply["stream_error"]})
            else:
                self.chunk(self.final_fields(reply, ""))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def chunk(self, obj):
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class QuietServer(ThreadingHTTPServer):
    """The fixture's HTTP server; a client that hangs up mid-reply, as the agent does when it gives
    up on a slow server, is what some tests want, not a traceback to print."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class OllamaFixture:
    """A scripted Ollama on 127.0.0.1: give it replies, read back what it was sent.

    A reply is a string (the model's text) or a dict with any of: text, chunks,
    thinking_chunks, chunk_delay, delay, status + error / raw_body, raw_body, drop,
    stream_error, done_reason, counters; or {"serve": function(handler)} to answer by hand.
    """

    def __init__(self):
        self.replies = []
        self.requests = []
        self.generate_requests = []
        self.models = [MODEL]
        self.context_length = 32768
        self.show_extra = {}          # more of /api/show's reply, e.g. capabilities, thinking
        self.refuses_think = False    # answer 400 to any `think`, as one Ollama release did
        self.tags_body = None
        self.tags_delay = 0           # seconds before /api/tags answers
        self.chat = True              # serve /api/chat; False: an old server with /api/generate only
        self.lock = threading.Lock()
        self.httpd = QuietServer(("127.0.0.1", 0), OllamaHandler)
        self.httpd.fixture = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def script(self, *replies):
        """Queue model replies, served in order."""
        with self.lock:
            self.replies.extend(replies)

    def next_reply(self):
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
        return {"status": 500, "error": "the test server has no scripted reply left"}

    @property
    def prompts(self):
        """Every prompt the agent sent, in order (chat turns as one text, as the agent measures them)."""
        return [mca.flat_text(request.get("messages", request.get("prompt"))) for request in self.generate_requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ollama():
    """A scripted Ollama server for one test; stops when the test ends."""
    server = OllamaFixture()
    yield server
    server.close()


@pytest.fixture
def repo(tmp_path):
    """A small project folder to work in (not a git repository)."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("# demo\n\nA demo project.\n", encoding="utf-8")
    (root / "hello.txt").write_text("alpha\nbeta\ngamma\n", encoding="utf-8")
    return root


def common_prefix_length(a, b):
    """How many leading chars two prompts share: what the server's cache can reuse."""
    return len(os.path.commonprefix([mca.flat_text(a), mca.flat_text(b)]))


def make_workspace(root):
    """A WorkspaceContext built directly, without git."""
    return mca.WorkspaceContext(cwd=str(root), repo_root=str(root), branch="main",
                                default_branch="main", status="clean", recent_commits=[],
                                project_docs={})


def make_agent(root, outputs, **kwargs):
    """A MiniAgent on scripted replies, approving everything unless told otherwise; the plain core,
    unless a test asks for the small-model layer (small_model_help=True, MiniAgent's default)."""
    kwargs.setdefault("approval_policy", "auto")
    kwargs.setdefault("small_model_help", False)
    store = mca.SessionStore(Path(root) / ".mini-coding-agent" / "sessions")
    return mca.MiniAgent(mca.FakeModelClient(outputs), make_workspace(root), store, **kwargs)


def run_cli(*args, cwd=None, input=None, env=None, timeout=60):
    """Run the command line (see CLI) with ARGS as a subprocess; returns CompletedProcess."""
    full_env = {**CHILD_ENV, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd, input=input,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


def processes_running(command):
    """The pids of processes whose command line is exactly `command` (POSIX)."""
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in listing.splitlines()
            if line.split(None, 1)[1:] == [command]]


AGENT_IN = """
import sys
from pathlib import Path
import mini_coding_agent as mca
root = Path(sys.argv[1])
agent = mca.MiniAgent(mca.FakeModelClient([]), mca.WorkspaceContext(cwd=str(root), repo_root=str(root)),
                      mca.SessionStore(root / ".mini-coding-agent" / "sessions"), approval_policy="auto")
"""


def finishes_within(seconds, code, root):
    """Run Python code in a fresh process, with `agent` a MiniAgent on `root` (see AGENT_IN); return what
    it printed.  A run past `seconds` is killed and fails the test: what it tried would hang the agent."""
    try:
        done = subprocess.run([sys.executable, "-c", AGENT_IN + code, str(root)], capture_output=True,
                              text=True, timeout=seconds, env=CHILD_ENV)
    except subprocess.TimeoutExpired:
        pytest.fail(f"it did not finish within {seconds} s")
    assert done.returncode == 0, done.stderr
    return done.stdout
