"""Training-step speed: images/s of a full step (forward, ASL loss, backward, optimizer step,
schedule, EMA update) with the trainer's own components, against a straightforward reference of the
same model, plus peak memory. Prints a table and a JSON line.

    python benchmarks/bench_train.py [-c CFG] [-o Key=value ...] [--batch N] [--size S] [--steps K]
        [--dtype fp32 bf16 fp16] [--channels-last on off] [--compile on off] [--device auto]

Without -c it runs the default cases: the demo config (96 px, batch 32) and a ResNet-50 Query2Label
with the official head dimensions (224 px, batch 8) on CPU; larger batches and resolutions on GPU.
"Ours" is built like the trainer builds it (build_model, build_loss, build_optimizer, ModelEMA) and
steps through ppq2l.engine.trainer's compute_training_loss and apply_gradients. The reference
keeps the same backbone, loss and weights, but runs the transformer as the official Query2Label
code does (sequence-first nn.MultiheadAttention with attention weights, post-norm), plain AdamW
(foreach=False) and an EMA updated parameter by parameter in Python; in float32 contiguous on CPU,
float16 autocast with a loss scaler on GPU. Each variant runs in a fresh process so that peak
memory is its own: CUDA max_memory_allocated on GPU; on CPU the growth of the process's maximum
resident set size (resource.getrusage) from after the imports to the end of the timed steps.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppq2l.arch import build_model
from ppq2l.arch.query2label import Query2Label
from ppq2l.config import get_config
from ppq2l.engine.ema import ModelEMA
from ppq2l.engine.runtime import Precision, resolve_device
from ppq2l.engine.trainer import apply_gradients, compute_training_loss
from ppq2l.loss import build_loss
from ppq2l.optimizer import build_optimizer

from bench_common import write_results

DEMO = "configs/quick_start/Q2L_demo_shapes.yaml"
Q2L_R50 = ("configs/MultiLabelCOCO/Query2Label/Q2L_R101_448.yaml",
           ["Arch.backbone.arch=resnet50", "Arch.backbone.pretrained=False"])
# (config, overrides, batch, size, timed steps) per device type when no -c is given.
DEFAULT_CASES = {
    "cpu": [(DEMO, [], 32, 96, 30), (*Q2L_R50, 8, 224, 4)],
    "cuda": [(DEMO, [], 256, 96, 30), (*Q2L_R50, 32, 448, 20)],
}
CASE_NAMES = {DEMO: "demo", Q2L_R50[0]: "Q2L ResNet-50"}
AMP_DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


# ----------------------------------------------------------------------------- reference model
class ReferenceEncoderLayer(nn.Module):
    """Post-norm DETR encoder layer on [sequence, batch, channel] tensors, as in the official code."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        q = k = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src)[0]))
        src2 = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(src2))


class ReferenceDecoderLayer(nn.Module):
    """Post-norm DETR decoder layer without query self-attention (the official Query2Label default)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        tgt2 = self.multihead_attn(tgt + query_pos, memory + pos, value=memory)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


class ReferenceTransformer(nn.Module):
    """Encoder and decoder stacks with the official key names (`encoder.layers.0.self_attn...`)."""

    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        first = ours.decoder.layers[0]
        d_model, heads = first.multihead_attn.embed_dim, first.multihead_attn.num_heads
        feedforward, dropout = first.linear1.out_features, first.dropout.p
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(ReferenceEncoderLayer(d_model, heads, feedforward, dropout)
                                            for _ in ours.encoder.layers)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(ReferenceDecoderLayer(d_model, heads, feedforward, dropout)
                                            for _ in ours.decoder.layers)
        self.decoder.norm = nn.LayerNorm(d_model)
        self.load_state_dict(ours.state_dict())


class ReferenceQuery2Label(nn.Module):
    """Our Query2Label's backbone, projection, queries and classifier with the reference transformer."""

    def __init__(self, ours: Query2Label) -> None:
        super().__init__()
        if any(hasattr(layer, "self_attn") for layer in ours.transformer.decoder.layers) \
                or ours.transformer.encoder.norm is not None:
            raise SystemExit("the reference covers the official default (post-norm, no decoder "
                             "self-attention); this config differs")
        self.backbone, self.input_proj = ours.backbone, ours.input_proj
        self.position_embedding, self.query_embed, self.fc = (
            ours.position_embedding, ours.query_embed, ours.fc)
        self.transformer = ReferenceTransformer(ours.transformer)

    def forward(self, images: Tensor) -> Tensor:
        features = self.input_proj(self.backbone(images))
        pos = self.position_embedding(features).flatten(2).permute(2, 0, 1)  # [HW, 1, d]
        batch = features.shape[0]
        memory = features.flatten(2).permute(2, 0, 1)  # [HW, B, d]
        pos = pos.repeat(1, batch, 1)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)  # [K, B, d]
        for layer in self.transformer.encoder.layers:
            memory = layer(memory, pos)
        tgt = torch.zeros_like(query_pos)
        for layer in self.transformer.decoder.layers:
            tgt = layer(tgt, memory, pos, query_pos)
        decoded = self.transformer.decoder.norm(tgt).transpose(0, 1)  # [B, K, d]
        return (self.fc.W * decoded).sum(-1) + self.fc.b


