"""Model-free negative writers: deterministic stand-ins for the smoke profile and as fallbacks.

A generator LLM is slow on a CPU and absent in CI, but the series must still produce every kind
of pair. These writers are classic, transparent techniques that need no weights:

* ``markov_mimic``: a word-bigram Markov chain over the exemplar's words continues the opening.
  It strings together word pairs the author wrote, so its vocabulary is the author's while the
  grammar and content drift: the spirit of ``style_mimic``. Because it reuses the exemplar's own
  words, its character n-grams are closer to the exemplar than the real text's are, so a
  character n-gram judge always picks it (0.00 on style_mimic in run ``cpu-b``).
* ``restyle``: three template voices (a shouty post, one long semicolon chain, lowercase chat)
  filled with the real text's content words: the spirit of ``style_random``, and easy to spot
  without any exemplar.
* ``synonym_swap``: swaps 3-4 common words for close synonyms from a small built-in table and
  touches nothing else: exactly ``minor_replace``.

``smoke`` and ``cpu`` use them for every negative (``negatives_generator="offline"``: SmolLM2's
own negatives were mostly a news sentence or the opening repeated, notebook 02); the GPU profiles
ask their model for style_mimic and style_random, and any profile can use ``synonym_swap`` where a
small model cannot follow the minor_replace instruction.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

#: Close synonyms for common words (both directions are not needed: we only swap keys).
#:
#: Curated so that a swap leaves no tell a character n-gram model could use instead of style.
#: Measured on Reuters C50 (all 5,000 texts): every replacement appears in the corpus at least a
#: tenth as often as the word it replaces (:func:`synonym_tells` checks it). The first table had
#: "said" -> "stated": "said" occurs 39,984 times in C50 and "stated" 68, so nearly every
#: minor_replace pair carried a word no Reuters author writes, and an n-gram baseline "solved" the
#: type without reading style. Entries that change the meaning in news prose were removed too
#: ("week" -> "weekend", "sell" -> "offer", "last" -> "final", "sales" -> "revenue", a verb
#: swapped for a noun as in "win" -> "victory").
SYNONYMS: dict[str, str] = {
    "big": "large", "large": "big", "small": "little", "little": "small", "fell": "dropped",
    "fall": "drop", "increase": "rise", "decrease": "drop", "buy": "purchase",
    "bought": "purchased", "company": "firm", "firm": "company", "begin": "start",
    "began": "started", "start": "begin", "started": "began", "ended": "finished",
    "showed": "revealed", "quick": "fast", "quickly": "rapidly", "fast": "quick",
    "slow": "sluggish", "slowly": "gradually", "important": "significant", "often": "frequently",
    "usually": "typically", "about": "around", "around": "about", "almost": "nearly",
    "nearly": "almost", "though": "although", "because": "since", "think": "believe",
    "thinks": "believes", "believe": "think", "tell": "inform", "need": "require",
    "needs": "requires", "needed": "required", "give": "provide", "gave": "provided",
    "keep": "retain", "kept": "retained", "goal": "aim", "aim": "goal", "problem": "issue",
    "problems": "issues", "result": "outcome", "deal": "agreement", "agreement": "deal",
    "great": "excellent", "hard": "difficult", "difficult": "hard", "easy": "simple",
    "enough": "sufficient", "whole": "entire", "entire": "whole", "rapid": "swift",
    "sharp": "steep", "steady": "stable", "stable": "steady", "sad": "unhappy", "tired": "weary",
    "afraid": "scared", "car": "vehicle", "answer": "reply", "answered": "replied",
    "try": "attempt", "maybe": "perhaps", "perhaps": "maybe", "soon": "shortly",
    "now": "currently", "recent": "latest", "country": "nation", "nation": "country",
    "officials": "authorities", "growth": "expansion", "shares": "stocks", "stocks": "shares",
}  # fmt: skip

#: A replacement rarer than this share of the word it replaces is a tell (see SYNONYMS).
MIN_TELL_RATIO = 0.1


def synonym_tells(
    texts: Sequence[str], table: dict[str, str] | None = None, min_ratio: float = MIN_TELL_RATIO
) -> dict[str, tuple[int, int]]:
    """Entries of ``table`` whose replacement the authors of ``texts`` (almost) never write.

    Returns ``{word: (count of word, count of replacement)}`` for every entry whose replacement
    occurs less than ``min_ratio`` times as often as the word it replaces, among words that occur
    at all. Run it on your own corpus before trusting minor_replace pairs made from it.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w.lower() for w in re.findall(r"[A-Za-z]+", text))
    out = {}
    for word, swap in (table or SYNONYMS).items():
        if counts[word] and counts[swap] < min_ratio * counts[word]:
            out[word] = (counts[word], counts[swap])
    return out


