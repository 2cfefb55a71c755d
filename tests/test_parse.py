"""Component 3: how replies in the dialects small local models write become tool calls, or do not.

REPLIES holds realistic replies, each family with several, and what each must be read as:
("tool", name, args), ("final", text) or ("retry", words of the notice). The first
entries were captured from Qwen2.5-Coder-1.5B through the agent; the rest are in the
styles other models are known to write.
"""

import json

import pytest
from conftest import make_agent

import mini_coding_agent as mca

CAPTURED = [   # Qwen2.5-Coder-1.5B-Instruct, served by llama.cpp behind Ollama's API
    ('<tool>{"name": "search", "args": {"pattern": "def main", "path": "."}}</tool>\n<final>Found 1 '
     "occurrence of 'def main' in calc.py.</final>\n\n<tool>{\"name\": \"read_file\", \"args\": {\"path\": "
     '"calc.py", "start": 1, "end": 80}}</tool>\n<final>```\nobj[\'main\']\n```',
     ("tool", "search", {"pattern": "def main", "path": "."})),
    ('<tool>{"name": "search", "args": {"pattern": "listen on", "path": "."}}</tool>\n<final>2000</final>',
     ("tool", "search", {"pattern": "listen on", "path": "."})),
    ('<tool>{"name": "search", "args": {"path": ".", "pattern": "def main"}}',
     ("tool", "search", {"path": ".", "pattern": "def main"})),
    ('<tool>{"name": "delegate", "args": {"task": "Find where the CLI flags are defined", "max_steps": 3}}'
     "</tool>\n<final>Done: The CLI flags for greet.py are defined in the `greet.py` file.</final>",
     ("tool", "delegate", {"task": "Find where the CLI flags are defined", "max_steps": 3})),
    # ... and in chat turns, with the repository's map and its files read first
    ('<tool>{"name": "patch_file", path="shapes.py", "old_text":"class Circle", "new_text:"class '
     'Circle:\\n    def __init__(self, radius):\\n        if radius < 0:\\n            raise '
     'ValueError(\\"Radius cannot be negative\\")\\n        self.radius = radius"}</tool>',
     ("retry", "not valid JSON")),   # a key's closing quote after its colon: not guessed at
    ('<tool>{"name": "patch_file", "args": {"path": "shapes.py", "old_text": "def __init__(self, '
     'radius):", "new_text": "def __init__(self, radius):\\n        if radius < 0:\\n            '
     'raise ValueError(\'Radius cannot be negative\')"}}</tool>',
     ("tool", "patch_file", {"path": "shapes.py", "old_text": "def __init__(self, radius):",
                             "new_text": "def __init__(self, radius):\n        if radius < 0:\n"
                                         "            raise ValueError('Radius cannot be negative')"})),
    ('<tool>{"name": "write_file", "args": {"path": "test_stack.py", "content": "<final>Done: test_stack.py '
     'now contains unit tests for the Stack class.</final>"}}</tool>',   # an answer as the file's text:
     ("tool", "write_file", {"path": "test_stack.py", "content": "<final>Done: test_stack.py now contains "
                             "unit tests for the Stack class.</final>"})),   # the coach takes the tags off
    ('<tool>{"name": "patch_file", "args": {"path": "greet.py", "old_text": "return \\"Hello \\" + name", '
     '"new_text": "return \\"Hello, {}!\\"".format(name)}}</tool>',   # Python in JSON: told to use XML
     ("retry", "the XML form takes text as it is")),
    ('<tool>{"name": "patch_file", path="textkit.py", "old_text": "raise NotImplementedError", "new_text": '
     '"return text.lower().replace(r\'[^a-zA-Z0-9]\', \'-\').strip(\'-\')"}</tool>',   # XML in JSON
     ("tool", "patch_file", {"path": "textkit.py", "old_text": "raise NotImplementedError",
                             "new_text": "return text.lower().replace(r'[^a-zA-Z0-9]', '-').strip('-')"})),
    ('<tool>{"name": "patch_file", "args": {"path": "stats.py", "old_text": "return sum(numbers) / '
     '(len(numbers) + 1)", "new_text": "return sum(numbers) / len(numbers)"}}</tool>',
     ("tool", "patch_file", {"path": "stats.py", "old_text": "return sum(numbers) / (len(numbers) + 1)",
                             "new_text": "return sum(numbers) / len(numbers)"})),
]

