"""Inference variants of a fine-tuned model: dynamic int8 in torch, ONNX Runtime in fp32 and int8.

Every variant is something `tlflow.modeling.inference.forward_outputs` can run like the Hugging Face model
it came from (called with input_ids / attention_mask / token_type_ids tensors, answers a mapping
with the task's output tensors, has `.config`, `.training`, `eval()` and `train()`), so the task
types' own `predict` and `evaluate` score and serve every variant with no prediction code of
their own:

* ``fp32``: the model as trained (the reference);
* ``torch-int8``: `torch.ao.quantization.quantize_dynamic` on every `nn.Linear` (int8 weights with
  one scale per output channel, activations quantized per batch on the fly); stored as the fp32
  weights and quantized again at load time (deterministic: the scales come from the weights), so
  nothing is pickled;
* ``onnx-fp32``: the model exported with the TorchDynamo-based `torch.onnx.export` (dynamic batch
  and sequence axes; attention written out as matmuls and softmax, `ONNX_RECIPE`) and run by an
  ONNX Runtime CPU session (`OnnxTaskModel`) without the SkipLayerNormalization fusion;
* ``onnx-int8``: that graph with `onnxruntime.quantization.quantize_dynamic` (int8 weights of
  every MatMul/Gemm, one scale per output channel; uint8 activations quantized per batch).

Per-channel weight scales keep the fine-tuned MiniLM within a point of fp32 on SST-2 where one
scale per tensor loses about one (test accuracy 0.8726 fp32; per tensor / per channel: torch
0.8649 / 0.8715, ONNX Runtime 0.8622 / 0.8759), at the same speed.

Sessions use `torch.get_num_threads()` intra-op threads, so a variant runs on as many cores as the
torch model it is compared with. Nothing here imports Prefect; ONNX Runtime and the exporter are
imported only when a variant needs them.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from tlflow.errors import TlflowError
from tlflow.modeling.models import load_task_head
from tlflow.task_types.registry import get_task_type
from tlflow.training.speedups import apply_inference_speedups, attention_implementation

FP32 = "fp32"
#: The variants `build_variant` makes, in the order they are tried and reported.
VARIANTS = ("torch-int8", "onnx-fp32", "onnx-int8")
ONNX_VARIANTS = ("onnx-fp32", "onnx-int8")
#: Model inputs an exported graph may take (those the model's forward accepts, in this order).
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_FILE = "model.onnx"
VARIANT_FILE = "variant.json"
#: How the ONNX variants are built and run, recorded with every benchmark job that measures them.
#: * ``attention``: the attention implementation the model is exported with. "eager" writes attention
#:   out as matmuls, mask and softmax; ONNX Runtime runs that graph faster than the one exported from
#:   SDPA (fine-tuned MiniLM on SST-2, 2 threads, Intel Xeon: int8 1.93x against 1.69x of torch fp32).
#: * ``disabled_optimizers``: ONNX Runtime graph rewrites left out. Its CPU SkipLayerNormalization
#:   kernel (Add + LayerNormalization fused) took 39 ms per instance over the test split where the
#:   unfused LayerNormalization and Add took about 8 ms (session profile, same model); without the
#:   fusion the int8 graph runs about 1.2x faster and the fp32 one 1.1x. bench/README, "Inference".
ONNX_RECIPE = {"attention": "eager", "disabled_optimizers": ("SkipLayerNormFusion",)}


class OptimizeError(TlflowError, ValueError):
    """A variant that cannot be built or loaded (unknown name, unsupported task type, broken file)."""


def check_variant(name: str, task: str, allowed: tuple[str, ...] = (FP32, *VARIANTS)) -> str:
    """`name` when it is one of `allowed` for a supported task type, else OptimizeError naming the problem."""
    if name not in allowed:
        raise OptimizeError(f"unknown variant '{name}' (one of {', '.join(allowed)})")
    try:
        get_task_type(task)
    except ValueError as err:
        raise OptimizeError(f"optimized variants are not supported: {err}") from None
    return name


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter and the quantizers print progress and deprecation notes; keep the terminal clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# --- torch dynamic int8 -------------------------------------------------------------------------------


def quantize_torch(model: PreTrainedModel) -> PreTrainedModel:
    """A copy of `model` with every `nn.Linear` replaced by a dynamically quantized int8 one
    (per-channel weight scales).

    `torch.ao.quantization` is deprecated in favour of torchao but still shipped (and the only
    int8 path with CPU kernels, fbgemm/oneDNN, that needs no extra package) in torch 2.13.
    """
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as err:  # pragma: no cover - present (deprecated) in torch 2.13
        raise OptimizeError(f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic: {err}") from None
    with _quiet():
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear: per_channel_dynamic_qconfig})
    return quantized.eval()


# --- ONNX Runtime -------------------------------------------------------------------------------------


def model_inputs(model: PreTrainedModel) -> tuple[str, ...]:
    """The inputs of `MODEL_INPUTS` that the model's forward accepts."""
    accepted = inspect.signature(model.forward).parameters
    return tuple(name for name in MODEL_INPUTS if name in accepted)


