"""Acceptance: TRL's trainers take the exports as written.

The preference export goes through ``DPOTrainer`` and ``RewardTrainer``, the KTO export through
``KTOTrainer``: each builds its dataset with TRL's own preparation (tokenisation, chat template
for conversational rows) and trains one step of a tiny model made here (CPU, no download).
Skipped, with the reason, when TRL is not installed (it and torch are not Tandem dependencies).
"""

import pytest

trl = pytest.importorskip("trl", reason="TRL is not installed (pip install trl): optional check")
datasets = pytest.importorskip("datasets", reason="the hf extra (pip install 'tandem[hf]')")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from exports.builder import export_spec, export_write  # noqa: E402
from exports.preferences import preferences_recompute  # noqa: E402
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory  # noqa: E402
from tests.routing.factories import item_with_labels  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def tiny_tokenizer(texts) -> PreTrainedTokenizerFast:
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train_from_iterator(
        texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[BOS]", "[EOS]"])
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(tokenizer, **kw) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=16,
        n_layer=1,
        n_head=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **kw,
    )


def common_args(tmp_path) -> dict:
    return {
        "output_dir": str(tmp_path / "run"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "max_length": 64,
    }


@pytest.fixture
def labelled_pairs(db):
    """A pairwise project of 6 resolved items (text prompts) and one of conversations."""
    text = ProjectFactory(overlap=1)
    for i in range(6):
        item_with_labels(text, humans=["A" if i % 2 else "B"])
    chat = ProjectFactory(overlap=1)
    for i in range(6):
        item = ItemFactory(
            project=chat,
            prompt="",
            messages=[{"role": "user", "content": f"Question number {i} ?"}],
        )
        AnnotationFactory(item=item, external_annotator="h", payload={"choice": "A"})
    for project in (text, chat):
        preferences_recompute(project=project)
    return text, chat


def exported(project, tmp_path, fmt, name):
    spec = export_spec(project=project, format=fmt, file_format="parquet")
    out = tmp_path / name
    export_write(project=project, spec=spec, out_dir=out)
    return datasets.load_dataset("parquet", data_files=str(out / "train.parquet"), split="train")


def texts_of(dataset):
    for row in dataset:
        for key in ("prompt", "chosen", "rejected", "completion"):
            value = row.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (f"{m['role']} : {m['content']}" for m in value)
    yield "user : assistant :"


@pytest.mark.slow
@pytest.mark.parametrize("which", ["text", "chat"])
def test_dpo_and_reward_trainers_take_the_preference_export(labelled_pairs, tmp_path, which):
    project = labelled_pairs[0 if which == "text" else 1]
    dataset = exported(project, tmp_path, "preference", "pref")
    assert len(dataset) == 6
    tokenizer = tiny_tokenizer(texts_of(dataset))
    torch.manual_seed(0)

    dpo = trl.DPOTrainer(
        model=GPT2LMHeadModel(tiny_config(tokenizer)),
        ref_model=GPT2LMHeadModel(tiny_config(tokenizer)),
        args=trl.DPOConfig(**common_args(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert dpo.train().global_step == 1

    reward_data = exported(project, tmp_path, "reward", "reward")
    reward = trl.RewardTrainer(
        model=GPT2ForSequenceClassification(tiny_config(tokenizer, num_labels=1)),
        args=trl.RewardConfig(**common_args(tmp_path)),
        train_dataset=reward_data,
        processing_class=tokenizer,
    )
    assert reward.train().global_step == 1


@pytest.mark.slow
@pytest.mark.parametrize("which", ["text", "chat"])
def test_kto_trainer_takes_the_kto_export(labelled_pairs, tmp_path, which):
    dataset = exported(labelled_pairs[0 if which == "text" else 1], tmp_path, "kto", "kto")
    assert sorted(set(dataset["label"])) == [False, True]
    tokenizer = tiny_tokenizer(texts_of(dataset))
    torch.manual_seed(0)
    kto = trl.KTOTrainer(
        model=GPT2LMHeadModel(tiny_config(tokenizer)),
        ref_model=GPT2LMHeadModel(tiny_config(tokenizer)),
        args=trl.KTOConfig(**common_args(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert kto.train().global_step == 1