WRAPPERS = [
    ('<tool_call>\n{"name": "read_file", "arguments": {"path": "calc.py"}}\n</tool_call>',
     ("tool", "read_file", {"path": "calc.py"})),
    ('<tool_call>\n{"name": "list_files", "arguments": {"path": "."}}',   # cut before its closing tag
     ("tool", "list_files", {"path": "."})),
    ("I'll look at the file first.\n```json\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"calc.py\"}}\n```",
     ("tool", "read_file", {"path": "calc.py"})),
    ('```\n{"tool": "run_shell", "args": {"command": "python -m pytest -q"}}\n```',
     ("tool", "run_shell", {"command": "python -m pytest -q"})),
    ('{"name": "read_file", "arguments": {"path": "settings.py"}}',
     ("tool", "read_file", {"path": "settings.py"})),
    ('Let me check the settings.\n{"name": "read_file", "args": {"path": "settings.py"}}\n',
     ("tool", "read_file", {"path": "settings.py"})),
    ('<function=read_file>{"path": "calc.py", "start": 1}</function>',
     ("tool", "read_file", {"path": "calc.py", "start": 1})),
    ("<tool_call>\n<function=write_file>\n<parameter=path>\nhello.py\n</parameter>\n<parameter=content>\n"
     "print('hi')\n</parameter>\n</function>\n</tool_call>",
     ("tool", "write_file", {"path": "hello.py", "content": "print('hi')"})),
    ("<function=run_shell>\n<parameter=command>\npython -m pytest -q\n</parameter>\n</function>",
     ("tool", "run_shell", {"command": "python -m pytest -q"})),
    ("<function=list_files>\n<parameter=path>\nsrc\n</parameter>\n",   # no </function>: the reply ended
     ("tool", "list_files", {"path": "src"})),
    ('<tool>\n```json\n{"name": "read_file", "args": {"path": "a.py"}}\n```\n</tool>',
     ("tool", "read_file", {"path": "a.py"})),
]

PAYLOADS = [
    ('<tool>{"name": "read_file", "arguments": {"path": "a.py"}}</tool>', ("tool", "read_file", {"path": "a.py"})),
    ('<tool>{"name": "read_file", "parameters": {"path": "a.py"}}</tool>', ("tool", "read_file", {"path": "a.py"})),
    ('<tool>{"name": "search", "input": {"pattern": "PORT"}}</tool>', ("tool", "search", {"pattern": "PORT"})),
    ('<tool_call>{"name": "read_file", "arguments": "{\\"path\\": \\"a.py\\"}"}</tool_call>',
     ("tool", "read_file", {"path": "a.py"})),
    ('{"type": "function", "function": {"name": "run_shell", "arguments": "{\\"command\\": \\"ls -la\\"}"}}',
     ("tool", "run_shell", {"command": "ls -la"})),
    ('<tool>{"tool": "list_files", "args": {"path": "."}}</tool>', ("tool", "list_files", {"path": "."})),
    ('<tool>{"function": "read_file", "arguments": {"path": "a.py"}}</tool>',
     ("tool", "read_file", {"path": "a.py"})),
    ('<tool>{"name": "read_file", "path": "calc.py", "start": 1}</tool>',
     ("tool", "read_file", {"path": "calc.py", "start": 1})),
]

