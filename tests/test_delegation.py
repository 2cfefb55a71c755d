"""Component 6: delegate hands a sub-task to a bounded, read-only child agent."""

from conftest import common_prefix_length, make_agent


def test_delegate_returns_the_childs_answer(repo):
    agent = make_agent(repo, [
        '<tool>{"name": "delegate", "args": {"task": "What does hello.txt hold?", "max_steps": 2}}</tool>',
        '<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',   # the child's step
        "<final>alpha, beta and gamma</final>",                                 # the child's answer
        "<final>The helper says: alpha, beta and gamma.</final>",
    ])
    assert agent.ask("Ask a helper about hello.txt") == "The helper says: alpha, beta and gamma."
    tool = agent.session["history"][1]
    assert tool["content"] == ("delegate_result:\nalpha, beta and gamma\n"
                               "(the helper can only read: it changed no file; make the changes yourself)")
    child_prompt = agent.model_client.prompts[1]
    assert "- task: What does hello.txt hold?" in child_prompt
    assert "Ask a helper about hello.txt" in child_prompt   # the parent's transcript


def test_the_child_is_read_only(repo):
    agent = make_agent(repo, [
        '<tool>{"name": "delegate", "args": {"task": "Create evil.txt"}}</tool>',
        '<tool name="write_file" path="evil.txt"><content>x</content></tool>',
        "<final>could not write</final>",
        "<final>done</final>",
    ], approval_policy="auto")
    agent.ask("delegate a write")
    assert not (repo / "evil.txt").exists()
    child_session = next(agent.session_store.children().root.glob("*.json")).read_text()
    assert "error: approval denied for write_file" in child_session


def test_depth_is_bounded(repo):
    agent = make_agent(repo, [
        '<tool>{"name": "delegate", "args": {"task": "nest"}}</tool>',
        '<tool>{"name": "delegate", "args": {"task": "nest deeper"}}</tool>',
        "<final>child gave up</final>",
        "<final>parent done</final>",
    ])
    agent.ask("nest")
    child_prompt = agent.model_client.prompts[1]
    assert "- Use only list_files, read_file, search; other tools are refused." in child_prompt
    assert "error: unknown tool 'delegate'" in agent.model_client.prompts[2]
    assert len(agent.model_client.prompts) == 4


def test_the_child_gets_at_most_the_parents_step_limit(repo):
    steps = ['<tool>{"name": "list_files", "args": {"path": "."}}</tool>',
             '<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',
             '<tool>{"name": "read_file", "args": {"path": "README.md"}}</tool>']
    agent = make_agent(repo, ['<tool>{"name": "delegate", "args": {"task": "t", "max_steps": 1000}}</tool>',
                              *steps, "<final>parent done</final>"], max_steps=2)
    agent.ask("go")
    assert agent.session["history"][1]["content"].startswith("delegate_result:\nStopped after 2 tool steps")


def test_child_sessions_are_kept_apart_from_resumable_ones(repo):
    agent = make_agent(repo, ['<tool>{"name": "delegate", "args": {"task": "t"}}</tool>',
                              "<final>child</final>", "<final>parent</final>"])
    agent.ask("go")
    store = agent.session_store
    assert store.newest_first() == [agent.session["id"]]
    assert len(list(store.children().root.glob("*.json"))) == 1


def test_the_helpers_prompts_extend_the_parents_so_the_cache_serves_both(repo):
    agent = make_agent(repo, [
        '<tool>{"name": "read_file", "args": {"path": "README.md"}}</tool>',
        '<tool>{"name": "delegate", "args": {"task": "What does hello.txt hold?", "max_steps": 2}}</tool>',
        '<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',   # the helper's steps
        "<final>alpha, beta and gamma</final>",
        "<final>Done.</final>",
    ])
    agent.ask("Read the README, then ask a helper about hello.txt")
    parent_before, child_first, child_last, parent_after = agent.model_client.prompts[1:5]
    transcript_end = parent_before.index("\n\nMemory:")
    assert child_first.startswith(parent_before[:transcript_end])   # the parent's prefix and transcript
    assert child_last.startswith(child_first[:child_first.index("\n\nMemory:")])
    shared = common_prefix_length(parent_after, child_last)
    assert shared >= transcript_end   # everything the parent's own previous prompt would have given


def test_in_chat_turns_the_helper_goes_on_from_the_parents_turns(repo):
    agent = make_agent(repo, [
        '<tool>{"name": "delegate", "args": {"task": "What does hello.txt hold?", "max_steps": 2}}</tool>',
        '<tool>{"name": "read_file", "args": {"path": "hello.txt"}}</tool>',   # the helper's steps
        "<final>alpha, beta and gamma</final>",
        "<final>Done.</final>",
    ])
    agent.model_client.chat = True
    agent.ask("Ask a helper about hello.txt")
    parent_before, child_first, child_last, parent_after = agent.model_client.prompts
    assert child_first[:len(parent_before)] == parent_before   # the server's cache serves all of it
    assert child_first[-2]["content"].startswith("Helper's task:")
    assert child_first[-1]["content"] == "What does hello.txt hold?"
    assert child_last[:len(child_first)] == child_first
    assert parent_after[:len(parent_before)] == parent_before
    assert parent_after[-1]["content"].startswith("Result of delegate:\ndelegate_result:\nalpha, beta")


def test_a_helper_is_refused_when_the_window_has_no_room_for_it(repo):
    agent = make_agent(repo, ['<tool>{"name": "delegate", "args": {"task": "look"}}</tool>', "<final>ok</final>"],
                       num_ctx=1800, max_new_tokens=256)
    agent.ask("delegate")
    assert "too little of the context window is left for a helper" in agent.session["history"][1]["content"]
