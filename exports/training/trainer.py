"""Train a reward model, DPO or KTO on a snapshot folder with TRL, and evaluate on its test split.

``training_run`` knows nothing of Django: it takes a snapshot folder (``data.py``), a kind, a
local base model and hyperparameters, reports through ``TrainingHooks`` (log lines, metrics, a
heartbeat, and whether to stop), and writes its artifacts into ``output_dir``:

    output_dir/model/          the trained model (a LoRA adapter with ``lora``) and tokenizer
    output_dir/metrics.json    the curve, the final training figures and the evaluation
    output_dir/manifest.json   the snapshot's manifest, so the model says what it learnt from

Kinds: ``reward`` (TRL ``RewardTrainer``, a sequence classifier with one output),
``dpo`` (``DPOTrainer``) and ``kto`` (``KTOTrainer``), causal language models both. The base model
is a local folder (or a ``.gguf`` file, which transformers dequantises): nothing is downloaded,
the Hugging Face hub is switched off (``HF_HUB_OFFLINE``) before the libraries load.

torch, transformers, trl, peft and datasets (the ``train`` extra) are imported inside the
functions, so the web app imports this module without them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .data import MANIFEST, TEST, TRAIN, SnapshotData, SnapshotError, snapshot_read

KINDS = ("reward", "dpo", "kto")
PROVENANCES = ("human", "judge", "hybrid")
MAX_CURVE_POINTS = 1000

# Hyperparameters a job may set, with their defaults; ``None`` means "the kind's default".
DEFAULTS: dict[str, Any] = {
    "epochs": 1.0,
    "max_steps": -1,
    "learning_rate": None,
    "batch_size": 8,
    "eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 512,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "logging_steps": 1,
    "seed": 0,
    "beta": 0.1,  # DPO / KTO
    "label_smoothing": 0.0,  # DPO (robust loss against flipped labels)
    "center_rewards_coefficient": None,  # reward
    "lora": False,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "bf16": False,
}
KIND_LEARNING_RATE = {"reward": 2e-5, "dpo": 5e-6, "kto": 5e-6}
_TYPES: dict[str, type] = {
    "epochs": float,
    "max_steps": int,
    "learning_rate": float,
    "batch_size": int,
    "eval_batch_size": int,
    "gradient_accumulation_steps": int,
    "max_length": int,
    "warmup_steps": int,
    "weight_decay": float,
    "logging_steps": int,
    "seed": int,
    "beta": float,
    "label_smoothing": float,
    "center_rewards_coefficient": float,
    "lora": bool,
    "lora_r": int,
    "lora_alpha": int,
    "lora_dropout": float,
    "bf16": bool,
}
_POSITIVE = {"batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length"}
_POSITIVE |= {"logging_steps", "lora_r", "lora_alpha", "epochs", "learning_rate", "beta"}

# The names TRL logs its figures under, per kind -> Tandem's names.
METRIC_NAMES: dict[str, dict[str, str]] = {
    "reward": {"accuracy": "accuracy", "margin": "margin"},
    "dpo": {"rewards/accuracies": "accuracy", "rewards/margins": "margin"},
    "kto": {"rewards/margins": "margin", "kl": "kl"},
}


class HyperparameterError(ValueError):
    """Bad hyperparameters; ``details`` maps each bad name to why."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = details


class TrainingError(RuntimeError):
    """The job cannot run as asked (base model, snapshot, libraries); the message is for people."""


