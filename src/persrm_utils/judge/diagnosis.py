"""What happened to this judge, in words: format not learned, collapsed to one letter, or learned.

Three numbers tell most of the story of a pairwise judge evaluated in both A/B orders:

* the **valid-verdict rate**: how often it ends with a readable ``<answer>[[X]]</answer>``;
* **says A**: the share of valid verdicts that are "A". The real text is shown as A exactly half
  of the time (both orders), so an unbiased judge sits near 0.5; 0.0 or 1.0 means it answers one
  letter whatever the texts are;
* **swap consistency**: the share of pairs where it picks the *same text* in both orders. A
  judge that reads the texts is consistent; one that reads only the position never is.

A judge that collapsed onto one letter scores exactly 0.5, which looks like "a bit worse than
hoped" in a table and is in fact "did not read the texts at all". This module turns the numbers
into that sentence and into what to change, so notebooks 03, 05 and 06 say it out loud.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from persrm_utils.errors import DataError
from persrm_utils.judge.judging import Judgement

State = Literal["no_data", "empty", "format_not_learned", "collapsed", "chance", "learned"]

#: Below this valid-verdict rate the judge has not learned the output format.
MIN_VALID = 0.5
#: "says A" outside [COLLAPSE, 1 - COLLAPSE] is a collapse onto one letter.
COLLAPSE = 0.1
#: Below this swap consistency a judge that beats chance is named as leaning on one letter
#: (run cpu-e's judge after GRPO: accuracy 0.639, says A 0.14, swap consistency 0.28).
LEANING = 0.5
#: Fewer pairs than this and no interval is worth printing (a handful of pairs is anecdote).
MIN_PAIRS_FOR_CI = 10


@dataclass(frozen=True)
class Diagnosis:
    """The three numbers, the state they put the judge in, and a message for the learner."""

    state: State
    n_pairs: int
    valid_rate: float
    says_a: float | None
    swap_consistency: float | None
    accuracy: float
    message: str

    @property
    def usable(self) -> bool:
        """Whether the judge's verdicts carry information about the texts (06 needs that)."""
        return self.state == "learned"


def _rates(judgements: Sequence[Judgement]) -> tuple[int, float, float | None, float | None, float]:
    by_pair: dict[str, dict[bool, Judgement]] = {}
    for j in judgements:
        by_pair.setdefault(j.pair_id, {})[j.swap] = j
    valid = [j for j in judgements if j.letter is not None]
    n = len(judgements)
    valid_rate = len(valid) / n if n else 0.0
    says_a = sum(j.letter == "A" for j in valid) / len(valid) if valid else None
    both = [orders for orders in by_pair.values() if len(orders) == 2]
    consistent = [
        o[False].letter is not None
        and o[True].letter is not None
        and o[False].letter != o[True].letter
        for o in both
    ]
    swap = sum(consistent) / len(consistent) if consistent else None
    accuracy = sum(j.correct for j in judgements) / n if n else 0.0
    return len(by_pair), valid_rate, says_a, swap, accuracy


