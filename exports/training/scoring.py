"""Score responses with a trained reward model, as ``RewardTrainer`` saw them in training.

TRL's ``RewardTrainer`` (``trainer.py``) reads a row's ``prompt`` and ``chosen`` and scores
``prompt + chosen`` (text rows: the two strings joined as they are, then the end-of-sequence
token; conversational rows: the messages through the tokenizer's chat template). Scoring must
build the same input or the scores mean something else, so ``score_input`` does exactly that,
and truncates (training drops the rows above ``max_length``; a score is wanted for every item).

The margin of a pairwise item is ``score(A) - score(B)`` in the item's own letters: signed, so it
says which candidate the model prefers and how strongly (routing reads both, see
``routing.router.features``).

Needs torch and transformers (the ``train`` extra); imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .trainer import TrainingError, libraries_check, special_tokens_set

DEFAULT_BATCH = 16
MAX_LENGTH = 512


@dataclass
class RewardScorer:
    """A loaded reward model and its tokenizer (from a job's ``model/`` folder)."""

    model: Any
    tokenizer: Any
    max_length: int

    def scores(self, inputs: Sequence[tuple[Any, Any]], batch_size: int = DEFAULT_BATCH):
        """The reward of each ``(prompt, completion)``; prompt and completion are both text or
        both message lists, as in the snapshot the model was trained on."""
        import torch

        out: list[float] = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            ids = [self.score_input(prompt, completion) for prompt, completion in chunk]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**batch).logits
            out.extend(float(v) for v in logits[:, 0])
        return out

    def score_input(self, prompt: Any, completion: Any) -> list[int]:
        """Token ids of one response as ``RewardTrainer`` builds them, truncated."""
        tokenizer = self.tokenizer
        if isinstance(prompt, list):
            encoded = tokenizer.apply_chat_template(
                [*prompt, *completion], tokenize=True, return_dict=True
            )
            ids = list(encoded["input_ids"])
        else:
            text = f"{prompt}{completion}"
            eos = tokenizer.eos_token
            if eos and not text.endswith(eos):
                text += eos
            ids = tokenizer(text)["input_ids"]
        return ids[: self.max_length]


def scorer_load(model_dir: Path) -> RewardScorer:
    """Load a reward model saved by ``trainer.training_run`` (a full model or a LoRA adapter)."""
    libraries_check()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise TrainingError(f"no reward model at {model_dir}: was the job's artifact removed?")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if (model_dir / "adapter_config.json").is_file():
            from peft import AutoPeftModelForSequenceClassification

            model = AutoPeftModelForSequenceClassification.from_pretrained(
                model_dir, num_labels=1, dtype=torch.float32
            )
            model = model.merge_and_unload()
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, num_labels=1, dtype=torch.float32
            )
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"cannot load the reward model from {model_dir}: {exc}") from None
    special_tokens_set(tokenizer, model)  # as in training
    model.eval()
    positions = getattr(model.config, "max_position_embeddings", None) or MAX_LENGTH
    return RewardScorer(model=model, tokenizer=tokenizer, max_length=min(positions, MAX_LENGTH))


def pair_margins(
    scorer: RewardScorer, pairs: Sequence[tuple[Any, Any, Any]], batch_size: int = DEFAULT_BATCH
) -> list[float]:
    """``score(A) - score(B)`` for each ``(prompt, completion_a, completion_b)``."""
    inputs = [(p, c) for p, a, b in pairs for c in (a, b)]
    scores = scorer.scores(inputs, batch_size=batch_size)
    return [round(scores[2 * i] - scores[2 * i + 1], 6) for i in range(len(pairs))]
