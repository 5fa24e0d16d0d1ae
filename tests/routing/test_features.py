import math

import pytest

from routing.router import features
from routing.router.features import ItemView, JudgeLabel, features_table, item_features


def test_lexical_features():
    view = ItemView(
        key=1,
        prompt="Write a list",
        candidates=["- one\n- two\n```python\nx = 1\n```", "# Title\n**bold** one two"],
    )
    values = item_features(view, [])
    assert values["a_tokens"] > 0 and values["b_tokens"] > 0
    assert values["len_diff"] == values["a_tokens"] - values["b_tokens"]
    assert 0 < values["overlap"] < 1
    assert values["has_code"] == values["has_list"] == values["has_markdown"] == 1.0
    assert values["n_turns"] == 1.0 and values["non_ascii"] == 0.0
    assert math.isnan(values["tag_safety"])
    conversation = ItemView(
        key=2,
        prompt="",
        messages=[
            {"role": "user", "content": "Привет"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "again"},
        ],
        candidates=["a", "a"],
        metadata={
            "tags": {
                "domain": "math",
                "complexity": 4,
                "safety_concern": True,
                "open_ended": False,
                "format_constraints": False,
            }
        },
    )
    values = item_features(conversation, [])
    assert values["n_turns"] == 2.0 and values["non_ascii"] > 0
    assert values["identical"] == 1.0 and values["overlap"] == 1.0
    assert values["tag_safety"] == 1.0 and values["tag_complexity"] == 4.0
    assert values["tag_domain_math"] == 1.0 and values["tag_domain_coding"] == 0.0
    assert values["tag_open_ended"] == 0.0


@pytest.mark.parametrize(
    "tags",
    [
        {"domain": "cooking", "complexity": 2},  # keys missing, domain off the list
        {
            "domain": "math",
            "complexity": 6,  # out of range
            "safety_concern": False,
            "open_ended": False,
            "format_constraints": False,
        },
        {
            "domain": "math",
            "complexity": 2,
            "safety_concern": "no",  # not a boolean
            "open_ended": False,
            "format_constraints": False,
        },
        "coding",
    ],
)
def test_tags_off_the_schema_give_no_tag_features(tags):
    values = item_features(
        ItemView(key=1, prompt="p", candidates=["a", "b"], metadata={"tags": tags}), []
    )
    assert all(math.isnan(v) for k, v in values.items() if k.startswith("tag_"))


@pytest.mark.parametrize(
    ("prompt", "code", "english"),
    [
        ("Write a short poem about the sea in the style of Emily Dickinson.", "en", 1.0),
        ("Peux-tu m'expliquer pourquoi le ciel est bleu pendant la journée ?", "fr", 0.0),
        ("请用简单的语言解释一下量子计算是什么。", "zh", 0.0),
        ("Explique-moi ce code :\n```python\nfor i in range(3):\n    print(i)\n```", "fr", 0.0),
    ],
)
def test_language_of_real_sentences(prompt, code, english):
    assert features.prompt_language(prompt)[0] == code
    values = item_features(ItemView(key=1, prompt=prompt, candidates=["a", "b"]), [])
    assert values["lang_en"] == english and values["lang_confidence"] > 0.5


@pytest.mark.parametrize(
    "prompt",
    [
        "def reverse(xs):\n    return xs[::-1]\n",
        "```js\nconst x = [1, 2, 3].map((v) => v * 2);\n```",
        "SELECT name, COUNT(*) FROM users GROUP BY name;",
        "hi",
        "",
    ],
)
def test_code_only_or_too_short_prompts_have_no_language(prompt):
    assert features.prompt_language(prompt) == ("und", 0.0)
    values = item_features(ItemView(key=1, prompt=prompt, candidates=["a", "b"]), [])
    assert math.isnan(values["lang_en"]) and values["lang_confidence"] == 0.0


def test_judge_signals_by_role():
    view = ItemView(
        key=1,
        prompt="p",
        candidates=["short", "a longer answer"],
        judge_labels=[
            JudgeLabel("g", "B", "AB", 0.4),
            JudgeLabel("g", "B", "BA", 0.7),
            JudgeLabel("p", "A"),
            JudgeLabel("q", None),
        ],
    )
    values = item_features(view, ["g", "p", "q"])
    assert values["primary_b"] == 1.0 and values["primary_order_disagree"] == 0.0
    assert values["primary_confidence"] == 0.4  # the lower of its orders
    assert values["others_opposite"] == 0.5 and values["others_unparsed"] == 0.5
    assert values["judges_disagree"] == 1.0 and values["others_agree"] == 0.0
    assert values["primary_picks_longer"] == 1.0 and values["others_pick_longer"] == -0.5