def export_onnx(model: PreTrainedModel, task: str, path: Path) -> Path:
    """Export `model` (eval mode, fp32) to one ONNX file with dynamic batch and sequence axes.

    Uses the TorchDynamo-based exporter (`torch.onnx.export(..., dynamo=True)`, the default and
    the maintained path in torch 2.13; it needs `onnx` and `onnxscript`), which captures the graph
    with `torch.export` instead of tracing, so no shape-dependent branch is frozen at the example's
    shape. The graph is exported with `ONNX_RECIPE`'s attention implementation; the model's own is
    put back afterwards.
    """
    check_variant("onnx-fp32", task)
    from torch.export import Dim

    names = model_inputs(model)
    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    generator = torch.Generator().manual_seed(0)
    example = {
        "input_ids": torch.randint(0, vocab, (2, 8), generator=generator),
        "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
        "token_type_ids": torch.zeros(2, 8, dtype=torch.long),
    }
    example = {k: example[k] for k in names}
    batch, sequence = Dim("batch"), Dim("sequence")
    was_training = model.training
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet(), attention_implementation(model, ONNX_RECIPE["attention"]):
            program = torch.onnx.export(
                model, (), kwargs=example, dynamo=True, input_names=list(names),
                output_names=list(get_task_type(task).output_names), dynamic_shapes={k: {0: batch, 1: sequence} for k in names},
            )
            program.save(str(path), external_data=False)
    except Exception as err:
        raise OptimizeError(f"ONNX export of {type(model).__name__} failed: {_first_line(err)}") from err
    finally:
        model.train(was_training)
    return path


