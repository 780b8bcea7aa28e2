"""LoRA fine-tuning of the student on an exported dataset (TRL's SFTTrainer, PEFT).

Assistant-only loss with the model's own chat template: the student learns to write the
teacher's replies, not to predict the user's questions. On a GPU with bitsandbytes the base is
loaded in 4 bits (QLoRA); on CPU it is float32. The output folder holds the adapter, the
checkpoints, and ``run_card.json`` (what was trained on what, with which settings, and the
held-out perplexity before and after), so an adapter can always be traced to its data.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from teacherforge.student import base_model
from teacherforge.student.data import Record, load_records, training_messages
from teacherforge.student.perplexity import perplexity
from teacherforge.student.settings import TrainSettings
from teacherforge.student.split import split_by_document

log = structlog.get_logger("teacherforge.train")
RUN_CARD = "run_card.json"


class TrainError(Exception):
    """Training cannot start; one line that says why."""


@dataclass
class TrainResult:
    out_dir: str
    base_model: str
    steps: int
    train_records: int
    heldout_records: int
    heldout_ppl_base: float
    heldout_ppl_tuned: float
    train_loss: float | None
    wall_s: float
    split: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _metrics_callback() -> Any:
    from transformers import TrainerCallback

    class StructlogMetrics(TrainerCallback):
        """Every logged training metric also goes to structlog (one ``train.metrics`` event per log)."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - HF signature
            if logs:
                log.info("train.metrics", step=state.global_step, **{k: v for k, v in logs.items()})

    return StructlogMetrics()


def report_targets(wanted: str) -> list[str]:
    """W&B or MLflow only when asked for and installed; otherwise nothing leaves the machine."""
    if wanted == "none":
        return []
    if importlib.util.find_spec(wanted) is None:
        log.warning("train.report_to_missing", wanted=wanted, hint=f"pip install {wanted}")
        return []
    return [wanted]


def _quantization(settings: TrainSettings) -> Any:
    """4-bit loading (QLoRA) when a CUDA GPU and bitsandbytes are present; None on CPU."""
    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def _load_for_training(path: str, settings: TrainSettings) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    quant = _quantization(settings)
    if quant is None:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    from peft import prepare_model_for_kbit_training

    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, device_map="auto")
    return prepare_model_for_kbit_training(model)


def train(data: Path, out_dir: Path, settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Split by document, measure the base, train the LoRA, measure again, write the card."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    records = load_records(data)
    split = split_by_document(records, settings.heldout_share, settings.seed)
    if not split.train:
        raise TrainError(f"{data}: no training conversations left after the held-out split {split.summary()}")
    path, display = base_model.resolve(settings.base_model)
    tokenizer = base_model.load_tokenizer(path)
    model = _load_for_training(path, settings)
    heldout = [training_messages(r, settings.thought) for r in split.heldout]
    ppl_base = _ppl(model, tokenizer, heldout, settings.max_len)
    log.info(
        "train.start",
        base_model=display,
        train=len(split.train),
        heldout=len(split.heldout),
        heldout_ppl_base=ppl_base,
    )
    dataset = Dataset.from_list([{"messages": training_messages(r, settings.thought)} for r in split.train])
    config = SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.lr,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        max_length=settings.max_len,
        assistant_only_loss=True,
        packing=False,
        logging_steps=1,
        save_steps=settings.save_steps,
        save_total_limit=2,
        report_to=report_targets(settings.report_to),
        seed=settings.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        gradient_checkpointing=False,  # memory is not the limit on CPU; recomputation would cost ~30%
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=2,
    )
    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets,
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[_metrics_callback()],
    )
    output = trainer.train()
    trainer.model.eval()
    ppl_tuned = _ppl(trainer.model, tokenizer, heldout, settings.max_len)
    trainer.model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    result = TrainResult(
        out_dir=str(out_dir),
        base_model=display,
        steps=int(output.global_step),
        train_records=len(split.train),
        heldout_records=len(split.heldout),
        heldout_ppl_base=ppl_base,
        heldout_ppl_tuned=ppl_tuned,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        wall_s=round(time.perf_counter() - started, 1),
        split=split.summary(),
    )
    write_card(out_dir, result, settings, data, path, trainer.state.log_history, split.heldout)
    log.info("train.finished", **{k: v for k, v in result.as_dict().items() if k != "split"})
    return result


def _ppl(model: Any, tokenizer: Any, conversations: list, max_len: int) -> float:
    return round(perplexity(model, tokenizer, conversations, max_len), 4) if conversations else float("nan")


def write_card(
    out_dir: Path,
    result: TrainResult,
    settings: TrainSettings,
    data: Path,
    base_path: str,
    history: list[dict],
    heldout: list[Record],
) -> Path:
    """``run_card.json``: enough to reproduce the run and to find the held-out set again (eval)."""
    import peft
    import torch
    import transformers
    import trl

    card = {
        "kind": "teacherforge.student.lora",
        "result": result.as_dict(),
        "settings": settings.model_dump(),
        "base_model_path": base_path,
        "data": {"path": str(data.resolve()), "sha256": file_sha256(data)},
        "heldout_sample_ids": [r.sample_id for r in heldout],
        "loss_history": [h for h in history if "loss" in h],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "trl": trl.__version__,
        },
    }
    path = out_dir / RUN_CARD
    path.write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    return path


def read_card(adapter_dir: Path) -> dict:
    path = adapter_dir / RUN_CARD
    if not path.exists():
        raise TrainError(f"{adapter_dir}: no {RUN_CARD}; pass the folder 'teacherforge train --out' wrote")
    return json.loads(path.read_text(encoding="utf-8"))
