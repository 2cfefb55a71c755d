"""mini-coding-agent: a coding agent in one file, driving a local model through Ollama.

You type a request; the agent builds a prompt, asks the model for a tool call
or a final answer, runs the tool, records the result, and asks again until the
model answers.  What a production coding agent (Claude Code, Codex CLI) has is
here in miniature, as six components:

  1. Live repo context            WorkspaceContext (build, text), GitRunner, repo_map
  2. Prompt shape, cache reuse    PromptShape: build_prefix, memory_text, prompt, messages
  3. Tools, validation, approval  ToolUse: build_tools, parse, validate_tool, approve,
                                  run_tool, path, tool_<name>
  4. Context reduction            clip, ContextReduction: render, history_text, compact
  5. Transcript, memory, resume   SessionStore, SessionMemory: record, note_tool, reset, undo
  6. Bounded delegation           Delegation.tool_delegate

AgentLoop holds the loop (ask) and every piece of state it uses; MiniAgent joins
it with the five component classes.  Small local models need more than that
plain mechanism, so a layer after the components helps them: a reader for the
dialects they write (read_dialects) and a coach (SmallModelHelp) that the loop
asks before a request, around each tool call and at each answer.  It is on by
default and switched off with small_model_help=False (--no-small-model-help).
FakeModelClient and OllamaModelClient are the model backends; the command line
(TerminalDisplay, build_welcome, build_arg_parser, main) comes last.

How to read it: one request goes main -> start_agent -> run_request ->
AgentLoop.ask -> work_on -> next_reply (messages, OllamaModelClient.complete,
parse) -> run_calls -> run_call -> tool_result -> use_tool (validate_tool,
tool_read_file) -> record -> next_reply -> the answer.

Concessions, to stay small: the standard library only; one model call per
step, and the calls of one reply run one after another, never in parallel; the
model speaks a text protocol (<tool>, <final>) rather than a server-side tool
API, so any completion model can drive it; characters stand in for tokens (2.5
per token, on the safe side); the map of the repository in the prompt covers
the first 100 files git lists; the small-model checks of edits are for Python.
"""

import os
import sys

if __name__ == "__main__" and sys.path[:1] == [os.getcwd()]:   # `python -m` puts the current
    del sys.path[0]   # folder, perhaps an untrusted repository, before the standard library

import argparse
import ast
import builtins
import difflib
import hashlib
import http.client
import ipaddress
import itertools
import json
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import symtable
import tempfile
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

__version__ = "0.1.0"

# The settings a reader should know; each section starts with its own.
DEFAULT_MODEL = "qwen3.5:4b"
DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_NUM_CTX = 16384  # tokens of context: fits today's small models and a long session
DEFAULT_MAX_NEW_TOKENS = 2048   # tokens per reply: a 60-line file in one write_file takes ~1,000
CHARS_PER_TOKEN = 2.5    # conservative: code and numbered lines measured 2.96-3.7 chars per token
TEMPLATE_TOKENS = 64     # room for the chat template Ollama wraps around our prompt
MAX_TOOL_OUTPUT = 4000   # chars of one tool result kept: about 100 lines of code
MAX_HISTORY = 12000      # chars of recent transcript a compaction keeps verbatim
STATE_DIR = ".mini-coding-agent"   # the agent's folder in the repository: sessions, undo, history
INTERRUPTED = "interrupted by the user"   # what a request stopped with Ctrl-C ends with
SAID_NO = "Stopped, as you said no. Say what to do instead."   # a no ends the request


def now():
    """The current UTC time as an ISO string, for timestamps in sessions."""
    return datetime.now(timezone.utc).isoformat()


# ---------------------------------------------------------------------------
# The agent loop: ask the model, run the tool it picks, record, repeat
# ---------------------------------------------------------------------------

class AgentLoop:
    """The loop, and every piece of state the agent keeps; the components fill in the steps."""

    def __init__(self, model_client, workspace, session_store, session=None, approval_policy="ask",
                 max_steps=6, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, depth=0, max_depth=1,
                 read_only=False, num_ctx=DEFAULT_NUM_CTX, display=None, prefix=None,
                 lead_turns=(), small_model_help=True):
        self.model_client = model_client
        self.root = Path(workspace.repo_root).resolve()
        self.git = GitRunner(self.root)   # git, run so that nothing the repository names runs
        self.session_store = session_store
        self.session = session or new_session(self.root)
        resumed = "workspace" in self.session   # prompts keep the snapshot the session began with
        self.workspace = WorkspaceContext(**self.session["workspace"]) if resumed else workspace
        self.session["workspace"] = asdict(self.workspace)
        self.approval_policy, self.read_only = approval_policy, read_only
        self.always_approved = set()   # tools the user said [a]lways to, this session
        self.max_steps, self.max_new_tokens = max_steps, max_new_tokens
        self.depth, self.max_depth = depth, max_depth   # a delegated helper is one level down
        self.num_ctx = num_ctx   # sent with every request: a change would reload the model
        self.prompt_budget = int((num_ctx - max_new_tokens - TEMPLATE_TOKENS) * CHARS_PER_TOKEN)
        self.display = display or Display()
        self.tools = self.build_tools()
        self.prefix = prefix or self.build_prefix()   # a helper's prefix extends its parent's
        self.lead_turns = lead_turns                  # prompt, and so do its chat turns
        self.transcript, self.shown_reads = [], {}    # each history item as the prompt shows it
        self.rebuild_transcript()
        self.last_prompt = ""   # the previous prompt, to measure how much of it the next reuses
        self.stopped = False   # did the last request end without an answer (a limit, a "no")?
        self.help = SmallModelHelp(self) if small_model_help else None
        if resumed:
            self.tell_workspace_changes(workspace)

    def ask(self, user_message):
        """Work on one user request until the model gives a final answer or a limit is hit."""
        memory = self.session["memory"]
        memory["task"] = memory["task"] or user_message.strip()[:300]
        request = {"role": "user", "content": user_message}
        if memory["files"] or memory["notes"]:   # what earlier requests left, for the chat turns
            request["memory"] = self.memory_text()
        self.record(request)
        try:
            if self.help and self.help.start(user_message):   # e.g. reads the files it names
                return self.stop(SAID_NO, user_message)
            return self.work_on(user_message)
        except KeyboardInterrupt:   # Ctrl-C stops this request, not the session
            self.stop(INTERRUPTED, user_message)
            raise

    def work_on(self, user_message):
        """The loop: ask the model, run the calls it makes, until a final answer or a limit."""
        steps = attempts = 0
        max_attempts = max(3 * self.max_steps, self.max_steps + 4)   # malformed replies
        self.stopped = False
        while steps < self.max_steps and attempts < max_attempts:
            attempts += 1
            kind, payload = self.next_reply(user_message)
            if kind == "tool":
                ran, denied = self.run_calls(payload, self.max_steps - steps)
                steps += ran
                if denied:   # a person said no: what comes next is theirs to say
                    return self.stop(SAID_NO, user_message)
                continue
            self.record({"role": "assistant", "content": payload})
            if kind == "retry":   # the model is told what was wrong and asked again
                self.display.notice(f"The model's reply was not usable; asking again. {payload}")
                continue
            left = self.max_steps - steps
            sent_back = self.help.review_answer(payload, left) if self.help else None
            if not sent_back:   # only an answer taken is remembered, not one sent back
                self.add_note(f"answer: {one_line(payload)}")
                self.session_store.save(self.session)
                return payload
            notice, message = sent_back
            self.display.notice(notice)
            self.record({"role": "user", "content": message})
        return self.stop(
            f"Stopped after {steps} tool steps: the step limit (--max-steps) was reached."
            if steps >= self.max_steps else
            f"Stopped after {attempts} attempts: too many malformed model responses.",
            user_message)

    def stop(self, why, request):
        """End the request without an answer, saying why (the next may say what to do instead)."""
        self.stopped = True
        self.record({"role": "assistant", "content": why, "stopped": True, "request": request})
        return why

    def next_reply(self, user_message):
        """One model call: ("tool", call), ("final", text) or ("retry", notice); a reply cut
        short is never run, since its last call may be half written."""
        chat = getattr(self.model_client, "chat", False)   # a client that takes chat turns says so
        prompt = self.messages(user_message) if chat else self.prompt(user_message)
        self.display.model_started(self.depth)
        try:
            raw = self.model_client.complete(prompt, self.max_new_tokens)
        except NoSuchEndpoint:
            if not chat:
                raise
            self.model_client.chat = False   # a server without /api/chat: one prompt from now on
            return self.next_reply(user_message)
        finally:
            self.display.model_finished()
        figures = self.record_stats(prompt)
        self.display.step_figures(figures)
        if figures.get("done_reason") == "length":
            return "retry", retry_notice(
                "your reply was cut off at the token limit (--max-new-tokens "
                f"{self.max_new_tokens}) before it ended, so nothing in it was run; write a large "
                "file in parts (write_file with the first part, then patch_file to add the rest), "
                "or answer more briefly")
        return self.parse(raw, dialects=self.help is not None)

    def run_calls(self, call, room):
        """Run a reply's calls in order while each goes well, at most `room`; return how many ran,
        and whether a person said no to the last.

        Models often write a plan in one reply (three edits, then <final>).
        Each call runs as if it had had a reply of its own; an answer written
        before the results were seen is not taken: the model is asked again.
        """
        ran = 0
        while True:
            ran += 1
            rest = call.pop("rest", "")
            kind, following = self.parse(rest, self.help is not None) if rest else ("", None)
            if kind == "retry":   # a garbled call among good ones: it and what follows do not run
                annotate(call, f"the next call in your reply was not run. {following}")
            result = self.run_call(call, more=kind == "tool" and ran < room)
            if not result.ok or result.warnings or result.denied or kind != "tool" or ran == room:
                return ran, result.denied
            call = following

    def run_call(self, call, more=False):
        """Run one tool call, show it, and record it with its result; returns the ToolResult.
        `more`: calls follow it in the reply, which a failure or a warning cancels."""
        result = self.tool_result(call)
        if more and (not result.ok or result.warnings):   # written before the model knew
            trouble = "failed" if not result.ok else "left a warning"
            result.text += f"\n(it {trouble}, so the calls after it in your reply were not run)"
        self.display.tool_finished(call["name"], result, self.depth)
        self.note_tool(call["name"], call["args"], result)
        self.record({"role": "tool", "name": call["name"], "args": call["args"],
                     "content": result.for_model()})
        return result

    @property
    def session_path(self):
        """The file this session is saved in."""
        return self.session_store.path(self.session["id"])

    @classmethod
    def from_session(cls, model_client, workspace, session_store, session_id, **kwargs):
        """An agent that goes on with a saved session."""
        return cls(model_client, workspace, session_store,
                   session=session_store.load(session_id), **kwargs)


def new_session(workspace_root):
    """An empty session dict."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return {
        "id": f"{stamp}-{secrets.token_hex(3)}",
        "created_at": now(),
        "workspace_root": str(workspace_root),
        "history": [],
        "memory": {"task": "", "files": [], "notes": []},
        "undo": [],          # file changes /undo can revert, newest last
        "compactions": [],   # each time the transcript was compacted; the last one is in force
        "stats": [],         # figures of every model call, for /stats
    }


# ---------------------------------------------------------------------------
# What the loop shows the user: the display it reports each step to
# ---------------------------------------------------------------------------

APPROVAL_QUESTION = "approve {name}? [y]es / [n]o / [a]lways for {name} this session{view}: "


class Display:
    """How the agent shows its work as it goes: this quiet one only asks approval questions, for
    MiniAgent in a program or a test.  The command line uses TerminalDisplay (near the end)."""

    def model_started(self, depth):
        """A model call begins (depth > 0: a delegated helper's call)."""

    def model_finished(self):
        """The model call ended, well or not."""

    def step_figures(self, figures):
        """The figures of a model call (see PromptShape.record_stats)."""

    def tool_started(self, name, args, depth):
        """A tool call is about to run (depth > 0: a delegated helper's call)."""

    def tool_finished(self, name, result, depth):
        """A tool call ran, or was refused; `result` is a ToolResult."""

    def notice(self, text):
        """Something the user should know about the step, e.g. a malformed reply."""

    def approval(self, name, preview, whole):
        """Show what a risky call would do (`whole`: all of a long diff) and ask; input() reads
        the answer."""
        sys.stderr.write(f"{preview}\n{APPROVAL_QUESTION.format(name=name, view='')}")
        sys.stderr.flush()


# ---------------------------------------------------------------------------
# Files: the one way into the repository, so that nothing leads outside it
# ---------------------------------------------------------------------------
# The repository is not trusted: it may ship symlinks (to ~/.ssh, to /dev/zero),
# FIFOs, sparse files of gigabytes, or names that differ only by case.  Every
# component reads and keeps files through these few functions.

MAX_FILE_BYTES = 8 << 20   # a file read whole, edited or analysed: more is data, not code
MAX_LINE_CHARS = 2000    # a longer line (minified code, data) is cut when read or searched
BINARY_SNIFF = 8192      # bytes looked at to tell a binary file: a NUL byte among them
IGNORED_DIRS = {".git", STATE_DIR, "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv"}
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)   # Windows has no such flag (symlinks need admin rights)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)   # opening a FIFO must not wait for a writer
O_BINARY = getattr(os, "O_BINARY", 0)       # Windows would translate line endings otherwise


def folded(name):
    """A file name as macOS and Windows compare it: `.GIT`, `.Git.` and `.g\u200cit` are `.git`."""
    name = unicodedata.normalize("NFC", name)
    return "".join(c for c in name if unicodedata.category(c) != "Cf").casefold().rstrip(". ")


def is_inside(path, root):
    """True if a resolved path is the root or below it (case-insensitive file systems too)."""
    if path == root or root in path.parents:
        return True
    return any(parent.exists() and os.path.samefile(parent, root) for parent in path.parents)


def entry_stat(path):
    """os.lstat of a path (a symlink is not followed), or None if it cannot be looked at."""
    try:
        return os.lstat(path)
    except (OSError, ValueError):   # gone, not ours to see, or a name the OS refuses
        return None


def open_regular(path):
    """Open a regular file for reading, never through a symlink, a FIFO or a device; else OSError.
    It stays non-blocking: a read that would wait (in /proc) returns None, not never."""
    fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_BINARY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def read_limited(path, limit=MAX_FILE_BYTES):
    """The bytes of a regular file, refusing one larger than `limit`: every whole-file read."""
    with open_regular(path) as file:
        data = file.read(limit + 1) or b""   # not fstat's size: a file in /proc says 0
    if len(data) > limit:
        raise OSError(f"{Path(path).name} is larger than {limit >> 20} MB, too large for the "
                      "agent")
    return data


def text_lines(file):
    """The lines of a file opened in binary mode, decoded; reads only as far as the caller goes,
    and never past its first MAX_FILE_BYTES (see read_past_cap)."""
    while file.tell() < MAX_FILE_BYTES:
        chunk = line = file.readline(4 * MAX_LINE_CHARS)
        if not chunk:
            return
        while not chunk.endswith(b"\n") and file.tell() < MAX_FILE_BYTES:   # a long line's rest
            chunk = file.readline(4 * MAX_LINE_CHARS)
            if not chunk:
                break
        yield line.decode("utf-8", errors="replace").rstrip("\r\n")[:MAX_LINE_CHARS]


def read_past_cap(file):
    """True if text_lines stopped at MAX_FILE_BYTES, with more of the file unread."""
    return file.tell() >= MAX_FILE_BYTES and bool(file.read(1))


def is_binary(file):
    """True if a file opened in binary mode looks binary (a NUL byte near its start)."""
    binary = b"\0" in (file.read(BINARY_SNIFF) or b"")
    file.seek(0)
    return binary


def files_below(folder):
    """The regular files below a folder, by name; never through a symlink or into another file
    system (/proc, a mounted disk), skipping ignored folders and what cannot be looked at."""
    device = os.lstat(folder).st_dev
    for parent, folders, files in os.walk(folder):   # os.walk skips a folder it cannot list
        stats = {name: entry_stat(os.path.join(parent, name)) for name in folders + files}
        kept = {name: found for name, found in stats.items()
                if found and folded(name) not in IGNORED_DIRS}   # a .git file too
        folders[:] = sorted(name for name in folders if name in kept
                            and stat.S_ISDIR(kept[name].st_mode) and kept[name].st_dev == device)
        for name in sorted(files):
            if name in kept and stat.S_ISREG(kept[name].st_mode):
                yield Path(parent, name)


def write_atomic(path, *chunks, mode=0o666):
    """Replace a file's bytes in one step: after a crash it holds the old bytes or the new.

    The temporary file gets an unpredictable name and is created exclusively,
    so a planted symlink cannot redirect the write; the rename replaces a
    symlink at `path` rather than writing through it.
    """
    temp = path.with_name(f".mca-{secrets.token_hex(8)}.tmp")
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)   # an executable script stays executable
    except OSError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_BINARY, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.writelines(chunks)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def own_folder(folder):
    """Make a folder for the agent's own files; the topmost one made tells git to ignore it all.
    Raises OSError, in one sentence, if a file, FIFO or symlink stands where a folder belongs."""
    missing = []
    for path in (folder, *folder.parents):
        found = entry_stat(path)
        if found is None:
            missing.append(path)
            continue
        if not stat.S_ISDIR(found.st_mode):
            raise OSError(f"{path} is not a folder; remove it (it came with the repository)")
        break
    for path in reversed(missing):
        path.mkdir()
    if missing:
        write_atomic(missing[-1] / ".gitignore", b"# made by mini-coding-agent\n*\n")
    return folder


def state_problem(state):
    """Why the agent's own folder cannot be used, in one sentence, or None: a symlink in it, or a
    file or FIFO where one of its folders belongs (the repository may ship any of these)."""
    folders = [state, state / "sessions", state / "sessions" / "children"]
    inside = [Path(parent, name) for parent, names, files in os.walk(state)   # not through a
              for name in names + files]                                     # symlinked folder
    for path in folders + inside:
        found = entry_stat(path)
        if found is not None and stat.S_ISLNK(found.st_mode):
            return f"{path} is a symlink, and the agent follows no link in its folder, {STATE_DIR}"
        if found is not None and path in folders and not stat.S_ISDIR(found.st_mode):
            return f"{path} is not a folder, and the agent keeps its sessions in {STATE_DIR}"
    return None


# ---------------------------------------------------------------------------
# 1. Live repo context: what the model should know before it reads any file
# ---------------------------------------------------------------------------

PROJECT_DOCS = ("AGENTS.md", "README.md", "pyproject.toml", "package.json")
DOC_CHARS = 1200         # chars of each project doc (README.md, ...) in the prompt
STATUS_CHARS = 1500      # chars of `git status --short` in the prompt
MAP_FILES = 100          # files in the prompt's map of the repository: a small project's all
MAP_DEFINITIONS = 8      # ... each with its first few top-level definitions
MAP_CHARS = 3000         # chars of the whole map (~1,200 tokens); a big repository's map is cut
MAP_READ_CHARS = 50_000  # chars of a file looked at for its definitions
GIT_TIMEOUT = 5          # seconds; git answers in milliseconds unless something is wrong
GIT_SAFELY = [   # each keeps git from running a program the repository names
    "--no-pager", "--no-optional-locks",   # no pager, and git status writes nothing
    "-c", "protocol.allow=never",          # no fetch: no upload-pack, ssh command, credentials
    "-c", "core.fsmonitor=false", "-c", f"core.hooksPath={os.devnull}",
    "-c", "log.showSignature=false"]
GIT_ENV = {"GIT_NO_LAZY_FETCH": "1",    # a partial clone's missing object is not fetched
           "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"}   # nobody is asked, nothing is paged
PROGRAM_SETTINGS = {   # the last part of each config key whose value is a program git may run
    "clean", "smudge", "process", "textconv", "command", "driver", "program", "helper",
    "uploadpack", "receivepack", "sshcommand", "gitproxy", "askpass", "pager", "editor",
    "external", "cmd", "alternaterefscommand", "difffilter", "defaultkeycommand",
    "packobjectshook"}
GIT_FILES = ("HEAD", "config", "config.worktree", "index", "packed-refs", "commondir")   # git
TOP_LEVEL_DEFINITION = re.compile(   # reads these at every call; a line that defines something,
    r"(?:async def|def|class|function|export|const|let|var|func|fn|pub|struct|type|interface) "
    r"|\[|[A-Za-z_][\w.]*\s*[:=]")   # in most languages, or a section or setting of a config


@dataclass
class WorkspaceContext:
    """A snapshot of the repository, taken once at start."""
    cwd: str
    repo_root: str
    branch: str = "-"
    default_branch: str = "main"
    status: str = "clean"
    recent_commits: list = field(default_factory=list)
    project_docs: dict = field(default_factory=dict)
    files: str = ""   # the map of the repository's files (repo_map)

    @classmethod
    def build(cls, cwd):
        """Collect the context from git and the project's docs, running nothing they ship."""
        cwd = Path(cwd).resolve()
        git = GitRunner(cwd)
        root = git.root   # the folder that holds .git, or cwd: never where its config says
        docs = {}
        for folder in (root, cwd):
            for name in PROJECT_DOCS:
                key = (folder / name).relative_to(root).as_posix()
                text = read_doc(folder / name, root, DOC_CHARS)
                if text is not None and key not in docs:
                    docs[key] = text
        has_origin, origin_head = git.run("symbolic-ref", "--short", "refs/remotes/origin/HEAD")
        has_branch, branch = git.run("branch", "--show-current")
        status_ok, status = git.run("status", "--short", "--ignore-submodules=all")
        has_log, log = git.run("log", "--oneline", "-5")
        return cls(
            cwd=str(cwd),
            repo_root=str(root),
            branch=branch if has_branch and branch else "-",
            default_branch=origin_head.split("/", 1)[-1] if has_origin else "main",
            status=clip(status or "clean", STATUS_CHARS) if status_ok else f"unknown ({status})",
            recent_commits=log.splitlines() if has_log else [],
            project_docs=docs,
            files=repo_map(git),
        )

    def news_since(self, seen):
        """What differs from an earlier snapshot's branch, status and commits, as lines."""
        moved = self.branch != seen["branch"]
        lines = [f"- branch: now {self.branch} (was {seen['branch']})"] if moved else []
        if self.status != seen["status"]:
            lines.append(f"- status now:\n{self.status}")
        commits = [line for line in self.recent_commits if line not in seen["recent_commits"]]
        if commits:
            lines.append("- new commits:\n" + "\n".join(f"  - {commit}" for commit in commits))
        return lines

    def text(self):
        """The `Workspace:` block of the prompt."""
        commits = "\n".join(f"  - {line}" for line in self.recent_commits) or "  - none"
        docs = "\n".join(f"--- {name} ---\n{text}" for name, text in self.project_docs.items())
        return "\n".join([
            "Workspace:",
            f"- cwd: {self.cwd}",
            f"- repo_root: {self.repo_root}",
            f"- branch: {self.branch}",
            f"- default_branch: {self.default_branch}",
            f"- status:\n{self.status}",
            f"- recent_commits:\n{commits}",
            f"- project_docs:\n{docs or '(none)'}",
            *([f"- files, with their top-level definitions:\n{self.files}"] if self.files else []),
        ])


