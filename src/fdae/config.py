"""One dataclass tree for a run, read from YAML with `key=value` overrides.

Every field has a default, so a preset only states what differs. Validation names the
bad key or value and the accepted choices, and every run writes its resolved config.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdae.errors import FdaeError


@dataclass
class DataConfig:
    name: str = "shapes3d-synth"  # a dataset name (fdae data list), or folder:PATH for your own images
    root: str | None = None
    image_size: int | None = None  # folder:PATH: 64 (default) or 128; ground-truth datasets: 32 or 16 (box-filtered)


@dataclass
class UNetConfig:
    """A preset name plus optional overrides of its fields (None keeps the preset's)."""

    preset: str = "tiny"
    channels: int | None = None
    channel_mult: list[int] | None = None
    num_blocks: int | None = None
    attn_resolutions: list[int] | None = None
    head_channels: int | None = None
    dropout: float | None = None
    resblock_updown: bool | None = None


@dataclass
class MethodConfig:
    name: str = "fdae"  # fdae | diffae
    num_concepts: int = 6  # N
    content_dim: int = 80  # dims of each raw content code f_c
    mask_dim: int = 80  # d_m, dims of each mask code
    adjust_dim: int = 80  # channels of each adjusted content code f'_c = condition-map channels
    use_masks: bool = True  # False: the E+G ablation (one code, no masks)
    content_decorrelation_weight: float = 2.5e-5
    mask_entropy_weight: float = 1e-4
    encoder_width: int = 64  # ResNet-18 base width (64 = the standard trunk)
    mask_decoder_width: int = 384  # first mask-decoder width (Table 3: 384)
    latent_dim: int = 512  # Diff-AE: size of the semantic code


@dataclass
class EDMConfig:
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sample_steps: int = 40


@dataclass
class OptimConfig:
    name: str = "radam"  # radam | adamw | adam
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float | None = None
    warmup_steps: int = 0
    fused: bool = True  # fused optimizer kernels where the device supports them


@dataclass
class TrainConfig:
    batch_size: int = 32
    steps: int = 100_000
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    ema_decay: float | None = None
    log_every: int = 50
    ckpt_every: int = 1000
    keep_last: int = 3
    eval_every: int = 0  # 0: no periodic evaluation
    max_bad_steps: int = 20  # consecutive non-finite steps before the run stops
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    time_limit_min: float | None = None  # stop (with a checkpoint) after this many minutes
    grad_accum: int = 1  # micro-batches per rank and step (the batch is split into world*accum shards)
    image_every: int | None = None  # input|reconstruction grids every N steps (None: 10 x log_every, 0: off)
    image_steps: int = 20  # Heun steps for those grids
    dist_backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo


@dataclass
class EvalConfig:
    protocol: str = "paper"  # paper | dlib
    metrics: list[str] = field(default_factory=lambda: ["dci", "factor_vae", "mig"])
    num_train: int = 10_000
    num_test: int = 5_000
    num_votes_train: int = 10_000
    num_votes_eval: int = 5_000
    batch_size: int = 64
    async_workers: int = 0  # > 0: periodic evaluation in that many background processes
    # At a time-limit stop, wait for background evaluations (false: leave them to the
    # resumed session, which evaluates their snapshots; the end of training always waits).
    async_wait: bool = True


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "method.name": ("fdae", "diffae"),
    "unet.preset": ("tiny", "fast", "paper"),
    "optim.name": ("radam", "adamw", "adam"),
    "train.precision": ("auto", "fp32", "bf16"),
    "train.dist_backend": ("auto", "nccl", "gloo"),
    "eval.protocol": ("paper", "dlib"),
}


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's annotated type, or raise a clear error."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if isinstance(value, str):
            value = yaml.safe_load(value if value.startswith("[") else f"[{value}]")
        if not isinstance(value, (list, tuple)):
            raise FdaeError(f"config key '{key}' expects a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise FdaeError(f"config key '{key}' expects true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise FdaeError(f"config key '{key}' expects a number, got {value!r}")
        try:
            num = float(value) if tp is float else _to_int(value)
        except (TypeError, ValueError):
            raise FdaeError(f"config key '{key}' expects {tp.__name__}, got {value!r}") from None
        return num
    if tp is str:
        if value is None:
            raise FdaeError(f"config key '{key}' expects a string, got null")
        return str(value)
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, str):
        f = float(value)
        if not f.is_integer():
            raise ValueError(value)
        return int(f)
    return int(value)


