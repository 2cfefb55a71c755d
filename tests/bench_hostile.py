"""How long the agent takes on what a hostile repository can ship: huge files, huge modules, long pastes.

    python tests/bench_hostile.py                      # this checkout's agent
    python tests/bench_hostile.py --agent OLD.py       # another version, to compare

Each case runs in a fresh process, killed after --limit seconds; a line per case
gives its time and the start of what the agent said.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUP = """
import random, subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import mini_coding_agent as mca
root = Path(sys.argv[2])
def agent():
    workspace = mca.WorkspaceContext(cwd=str(root), repo_root=str(root))
    store = mca.SessionStore(root / ".mini-coding-agent" / "sessions")
    return mca.MiniAgent(mca.FakeModelClient([]), workspace, store, approval_policy="auto")
def sparse(name, size, head):
    with open(root / name, "wb") as file:
        file.write(head)
        file.truncate(size)
"""

CASES = {   # name -> the code it runs (after SETUP), printing what the agent said
    "read line 1 of a 4 GiB one-line file": """
sparse("huge.log", 4 << 30, b"x" * 9000)
print(agent().run_tool("read_file", {"path": "huge.log", "end": 1}))""",
    "patch a 256 MiB file": """
sparse("data.txt", 256 << 20, b"hello\\n")
print(agent().run_tool("patch_file", {"path": "data.txt", "old_text": "hello", "new_text": "bye"}))""",
    "rewrite a module of 1,000 definitions, 20 users": """
subprocess.run(["git", "init", "-q"], cwd=root)
(root / "mod.py").write_text("".join(f"def f{i}(x):\\n    return x + {i}\\n\\n" for i in range(1000)))
for j in range(20):
    (root / f"use{j}.py").write_text("import mod\\n" + "".join(f"mod.f{i}(1)\\n" for i in range(0, 1000, 7)))
print(agent().run_tool("write_file", {"path": "mod.py", "content": "def g(x):\\n    return x\\n"}))""",
    "write a module of 12,000 definitions": """
code = "".join(f"def f{i}(): pass\\n" for i in range(12_000))
print(agent().run_tool("write_file", {"path": "many.py", "content": code}))""",
    "a patch that missed, 500 long lines": """
letters, pick = [chr(0x4e00 + n) for n in range(300)], random.Random(1).choice
base = [pick(letters) for _ in range(1500)]
def variant():
    row = list(base)
    for _ in range(300):
        row[pick(range(1500))] = pick(letters)
    return "".join(row)
(root / "table.txt").write_text("\\n".join(variant() for _ in range(500)))
print(agent().run_tool("patch_file", {"path": "table.txt", "old_text": variant(), "new_text": "x"}))""",
    "file names in a 300 KB paste": """
print(mca.named_files("a" * 100_000 + " " + "a/" * 100_000, ["a.py"]))""",
    "a file's text with 20,000 answer tags": """
content = "<final>x</final><code>" + "</final><code>" * 20_000
reply = f'<tool name="write_file" path="f.txt"><content>{content}</content></tool>'
print(len(mca.ToolUse.parse(reply)[1]["args"]["content"]))""",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", default=str(Path(__file__).resolve().parent.parent / "mini_coding_agent.py"))
    parser.add_argument("--limit", type=float, default=120, help="seconds before a case is stopped")
    args = parser.parse_args()
    folder = str(Path(args.agent).resolve().parent)
    for name, code in CASES.items():
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, "-c", SETUP + code, folder, root], capture_output=True,
                                      text=True, timeout=args.limit)
                said = (done.stdout or done.stderr).strip().replace("\n", " | ")
            except subprocess.TimeoutExpired:
                said = f"stopped after {args.limit:g} s"
            print(f"{name:48} {time.perf_counter() - started:7.2f} s  {said[:70]}", flush=True)


if __name__ == "__main__":
    main()