class GitRunner:
    """Runs git on the repository a folder is in, so that nothing its config names runs.

    A repository may arrive with its .git folder (a tarball, a shared folder),
    and its config can name programs for git to run: an fsmonitor, hooks, a gpg
    program, filters, the upload-pack or ssh command of a partial clone's lazy
    fetch, credential helpers, pagers.  Fetching is off, and so is every
    setting of the repository's config that names a program.  The root is the
    folder that holds `.git`, given to git explicitly (core.worktree is ignored).
    """

    def __init__(self, cwd):
        self.cwd = Path(cwd).resolve()   # where git runs: its status names files relative to it
        self.root, self.git_dir, self.problem = find_repository(self.cwd)
        self.settings = []   # -c overrides for the program-naming keys of this repository's config
        ok, names = self.run("config", "--name-only", "--list")
        for name in names.splitlines() if ok else []:
            section, key = name.split(".", 1)[0].lower(), name.rsplit(".", 1)[-1].lower()
            if "=" in name:   # `-c name=value` would cut it in the wrong place: git is not used
                self.root, self.git_dir = self.cwd, None
                self.problem = f"its git config has a key that cannot be switched off: {name!r}"
            elif section == "pager" or (section == "filter" and key == "required"):   # pager.log
                self.settings += ["-c", f"{name}=false"]
            elif key in PROGRAM_SETTINGS:
                self.settings += ["-c", f"{name}="]

    def run(self, *args):
        """(True, output) or (False, why it failed); after one timeout, git is not asked again."""
        if self.git_dir is None:
            return False, self.problem
        env = {**os.environ, **GIT_ENV, "GIT_DIR": str(self.git_dir),
               "GIT_WORK_TREE": str(self.root)}   # the folder that holds .git, whatever it says
        try:
            result = subprocess.run(["git", *GIT_SAFELY, *self.settings, *args], cwd=self.cwd,
                                    env=env, capture_output=True, text=True, encoding="utf-8",
                                    errors="replace", stdin=subprocess.DEVNULL,
                                    timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.problem, self.git_dir = f"git {args[0]} did not finish in {GIT_TIMEOUT} s", None
            return False, self.problem
        except OSError as exc:
            return False, f"git cannot run ({exc.strerror})"
        if result.returncode != 0:
            return False, result.stderr.strip().split("\n")[0] or f"git {args[0]} failed"
        return True, result.stdout.strip()


def find_repository(cwd):
    """The repository cwd is in: (the folder that holds its `.git`, its git folder, ""), or (cwd,
    None, why git is not used)."""
    for folder in (cwd, *cwd.parents):
        dot_git = folder / ".git"
        found = entry_stat(dot_git)
        if found is None:
            continue
        if hasattr(os, "geteuid") and found.st_uid != os.geteuid():   # as git's safe.directory
            return cwd, None, f"{dot_git} belongs to another user"
        if stat.S_ISDIR(found.st_mode):
            git_dir = dot_git
        elif stat.S_ISREG(found.st_mode):
            git_dir = linked_git_dir(dot_git)
            if git_dir is None:
                return cwd, None, f"{dot_git} names a repository that is not this folder's"
        else:
            return cwd, None, f"{dot_git} is neither a folder nor a file"
        common = git_dir / first_line(git_dir / "commondir")   # a worktree's is the main one's
        files = [*(git_dir / name for name in GIT_FILES), common / "config",
                 common / "packed-refs"]
        for file in files:
            kind = entry_stat(file)
            if kind is not None and not stat.S_ISREG(kind.st_mode):   # a FIFO would hang git
                return cwd, None, f"{file} is not a regular file"
        return folder, git_dir, ""
    return cwd, None, "not a git repository"


def linked_git_dir(dot_git):
    """The git folder a `.git` file names, if that repository points back at this folder, as a
    linked worktree (`git worktree add`) or a submodule does; else None.

    So a repository that ships `gitdir: ../victim/.git` does not bring the
    victim's commits and files into the prompt.
    """
    named = first_line(dot_git)
    if not named.startswith("gitdir:"):
        return None
    git_dir = (dot_git.parent / named.removeprefix("gitdir:").strip()).resolve()
    back = first_line(git_dir / "gitdir")   # a worktree's: the path of its .git file
    if back and (git_dir / back).resolve() == dot_git.resolve():
        return git_dir
    try:   # a submodule's: core.worktree in its config
        config = read_limited(git_dir / "config", 1 << 20).decode("utf-8", errors="replace")
    except OSError:
        return None
    worktree = re.search(r'^\s*worktree\s*=\s*"?(.*?)"?\s*$', config, re.MULTILINE | re.IGNORECASE)
    points_back = worktree and (git_dir / worktree[1]).resolve() == dot_git.parent.resolve()
    return git_dir if points_back else None


def first_line(path):
    """The first line of a small regular file, stripped, or "" if it cannot be read."""
    try:
        return read_limited(path, 4096).decode("utf-8").split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError):
        return ""


def read_doc(path, root, limit):
    """The first `limit` chars of a doc or source file, if it is a regular file inside the
    repository, with CRLF read as LF (as read_file shows lines); else None."""
    try:
        real = path.resolve(strict=True)
        if not is_inside(real, root):
            return None
        with open_regular(real) as file:
            text = (file.read(4 * limit) or b"").decode("utf-8", errors="replace")
    except (OSError, RuntimeError):   # RuntimeError: a symlink loop
        return None
    text = text.replace("\r\n", "\n")
    return text if len(text) <= limit else text[:limit] + "\n...[more in the file]"


def repo_files(git, folder=None):
    """The repository's files (those below `folder`, if given), relative to its root: git's
    list, else a walk that skips ignored folders."""
    folder = folder or git.root
    inside = "" if folder == git.root else folder.relative_to(git.root).as_posix()
    below = ("-z", "--full-name", "--", f":/{inside}")   # `:/` is the root, wherever git runs
    ok, tracked = git.run("ls-files", *below)
    if ok:   # then the files not yet added, unless ignored: a test file the agent just wrote
        listed_new, new = git.run("ls-files", "--others", "--exclude-standard", *below)
        return [name for name in f"{tracked}\0{new if listed_new else ''}".split("\0") if name]
    walk = itertools.islice(files_below(folder), MAX_COUNTED)
    return [file.relative_to(git.root).as_posix() for file in walk]


def repo_map(git):
    """One line per file: its path and its top-level definitions, so the model knows where to look.

    Small models that are shown only a request start by guessing paths; with
    the map in the prompt they read the right file first.
    """
    lines = []
    for name in repo_files(git)[:MAP_FILES]:
        text = read_doc(git.root / name, git.root, MAP_READ_CHARS) or ""
        found = [] if "\0" in text else [   # a binary file: its name only
            line.strip().rstrip(":{").strip()[:80] for line in text.splitlines()
            if TOP_LEVEL_DEFINITION.match(line)][:MAP_DEFINITIONS]
        lines.append(f"- {name}" + (f": {'; '.join(found)}" if found else ""))
    return clip("\n".join(lines), MAP_CHARS)


# ---------------------------------------------------------------------------
# 2. Prompt shape: a stable prefix the server can cache, then what changes
# ---------------------------------------------------------------------------

RULES = """Rules:
- Reply with tool calls or with one final answer, nothing else.
- A tool call is <tool>{"name": "TOOL", "args": {...}}</tool>.
- For multi-line text, use the XML form shown below.
- The calls of one reply run in order until one fails; you see their results in the next turn.
- A final answer is <final>your answer</final>.
- Use tools to look at files and run commands instead of guessing.
- Never invent tool results; wait for them to appear in the transcript.
- Do not repeat an identical tool call that did not help; try something else.
- Required arguments must not be empty.
- Read the code before writing tests for it."""
SOURCE_SUFFIXES = (".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".cpp", ".rb", ".php", ".sh")
PLACEHOLDER_OLD_TEXT = "lines copied exactly from the file"   # in the patch example
REQUEST_CHARS = MAX_TOOL_OUTPUT   # the current request, repeated at the end of a one-string prompt


def chat_turns(item, rendered):
    """One transcript item (and its text as render() made it) as chat turns; a request carries
    the working memory as it stood when the request came, which never changes after."""
    if item["role"] == "user":
        memory = f"\n\n{item['memory']}" if "memory" in item else ""
        return [{"role": "user", "content": clip(item["content"], REQUEST_CHARS) + memory}]
    said = rendered.removeprefix("[assistant] ")
    if item["role"] == "assistant" and said.startswith("Runtime notice"):   # the unusable reply
        return [{"role": "user", "content": said}]   # is not kept: models copied a stand-in for it
    if item.get("stopped"):   # nor an answer the model never gave: it copied "Stopped, as you..."
        return [{"role": "user", "content": f"(that request has no answer: {item['content']})"}]
    if item["role"] == "assistant":
        return [{"role": "assistant", "content": f"<final>{said}</final>"}]
    call = json.dumps({"name": item["name"], "args": item["args"]}, ensure_ascii=False)
    result = rendered.split("\n", 1)[1]   # after the call's line
    return [{"role": "assistant", "content": f"<tool>{one_line(call, ARGS_CHARS)}</tool>"},
            {"role": "user", "content": f"Result of {one_line(item['name'], 60)}:\n{result}"}]


def flat_text(prompt):
    """A prompt as one text, as a chat template lays out chat turns (to measure reuse)."""
    if isinstance(prompt, str):
        return prompt
    return "".join(f"<|{turn['role']}|>\n{turn['content']}\n" for turn in prompt)


class PromptShape:
    """Component 2: a prompt that only grows at its end, so the server's cache can reuse it.

    Layout: the prefix (never changes), the transcript (each item rendered once,
    appended), then the small parts that change every step: memory and request.
    """

    def build_prefix(self):
        """The part of every prompt that never changes: rules, tools, examples, workspace."""
        tool_lines = [
            f"- {name}({tool['signature']}) [{'approval required' if tool['risky'] else 'safe'}] "
            f"{tool['description']}"
            for name, tool in self.tools.items()
        ]
        listed = [line[2:].split(": ", 1)[0] for line in self.workspace.files.splitlines()
                  if line.startswith("- ")]   # the map's files; a source file, not a test, first
        code = [name for name in listed if name.endswith(SOURCE_SUFFIXES) and "test" not in name]
        path = (code or listed or ["README.md"])[0]
        examples = [   # a model copies an example's values: a real path, and placeholders
            f'<tool>{{"name": "read_file", "args": {{"path": "{path}"}}}}</tool>',
            f'<tool name="patch_file" path="{path}"><old_text>{PLACEHOLDER_OLD_TEXT}</old_text>'
            "<new_text>the lines that replace them</new_text></tool>",
        ]
        return "\n\n".join([
            "You are mini-coding-agent, a careful coding assistant working in a local repository.",
            RULES,
            "Tools:\n" + "\n".join(tool_lines),
            "Valid response examples:\n" + "\n".join(examples),
            self.workspace.text(),
        ])

    def memory_text(self):
        """The `Memory:` block: the task, recent files and short notes."""
        memory = self.session["memory"]
        notes = "\n".join(f"  - {note}" for note in memory["notes"]) or "  - none"
        return "\n".join([
            "Memory:",
            f"- task: {memory['task'] or '-'}",
            f"- files: {', '.join(memory['files']) or '-'}",
            f"- notes:\n{notes}",
        ])

    def prompt(self, user_message):
        """The prompt as one text, compacting the transcript first if it would not fit."""
        request = clip(user_message, REQUEST_CHARS)
        tail = f"{self.memory_text()}\n\nCurrent user request:\n{request}"
        room = self.prompt_budget - len(self.prefix) - len(tail) - len("\n\nTranscript:\n\n\n")
        if len(self.history_text()) > room:
            self.compact(room)
        if len(self.history_text()) > room:
            raise self.overflow()
        return f"{self.prefix}\n\nTranscript:\n{self.history_text()}\n\n{tail}"

    def messages(self, user_message):
        """The same prompt as chat turns, for /api/chat: the prefix as the system message, then
        a turn or two per step, with the working memory in the request it came with.

        Small models follow a conversation better than a transcript inside one
        message (see tests/BENCHMARKS.md).  The turns only grow at their end,
        between compactions, and the request is not repeated.  The memory is
        not put at the end: small models read "- task: ..." there as an order
        (the 1.5B model called delegate with an empty task, every run).
        """
        turns = self.turns()
        size = len(flat_text(turns))
        if size > self.prompt_budget:   # chat turns wrap each item: scale the room to fit
            wrapping = (size - len(self.prefix)) / max(len(self.history_text()), 1)
            self.compact(int((self.prompt_budget - len(self.prefix)) / wrapping))
            turns = self.turns()
        if len(flat_text(turns)) > self.prompt_budget:
            raise self.overflow()
        return turns

    def turns(self):
        """The system message (a helper's: its parent's turns), the summary of compacted items,
        and the rest as chat turns."""
        turns = list(self.lead_turns) or [{"role": "system", "content": self.prefix}]
        compaction = self.compaction()
        if compaction["summary"]:
            turns.append({"role": "user", "content": compaction["summary"]})
        items = self.session["history"][compaction["start"]:]
        for item, text in zip(items, self.transcript, strict=True):
            turns += chat_turns(item, text)
        return turns

    def overflow(self):
        """The error for a prompt that cannot be made to fit the context window."""
        return RuntimeError(f"The prompt does not fit in --num-ctx {self.num_ctx} tokens; "
                            "start with a larger --num-ctx.")

    def record_stats(self, prompt):
        """Keep one model call's figures: size, room, how much the server could reuse, Ollama's."""
        prompt = flat_text(prompt)
        figures = {"prompt_chars": len(prompt), "budget_chars": self.prompt_budget,
                   "reused_chars": len(os.path.commonprefix([prompt, self.last_prompt]))}
        figures.update(getattr(self.model_client, "last_stats", {}))
        self.last_prompt = prompt
        self.session["stats"].append(figures)
        return figures


# ---------------------------------------------------------------------------
# 3. Tools: a registry, a parser for the model's reply, checks before running
# ---------------------------------------------------------------------------

REQUIRED = object()   # marks a tool argument without a default
TOOL_ARGS = {         # tool name -> {argument: default}
    "list_files": {"path": "."},
    "read_file": {"path": REQUIRED, "start": 1, "end": None},   # None: start + READ_LINES - 1
    "search": {"pattern": REQUIRED, "path": "."},
    "run_shell": {"command": REQUIRED, "timeout": 20},
    "write_file": {"path": REQUIRED, "content": REQUIRED},
    "patch_file": {"path": REQUIRED, "old_text": REQUIRED, "new_text": REQUIRED},
    "delegate": {"task": REQUIRED, "max_steps": 3},
}
INT_ARGS = {"start", "end", "timeout", "max_steps"}
MAY_BE_EMPTY = {"content", "new_text"}   # writing an empty file or deleting text is fine
XML_FIELDS = ("content", "old_text", "new_text", "command", "task", "pattern", "path")
TOOL_INFO = {         # tool name -> (needs approval, description, one valid call)
    "list_files": (False, "List the files and folders in a folder of the repo.",
                   '<tool>{"name": "list_files", "args": {"path": "src"}}</tool>'),
    "read_file": (False, "Read lines start..end of a text file, numbered.",
                  '<tool>{"name": "read_file", "args": {"path": "README.md", "start": 1, '
                  '"end": 80}}</tool>'),
    "search": (False, "Find lines containing a text, case-insensitive, in the repo.",
               '<tool>{"name": "search", "args": {"pattern": "def main", "path": "."}}</tool>'),
    "run_shell": (True, "Run a shell command in the repo root; timeout in seconds (1-120).",
                  '<tool>{"name": "run_shell", "args": {"command": "pytest -q", "timeout": 60}}'
                  '</tool>'),
    "write_file": (True, "Create or overwrite a file with the given content.",
                   '<tool name="write_file" path="hello.py"><content>print("hello")</content>'
                   '</tool>'),
    "patch_file": (True, "Replace old_text, which must occur exactly once, with new_text.",
                   '<tool name="patch_file" path="hello.py"><old_text>hello</old_text>'
                   '<new_text>world</new_text></tool>'),
    "delegate": (False, "Ask a helper to find something out; it can read but never change files.",
                 '<tool>{"name": "delegate", "args": {"task": "the question to answer, in full", '
                 '"max_steps": 3}}</tool>'),   # a real task here was copied word for word
}
RETRY_ADVICE = "Reply with a valid <tool> call or a non-empty <final> answer."
TOOL_OPENING = re.compile(r"<tool(?=[\s>])")
ATTRIBUTE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
SPACE = re.compile(r"\s*")
JSON = json.JSONDecoder(strict=False)   # strict=False: raw newlines inside strings are fine
MAX_TAG_CHARS = 4096     # a longer <tool ...> opening tag is malformed
MAX_CANDIDATES = 32      # places tried as an XML call's end: enough for any real reply
READ_LINES = 200         # lines read_file shows when not given an end
MAX_LISTED = 200         # lines of list_files / search output
MAX_COUNTED = 10_000     # ... and how far past that the entries not shown are counted
SEARCH_SECONDS = 10      # a search stops after this and says so
MAX_PATH_CHARS = 1024    # a longer path argument is surely a mistake
SHELL_CAPTURE = 2 * MAX_TOOL_OUTPUT   # bytes kept from the start and the end of a command's output
SHELL_OUTPUT_CAP = 32 << 20   # bytes of output that stop a runaway command (`yes`: 0.1 s)
PROTECTED_DIRS = {".git", STATE_DIR}   # the agent never writes inside these
UNSEEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}   # control, format (bidi), line separators:
                                                   # a path that holds one does not read as it is


@dataclass
class ToolResult:
    """What one tool call did: whether it went well, its text, and what it got wrong."""
    ok: bool
    text: str
    warnings: list = field(default_factory=list)   # from the small-model layer's checks of edits
    denied: bool = False   # a person said no at the approval question

    def for_model(self):
        """The result as the model reads it: the text, then a line per warning."""
        return "\n".join([self.text, *(f"warning: {warning}" for warning in self.warnings)])


def retry_notice(problem):
    """The message a malformed reply gets back, recorded so the model can fix it."""
    return f"Runtime notice: {problem}. {RETRY_ADVICE}"


def read_reply(raw):
    """Read a reply in the protocol the prompt teaches: ("tool", call), ("final", text) or
    ("retry", notice).  Whichever comes first wins, a <tool> tag or <final>; text with neither
    is an answer.  A call that more calls follow carries the rest of the reply, under "rest"."""
    text = raw.strip()
    if not text:
        return "retry", retry_notice("the model returned an empty response")
    opening, final_at = TOOL_OPENING.search(text), text.find("<final>")
    if opening and (final_at == -1 or opening.start() < final_at):
        call, end = read_call(text, opening.end())
        if isinstance(call, str):
            return "retry", retry_notice(call)
        if TOOL_OPENING.search(text, end):
            call["rest"] = text[end:]   # run after this one: see AgentLoop.run_calls
        return "tool", call
    if final_at != -1:
        answer = text[final_at + len("<final>"):].split("</final>", 1)[0].strip()
        return ("final", answer) if answer else \
            ("retry", retry_notice("the <final> answer was empty"))
    return "final", text


def read_call(text, at):
    """Read the call whose `<tool` ends at text[at]: (call, its end) or (what is wrong, None)."""
    tag_end = text.find(">", at)
    if tag_end == -1 or tag_end - at > MAX_TAG_CHARS:
        return "the <tool> tag is not closed with '>'", None
    attributes = text[at:tag_end]
    if re.search(r"\bname\s*=", attributes):
        return xml_call(text, tag_end + 1, attributes)
    try:
        payload, end = JSON.raw_decode(text, SPACE.match(text, tag_end + 1).end())
    except (ValueError, RecursionError):
        return "the tool call was not valid JSON", None
    if not isinstance(payload, dict):
        return "the tool payload must be a JSON object", None
    if set(payload) - {"name", "args"}:
        return 'the tool payload holds more than "name" and "args"', None
    name, args = payload.get("name"), payload.get("args", {})
    if not isinstance(name, str) or not name.strip():
        return "the tool call has no name", None
    if not isinstance(args, dict):
        return "the tool args must be a JSON object", None
    end = SPACE.match(text, end).end()
    end += len("</tool>") if text.startswith("</tool>", end) else 0
    return {"name": name.strip(), "args": args}, end


def xml_call(text, at, attributes, tool=None, aliases=None):
    """The XML form, `<tool name="write_file" path="a.py"><content>...</content></tool>`:
    attributes and fields become args, the fields' text kept exactly; (call, end) or (what is
    wrong, None).  The small-model layer passes the `tool` another name stands for, and
    `aliases` of field names."""
    args = {key: double or single for key, double, single in ATTRIBUTE.findall(attributes)}
    name, aliases = args.pop("name", "").strip(), aliases or {}
    if not name:
        return "the tool call has no name", None
    tool = tool or name
    takes = TOOL_ARGS.get(tool, XML_FIELDS)   # the tool's fields, but not what attributes give
    fields = [key for key in (*XML_FIELDS, *aliases)
              if aliases.get(key, key) in takes and aliases.get(key, key) not in args]
    opening = re.compile(r"<(" + "|".join(fields or ["(?!)"]) + r")>")
    any_field = re.compile(r"<(" + "|".join((*XML_FIELDS, *aliases)) + r")>")
    whole = None if any_field.match(text, SPACE.match(text, at).end()) else \
        {"write_file": "content", "delegate": "task"}.get(tool)   # a body without fields is this
    found, end = fields_until(text, at, opening, whole)
    if found is None:
        return (f'the fields inside <tool name="{name}"> could not be read; write each as '
                "<field>text</field> once, and not again what an attribute gives"), None
    return {"name": name, "args": {**args, **found}}, end


def fields_until(text, at, opening, whole=None, closing="</tool>", field_closing=None):
    """Read fields from text[at] to the call's closing tag; returns (fields, end) or (None, None).

    The call ends at the first closing tag where its fields are whole and
    nothing after it still closes this call (so a file may hold `</tool>`);
    without a closing tag, the call runs to the end of the reply.
    """
    end = text.find(closing, at)
    for _ in range(MAX_CANDIDATES):
        if end == -1:
            break
        fields = read_fields(text[at:end], opening, whole, field_closing)
        later, next_call = text.find(closing, end + 1), TOOL_OPENING.search(text, end + 1)
        if fields is not None and (later == -1 or next_call and next_call.start() < later):
            return fields, end + len(closing)
        end = later
    fields = read_fields(text[at:], opening, whole, field_closing)
    return (fields, len(text)) if fields is not None else (None, None)


def read_fields(body, opening, whole=None, closing=None):
    """The `<field>value</field>` pairs that make up a body, as a dict, or None if it is not that.

    A value ends at the first closing tag that the next field, or the body's
    end, follows: a file's text may itself hold `</content>`.  A body with no
    field tags at all is the value of `whole` (a write_file's bare content).
    """
    fields, at = {}, SPACE.match(body).end()
    if whole and not opening.match(body, at):
        return {whole: body}
    while at < len(body):
        match = opening.match(body, at)
        if not match:
            return None
        close = closing or f"</{match.group(1)}>"
        end = body.find(close, match.end())
        while end != -1 and body[end + len(close):].strip() and \
                not opening.match(body, SPACE.match(body, end + len(close)).end()):
            end = body.find(close, end + 1)
        if end == -1:
            return None
        fields[match.group(1)] = body[match.end():end]
        at = SPACE.match(body, end + len(close)).end()
    return fields