SLOPPY_JSON = [
    ("<tool>{'name': 'read_file', 'args': {'path': 'calc.py'}}</tool>", ("tool", "read_file", {"path": "calc.py"})),
    ('<tool>{"name": "list_files", "args": {"path": ".", "hidden": True, "depth": None}}</tool>',
     ("tool", "list_files", {"path": ".", "hidden": True, "depth": None})),
    ('<tool>{"name": "read_file", "args": {"path": "calc.py",},}</tool>', ("tool", "read_file", {"path": "calc.py"})),
    ('<tool>{"name": "write_file", "args": {"path": "hello.py", "content": "def hi():\n\treturn \\"hi\\"\n"}}</tool>',
     ("tool", "write_file", {"path": "hello.py", "content": 'def hi():\n\treturn "hi"\n'})),
    ("<tool>{'name': 'write_file', 'args': {'path': 'r.py', 'content': 'import re\nWORD = re.compile(r\"\\w+\")\n',}}"
     "</tool>",
     ("tool", "write_file", {"path": "r.py", "content": 'import re\nWORD = re.compile(r"\\w+")\n'})),
]

NAMES = [
    ('<tool>{"name": "bash", "args": {"command": "ls"}}</tool>', ("tool", "run_shell", {"command": "ls"})),
    ('<tool_call>{"name": "shell", "arguments": {"cmd": "pytest -q"}}</tool_call>',
     ("tool", "run_shell", {"command": "pytest -q"})),
    ('<tool>{"name": "execute", "args": {"cmd": "git status"}}</tool>',
     ("tool", "run_shell", {"command": "git status"})),
    ('<tool>{"name": "edit_file", "args": {"path": "a.py", "old_str": "x = 1", "new_str": "x = 2"}}</tool>',
     ("tool", "patch_file", {"path": "a.py", "old_text": "x = 1", "new_text": "x = 2"})),
    ('<tool>{"name": "str_replace", "args": {"file": "a.py", "old": "1", "new": "2"}}</tool>',
     ("tool", "patch_file", {"path": "a.py", "old_text": "1", "new_text": "2"})),
    ('<tool>{"name": "create_file", "args": {"file_path": "n.txt", "contents": "hi\\n"}}</tool>',
     ("tool", "write_file", {"path": "n.txt", "content": "hi\n"})),
    ('<tool>{"name": "cat", "args": {"filename": "README.md"}}</tool>', ("tool", "read_file", {"path": "README.md"})),
    ('<tool>{"name": "view", "args": {"file_path": "a.py", "start": 3}}</tool>',
     ("tool", "read_file", {"path": "a.py", "start": 3})),
    ('<tool>{"name": "ls", "args": {"path": "src"}}</tool>', ("tool", "list_files", {"path": "src"})),
    ('<tool>{"name": "list_directory", "args": {}}</tool>', ("tool", "list_files", {})),
    ('<tool>{"name": "grep", "args": {"query": "PORT"}}</tool>', ("tool", "search", {"pattern": "PORT"})),
    ('<tool>{"name": "rg", "args": {"regex": "def main", "path": "src"}}</tool>',
     ("tool", "search", {"pattern": "def main", "path": "src"})),
    ('<tool>{"name": "Read_File", "args": {"path": "a.py"}}</tool>', ("tool", "read_file", {"path": "a.py"})),
]

THINKING = [
    ('<think>I could list the files: <tool>{"name": "list_files", "args": {}}</tool> but reading is better.'
     '</think>\n<tool>{"name": "read_file", "args": {"path": "calc.py"}}</tool>',
     ("tool", "read_file", {"path": "calc.py"})),
    ('The user wants the port. I might run <tool>{"name": "run_shell", "args": {"command": "cat settings.py"}}'
     "</tool>\n</think>\n\n<final>The server listens on port 8731.</final>",
     ("final", "The server listens on port 8731.")),
    ('<thinking>Check the test first.</thinking>\n<tool>{"name": "read_file", "args": {"path": "test_calc.py"}}'
     "</tool>", ("tool", "read_file", {"path": "test_calc.py"})),
    ('<think>\nLet me consider. Maybe <tool>{"name": "run_shell", "args": {"command": "rm -rf build"}}</tool>',
     ("retry", "only thinking")),
    ("<think>The answer is plain.</think>\nThe function is defined in src/timeutil/parsing.py.",
     ("final", "The function is defined in src/timeutil/parsing.py.")),
]

