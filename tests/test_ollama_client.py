"""The model backends: OllamaModelClient against a real HTTP server on 127.0.0.1, and FakeModelClient."""

import json
import socket
import time

import pytest
from conftest import MODEL, make_workspace

import mini_coding_agent as mca


def client_for(server, timeout=10, **kwargs):
    return mca.OllamaModelClient(MODEL, server.url, temperature=0.2, top_p=0.9, timeout=timeout, **kwargs)


def closed_port():
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_complete_posts_the_generate_payload_and_returns_the_text(ollama):
    ollama.script("<final>hi</final>")
    client = client_for(ollama, num_ctx=8192)
    assert client.complete("hello", 12) == "<final>hi</final>"
    request = ollama.requests[-1]
    assert request["method"] == "POST" and request["path"] == "/api/generate"
    body = request["body"]
    assert body["model"] == MODEL and body["prompt"] == "hello"
    assert body["stream"] is False and body["raw"] is False and body["think"] is False
    assert body["options"] == {"num_predict": 12, "temperature": 0.2, "top_p": 0.9, "num_ctx": 8192}


@pytest.mark.parametrize("stream", [False, True])
def test_chat_turns_go_to_api_chat_and_the_message_comes_back(ollama, stream):
    ollama.script({"chunks": ["<final>", "hi</final>"], "thinking_chunks": ["hm"]})
    client, pieces, thoughts = client_for(ollama), [], []
    if stream:
        client.on_text, client.on_thinking = pieces.append, thoughts.append
    turns = [{"role": "system", "content": "rules"}, {"role": "user", "content": "hello"}]
    assert client.complete(turns, 12) == "<final>hi</final>"
    request = ollama.requests[-1]
    assert request["path"] == "/api/chat" and request["body"]["messages"] == turns
    assert "prompt" not in request["body"] and "raw" not in request["body"]
    assert request["body"]["options"]["num_predict"] == 12 and request["body"]["think"] is False
    assert (pieces, thoughts) == ((["<final>", "hi</final>"], ["hm"]) if stream else ([], []))
    assert client.last_stats["thinking_chars"] == 2 and client.last_stats["prompt_eval_count"] == 100


def test_a_server_without_api_chat_is_sent_one_prompt_from_then_on(ollama, tmp_path):
    ollama.chat = False   # an Ollama older than /api/chat, or a server that copies only /api/generate
    ollama.script('<tool>{"name": "list_files", "args": {}}</tool>', "<final>two files</final>")
    store = mca.SessionStore(tmp_path / "sessions")
    agent = mca.MiniAgent(client_for(ollama), make_workspace(tmp_path), store)
    assert agent.ask("list the files") == "two files"
    paths = [request["path"] for request in ollama.requests]
    assert paths == ["/api/chat", "/api/generate", "/api/generate"]
    assert ollama.prompts[-1].rstrip().endswith("Current user request:\nlist the files")


def test_a_missing_model_on_api_chat_is_not_taken_for_a_missing_endpoint(ollama):
    client = mca.OllamaModelClient("nope:1b", ollama.url, 0.2, 0.9, 10)
    with pytest.raises(RuntimeError, match="Ollama has no model 'nope:1b'") as caught:
        client.complete([{"role": "user", "content": "hi"}], 5)
    assert not isinstance(caught.value, mca.NoSuchEndpoint) and client.chat is True


def test_num_ctx_is_the_same_on_every_request(ollama):
    ollama.script("a", "b", "c")
    client = client_for(ollama)
    for _ in range(3):
        client.complete("x", 5)
    assert {request["options"]["num_ctx"] for request in ollama.generate_requests} == {mca.DEFAULT_NUM_CTX}


def test_counters_of_the_reply_are_kept(ollama):
    ollama.script({"text": "ok", "counters": {"prompt_eval_count": 321, "prompt_eval_cached_count": 300,
                                              "eval_duration": 7}})
    client = client_for(ollama)
    client.complete("x", 5)
    assert client.last_stats["prompt_eval_count"] == 321
    assert client.last_stats["prompt_eval_cached_count"] == 300
    assert client.last_stats["eval_duration"] == 7


def test_streaming_passes_pieces_on_in_order_and_returns_the_whole_reply(ollama):
    ollama.script({"chunks": ["<final>", "Hel", "lo", "</final>"], "counters": {"eval_count": 4}})
    client = client_for(ollama)
    pieces = []
    client.on_text = pieces.append
    assert client.complete("x", 5) == "<final>Hello</final>"
    assert pieces == ["<final>", "Hel", "lo", "</final>"]
    assert ollama.generate_requests[-1]["stream"] is True
    assert client.last_stats["eval_count"] == 4