class LoopEMA:
    """Exponential moving average updated tensor by tensor, as the official recipes write it."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for key, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.copy_(self.decay * value + (1.0 - self.decay) * current[key])
            else:
                value.copy_(current[key])


# ----------------------------------------------------------------------------- one variant
def max_rss_bytes() -> int:
    """The process's maximum resident set size so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_ours(config: dict, device: torch.device, spec: dict):
    """Model and step function, built the way the trainer builds them."""
    model = build_model(config["Arch"]).to(device)
    if spec["channels_last"]:
        model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config["Loss"]["Train"], where="Loss.Train")
    optimizer, lr_scheduler = build_optimizer(config["Optimizer"], model, spec["steps"] * 4, 1)
    ema_config = config.get("EMA") or {"decay": 0.9997, "warmup": False}
    ema = ModelEMA(model, ema_config["decay"], ema_config["warmup"])
    dtype = AMP_DTYPES[spec["dtype"]]
    precision = Precision({"dtype": dtype} if dtype else None, device)
    train_model = torch.compile(model) if spec["compile"] else model
    clip = config["Global"].get("clip_grad_norm")

    def step(images: Tensor, targets: Tensor) -> None:
        loss = compute_training_loss(train_model, loss_fn, images, targets, precision)
        precision.scaler.scale(loss).backward()
        apply_gradients(model, optimizer, precision.scaler, lr_scheduler, ema, clip)

    return model, step


