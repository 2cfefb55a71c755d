"""Component 1: the live repo context, read once from git and the project's docs."""

import os
import shutil
import subprocess
import time

import pytest

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


def test_the_files_a_request_names_are_found_by_path_or_by_a_name_only_one_file_has():
    names = ["src/app.py", "src/util.py", "tests/test_app.py", "a/config.toml", "b/config.toml"]
    assert mca.named_files("fix ./src/util.py and app.py.", names) == ["src/util.py", "src/app.py"]
    assert mca.named_files("change config.toml", names) == []   # two files have that name: no guess
    assert mca.named_files("look at a/config.toml, app.py, util.py, test_app.py", names) == \
        ["a/config.toml", "src/app.py", "src/util.py"]   # at most MAX_NAMED_FILES
    assert mca.named_files("what does missing.py do?", names) == []
