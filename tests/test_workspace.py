"""Component 1: the live repo context, read once from git and the project's docs."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import CHILD_ENV, MODULE, finishes_within, make_agent

import mini_coding_agent as mca

pytestmark = pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def git_repo(tmp_path):
    repo = tmp_path / "project"
    (repo / "pkg").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "trunk")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "README.md").write_text("# Project\n" + "r" * 3000)
    (repo / "AGENTS.md").write_text("Run pytest.\n")
    (repo / "pkg" / "package.json").write_text('{"name": "pkg"}\n')
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first commit")
    for n in range(6):
        (repo / f"file{n}.txt").write_text(str(n))
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"commit number {n}")
    (repo / "file0.txt").write_text("changed")
    return repo


def test_build_reads_git_and_docs(git_repo):
    context = mca.WorkspaceContext.build(git_repo / "pkg")
    assert context.repo_root == str(git_repo.resolve())
    assert context.cwd == str((git_repo / "pkg").resolve())
    assert context.branch == "trunk"
    assert context.default_branch == "main"
    assert context.status == "M ../file0.txt"   # git prints paths relative to cwd
    assert len(context.recent_commits) == 5 and context.recent_commits[0].endswith("commit number 5")
    assert list(context.project_docs) == ["AGENTS.md", "README.md", "pkg/package.json"]
    assert context.project_docs["README.md"].startswith("# Project\nrrr")
    assert len(context.project_docs["README.md"]) <= mca.DOC_CHARS + 30


def test_build_outside_git_falls_back_to_defaults(tmp_path):
    context = mca.WorkspaceContext.build(tmp_path)
    assert context.repo_root == str(tmp_path.resolve())
    assert (context.branch, context.default_branch) == ("-", "main")
    assert context.status.startswith("unknown (") and "not a git repository" in context.status
    assert context.recent_commits == [] and context.project_docs == {}


def test_text_renders_the_workspace_block(git_repo):
    text = mca.WorkspaceContext.build(git_repo).text()
    lines = text.splitlines()
    assert lines[0] == "Workspace:"
    for expected in (f"- repo_root: {git_repo.resolve()}", "- branch: trunk", "- default_branch: main",
                     "M file0.txt", "commit number 5", "--- AGENTS.md ---", "Run pytest."):
        assert any(expected in line for line in lines), expected


# --- a hostile repository: nothing it ships is run, and nothing outside is read ------

needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need a POSIX file system here")


@needs_symlinks
def test_project_docs_that_are_symlinks_out_of_the_repository_are_not_read(git_repo, tmp_path):
    (tmp_path / "secret.txt").write_text("TOP-SECRET-TOKEN")
    (git_repo / "AGENTS.md").unlink()
    (git_repo / "AGENTS.md").symlink_to(tmp_path / "secret.txt")
    (git_repo / "README.md").unlink()
    (git_repo / "README.md").symlink_to("/proc/self/environ")
    (git_repo / "pyproject.toml").symlink_to(git_repo / "pkg" / "package.json")   # inside: fine
    context = mca.WorkspaceContext.build(git_repo)
    assert "TOP-SECRET-TOKEN" not in context.text() and "PATH=" not in context.text()
    assert set(context.project_docs) == {"pyproject.toml"}


@needs_symlinks
def test_a_doc_that_is_a_fifo_does_not_hang_the_snapshot(git_repo):
    (git_repo / "AGENTS.md").unlink()
    os.mkfifo(git_repo / "AGENTS.md")
    started = time.monotonic()
    context = mca.WorkspaceContext.build(git_repo)
    assert time.monotonic() - started < 5 and "AGENTS.md" not in context.project_docs


def plant_hostile_git_config(repo, marker):
    """A .git/config whose fsmonitor, filters, hooks and gpg program would each run a command."""
    (repo / ".gitattributes").write_text("*.txt filter=evil\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    for key, value in [("core.fsmonitor", f"touch {marker}-fsmonitor; echo"),
                       ("filter.evil.clean", f"touch {marker}-filter; cat"),
                       ("filter.evil.smudge", f"touch {marker}-smudge; cat"),
                       ("log.showSignature", "true"), ("gpg.program", f"touch {marker}-gpg; false")]:
        git(repo, "config", key, value)
    hook = repo / ".git" / "hooks" / "post-index-change"
    hook.write_text(f"#!/bin/sh\ntouch {marker}-hook\n")
    hook.chmod(0o755)
    for file in repo.glob("*.txt"):   # as if unpacked from a tarball: git must look at them again
        os.utime(file, (1_000_000_000, 1_000_000_000))


@needs_symlinks
def test_the_snapshot_runs_nothing_the_repository_configures(git_repo, tmp_path):
    marker = tmp_path / "pwned"
    plant_hostile_git_config(git_repo, marker)
    context = mca.WorkspaceContext.build(git_repo)
    assert not list(tmp_path.glob("pwned*"))
    assert "file0.txt" in context.status and context.branch == "trunk"
    subprocess.run(["git", "status"], cwd=git_repo, capture_output=True)   # plain git would have run them
    assert list(tmp_path.glob("pwned*"))


def test_a_failing_git_says_so_instead_of_reporting_a_clean_tree(git_repo):
    (git_repo / ".git" / "index").write_bytes(b"not an index")
    context = mca.WorkspaceContext.build(git_repo)
    assert context.status.startswith("unknown (") and "index" in context.status


def test_a_worktree_set_outside_the_repository_does_not_move_the_root(git_repo, tmp_path):
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "private.txt").write_text("do not list me")
    git(git_repo, "config", "core.worktree", str(outside))
    context = mca.WorkspaceContext.build(git_repo)
    assert context.repo_root == str(git_repo.resolve())


# --- a stranger's repository, round two: git's own programs, a borrowed worktree ------

def evil_program(tmp_path, marker):
    """A program that leaves a mark when anything runs it."""
    program = tmp_path / "evil.sh"
    program.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    program.chmod(0o755)
    return str(program)


def ship_as_partial_clone(repo, url, **settings):
    """Make `repo` a partial clone whose first commit is missing, so that reading its log makes git fetch
    the commit from `url`, the promisor remote; with `settings` added to its config."""
    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.strip()
    (repo / ".git" / "objects" / first[:2] / first[2:]).unlink()
    for key, value in {"core.repositoryformatversion": "1", "extensions.partialClone": "origin",
                       "remote.origin.url": url, "remote.origin.promisor": "true", **settings}.items():
        git(repo, "config", key, value)


def everything_the_agent_asks_git(repo):
    """The snapshot at start, and the file list a request's map, search and edit checks read."""
    context = mca.WorkspaceContext.build(repo)
    mca.repo_files(mca.GitRunner(repo))
    return context