def test_streamed_pieces_arrive_before_the_reply_ends(ollama):
    ollama.script({"chunks": ["first ", "second"], "chunk_delay": 0.4})
    client = client_for(ollama)
    arrivals = []
    client.on_text = lambda text: arrivals.append((text, time.monotonic()))
    started = time.monotonic()
    client.complete("x", 5)
    finished = time.monotonic()
    assert arrivals[0][0] == "first "
    assert arrivals[0][1] - started < finished - started - 0.3


@pytest.mark.parametrize("reply, expected", [
    ({"status": 500, "error": "boom"}, "HTTP 500: boom"),
    ({"status": 502, "raw_body": b"<html>bad gateway</html>"}, "HTTP 502: <html>bad gateway</html>"),
    ({"status": 400, "error": "the prompt is longer than the context length"}, "HTTP 400: the prompt is longer"),
    ({"raw_body": b"this is not json"}, "not JSON: this is not json"),
    ({"raw_body": b'{"error": "model crashed"}'}, "Ollama error: model crashed"),
    ({"raw_body": b"[1, 2, 3]"}, "JSON that is not an object"),
    ({"raw_body": b'{"done": true}'}, "holds no text"),
])
def test_server_errors_become_one_clear_runtime_error(ollama, reply, expected):
    ollama.script(reply)
    with pytest.raises(RuntimeError) as caught:
        client_for(ollama).complete("x", 5)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_model_says_how_to_pull_it(ollama):
    client = mca.OllamaModelClient("nosuch:1b", ollama.url, 0.2, 0.9, 10)
    with pytest.raises(RuntimeError, match=r"no model 'nosuch:1b'; pull it with `ollama pull nosuch:1b`"):
        client.complete("x", 5)


def test_refused_connection_says_to_start_ollama_and_pull_the_model():
    host = f"http://127.0.0.1:{closed_port()}"
    client = mca.OllamaModelClient(MODEL, host, 0.2, 0.9, 5)
    with pytest.raises(mca.OllamaUnreachable) as caught:
        client.complete("x", 5)
    message = str(caught.value)
    assert host in message and "ollama serve" in message and f"ollama pull {MODEL}" in message


