"""Data-parallel fine-tuning: PyTorch DistributedDataParallel over `finetune.processes` local
processes (gloo backend, CPU), launched with `torchrun` (`python -m torch.distributed.run`).

Every rank builds the same model (same seed), walks the same deterministic batches and trains on
its slice of each batch; DDP averages the gradients, so a step sees the whole batch as in one
process. Only rank 0 writes checkpoints, validates and logs, into the caller's MLflow run (one run
for the whole training); at the end it saves the weights, which the calling process loads to
evaluate and register. The ranks split the cores between them.

The launcher hands the ranks their inputs through files: the cached training features, the
validation split and a JSON job description, all under the run's checkpoint folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from datasets import Dataset, load_from_disk
from safetensors.torch import load_model, save_model
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel

from tlflow.config import PipelineConfig
from tlflow.data.atomic import atomic_dir
from tlflow.data.features import example_lengths, feature_columns
from tlflow.modeling.batching import training_collate
from tlflow.modeling.models import build_task_model, load_tokenizer
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import task_type_for
from tlflow.training.loop import TrainResult, train_loop
from tlflow.training.methods import prepare_method, trained_model
from tlflow.training.settings import LoopSettings

FINAL_WEIGHTS, FINAL_RESULT, JOB, VALIDATION = "final.safetensors", "final-result.json", "ddp-job.json", "ddp-validation"


def train_distributed(
    cfg: PipelineConfig,
    features_path: Path,
    validation: Dataset | None,
    label_names: list[str],
    encoder: str,
    checkpoint_dir: Path,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> tuple[PreTrainedModel, TrainResult]:
    """Fine-tune with `cfg.finetune.processes` DDP ranks started by torchrun; returns the trained
    model (loaded in this process) and rank 0's TrainResult. Metrics go to MLflow run `run_id`."""
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for name in (FINAL_WEIGHTS, FINAL_RESULT):
        (checkpoint_dir / name).unlink(missing_ok=True)
    if validation is not None:
        with atomic_dir(checkpoint_dir / VALIDATION) as tmp:
            validation.save_to_disk(str(tmp))
    job = {"config": cfg.to_dict(), "features": str(Path(features_path).resolve()), "label_names": label_names,
           "encoder": encoder, "run_id": run_id, "tracking_uri": tracking_uri, "validation": validation is not None}
    (checkpoint_dir / JOB).write_text(json.dumps(job), encoding="utf-8")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={cfg.finetune.processes}", "-m", "tlflow.training.distributed", str(checkpoint_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not (checkpoint_dir / FINAL_RESULT).is_file():
        raise RuntimeError(f"distributed fine-tuning failed (exit {done.returncode}): {done.stderr[-3000:]}")
    tokenizer = load_tokenizer(encoder)
    model = build_task_model(cfg.model.model_copy(update={"base": encoder}), task_type_for(cfg).model_head,
                             label_names, len(tokenizer), cfg.finetune.seed)
    load_model(model, str(checkpoint_dir / FINAL_WEIGHTS))
    model.eval()
    return model, TrainResult(**json.loads((checkpoint_dir / FINAL_RESULT).read_text(encoding="utf-8")))


def _mlflow_logger(run_id: str | None, tracking_uri: str | None):
    """Rank 0's metric logger: into the caller's run, batched per call."""
    if run_id is None:
        return None
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=tracking_uri)

    def log(metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    return log


def _train_rank(rank: int, world: int, checkpoint_dir: Path) -> None:
    job = json.loads((checkpoint_dir / JOB).read_text(encoding="utf-8"))
    cfg = PipelineConfig.model_validate(job["config"])
    label_names, encoder = job["label_names"], job["encoder"]
    features = feature_columns(load_from_disk(job["features"])["train"])
    validation = load_from_disk(str(checkpoint_dir / VALIDATION)) if job["validation"] else None
    tokenizer = load_tokenizer(encoder)
    model = build_task_model(cfg.model.model_copy(update={"base": encoder}), task_type_for(cfg).model_head,
                             label_names, len(tokenizer), cfg.finetune.seed)
    peft_model = prepare_method(model, cfg.finetune)
    ddp = DistributedDataParallel(model)
    task, settings = task_type_for(cfg), TaskSettings.from_config(cfg)

    def validate(m: PreTrainedModel) -> dict[str, float]:
        return task.evaluate(m, tokenizer, validation, label_names, settings).metrics

    input_ids = features["input_ids"]
    result = train_loop(
        ddp, example_lengths(input_ids), training_collate(model, features, tokenizer.pad_token_id),
        LoopSettings.for_finetune(cfg.finetune, len(input_ids)), checkpoint_dir,
        evaluate=validate if validation is not None else None,
        log_metrics=_mlflow_logger(job["run_id"], job["tracking_uri"]) if rank == 0 else None,
        progress=False, desc="fine-tune", shard=(rank, world),
    )
    tokens = torch.tensor([result.tokens], dtype=torch.long)
    dist.all_reduce(tokens)  # every rank's tokens
    if rank == 0:
        result.tokens = int(tokens.item())
        save_model(trained_model(model, peft_model), str(checkpoint_dir / FINAL_WEIGHTS))
        (checkpoint_dir / FINAL_RESULT).write_text(json.dumps(asdict(result)), encoding="utf-8")


def main() -> None:
    """One rank, as started by torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the environment)."""
    parser = argparse.ArgumentParser(description="tlflow data-parallel fine-tuning rank (started by torchrun)")
    parser.add_argument("checkpoint_dir", type=Path)
    args = parser.parse_args()
    from tlflow.runtime import apply_defaults

    apply_defaults()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world))
    dist.init_process_group("gloo")
    _train_rank(rank, world, args.checkpoint_dir)
    dist.barrier()  # rank 0 has written the final weights; every rank's work is done
    # Leave without running gloo's destructors: tearing down the process group (explicitly or when
    # the DDP reducer is freed) can wait forever on gloo's threads. Everything is written (files
    # closed, MLflow calls synchronous); a failure above exits non-zero through torchrun as usual.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
