"""Best-of-N and the PersRM as a reward (notebook 06): tasks, tournaments, picks and referees.

The judge here is the package's deterministic offline backend with a rule whose verdicts we can
predict, so the counting can be checked exactly; notebook 06 runs the same code with the real
trained judge.
"""

from __future__ import annotations

import re

import pytest
import torch

from persrm_utils.data.exemplars import collect
from persrm_utils.errors import DataError
from persrm_utils.generation.requests import GenRequest, OfflineBackend
from persrm_utils.profiles import get_profile
from persrm_utils.use.best_of_n import (
    PersRMReward,
    bon_tasks,
    collect_drafts,
    comparison_plan,
    draft_requests,
    policy_rows,
    random_picks,
    run_tournaments,
    score_tournament,
    style_distances,
    stylometric_picks,
    summary_table,
)


@pytest.fixture(scope="module")
def exemplars():
    return collect(get_profile("smoke"))


def _longer_wins(request: GenRequest) -> str:
    """A judge that prefers the longer response (ties: A), written in the judge's format."""
    text = request.last_user_message()
    a = re.search(r"\[Response A\] (.*?)\n\n\[Response B\]", text, re.S).group(1)
    b = re.search(r"\[Response B\] (.*?)\n\n", text, re.S).group(1)
    letter = "A" if len(a) >= len(b) else "B"
    return f"<think>A has {len(a)} characters, B has {len(b)}.</think><answer>[[{letter}]]</answer>"


def test_tasks_come_from_unseen_authors_and_never_show_their_own_text(exemplars):
    tasks = bon_tasks(exemplars, n_tasks=5, k=2)
    test_authors = {e.author_id for e in exemplars if e.meta["split"] == "test"}
    assert len(tasks) == min(5, sum(1 for e in exemplars if e.meta["split"] == "test"))
    by_id = {e.text_id: e for e in exemplars}
    for task in tasks:
        assert task.author_id in test_authors
        assert task.text_id not in task.exemplar_ids and len(task.exemplar_ids) == 2
        assert all(by_id[i].author_id == task.author_id for i in task.exemplar_ids)
        assert task.real == by_id[task.text_id].output
    # authors take turns: the first len(test_authors) tasks are one per author
    first = tasks[: len(test_authors)]
    assert len({t.author_id for t in first}) == len(first)
    assert bon_tasks(exemplars, 5, 2) == tasks  # seeded


def test_tasks_need_an_author_with_k_plus_one_texts(exemplars):
    with pytest.raises(DataError, match="no author of split 'test' has 100 or more texts") as err:
        bon_tasks(exemplars, 3, k=99)
    assert "texts_per_author" in str(err.value)


def test_draft_requests_are_sampled_and_reproducible(exemplars):
    tasks = bon_tasks(exemplars, 2, k=1)
    requests = draft_requests(tasks, n=3, max_words=40)
    assert len(requests) == 6 and len({r.seed for r in requests}) == 6
    assert all(r.temperature == 1.0 for r in requests)
    assert [r.key for r in requests] == [r.key for r in draft_requests(tasks, 3, 40)]
    assert tasks[0].prompt.strip() in requests[0].last_user_message()
    drafts = collect_drafts(tasks, OfflineBackend().generate(requests), 3)
    assert set(drafts) == {t.task_id for t in tasks} and all(len(d) == 3 for d in drafts.values())
    with pytest.raises(DataError, match="5 generations for 2 tasks x 3 drafts"):
        collect_drafts(tasks, OfflineBackend().generate(requests[:5]), 3)