_TOKEN = re.compile(r"^([^A-Za-z]*)([A-Za-z]+)([^A-Za-z]*)$")


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def synonym_swap(text: str, n: int, seed: int) -> str:
    """Replace ``n`` words that have a synonym in :data:`SYNONYMS`; keep all else byte-identical.

    Capitalised words are left alone unless they start a sentence (they may be names), and so
    are numbers. When fewer than ``n`` words qualify, as many as possible are swapped (the
    minor_replace filter then decides whether the pair is kept).
    """
    tokens = text.split(" ")
    candidates = []
    for i, tok in enumerate(tokens):
        m = _TOKEN.match(tok)
        if not m or m.group(2).lower() not in SYNONYMS:
            continue
        starts_sentence = i == 0 or tokens[i - 1].endswith((".", "!", "?"))
        if m.group(2)[:1].isupper() and not starts_sentence:
            continue
        candidates.append(i)
    rng = random.Random(seed)
    for i in sorted(rng.sample(candidates, min(n, len(candidates)))):
        pre, word, post = _TOKEN.match(tokens[i]).groups()  # type: ignore[union-attr]
        tokens[i] = pre + _match_case(word, SYNONYMS[word.lower()]) + post
    return " ".join(tokens)


_SENT_END = re.compile(r"(?<=[.!?])\s+")


def markov_mimic(exemplar_texts: Sequence[str], prompt: str, n_words: int, seed: int) -> str:
    """Continue ``prompt`` with a word-bigram chain trained on the author's exemplars.

    The chain starts from the last word of the prompt when the author ever used it, otherwise
    from a sentence start of theirs, and stops at the first sentence end after ``n_words``.
    """
    chain: dict[str, list[str]] = defaultdict(list)
    starts: list[str] = []
    for text in exemplar_texts:
        for sentence in _SENT_END.split(text.strip()):
            words = sentence.split()
            if not words:
                continue
            starts.append(words[0])
            for a, b in itertools.pairwise(words):
                chain[a].append(b)
    if not starts:
        return ""
    rng = random.Random(seed)
    last = prompt.split()[-1] if prompt.split() else ""
    word = rng.choice(chain[last]) if chain.get(last) else rng.choice(starts)
    out = [word]
    while len(out) < 4 * n_words:
        if len(out) >= n_words and out[-1].endswith((".", "!", "?")):
            break
        nxt = chain.get(out[-1])
        word = rng.choice(nxt) if nxt else rng.choice(starts)
        out.append(word)
    text = " ".join(out)
    return text if text.endswith((".", "!", "?")) else text + "."


#: Sentence templates for three voices far from news prose; ``{}`` slots take the prompt's words.
VOICES: tuple[tuple[str, ...], ...] = (
    (  # shouty social-media post
        "OMG, {} again?!",
        "Honestly, {} is SO wild right now!!",
        "Can't even with {} lol.",
        "Who else is obsessed with {}?!",
        "Not me thinking about {} all day!!",
        "{} and {}... iconic!",
    ),
    (  # ornate, old-fashioned narrator
        "Verily, the matter of {} weighed upon every heart; and none could say what {} portended.",
        "It was, one must confess, a season much given to {}.",
        "And so the talk of {} drifted, like autumn mist, over the assembled company.",
        "Whosoever speaks of {} speaks, in truth, of {}; and thereby hangs a tale.",
        "Let it be recorded, then, that {} was never wholly forgotten.",
    ),
    (  # lowercase chat reply
        "so basically {} happened",
        "idk man {} is kinda whatever",
        "ok but like {} tho",
        "tbh {} was not on my list today",
        "anyway {} and {} lol",
        "brb thinking about {}",
    ),
)


def restyle(text: str, voice: int, n_words: int = 60) -> str:
    """Talk about the same topic in a clearly different voice (``voice`` mod 3).

    Content words of ``text`` fill the slots of the voice's sentence templates until about
    ``n_words`` words, so the negative is on topic but shares almost no wording with the
    author's real continuation.
    """
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    topics = [w for w in words if len(w) > 4 and w.isalpha()] or ["things"]
    templates = VOICES[voice % len(VOICES)]
    rng = random.Random(voice)
    out: list[str] = []
    while sum(len(s.split()) for s in out) < n_words:
        template = rng.choice(templates)
        fills = [rng.choice(topics) for _ in range(template.count("{}"))]
        sentence = template.format(*fills)
        out.append(sentence[:1].upper() + sentence[1:] if voice % 3 != 2 else sentence)
    return " ".join(out)