def hyperparameters_check(kind: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The full set of hyperparameters: defaults for what is not given, types checked."""
    if kind not in KINDS:
        raise HyperparameterError({"kind": f"one of {', '.join(KINDS)}"})
    if given is not None and not isinstance(given, dict):
        raise HyperparameterError({"hyperparameters": "must be an object"})
    errors: dict[str, str] = {}
    out = dict(DEFAULTS)
    for name, value in (given or {}).items():
        if name not in DEFAULTS:
            errors[name] = "unknown hyperparameter"
            continue
        if value is None:
            continue
        kind_of = _TYPES[name]
        if kind_of is bool:
            if not isinstance(value, bool):
                errors[name] = "must be true or false"
                continue
        elif isinstance(value, bool) or not isinstance(value, int | float):
            errors[name] = "must be a number"
            continue
        elif kind_of is int and value != int(value):
            errors[name] = "must be a whole number"
            continue
        value = kind_of(value)
        if name in _POSITIVE and value <= 0:
            errors[name] = "must be above 0"
        elif name == "warmup_steps" and value < 0:
            errors[name] = "must be 0 or more"
        elif name in ("label_smoothing", "lora_dropout") and not 0 <= value < 1:
            errors[name] = "must be in [0, 1)"
        out[name] = value
    if errors:
        raise HyperparameterError(errors)
    if out["learning_rate"] is None:
        out["learning_rate"] = KIND_LEARNING_RATE[kind]
    return out


@dataclass
class TrainingHooks:
    """How a run reports: ``log`` a line, ``metrics`` the figures so far, ``beat`` that it is
    alive, and ``should_stop`` whether it was cancelled (asked at every step)."""

    log: Callable[[str], None] = lambda line: None
    metrics: Callable[[dict[str, Any]], None] = lambda metrics: None
    beat: Callable[[], None] = lambda: None
    should_stop: Callable[[], bool] = lambda: False


@dataclass
class TrainingResult:
    cancelled: bool
    metrics: dict[str, Any]
    artifacts: Path | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)


def base_model_resolve(base_model: str) -> tuple[Path, str | None]:
    """A local model folder, or a ``.gguf`` file (its folder and name). Hub names are refused."""
    path = Path(base_model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        if (path / "config.json").is_file():
            return path, None
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return path, ggufs[0].name
        raise TrainingError(f"base model {base_model}: no config.json (nor one .gguf file) there")
    raise TrainingError(
        f"base model {base_model!r} is not a local folder: models are read from disk only "
        "(nothing is downloaded)"
    )


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def libraries_check() -> None:
    """Raise TrainingError when the ``train`` extra is not installed."""
    _offline()
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise TrainingError(
            f"the training libraries are not installed ({exc.name}): pip install 'tandem[train]'"
        ) from None
    import datasets

    datasets.disable_progress_bars()  # the job's log says what happens, once per step


def training_run(
    *,
    snapshot_dir: Path,
    kind: str,
    base_model: str,
    hyperparameters: dict[str, Any] | None,
    output_dir: Path,
    hooks: TrainingHooks | None = None,
    eval_dir: Path | None = None,
) -> TrainingResult:
    """Train and evaluate; return the metrics (also written to ``output_dir/metrics.json``).

    The evaluation is on the snapshot's test split, or on ``eval_dir``'s (another snapshot of
    the same prompts: a model trained on judge labels, measured against people's).

    Raises TrainingError (bad base model, bad snapshot, libraries missing) or
    HyperparameterError before any training starts; a cancelled run returns ``cancelled=True``
    after the step it was at, with no model saved.
    """
    hooks = hooks or TrainingHooks()
    hp = hyperparameters_check(kind, hyperparameters)
    libraries_check()
    try:
        data = snapshot_read(Path(snapshot_dir), kind)
    except SnapshotError as exc:
        raise TrainingError(str(exc)) from None
    path, gguf_file = base_model_resolve(base_model)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    test_rows = len(data.splits[TEST]) if TEST in data.splits else 0
    hooks.log(
        f"{kind} on a {data.format} snapshot: {len(data.splits[TRAIN])} train rows, "
        f"{test_rows} test rows; base model {base_model}"
    )

    import torch
    from transformers import set_seed

    set_seed(hp["seed"])
    started = time.monotonic()
    model, ref_model, tokenizer = _load_models(kind, path, gguf_file, hp)
    hooks.log(
        f"loaded {type(model).__name__} ({_parameters(model) / 1e6:.1f}M parameters) on "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'} in {time.monotonic() - started:.1f} s"
    )
    hooks.beat()
    callback = _job_callback(kind, hooks)
    trainer = _trainer(kind, model, ref_model, tokenizer, data, hp, output_dir, callback)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the job callback logs instead of stdout
    train_output = trainer.train()
    curve = callback.curve
    training = {
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_loss": _round(train_output.training_loss),
        "seconds": round(time.monotonic() - started, 2),
        "device": str(trainer.args.device),
    }
    if callback.stopped:
        hooks.log(f"cancelled at step {trainer.state.global_step}")
        metrics = {"kind": kind, "training": training, "curve": curve, "cancelled": True}
        hooks.metrics(metrics)
        return TrainingResult(cancelled=True, metrics=metrics, curve=curve)

    hooks.log("training done; evaluating on the test split")
    held_out = data
    if eval_dir is not None:
        try:
            held_out = snapshot_read(Path(eval_dir), kind)
        except SnapshotError as exc:
            raise TrainingError(f"evaluation snapshot: {exc}") from None
    evaluation = _evaluate(kind, trainer, held_out, hooks)
    metrics = {
        "kind": kind,
        "format": data.format,
        "base_model": base_model,
        "hyperparameters": hp,
        "rows": {name: len(ds) for name, ds in data.splits.items()},
        "training": training,
        "curve": curve,
        "evaluation": evaluation,
    }
    artifacts = _save(trainer, tokenizer, data, metrics, output_dir)
    hooks.metrics(metrics)
    hooks.log(f"artifacts in {artifacts}")
    return TrainingResult(cancelled=False, metrics=metrics, artifacts=artifacts, curve=curve)


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _round(value: Any) -> Any:
    return round(float(value), 6) if isinstance(value, int | float) else value


def _load_models(kind: str, path: Path, gguf_file: str | None, hp: dict[str, Any]):
    """The model to train, the frozen reference (DPO/KTO without LoRA), and the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    # Weights in float32 whatever the checkpoint holds; ``bf16`` trains in mixed precision.
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
        if kind == "reward":
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
            ref_model = None
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            # Loaded, not derived from the model's name: GGUF checkpoints reload only this way.
            ref_model = None if hp["lora"] else AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"cannot load the base model from {path}: {exc}") from None
    if gguf_file:
        # The GGUF weights were dequantised to float32 on load: train them as a plain model
        # (transformers still flags it as quantised, and its Trainer refuses those).
        for m in (model, ref_model):
            if m is not None:
                _unflag_quantized(m)
    special_tokens_set(tokenizer, model, ref_model)
    return model, ref_model, tokenizer


def special_tokens_set(tokenizer, *models) -> None:
    """The end and padding tokens as training uses them, set the same way where a trained model
    is loaded again to score (``scoring.scorer_load``), so that its inputs are built alike:
    encoders (BERT) have no end-of-sequence token, their separator ends a sequence; padding is
    the end token where the tokenizer has none; each model (``None`` skipped) pads with it."""
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for model in models:
        if model is not None:
            model.config.pad_token_id = tokenizer.pad_token_id


def _unflag_quantized(model) -> None:
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def _max_length(model, hp: dict[str, Any]) -> int:
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    return min(hp["max_length"], positions) if positions else hp["max_length"]


def _common_args(hp: dict[str, Any], output_dir: Path, model) -> dict[str, Any]:
    import torch

    return {
        "output_dir": str(output_dir / "trainer"),
        "num_train_epochs": hp["epochs"],
        "max_steps": hp["max_steps"],
        "learning_rate": hp["learning_rate"],
        "per_device_train_batch_size": hp["batch_size"],
        "per_device_eval_batch_size": hp["eval_batch_size"],
        "gradient_accumulation_steps": hp["gradient_accumulation_steps"],
        "warmup_steps": hp["warmup_steps"],
        "weight_decay": hp["weight_decay"],
        "logging_steps": hp["logging_steps"],
        "seed": hp["seed"],
        "data_seed": hp["seed"],
        "max_length": _max_length(model, hp),
        "bf16": hp["bf16"] and torch.cuda.is_available(),
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "use_cpu": not torch.cuda.is_available(),
    }


def _lora(kind: str, hp: dict[str, Any]):
    if not hp["lora"]:
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_CLS if kind == "reward" else TaskType.CAUSAL_LM,
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        lora_dropout=hp["lora_dropout"],
        target_modules="all-linear",
    )