class AskingForAPassword(BaseHTTPRequestHandler):
    """An HTTP git server that wants a password, so that git asks its credential helpers."""

    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@needs_symlinks
@pytest.mark.parametrize("transport", ["upload-pack", "ssh command", "git proxy", "credential helper",
                                       "askpass"])
def test_a_partial_clones_lazy_fetch_runs_no_program_the_repository_names(git_repo, tmp_path, transport):
    marker = tmp_path / "pwned"
    program = evil_program(tmp_path, marker)
    server = ThreadingHTTPServer(("127.0.0.1", 0), AskingForAPassword)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    http_url = f"http://127.0.0.1:{server.server_address[1]}/repo.git"
    url, settings = {
        "upload-pack": (str(tmp_path / "elsewhere"), {"remote.origin.uploadpack": program}),
        "ssh command": ("ssh://example.invalid/repo.git", {"core.sshCommand": program}),
        "git proxy": ("git://example.invalid/repo.git", {"core.gitProxy": program}),
        "credential helper": (http_url, {"credential.helper": program}),
        "askpass": (http_url, {"core.askPass": program}),
    }[transport]
    ship_as_partial_clone(git_repo, url, **settings)
    try:
        context = everything_the_agent_asks_git(git_repo)
    finally:
        server.shutdown()
    assert not marker.exists()
    assert context.branch == "trunk" and context.recent_commits[0].endswith("commit number 5")


@needs_symlinks
@pytest.mark.parametrize("setting", ["core.pager", "pager.log", "pager.status", "core.editor", "diff.external",
                                     "diff.evil.textconv", "diff.evil.command", "merge.evil.driver",
                                     "interactive.diffFilter", "sequence.editor"])
def test_no_other_setting_that_names_a_program_runs(git_repo, tmp_path, setting):
    marker = tmp_path / "pwned"
    (git_repo / ".gitattributes").write_text("* diff=evil merge=evil\n")
    git(git_repo, "config", setting, evil_program(tmp_path, marker))
    everything_the_agent_asks_git(git_repo)
    assert not marker.exists()
    assert setting.lower() in " ".join(mca.GitRunner(git_repo).settings).lower()   # switched off all the same