JSON_ANSWERS = [   # answers the 1.5B model wrote as JSON, in <final> and bare
    ('<final>{"result": "logs.py has been patched with the new warning calls."}</final>',
     ("final", "logs.py has been patched with the new warning calls.")),
    ('{"error": "geometry.py uses names it never defines or imports: x, y; fix it"}',
     ("final", "geometry.py uses names it never defines or imports: x, y; fix it")),
    ('<final>{"port": "8080"}</final>', ("final", '{"port": "8080"}')),   # JSON asked for stays
]

NOT_CALLS = [   # never over-eager: these are answers, not calls
    ('<final>Run it with <tool>{"name": "run_shell", "args": {"command": "make clean"}}</tool> later.</final>',
     ("final", 'Run it with <tool>{"name": "run_shell", "args": {"command": "make clean"}}</tool> later.')),
    ('A call looks like this:\n```json\n{"name": "read_file", "args": {"path": "x"}}\n```\nThat is all.',
     ("final", 'A call looks like this:\n```json\n{"name": "read_file", "args": {"path": "x"}}\n```\nThat is all.')),
    ('The package metadata is:\n{"name": "calc", "version": "1.0"}',
     ("final", 'The package metadata is:\n{"name": "calc", "version": "1.0"}')),
    ('{"name": "demo-app", "scripts": {"test": "pytest"}}',
     ("final", '{"name": "demo-app", "scripts": {"test": "pytest"}}')),
    ("The server listens on port 8731.", ("final", "The server listens on port 8731.")),
]

FAMILIES = {"captured": CAPTURED, "wrappers": WRAPPERS, "payloads": PAYLOADS, "sloppy": SLOPPY_JSON,
            "names": NAMES, "thinking": THINKING, "json answers": JSON_ANSWERS, "not calls": NOT_CALLS}
REPLIES = [reply for family in FAMILIES.values() for reply in family]


def understood(result, expected):
    """True if a parse result is what the reply meant."""
    kind, payload = result
    if kind != expected[0]:
        return False
    if kind == "tool":
        return (payload["name"], payload["args"]) == expected[1:]
    if kind == "final":
        return payload == expected[1]
    return expected[1] in payload


@pytest.mark.parametrize("raw, expected", REPLIES, ids=[f"{name}-{n}" for name, family in FAMILIES.items()
                                                         for n in range(len(family))])
def test_realistic_replies_are_understood(raw, expected):
    assert understood(mca.MiniAgent.parse(raw), expected), mca.MiniAgent.parse(raw)


def test_every_family_has_at_least_two_replies():
    assert all(len(family) >= 2 for family in FAMILIES.values())


def test_other_names_are_said_back_to_the_model_and_recorded_as_ours(repo):
    agent = make_agent(repo, ['<tool_call>{"name": "bash", "arguments": {"cmd": "echo hi"}}</tool_call>',
                              "<final>done</final>"], small_model_help=True)
    assert agent.ask("say hi") == "done"
    item = agent.session["history"][1]
    assert (item["name"], item["args"]) == ("run_shell", {"command": "echo hi"})
    assert item["content"].startswith("(ran run_shell; you wrote bash, cmd)\nexit_code: 0")
    assert "(ran run_shell; you wrote bash, cmd)" in agent.model_client.prompts[1]


# Replies that hold a plan: several calls, then an answer (Qwen2.5-Coder-1.5B, renaming a function).
RENAME_PLAN = (
    '<tool>{"name": "patch_file", "args": {"path": "test_billing.py", "old_text": "from billing import '
    'calc_total", "new_text": "from billing import compute_total"}}</tool>\n<tool>{"name": "patch_file", '
    '"args": {"path": "billing.py", "old_text": "def calc_total(items, tax_rate=0.0)", "new_text": "def '
    'compute_total(items, tax_rate=0.0)"}}</tool>\n<final>Renamed `calc_total` to `compute_total` in all '
    'relevant files.</final>')
