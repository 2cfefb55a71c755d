"""Component 1: the live repo context, read once from git and the project's docs."""

import shutil
import subprocess

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
    assert (context.branch, context.default_branch, context.status) == ("-", "main", "clean")
    assert context.recent_commits == [] and context.project_docs == {}


def test_text_renders_the_workspace_block(git_repo):
    text = mca.WorkspaceContext.build(git_repo).text()
    lines = text.splitlines()
    assert lines[0] == "Workspace:"
    for expected in (f"- repo_root: {git_repo.resolve()}", "- branch: trunk", "- default_branch: main",
                     "M file0.txt", "commit number 5", "--- AGENTS.md ---", "Run pytest."):
        assert any(expected in line for line in lines), expected