def quantize_onnx(source: Path, target: Path) -> Path:
    """`source` with dynamic int8 quantization of its MatMul/Gemm weights (ONNX Runtime), one
    scale per output channel. Weights use the full int8 range (no `reduce_range`): right for
    CPUs with VNNI (AVX512-VNNI / AVX-VNNI); an AVX2-only CPU may saturate u8*s8 products."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        quantize_dynamic(Path(source), Path(target), weight_type=QuantType.QInt8, per_channel=True)
    return Path(target)


class OnnxTaskModel:
    """An ONNX Runtime session that `forward_outputs` (and so the task types' `predict` and
    `evaluate`) runs like the Hugging Face model it was exported from."""

    def __init__(self, path: Path, config: PretrainedConfig, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=list(ONNX_RECIPE["disabled_optimizers"]))
        except Exception as err:
            raise OptimizeError(f"ONNX Runtime cannot load {path}: {_first_line(err)}") from None
        self.path = Path(path)
        self.config = config
        self.training = False
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def eval(self) -> OnnxTaskModel:
        return self

    def train(self, mode: bool = True) -> OnnxTaskModel:
        if mode:
            raise OptimizeError("an ONNX Runtime variant is for inference only: it cannot be put in training mode")
        return self

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise OptimizeError(f"the ONNX graph takes {', '.join(self.input_names)}; got also {', '.join(unknown)}")
        ids = inputs["input_ids"]
        feeds = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None:  # the HF defaults: attend to every token, segment A
                value = torch.ones_like(ids) if name == "attention_mask" else torch.zeros_like(ids)
            feeds[name] = np.ascontiguousarray(value.numpy(), dtype=np.int64)
        outputs = self.session.run(list(self.output_names), feeds)
        return {name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)}

    def __repr__(self) -> str:
        return f"OnnxTaskModel({self.path.name}, inputs={self.input_names}, outputs={self.output_names})"


# --- building, saving and loading variants -----------------------------------------------------------


@dataclass
class Variant:
    """A runnable variant: `model` is what `forward_outputs` runs; `onnx_file` is the graph an
    ONNX variant loads (kept until the variant is logged)."""

    name: str
    model: Any
    onnx_file: Path | None = None


def build_variant(model: PreTrainedModel, task: str, name: str, workdir: Path, threads: int | None = None) -> Variant:
    """The variant `name` of the fine-tuned fp32 `model`; ONNX files go to `workdir`.

    `onnx-int8` reuses `workdir/onnx-fp32/model.onnx` when the fp32 graph was built before.
    """
    check_variant(name, task)
    if name == FP32:
        return Variant(FP32, model)
    if name == "torch-int8":
        return Variant(name, quantize_torch(model))
    fp32_file = Path(workdir) / "onnx-fp32" / ONNX_FILE
    if not fp32_file.is_file():
        export_onnx(model, task, fp32_file)
    path = fp32_file
    if name == "onnx-int8":
        path = quantize_onnx(fp32_file, Path(workdir) / "onnx-int8" / ONNX_FILE)
    return Variant(name, OnnxTaskModel(path, model.config, threads), path)


def build_variants(model: PreTrainedModel, task: str, workdir: Path, names: tuple[str, ...] = VARIANTS,
                   threads: int | None = None) -> dict[str, Variant]:
    """Every variant in `names` (fp32 included when asked for), by name."""
    return {name: build_variant(model, task, name, workdir, threads) for name in names}


def write_variant_file(path: Path, name: str, source: Mapping[str, str] | None = None) -> Path:
    """`variant.json`: which variant a logged model is (and where it came from)."""
    Path(path).write_text(json.dumps({"variant": name, **(source or {})}, indent=2), encoding="utf-8")
    return Path(path)


def read_variant_file(path: Path | None) -> str:
    """The variant named in a `variant.json` (`fp32` when there is none)."""
    if path is None or not Path(path).is_file():
        return FP32
    try:
        return str(json.loads(Path(path).read_text(encoding="utf-8"))["variant"])
    except (ValueError, KeyError) as err:
        raise OptimizeError(f"{path} does not name a variant: {err}") from None


def load_variant(name: str, task: str, hf_dir: Path, onnx_dir: Path | None = None, threads: int | None = None,
                 speedups: Sequence[str] = ()):
    """The runnable model of a logged variant: `hf_dir` holds the config (and, for the torch
    variants, the fp32 weights, given the inference `speedups` before quantizing); `onnx_dir` the
    graph of an ONNX variant."""
    check_variant(name, task)
    if name in ONNX_VARIANTS:
        path = Path(onnx_dir or "") / ONNX_FILE
        if onnx_dir is None or not path.is_file():
            raise OptimizeError(f"variant {name} has no {ONNX_FILE} beside it")
        return OnnxTaskModel(path, AutoConfig.from_pretrained(hf_dir), threads)
    model = apply_inference_speedups(load_task_head(get_task_type(task).model_head[0], hf_dir), speedups)
    return quantize_torch(model) if name == "torch-int8" else model


# --- measuring and choosing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One model scored by its task's own `evaluate` on a split: its metrics and how fast the
    whole evaluation (tokenize, batched forward, metrics) ran, per timed run."""

    variant: str
    metrics: dict[str, float]
    headline: tuple[str, ...]
    runs: tuple[float, ...]  # samples/s of each timed evaluation
    examples: int

    @property
    def samples_per_s(self) -> float:
        return float(np.median(self.runs))

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "samples_per_s": self.samples_per_s, "runs": list(self.runs),
                "examples": self.examples, "metrics": {k: self.metrics[k] for k in self.headline}}


def timed_evaluation(task, model, tokenizer, split, label_names: list[str], settings) -> tuple[Any, float]:
    """(`task.evaluate(model, ...)`, its wall-clock seconds)."""
    start = time.perf_counter()
    evaluation = task.evaluate(model, tokenizer, split, label_names, settings)
    return evaluation, time.perf_counter() - start