GARBLED_PLAN = (
    '<tool>{"name": "patch_file", "args": {"path": "test_billing.py", "old_text": "from billing import '
    'calc_total", "new_text": "from billing import compute_total"}}</tool>\n<tool>{"name": "patch_file", '
    '"args": {"path": "invoice.py", "old_text": calc_total, "new_text": compute_total}}</tool>\n<final>Renamed.'
    '</final>')


def tool_reply(name, **args):
    return "<tool>" + json.dumps({"name": name, "args": args}) + "</tool>\n"


@pytest.fixture
def billing(repo):
    (repo / "billing.py").write_text("def calc_total(items, tax_rate=0.0):\n    return 0\n")
    (repo / "test_billing.py").write_text("from billing import calc_total\n")
    return repo


def test_a_plan_in_one_reply_runs_call_by_call_and_its_early_answer_is_not_taken(billing):
    agent = make_agent(billing, [RENAME_PLAN, "<final>both renamed</final>"])
    assert agent.ask("rename calc_total") == "both renamed"   # asked again, once the results were seen
    tools = [item for item in agent.session["history"] if item["role"] == "tool"]
    assert [(item["args"]["path"], item["content"].split(";")[0]) for item in tools] == [
        ("test_billing.py", "patched test_billing.py"), ("billing.py", "patched billing.py")]
    assert "calc_total" not in (billing / "billing.py").read_text() + (billing / "test_billing.py").read_text()
    assert "patched billing.py" in agent.model_client.prompts[1].split("Transcript:")[1]


def test_a_garbled_call_in_a_plan_stops_it_and_the_model_is_told_why(billing):
    agent = make_agent(billing, [GARBLED_PLAN, "<final>ok</final>"])
    agent.ask("rename calc_total")
    [tool] = [item for item in agent.session["history"] if item["role"] == "tool"]
    assert tool["content"].startswith("(ran patch_file; the next call in your reply was not run. Runtime "
                                      "notice: the tool call was not valid JSON")


def test_a_failed_call_in_a_plan_stops_the_rest(billing):
    plan = (tool_reply("read_file", path="missing.py") + tool_reply("patch_file", path="billing.py",
            old_text="calc_total", new_text="compute_total"))
    agent = make_agent(billing, [plan, "<final>ok</final>"])
    agent.ask("rename")
    [tool] = [item for item in agent.session["history"] if item["role"] == "tool"]
    assert "it failed, so the calls after it in your reply were not run" in tool["content"]
    assert "calc_total" in (billing / "billing.py").read_text()


def test_a_call_that_leaves_a_warning_stops_the_rest_of_its_plan(billing):
    plan = (tool_reply("patch_file", path="billing.py", old_text="def calc_total(", new_text="def compute_total(")
            + tool_reply("patch_file", path="test_billing.py", old_text="from billing", new_text="from billing"))
    agent = make_agent(billing, ["(no draft)", plan, *["<final>ok</final>"] * 3],   # the second call, as
                       small_model_help=True)                                        # Qwen2.5-Coder-1.5B wrote it
    agent.ask("rename calc_total")
    [tool] = [item for item in agent.session["history"] if item.get("name") == "patch_file"]
    assert tool["content"].startswith("patched billing.py\n(it left a warning, so the calls after it in your "
                                      "reply were not run)\nwarning: billing.py no longer defines")


def test_a_command_that_prints_a_warning_does_not_stop_the_plan(repo):
    plan = tool_reply("run_shell", command="echo x && echo warning: LF will be replaced") + \
        tool_reply("read_file", path="hello.txt")   # git says so on `git add`; only edits' warnings stop a plan
    agent = make_agent(repo, [plan, "<final>ok</final>"])
    agent.ask("add it")
    shell, read = [item for item in agent.session["history"] if item["role"] == "tool"]
    assert "\nwarning: LF" in shell["content"] and "alpha" in read["content"]


def test_a_plan_counts_each_call_against_the_step_limit(repo):
    plan = "".join(tool_reply("read_file", path="hello.txt", start=line) for line in (1, 2, 3, 4))
    agent = make_agent(repo, [plan], max_steps=3)
    assert agent.ask("look") == "Stopped after 3 tool steps: the step limit (--max-steps) was reached."
    assert [item["args"]["start"] for item in agent.session["history"] if item["role"] == "tool"] == [1, 2, 3]