# Per kind: TRL's config and trainer classes (by name: TRL is imported only inside a job) and the
# hyperparameters that go to the config besides the common ones. DPO and KTO also take the frozen
# reference model.
TRL_CLASSES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "reward": ("RewardConfig", "RewardTrainer", ("center_rewards_coefficient",)),
    "dpo": ("DPOConfig", "DPOTrainer", ("beta", "label_smoothing")),
    "kto": ("KTOConfig", "KTOTrainer", ("beta",)),
}


def _trainer(kind, model, ref_model, tokenizer, data: SnapshotData, hp, output_dir, callback):
    import trl

    config_class, trainer_class, config_keys = TRL_CLASSES[kind]
    args = getattr(trl, config_class)(
        **_common_args(hp, output_dir, model), **{key: hp[key] for key in config_keys}
    )
    reference = {} if kind == "reward" else {"ref_model": ref_model}
    return getattr(trl, trainer_class)(
        model=model,
        args=args,
        train_dataset=data.splits[TRAIN],
        processing_class=tokenizer,
        callbacks=[callback],
        peft_config=_lora(kind, hp),
        **reference,
    )


def _job_callback(kind: str, hooks: TrainingHooks):
    """A ``TrainerCallback`` that turns TRL's logs into the job's log and curve, beats, and
    stops the run at the step after a cancel."""
    from transformers import TrainerCallback

    names = METRIC_NAMES[kind]

    class JobCallback(TrainerCallback):
        def __init__(self) -> None:
            self.curve: list[dict[str, Any]] = []
            self.stopped = False

        def on_step_end(self, args, state, control, **kwargs):
            hooks.beat()
            if hooks.should_stop():
                self.stopped = True
                control.should_training_stop = True
            return control

        def on_prediction_step(self, args, state, control, **kwargs):
            hooks.beat()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs:  # evaluation and the end-of-training summary
                return
            point: dict[str, Any] = {"step": state.global_step, "epoch": _round(state.epoch)}
            point["loss"] = _round(logs["loss"])
            for source, name in names.items():
                if source in logs:
                    point[name] = _round(logs[source])
            if "learning_rate" in logs:
                point["learning_rate"] = _round(logs["learning_rate"])
            self.curve.append(point)
            if len(self.curve) > MAX_CURVE_POINTS:  # keep it bounded: every other point
                self.curve[:] = self.curve[::2]
            figures = ", ".join(f"{k} {v:.4g}" for k, v in point.items() if k not in ("step",))
            hooks.log(f"step {state.global_step}/{state.max_steps}: {figures}")
            hooks.metrics({"kind": kind, "curve": self.curve, "last": point})

    return JobCallback()