def annotate(call, words):
    """Add to what a call's result will say about how the reply was read."""
    call["note"] = f"{call['note']}; {words}" if "note" in call else words


def all_crlf(text):
    """True if every line of a file's text ends in CRLF, as on Windows.  read_file shows lines
    without the CR and models write LF, so their edits of such a file are given CRLF back."""
    return "\r\n" in text and text.count("\n") == text.count("\r\n")


def line_ends_as(file_text, text):
    """Model-written text with the line ends of the file it goes into."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n") if all_crlf(file_text) else text


def patched(text, old_text, new_text, name):
    """The text with old_text replaced by new_text; ValueError unless old_text occurs once."""
    count = text.count(old_text)
    if count != 1:
        raise ValueError(f"old_text must occur exactly once in {name}, found {count} times")
    return text.replace(old_text, new_text, 1)


class ToolUse:
    """Component 3: which tools exist, how replies become calls, and the checks on each call."""

    def build_tools(self):
        """The tool registry: name -> signature, risk, description and an example call."""
        tools = {}
        for name, (risky, description, example) in TOOL_INFO.items():
            if name == "delegate" and self.depth >= self.max_depth:
                continue
            parts = []   # the arguments as the prompt shows them: `path: str, start: int=1`
            for arg, default in TOOL_ARGS[name].items():
                kind = "int" if arg in INT_ARGS else "str"
                shown = f"start+{READ_LINES - 1}" if default is None else repr(default)
                parts.append(f"{arg}: {kind}" if default is REQUIRED else f"{arg}: {kind}={shown}")
            tools[name] = {"signature": ", ".join(parts), "risky": risky,
                           "description": description, "example": example}
        return tools

    @staticmethod
    def parse(raw, dialects=True):
        """Read a reply as ("tool", call), ("final", text) or ("retry", notice); never raises.

        read_reply knows the protocol the prompt teaches.  With `dialects` (the
        small-model layer), a reply it cannot read, reads only as plain text or
        an answer in JSON, or as a call of a tool or argument it does not know,
        or that holds thinking, goes to read_dialects.
        """
        kind, payload = read_reply(raw)
        known = kind == "tool" and payload["name"] in TOOL_ARGS and set(payload["args"]) <= set(
            TOOL_ARGS[payload["name"]])
        answer = kind == "final" and "<final>" in raw and not payload.startswith("{")   # not JSON
        plain = (known or answer) and not re.search(r"</?think", raw)
        return read_dialects(raw) if dialects and not plain else (kind, payload)

    def validate_tool(self, name, args):
        """Check a call's arguments; return them with defaults filled in, or raise ValueError."""
        checked = {}
        for arg, default in TOOL_ARGS[name].items():
            value = args.get(arg, default)
            if value is REQUIRED:
                raise ValueError(repr(arg))
            if value is None and default is None:   # read_file's end: worked out below
                pass
            elif arg in INT_ARGS:
                if isinstance(value, str) and value.strip().isdigit() and len(value) < 10:
                    value = int(value)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"{arg} must be an integer")
            elif not isinstance(value, str):
                raise ValueError(f"{arg} must be a string")
            elif not value.strip() and arg not in MAY_BE_EMPTY:
                raise ValueError(f"{arg} must not be empty")
            checked[arg] = value
        if name == "read_file" and checked["end"] is None:   # "read on with start=201" works
            checked["end"] = checked["start"] + READ_LINES - 1
        if name == "read_file" and not 1 <= checked["start"] <= checked["end"]:
            raise ValueError("need 1 <= start <= end")
        if name == "run_shell" and not 1 <= checked["timeout"] <= 120:
            raise ValueError("timeout must be between 1 and 120 seconds")
        if name == "delegate" and checked["max_steps"] < 1:
            raise ValueError("max_steps must be at least 1")
        if name == "delegate":
            checked["max_steps"] = min(checked["max_steps"], self.max_steps)   # not more than ours
        return checked

    def repeats_last_two(self, name, args):
        """True if the two previous tool calls were this very call."""
        tool_items = (item for item in reversed(self.session["history"]) if item["role"] == "tool")
        calls = list(itertools.islice(tool_items, 2))
        return len(calls) == 2 and all(c["name"] == name and c["args"] == args for c in calls)

    def approve(self, name, args):
        """Ask whether a risky tool may run, following the approval policy; an edit that would fail
        raises (ValueError, OSError) before anyone is asked."""
        if self.read_only or self.approval_policy == "never":
            return False
        preview = self.preview(name, args)
        if self.approval_policy == "auto" or name in self.always_approved or not preview:
            return True   # no preview: an edit that changes nothing, nothing to ask about
        whole = False
        while True:
            self.display.approval(name, preview, whole)
            try:
                answer = input("").strip().lower()
            except EOFError:
                answer = ""
            if answer not in ("v", "view"):
                break
            whole = True   # show the whole diff, then ask again
        if answer in ("a", "always"):
            self.always_approved.add(name)
        allowed = answer in ("y", "yes", "a", "always")
        if not allowed:
            why = "" if answer else " (Enter means no)"
            self.display.notice(f"Denied{why}: {name} was not run.")
        return allowed

    def preview(self, name, args):
        """What a risky call would do, for a person to judge: the command, or the diff of the edit
        under the path it will really write ('' for an edit that changes nothing)."""
        if name == "run_shell":
            return (f"run_shell in {self.root} (timeout {args['timeout']} s):\n"
                    f"  $ {args['command']}")
        path, old, new = self.planned_edit(name, args)
        shown = self.relative(path)
        return "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{shown}",
                                             f"b/{shown}", lineterm=""))

    def use_tool(self, name, args):
        """Run one tool call through every check; returns a ToolResult, never raises."""
        if not isinstance(name, str) or name not in self.tools:
            return ToolResult(False, f"error: unknown tool '{name}'")
        try:
            checked = self.validate_tool(name, args)
        except ValueError as exc:
            example = self.tools[name]["example"]
            return ToolResult(False, f"error: invalid arguments for {name}: {exc}\n"
                                     f"example: {example}")
        if self.repeats_last_two(name, args):
            return ToolResult(False, f"error: repeated identical tool call for {name}; "
                                     "choose a different tool or return a final answer")
        try:
            if self.tools[name]["risky"] and not self.approve(name, checked):
                asked = self.approval_policy == "ask" and not self.read_only
                return ToolResult(False, f"error: approval denied for {name}", denied=asked)
            text = getattr(self, f"tool_{name}")(checked)
        except Exception as exc:   # a tool's failure is a result the model can react to
            return ToolResult(False, f"error: tool {name} failed: {exc}")
        return ToolResult(True, clip(text, MAX_TOOL_OUTPUT))

    def run_tool(self, name, args):
        """Run one tool call as the loop does; returns its result as the model reads it."""
        return self.tool_result({"name": name, "args": args}).for_model()

    def tool_result(self, call):
        """Show and run one call through every check, with the small-model layer's coach (if on)
        mending it first and adding to its result after; returns a ToolResult."""
        refused = self.help.before_tool(call) if self.help else None
        self.display.tool_started(call["name"], call["args"], self.depth)   # as it will run
        result = refused or self.use_tool(call["name"], call["args"])
        if self.help:
            self.help.after_tool(call, result)   # what the call got wrong
        if "note" in call:   # how the call was read: what the model wrote, what did not run
            verb = "ran" if result.ok else "tried"
            result.text = f"({verb} {call['name']}; {call.pop('note')})\n{result.text}"
        return result

    def path(self, raw_path):
        """Resolve a path argument inside the workspace, or raise ValueError: the check every tool
        uses."""
        parts = re.split(r"[\\/]", raw_path)
        if len(raw_path) > MAX_PATH_CHARS or any(len(part) > 255 for part in parts):
            raise ValueError(f"path is too long: {raw_path[:60]}...")
        if any(unicodedata.category(char) in UNSEEN_CATEGORIES for char in raw_path):
            raise ValueError(f"path contains a control or invisible character: {raw_path!r}")
        if raw_path.startswith("~"):
            raise ValueError(f"path escapes workspace: {raw_path}")
        try:
            resolved = (self.root / raw_path).resolve()   # every symlink, even below missing parts
        except (OSError, RuntimeError) as exc:            # RuntimeError: a symlink loop
            raise ValueError(f"cannot resolve path {raw_path}: {exc}") from None
        if not is_inside(resolved, self.root):
            raise ValueError(f"path escapes workspace: {raw_path}")
        return resolved

    def relative(self, path):
        """A path as the model sees it: relative to the repo root."""
        return path.relative_to(self.root).as_posix() or "."

    def writable(self, raw_path):
        """A path the agent may write: inside, not a folder, not in .git or the agent's own."""
        path = self.path(raw_path)
        if any(folded(part) in PROTECTED_DIRS for part in path.relative_to(self.root).parts):
            raise ValueError(f"the agent does not write inside .git or {STATE_DIR}")
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"not a regular file: {raw_path}")
        return path

    def tool_list_files(self, args):
        """One folder's entries as `[D] path` / `[F] path` lines, folders first."""
        folder = self.path(args["path"])
        if not folder.is_dir():
            raise ValueError(f"not a folder: {args['path']}")
        entries = [entry for entry in folder.iterdir() if folded(entry.name) not in IGNORED_DIRS]
        kinds = {entry: self.entry_kind(entry) for entry in entries}
        broken = sorted(entry.name for entry, kind in kinds.items() if kind == "broken")
        lines = sorted(f"[{kind}] {self.relative(entry)}" for entry, kind in kinds.items()
                       if kind in "DF")
        if broken:
            lines.append(f"(skipped {len(broken)} broken or looping symlinks, or entries that "
                         f"cannot be looked at: {', '.join(broken[:5])})")
        return listing(lines, "entries", "list a subfolder") or "(empty)"

    def entry_kind(self, entry):
        """"D" for a folder, "F" for a file, "outside" for a link out of the root (not shown), or
        "broken" for a link that loops or leads nowhere, or an entry that cannot be looked at."""
        try:
            real = entry.resolve(strict=True)
            return ("D" if real.is_dir() else "F") if is_inside(real, self.root) else "outside"
        except (OSError, RuntimeError):   # RuntimeError: a symlink loop
            return "broken"

    def tool_read_file(self, args):
        """Numbered lines start..end of a text file, reading no further than needed."""
        path = self.path(args["path"])
        if not path.exists():
            raise ValueError(f"no such file: {args['path']}")
        if not stat.S_ISREG(path.stat().st_mode):   # not a folder, a FIFO or a device
            raise ValueError(f"not a regular file: {args['path']}")
        lines = [f"# {self.relative(path)}"]
        with open_regular(path) as file:
            if is_binary(file):
                return f"{lines[0]}\n(binary file, {path.stat().st_size} bytes; not shown)"
            shown_chars = 0
            for number, line in enumerate(text_lines(file), 1):
                if number > args["end"] or shown_chars > MAX_TOOL_OUTPUT:
                    lines.append(f"(more lines follow; read on with start={number})")
                    break
                if number >= args["start"]:
                    lines.append(f"{number:>4}: {line}")
                    shown_chars += len(line) + 6
            if read_past_cap(file):
                lines.append(f"(the agent reads only the first {MAX_FILE_BYTES >> 20} MB of a "
                             "file; the rest of this one was not read)")
        if len(lines) == 1:
            lines.append("(empty file)" if args["start"] == 1 else
                         "(the file ends before line start)")
        return "\n".join(lines)

    def tool_search(self, args):
        """`path:line:text` for each line holding the pattern, case-insensitive, in the files git
        lists (so what .gitignore names is skipped), else in every regular file below the path."""
        folder = self.path(args["path"])
        names = [self.relative(folder)] if folder.is_file() else repo_files(self.git, folder)
        needle, matches, notes = args["pattern"].lower(), [], []
        deadline = time.monotonic() + SEARCH_SECONDS
        for name in names:
            if time.monotonic() > deadline or len(matches) >= MAX_COUNTED:
                notes.append(f"(the search stopped after {SEARCH_SECONDS} s or {MAX_COUNTED:,} "
                             "matches, before it looked in every file; narrow the path)")
                break
            try:   # not through a symlink: its target is searched under its own name, if inside
                handle = open_regular(self.root / name)
            except OSError:
                continue
            with handle:
                if is_binary(handle):
                    continue
                matches += [f"{name}:{number}:{line}"
                            for number, line in enumerate(text_lines(handle), 1)
                            if needle in line.lower()]
                if read_past_cap(handle):
                    notes.append(f"({name} was searched in its first {MAX_FILE_BYTES >> 20} MB)")
        found = listing(matches[:MAX_COUNTED], "matches", "narrow the pattern or the path")
        return "\n".join([found or "(no matches)", *notes[:5]])

    def tool_run_shell(self, args):
        """A shell command's exit code, stdout and stderr."""
        code, stdout, stderr = run_command(args["command"], self.root, args["timeout"])
        return f"exit_code: {code}\nstdout:\n{stdout or '(empty)'}\nstderr:\n{stderr or '(empty)'}"

    def planned_edit(self, name, args):
        """(path, its text now, its text after the edit) for a write_file or patch_file call;
        raises ValueError or OSError, saying why, if the edit cannot be made.  The approval
        preview and the tool both plan here, so a failing edit is reported before anyone is
        asked."""
        path = self.writable(args["path"])
        if name == "write_file":
            old = read_limited(path).decode("utf-8", errors="replace") if path.exists() else ""
            content = args["content"]
            if old.startswith("\ufeff") and not content.startswith("\ufeff"):
                content = "\ufeff" + content   # a byte-order mark is kept: models drop it
            return path, old, line_ends_as(old, content)
        if not path.exists():
            raise ValueError(f"no such file: {args['path']}")
        try:
            old = read_limited(path).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{args['path']} is not UTF-8 text") from None
        old_text, new_text = (line_ends_as(old, args[key]) for key in ("old_text", "new_text"))
        return path, old, patched(old, old_text, new_text, args["path"])

    def tool_write_file(self, args):
        """Create or replace a file (undoably)."""
        path, _, new = self.planned_edit("write_file", args)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write_undoably(path, new.encode("utf-8"), "write_file")
        return f"wrote {self.relative(path)} ({len(new)} chars)"

    def tool_patch_file(self, args):
        """Replace the one occurrence of old_text with new_text (undoably)."""
        path, _, new = self.planned_edit("patch_file", args)
        self.write_undoably(path, new.encode("utf-8"), "patch_file")
        return f"patched {self.relative(path)}"


def listing(lines, what, advice):
    """At most MAX_LISTED lines, saying how many more there were and what to do about it."""
    if len(lines) <= MAX_LISTED:
        return "\n".join(lines)
    more = f"{len(lines) - MAX_LISTED:,}{'+' if len(lines) == MAX_COUNTED else ''}"
    return "\n".join([*lines[:MAX_LISTED], f"({more} more {what} not shown; {advice})"])


# Running commands: output goes to temporary files, not pipes, so a background
# child that keeps them open cannot make the agent wait; a command that runs too
# long or writes too much, or Ctrl-C, kills its whole process group.

if os.name == "posix":
    NEW_PROCESS_GROUP = {"start_new_session": True}   # the shell and its children: a group
else:
    NEW_PROCESS_GROUP = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}


def run_command(command, cwd, timeout):
    """Run a shell command that cannot hang the agent: (exit code or why it was stopped, stdout,
    stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, **NEW_PROCESS_GROUP)
        started, code = time.monotonic(), None
        try:
            while code is None:
                try:
                    code = process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    code = stop_reason(started, timeout, out, err)
                    if code:
                        kill_tree(process)
        except BaseException:
            kill_tree(process)
            raise
        return code, command_output(out), command_output(err)


def stop_reason(started, timeout, *outputs):
    """Why a running command must be stopped now (too slow, or writing gigabytes), or None."""
    if sum(os.fstat(file.fileno()).st_size for file in outputs) > SHELL_OUTPUT_CAP:
        return (f"stopped (killed once its output passed {SHELL_OUTPUT_CAP >> 20} MB; print less, "
                "e.g. | tail -50)")
    if time.monotonic() - started > timeout:
        return f"timeout (killed after {timeout} s)"
    return None


def kill_tree(process):
    """Stop a shell and every process it started."""
    if os.name == "posix":
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
    else:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
    process.wait()


def command_output(file):
    """A command's output from its temporary file: all of it, or its first and last part."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if size <= 2 * SHELL_CAPTURE:
        data = file.read()
    else:
        head = file.read(SHELL_CAPTURE)
        file.seek(size - SHELL_CAPTURE)
        data = head + f"\n...[{size - 2 * SHELL_CAPTURE} bytes cut]...\n".encode() + file.read()
    return data.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------
# 4. Context reduction: keep what the model sees small and useful
# ---------------------------------------------------------------------------

ITEM_CHARS = 900         # a transcript item shows at most this much, fixed when recorded
ARGS_CHARS = 300         # ... and of its arguments (a write's content is on disk: not twice)
SUMMARY_LINE_CHARS = 160   # a compacted item becomes one line this long at most
NOTE_CHARS = 220         # chars of one working-memory note


def clip(text, limit):
    """Keep the start and the end of a long text, saying how much was cut from the middle.

    The end matters: it holds a test run's summary and a compiler's last error.
    """
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = text[len(text) - (limit - head):]
    return f"{text[:head]}\n...[truncated {len(text) - limit} chars]...\n{tail}"


def one_line(text, limit=NOTE_CHARS):
    """The first line of a text, clipped, for memory notes and summaries."""
    return clip(text.strip().split("\n", 1)[0], limit).replace("\n", " ")


def speaker(item):
    """How the transcript labels a history item's author: a stop is not the model's answer."""
    return "stopped" if item.get("stopped") else item["role"]


def summary_line(item):
    """The one line that stands for a compacted history item."""
    if item["role"] != "tool":
        return f"- {speaker(item)}: {one_line(item['content'], SUMMARY_LINE_CHARS)}"
    args = one_line(json.dumps(item["args"], sort_keys=True, ensure_ascii=False), 60)
    return f"- {item['name']} {args}: {one_line(item['content'], SUMMARY_LINE_CHARS - 60)}"


class ContextReduction:
    """Component 4: each transcript item is rendered once, small; rare compactions make room."""

    def render(self, item):
        """How one history item reads in the prompt, fixed when it is recorded."""
        if item["role"] != "tool":
            return f"[{speaker(item)}] {clip(item['content'], ITEM_CHARS)}"
        args = json.dumps(item["args"], sort_keys=True, ensure_ascii=False)
        path = item["args"].get("path")
        content = clip(item["content"], ITEM_CHARS)
        if item["name"] in ("write_file", "patch_file"):
            self.shown_reads = {key: read for key, read in self.shown_reads.items()
                                if read[0] != path}
        elif item["name"] == "read_file":
            if self.shown_reads.get(args) == (path, item["content"]):
                content = "(unchanged since the same read above)"
            self.shown_reads[args] = (path, item["content"])
        return f"[tool:{one_line(item['name'], 60)}] {one_line(args, ARGS_CHARS)}\n{content}"

    def history_text(self):
        """The transcript as the prompt shows it: the summary of compacted items, then the rest."""
        summary = self.compaction()["summary"]
        if not self.transcript and not summary:
            return "- empty"
        return "\n".join(([summary] if summary else []) + self.transcript)

    def compaction(self):
        """The compaction in force: the index of the first item shown whole (`start`), and the
        `summary` that stands for those before it."""
        compactions = self.session["compactions"]
        return compactions[-1] if compactions else {"start": 0, "summary": ""}

    def rebuild_transcript(self):
        """Render the verbatim part of the history (at start, on resume and after a compaction)."""
        self.shown_reads = {}   # args JSON -> (path, content) of reads shown in the transcript
        shown = self.session["history"][self.compaction()["start"]:]
        self.transcript = [self.render(item) for item in shown]

    def compact(self, room):
        """Make room in one big step: older items shrink to a line each, the newest stay whole."""
        keep_chars, kept = min(MAX_HISTORY, room // 2), 0
        for text in reversed(self.transcript):
            if keep_chars < len(text) + 1:
                break
            keep_chars -= len(text) + 1
            kept += 1
        history, start = self.session["history"], self.compaction()["start"]
        end = len(history) - kept
        lines = self.compaction()["summary"].split("\n")[1:] + [summary_line(item)
                                                   for item in history[start:end]]
        while lines and len("\n".join(lines)) > room // 4:
            lines.pop(0)   # the oldest summary lines go first
        heading = f"[summary] {end} earlier items, one line each (oldest dropped first):"
        summary = "\n".join([heading, *lines])
        self.session["compactions"].append({"start": end, "summary": summary, "created_at": now()})
        self.rebuild_transcript()
        self.session_store.save(self.session)


# ---------------------------------------------------------------------------
# 5. Transcript, memory and resumption: every step is saved and can go on later
# ---------------------------------------------------------------------------

MAX_NOTES = 5            # working-memory notes kept, newest last
MAX_FILES = 8            # recently touched files kept in memory
MEMORY_PATH_CHARS = 200  # a longer path is not remembered: memory stays a few hundred chars
MAX_SESSION_BYTES = 512 << 20     # a session file larger than this is not loaded: surely not ours
UNDO_COPY_NAME = r"[0-9a-f]{16}\.bak"   # the names keep_copy gives; any other was planted
WORKSPACE_SHAPE = {"cwd": str, "repo_root": str, "branch": str, "default_branch": str,
                   "status": str,
                   "recent_commits": [str], "project_docs": {str: str}, "files": str}
SESSION_SHAPE = {     # every field the code reads from a saved session
    "id": str,
    "history": [({"role": ("user", "assistant"), "content": str, "memory?": str},
                 {"role": "tool", "name": str, "args": dict, "content": str})],
    "memory": {"task": str, "files": [str], "notes": [str]},
    "undo": [{"path": str, "tool": str, "copy": (str, None), "sha256": str}],
    "compactions": [{"start": int, "summary": str}],
    "stats": [dict],
    "workspace?": WORKSPACE_SHAPE,   # the snapshot its prompts start with, once an agent used it
    "workspace_seen?": {"branch": str, "status": str, "recent_commits": [str]},   # after a resume
}


def shape_problem(value, shape):
    """Where a value loaded from JSON differs from a shape (see SESSION_SHAPE), e.g. `.memory.task
    is not a str`, or None.

    A shape is a type, a literal, a tuple of choices, [shape] for a list of
    them, {key: shape} for an object ("key?" if it may be missing), or
    {str: shape} for an object with any keys.
    """
    if isinstance(shape, tuple):
        fits = any(shape_problem(value, choice) is None for choice in shape)
        return None if fits else " is malformed"
    if isinstance(shape, list):
        if not isinstance(value, list):
            return " is not a list"
        problems = (f"[{n}]{shape_problem(item, shape[0])}" for n, item in enumerate(value)
                    if shape_problem(item, shape[0]))
        return next(problems, None)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return " is not an object"
        if str in shape:
            bad = [key for key, item in value.items() if shape_problem(item, shape[str])]
            return f"[{bad[0]!r}] is malformed" if bad else None
        for key, part in shape.items():
            name = key.rstrip("?")
            if name not in value and not key.endswith("?"):
                return f" has no {name!r}"
            problem = shape_problem(value[name], part) if name in value else None
            if problem:
                return f".{name}{problem}"
        return None
    if isinstance(shape, type):
        fits = isinstance(value, shape) and not (shape is int and isinstance(value, bool))
        return None if fits else f" is not {'an' if shape is int else 'a'} {shape.__name__}"
    return None if value == shape else f" is not {shape!r}"


def session_problem(session):
    """Why a loaded session cannot be used, or None: it is checked like any untrusted input."""
    problem = shape_problem(session, SESSION_SHAPE)
    if problem:
        return problem[1:] if problem.startswith(".") else f"the session{problem}"
    if any(change["copy"] is not None and not re.fullmatch(UNDO_COPY_NAME, change["copy"])
           for change in session["undo"]):
        return "an undo entry names a copy the agent did not make"
    if any(not 0 <= compaction["start"] <= len(session["history"])
           for compaction in session["compactions"]):
        return "a compaction record points outside the history"
    return None


class SessionBusy(ValueError):
    """Another running agent holds the session."""


class SessionStore:
    """Sessions under `.mini-coding-agent/sessions/`, one `<id>.json` each, written whole and
    atomically at every save: a crash leaves the old file or the new one, never half of one."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, session_id, suffix=".json"):
        """The file that holds a session (or its lock, or undo folder); the id is a plain name."""
        if not re.fullmatch(r"[\w.-]+", session_id) or session_id.startswith("."):
            raise ValueError(f"{session_id!r} is not a session id (see the files in {self.root})")
        return self.root / f"{session_id}{suffix}"

    def save(self, session):
        """Save a session and return the path of its file."""
        path = self.path(session["id"])
        own_folder(self.root)
        data = json.dumps(session).encode()   # ASCII: any string survives
        write_atomic(path, data, mode=0o600)   # it holds files' text: for the user alone
        return path

    def load(self, session_id):
        """Read a session back; raise ValueError with one clear reason if it cannot be."""
        path = self.path(session_id)
        if not os.path.lexists(path):
            raise ValueError(f"there is no session file {path}")
        try:
            session = json.loads(read_limited(path, MAX_SESSION_BYTES))
        except (OSError, ValueError, RecursionError) as exc:
            raise ValueError(f"the session file {path} cannot be read ({exc})") from None
        problem = session_problem(session)
        if not problem and session["id"] != session_id:
            problem = f"it holds the session {session['id']!r}, not {session_id!r}"
        if problem:
            raise ValueError(f"the session file {path} is damaged: {problem}")
        return session

    def newest_first(self):
        """The ids of all saved sessions, the most recently saved first."""
        files = [path for path in self.root.glob("*.json") if stat.S_ISREG(path.lstat().st_mode)]
        files.sort(key=lambda path: path.lstat().st_mtime, reverse=True)
        return [file.stem for file in files]

    def latest(self):
        """The id of the most recently saved session, or None."""
        return next(iter(self.newest_first()), None)

    def lock(self, session_id):
        """Hold a session for this process, or raise SessionBusy; a dead process's is taken."""
        path = self.path(session_id, ".lock")
        own_folder(self.root)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o600)
            except FileExistsError:
                holder = self.holder(session_id)
                if holder:
                    raise SessionBusy(f"the session {session_id} is open in another agent "
                                      f"(process {holder})") from None
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as file:
                file.write(f"{os.getpid()}\n")
            return
        raise SessionBusy(f"the session {session_id} is being opened by another agent right now")

    def holder(self, session_id):
        """The id of the live process that holds a session, or None."""
        try:
            with open_regular(self.path(session_id, ".lock")) as file:
                pid = int(file.read(32) or b"")
        except (OSError, ValueError):
            return None
        return pid if pid == os.getpid() or process_alive(pid) else None

    def unlock(self, session_id):
        """Let go of a session this process holds."""
        if self.holder(session_id) == os.getpid():
            self.path(session_id, ".lock").unlink(missing_ok=True)

    def children(self):
        """The store for delegated child agents: apart, so `--resume latest` never picks one."""
        return SessionStore(self.root / "children")

    def keep_copy(self, session_id, data):
        """Save the bytes a file held before the agent changed it; returns the copy's name."""
        folder = own_folder(self.path(session_id, ".undo"))
        name = f"{secrets.token_hex(8)}.bak"
        write_atomic(folder / name, data, mode=0o600)
        return name

    def copy(self, session_id, name):
        """The bytes of a copy kept by keep_copy (a name it did not make is refused)."""
        if not re.fullmatch(UNDO_COPY_NAME, name):
            raise OSError(f"{name!r} is not the name of an undo copy")
        return read_limited(self.path(session_id, ".undo") / name)