def measure(models: Mapping[str, Any], task, tokenizer, split, label_names: list[str], settings, repeats: int = 3,
            warmup: int = 64) -> dict[str, Measurement]:
    """Score every model of `models` (variant name -> runnable model) on `split` with the task's
    own `evaluate`: one untimed warm-up on the first `warmup` examples each, then `repeats` rounds
    that alternate the models (so a slow spell of the machine hits all of them alike). The metrics
    are those of the first round (inference is deterministic); the speed is the median."""
    if repeats < 1:
        raise OptimizeError(f"repeats must be at least 1, got {repeats}")
    warm = split.select(range(min(warmup, len(split))))
    for model in models.values():
        task.evaluate(model, tokenizer, warm, label_names, settings)
    runs: dict[str, list[float]] = {name: [] for name in models}
    evaluations: dict[str, Any] = {}
    for _ in range(repeats):
        for name, model in models.items():
            evaluation, seconds = timed_evaluation(task, model, tokenizer, split, label_names, settings)
            evaluations.setdefault(name, evaluation)
            runs[name].append(len(split) / seconds)
    return {name: Measurement(name, dict(evaluations[name].metrics), tuple(evaluations[name].headline),
                              tuple(runs[name]), len(split)) for name in models}


@dataclass(frozen=True)
class Choice:
    """The variant to register (None when no variant qualifies) and why, with the numbers."""

    chosen: Measurement | None
    reason: str


def describe(m: Measurement, baseline: Measurement, metric: str) -> str:
    delta = m.metrics[metric] - baseline.metrics[metric]
    return (f"{m.variant}: {m.samples_per_s / baseline.samples_per_s:.2f}x samples/s "
            f"({m.samples_per_s:.1f} vs {baseline.samples_per_s:.1f}), {metric} {m.metrics[metric]:.4f} vs "
            f"{baseline.metrics[metric]:.4f} ({100 * delta:+.2f} pt)")


#: Variants whose speeds differ by less than this share are taken as equally fast (timing noise
#: on a shared machine is of that order); the more accurate of them is chosen.
SPEED_TIE = 0.05


def choose(baseline: Measurement, candidates: list[Measurement], metric: str, max_drop: float = 0.01,
           min_speedup: float = 1.0, speed_tie: float = SPEED_TIE) -> Choice:
    """The fastest candidate whose `metric` is at most `max_drop` below the baseline's (0.01 = one
    point) and whose samples/s are more than `min_speedup` times the baseline's; among candidates
    within `speed_tie` of the fastest one's samples/s, the one with the best `metric`."""
    if max_drop < 0:
        raise OptimizeError(f"max_drop must be >= 0 (the largest {metric} loss accepted), got {max_drop}")
    if not candidates:
        return Choice(None, "no variant to compare")
    within = [m for m in candidates if baseline.metrics[metric] - m.metrics[metric] <= max_drop + 1e-12]
    faster = [m for m in within if m.samples_per_s > min_speedup * baseline.samples_per_s]
    if faster:
        fastest = max(faster, key=lambda m: m.samples_per_s)
        tied = [m for m in faster if m.samples_per_s >= (1 - speed_tie) * fastest.samples_per_s]
        best = max(tied, key=lambda m: (m.metrics[metric], m.samples_per_s))
        note = "" if best is fastest else (f" (as fast as {fastest.variant} within {100 * speed_tie:.0f} %, "
                                           f"and more accurate)")
        return Choice(best, f"{describe(best, baseline, metric)}: the fastest variant within "
                            f"{100 * max_drop:.2f} pt of fp32{note}")
    why = f"within {100 * max_drop:.2f} pt of fp32's {metric}" + (
        f" and over {min_speedup:.2f}x its samples/s" if min_speedup > 0 else "")
    return Choice(None, f"no variant is {why} ({'; '.join(describe(m, baseline, metric) for m in candidates)})")


def comparison_table(baseline: Measurement, candidates: list[Measurement], metric: str) -> str:
    """The measurements as a fixed-width table for a terminal."""
    lines = [f"{'variant':<11} {'samples/s':>10} {'speedup':>8} {metric:>10} {'change':>9}"]
    for m in [baseline, *candidates]:
        delta = m.metrics[metric] - baseline.metrics[metric]
        change = "-" if m is baseline else f"{100 * delta:+.2f} pt"
        lines.append(f"{m.variant:<11} {m.samples_per_s:>10.1f} {m.samples_per_s / baseline.samples_per_s:>7.2f}x "
                     f"{m.metrics[metric]:>10.4f} {change:>9}")
    return "\n".join(lines)