def diagnose(judgements: Sequence[Judgement]) -> Diagnosis:
    """Read a judge's verdicts (ideally every pair in both orders) and say what happened."""
    n_pairs, valid_rate, says_a, swap, accuracy = _rates(judgements)
    numbers = (
        f"{n_pairs} pairs: valid verdicts {valid_rate:.0%}, says A "
        f"{'n/a' if says_a is None else f'{says_a:.2f}'}, swap consistency "
        f"{'n/a' if swap is None else f'{swap:.2f}'}, accuracy {accuracy:.3f}."
    )
    if not judgements:
        return Diagnosis("no_data", 0, 0.0, None, None, 0.0, "No verdicts to read.")
    if valid_rate == 0.0 and all(not j.completion.strip() for j in judgements):
        # Even an untrained model writes *something*; nothing at all, on every pair, is what
        # weights broken by a learning rate far too high produce (the stage's own weight check
        # catches the worst of these before the adapter is saved).
        state: State = "empty"
        advice = (
            f"EMPTY: every one of the {len(judgements)} answers is empty, so the judge is "
            "broken, not merely untrained. The usual cause is a learning rate far too high for "
            "the stage that produced it: lower the learning rate (sft_learning_rate or "
            "grpo_learning_rate, e.g. by 10x), train that stage again (--force), and read a "
            "few raw completions."
        )
    elif valid_rate < MIN_VALID:
        state = "format_not_learned"
        advice = (
            "FORMAT NOT LEARNED: most outputs have no readable <answer>[[X]]</answer>. Train "
            "longer or at a higher learning rate, check that max_completion_length leaves room "
            "for the reasoning plus the answer tag, and read a few raw completions."
        )
    elif says_a is not None and not COLLAPSE <= says_a <= 1 - COLLAPSE:
        letter = "A" if says_a > 0.5 else "B"
        state = "collapsed"
        advice = (
            f"COLLAPSED onto [[{letter}]]: it answers {letter} whatever the texts, so its accuracy "
            "is chance by construction and its verdicts carry no information. Make sure every "
            "training pair is seen in both A/B orders, raise the learning rate (LoRA on a small "
            "model needs about 1e-3), or start from easier negative types."
        )
    elif accuracy <= 0.55 or (swap is not None and swap < 0.2):
        state = "chance"
        advice = (
            "AT CHANCE: it gives both letters but rarely picks the same text in both orders, so "
            "it has not learned which text is the author's. More or easier training pairs, more "
            "epochs, or a reasoning that describes each response may help; see RESULTS.md for "
            "the recipes measured."
        )
    elif swap is not None and swap < LEANING and says_a is not None:
        letter = "A" if says_a > 0.5 else "B"
        state = "learned"
        advice = (
            f"LEARNED, BUT LEANING ON [[{letter}]]: it beats chance, yet it picks the same text in "
            f"both orders on fewer than half of the pairs and answers {letter} on most verdicts, "
            "so part of its accuracy is the letter, not the texts. Read the per-type table; train "
            "on both A/B orders of every pair (GRPO's kept prompts included), so no letter pays."
        )
    else:
        state = "learned"
        advice = (
            "LEARNED: it picks the same text in both orders on most pairs and beats chance. "
            "Check the interval and the per-type table before trusting it on a kind of pair."
        )
    return Diagnosis(state, n_pairs, valid_rate, says_a, swap, accuracy, f"{advice}\n{numbers}")


def require_usable(diagnosis: Diagnosis, what: str) -> None:
    """Stop with an explanation when a judge whose verdicts are noise would be used for ``what``.

    Notebook 06 ranks drafts with the judge: with a collapsed judge every draft "wins" the same
    way, and a best-of-N table built on it would report an artefact as a result.
    """

    if not diagnosis.usable:
        raise DataError(
            f"the judge is not usable for {what}: {diagnosis.message}",
            "fix the judge first (notebooks 03-05); 06 reports nothing from a judge whose "
            "verdicts do not depend on the texts.",
        )


# ----------------------------------------------------------------------------------------------
# Does it read the person? (the exemplar effect and the user-swap test)
# ----------------------------------------------------------------------------------------------

NOT_THE_PERSON = "LEARNED, BUT NOT THE PERSON"
HELPED_NOT_SHOWN = "HELPED BY THE EXEMPLARS, BUT NOT SHOWN TO READ THE PERSON"