def process_alive(pid):
    """True if a process with this id runs (on Windows asked of tasklist: os.kill would end it)."""
    if os.name == "nt":
        tasks = subprocess.run(["tasklist", "/FI", f"PID eq {pid}", "/NH", "/FO", "CSV"],
                               capture_output=True, text=True).stdout
        return f'"{pid}"' in tasks
    try:
        os.kill(pid, 0)   # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:   # it exists, but belongs to another user
        return True
    return True


def sha256(data):
    """A fingerprint of some bytes, to notice a file changed behind the agent's back."""
    return hashlib.sha256(data).hexdigest()


class SessionMemory:
    """Component 5: the transcript, the working memory and the undo list the agent keeps."""

    def record(self, item):
        """Add one item to the transcript and save the session."""
        item = {**item, "created_at": now()}
        self.session["history"].append(item)
        self.transcript.append(self.render(item))
        self.session_store.save(self.session)
        return item

    def note_tool(self, name, args, result):
        """Update working memory after a tool ran: files touched and a one-line note.

        Only what happened is remembered: a path a tool refused is not, so no
        reply can fill the memory (and every later prompt) with junk.
        """
        memory = self.session["memory"]
        path = args.get("path")
        touched = name in ("read_file", "write_file", "patch_file") and result.ok
        if touched and isinstance(path, str) and len(path) <= MEMORY_PATH_CHARS:
            memory["files"] = [f for f in memory["files"] if f != path][-(MAX_FILES - 1):] + [path]
        self.add_note(f"{name}: {one_line(result.for_model())}")

    def add_note(self, note):
        """Keep the newest MAX_NOTES notes."""
        memory = self.session["memory"]
        memory["notes"] = (memory["notes"] + [note])[-MAX_NOTES:]

    def tell_workspace_changes(self, fresh):
        """On resume: tell the model once what changed in the repository since the session ran.

        The prompt's prefix keeps the snapshot the session began with, byte for
        byte, so the server's cache still holds it; the news goes at the end.
        """
        seen = self.session.get("workspace_seen", self.session["workspace"])
        lines = fresh.news_since(seen)
        self.session["workspace_seen"] = {key: getattr(fresh, key)
                                          for key in ("branch", "status", "recent_commits")}
        if lines:
            news = "\n".join(["[the repository changed since this session last ran]", *lines])
            self.record({"role": "user", "content": news})

    def reset(self):
        """Forget the transcript and memory of this session (the undo list stays)."""
        self.session["history"] = []
        self.session["memory"] = {"task": "", "files": [], "notes": []}
        self.session["compactions"] = []
        self.rebuild_transcript()
        self.session_store.save(self.session)

    def write_undoably(self, path, data, tool):
        """Write a file, first keeping what it held so that /undo can put it back."""
        old = read_limited(path) if path.exists() else None
        copy = None if old is None else self.session_store.keep_copy(self.session["id"], old)
        write_atomic(path, data)
        self.session["undo"].append({"path": self.relative(path), "tool": tool, "copy": copy,
                                     "sha256": sha256(data), "created_at": now()})

    def undo(self):
        """Undo the agent's last file change, if the file is still as the agent left it."""
        if not self.session["undo"]:
            return "Nothing to undo."
        change = self.session["undo"][-1]
        what = f"the {change['tool']} of {change['path']}"
        try:
            message = self.revert(change)
        except (OSError, ValueError) as exc:   # the session may be planted, the file gone or moved
            return f"Cannot undo {what}: {exc}."
        self.session["undo"].pop()
        self.record({"role": "user", "content": f"/undo: Undid {what}: {message}"})
        return f"Undid {what}: {message}"

    def revert(self, change):
        """Put back what a file held before one change; raise if it changed since, or cannot be."""
        path = self.writable(change["path"])   # checked as a tool's: the session is not trusted
        if not path.is_file() or sha256(read_limited(path)) != change["sha256"]:
            raise ValueError("the file changed on disk after the agent wrote it")
        if change["copy"] is None:
            path.unlink()
            return "removed the file, which did not exist before."
        write_atomic(path, self.session_store.copy(self.session["id"], change["copy"]))
        return "restored its earlier content."


# ---------------------------------------------------------------------------
# 6. Delegation: a bounded, read-only helper agent for side investigations
# ---------------------------------------------------------------------------

HELPER_RULES = """Helper's task:
- The transcript above is the main agent's work so far.
- It asked you, a read-only helper, for the task below.
- Use only {tools}; other tools are refused. At most {steps} tool calls.
- Then answer with <final>what you found</final>, which the main agent will read.
- Your own steps follow."""
MIN_HELPER_CHARS = 3 * ITEM_CHARS   # room a helper needs for a few steps of its own


class Delegation:
    """Component 6: hand a sub-task to a child agent that can look but not touch.

    The child's prompt is the parent's prompt as it stands (prefix and
    transcript, or chat turns), then the helper's rules and task, then the
    child's own steps.  So the server's cache, which holds the parent's last
    prompt, serves the child's first call; and when the child returns, the
    parent's next prompt shares all of its own transcript with the child's last.
    """

    def tool_delegate(self, args):
        """Run a read-only child agent on a sub-task and return its answer."""
        if self.depth >= self.max_depth:
            raise ValueError("delegation depth limit reached")
        safe_tools = [name for name, (risky, *_) in TOOL_INFO.items()
                      if not risky and name != "delegate"]
        rules = HELPER_RULES.format(tools=", ".join(safe_tools), steps=args["max_steps"])
        prefix = f"{self.prefix}\n\nTranscript:\n{self.history_text()}\n\n{rules}"
        if self.prompt_budget - len(prefix) < MIN_HELPER_CHARS:
            raise ValueError("too little of the context window is left for a helper; do this "
                             "step yourself")
        child = type(self)(
            self.model_client, self.workspace, self.session_store.children(),
            approval_policy="never", read_only=True, max_steps=args["max_steps"],
            max_new_tokens=self.max_new_tokens, depth=self.depth + 1, max_depth=self.max_depth,
            num_ctx=self.num_ctx, display=self.display, prefix=prefix,
            lead_turns=[*self.turns(), {"role": "user", "content": rules}],
            small_model_help=self.help is not None,
        )
        child.session["memory"]["task"] = args["task"]
        answer = child.ask(args["task"])
        return (f"delegate_result:\n{answer}\n(the helper can only read: it changed no file; "
                "make the changes yourself)")


class MiniAgent(AgentLoop, PromptShape, ToolUse, ContextReduction, SessionMemory, Delegation):
    """A coding agent: the loop (AgentLoop) and the six components, in one object."""


# ===========================================================================
# Small-model help: a layer over the components, on unless small_model_help=False
# ===========================================================================
# Everything above is the plain mechanism, enough for a model that follows the
# protocol.  Small local models (1.5 billion parameters on a laptop) do not:
# they write the dialect they were trained on, and they stop at the first step
# that looks like progress.  This layer reads what they write (read_dialects,
# entered from ToolUse.parse) and tells them what they need to hear (the coach,
# SmallModelHelp, asked by the loop).  tests/BENCHMARKS.md measures each part.

# ---------------------------------------------------------------------------
# What small models write: other tags, other names, sloppy JSON, thinking
# ---------------------------------------------------------------------------

CALL_OPENING = re.compile(r"<tool(?=[\s>])|<tool_call>|<function=([\w.-]+)>")   # ours; Qwen; Llama
THINKING = (("<think>", "</think>"), ("<thinking>", "</thinking>"))
NAME_KEYS = ("name", "tool", "function")                   # where a payload names its tool
ARGS_KEYS = ("args", "arguments", "parameters", "input")   # ... and where it keeps the arguments
TOOL_ALIASES = {      # names other agents give our tools, which models trained on them write
    "bash": "run_shell", "shell": "run_shell", "shell_command": "run_shell",
    "run_command": "run_shell", "execute": "run_shell", "edit_file": "patch_file",
    "str_replace": "patch_file", "replace_in_file": "patch_file", "create_file": "write_file",
    "cat": "read_file", "view": "read_file", "open_file": "read_file", "ls": "list_files",
    "list_dir": "list_files", "list_directory": "list_files", "grep": "search", "rg": "search",
    "find_in_files": "search",
}
ARG_ALIASES = {       # ... and their argument names; renamed only where the tool has ours
    "cmd": "command", "file_path": "path", "filename": "path", "file": "path",
    "old_str": "old_text", "old": "old_text", "new_str": "new_text", "new": "new_text",
    "text": "content", "contents": "content", "query": "pattern", "regex": "pattern",
}
ANY_FIELD = re.compile(r"<(" + "|".join((*XML_FIELDS, *ARG_ALIASES)) + r")>")
PARAMETER = re.compile(r"<parameter=([\w.-]+)>")   # Qwen3-Coder: <parameter=path>a.py</parameter>
FENCE = re.compile(r"```[\w-]*\s*(.*?)\s*```\s*$", re.DOTALL)
NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
WORD = re.compile(r"[A-Za-z_]\w*")
LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
KEY_END = re.compile(r"\s*[:=]")   # what may follow a key's closing quote; after a value's:
VALUE_END = re.compile(r"\s*(?:[}\]]|$|,\s*(?:[}\]]|$"   # the end, or a comma and then
                       r"""|["']?[\w-]+["']?\s*[:=]"""    # the next key,
                       r"""|["'][^"'\n]*["']\s*[,\]]))""")   # or a list's next string
STRING_RUNS = {'"': re.compile(r'[^"\\]+'), "'": re.compile(r"[^'\\]+")}
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "/": "/", "\\": "\\",
           '"': '"', "'": "'"}
ANSWER_KEYS = {   # where small models put an answer they write as JSON: {"result": "Done."}
    "result", "answer", "final", "response", "message", "output", "error", "summary"}
MAX_LENIENT_CHARS = 100_000   # sloppy JSON longer than this is not read (the reader is slow)
MAX_JSON_DEPTH = 64      # deeper sloppy JSON is surely not a tool call


def read_dialects(raw):
    """Read a reply in the dialects small models write: ("tool", call), ("final", text), ("retry",
    notice).  The rules, in order:
      1. Thinking (<think>...</think>, or all before a lone </think>) is never read.
      2. Whichever comes first wins: a call's opening tag (ours, <tool_call>, <function=NAME>), or
         <final>; a call quoted inside an answer is not run.
      3. A call without tags (bare JSON, perhaps in a ``` fence) counts only if it ends the reply
         and names a known tool, so JSON shown in an answer is not run.
      4. Names other agents use become ours; the call's `note` says what the model wrote.
    """
    text = without_thinking(raw)
    if not text.strip() and raw.strip():
        return "retry", retry_notice("the reply held only thinking, and no call or answer yet")
    opening, final_at = CALL_OPENING.search(text), text.find("<final>")
    if opening and (final_at == -1 or opening.start() < final_at):
        call, end = tagged_call(text, opening)
    else:
        call, end = (untagged_call(text) if final_at == -1 else None), len(text)
        if call is None:
            return json_answer(*read_reply(text))   # an answer, or nothing usable
    if isinstance(call, str):
        return "retry", retry_notice(call)
    call = canonical_call(call)
    if CALL_OPENING.search(text, end):
        call["rest"] = text[end:]
    return "tool", call


def json_answer(kind, payload):
    """An answer written as JSON of one string under a name like "result" is that string."""
    if kind != "final" or not payload.startswith("{") or len(payload) > MAX_LENIENT_CHARS:
        return kind, payload
    try:
        found = json.loads(payload)
    except (ValueError, RecursionError):   # not JSON, or nested deep as no answer is
        return kind, payload
    if isinstance(found, dict) and len(found) == 1 and set(found) <= ANSWER_KEYS \
            and isinstance(answer := next(iter(found.values())), str) and answer.strip():
        return kind, answer.strip()
    return kind, payload


def without_thinking(raw):
    """The reply without the model's thinking, which is never read for calls or answers.

    Thinking opens the reply (`<think>...</think>`, or `<thinking>`), or, where
    the chat template opened the block itself, ends at a lone `</think>`; a
    `</think>` inside a call's own text (a file being written) is just text.
    """
    text = raw.lstrip()
    for opening, closing in THINKING:
        if text.startswith(opening):
            end = text.find(closing)
            return "" if end == -1 else text[end + len(closing):]   # never closed: no answer yet
        end = text.find(closing)
        call = CALL_OPENING.search(text, 0, max(end, 0))
        if end != -1 and (call is None or (tagged_call(text, call)[1] or len(text)) <= end):
            return text[end + len(closing):]
    return raw


def tagged_call(text, opening):
    """Read the call whose opening tag matched: (call or what is wrong, where the call ends)."""
    if opening.group(1):   # <function=NAME>
        return function_call(text, opening.end(), opening.group(1))
    if opening.group() == "<tool_call>":
        return json_call(text, opening.end(), "</tool_call>")
    tag_end = text.find(">", opening.start())
    if tag_end == -1 or tag_end - opening.start() > MAX_TAG_CHARS:
        return "the <tool> tag is not closed with '>'", None
    attributes = text[opening.end():tag_end]
    named = dict((key, double or single) for key, double, single in ATTRIBUTE.findall(attributes))
    if "name" in named:   # the XML form, perhaps with another tool's name or field names
        tool = canonical_call({"name": named["name"], "args": {}})["name"]
        return xml_call(text, tag_end + 1, attributes, tool, ARG_ALIASES)
    return json_call(text, tag_end + 1, "</tool>")


def json_call(text, at, closing, name=None):
    """A call whose payload is JSON at text[at] (perhaps in a ``` fence, perhaps sloppy), closed by
    `closing`; (call, end)."""
    at = SPACE.match(text, at).end()
    fence = re.match(r"```[\w-]*", text[at:])
    at += fence.end() if fence else 0
    inner = CALL_OPENING.match(text, SPACE.match(text, at).end())
    if name is None and inner and inner.group(1):   # <tool_call><function=NAME>...</function>
        call, end = function_call(text, inner.end(), inner.group(1))
    else:
        try:
            payload, end = loads_at(text, at)
        except ValueError:
            return ("the tool call was not valid JSON (for code, the XML form takes text as it "
                    'is: <tool name="patch_file" path="PATH"><old_text>...</old_text><new_text>'
                    "...</new_text></tool>)"), None
        call = payload_call(payload, name)
    if end is not None:
        end = SPACE.match(text, end).end()
        end += 3 if fence and text.startswith("```", end) else 0
        end = SPACE.match(text, end).end()
        end += len(closing) if text.startswith(closing, end) else 0
    return call, end


def function_call(text, at, name):
    """`<function=NAME>` with JSON arguments or `<parameter=ARG>value</parameter>` fields."""
    if text[SPACE.match(text, at).end():].startswith("{"):
        return json_call(text, at, "</function>", name)
    fields, end = fields_until(text, at, PARAMETER, closing="</function>",
                               field_closing="</parameter>")
    if fields is None:
        return f"the <parameter=...> fields of <function={name}> could not be read", None
    args = {key: value.removeprefix("\n").removesuffix("\n") for key, value in fields.items()}
    return {"name": name, "args": args}, end


def untagged_call(text):
    """A call without tags, as bare JSON or in a ``` fence, that ends the reply; or None."""
    body = text.rstrip()
    fenced = FENCE.search(body)
    if fenced:
        body = fenced.group(1)
    starts = [match.end() - 1 for match in re.finditer(r"^[ \t]*\{", body, re.MULTILINE)]
    for start in starts[:MAX_CANDIDATES]:   # each { that begins a line
        try:
            payload, end = loads_at(body, start)
        except ValueError:
            continue
        call = payload_call(payload)
        known = isinstance(call, dict) and canonical_call(call)["name"] in TOOL_ARGS
        if known and not body[end:].strip():
            return call
    return None


def payload_call(payload, name=None):
    """A call {"name", "args"} from a decoded payload in any shape models use, or what is wrong."""
    if not isinstance(payload, dict):
        return "the tool payload must be a JSON object"
    if name is not None:   # <function=NAME>{args}</function>
        args = payload
    else:
        if isinstance(payload.get("function"), dict):   # OpenAI's {"function": {"name", ...}}
            payload = payload["function"]
        name = next((payload[key] for key in NAME_KEYS if key in payload), None)
        args_key = next((key for key in ARGS_KEYS if key in payload), None)
        flat = {key: value for key, value in payload.items() if key not in (*NAME_KEYS, "type")}
        args = payload[args_key] if args_key else flat
    if isinstance(args, str):   # arguments sent as a JSON string
        try:
            args = loads_at(args, 0)[0]
        except ValueError:
            pass
    if not isinstance(name, str) or not name.strip():
        return "the tool call has no name"
    if not isinstance(args, dict):
        return "the tool args must be a JSON object"
    return {"name": name.strip(), "args": args}


def canonical_call(call):
    """The call with our names for the tool and its arguments, noting what the model wrote."""
    name, args, renamed = call["name"], dict(call["args"]), []
    key = name.lower().replace("-", "_")
    tool = key if key in TOOL_ARGS else TOOL_ALIASES.get(key, name)
    if tool != name:
        renamed.append(name)
    for arg in list(args):
        ours = ARG_ALIASES.get(arg)
        takes = TOOL_ARGS.get(tool, {})
        if arg not in takes and ours in takes and ours not in args:
            args[ours] = args.pop(arg)
            renamed.append(arg)
    note = {"note": f"you wrote {', '.join(renamed)}"} if renamed else {}
    return {"name": tool, "args": args, **note}


def loads_at(text, at):
    """Read the JSON value that starts at text[at] (after spaces); returns (value, where it ends).

    Strict JSON goes to the json module.  What small models write instead
    ('single quotes', True and None, trailing commas, raw newlines in strings)
    goes to a small reader of its own.  Nothing is ever evaluated.
    """
    at = SPACE.match(text, at).end()
    try:
        return JSON.raw_decode(text, at)
    except (ValueError, RecursionError):
        if len(text) - at > MAX_LENIENT_CHARS:
            raise ValueError("too long to read leniently") from None
        return lenient_value(text, at, 0)


def lenient_value(text, at, depth):
    """One value of sloppy JSON at text[at]; returns (value, end) or raises ValueError."""
    at = SPACE.match(text, at).end()
    char = text[at:at + 1]
    if depth > MAX_JSON_DEPTH:
        raise ValueError("nested too deeply")
    if char in ("{", "["):
        return lenient_container(text, at, depth)
    if char in STRING_RUNS:
        return lenient_string(text, at)
    match = NUMBER.match(text, at) or WORD.match(text, at)
    if match is None or match.group() not in LITERALS and not NUMBER.fullmatch(match.group()):
        raise ValueError(f"unexpected text at {at}")
    word = match.group()
    if word in LITERALS:
        return LITERALS[word], match.end()
    return (float(word) if any(c in word for c in ".eE") else int(word)), match.end()