def test_core_worktree_in_the_shipped_config_does_not_widen_the_workspace(tmp_path):
    outer = tmp_path / "outer"
    repo, sibling = outer / "project", outer / "other"
    repo.mkdir(parents=True)
    sibling.mkdir()
    (sibling / ".env").write_text("SECRET=sibling-token\n")
    git(repo, "init", "-q")
    git(repo, "config", "core.worktree", "../..")   # relative to .git: the folder above the project
    context = mca.WorkspaceContext.build(repo)
    assert context.repo_root == str(repo.resolve())
    assert "other" not in context.files and "sibling-token" not in context.text()
    agent = make_agent(repo, [])
    agent.workspace, agent.root = context, Path(context.repo_root)
    assert agent.run_tool("read_file", {"path": "other/.env"}).startswith("error:")
    agent.run_tool("write_file", {"path": "other/note.txt", "content": "x"})
    assert (repo / "other" / "note.txt").exists() and not (sibling / "note.txt").exists()


def test_a_git_file_that_borrows_another_repository_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    git(victim, "init", "-q")
    (victim / "payroll_secret.py").write_text("SALARY = 1\n")
    git(victim, "add", ".")
    git(victim, "-c", "user.email=v@v", "-c", "user.name=v", "commit", "-q", "-m", "victim's private commit")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".git").write_text("gitdir: ../victim/.git\n")
    (repo / "app.py").write_text("def main(): pass\n")
    context = mca.WorkspaceContext.build(repo)
    assert "private commit" not in context.text() and "payroll" not in context.text()
    assert context.repo_root == str(repo.resolve()) and context.files == "- app.py: def main(): pass"
    assert "names a repository that is not this folder's" in context.status