def test_a_files_text_wrapped_as_an_answer_is_written_without_the_tags(repo):
    reply = ('<tool>{"name": "write_file", "args": {"path": "test_stack.py", "content": "<final>import unittest\\n'
             '\\nclass TestStack(unittest.TestCase):\\n    pass\\n</final>"}}</tool>')   # Qwen2.5-Coder-1.5B
    agent = make_agent(repo, [reply, "<final>written</final>", "<final>written</final>"], small_model_help=True)
    agent.ask("write tests")   # the answer goes back once for a check: it changed code
    assert (repo / "test_stack.py").read_text() == "import unittest\n\nclass TestStack(unittest.TestCase):\n    pass\n"
    assert "the <final> answer in content was dropped" in agent.session["history"][1]["content"]
    assert mca.MiniAgent.parse('<tool name="write_file" path="a.md"><content>see <final>x</final> here</content>'
                               "</tool>")[1]["args"]["content"] == "see <final>x</final> here"


def test_an_answer_before_a_files_text_in_code_tags_is_dropped(repo):
    content = ("<final>Created test_stack.py with the following content:</final><code>\nimport unittest\n\n\n"
               "class TestStack(unittest.TestCase):\n    pass\n</code>")   # Qwen2.5-Coder-1.5B, word for word
    html = "<final>x</final> and <code>y</code>"   # not an answer followed by a file's text: kept
    agent = make_agent(repo, [tool_reply("write_file", path="test_stack.py", content=content),
                              tool_reply("write_file", path="a.html", content=html), "<final>ok</final>"],
                       small_model_help=True, max_steps=2)
    agent.ask("write them")
    assert (repo / "test_stack.py").read_text() == \
        "import unittest\n\n\nclass TestStack(unittest.TestCase):\n    pass\n"
    assert agent.session["history"][1]["content"].startswith(
        "(ran write_file; the <final> answer in content was dropped: it is not part of a file)\nwrote")
    assert (repo / "a.html").read_text() == html


def test_calls_after_an_answer_the_model_made_up_are_not_run(repo):
    agent = make_agent(repo, [CAPTURED[0][0], "<final>ok</final>"])
    agent.ask("find main")
    [tool] = [item for item in agent.session["history"] if item["role"] == "tool"]
    assert tool["name"] == "search" and "read_file" not in json.dumps(agent.session["history"][1:-1])


def test_an_exact_reply_keeps_the_reference_contract():
    raw = '<tool>{"name": "read_file", "args": {"path": "a.py", "start": 2}}</tool>'
    assert mca.MiniAgent.parse(raw) == ("tool", {"name": "read_file", "args": {"path": "a.py", "start": 2}})


# --- the XML form says what it means -----------------------------------------

EVERY_TAG = ('<tool> </tool> <tool name="x"> <tool_call> </tool_call> <function=y> </function> <final> </final> '
             "<content> </content> <old_text> </old_text> <new_text> </new_text> <path>p</path> <command> "
             "</command> <task> </task> <pattern> </pattern> <think> </think>")


@pytest.mark.parametrize("content", [
    EVERY_TAG,
    "a file that ends in a closing tag </content>\n",
    '<tool name="write_file" path="hello.py"><content>print("hello")</content></tool>',   # our own example
    "line 1\n</content>\nline 3\n</tool>\nline 5",
])
def test_xml_content_holding_any_tag_is_written_whole(content):
    raw = f'<tool name="write_file" path="doc.md"><content>{content}</content></tool>'
    assert mca.MiniAgent.parse(raw) == ("tool", {"name": "write_file", "args": {"path": "doc.md", "content": content}})


def test_xml_patch_fields_may_hold_each_others_tags():
    raw = ('<tool name="patch_file" path="a.py"><old_text>x = "</new_text>"</old_text>\n'
           '<new_text>y = "</old_text>"</new_text></tool>')
    assert mca.MiniAgent.parse(raw)[1]["args"] == {"path": "a.py", "old_text": 'x = "</new_text>"',
                                                    "new_text": 'y = "</old_text>"'}