def lenient_container(text, at, depth):
    """An object or list of sloppy JSON at text[at]; trailing commas and bare keys are fine."""
    closing = "}" if text[at] == "{" else "]"
    items, at = ({} if closing == "}" else []), at + 1
    while True:
        at = SPACE.match(text, at).end()
        if text[at:at + 1] == closing:
            return items, at + 1
        if closing == "}":
            bare = WORD.match(text, at)   # a bare key: path="a.py", as in Python or XML
            if bare:
                key, at = bare.group(), bare.end()
            elif text[at:at + 1] in STRING_RUNS:
                key, at = lenient_string(text, at, KEY_END)
            else:
                raise ValueError(f"expected a key at {at}")
            at = SPACE.match(text, at).end()
            if text[at:at + 1] not in (":", "="):
                raise ValueError(f"expected ':' at {at}")
            items[key], at = lenient_value(text, at + 1, depth + 1)
        else:
            value, at = lenient_value(text, at, depth + 1)
            items.append(value)
        at = SPACE.match(text, at).end()
        if text[at:at + 1] == ",":
            at += 1
        elif text[at:at + 1] != closing:
            raise ValueError(f"expected ',' or {closing!r} at {at}")


def lenient_string(text, at, end=VALUE_END):
    """A string in single or double quotes, raw newlines allowed; returns (string, end).

    A quote that is not followed by what may come after the string (`end`: a
    key's `:`; after a value, the next key, `}` `]` or the end) is taken as
    part of it: models leave the quotes of code unescaped, as in
    "return f"{name}!"" or "x, y = text.split(",")".  When such double quotes
    are left unpaired, the last one also closed the code's string: "f"{name}!"}.
    """
    quote, parts, at, inner = text[at], [], at + 1, 0
    while at < len(text):
        run = STRING_RUNS[quote].match(text, at)
        if run:
            parts.append(run.group())
            at = run.end()
        elif text[at] == quote and end.match(text, at + 1):
            unpaired = quote == '"' and inner % 2 == 1
            return "".join(parts) + (quote if unpaired else ""), at + 1
        elif text[at] == quote:
            parts.append(quote)
            at, inner = at + 1, inner + 1
        elif text[at + 1:at + 2] == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[at + 2:at + 6]):
            parts.append(chr(int(text[at + 2:at + 6], 16)))
            at += 6
        else:   # a backslash: a known escape, or kept as written ('\d' in a regex)
            code = text[at + 1:at + 2]
            parts.append(ESCAPES.get(code, "\\" + code))
            at += 2
    raise ValueError("a string is not closed")


# ---------------------------------------------------------------------------
# What small models need to be told: the coach, asked by the loop
# ---------------------------------------------------------------------------

MAX_NAMED_FILES = 3      # files a request names that are read before the model starts
# A test run a request names ("the tests fail (python -m unittest)"), run before the model starts:
# in backquotes, as written; else the runner with its flags and paths, never the request's own
# words after it; never ; | $ or quotes.
TEST_RUNNER = (r"(?:python3?\s+-m\s+(?:unittest|pytest)|pytest|npm\s+test|go\s+test|cargo\s+test"
               r"|make\s+test)")
TEST_COMMAND = re.compile(
    rf"`({TEST_RUNNER}[\w ./:=-]*)`"
    rf"|(?<![\w./-])({TEST_RUNNER}(?:[ \t]+(?:--?[\w-]+(?:=[\w./:-]+)?|[\w-]*[./][\w./:-]*))*)")
NEGATION = re.compile(r"\b(?:don't|do not|never|without|no|skip)\b[^.]{0,20}$", re.I)   # before it
HINT_LINES = 5000        # lines of a file searched for the nearest match to a patch that missed
HINT_LINE_CHARS = 200    # ... comparing only this much of each line
ANALYSIS_SECONDS = 1.0   # ... and for no longer than this, whatever the file holds
REPEAT_CHARS = 300       # the longest repeat of the text around a patch that is taken off
SYNTAX_CHECK_CHARS = 300_000   # a larger Python file is not checked (compiling takes ~0.1 s)
MAX_CHECKED_SCOPES = 1000   # more definitions: names are not checked (symtable is quadratic)
MAX_STALE_NAMES = 5      # names shown that an edit took away while other files still use them
MAX_STALE_USES = 8       # ... and lines shown for each: a rename's imports and calls
DEFINED_NAME = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)", re.MULTILINE)   # a module's own
CUT_MARK = re.compile(r"\.\.\.\[truncated \d+ chars\]\.\.\.")   # as clip() writes it
ANY_DEFINITION = re.compile(r"^[ \t]*(?:async\s+def|def|class)\s+(\w+)", re.M)   # and methods
LEADING_SPACE = re.compile(r"[ \t]*")
LINE_NUMBER = re.compile(r"^[ \t]*\d+:(?: |$)", re.M)   # as read_file shows a line: "  17: "
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
DOTTED_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")   # logger.warn, os.path
CHECK_REQUEST = (   # sent once per request: small models say "done" untested
    "[check] You changed {files} and have run nothing since. Check the change with run_shell (run "
    "the tests, or run the program the way the request would use it) and fix what fails; then "
    "give your final answer.")
CODE_BLOCK = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)
CREATE_VERB = re.compile(r"\b(?:write|create|add|make|generate|save|put)\b", re.IGNORECASE)
FILE_SUFFIXES = SOURCE_SUFFIXES + (".md", ".txt", ".json", ".toml", ".ini", ".cfg", ".yaml",
                                   ".yml", ".csv", ".html", ".css")   # a file's; utcnow is not
COPIED_REQUEST = (   # sent once per request: the answer to the request before, word for word
    "[check] That is your answer to an earlier request. Work on this one now: {request}")
COPIED_AFTER_EDITS = (   # the same, once this request changed files
    "[check] That answer was for an earlier request. This one ({request}) changed {files}: reply "
    "with <final>, saying what was changed for it, and no tool call.")
MAX_DRAFTS = 2           # files a request names that are drafted, one after the other
ADDS_TEST = re.compile(   # "... and a test for it in test_x.py"; not "test_x.py fails. Fix x.py."
    r"\b(?:a|new|more|another) (?:unit )?tests?\b|\btests? for\b", re.I)
REWRITE_MAX_CHARS = 2000   # ~50 lines: copying a 4,000-char file whole, the 1.5B model changed
                           # a line it was not asked to (and took 2 minutes on a CPU)
CHANGE_WORDS = (r"(?:add|make|fix|change|implement|rename|replace|remove|update|bump|set|raise"
                r"|refactor|extract|convert|handle|validate|sort|use|edit|rewrite|move|support)")
CHANGE_VERB = re.compile(rf"\b(?:{CHANGE_WORDS}|give)\b", re.I)   # "give Cart a total() method"
QUESTION = re.compile(r"\?|^\s*(?:what|which|where|when|why|how|who|is|are|does|do|can|could"
                      r"|should|would|explain|describe|show|list|tell|summari[sz]e|find)\b",
                      re.IGNORECASE)   # a request that asks, not one that orders a change
# A question may still order a change: "Could you add ...?", "Why? Fix it.", "Find the bug and
# fix it"; but in "Does it read them and sort them?" the "and sort" is part of the question.
ORDER_IN_QUESTION = re.compile(
    rf"(?:[.?!;]|\b(?:can|could|would|will) you|^\s*(?:find|look|explain|show|list|describe|tell)"
    rf"\b.*?\b(?:and|then))\s+(?:then\s+|please\s+)?{CHANGE_WORDS}\b", re.I)
REWRITE_SYSTEM = ("You rewrite one file so that it does what a request asks, and change nothing "
                  "else.")
REWRITE_REQUEST = (
    "Request: {request}\n\nThe file {path} now:\n```\n{text}```\n\nWrite the whole new {path}, "
    "done as the request asks. Reply with the file only, in one ``` block.")
REWRITE_PART_REQUEST = (   # a longer Python file: the one definition the request names in it
    "Request: {request}\n\nThe {kind} {name} in {path} now:\n```\n{text}```\n\nWrite the whole "
    "new {kind} {name}, done as the request asks. Reply with its code only, in one ``` block.")
DRAFTED = (   # after the coach's draft; a model that copies its first line still answers well
    "[check] Changed {path} as the request asks.\n{change}\nCheck it with "
    "run_shell (run the tests, or run the program the way the request would use it) and fix "
    "what fails; then give your final answer.")
CODE_NAME = re.compile(   # a word written as code: called (`area()`), to_celsius, UserRecord
    r"\b[A-Za-z_]\w*(?=\()|\b[A-Za-z]\w*(?:_|[a-z][A-Z])\w*")
NO_TESTS = re.compile(r"\bno tests ran\b|^Ran 0 tests\b", re.M)   # pytest; unittest
NO_TESTS_RAN = ("no tests ran: none were found where the command looked, which is neither a test "
                "that fails nor one that passes")
UNKNOWN_OPTION = re.compile(   # "PROGRAM: ...": argparse and pytest; GNU tools
    r"^(\S.*?): (?:error: unrecognized arguments: (\S+)|unrecognized option '([^']+)')", re.M)
OPTION_RAN_NOTHING = ("the command stopped at {option}, an option it does not know here (a "
                      "plugin or version this machine lacks), so nothing was run: run it again "
                      "without {option}")
STALE_REQUEST = (   # again while fewer are left: a rename stops at its first patch
    "[check] Not done yet: {warnings}\nChange those lines with patch_file, then give your final "
    "answer.")


def orders_change(request):
    """Does a request order a change, rather than ask a question?"""
    asks = QUESTION.search(request) and not ORDER_IN_QUESTION.search(request)
    return bool(CHANGE_VERB.search(request)) and not asks


def file_words(request):
    """The words of a request that are file names or paths (`stack.py`, `./src/a.py`)."""
    for word in re.split(r"[\s,;:()\[\]{}<>'\"`]+", request):   # a split: linear on a paste
        word = word.rstrip(".?!").removeprefix("./")
        if re.fullmatch(r"[\w./-]+\.[A-Za-z]\w*", word):   # not 0.0 or 1.3.0
            yield word


def named_files(request, names):
    """The files among `names` that a request names, by path or by a file name only one has."""
    paths, by_file_name = set(names), {}
    for name in names:
        by_file_name.setdefault(name.rsplit("/", 1)[-1], []).append(name)
    found = []
    for word in file_words(request):
        matches = [word] if word in paths else by_file_name.get(word, [])
        if len(matches) == 1 and matches[0] not in found:
            found.append(matches[0])
    return found[:MAX_NAMED_FILES]


def unanswered(history):
    """The requests a person said no to just before this one, oldest first: after a no, a
    person says what to do instead, and means the request they said no to as well."""
    asked = []
    while history and history[-1]["content"] == SAID_NO:
        request = history[-1].get("request")
        starts = [i for i, item in enumerate(history) if item["content"] == request]
        if not starts:
            break
        asked.insert(0, request)
        history = history[:starts[-1]]
    return asked


class SmallModelHelp:
    """The coach: the loop asks it before a request, around each tool call, and at each answer."""

    def __init__(self, agent):
        self.agent = agent
        self.taken_away = {}   # (file, name) -> its new name, or None: definitions edits took away
        self.before = {}       # path -> the text of the file the running edit changes, before it
        self.unchecked = []    # code files this request changed since its last command
        self.sent_back = {}    # kind -> how much was left wrong when an answer was last sent back
        self.request = ""      # the request being worked on
        self.old_answers = set()   # what the model answered the requests before this one
        self.edits_before = 0      # how many file changes the session held before this request
        self.offered = set()   # (path, what) of the edits the coach made or was denied
        self.ambiguous = set()   # (path, old_text, new_text): patches that missed, found twice+
        self.said_no = False   # a person said no to an edit the coach made, this request

    def start(self, request):
        """Before a request: read the files it names (or the one that defines the functions it
        names), and run the tests it names, as a person would attach them and their output, so
        that the model edits the right file, for the failure there is, instead of guessing; a
        change it orders to one or two files, draft whole.  True if a person said no to one."""
        history = self.agent.session["history"][:-1]   # all but this request
        self.request = "\n".join(dict.fromkeys([*unanswered(history), request]))
        self.unchecked, self.sent_back, self.offered = [], {}, set()
        self.ambiguous, self.said_no = set(), False
        self.edits_before = len(self.agent.session["undo"])
        self.old_answers = {item["content"].strip() for item in history
                            if item["role"] == "assistant"}
        if any(item["role"] == "user" and item["content"] == request for item in history):
            self.old_answers = set()   # the same question again may get the same answer
        named = named_files(self.request, repo_files(self.agent.git))
        found = named or self.defining_file(self.request)
        calls = [("read_file", {"path": path}) for path in found]
        may_act = self.agent.approval_policy != "never" and not self.agent.read_only
        command = TEST_COMMAND.search(self.request)
        if command and may_act and not NEGATION.search(self.request[:command.start()]):
            calls.append(("run_shell", {"command": command[1] or command[2]}))
        for name, args in calls:
            if not self.agent.repeats_last_two(name, args):   # else it is refused
                if self.agent.run_call({"name": name, "args": args}).denied:
                    return True
        # A test file found by a test's name is drafted only to add a test: "test_x fails; fix
        # it" orders no change to the test.
        if may_act and orders_change(self.request):
            self.draft_change(named or [path for path in found if self.worth_drafting(path)])
        return self.said_no

    def defining_file(self, request):
        """[The one file that defines the names a request writes as code (`to_celsius`,
        `UserRecord`, a method): a source file, else a test], or []: people name a function, not
        the file it is in."""
        names = set(CODE_NAME.findall(request))
        if not names:
            return []
        homes = [path for path, text in self.other_files("", SOURCE_SUFFIXES)
                 if names & set(ANY_DEFINITION.findall(text))]
        homes = [path for path in homes if "test" not in path] or homes
        return homes if len(homes) == 1 else []

    def before_tool(self, call):
        """Mend a call before it runs, or refuse it with a ToolResult (see mend_edit)."""
        args = call["args"]
        if self.agent.repeats_last_two(call["name"], args):   # refused as a repeat, as it is
            return None
        for key in ("content", "new_text"):   # `<final>text</final>` as the file's text
            found = answer_removed(args[key].strip()) if isinstance(args.get(key), str) else None
            if found is not None:
                args[key] = found
                annotate(call, f"the <final> answer in {key} was dropped: it is not part of "
                               "a file")
        edit = call["name"] in ("write_file", "patch_file")
        if edit and all(isinstance(args.get(key), str) for key in TOOL_ARGS[call["name"]]):
            return self.mend_edit(call)
        return None

    def mend_edit(self, call):
        """Keep the text an edit will change, for after_tool; refuse an edit that copied a
        shortened call, a patch that changes nothing or would break a Python file that compiles;
        mend its file, a repeat of the text around it, a definition it would lose, the markup
        around a new file."""
        args = call["args"]
        text = self.file_text(args["path"])
        if cut := copied_cut(args, text):
            return refusal(cut, call["name"])
        if call["name"] == "write_file":
            self.before[args["path"]] = text
            unwrap_code(call)
            drop_line_numbers(call, text)
            add_written_definitions(call, text, self.request)
            return None
        drop_line_numbers(call, text)
        if self.mend_path(call, text):
            text = self.file_text(args["path"])
        self.before[args["path"]] = text
        if text is None:
            return None
        if args["old_text"] == args["new_text"]:   # small models copy a line, then say "done"
            return refusal("new_text is the same as old_text, so the file would not change")
        again = args["old_text"] in args["new_text"] or ANY_DEFINITION.search(args["new_text"])
        if again and args["old_text"] in text and args["new_text"].strip() in text:   # made
            line = line_of(text, args["new_text"].strip())   # again: its lines twice
            return refusal(f"its new_text is already there (line {line}): that change is made")
        drop_repeats(call, text)
        add_definition(call, text, self.request)
        if (args["path"], args["old_text"], args["new_text"]) in self.ambiguous:
            change_every_one(call, text)
        try:
            after = patched(text, args["old_text"], args["new_text"], args["path"])
        except ValueError:
            return None   # the tool says so, and after_edit says where to look
        if keep_definition(call, text, self.request):
            return None
        broken = syntax_error_added(args["path"], text, after)
        if broken:
            return refusal(f"the patch would break {args['path']}, so it was not made: {broken}")
        return None

    def mend_path(self, call, text):
        """Send a patch to the one file that holds its old_text once, when the file it names
        (whose text is `text`) does not: in that file's folder, or anywhere if the file does not
        exist; never to a test the model did not name; True if it did.  Small models patch a
        package's __init__.py, or write a path without its folder."""
        args = call["args"]
        old_text = args["old_text"]
        if not old_text.strip() or (text is not None and old_text in text):
            return False
        try:
            name = self.agent.relative(self.agent.path(args["path"]))
        except ValueError:
            return False
        folder, root = Path(name).parent, self.agent.root
        near = [path for path in repo_files(self.agent.git)[:MAP_FILES] if path != name
                and "test" not in path and (text is None or Path(path).parent == folder)]
        holders = [path for path in near
                   if (read_doc(root / path, root, MAP_READ_CHARS) or "").count(old_text) == 1]
        if len(holders) != 1:
            return False
        args["path"] = holders[0]
        annotate(call, f"old_text is not in {name}; {holders[0]} holds it, so it was patched")
        return True

    def after_tool(self, call, result):
        """Add to a result what the model needs to hear about an edit (see after_edit), or
        about a command's output (see command_note)."""
        if call["name"] == "run_shell":
            self.unchecked = []   # a command ran: edits before it were checked, or tried
            result.text += self.command_note(result.text)
        path = call["args"].get("path")
        if call["name"] in ("write_file", "patch_file") and isinstance(path, str):
            self.after_edit(call, result, self.before.pop(path, None) or "")
        result.denied = result.denied or self.said_no   # to the coach's edit: the request ends

    def command_note(self, output):
        """A note on what small models misread in a command's output, or "": no tests found is
        neither a failing test (they fix code that works) nor a pass (they answer "the tests
        pass"); an installed program's usage error at an option it lacks ran nothing (they answer
        "failed to run the tests", or rewrite a test).  The repository's own programs are left
        out: their missing option may be the work."""
        if re.match(r"exit_code: [05]\n", output) and NO_TESTS.search(output):   # 0: Python < 3.12
            return f"\nnote: {NO_TESTS_RAN}"
        unknown = UNKNOWN_OPTION.search(output.partition("\nstderr:\n")[2])
        if not unknown or not re.match(r"exit_code: [24]\n", output):   # 2 argparse, 4 pytest
            return ""
        own = {part for path in repo_files(self.agent.git)
               for part in (Path(path).name, Path(path).parts[0])}
        if Path(unknown[1].split()[-1]).name in own:   # "greet.py: error", "./tool: unrecognized"
            return ""
        return f"\nnote: {OPTION_RAN_NOTHING.format(option=unknown[2] or unknown[3])}"

    def after_edit(self, call, result, before):
        """Where a patch that missed should look; the edits an edit calls for (follow_up); what
        is still wrong (syntax, names never defined, stale uses of a name it took away)."""
        args = call["args"]
        text = self.file_text(args["path"])
        if text is None:
            return
        old_text = args.get("old_text") if call["name"] == "patch_file" else None
        readable = isinstance(old_text, str) and isinstance(args.get("new_text"), str)
        if not result.ok and readable and text.count(old_text) != 1:   # missed
            if old_text in text:   # more than once: sent again, it changes every one
                self.ambiguous.add((args["path"], old_text, args["new_text"]))
            elsewhere = "" if old_text in text else self.found_elsewhere(old_text, args["path"])
            result.text += elsewhere or patch_hint(text, old_text, args["new_text"])
        if not result.ok:
            return
        name = self.agent.relative(self.agent.path(args["path"]))
        if name.endswith(SOURCE_SUFFIXES) and name not in self.unchecked:
            self.unchecked.append(name)
        warnings, note = self.edit_warnings(name, before, text)
        followed = self.follow_up(name, before, text)
        if followed:   # the warnings it answers are gone: say what is left
            warnings, note = self.edit_warnings(name, before, self.file_text(name) or "")
            result.text += f"\nnote: changed to match: {followed}"
        result.warnings += warnings
        result.text += f"\nnote: {note}" if note else ""

    def follow_up(self, name, before, text):
        """Make the edits an edit plainly calls for, each approved as the model's own are: the
        import of a standard-library name it began to use, the uses of a definition it renamed
        or a call it replaced as the request asks (small models stop after the first place);
        what was done, or ""."""
        done = []
        if name.endswith(".py"):
            added = missing_imports(before, text)
            what = f"added {' and '.join(added)}" if added else ""
            done += self.coach_edit(name, with_imports(text, added), what)
        for (home, gone), new_name in list(self.taken_away.items()):
            if new_name and mentions(self.request, gone) and mentions(self.request, new_name):
                word = re.compile(rf"\b{gone}\b")
                for path in self.files_using(home, gone):
                    done += self.coach_edit(path, word.sub(new_name, self.file_text(path) or ""),
                                            f"renamed {gone} to {new_name}")
        swap = swapped_name(before, text) if name.endswith(SOURCE_SUFFIXES) else None
        if swap and all(mentions(self.request, part.rpartition(".")[2]) for part in swap):
            old, new = swap   # "replace the logger.warn calls with logger.warning"
            uses = re.compile(rf"(?<![\w.]){re.escape(old)}\b")
            files = repo_files(self.agent.git)
            paths = named_files(self.request, files) or [
                path for path in files[:MAP_FILES] if path.endswith(Path(name).suffix)]
            for path in paths:
                done += self.coach_edit(path, uses.sub(new, self.file_text(path) or ""),
                                        f"replaced {old} with {new}")
        return "; ".join(done)

    def files_using(self, home, name):
        """The Python files that still use a name taken out of `home`, home itself first."""
        sources = dict(self.other_files("", ".py"))
        uses = lines_using({name}, home, sources)[name]
        found = [home] if mentions(self.file_text(home) or "", name) else []
        return found + sorted({path for path, _, _ in uses})

    def coach_edit(self, path, content, what):
        """Write a file for the model, as a tool call it made would, shown and approved;
        ["PATH (WHAT)"] if it was written, else []."""
        text = self.file_text(path)
        if not what or (path, what) in self.offered or text is None or content == text \
                or syntax_error_added(path, text, content):
            return []
        self.offered.add((path, what))   # asked once: a user who said no is not asked again
        self.agent.display.notice(f"The coach changes {path}: {what}.")
        result = self.agent.use_tool("write_file", {"path": path, "content": content})
        self.said_no = self.said_no or result.denied
        if not result.ok:
            return []
        if path not in self.unchecked:
            self.unchecked.append(path)
        return [f"{path} ({what})"]

    def review_answer(self, answer, steps_left):
        """Why an answer goes back to the model, as (a notice for the user, a message for the
        model), or None.  An earlier request's answer given again goes back once; untested edits
        once (code the answer held for the new file the request names is written there first);
        stale uses while fewer are left."""
        if "```" in answer:   # code, perhaps for the file the request asks for
            self.write_answered_code(answer)
        if steps_left < 2:
            return None
        copied = answer.strip() in self.old_answers and len(answer.split()) >= 3
        if copied and "copied" not in self.sent_back:   # small models repeat their last turn
            self.sent_back["copied"] = 1
            return ("The model gave an earlier request's answer again: it is sent back.",
                    self.copied_request())
        stale = self.stale_uses() if self.taken_away else []
        left = sum(warning.count("\n") + 1 for warning in stale)
        if stale and left < self.sent_back.get("stale", float("inf")):
            self.sent_back["stale"] = left
            warnings = "\n".join(f"warning: {warning}" for warning in stale)
            return ("The model answered while other files still use a name it took away: its "
                    "answer is sent back.", STALE_REQUEST.format(warnings=warnings))
        if self.unchecked and "check" not in self.sent_back:
            self.sent_back["check"] = len(self.unchecked)
            files = ", ".join(self.unchecked)
            return (f"The model changed {files} and ran nothing since: its answer is sent back "
                    "for a check.", CHECK_REQUEST.format(files=files))
        return None

    def copied_request(self):
        """What to ask for instead of an earlier answer: the work, or, once this request changed
        files, an answer saying what was changed, at once (allowed a tool, the model read its
        edit again and copied again: tests/BENCHMARKS.md, round 17)."""
        request = one_line(self.request, ARGS_CHARS)
        edits = self.agent.session["undo"][self.edits_before:]
        files = ", ".join(dict.fromkeys(edit["path"] for edit in edits))
        if files:
            return COPIED_AFTER_EDITS.format(request=request, files=files)
        return COPIED_REQUEST.format(request=request)

    def draft_change(self, named):
        """Have the model rewrite each file the request names (the one, or up to two source
        files) whole.  Small models write a short file or function whole far better than a
        patch to it (tests/BENCHMARKS.md, rounds 12, 13 and 20)."""
        if len(named) > MAX_DRAFTS or self.new_files(FILE_SUFFIXES):   # a new file is the work
            return
        texts = {path: self.file_text(path) for path in named
                 if len(named) == 1 or self.worth_drafting(path)}
        drafted = list(texts)
        if len(drafted) == 2 and mentions(texts[drafted[0]] or "", Path(drafted[1]).stem):
            drafted.reverse()   # the file the other imports first, so that its draft can use it
        for path in drafted:
            if not self.draft(path, texts[path]):
                break   # not written, or a no: half a change is worse than none

    def worth_drafting(self, path):
        """Whether the coach drafts `path`, one of two files a request names or the file found by
        a name it writes as code: a source file, not the README a change follows, nor a test file
        unless the request adds a test to it."""
        adds_test = "test" not in Path(path).name or ADDS_TEST.search(self.request)
        return path.endswith(SOURCE_SUFFIXES) and bool(adds_test)

    def draft(self, path, text):
        """Ask the model for `path` (whose `text` it is) rewritten whole as the request asks (in
        a longer Python file, the one definition the request names there), write that as the
        coach's edit, and tell the model the change.  True if it was written."""
        if not text:   # unreadable, or empty
            return False
        text = text.rstrip("\n") + "\n"
        if len(text) <= REWRITE_MAX_CHARS:
            old, what = text, "it"
            request = REWRITE_REQUEST.format(request=self.request, path=path, text=text)
        else:
            old, kind, what = named_definition(path, text, self.request)
            request = REWRITE_PART_REQUEST.format(request=self.request, kind=kind, name=what,
                                                  path=path, text=old)
        new = self.rewritten(request, old) if old else ""
        if new.strip() in ("", old.strip()):
            return False
        new = new if old == text else with_part(text, old, new)
        if not new:
            return False
        change = ToolResult(True, self.agent.preview("write_file", {"path": path, "content": new}))
        if not self.coach_edit(path, new, f"the model rewrote {what} whole, as the request asks"):
            return False
        self.after_edit({"name": "write_file", "args": {"path": path}}, change, text)
        self.agent.record({"role": "user",   # with what the checks of an edit add to it
                           "content": DRAFTED.format(path=path, change=change.for_model())})
        return True

    def rewritten(self, request, old):
        """The code the model writes for a rewrite `request` of `old` in a short prompt of its
        own: the one block of code that keeps at least half of old's lines, else "".

        That has a price: a server that keeps one cache reads the session again
        at the next call.  But asked in the conversation, or under the loop's
        system message, the model drafts worse (tests/BENCHMARKS.md, round 16).
        """
        agent = self.agent
        prompt = [{"role": "system", "content": REWRITE_SYSTEM},
                  {"role": "user", "content": request}]
        prompt = prompt if getattr(agent.model_client, "chat", False) else flat_text(prompt)
        agent.display.model_started(1)   # as a helper's call: its text is not streamed
        try:
            reply = agent.model_client.complete(prompt, agent.max_new_tokens)
        except NoSuchEndpoint:   # the loop's own first call finds out and goes on
            return ""
        finally:
            agent.display.model_finished()
        agent.record_stats(prompt)
        # Not "# the rest as before", nor a second block that only shows how to call it:
        whole = [block for block in CODE_BLOCK.findall(reply) if kept_lines(old, block) >= 0.5]
        return whole[0] if len(whole) == 1 else ""

    def write_answered_code(self, answer):
        """Write the one block of code an answer holds into the one new file the request asks
        to write it in: small models answer "Unit tests in test_stack.py:" and the code."""
        if self.agent.approval_policy == "never" or self.agent.read_only:
            return   # nothing may be written
        blocks = CODE_BLOCK.findall(answer)
        new = self.new_files(SOURCE_SUFFIXES)
        asks = CREATE_VERB.search(self.request) and "?" not in self.request   # not "how would..?"
        if len(blocks) != 1 or len(new) != 1 or not asks or (new[0], "answer") in self.offered:
            return
        path, content = new[0], blocks[0].strip("\n") + "\n"
        self.offered.add((path, "answer"))   # asked once: a user who said no is not asked again
        call = {"name": "write_file", "args": {"path": path, "content": content}}
        annotate(call, f"your answer held the code for {path}, so it was written there")
        self.agent.run_call(call)

    def new_files(self, suffixes):
        """The files with these suffixes the request names that are not there yet, in the
        repository."""
        new = set()
        for word in file_words(self.request):
            try:
                if word.endswith(suffixes) and not self.agent.path(word).exists():
                    new.add(word)
            except ValueError:   # a path that escapes
                pass
        return sorted(new)

    def file_text(self, raw_path):
        """The text of a file of the repository now, as Python and the model read it (no
        byte-order mark, and LF in a CRLF file), or None if the agent cannot read it."""
        try:
            text = read_limited(self.agent.path(raw_path)).decode("utf-8").removeprefix("\ufeff")
        except (OSError, ValueError):   # also a path that escapes, or text that is not UTF-8
            return None
        return text.replace("\r\n", "\n") if all_crlf(text) else text

    def other_files(self, name, suffix=""):
        """(path, text) of the repository's files other than `name` ending in `suffix`."""
        for other in repo_files(self.agent.git)[:MAP_FILES]:
            if other != name and other.endswith(suffix):
                root = self.agent.root
                yield other, read_doc(root / other, root, MAP_READ_CHARS) or ""

    def found_elsewhere(self, old_text, name):
        """Which other files hold a patch's old_text, those in its folder first: "; it is in
        PATH (line N): patch that file"."""
        name = self.agent.relative(self.agent.path(name))   # small models patch the last file read
        found = [(Path(path).parent != Path(name).parent, path, line_of(text, old_text))
                 for path, text in self.other_files(name) if old_text.strip() and old_text in text]
        places = [f"{path} (line {line})" for _, path, line in sorted(found)]
        if len(places) < 2:
            return f"; it is in {places[0]}: patch that file" if places else ""
        more = " ..." if len(places) > 3 else ""
        return f"; it is in {', '.join(places[:3])}{more}: patch the one the request means"

    def edit_warnings(self, name, old_text, new_text):
        """What a Python file just written or patched got wrong: (warnings, a note on a check that
        was skipped, or "")."""
        if not name.endswith(".py"):
            return [], ""
        if max(len(old_text), len(new_text)) > SYNTAX_CHECK_CHARS:
            return [], f"{name} is over {SYNTAX_CHECK_CHARS:,} chars, too large to check"
        before, after = set(DEFINED_NAME.findall(old_text)), set(DEFINED_NAME.findall(new_text))
        one_for_one = len(before - after) == 1 == len(after - before)
        renamed = next(iter(after - before)) if one_for_one else None
        for gone in before - after:   # remembered until no other file uses it
            self.taken_away[(name, gone)] = renamed
        problem, note = python_problem(name, new_text)
        stale = self.stale_uses()   # it forgets the names no other file uses
        lost = set(ANY_DEFINITION.findall(old_text)) - set(ANY_DEFINITION.findall(new_text))
        unasked = sorted(gone for gone in lost if (name, gone) not in self.taken_away
                         and not mentions(self.request, gone))
        replaced = [f"the edit took {', '.join(unasked)} out of {name}, which the request does "
                    "not name: if it should stay, put it back"] if unasked else []
        return [problem] * bool(problem) + replaced + stale, note

    def stale_uses(self):
        """Warnings while a function or class taken out of a Python file is used by other files.

        A rename is the common case: a small model renames the definition,
        says "done", and leaves the imports and calls of the old name broken.
        The warning comes back after each later edit until no use is left.
        When one name went and one came, each line is shown as it should
        read, since small models copy text well and retype code badly.
        """
        if not self.taken_away:
            return []
        sources = dict(self.other_files("", ".py"))   # each file read once, for every name
        warnings = []
        for home in sorted({home for home, _ in self.taken_away}):
            gone = {name for place, name in self.taken_away if place == home}
            uses = lines_using(gone, home, sources)
            for name in sorted(gone):
                back = name in DEFINED_NAME.findall(sources.get(home, ""))
                if not uses[name] or back:   # every use changed, or the name is back
                    del self.taken_away[(home, name)]
                    continue
                new_name, word = self.taken_away[(home, name)], re.compile(rf"\b{name}\b")
                shown = [f"{path}:{number}: {line}"
                         + (f"  ->  {word.sub(new_name, line)}" if new_name else "")
                         for path, number, line in uses[name][:MAX_STALE_USES]]
                warnings.append(f"{home} no longer defines {name}, which these lines still use; "
                                "change them too:\n" + "\n".join(shown))
        return warnings[:MAX_STALE_NAMES]