def test_tournament_counts_wins_and_invalid_verdicts():
    assert comparison_plan(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    # draft 2 wins every comparison it is in; one comparison (1 vs 0) has no valid verdict
    letters = ["A", "B", None, "B", "A", "A"]
    t = score_tournament("t", 3, letters)
    assert t.wins == [1.0, 0.0, 4.0] and t.invalid == 1 and t.comparisons == 4
    assert t.scores == [0.25, 0.0, 1.0] and t.pick == 2 and not t.tied
    assert score_tournament("t", 2, ["A", "A"]).tied  # each wins once: a tie, broken by index
    with pytest.raises(DataError, match="2 verdicts for a 3-draft tournament, which has 6"):
        score_tournament("t", 3, ["A", "B"])


def test_run_tournaments_with_a_predictable_judge(exemplars):
    tasks = bon_tasks(exemplars, 2, k=1)
    by_id = {e.text_id: e for e in exemplars}
    drafts = {
        t.task_id: ["short.", "a much longer draft than that.", "medium draft."] for t in tasks
    }
    judge = OfflineBackend(_longer_wins, name="longer-wins")
    tours = run_tournaments(judge, tasks, drafts, by_id, max_new_tokens=64)
    for t in tasks:
        tour = tours[t.task_id]
        assert tour.wins == [0.0, 4.0, 2.0] and tour.invalid == 0 and tour.pick == 1
        assert len(tour.verdicts) == 6 and tour.verdicts[0]["completion"].startswith("<think>")


def test_stylometric_pick_prefers_the_authors_own_words(exemplars):
    tasks = bon_tasks(exemplars, 3, k=2)
    by_id = {e.text_id: e for e in exemplars}
    drafts = {
        t.task_id: ["zzz qqq xxx vvv.", by_id[t.exemplar_ids[0]].output, "Lorem ipsum dolor."]
        for t in tasks
    }
    assert set(stylometric_picks(tasks, drafts, by_id).values()) == {1}
    picks = random_picks(tasks, 3, seed=1)
    assert picks == random_picks(list(reversed(tasks)), 3, seed=1)  # per task, not per order
    assert all(0 <= p < 3 for p in picks.values())


def test_style_distance_is_smaller_for_the_authors_real_text(exemplars):
    tasks = bon_tasks(exemplars, 3, k=2)
    shouting = "WOW!!! Amazing!!! Totally unbelievable!!! Buy now!!! Do it!!!"
    texts = {t.task_id: [t.real, shouting, ""] for t in tasks}
    dist = style_distances(tasks, texts, exemplars)
    for t in tasks:
        real, other, empty = dist[t.task_id]
        assert 0 <= real < other
        assert empty != empty  # an empty draft has no style: NaN, not 0

    picks = {"random": {t.task_id: 1 for t in tasks}, "PersRM": {t.task_id: 0 for t in tasks}}
    tours = {t.task_id: score_tournament(t.task_id, 2, ["A", "A"]) for t in tasks}
    real_dist = {t.task_id: dist[t.task_id][0] for t in tasks}
    table = summary_table(picks, dist, None, real_dist, tours, n_boot=200).set_index("method")
    assert list(table.index) == ["random", "PersRM", "author's real text"]
    assert table.loc["PersRM", "style distance"] < table.loc["random", "style distance"]
    assert table.loc["PersRM", "style distance"] == pytest.approx(
        table.loc["author's real text", "style distance"]
    )
    assert table.loc["PersRM", "sd_low"] <= table.loc["PersRM", "style distance"]


def test_persrm_reward_is_the_win_rate_within_each_group(exemplars):
    tasks = bon_tasks(exemplars, 2, k=1)
    by_id = {e.text_id: e for e in exemplars}
    reward = PersRMReward(OfflineBackend(_longer_wins, name="longer-wins"), tasks, by_id, 64)
    a, b = tasks[0].task_id, tasks[1].task_id
    completions = [[{"role": "assistant", "content": c}] for c in ("xx", "x", "xxx", "y", "yy")]
    got = reward(prompts=[None] * 5, completions=completions, task_id=[a, a, a, b, b])
    assert got == [0.5, 0.0, 1.0, 0.0, 1.0]
    assert reward.calls == 1 and reward.comparisons == 6 + 2 and reward.invalid == 0
    with pytest.raises(DataError, match="single completion"):
        reward(prompts=[None], completions=completions[:1], task_id=[a])


def test_grpo_of_a_policy_with_the_persrm_as_reward_changes_the_policy(
    exemplars, tmp_path, monkeypatch
):
    """The reward-model-as-function pattern runs through the real GRPOTrainer and learns."""
    from persrm_utils.train.grpo import load_policy, train_grpo

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", grpo_max_steps=2, max_completion_length=16,
                          grpo_learning_rate=5e-2)  # fmt: skip
    tasks = bon_tasks(exemplars, 2, k=1)
    by_id = {e.text_id: e for e in exemplars}
    reward = PersRMReward(OfflineBackend(_longer_wins, name="longer-wins"), tasks, by_id, 64)
    policy = load_policy(profile, None)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_B" in n}
    result = train_grpo(profile, policy_rows(tasks, 40), tmp_path / "policy", (reward,),
                        loaded=policy, resume=False)  # fmt: skip
    assert result.steps == 2 and reward.calls == 2
    assert all("rewards/persrm_win_rate/mean" in h for h in result.history)
    after = dict(policy.model.named_parameters())
    assert all(not torch.equal(before[n], after[n].detach()) for n in before)


def test_drafts_are_generated_in_batches_in_the_order_asked(exemplars, tmp_path, monkeypatch):
    """N sampled drafts per opening used to cost N ``generate`` calls each (sampled requests ran
    one at a time); now one call per batch, each draft still under its own seed."""
    from persrm_utils.generation.local import TransformersBackend
    from persrm_utils.models.loader import load_model

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    policy = load_model(get_profile("smoke"))
    tasks = bon_tasks(exemplars, n_tasks=2, k=1)
    requests = draft_requests(tasks, n=4, max_words=6)
    calls = []
    real = policy.model.generate

    def counting(*args, **kwargs):
        calls.append(len(kwargs["input_ids"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(policy.model, "generate", counting)
    backend = TransformersBackend(policy.model, policy.tokenizer, batch_size=8)
    results = backend.generate(requests)
    assert calls == [8]
    assert [r.key for r in results] == [r.key for r in requests]
    alone = backend.generate([requests[5]])[0]  # task 1, draft 1, on its own
    assert results[5].text == alone.text
    drafts = collect_drafts(tasks, results, 4)
    assert [len(d) for d in drafts.values()] == [4, 4]