def test_xml_path_attribute_cannot_be_overridden_from_inside():
    raw = '<tool name="write_file" path="notes.txt"><path>.bashrc</path><content>evil</content></tool>'
    kind, payload = mca.MiniAgent.parse(raw)
    assert kind == "retry" and "could not be read" in payload


def test_a_path_tag_inside_content_is_just_text():
    raw = '<tool name="write_file" path="notes.txt"><content>see <path>x</path></content></tool>'
    assert mca.MiniAgent.parse(raw)[1]["args"] == {"path": "notes.txt", "content": "see <path>x</path>"}


def test_two_xml_calls_in_one_reply_stay_apart():
    raw = ('<tool name="write_file" path="a.txt"><content>A</content></tool>\n'
           '<tool name="write_file" path="b.txt"><content>B</content></tool>')
    kind, call = mca.MiniAgent.parse(raw)
    assert call["args"] == {"path": "a.txt", "content": "A"}
    assert mca.MiniAgent.parse(call["rest"])[1]["args"] == {"path": "b.txt", "content": "B"}


def test_a_write_that_holds_every_tag_reaches_the_disk_intact(repo):
    raw = f'<tool name="write_file" path="doc.md"><content>{EVERY_TAG}</content></tool>'
    agent = make_agent(repo, [raw, "<final>written</final>"])
    agent.ask("write it")
    assert (repo / "doc.md").read_text() == EVERY_TAG


# --- the lenient JSON reader ----------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("{'a': 'b', 'c': [1, 2.5, -3e2,], 'd': None, 'e': True, 'f': false,}",
     {"a": "b", "c": [1, 2.5, -300.0], "d": None, "e": True, "f": False}),
    ("{'s': 'it\\'s \"quoted\"\\n', 'u': '\\u00e9'}", {"s": "it's \"quoted\"\n", "u": "é"}),
    ('{"raw": "two\nlines\tand a tab"}', {"raw": "two\nlines\tand a tab"}),
    ('{path="a.py", start: 3, "end"= 9}', {"path": "a.py", "start": 3, "end": 9}),   # bare keys, = or :
    ('{"old_text": "return f"{customer}: {total:.2f}"", "n": \'it\'s\'}',   # quotes of code left unescaped
     {"old_text": 'return f"{customer}: {total:.2f}"', "n": "it's"}),
    ('{"old_text": "return f"{calc_total(items):.2f}"", "new_text": "return f"{compute_total(items):.2f}"}',
     {"old_text": 'return f"{calc_total(items):.2f}"',   # Qwen2.5-Coder-1.5B, in every run of a rename: the
      "new_text": 'return f"{compute_total(items):.2f}"'}),   # last quote closes the code's string and the JSON's
    ('{"path": "geometry.py", "new_text": "    x, y = text.split(",")\\n    return {\'x\': float(x)}"}',
     {"path": "geometry.py",   # Qwen2.5-Coder-1.5B: a comma in the code's quotes does not end the JSON string
      "new_text": "    x, y = text.split(\",\")\n    return {'x': float(x)}"}),
    ('{"old_text": "if kind == "a": print("a", kind)", "new_text": \'d = {"a": 1}\'}',   # nor a colon, in a value
     {"old_text": 'if kind == "a": print("a", kind)', "new_text": 'd = {"a": 1}'}),
    ('{"paths": ["a.py", "b.py",], \'n\': 1}', {"paths": ["a.py", "b.py"], "n": 1}),
])
def test_lenient_json_reads_what_small_models_write(text, value):
    assert mca.loads_at(text, 0) == (value, len(text))


@pytest.mark.parametrize("text", ["{'a': }", "{'a' 1}", "{'a': 1", "{'a': __import__('os')}", "{'a': 1 2}",
                                  "[" * 500 + "1," + "]" * 500])
def test_lenient_json_refuses_what_is_not_json_and_never_evaluates(text):
    with pytest.raises(ValueError):
        mca.loads_at(text, 0)