def refusal(why, tool="patch_file"):
    """An edit the coach refuses, as the tool's own failure would read."""
    return ToolResult(False, f"error: tool {tool} failed: {why}")


def copied_cut(args, text):
    """Why an edit is refused, or '': it holds the mark the transcript leaves in a shortened call
    (small models copy their earlier call as shown), and the file's `text` does not."""
    for key in ("old_text", "new_text", "content"):
        mark = CUT_MARK.search(args.get(key, ""))
        if mark and mark.group() not in (text or ""):
            return (f"its {key} holds {mark.group()}, where the transcript shortened an earlier "
                    "call; that is not the file's text: write the text whole")
    return ""


def swapped_name(before, after):
    """The one dotted name (`logger.warn`) an edit put another in place of, as (old, new), or
    None; not a name that only grew (`args.name` -> `args.name.upper`)."""
    if max(len(before), len(after)) > SYNTAX_CHECK_CHARS:   # as the other checks of an edit
        return None
    was, now = Counter(DOTTED_NAME.findall(before)), Counter(DOTTED_NAME.findall(after))
    fewer, more = list(was - now), list(now - was)
    if len(fewer) != 1 or len(more) != 1:
        return None
    old, new = fewer[0], more[0]
    return None if new.startswith(old + ".") or old.startswith(new + ".") else (old, new)


def mentions(text, name):
    """Whether `text` (a request, a file) names `name` as a word, not inside a longer one."""
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def drop_line_numbers(call, text):
    """Take read_file's numbers off an edit that copied them with the lines it shows: old_text
    `  17:     with open(path) as f:` is the file's `    with open(path) as f:`, and a file
    written whole as read_file showed it, every line numbered and indented (below its heading,
    `# path`, if that was copied too), is its lines."""
    args = call["args"]
    keys = ["content"] if call["name"] == "write_file" else ["old_text", "new_text"]
    body = args[keys[0]]
    if call["name"] == "write_file":
        body = re.sub(r"\A# \S+\n", "", body)
    lines = [line for line in body.splitlines() if line.strip()]
    if call["name"] == "write_file" and not all(line[0] in " \t" for line in lines):
        return   # a file of its own may start its lines with "1: " (YAML)
    if not lines or args[keys[0]] in (text or "") \
            or not all(LINE_NUMBER.match(line) for line in lines):
        return
    args[keys[0]] = body
    for key in keys:
        args[key] = LINE_NUMBER.sub("", args[key])
    annotate(call, f"read_file's line numbers were taken off {' and '.join(keys)}")


def every_one(text, old_text, new_text):
    """(old_text, new_text) of one patch that changes every occurrence of old_text: the text from
    the first to the last; None if old_text is not there twice, or that text is not unique."""
    if not old_text.strip():
        return None
    if old_text in new_text and new_text in text:   # "warn" -> "warning", and some say it already
        return None
    span = text[text.find(old_text):text.rfind(old_text) + len(old_text)]
    if text.count(old_text) < 2 or text.count(span) != 1:
        return None
    return span, span.replace(old_text, new_text)


def change_every_one(call, text):
    """Make a patch sent again after it missed for occurring more than once change every
    occurrence, as its error offered."""
    args = call["args"]
    whole = every_one(text, args["old_text"], args["new_text"])
    if whole:
        count = text.count(args["old_text"])
        args["old_text"], args["new_text"] = whole
        annotate(call, f"old_text occurs {count} times and the patch came again, so every one "
                       "was changed")


def whole_lines(text, old_text):
    """(old_text widened to the start of its line, that line's indentation), or None if old_text
    starts after code on its line."""
    at = text.find(old_text)
    start = text.rfind("\n", 0, at) + 1
    if text[start:at].strip():
        return None
    return text[start:at + len(old_text)], LEADING_SPACE.match(text, start).group()


def indented(new_text, indent):
    """new_text with its first line at `indent` and the others kept under it."""
    lines = new_text.split("\n")
    first = LEADING_SPACE.match(lines[0]).group()
    return "\n".join(indent + (line[len(first):] if line.startswith(first) else line.lstrip())
                     if line.strip() else "" for line in lines)


def placed(new_text, line, indent, old_text):
    """new_text as it may start where old_text's line does (`line`, `indent`: whole_lines()):
    after what comes before old_text on that line, or indented as that line is."""
    return line[:len(line) - len(old_text)] + new_text, indented(new_text, indent)


def keep_definition(call, text, request):
    """Put a patch's new definition before the one its old_text starts, instead of in its place,
    when the request does not name the one replaced; True if it did.  Small models add a
    method by patching the line of the next one, and lose it."""
    args = call["args"]
    old_names, new_names = (ANY_DEFINITION.findall(args[key]) for key in ("old_text", "new_text"))
    lost = [name for name in old_names if name not in new_names and not mentions(request, name)]
    defined = set(ANY_DEFINITION.findall(text))
    added = [name for name in new_names if name not in defined]
    found = whole_lines(text, args["old_text"])
    longer = args["new_text"].strip().count("\n") > args["old_text"].strip().count("\n")
    if not (lost and added and longer and found and args["path"].endswith(".py")):
        return False   # a rename keeps its lines; a whole new body is the sign of an addition
    old_text, indent = found
    for new_text in placed(args["new_text"], old_text, indent, args["old_text"]):
        new_text = f"{new_text.rstrip()}\n\n{old_text}"
        if not syntax_error(args["path"], patched(text, old_text, new_text, args["path"])):
            args["old_text"], args["new_text"] = old_text, new_text
            annotate(call, f"{', '.join(lost)} was kept: {', '.join(added)} went before it")
            return True
    return False


def unwrap_code(call):
    """Take off the markup a small model wrapped a new Python file in (`<tag>code</tag>`, tags in
    tags, or each line as `<line>code</line>`) when that alone makes it compile."""
    args = call["args"]
    text, path = args["content"], args["path"]
    opening = re.match(r"(?:\s*<\w+[^<>\n]*>)+\n?", text)
    if not path.endswith(".py") or not opening or not syntax_error(path, text):
        return
    if "<line>" in text:
        inner = "\n".join(part.partition("</line>")[0] for part in text.split("<line>")[1:])
    else:
        inner = text[opening.end():].rstrip()
        while re.fullmatch(r"</\w+>", inner[inner.rfind("</"):]):   # the closing tags, inmost last
            inner = inner[:inner.rfind("</")].rstrip()
    if inner.strip() and not syntax_error(path, inner):   # markup around nothing stays, as sent
        args["content"] = inner.rstrip("\n") + "\n"
        annotate(call, "the markup around the code was taken off")


def missing_imports(before, after):
    """The import lines for standard-library names an edit began to use without importing."""
    if max(len(before), len(after)) > SYNTAX_CHECK_CHARS:
        return []
    try:
        new = set(undefined_names(after) or []) - set(undefined_names(before) or [])
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return sorted({line for name in new if (line := import_line(name, after))})


def with_imports(text, lines):
    """The text with import lines added after its last import at the top level (or its top)."""
    found = list(re.finditer(r"^(?:import \w|from [\w.]+ import ).*\n", text, re.MULTILINE))
    at = found[-1].end() if found else re.match(r"(?:#.*\n)*", text).end()
    return text[:at] + "".join(f"{line}\n" for line in lines) + text[at:]


def drop_repeats(call, text):
    """Take off the ends of a patch's new_text that repeat the text just before or after its
    old_text in the file: small models write a whole expression over part of one, and
    `utcnow()` patched to `...now(tz).isoformat()` would read `.isoformat().isoformat()`."""
    args = call["args"]
    old, new = args["old_text"], args["new_text"]
    if text.count(old) != 1:
        return
    at = text.find(old)
    before, after = text[:at], text[at + len(old):]
    most = min(len(new), REPEAT_CHARS) + 1
    head = max(n for n in range(most) if before.endswith(new[:n]))
    tail = max(n for n in range(most) if after.startswith(new[len(new) - n:]))
    if len(new[:head].strip()) < 4:   # shorter: a bracket, a word, not a slip
        head = 0
    if len(new[len(new) - tail:].strip()) < 4:
        tail = 0
    mended = new[head:len(new) - tail]
    after_mend = patched(text, old, mended, args["path"])
    if mended in ("", old, new) or syntax_error_added(args["path"], text, after_mend):
        return
    args["new_text"] = mended
    annotate(call, "new_text repeated the text around old_text; the repeat was taken off")