def personalization_message(
    effect: Mapping[str, float] | None, user_swap: Mapping[str, float] | None = None
) -> str:
    """One sentence on whether the judge uses the exemplars, and what to change if it does not.

    ``effect`` is :func:`~persrm_utils.evaluate.metrics.exemplar_effect`'s result (accuracy with
    the exemplars minus with none, paired interval); ``user_swap`` is
    :func:`~persrm_utils.evaluate.metrics.user_swap_summary`'s, when the user-swap test ran. A
    judge whose exemplar-effect interval includes 0 may tell real from made-up text, but it has
    not been shown to read the person: that is "learned, but not the person". The user-swap
    test decides first when it ran: there only the exemplars tell the two texts apart, while
    a positive effect alone can come from anything the exemplars change (run cpu-e's effect,
    +0.048 [+0.022, +0.078], came with a user-swap accuracy of 0.510 [0.492, 0.530]).
    """
    if not effect or effect.get("n_pairs", 0) < MIN_PAIRS_FOR_CI:
        n = 0 if not effect else int(effect.get("n_pairs", 0))
        return (
            f"Exemplar effect not measured on enough pairs (n={n}): no verdict on personalization."
        )
    eff = f"{effect['effect']:+.3f} [{effect['ci_low']:+.3f}, {effect['ci_high']:+.3f}]"
    swap = ""
    if user_swap and user_swap.get("n_pairs", 0) >= MIN_PAIRS_FOR_CI:
        swap = (
            f"; user-swap accuracy {user_swap['accuracy']:.3f} [{user_swap['ci_low']:.3f}, "
            f"{user_swap['ci_high']:.3f}] (0.5: ignores the exemplars)"
        )
    numbers = f"exemplar effect {eff}, n={int(effect['n_pairs'])}{swap}."
    swap_measured = bool(swap)  # the user-swap test ran on enough items to have an interval
    if user_swap and swap_measured and user_swap["ci_low"] > 0.5:
        if effect["ci_low"] > 0.0:
            on_pairs = "The exemplars also measurably help on the test pairs."
        elif effect["ci_high"] < 0.0:
            on_pairs = (
                "On the test pairs the exemplars measurably LOWER its accuracy: a negative made "
                "from the exemplar's own words (style_mimic) can fool a judge that matches the "
                "writer's words, as it fools character n-grams (run cpu-long-c: style_mimic "
                "0.27 with the exemplar, 0.93 without). Compare the k = 0 verdicts per negative "
                "type before trusting it against such text."
            )
        else:
            on_pairs = (
                "On the test pairs the exemplars do not measurably help (the two texts alone "
                "may decide most of them)."
            )
        return (
            "READS THE PERSON: given two real texts that only the exemplars can tell apart, it "
            f"picks the exemplars' author above chance. {on_pairs} {numbers}"
        )
    if effect["ci_low"] <= 0.0 <= effect["ci_high"]:
        return (
            f"{NOT_THE_PERSON}: taking the exemplars away does not measurably change its "
            "accuracy, so what it learned is in the two texts (e.g. spotting machine-made "
            "text), not in the user's writing. What should teach it: pairs only the exemplars "
            "can decide, such as user-swap items (the same two real texts, each author's "
            "exemplars, no opening; `sft_user_swap_items`). On SmolLM2-135M, mixed into SFT "
            "with the style_random pairs (the cpu-long profile), they lifted the user-swap test "
            "just above chance in three probes and a full run (0.530 to 0.553; twice the items "
            "added 0.02); other mixes, two exemplars instead of one or texts twice as long at "
            "the same 74 steps (though the texts then carry more of the person: char n-grams "
            "rise), and the short cue-based reasoning stayed at chance (RESULTS.md lists the "
            "recipes measured). The untrained model often reads the person already (its "
            "likelihood, judge.likelihood: 0.76-0.78 on SmolLM2's user-swap items): training "
            "only on the user-swap items it reads under both users (`sft_user_swap_teacher`, the "
            "cpu-long profile) lifted a probe to 0.603 and a full run to 0.610, and twice as "
            "many of them (192) a probe to 0.695 and the full cpu-long run (cpu-long-c) to "
            "0.795, level with the likelihood itself; a larger model is not yet measured. "
            f"{numbers}"
        )
    if effect["ci_low"] > 0.0 and swap_measured:
        return (
            f"{HELPED_NOT_SHOWN}: its accuracy rises with the exemplars, but where only they "
            "can decide (the user-swap test) it is not above chance. Something else the "
            "exemplars change can give such a rise: run cpu-e's judge, leaning on one letter, "
            "leaned on it even more without them. Read its position bias (how often it says "
            f"A) before calling this personalization. {numbers}"
        )
    if effect["ci_low"] > 0.0:
        return f"READS THE PERSON: the exemplars measurably help. {numbers}"
    return (
        "WORSE WITH THE EXEMPLARS: its accuracy drops when it sees the user's writing; check "
        f"that training showed the exemplars the same way evaluation does. {numbers}"
    )