def build_reference(config: dict, device: torch.device, spec: dict):
    """The reference model (weights equal to ours, checked) with its plain training step."""
    ours = build_model(config["Arch"])
    if not isinstance(ours, Query2Label):
        raise SystemExit(f"the reference is a Query2Label; {config['Arch']['name']} has none")
    model = ReferenceQuery2Label(ours)
    check = torch.randn(2, 3, spec["size"], spec["size"])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(check), ours.eval()(check), atol=1e-4, rtol=1e-4)
    del ours
    model.train().to(device)
    loss_fn = build_loss(config["Loss"]["Train"], where="Loss.Train")
    optimizer_config = config["Optimizer"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=optimizer_config["lr"]["learning_rate"],
                                  weight_decay=optimizer_config.get("weight_decay", 1e-2), foreach=False)
    ema = LoopEMA(model, (config.get("EMA") or {}).get("decay", 0.9997))
    use_fp16 = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)

    def step(images: Tensor, targets: Tensor) -> None:
        with torch.autocast("cuda", dtype=torch.float16) if use_fp16 else nullcontext():
            logits = model(images)
        loss = loss_fn(logits, targets)["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)

    return model, step


def run_variant(spec: dict) -> dict:
    """Time `spec["steps"]` training steps of one variant after warm-up; returns its record."""
    device = resolve_device(spec["device"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    config = get_config(spec["config"], spec["overrides"])
    rss_before = max_rss_bytes()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    build = build_reference if spec["variant"] == "reference" else build_ours
    model, step = build(config, device, spec)
    memory_format = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    images = torch.randn(spec["batch"], 3, spec["size"], spec["size"], device=device).contiguous(
        memory_format=memory_format)
    targets = (torch.rand(spec["batch"], int(config["Arch"]["class_num"]), device=device) < 0.3).float()
    model.train()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(spec["warmup"]):
        step(images, targets)
    synchronize()
    times = []
    for _ in range(spec["steps"]):  # the median step resists the other loads of a shared machine
        started = time.perf_counter()
        step(images, targets)
        synchronize()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    record = {"images_per_second": spec["batch"] / seconds, "step_ms": seconds * 1e3,
              "step_ms_all": [round(value * 1e3, 1) for value in times]}
    if device.type == "cuda":
        record["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        record["memory_measure"] = "cuda max_memory_allocated"
    else:
        record["peak_memory_mib"] = (max_rss_bytes() - rss_before) / 2 ** 20
        record["memory_measure"] = "cpu max RSS growth (getrusage)"
    return record


def run_in_child(spec: dict) -> dict:
    """Run one variant in a fresh interpreter; a failure becomes an `error` record, not a crash."""
    result = subprocess.run([sys.executable, __file__, "--variant-json", json.dumps(spec)],
                            capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "error": reason[:300]}
    return {**spec, **json.loads(lines[-1])}


# ----------------------------------------------------------------------------- driver
def describe(row: dict) -> str:
    """Short label of a variant for the table."""
    if row["variant"] == "reference":
        return "reference (MHA weights, loop AdamW/EMA" + (", fp16 autocast)" if row["device"] == "cuda"
                                                           else ", fp32 NCHW)")
    layout = "NHWC" if row["channels_last"] else "NCHW"
    return f"ours ({row['dtype']}, {layout}{', compiled' if row['compile'] else ''})"


def cases(args: argparse.Namespace, device: torch.device) -> list[tuple]:
    """The (config, overrides, batch, size, steps) cases to run."""
    if args.config is None:
        return [(cfg, overrides + args.override, args.batch or batch, args.size or size, args.steps or steps)
                for cfg, overrides, batch, size, steps in DEFAULT_CASES[device.type]]
    size = args.size or int(get_config(args.config, args.override)["Global"]["image_shape"][-1])
    return [(args.config, args.override, args.batch or 32, size, args.steps or 10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=None)
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", nargs="+", choices=list(AMP_DTYPES), default=None,
                        help="our variants' precision (default: fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--channels-last", nargs="+", choices=["on", "off"], default=["on"])
    parser.add_argument("--compile", nargs="+", choices=["on", "off"], default=["off"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", default="benchmarks/results/bench_train.json")
    parser.add_argument("--variant-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant_json:
        print(json.dumps(run_variant(json.loads(args.variant_json))))
        return

    device = resolve_device(args.device)
    dtypes = args.dtype or (["bf16"] if device.type == "cuda" else ["fp32"])
    rows = []
    for cfg, overrides, batch, size, steps in cases(args, device):
        base = {"config": cfg, "overrides": overrides, "batch": batch, "size": size, "steps": steps,
                "warmup": args.warmup, "device": device.type, "threads": args.threads}
        reference = run_in_child({**base, "variant": "reference", "dtype": "fp16" if device.type == "cuda"
                                  else "fp32", "channels_last": False, "compile": False})
        rows.append(reference)
        for dtype in dtypes:
            for layout in args.channels_last:
                for compiled in args.compile:
                    if dtype == "fp16" and device.type != "cuda":
                        rows.append({**base, "variant": "ours", "dtype": dtype, "channels_last": layout == "on",
                                     "compile": compiled == "on", "error": "fp16 autocast needs CUDA"})
                        continue
                    row = run_in_child({**base, "variant": "ours", "dtype": dtype,
                                        "channels_last": layout == "on", "compile": compiled == "on"})
                    if "error" not in row and "error" not in reference:
                        row["vs_reference"] = row["images_per_second"] / reference["images_per_second"]
                    rows.append(row)

    print(f"{'case':<34} {'variant':<46} {'img/s':>8} {'step ms':>9} {'peak MiB':>9} {'vs ref':>7}")
    for row in rows:
        name = CASE_NAMES.get(row["config"], Path(row["config"]).stem) if args.config is None \
            else Path(row["config"]).stem
        case = f"{name} {row['size']}px b{row['batch']}"
        if "error" in row:
            print(f"{case:<34} {describe(row):<46} unavailable: {row['error']}")
            continue
        ratio = f"{row['vs_reference']:.2f}x" if "vs_reference" in row else ""
        print(f"{case:<34} {describe(row):<46} {row['images_per_second']:>8.1f} {row['step_ms']:>9.1f} "
              f"{row['peak_memory_mib']:>9.0f} {ratio:>7}")
    print("peak memory:", "CUDA max_memory_allocated" if device.type == "cuda" else
          "growth of the process's max resident set size (getrusage), CPU")
    results = {"benchmark": "train_step", "device": device.type, "rows": rows,
               "machine": {"processor": platform.processor() or platform.machine(),
                           "python": platform.python_version(), "torch": torch.__version__,
                           "threads": args.threads or torch.get_num_threads(),
                           "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}}
    write_results(results, args.output)


if __name__ == "__main__":
    main()