def _apply(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise FdaeError(
                f"unknown config key '{full}'; valid keys here: {', '.join(sorted(names))}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise FdaeError(f"config key '{full}' is a section; give its fields, e.g. {full}.<field>=...")
            _apply(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=3` -> {'a': {'b': 3}} with the value parsed as YAML."""
    if "=" not in text:
        raise FdaeError(f"override '{text}' must look like key=value, e.g. train.steps=1000")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def validate(cfg: Config) -> Config:
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise FdaeError(f"config key '{key}' is {value!r}; choose one of {', '.join(allowed)}")
    positive = {
        "method.num_concepts": cfg.method.num_concepts,
        "method.content_dim": cfg.method.content_dim,
        "method.mask_dim": cfg.method.mask_dim,
        "method.adjust_dim": cfg.method.adjust_dim,
        "train.batch_size": cfg.train.batch_size,
        "train.steps": cfg.train.steps,
        "optim.lr": cfg.optim.lr,
        "edm.sigma_data": cfg.edm.sigma_data,
        "edm.sample_steps": cfg.edm.sample_steps,
    }
    for key, value in positive.items():
        if not value > 0:
            raise FdaeError(f"config key '{key}' must be > 0, got {value!r}")
    at_least = {
        "train.log_every": (cfg.train.log_every, 1),
        "train.keep_last": (cfg.train.keep_last, 1),
        "train.max_bad_steps": (cfg.train.max_bad_steps, 1),
        "train.grad_accum": (cfg.train.grad_accum, 1),
        "train.image_steps": (cfg.train.image_steps, 1),
        "train.ckpt_every": (cfg.train.ckpt_every, 0),
        "train.eval_every": (cfg.train.eval_every, 0),
        "eval.async_workers": (cfg.eval.async_workers, 0),
        "optim.warmup_steps": (cfg.optim.warmup_steps, 0),
        "optim.weight_decay": (cfg.optim.weight_decay, 0),
    }
    if cfg.train.image_every is not None:
        at_least["train.image_every"] = (cfg.train.image_every, 0)
    for key, (value, low) in at_least.items():
        if value < low:
            raise FdaeError(f"config key '{key}' must be >= {low}, got {value!r}")
    for key, value in (("optim.grad_clip", cfg.optim.grad_clip), ("train.time_limit_min", cfg.train.time_limit_min)):
        if value is not None and not value > 0:
            raise FdaeError(f"config key '{key}' must be > 0 or null, got {value!r}")
    size = cfg.data.image_size
    if size is not None and (size < 16 or size % 16):
        raise FdaeError(f"config key 'data.image_size' must be a multiple of 16 (64 or 128) or null, got {size!r}")
    if size is not None and not cfg.data.name.startswith("folder:") and size not in (16, 32, 64):
        raise FdaeError(f"config key 'data.image_size' is {size}, but {cfg.data.name} has 64x64 images: choose 32 "
                        "or 16 to train on a box-filtered copy, or null; higher resolutions are for image folders "
                        "(data.name=folder:PATH).")
    if len(cfg.optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        raise FdaeError(f"config key 'optim.betas' must be two numbers in [0, 1), got {cfg.optim.betas!r}")
    if cfg.train.batch_size % cfg.train.grad_accum:
        raise FdaeError(
            f"config key 'train.batch_size' ({cfg.train.batch_size}) must be divisible by "
            f"'train.grad_accum' ({cfg.train.grad_accum})"
        )
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        raise FdaeError(f"config key 'train.ema_decay' must be in (0, 1) or null, got {cfg.train.ema_decay}")
    if not cfg.method.use_masks and cfg.method.num_concepts != 1:
        raise FdaeError(
            "method.use_masks=false is the E+G ablation and needs method.num_concepts=1"
        )
    if cfg.edm.sigma_min >= cfg.edm.sigma_max:
        raise FdaeError("config key 'edm.sigma_min' must be below 'edm.sigma_max'")
    return cfg


def with_absolute_paths(cfg: Config) -> Config:
    """`data.root` and a `folder:PATH` dataset made absolute (and `~` expanded), so that a
    run's saved config finds its data from any working directory later."""
    if cfg.data.root is not None:
        cfg.data.root = str(Path(cfg.data.root).expanduser().absolute())
    if cfg.data.name.startswith("folder:"):
        cfg.data.name = "folder:" + str(Path(cfg.data.name[len("folder:"):]).expanduser().absolute())
    return cfg


# The presets ship inside the package (package data), so a name resolves from any
# working directory and from an installed wheel alike.
PRESET_DIR = Path(__file__).resolve().parent / "configs"


def list_presets() -> list[str]:
    """Names of the presets shipped with fdae (`--config NAME`), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The packaged YAML file of the preset `name`, or one FdaeError naming the presets."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FdaeError(f"unknown preset '{name}'; the presets are: {', '.join(list_presets())} "
                        "(or give the path of a YAML file)")
    return path


def resolve_preset(path: str | Path) -> Path:
    """A YAML file as given, else a preset: a bare name (`shapes3d-tiny`), or the path
    `configs/NAME.yaml` the presets had in the repository before they became package
    data (so commands written for a checkout keep working anywhere)."""
    p = Path(path)
    if p.is_file():
        return p
    if len(p.parts) == 1 and p.suffix not in (".yaml", ".yml"):
        return preset_path(p.name)
    if p.suffix in (".yaml", ".yml") and p.parent.name == "configs" and p.stem in list_presets():
        return PRESET_DIR / f"{p.stem}.yaml"
    raise FdaeError(f"config file not found: {p}; give a YAML file, or a preset by name: "
                    f"{', '.join(list_presets())}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- `key=value` overrides, then validated."""
    cfg = Config()
    if path is not None:
        p = resolve_preset(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise FdaeError(f"config file {p} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise FdaeError(f"config file {p} must hold a mapping of sections, got {type(data).__name__}")
        _apply(cfg, data)
    for text in overrides or []:
        _apply(cfg, parse_override(text))
    return validate(cfg)


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    _apply(cfg, data)
    return validate(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