def test_a_server_slower_than_the_timeout_gives_up_in_time(ollama):
    ollama.script({"delay": 3, "text": "late"})
    client = client_for(ollama, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer within 0.5 s.*--ollama-timeout"):
        client.complete("x", 5)
    assert time.monotonic() - started < 2.5


def test_a_stream_that_stalls_longer_than_the_timeout_gives_up(ollama):
    ollama.script({"chunks": ["a", "b"], "chunk_delay": 3})
    client = client_for(ollama, timeout=0.5)
    client.on_text = lambda text: None
    with pytest.raises(RuntimeError, match="did not answer within"):
        client.complete("x", 5)


@pytest.mark.parametrize("stream", [False, True])
def test_a_connection_dropped_mid_reply_is_an_error(ollama, stream):
    ollama.script({"text": "<final>half of a long answer</final>", "drop": True})
    client = client_for(ollama)
    if stream:
        client.on_text = lambda text: None
    with pytest.raises(RuntimeError, match="Ollama"):
        client.complete("x", 5)


def test_an_error_line_in_the_middle_of_a_stream_is_an_error(ollama):
    ollama.script({"chunks": ["<final>par", "tial"], "stream_error": "out of memory"})
    client = client_for(ollama)
    seen = []
    client.on_text = seen.append
    with pytest.raises(RuntimeError, match="Ollama error: out of memory"):
        client.complete("x", 5)
    assert seen == ["<final>par", "tial"]


def test_installed_models_lists_the_pulled_models(ollama):
    ollama.models = [MODEL, "llama3.2:latest"]
    assert client_for(ollama).installed_models() == [MODEL, "llama3.2:latest"]


def test_a_server_that_is_not_ollama_gives_no_model_list(ollama):
    ollama.tags_body = b'{"data": []}'
    assert client_for(ollama).installed_models() is None


def test_installed_models_of_an_unreachable_server_raises():
    client = mca.OllamaModelClient(MODEL, f"http://127.0.0.1:{closed_port()}", 0.2, 0.9, 5)
    with pytest.raises(mca.OllamaUnreachable):
        client.installed_models()


def test_context_length_comes_from_api_show(ollama):
    ollama.context_length = 4096
    assert client_for(ollama).read_model_info() == 4096
    assert ollama.requests[-1]["path"] == "/api/show"
    assert ollama.requests[-1]["body"] == {"model": MODEL}
    ollama.context_length = None   # the server answers 404
    assert client_for(ollama).read_model_info() is None


def test_model_names_match_like_ollama():
    assert mca.model_key("Qwen3.5:4B") == mca.model_key("qwen3.5:4b")
    assert mca.model_key("llama3.2") == "llama3.2:latest"


def test_fake_client_replays_its_script_and_keeps_the_prompts():
    client = mca.FakeModelClient(["one", "two"])
    assert client.complete("p1", 5) == "one"
    assert client.complete("p2", 5) == "two"
    assert client.prompts == ["p1", "p2"]
    with pytest.raises(RuntimeError, match="no scripted replies left"):
        client.complete("p3", 5)


# --- thinking models ------------------------------------------------------------------

@pytest.mark.parametrize("show, think", [
    ({}, False),                                                       # an older Ollama says nothing
    ({"capabilities": ["completion", "thinking"]}, False),
    ({"capabilities": ["completion", "thinking"], "thinking": {"values": [True, False], "default": True}}, False),
    ({"capabilities": ["completion", "thinking"], "thinking": {"values": ["low", "medium", "high"]}}, "low"),
    ({"capabilities": ["completion", "tools"]}, None),                 # no thinking at all: say nothing
])
def test_think_follows_what_the_server_says_the_model_takes(ollama, show, think):
    ollama.show_extra = show
    ollama.script("<final>ok</final>")
    client = client_for(ollama)
    client.read_model_info()
    client.complete("hi", 5)
    body = ollama.generate_requests[-1]
    assert client.think == think and body.get("think", "absent") == ("absent" if think is None else think)


def test_a_server_that_refuses_think_false_is_asked_again_without_it(ollama):
    ollama.refuses_think = True
    ollama.script("<final>ok</final>")
    client = client_for(ollama)
    assert client.complete("hi", 5) == "<final>ok</final>"
    assert [("think" in body) for body in ollama.generate_requests] == [True, False]
    assert client.think is None


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_is_shown_as_it_streams_but_never_becomes_the_answer(ollama, stream):
    ollama.script({"thinking_chunks": ["The user ", "wants a greeting."], "chunks": ["<final>hi</final>"],
                   "counters": {"eval_count": 40}})
    client, thoughts, texts = client_for(ollama), [], []
    if stream:
        client.on_text, client.on_thinking = texts.append, thoughts.append
    assert client.complete("hi", 50) == "<final>hi</final>"
    assert thoughts == (["The user ", "wants a greeting."] if stream else [])
    assert client.last_stats["thinking_chars"] == len("The user wants a greeting.")
    assert client.last_stats["eval_count"] == 40 and client.last_stats["done_reason"] == "stop"


def test_the_client_calls_urlopen_so_a_patched_urlopen_still_works(monkeypatch):
    """The reference's own tests replace urllib.request.urlopen; the client must still go through it."""
    sent = {}

    class Reply:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b'{"response": "<final>ok</final>", "done": true}'

    def fake_urlopen(request, timeout):
        sent.update(url=request.full_url, timeout=timeout, body=json.loads(request.data))
        return Reply()

    monkeypatch.setattr(mca.urllib.request, "urlopen", fake_urlopen)
    client = mca.OllamaModelClient("qwen3.5:4b", "http://127.0.0.1:11434", 0.2, 0.9, 30)
    assert client.complete("hello", 12) == "<final>ok</final>"
    assert sent["url"] == "http://127.0.0.1:11434/api/generate" and sent["timeout"] == 30
    assert sent["body"]["stream"] is False and sent["body"]["think"] is False and sent["body"]["raw"] is False


# --- a server cannot make a request take forever or fill the memory ---------------------

def trickle(handler):
    body = json.dumps({"response": "<final>slowly</final>", "done": True}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass


def endless_stream(handler, line=None):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.end_headers()
    piece = line or (json.dumps({"response": "x" * 60000, "done": False}) + "\n").encode()
    try:
        while True:
            handler.wfile.write(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True


@pytest.mark.parametrize("stream", [False, True])
def test_a_trickling_server_is_held_to_one_deadline_for_the_whole_reply(ollama, stream):
    ollama.script({"serve": trickle})
    client = client_for(ollama, timeout=0.5)
    if stream:
        client.on_text = lambda text: None
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer within 0.5 s"):
        client.complete("hi", 10)
    assert time.monotonic() - started < 1.5


def test_an_endless_stream_is_cut_off_at_a_size_from_num_predict(ollama):
    ollama.script({"serve": endless_stream})
    client = client_for(ollama, timeout=60)
    client.on_text = lambda text: None
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="passed 16 MB without ending"):
        client.complete("hi", 512)
    assert time.monotonic() - started < 20


def test_a_line_that_never_ends_is_refused(ollama):
    ollama.script({"serve": lambda handler: endless_stream(handler, b"y" * 65536)})
    client = client_for(ollama, timeout=60)
    client.on_text = lambda text: None
    with pytest.raises(RuntimeError, match="a line over 4 MB"):
        client.complete("hi", 512)


def test_a_redirect_to_another_host_is_not_followed(ollama):
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", "http://192.0.2.1/api/generate")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    ollama.script({"serve": redirect})
    with pytest.raises(RuntimeError, match="redirect to http://192.0.2.1/api/generate, which is not followed"):
        client_for(ollama).complete("hi", 10)