def test_embeddings_degrade_to_missing_without_the_extra(monkeypatch):
    monkeypatch.setattr(features, "_embedder", lambda: None)
    views = [ItemView(key=i, prompt="p", candidates=["a", "b"]) for i in range(3)]
    assert not features.embeddings_available()
    table = features_table(views, [])
    assert table["embed_cosine"].isna().all()
    assert table.attrs["feature_version"] == features.FEATURE_VERSION


@pytest.mark.skipif(not features.embeddings_available(), reason="embeddings extra not installed")
def test_embeddings_when_installed():
    views = [ItemView(key=1, prompt="p", candidates=["the cat sat", "the cat sat"])]
    assert features.embedding_similarity(views)[0] == pytest.approx(1.0, abs=1e-4)


def test_languages_of_many_prompts_at_once_are_py3langids_one_by_one():
    """The batched language id (all texts through py3langid's automaton together) names the
    language py3langid names for each text alone, with its probability (float32 sums)."""
    texts = [
        "Write a short poem about the sea in the style of Emily Dickinson.",
        "Peux-tu m'expliquer pourquoi le ciel est bleu pendant la journée ?",
        "请用简单的语言解释一下量子计算是什么。",
        "Explique-moi ce code :\n```python\nfor i in range(3):\n    print(i)\n```",
        "¿Cuál es la capital de Australia y por qué no es Sídney?",
        "Wie viele Einwohner hat Berlin ungefähr im Jahr zwanzig zwanzig?",
        "HOW DO I MAKE BREAD AT HOME WITHOUT YEAST",
        "def f(x):\n    return x\nand then tell me what this function does please\r\n",
        "  indented line\nПочему трава зелёная летом и жёлтая осенью?\u2028second line",  # noqa: RUF001
        "",
        "hi",
    ]
    identifier = features._language_identifier()
    expected = []
    for text in texts:
        natural = features._natural_text(text)
        if len(
            features._LETTER_WORD.findall(natural)
        ) < features.MIN_LANGUAGE_WORDS and not features._mostly_ideographic(natural):
            expected.append(("und", 0.0))
        else:
            code, probability = identifier.classify(natural)
            expected.append((code, probability))
    got = features.prompt_languages_detected(texts)
    assert [code for code, _ in got] == [code for code, _ in expected]
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-4)
    assert features._natural_texts(features._strings(texts)).to_pylist() == [
        features._natural_text(text) for text in texts
    ]


def test_byte_counts_of_ascii_texts_are_the_regex_counts():
    """Tokens, letters and words are counted on bytes for ASCII texts and by RE2 for the others:
    the same numbers as RE2 over all of them, whatever the mix."""
    import numpy as np
    import pyarrow.compute as pc

    texts = features._strings(
        [
            "",
            "plain ascii, with punctuation!! and __under_scores__ 3.14",
            "tabs\tand\x0bvertical\x0cfeeds\r\nand lines",
            "héllo wörld, ünïcode",
            "日本語のテキスト、句読点。",
            "   ",
            "x²+y³ = z",
            "emoji 😀 ok",
            "end",
        ]
    ).slice(1)  # a slice: offsets that do not start at zero
    lowered = pc.utf8_lower(texts)
    assert list(features._token_counts(lowered)) == list(
        features._numpy(pc.count_substring_regex(lowered, features._RE2_TOKEN))
    )
    letters, ascii_letters = features._letter_counts(texts)
    assert list(letters) == list(features._length_without(texts, r"[^\pL]+"))
    assert list(ascii_letters) == list(features._length_without(texts, r"[^A-Za-z]+"))
    docs, words = features._flat_words(lowered)
    regex_docs, regex_words = features._flat_words_regex(lowered)
    pairs = sorted(zip(docs.tolist(), words.to_pylist(), strict=True))
    regex_pairs = zip(np.asarray(regex_docs).tolist(), regex_words.to_pylist(), strict=True)
    assert pairs == sorted(regex_pairs)
