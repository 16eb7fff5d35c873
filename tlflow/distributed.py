"""Data-parallel fine-tuning: PyTorch DistributedDataParallel over `finetune.processes` local
processes (gloo backend, CPU), started with `torch.multiprocessing.spawn`.

Every rank builds the same model (same seed), walks the same deterministic batches and trains on
its slice of each batch; DDP averages the gradients, so a step sees the whole batch as in one
process. Only rank 0 writes checkpoints, validates and logs, into the caller's MLflow run (one run
for the whole training); at the end it saves the weights, which the calling process loads to
evaluate and register. The ranks split the cores between them.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from datasets import Dataset
from safetensors.torch import load_model, save_model
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel

from tlflow.batching import collate
from tlflow.config import PipelineConfig
from tlflow.models import build_task_model, load_tokenizer
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.train import LoopSettings, TrainResult, train_loop

FINAL_WEIGHTS, FINAL_RESULT = "final.safetensors", "final-result.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_logger(run_id: str | None, tracking_uri: str | None):
    """Rank 0's metric logger: into the caller's run, batched per call."""
    if run_id is None:
        return None
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=tracking_uri)

    def log(metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    return log


def _worker(
    rank: int,
    world: int,
    port: int,
    cfg: PipelineConfig,
    features: Mapping[str, Sequence],
    validation: Dataset | None,
    label_names: list[str],
    encoder: str,
    checkpoint_dir: Path,
    run_id: str | None,
    tracking_uri: str | None,
) -> None:
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    _train_rank(rank, world, cfg, features, validation, label_names, encoder, checkpoint_dir, run_id, tracking_uri)
    dist.barrier()  # rank 0 has written the final weights; every rank's work is done
    # Leave without running gloo's destructors: tearing down the process group (explicitly or when
    # the DDP reducer is freed) can wait forever on gloo's threads. Everything is written (files
    # closed, MLflow calls synchronous); an exception above still reaches mp.spawn as usual.
    os._exit(0)


def _train_rank(
    rank: int,
    world: int,
    cfg: PipelineConfig,
    features: Mapping[str, Sequence],
    validation: Dataset | None,
    label_names: list[str],
    encoder: str,
    checkpoint_dir: Path,
    run_id: str | None,
    tracking_uri: str | None,
) -> None:
    tokenizer = load_tokenizer(encoder)
    model = build_task_model(cfg.model.model_copy(update={"base": encoder}), cfg.task.type, label_names,
                             len(tokenizer), cfg.finetune.seed)
    ddp = DistributedDataParallel(model)
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)

    def validate(m: PreTrainedModel) -> dict[str, float]:
        return task.evaluate(m, tokenizer, validation, label_names, settings).metrics

    input_ids = features["input_ids"]
    result = train_loop(
        ddp, [len(x) for x in input_ids], lambda batch, step: collate(features, batch, tokenizer.pad_token_id),
        LoopSettings.for_finetune(cfg.finetune, len(input_ids)), checkpoint_dir,
        evaluate=validate if validation is not None else None,
        log_metrics=_mlflow_logger(run_id, tracking_uri) if rank == 0 else None,
        progress=False, desc="fine-tune", shard=(rank, world),
    )
    tokens = torch.tensor([result.tokens], dtype=torch.long)
    dist.all_reduce(tokens)  # every rank's tokens
    if rank == 0:
        result.tokens = int(tokens.item())
        save_model(model, str(checkpoint_dir / FINAL_WEIGHTS))
        (checkpoint_dir / FINAL_RESULT).write_text(json.dumps(asdict(result)), encoding="utf-8")


def train_distributed(
    cfg: PipelineConfig,
    features: Mapping[str, Sequence],
    validation: Dataset | None,
    label_names: list[str],
    encoder: str,
    checkpoint_dir: Path,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> tuple[PreTrainedModel, TrainResult]:
    """Fine-tune with `cfg.finetune.processes` DDP ranks; returns the trained model (loaded in
    this process) and rank 0's TrainResult. Metrics go to MLflow run `run_id` when given."""
    world = cfg.finetune.processes
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for name in (FINAL_WEIGHTS, FINAL_RESULT):
        (checkpoint_dir / name).unlink(missing_ok=True)
    mp.spawn(
        _worker,
        args=(world, _free_port(), cfg, dict(features), validation, label_names, encoder, checkpoint_dir, run_id,
              tracking_uri),
        nprocs=world,
        join=True,
    )
    tokenizer = load_tokenizer(encoder)
    model = build_task_model(cfg.model.model_copy(update={"base": encoder}), cfg.task.type, label_names,
                             len(tokenizer), cfg.finetune.seed)
    load_model(model, str(checkpoint_dir / FINAL_WEIGHTS))
    model.eval()
    result = TrainResult(**json.loads((checkpoint_dir / FINAL_RESULT).read_text(encoding="utf-8")))
    return model, result