def _evaluate(kind: str, trainer, data: SnapshotData, hooks: TrainingHooks) -> dict[str, Any]:
    """Figures on the test split, in all and by provenance (people, judge, both)."""
    test = data.splits.get(TEST)
    if test is None or len(test) == 0:
        hooks.log("no test split: nothing to evaluate on")
        return {}
    subsets = {"all": test}
    if "provenance" in test.column_names:
        provenance = test["provenance"]
        for value in PROVENANCES:
            indices = [i for i, p in enumerate(provenance) if p == value]
            if indices:
                subsets[value] = test.select(indices)
    out: dict[str, Any] = {}
    names = {"loss": "loss", **METRIC_NAMES[kind]}
    if kind == "kto":
        names["rewards/chosen"] = "reward_desirable"
        names["rewards/rejected"] = "reward_undesirable"
    for subset, dataset in subsets.items():
        if subset != "all" and len(dataset) == len(test):  # every row: the same figures
            out[subset] = dict(out["all"])
            continue
        raw = trainer.evaluate(eval_dataset=dataset)
        figures = {"rows": len(dataset)}
        for source, name in names.items():
            if f"eval_{source}" in raw:
                figures[name] = _round(raw[f"eval_{source}"])
        out[subset] = figures
        shown = ", ".join(f"{k} {v:.4g}" for k, v in figures.items() if k != "rows")
        hooks.log(f"test ({subset}, {len(dataset)} rows): {shown}")
    return out


def _save(trainer, tokenizer, data: SnapshotData, metrics: dict[str, Any], output_dir: Path):
    model_dir = output_dir / "model"
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    (output_dir / "metrics.json").write_bytes(orjson.dumps(metrics, option=orjson.OPT_INDENT_2))
    (output_dir / MANIFEST).write_bytes(orjson.dumps(data.manifest, option=orjson.OPT_INDENT_2))
    shutil.rmtree(output_dir / "trainer", ignore_errors=True)
    return output_dir
