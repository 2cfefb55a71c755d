"""Opt-in: the agent against a real Ollama-compatible server.

Set MINI_CODING_AGENT_TEST_HOST (e.g. http://127.0.0.1:11434) and
MINI_CODING_AGENT_TEST_MODEL (e.g. qwen3.5:4b) to run these; they are skipped otherwise.
"""

import os

import pytest
from conftest import run_cli

import mini_coding_agent as mca

HOST = os.environ.get("MINI_CODING_AGENT_TEST_HOST")
MODEL = os.environ.get("MINI_CODING_AGENT_TEST_MODEL")
pytestmark = pytest.mark.skipif(not (HOST and MODEL), reason="set MINI_CODING_AGENT_TEST_HOST and _MODEL")


def test_one_streamed_reply():
    client = mca.OllamaModelClient(MODEL, HOST, temperature=0.0, top_p=0.9, timeout=600, num_ctx=4096)
    pieces = []
    client.on_text = pieces.append
    reply = client.complete("Say hello in five words.", 24)
    assert len(pieces) > 1 and "".join(pieces) == reply
    assert client.last_stats.get("eval_count", 0) > 0


def test_one_full_agent_turn(repo):
    done = run_cli("--cwd", str(repo), "--host", HOST, "--model", MODEL, "--num-ctx", "8192", "--max-steps", "3",
                   "--approval", "never", "--ollama-timeout", "600", "What is in hello.txt?", timeout=1200)
    assert done.returncode == 0 and done.stdout.strip()
    assert "Traceback" not in done.stderr
    [session] = (repo / ".mini-coding-agent" / "sessions").glob("*.json")
    assert "What is in hello.txt?" in session.read_text()