def python_tree(text):
    """The module a Python text parses to, or None if it does not parse."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):   # also NUL bytes, deep nests
        return None


def add_definition(call, text, request):
    """Add the function a patch anchors on itself (old_text its def line, which the file does
    not have; new_text the function): a method at the end of the class the request names, or of
    the file's only class; a function before the `__main__` block, or at the end."""
    args = call["args"]
    first = args["old_text"].strip()
    named = re.fullmatch(r"(?:async\s+)?def\s+(\w+)\s*\((\s*(?:self|cls)\b)?.*", first)
    if not (named and args["path"].endswith(".py") and len(text) <= SYNTAX_CHECK_CHARS
            and args["new_text"].strip().startswith(first)
            and named[1] not in ANY_DEFINITION.findall(text)):
        return
    tree = python_tree(text)
    nodes = tree.body if tree else []
    classes = [node for node in nodes if isinstance(node, ast.ClassDef)]
    main = [node for node in nodes
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    if named[2]:   # a method: into the class the request names, or the only class
        home = [node for node in classes if mentions(request, node.name)] or classes
    else:          # a function: before the __main__ block, or after the last statement
        home = main[:1] or nodes[-1:]
    if len(home) != 1:
        return
    lines, function = text.split("\n"), args["new_text"].strip("\n")
    old_text = "\n".join(lines[home[0].lineno - 1:home[0].end_lineno])
    if named[2]:   # after the class's last statement, indented as that is
        indent = LEADING_SPACE.match(lines[home[0].body[-1].lineno - 1]).group()
        if not indent:   # `class A: pass` on one line: no body to add to
            return
        new_text = f"{old_text}\n\n{indented(function, indent)}"
    else:
        function = indented(function, "")
        new_text = f"{function}\n\n\n{old_text}" if main else f"{old_text}\n\n\n{function}"
    after = text.replace(old_text, new_text)
    if text.count(old_text) == 1 and not syntax_error(args["path"], after):
        args["old_text"], args["new_text"] = old_text, new_text
        annotate(call, f"{named[1]} is not in {args['path']} yet, so it was added "
                       f"{'to ' + home[0].name if named[2] else 'as a new function'}")


def add_written_definitions(call, text, request):
    """Take a write_file that holds only new methods, over a Python file with a class to hold
    them, as a patch that adds them (add_definition): small models write the method to add as
    the whole file, which would lose the rest of it."""
    content = call["args"]["content"].strip("\n")
    if not (text and call["args"]["path"].endswith(".py") and len(content) <= SYNTAX_CHECK_CHARS):
        return
    tree = python_tree(indented(content, ""))
    nodes = tree.body if tree else []
    functions, defined = (ast.FunctionDef, ast.AsyncFunctionDef), ANY_DEFINITION.findall(text)
    if not nodes or any(
            not isinstance(node, functions) or node.name in defined
            or [arg.arg for arg in node.args.args[:1]] not in (["self"], ["cls"])
            for node in nodes):
        return
    first = content.split("\n", 1)[0].strip()
    patch = {"name": "patch_file",
             "args": {"path": call["args"]["path"], "old_text": first, "new_text": content}}
    add_definition(patch, text, request)
    if "note" in patch:
        call["name"], call["args"] = "patch_file", patch["args"]
        annotate(call, f"write_file would have left only the new methods: {patch['note']}")


def answer_removed(text):
    """A file's text without the answer a small model wrapped around it, `<final>text</final>`
    or `<final>Created it:</final><code>text</code>`; None if it has none."""
    end = text.find("</final>")
    if not text.startswith("<final>") or end == -1:
        return None
    rest = text[end + len("</final>"):].lstrip()
    if rest.startswith("<code>") and rest.endswith("</code>"):
        return rest[len("<code>"):-len("</code>")].removeprefix("\n")
    return text[len("<final>"):-len("</final>")] if text.endswith("</final>") else None


def line_of(text, part):
    """The number of the line where `part` first occurs in `text`."""
    return text.count("\n", 0, text.find(part)) + 1


def patch_hint(text, old_text, new_text):
    """For a patch whose old_text did not occur once: where it occurs, that the change is made
    already, or the line most like it."""
    if old_text.strip() == PLACEHOLDER_OLD_TEXT:   # copied from the prompt's example
        return "; that is the example's placeholder: put the file's own lines there"
    lines = text.splitlines()[:HINT_LINES]
    if old_text in text:
        found = [str(number) for number, line in enumerate(lines, 1) if old_text.strip() in line]
        if not found:
            return ""
        again = every_one(text, old_text, new_text)
        offer = ", or send the same patch again to change every one" if again else ""
        return (f" (lines {', '.join(found[:10])}); take in more of the lines around the one you "
                f"mean{offer}")
    if new_text.strip() and new_text in text:   # small models make a patch again, two steps on
        return (f"; its new_text is already there (line {line_of(text, new_text)}): that change "
                "is made")
    first = next((line.strip() for line in old_text.splitlines() if line.strip()), "")
    number = nearest_line(lines, first)
    if number is None:
        return "; read the file and copy the lines exactly"
    nearest = one_line(lines[number - 1].strip(), ARGS_CHARS)
    return f"; the nearest is line {number}, copy it exactly: {nearest}"


def nearest_line(lines, wanted):
    """The number of the first line most like `wanted` (difflib's ratio, at least 0.6), or None.

    Only the first HINT_LINE_CHARS of each line are compared, and only for
    ANALYSIS_SECONDS: the ratio takes time that grows with the square of a line.
    """
    matcher, best, best_ratio = difflib.SequenceMatcher(b=wanted[:HINT_LINE_CHARS]), None, 0.6
    deadline = time.monotonic() + ANALYSIS_SECONDS
    for number, line in enumerate(lines, 1):
        if time.monotonic() > deadline:
            break
        matcher.set_seq1(line.strip()[:HINT_LINE_CHARS])
        if matcher.real_quick_ratio() >= best_ratio and matcher.quick_ratio() >= best_ratio:
            ratio = matcher.ratio()
            if ratio > best_ratio or (best is None and ratio == best_ratio):
                best, best_ratio = number, ratio
    return best


def syntax_error(name, text):
    """Why a Python file's text does not compile, with its line, or "" (it is never run)."""
    if len(text) > SYNTAX_CHECK_CHARS:
        return ""
    try:
        with warnings.catch_warnings():   # a SyntaxWarning ('\d' in a string) would print
            warnings.simplefilter("ignore")
            # "<name>": given a file's own name, Python quotes the error's line from the disk
            compile(text, f"<{name}>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno}: {one_line((exc.text or '').strip(), ARGS_CHARS)})"
    except (ValueError, RecursionError, MemoryError):   # NUL bytes, absurd nesting: not ours
        pass
    return ""


def named_definition(path, text, request):
    """(its code, "function" or "class", its name): the one top-level definition of a Python file
    that a request names (by its own name or a method's), if it is short; else ("", "", "")."""
    too_long = len(text) > SYNTAX_CHECK_CHARS   # parsing it would take a while
    tree = python_tree(text) if path.endswith(".py") and not too_long else None
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    named = set(re.findall(r"\b\w+\b(?!\.[A-Za-z])", request))   # main, not main.py
    found = [node for node in (tree.body if tree else []) if isinstance(node, kinds)
             and any(isinstance(inner, kinds) and inner.name in named for inner in ast.walk(node))]
    if len(found) != 1:
        return "", "", ""
    node = found[0]
    first = min([decorator.lineno for decorator in node.decorator_list] + [node.lineno])
    code = "\n".join(text.split("\n")[first - 1:node.end_lineno]) + "\n"
    kind = "class" if isinstance(node, ast.ClassDef) else "function"
    return (code, kind, node.name) if len(code) <= REWRITE_MAX_CHARS else ("", "", "")


def with_part(text, old, new):
    """The file `text` with its definition `old` replaced by the model's `new` code, the imports
    it begins with moved to the file's top; "" if `new` holds more than imports and definitions
    (an example call, a main guard) or another of the file's definitions (a copy of it whole)."""
    tree = python_tree(new)
    others = set(ANY_DEFINITION.findall(text.replace(old, "")))
    kinds = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
             ast.Assign)
    if tree is None or not all(isinstance(node, kinds) and getattr(node, "name", "") not in others
                               for node in tree.body):
        return ""
    imports = re.match(r"(?:(?:import \w|from [\w.]+ import ).*\n|[ \t]*\n)*", new).group()
    added = [line for line in imports.splitlines() if line.strip()
             and line not in text.splitlines()]
    body = new[len(imports):].strip("\n") + "\n"
    return with_imports(text.replace(old, body, 1), added)


def kept_lines(old_text, new_text):
    """The share of a file's non-blank lines that a rewrite of it still has."""
    old = [line.strip() for line in old_text.splitlines() if line.strip()]
    new = {line.strip() for line in new_text.splitlines()}
    return sum(line in new for line in old) / max(len(old), 1)


def syntax_error_added(name, old_text, new_text):
    """The syntax error an edit would bring into a Python file that compiles, or ""."""
    error = syntax_error(name, new_text) if name.endswith(".py") else ""
    return error if error and not syntax_error(name, old_text) else ""


def undefined_names(text):
    """Names a module uses but never defines, imports or finds among the builtins (pyflakes' F821);
    None if it has too many scopes to check in time."""
    if re.search(r"\bimport\s+\*|\bglobals\(\)", text):   # names made at run time cannot be known
        return []
    with warnings.catch_warnings():   # as in syntax_error
        warnings.simplefilter("ignore")
        module = symtable.symtable(text, "module", "exec")
    tables = [module]
    for table in tables:   # grows as it goes: every scope, nested ones too
        tables += table.get_children()
        if len(tables) > MAX_CHECKED_SCOPES:   # each lookup scans a scope's children
            return None
    defined, used = set(dir(builtins)), set()
    for table in tables:
        for symbol in table.get_symbols():
            at_top = table is module or symbol.is_declared_global()
            if at_top and (symbol.is_assigned() or symbol.is_imported()):
                defined.add(symbol.get_name())
            if symbol.is_referenced() and (table is module or symbol.is_global()):
                used.add(symbol.get_name())
    return sorted(name for name in used - defined if not name.startswith("__"))


def python_problem(name, text):
    """(A warning if a Python file just written does not parse, or uses a name it never defines,
    or ""; a note if the check was skipped, or "").

    A real tool's editor shows these at once; a small model that is told
    fixes its slip, one that is not says "done" over a broken file.
    """
    error = syntax_error(name, text)
    if error:
        return f"{name} does not parse as Python: {error}; fix it", ""
    try:
        missing = undefined_names(text)
    except (ValueError, RecursionError, MemoryError):
        return "", ""
    if missing is None:
        return "", (f"{name} has over {MAX_CHECKED_SCOPES:,} definitions, too many to check "
                    "its names")
    if not missing:
        return "", ""
    shown = []
    for word in missing[:5]:
        line = import_line(word, text)
        shown.append(f"{word} ({line})" if line else word)
    return f"{name} uses names it never defines or imports: {', '.join(shown)}; fix it", ""


def import_line(name, text):
    """The import a file lacks for a standard-library name it uses: "import json" for `json.x`,
    "from datetime import timezone" in a file that imports datetime; or "".  Nothing is
    imported to find out: only modules this process has loaded are looked into."""
    if name in sys.stdlib_module_names and re.search(rf"\b{name}\.\w", text):
        return f"import {name}"
    for module in re.findall(r"^import (\w+)$", text, re.MULTILINE):
        found = getattr(sys.modules.get(module), name, None)
        if module in sys.stdlib_module_names and callable(found):   # a class or a function: not
            return f"from {module} import {name}"                 # os.path for a variable path
    return ""


def lines_using(names, home, sources):
    """For each of `names`, taken out of the Python file `home`: (path, number, line) of each line
    that uses it in the files of `sources` that name home's module (others have their own main)."""
    module = Path(home).parent.name if Path(home).name == "__init__.py" else Path(home).stem
    names_module = re.compile(rf"\b{re.escape(module)}\b")
    uses = {name: [] for name in names}
    for path, text in sources.items():
        if path == home or not names_module.search(text):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for name in names.intersection(IDENTIFIER.findall(line)):
                uses[name].append((path, number, line.strip()))
    return uses


# ---------------------------------------------------------------------------
# The model: prompt in, text out
# ---------------------------------------------------------------------------

STARTUP_TIMEOUT = 5      # seconds for the startup checks: a local server answers at once
MAX_INFO_BYTES = 16 << 20      # a reply of /api/tags or /api/show, or a reply's context ids
REPLY_BYTES_PER_TOKEN = 1024   # ... plus this per token asked for (a streamed token: ~150 bytes)
MAX_LINE_BYTES = 4 << 20       # one line of a stream; the last carries the context ids
COUNTERS = ("prompt_eval_count", "prompt_eval_cached_count", "prompt_eval_duration",
            "eval_count", "eval_duration")   # what Ollama reports of a reply; any may be missing


class FakeModelClient:
    """Scripted replies, for tests and demos; keeps every prompt it was sent."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.prompts = []

    def complete(self, prompt, max_new_tokens):
        """Return the next scripted reply."""
        self.prompts.append(prompt)
        if not self.outputs:
            raise RuntimeError("FakeModelClient has no scripted replies left")
        return self.outputs.pop(0)


class OllamaUnreachable(RuntimeError):
    """Nothing answers at the Ollama host."""


class NoSuchEndpoint(RuntimeError):
    """The server does not know the API path asked for (an old Ollama has no /api/chat)."""


def checked_reply(reply):
    """A decoded Ollama reply, or the RuntimeError it stands for; /api/chat's message becomes
    /api/generate's fields, so the rest of the client reads one shape."""
    if not isinstance(reply, dict):
        raise RuntimeError("Ollama sent JSON that is not an object.")
    if "error" in reply:
        raise RuntimeError(f"Ollama error: {reply['error']}")
    message = reply.get("message")
    if isinstance(message, dict):
        return {**reply, "response": message.get("content", ""),
                "thinking": message.get("thinking", "")}
    return reply


def reply_pieces(response, deadline, limit):
    """The bytes of a reply as they arrive, stopped past the deadline or the size limit.

    A server may trickle a byte at a time (each read then ends well within the
    timeout) or never stop, so the whole reply is held to one deadline and size.
    """
    if not hasattr(response, "read1"):   # a stand-in response with only read(), as tests use
        yield response.read()
        return
    received = 0
    while piece := response.read1(65536):
        received += len(piece)
        if received > limit:
            raise RuntimeError(f"Ollama's reply passed {limit >> 20} MB without ending; it was "
                               "cut off.")
        if time.monotonic() > deadline:
            raise TimeoutError
        yield piece
    if response.length:   # bytes the server announced and never sent
        raise http.client.IncompleteRead(b"", response.length)


def reply_lines(pieces):
    """The lines of a streamed reply; a line that never ends is refused."""
    pending = b""
    for piece in pieces:
        *lines, pending = (pending + piece).split(b"\n")
        yield from lines
        if len(pending) > MAX_LINE_BYTES:
            raise RuntimeError(f"Ollama sent a line over {MAX_LINE_BYTES >> 20} MB; it was cut "
                               "off.")
    yield pending


def read_json(pieces):
    """Read a whole JSON reply."""
    body = b"".join(pieces)
    try:
        return checked_reply(json.loads(body))
    except ValueError:
        sample = clip(body.decode("utf-8", errors="replace"), 200)
        raise RuntimeError(f"Ollama sent a reply that is not JSON: {sample}") from None


def model_key(name):
    """A model name as Ollama matches it: case-insensitive, a bare name meaning `:latest`."""
    name = name.lower()
    return name if ":" in name else f"{name}:latest"


def is_loopback(host):
    """True for this machine's own addresses: localhost, 127.x.x.x, ::1 (perhaps with a port)."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost" or name.endswith(".localhost")


class LoopbackDirect(urllib.request.ProxyHandler):
    """Proxy settings apply, but not to this machine (as in Ollama's own client): a local
    prompt stays local."""

    def proxy_open(self, req, proxy, type):
        return None if is_loopback(req.host) else super().proxy_open(req, proxy, type)


class SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect to another host is refused, so no other server's reply passes for the model's."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            return None   # urllib then raises the redirect as an HTTPError
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class OllamaModelClient:
    """A model served by Ollama, asked through its HTTP API."""

    def __init__(self, model, host, temperature, top_p, timeout, num_ctx=DEFAULT_NUM_CTX):
        opener = urllib.request.build_opener(LoopbackDirect(), SameHostRedirects())
        urllib.request.install_opener(opener)   # urlopen() goes through it, in this whole program
        self.model, self.host = model, host.rstrip("/")
        self.temperature, self.top_p, self.timeout = temperature, top_p, timeout
        self.num_ctx = num_ctx   # sent with every request: a change would reload the model
        self.think = False       # thinking off; a model that cannot turn it off: its lowest level
        self.chat = True         # the agent sends chat turns (/api/chat); False: /api/generate
        self.on_text = None      # set to a function to stream replies to it as they arrive
        self.on_thinking = None  # ... and one for the thinking a thinking model streams first
        self.last_stats = {}     # Ollama's counters for the last reply

    def complete(self, prompt, max_new_tokens):
        """Send a prompt (one string, or a list of chat turns) and return the model's whole reply
        (its thinking, if any, is not part of it)."""
        chat = isinstance(prompt, list)
        payload = {
            "model": self.model,
            **({"messages": prompt} if chat else {"prompt": prompt, "raw": False}),
            "stream": self.on_text is not None,
            **({} if self.think is None else {"think": self.think}),
            "options": {"num_predict": max_new_tokens, "temperature": self.temperature,
                        "top_p": self.top_p, "num_ctx": self.num_ctx},
        }
        try:
            reply = self.call("/api/chat" if chat else "/api/generate", payload,
                              self.read_stream if self.on_text else read_json,
                              limit=MAX_INFO_BYTES + max_new_tokens * REPLY_BYTES_PER_TOKEN)
        except RuntimeError as exc:
            if self.think is False and "does not support thinking" in str(exc):
                self.think = None   # one Ollama release refused think=false where no thinking
                return self.complete(prompt, max_new_tokens)
            raise
        if not isinstance(reply.get("response"), str):
            raise RuntimeError("Ollama's reply holds no text (no 'response' field).")
        self.last_stats = {key: reply[key] for key in COUNTERS
                           if isinstance(reply.get(key), (int, float))}
        if isinstance(reply.get("done_reason"), str):
            self.last_stats["done_reason"] = reply["done_reason"]   # "length": cut at num_predict
        if isinstance(reply.get("thinking"), str) and reply["thinking"]:
            self.last_stats["thinking_chars"] = len(reply["thinking"])   # eval_count includes it
        return reply["response"]

    def read_stream(self, received):
        """Read a streamed reply, one JSON object per line, passing each piece of text on."""
        pieces, thinking = [], []
        for line in reply_lines(received):
            if not line.strip():
                continue
            try:
                chunk = checked_reply(json.loads(line))
            except ValueError:
                raise RuntimeError("Ollama sent a streamed line that is not JSON.") from None
            for field_name, parts, show in (("thinking", thinking, self.on_thinking),
                                             ("response", pieces, self.on_text)):
                text = chunk.get(field_name)
                if isinstance(text, str) and text:
                    parts.append(text)
                    if show:
                        show(text)
            if chunk.get("done"):
                return {**chunk, "response": "".join(pieces), "thinking": "".join(thinking)}
        raise RuntimeError(f"The connection to Ollama at {self.host} closed before the reply was "
                           "complete.")

    def call(self, path, payload=None, read=read_json, timeout=None, limit=MAX_INFO_BYTES):
        """One HTTP request (GET without payload, else POST); every failure becomes one
        RuntimeError.  The whole reply must arrive within the timeout and `limit` bytes."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.host}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return read(reply_pieces(response, deadline, limit))
        except urllib.error.HTTPError as exc:   # a subclass of URLError: catch it first
            message = self.http_error(exc)
            if exc.code == 404 and not message.startswith("Ollama has no model"):
                raise NoSuchEndpoint(message) from None
            raise RuntimeError(message) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise RuntimeError(self.timeout_error(timeout)) from None
            raise OllamaUnreachable(
                f"Cannot reach Ollama at {self.host} ({exc.reason}). Start it with `ollama serve` "
                f"and pull the model with `ollama pull {self.model}`.") from None
        except TimeoutError:   # a read that outlasts the timeout is not a URLError
            raise RuntimeError(self.timeout_error(timeout)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise RuntimeError(f"The connection to Ollama at {self.host} broke off "
                               f"({exc or type(exc).__name__}); try again.") from None

    def timeout_error(self, timeout):
        return (f"Ollama did not answer within {timeout or self.timeout:g} s; "
                "try a smaller model or a larger --ollama-timeout.")

    def http_error(self, exc):
        """One clear sentence for an HTTP error, from Ollama's JSON body when there is one."""
        try:
            body = exc.read().decode("utf-8", errors="replace")
        except OSError:
            body = str(exc.reason)
        try:
            text = json.loads(body).get("error", body)
        except (ValueError, AttributeError):
            text = body
        if 300 <= exc.code < 400:
            return (f"Ollama at {self.host} answered with a redirect to "
                    f"{exc.headers.get('Location')}, which is not followed to another host; give "
                    "--host the server's own address.")
        if exc.code == 404 and "model" in str(text):   # a missing path: "404 page not found"
            return f"Ollama has no model {self.model!r}; pull it with `ollama pull {self.model}`."
        return f"Ollama request failed with HTTP {exc.code}: {clip(str(text), 300)}"

    def installed_models(self):
        """The models the server has pulled; None if it answers, but not with Ollama's list."""
        try:
            reply = self.call("/api/tags", timeout=STARTUP_TIMEOUT)
        except OllamaUnreachable:
            raise
        except RuntimeError:
            return None
        models = reply.get("models")
        if not isinstance(models, list):
            return None
        return [model["name"] for model in models
                if isinstance(model, dict) and isinstance(model.get("name"), str)]

    def read_model_info(self):
        """Ask /api/show about the model: its context length (or None), and the `think` value it
        takes: False (off) where it can, else its lowest level (gpt-oss takes only "low", "medium"
        or "high"), or None (said nothing of) if it cannot think at all."""
        try:
            show = self.call("/api/show", {"model": self.model}, timeout=STARTUP_TIMEOUT)
        except RuntimeError:
            return None
        thinking, capabilities = show.get("thinking"), show.get("capabilities")
        values = thinking.get("values") if isinstance(thinking, dict) else None
        if isinstance(values, list) and values and False not in values:
            levels = [level for level in ("low", "medium", "high") if level in values]
            self.think = levels[0] if levels else values[0]
        elif isinstance(capabilities, list) and "thinking" not in capabilities:
            self.think = None
        info = show.get("model_info")
        lengths = [value for key, value in (info if isinstance(info, dict) else {}).items()
                   if key.endswith(".context_length") and isinstance(value, int)]
        return lengths[0] if lengths else None


# ---------------------------------------------------------------------------
# The terminal: the display a person watches, and its welcome box
# ---------------------------------------------------------------------------

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")   # all but \t, \n: no text drives
UNSEEN_CHARS = re.compile(   # the terminal; these reorder or hide text, and are shown as \uXXXX:
    "[\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\U000e0000-\U000e007f]")   # bidi, ...
STYLES = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
DIFF_STYLES = {"+": "green", "-": "red", "@": "cyan"}
PREVIEW_LINES = 4        # lines of a tool's result shown on screen
PREVIEW_WIDTH = 200      # ... each cut to this many chars
APPROVAL_HEAD, APPROVAL_TAIL = 40, 20   # lines of a long diff shown before asking; [v]: all
MASCOT = (" .-------. ", " | O   O | ", " |   v   | ", " '-------' ")


class TerminalDisplay(Display):
    """What a person sees: a waiting timer, the reply as it streams, a line per tool, the answer.

    Everything goes to stderr except answers, which go to stdout, so that
    `answer=$(mini-coding-agent "...")` captures just the answer.
    """

    def __init__(self, verbose=False):
        self.verbose = verbose
        self.live = sys.stderr.isatty()   # a person is watching: show the timer and stream
        self.ticker, self.stop_ticking = None, threading.Event()
        self.new_reply(0)

    def new_reply(self, depth):
        """Forget the last reply: nothing of the next one is shown yet."""
        self.depth, self.reply, self.shown = depth, "", 0   # the reply so far; how much is shown
        self.mode = "prose"                   # then "answer" after <final>, "call" after <tool
        self.printed = self.thinking = False  # prose shown on screen; thinking being shown

    def model_started(self, depth):
        self.new_reply(depth)
        if self.live:
            self.stop_ticking = threading.Event()
            self.ticker = threading.Thread(target=self.tick, args=[self.stop_ticking], daemon=True)
            self.ticker.start()

    def tick(self, stop):
        """Show the seconds spent waiting for the model, on one line, until told to stop."""
        started = time.monotonic()
        while not stop.wait(0.25):
            sys.stderr.write(f"\r  waiting for the model... {time.monotonic() - started:.0f} s ")
            sys.stderr.flush()

    def stop_ticker(self):
        """Stop the waiting timer, if it runs, and clear its line."""
        if self.ticker:
            self.stop_ticking.set()
            self.ticker.join()
            self.ticker = None
            sys.stderr.write("\r" + " " * 40 + "\r")

    def model_thinking(self, text):
        """A piece of a thinking model's thinking: shown dimmed, never taken as the answer."""
        self.stop_ticker()
        self.thinking = True
        sys.stderr.write(paint(text, "dim", sys.stderr))
        sys.stderr.flush()

    def model_text(self, text):
        """A piece of the reply, as it streams."""
        self.stop_ticker()
        if self.thinking:
            sys.stderr.write("\n")
            self.thinking = False
        self.reply += text
        if self.mode == "prose":
            self.show_prose(done=False)
        if self.mode == "answer":
            self.show_answer_part(done=False)
        if self.mode == "call":
            sys.stderr.write(f"\r  writing a tool call... {len(self.reply) - self.shown:,} chars ")
        sys.stderr.flush()

    def show_prose(self, done):
        """Stream the reply dimmed, until it turns out to hold an answer or a tool call."""
        rest = self.reply[self.shown:]
        call, final = CALL_OPENING.search(rest), rest.find("<final>")
        answer_first = -1 < final < (call.start() if call else len(rest))
        if answer_first and self.depth == 0 and sys.stdout.isatty():
            self.mode, end, skip = "answer", final, len("<final>")
        elif call:
            self.mode, end, skip = "call", call.start(), 0
        else:   # hold back what may be the start of a tag
            partial = rest.rfind("<")
            holding = not done and partial != -1 and ">" not in rest[partial:]
            end, skip = (partial if holding else len(rest)), 0
        if self.depth == 0 and rest[:end].strip():
            sys.stderr.write(paint(rest[:end], "dim", sys.stderr))
            self.printed = True
        self.shown += end + skip

    def show_answer_part(self, done):
        """Print the streamed answer so far, up to `</final>` (what follows that is not shown)."""
        answer = self.reply[self.shown:]
        end = answer.find("</final>")
        if end == -1:
            partial = answer.rfind("<")   # hold back what may be the start of </final>
            holding = not done and partial != -1 and "</final>".startswith(answer[partial:])
            end = partial if holding else len(answer)
        sys.stdout.write(paint(answer[:end], "bold", sys.stdout))
        sys.stdout.flush()
        self.shown += end
        if answer.find("</final>") != -1:
            self.mode = "answered"   # nothing after </final> is shown

    def model_finished(self):
        self.stop_ticker()
        if self.mode == "prose" and self.reply:
            self.show_prose(done=True)
        if self.mode == "answer":
            self.show_answer_part(done=True)
        if self.mode in ("answer", "answered"):
            print()
        elif self.mode == "call":
            sys.stderr.write("\r" + " " * 50 + "\r")   # the tool's summary line takes its place
        elif self.printed or self.thinking:
            sys.stderr.write("\n")

    def step_figures(self, figures):
        if self.verbose:
            say(f"   [{figures_line(figures)}]", "dim")

    def tool_started(self, name, args, depth):
        say(f"{'    ' * depth}-> {'helper ' if depth else ''}{describe_call(name, args)}", "cyan")

    def tool_finished(self, name, result, depth):
        lines = result.for_model().splitlines() or ["(no output)"]
        shown = shell_preview(lines) if name == "run_shell" else lines[:PREVIEW_LINES]
        if name != "run_shell" and len(lines) > PREVIEW_LINES:
            shown.append(f"... {len(lines) - PREVIEW_LINES} more lines")
        say("\n".join(f"{'    ' * depth}   {line[:PREVIEW_WIDTH]}" for line in shown),
            "dim" if result.ok else "red")

    def notice(self, text):
        say(text, "yellow")

    def approval(self, name, preview, whole):
        self.stop_ticker()
        lines = preview.splitlines()
        cut = not whole and len(lines) > APPROVAL_HEAD + APPROVAL_TAIL
        if cut:   # the head and the tail; [v] shows all of it
            hidden = len(lines) - APPROVAL_HEAD - APPROVAL_TAIL
            lines = [*lines[:APPROVAL_HEAD], f"... {hidden} lines not shown: answer v to see them "
                     "all ...", *lines[-APPROVAL_TAIL:]]
        for line in lines:
            heading = line.startswith(("+++", "---", "..."))
            say(line, "bold" if heading else DIFF_STYLES.get(line[:1], "bold"))
        view = " / [v]iew the whole diff" if cut else ""
        question = APPROVAL_QUESTION.format(name=name, view=view)
        sys.stderr.write(paint(question, "yellow", sys.stderr))
        sys.stderr.flush()

    def answer(self, text):
        """Print a final answer on stdout, unless it streamed already, as it is, onto stdout's
        terminal (an answer read out of `{"result": "..."}` is printed)."""
        with_stdout = self.printed and sys.stdout.isatty() and sys.stderr.isatty() and \
            os.path.sameopenfile(sys.stdout.fileno(), sys.stderr.fileno())
        seen = self.mode in ("answer", "answered") or with_stdout   # on stdout, or beside it
        if not (seen and read_reply(self.reply or " ") == ("final", text.strip())):
            print(paint(text, "bold", sys.stdout))


def build_welcome(agent, model, host):
    """A box that says what the agent will work on and with which model; it fits the terminal."""
    columns = shutil.get_terminal_size((80, 24)).columns
    width = min(max(columns, 68), 84) if columns >= 68 else max(columns - 1, 24)
    inner = width - 4
    rows = [
        ("workspace", str(agent.root)),
        ("model", f"{model} at {host}"),
        ("context", f"{agent.num_ctx:,} tokens (prompts up to {agent.prompt_budget:,} chars)"),
        ("branch", agent.workspace.branch),
        ("approval", agent.approval_policy),
        ("session", agent.session["id"] + (f" (resumed, {len(agent.session['history'])} items)"
                                           if agent.session["history"] else "")),
    ]
    title = ["MINI CODING AGENT", "a coding agent on your own machine"]
    if inner >= 50:
        lines = [face + "  " + text for face, text in zip(MASCOT, ["", *title, ""], strict=True)]
    else:
        lines = title
    lines += [""] + [f"{label:<10} {shorten(value, inner - 11)}" for label, value in rows]
    lines += ["", "Type a request, or /help for commands."[:inner]]
    border = "+" + "-" * (width - 2) + "+"
    return "\n".join([border, *[f"| {line[:inner]:<{inner}} |" for line in lines], border])


def paint(text, style, stream):
    """Text made safe for a terminal (whoever wrote it), and coloured if the stream is a terminal
    and NO_COLOR is unset."""
    text = CONTROL_CHARS.sub("", text)
    text = UNSEEN_CHARS.sub(lambda char: f"\\u{ord(char.group()):04x}", text)
    if style is None or not stream.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def say(message, style=None):
    """Tell the user something that is not an answer: on stderr, so stdout holds only answers."""
    print(paint(message, style, sys.stderr), file=sys.stderr)


def shorten(text, width):
    """Shorten text in the middle with '...' so it fits in width."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]


def describe_call(name, args):
    """A tool call as one line a person can scan, e.g. `read_file README.md 1-80`."""
    get = args.get
    if name == "read_file":
        text = f"read_file {get('path')} {get('start', 1)}-{get('end', 200)}"
    elif name in ("run_shell", "delegate"):
        text = f"{name}: {get('command') or get('task')}"
    elif name == "search":
        text = f"search {get('pattern')!r} in {get('path', '.')}"
    else:
        text = f"{name} {get('path', '.')}"
    return one_line(text, 160)


def shell_preview(lines):
    """The lines of a shell result worth a glance: its exit code and the end of each output,
    where a failing test run's summary and a traceback's last lines are."""
    shown, part = [lines[0]], []
    for line in [*lines[1:], "stderr:"]:
        if line in ("stdout:", "stderr:"):
            shown += [*(["..."] if len(part) > PREVIEW_LINES else []), *part[-PREVIEW_LINES:]]
            part = []
        elif line != "(empty)":
            part.append(line)
    return shown


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

HELP = """Commands:
  /help      list these commands
  /memory    show the agent's working memory
  /session   show where the session is kept and how much it takes
  /stats     show each model call's prompt size, cache reuse and timings
  /undo      undo the agent's last file change (one per call)
  /reset     forget this session's transcript and memory
  /exit      leave (also /quit, Ctrl-D, or Ctrl-C at an empty prompt)
End a line with \\ to go on typing on the next line."""
EPILOG = ("Exit status of a one-shot request: 0 it was answered; 1 an error (server, model); "
          "2 bad usage or a session that cannot be used; 3 a limit (--max-steps, malformed "
          "replies) stopped it, with the reason on stderr; 130 interrupted.  Environment: "
          "OLLAMA_HOST (as for Ollama itself), MINI_CODING_AGENT_MODEL, NO_COLOR.")
MIN_TRANSCRIPT_CHARS = 8 * ITEM_CHARS   # a smaller --num-ctx could not show a few recent steps
EXIT_ERROR, EXIT_USAGE, EXIT_LIMIT, EXIT_INTERRUPTED = 1, 2, 3, 130   # one-shot exits (--help)
STATS_COLUMNS = [   # /stats: (heading, figure, width, scale: ns become seconds)
    ("prompt chars", "prompt_chars", 12, 1), ("prompt tokens", "prompt_eval_count", 13, 1),
    ("cached tok", "prompt_eval_cached_count", 10, 1), ("eval s", "prompt_eval_duration", 6, 1e9),
    ("new tokens", "eval_count", 10, 1), ("gen s", "eval_duration", 5, 1e9)]


def positive_int(text):
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def number_in(text, low, high, low_allowed=True):
    """A flag's number (for argparse), from `low` (or just above it) to `high`; never NaN."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (low <= value if low_allowed else low < value) or not value <= high:
        above = "at least" if low_allowed else "above"
        raise argparse.ArgumentTypeError(f"must be {above} {low:g} and at most {high:g}, "
                                         f"got {text}")
    return value


def build_arg_parser():
    """The command-line flags: the reference's, with its defaults, and a few of our own."""
    parser = argparse.ArgumentParser(prog="mini-coding-agent", epilog=EPILOG,
                                     description="A coding agent for local models on Ollama.")
    add = parser.add_argument
    add("prompt", nargs="*", help="answer this request once and exit; without it, start a session")
    add("--cwd", default=".", help="the repository to work in (default: .)")
    add("--model", help=f"Ollama model (default: $MINI_CODING_AGENT_MODEL, else {DEFAULT_MODEL})")
    add("--host", help=f"Ollama server, in any form Ollama takes (default: $OLLAMA_HOST, else "
                       f"{DEFAULT_HOST})")
    add("--ollama-timeout", default=300,
        type=lambda text: number_in(text, 0, 86400, low_allowed=False),
        help="seconds to wait for one model reply (default: 300)")
    add("--resume", metavar="ID|latest", nargs="?", const="latest",
        help="go on with a saved session (alone: the latest)")
    add("--approval", choices=("ask", "auto", "never"), default="ask",
        help="risky tools (shell, writes): ask, allow all, or deny all (default: ask)")
    add("--max-steps", type=positive_int, default=6,
        help="tool calls allowed per request (default: 6)")
    add("--max-new-tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS,
        help=f"longest model reply, in tokens (default: {DEFAULT_MAX_NEW_TOKENS})")
    add("--temperature", type=lambda text: number_in(text, 0, 2), default=0.2,
        help="sampling temperature (default: 0.2)")
    add("--top-p", type=lambda text: number_in(text, 0, 1, low_allowed=False), default=0.9,
        help="nucleus sampling threshold (default: 0.9)")
    add("--num-ctx", type=positive_int, help="context window in tokens, sent with every request "
        f"(default: the model's own, at most {DEFAULT_NUM_CTX})")
    add("--no-stream", action="store_true", help="show replies only once they are complete")
    add("--no-small-model-help", action="store_true",
        help="the plain protocol only: no dialects, hints, edit checks or answers sent back")
    add("--verbose", action="store_true", help="print each model call's figures")
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def ollama_host(text):
    """An Ollama address in any form Ollama takes (host, host:port, :port, scheme://host:port) as
    a URL; 0.0.0.0 means this machine.  Raises ValueError for what is not an address."""
    text = text.strip().strip("\"'")
    scheme, has_scheme, rest = text.partition("://")
    if not has_scheme:
        scheme, rest = "http", text
    if scheme not in ("http", "https"):
        raise ValueError(f"{scheme}:// is not http:// or https://")
    hostport, _, path = rest.partition("/")
    if any(char.isspace() for char in hostport):
        raise ValueError("it holds a space")
    parts = urllib.parse.urlsplit(f"//{hostport}")
    port = parts.port or ({"http": 80, "https": 443}[scheme] if has_scheme else 11434)
    host = parts.hostname or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


class CannotStart(Exception):
    """A problem found before the first request; the program says it and exits with `code`."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def check_server(client, num_ctx):
    """Before the first request: does Ollama answer, with the model?  The context window to use."""
    try:
        models = client.installed_models()
    except OllamaUnreachable as exc:
        raise CannotStart(str(exc), EXIT_ERROR) from None
    if models is None:
        say(f"warning: {client.host} answers, but not with Ollama's model list; going on anyway.")
    elif model_key(client.model) not in {model_key(name) for name in models}:
        raise CannotStart(f"The model {client.model} is not pulled (installed: "
                          f"{', '.join(models) or 'none'}). Pull it with: ollama pull "
                          f"{client.model}", EXIT_ERROR)
    context_length = client.read_model_info()
    if num_ctx is None:   # Ollama would silently cut a prompt longer than what the model takes
        return min(DEFAULT_NUM_CTX, context_length or DEFAULT_NUM_CTX)
    if context_length and num_ctx > context_length:
        raise CannotStart(f"--num-ctx {num_ctx} is more than {client.model} takes "
                          f"({context_length} tokens); use --num-ctx {context_length} or less.",
                          EXIT_USAGE)
    return num_ctx


def connect(args):
    """The model client the flags ask for, its server checked, with the context window to use."""
    given = args.host if args.host is not None else os.environ.get("OLLAMA_HOST", "")
    try:
        host = ollama_host(given)
    except ValueError as exc:
        source = "--host" if args.host is not None else "OLLAMA_HOST"
        raise CannotStart(f"{source} {given!r} is not an address Ollama takes ({exc}); use one "
                          "like 127.0.0.1:11434 or http://my-server:11434.", EXIT_USAGE) from None
    model = args.model or os.environ.get("MINI_CODING_AGENT_MODEL") or DEFAULT_MODEL
    client = OllamaModelClient(model, host, args.temperature, args.top_p, args.ollama_timeout)
    client.num_ctx = check_server(client, args.num_ctx)
    return client


def resumed_session(store, wanted):
    """The saved session to go on with, locked for this process: the one named, or for `latest`
    the newest that loads and is free; raises CannotStart if the one named cannot be used."""
    for session_id in store.newest_first() if wanted == "latest" else [wanted]:
        try:
            store.lock(session_id)
            try:
                return store.load(session_id)
            except ValueError:
                store.unlock(session_id)
                raise
        except ValueError as exc:
            if wanted == "latest":
                say(f"warning: skipping a session: {exc}")
                continue
            advice = ("leave it there first, or start a new session without --resume"
                      if isinstance(exc, SessionBusy) else
                      "start without --resume, or use --resume latest")
            raise CannotStart(f"{exc}; {advice}.", EXIT_USAGE) from None
    say("No saved session to resume; starting a new one.")
    return None


def start_agent(args):
    """Everything before the first request: the model and its window, the repository, the
    session."""
    cwd = Path(args.cwd).expanduser()
    if not cwd.is_dir():
        raise CannotStart(f"--cwd {args.cwd} is not a folder; give the repository to work in.",
                          EXIT_USAGE)
    client, display = connect(args), TerminalDisplay(verbose=args.verbose)
    if display.live and not args.no_stream:
        client.on_text, client.on_thinking = display.model_text, display.model_thinking
    workspace = WorkspaceContext.build(cwd)
    state = Path(workspace.repo_root) / STATE_DIR
    problem = state_problem(state)
    if problem:
        raise CannotStart(f"{problem}; remove it (it came with the repository) and start again.",
                          EXIT_USAGE)
    store = SessionStore(state / "sessions")
    session = resumed_session(store, args.resume) if args.resume else None
    no_one_to_ask = args.approval == "ask" and not sys.stdin.isatty()
    agent = MiniAgent(client, workspace, store, session=session, display=display,
                      approval_policy="never" if no_one_to_ask else args.approval,
                      max_steps=args.max_steps, max_new_tokens=args.max_new_tokens,
                      num_ctx=client.num_ctx, small_model_help=not args.no_small_model_help)
    if session is None:
        store.lock(agent.session["id"])
    room = agent.prompt_budget - len(agent.prefix)
    if room < MIN_TRANSCRIPT_CHARS:
        store.unlock(agent.session["id"])
        needed = client.num_ctx + int((MIN_TRANSCRIPT_CHARS - room) / CHARS_PER_TOKEN) + 1
        raise CannotStart(f"--num-ctx {client.num_ctx} with --max-new-tokens "
                          f"{args.max_new_tokens} leaves no room for the transcript; use "
                          f"--num-ctx {needed} or more, or a smaller --max-new-tokens.",
                          EXIT_USAGE)
    return agent, display


def cannot_write(exc):
    """One sentence for a file the agent's own work could not write."""
    return (f"error: could not write {exc.filename or 'a file'} ({exc.strerror or exc}); free "
            "some disk space, or work in a folder you may write to.")


def run_request(agent, display, request):
    """Answer one request; returns the exit code of one-shot mode.  Ctrl-C goes to the caller."""
    try:
        answer = agent.ask(request)
    except RuntimeError as exc:
        say(f"error: {exc}")
        return EXIT_ERROR
    except OSError as exc:   # the session could not be saved: a full disk, a folder gone
        say(cannot_write(exc))
        return EXIT_ERROR
    except Exception as exc:   # a bug of ours: one line, not a traceback; the session is saved
        say(f"error: unexpected {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    if agent.stopped:   # not an answer: scripts must not take it for one
        say(answer, "yellow")
        return EXIT_LIMIT
    display.answer(answer)
    return 0


def this_program():
    """How this program was started, as the start of a command someone can paste anywhere."""
    started = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if started is None or started.suffix == ".py":   # `python mini_coding_agent.py`, `python -m`
        return [sys.executable, str(started or Path(__file__).resolve())]
    on_path = shutil.which(started.name)
    return [started.name] if on_path and Path(on_path).resolve() == started else [str(started)]


def resume_hint(agent, args):
    """How to go on with this session later, as a command that works when pasted."""
    if not agent.session_path.exists():
        return "Nothing was done, so no session was saved."
    command = [*this_program(), "--cwd", str(agent.root)]
    for flag in ("host", "model"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    join = shlex.join if os.name == "posix" else subprocess.list2cmdline
    return f"The session is saved; go on with: {join([*command, '--resume', agent.session['id']])}"


def history_problem(history_file):
    """Why the REPL's history cannot be kept in this file (a FIFO would hang the start, a folder
    the exit), or ""."""
    found = entry_stat(history_file)
    if found is None or stat.S_ISREG(found.st_mode):
        return ""
    return f"{history_file} is not a regular file"


def enable_line_editing(history_file):
    """Arrow keys and a saved history for input(), where the platform has readline."""
    try:
        import readline  # not on every platform, and it changes input(): only for the REPL
    except ImportError:
        return None
    # Bracketed paste makes a pasted traceback one request, not one per line; Python leaves it
    # off.  It needs escape codes on the terminal, which NO_COLOR asks us not to send.
    paste = "off" if os.environ.get("NO_COLOR") else "on"
    readline.parse_and_bind(f"set enable-bracketed-paste {paste}")
    try:
        if not history_problem(history_file):
            readline.read_history_file(history_file)
    except OSError:
        pass
    readline.set_history_length(1000)
    return readline


def read_request():
    """One request from the REPL; a line ending in a backslash goes on (a paste is one request)."""
    lines = [input("mini-coding-agent> ")]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(input("... "))
    return "\n".join(lines).strip()


def run_repl(agent, display, args):
    """Read requests and slash commands until /exit, end of input, or Ctrl-C at an empty prompt."""
    history_file = agent.root / STATE_DIR / "repl-history"
    if history_problem(history_file):
        say(f"warning: {history_problem(history_file)}, so the REPL's history is not kept; "
            "remove it.")
    readline = enable_line_editing(history_file) if sys.stdin.isatty() else None
    try:
        while True:
            try:
                line = read_request()
            except (EOFError, KeyboardInterrupt) as stop:
                if isinstance(stop, KeyboardInterrupt) and readline and readline.get_line_buffer():
                    say("")   # Ctrl-C on a half-typed line clears it, as shells do
                    continue
                say(f"\n{resume_hint(agent, args)}")
                return 0
            if line in ("/exit", "/quit"):
                say(resume_hint(agent, args))
                return 0
            run_line(agent, display, line)
    finally:
        if readline and not history_problem(history_file):   # again: it may have changed
            try:
                own_folder(history_file.parent)
                readline.write_history_file(history_file)
            except OSError as exc:
                say(f"warning: the REPL's history was not saved ({exc}).")


def figures_line(figures):
    """One model call's figures in a line, for --verbose."""
    reused = figures["reused_chars"] / max(figures["prompt_chars"], 1)
    line = (f"prompt {figures['prompt_chars']:,} of {figures['budget_chars']:,} chars, "
            f"{reused:.0%} reused from the last")
    if "prompt_eval_count" in figures:
        line += (f"; {figures['prompt_eval_count']:,} prompt tokens in "
                 f"{figures.get('prompt_eval_duration', 0) / 1e9:.2f} s")
    if "eval_count" in figures:
        line += f", {figures['eval_count']:,} new in {figures.get('eval_duration', 0) / 1e9:.2f} s"
    return line


def stats_row(label, row):
    """One line of the /stats table: '-' where the server did not send a figure."""
    reused = row.get("reused_chars", 0) / max(row.get("prompt_chars", 0), 1)
    cells = [f"{row[key] / scale:>{width},.2f}" if key in row and scale != 1 else
             f"{row[key]:>{width},}" if key in row else "-".rjust(width)
             for _, key, width, scale in STATS_COLUMNS]
    return " ".join([f"{label:>5}", cells[0], f"{reused:>6.0%}", *cells[1:]])


def stats_table(stats):
    """The /stats report: one row per model call of the session, then the totals."""
    if not stats:
        return "No model calls yet in this session."
    rows = [{key: value for key, value in row.items() if isinstance(value, (int, float))}
            for row in stats]   # only figures: not done_reason
    totals = {key: sum(row.get(key, 0) for row in rows) for key in set().union(*rows)}
    header = " call prompt chars reused prompt tokens cached tok eval s new tokens gen s"
    lines = [header, *[stats_row(str(n), row) for n, row in enumerate(rows, 1)],
             stats_row("total", totals)]
    last = rows[-1]
    if "budget_chars" in last and "prompt_chars" in last:
        lines.append(f"The last prompt used {last['prompt_chars']:,} of the "
                     f"{last['budget_chars']:,} chars --num-ctx allows "
                     f"({last['prompt_chars'] / max(last['budget_chars'], 1):.0%}); past that, "
                     "older steps are compacted.")
    return "\n".join(lines)


def session_info(agent):
    """What /session shows: where the session is kept, and how much it and its undo copies take."""
    undo = agent.session_store.path(agent.session["id"], ".undo")
    copies = [path for path in undo.iterdir() if path.suffix == ".bak"] if undo.is_dir() else []
    size = agent.session_path.stat().st_size if agent.session_path.exists() else 0
    copied = sum(copy.stat().st_size for copy in copies)
    return (f"{agent.session_path}\n{len(agent.session['history'])} transcript items, "
            f"{size / 1024:,.0f} KB; {len(copies)} undo copies in {undo.name}, "
            f"{copied / 1024:,.0f} KB")


def reset_command(agent):
    """What /reset does and says."""
    agent.reset()
    return "Session history and memory cleared."


COMMANDS = {   # REPL command -> what it shows
    "/help": lambda agent: HELP,
    "/memory": lambda agent: agent.memory_text(),
    "/session": session_info,
    "/stats": lambda agent: stats_table(agent.session["stats"]),
    "/undo": lambda agent: agent.undo(),
    "/reset": reset_command,
}


def run_line(agent, display, line):
    """Carry out one REPL line: a /command, or a request (`/etc/hosts is empty?` is one)."""
    word = line.split(maxsplit=1)[0] if line else ""
    if re.fullmatch(r"/[a-z]+", word):
        if word not in COMMANDS:
            say(f"Unknown command {word}; /help lists the commands.")
            return
        try:   # it may show model-written text: made safe for the terminal
            print(paint(COMMANDS[word](agent), None, sys.stdout))
        except Exception as exc:   # no command may end the session with a traceback
            say(f"error: {word} failed: {exc}")
    elif line:
        try:
            run_request(agent, display, line)
        except KeyboardInterrupt:
            say("\nInterrupted: the request was stopped; the session is saved.")


def main(argv=None):
    """Run the agent from the command line; returns the exit code."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")   # any text prints on any terminal
    args = build_arg_parser().parse_args(argv)
    try:
        agent, display = start_agent(args)
    except CannotStart as exc:
        say(f"error: {exc}")
        return exc.code
    except OSError as exc:   # the agent's folder cannot be made: someone else's checkout
        say(cannot_write(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        say("\nInterrupted before the session started; nothing was saved.")
        return EXIT_INTERRUPTED
    say(build_welcome(agent, agent.model_client.model, agent.model_client.host))
    if agent.approval_policy != args.approval:
        say("Input is not a terminal, so risky tools will be denied; --approval auto allows them.")
    try:
        if not args.prompt:
            return run_repl(agent, display, args)
        return run_request(agent, display, " ".join(args.prompt))
    except KeyboardInterrupt:
        say(f"\nInterrupted. {resume_hint(agent, args)}")
        return EXIT_INTERRUPTED
    finally:
        agent.session_store.unlock(agent.session["id"])


if __name__ == "__main__":
    sys.exit(main())