def test_a_linked_worktree_and_a_submodule_keep_their_branch_status_and_commits(git_repo, tmp_path):
    worktree = tmp_path / "feature-tree"
    git(git_repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    (worktree / "draft.txt").write_text("new\n")
    context = mca.WorkspaceContext.build(worktree)
    assert (context.repo_root, context.branch) == (str(worktree.resolve()), "feature")
    assert context.status == "?? draft.txt" and context.recent_commits[0].endswith("commit number 5")
    assert "- README.md" in context.files.splitlines()

    main = tmp_path / "main"
    main.mkdir()
    git(main, "init", "-q", "-b", "trunk")
    git(main, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(git_repo), "vendored")
    (main / "vendored" / "file1.txt").write_text("changed in the submodule\n")
    context = mca.WorkspaceContext.build(main / "vendored")
    assert context.repo_root == str((main / "vendored").resolve())
    assert context.status == "M file1.txt" and context.recent_commits[0].endswith("commit number 5")


@needs_symlinks
def test_a_git_index_that_is_a_fifo_does_not_hang_git(git_repo):
    (git_repo / ".git" / "index").unlink()
    os.mkfifo(git_repo / ".git" / "index")
    printed = finishes_within(4, "print(mca.WorkspaceContext.build(root).status)", git_repo)
    assert "index is not a regular file" in printed


@pytest.mark.skipif(not os.path.isdir("/proc/1"), reason="a Linux /proc")
def test_a_walk_into_proc_skips_what_it_cannot_look_at():
    context = mca.WorkspaceContext.build("/proc")   # as if a bind mount or --cwd / led there
    assert context.repo_root == "/proc" and context.files


def can_run_as_nobody():
    """True if this test run can start the agent's Python as another user (it is root, and that user can
    read the module)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not Path("/usr/bin/python3").exists():
        return False
    check = subprocess.run(["/usr/bin/python3", "-c", "import mini_coding_agent"], user=65534,
                           capture_output=True, env={"PYTHONPATH": str(MODULE.parent)}, cwd="/")
    return check.returncode == 0


@needs_symlinks
def test_a_folder_the_user_cannot_open_is_skipped_by_the_walk(tmp_path_factory):
    base = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    for folder in (base, *base.parents[:-1]):   # the way down to it, for another user too
        folder.chmod(folder.stat().st_mode | 0o755) if folder.stat().st_uid == os.getuid() else None
    (base / "locked").mkdir()
    (base / "locked" / "inside.py").write_text("x = 1\n")
    (base / "app.py").write_text("def main(): pass\n")
    (base / "locked").chmod(0o644)   # listable, but nothing in it can be looked at
    code = "import mini_coding_agent as mca, sys; print(mca.WorkspaceContext.build(sys.argv[1]).files)"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        printed = subprocess.run([sys.executable, "-c", code, str(base)], capture_output=True, text=True,
                                 env=CHILD_ENV)
    elif can_run_as_nobody():
        printed = subprocess.run(["/usr/bin/python3", "-c", code, str(base)], capture_output=True, text=True,
                                 user=65534, env={"PYTHONPATH": str(MODULE.parent)}, cwd="/")
    else:
        pytest.skip("needs a user that file permissions apply to")
    (base / "locked").chmod(0o755)
    assert printed.returncode == 0 and printed.stdout == "- app.py: def main(): pass\n", printed.stderr


# --- the map of the repository's files, and the files a request names ----------------

def test_the_map_lists_tracked_files_with_their_top_level_definitions(git_repo):
    (git_repo / "pkg" / "calc.py").write_text("import os\n\nRATE = 3\n\ndef add(a, b):\n    def inner():\n"
                                             "        pass\n    return a + b\n\nclass Box:\n    pass\n")
    (git_repo / "logo.png").write_bytes(b"\x89PNG\0\0def fake():\n")
    git(git_repo, "add", ".")
    context = mca.WorkspaceContext.build(git_repo)
    lines = context.files.splitlines()
    assert "- pkg/calc.py: RATE = 3; def add(a, b); class Box" in lines   # nested `def inner` is not top level
    assert "- logo.png" in lines   # a binary file: its name only
    assert "- files, with their top-level definitions:\n- AGENTS.md" in context.text()


def test_the_map_lists_new_files_but_not_ignored_ones(git_repo):
    (git_repo / ".gitignore").write_text("build/\n")
    (git_repo / "build").mkdir()
    (git_repo / "build" / "out.py").write_text("def generated(): pass\n")
    (git_repo / "new_module.py").write_text("def fresh(): pass\n")   # written, not yet added
    lines = mca.WorkspaceContext.build(git_repo).files.splitlines()
    assert "- new_module.py: def fresh(): pass" in lines and not any("build/" in line for line in lines)


def test_the_map_never_reads_through_a_link_out_of_the_repository(git_repo, tmp_path):
    (tmp_path / "secret.py").write_text("def TOKEN_abc123(): pass\n")
    (git_repo / "notes.py").symlink_to(tmp_path / "secret.py")
    git(git_repo, "add", ".")
    files = mca.WorkspaceContext.build(git_repo).files
    assert "- notes.py" in files.splitlines() and "TOKEN_abc123" not in files


def test_the_map_of_a_folder_outside_git_walks_it_skipping_ignored_folders(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.js").write_text("export function main() {\n}\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    files = mca.WorkspaceContext.build(tmp_path).files
    assert files.splitlines() == ["- src/app.js: export function main()"]


def test_a_large_repository_map_is_cut_to_its_budget(git_repo):
    for n in range(300):
        (git_repo / f"module_{n:03}.py").write_text(f"def function_number_{n}():\n    pass\n")
    git(git_repo, "add", ".")
    files = mca.WorkspaceContext.build(git_repo).files
    assert len(files) <= mca.MAP_CHARS + 60 and "[truncated" in files


def test_the_test_run_a_request_names_is_found_with_its_flags_and_paths_only():
    def named(request):
        found = mca.TEST_COMMAND.search(request)
        return found and (found[1] or found[2])
    assert named("The tests fail (python -m unittest). Fix it.") == "python -m unittest"
    assert named("make `pytest -q tests/test_a.py` pass") == "pytest -q tests/test_a.py"
    assert named("`pytest -k total` fails") == "pytest -k total"   # in backquotes: as written
    assert named("pytest -k total fails") == "pytest -k"   # bare: flags and paths only
    assert named("`pytest -k total; rm -rf ~`") == "pytest -k"   # nothing after a ; either way
    assert named("npm test fails since yesterday") == "npm test"   # the request's words stay out
    assert named("go test ./... fails") == "go test ./..."
    assert named("pytest tests/a.py; rm -rf ~") == "pytest tests/a.py"   # nor does a second command
    assert named("pytest $(rm -rf ~)") == "pytest"
    assert named("what does mypytest do?") is None


def test_the_files_a_request_names_are_found_by_path_or_by_a_name_only_one_file_has():
    names = ["src/app.py", "src/util.py", "tests/test_app.py", "a/config.toml", "b/config.toml"]
    assert mca.named_files("fix ./src/util.py and app.py.", names) == ["src/util.py", "src/app.py"]
    assert mca.named_files("change config.toml", names) == []   # two files have that name: no guess
    assert mca.named_files("look at a/config.toml, app.py, util.py, test_app.py", names) == \
        ["a/config.toml", "src/app.py", "src/util.py"]   # at most MAX_NAMED_FILES
    assert mca.named_files("what does missing.py do?", names) == []
