"""One dataclass tree for a run, read from YAML with `key=value` overrides.

Every field has a default, so a preset only states what differs. Validation names the
bad key or value and the accepted choices, and every run writes its resolved config.
The `method` section is polymorphic: `method.name` picks the method's own dataclass
(`METHODS`), and only its fields (and only the shared sections it reads) are accepted.

Why not OmegaConf structured configs: a section whose schema depends on a value in it
(`method.name`) is what Hydra solves with config groups, outside OmegaConf; OmegaConf's
Union support covers primitive types only, so the method section would have to be an
untyped dict validated here anyway. Its errors name the key but not the method a key
belongs to nor the fix, and it brings a pinned ANTLR runtime. This loader is ~200 lines
with the messages users see; YAML files stay plain and Hydra-compatible in layout.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
    # Skip Dropout (any diffusion method): p per (sample, channel) on the skips at these
    # resolutions (null: the two highest), training only
    skip_dropout: float | None = None
    skip_dropout_resolutions: list[int] | None = None
    # how the noise level enters each ResBlock: ADM's scale-shift norm (true, every preset
    # but `paper`) or added before the norm (false, the official FDAE generator)
    scale_shift: bool | None = None
    # the fewest channels in a GroupNorm group (4; 0: gcd(32, channels) groups, the layout
    # of runs saved before this option, which are read with it)
    norm_channels: int | None = None


@dataclass
class MethodConfig:
    """The base of every method's config section: the method's name. Each method module
    defines its own subclass with its fields (`fdae methods` lists them), and says in
    `SECTIONS` which of the shared sections (`unet`, `edm`) it reads; a config that sets
    a section or field its method does not have is refused with one clear message."""

    name: str = "fdae"
    SECTIONS: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Range checks of the method's own fields (raise `config_error`)."""


# Every method: its name -> "module:Class" (imported only when a config names it, so that
# reading a config stays light). The class has `Config`, its MethodConfig subclass.
METHODS: dict[str, str] = {
    "fdae": "fdae.methods.fdae:FDAE",
    "diffae": "fdae.methods.diffae:DiffAE",
    "encdiff": "fdae.methods.encdiff:EncDiff",
    "ddpm": "fdae.methods.ddpm:DDPM",
    "disdiff": "fdae.methods.disdiff:DisDiff",
    "cldis": "fdae.methods.cldis:CLDis",
    "beta-vae": "fdae.methods.vae.beta_vae:BetaVAE",
    "annealed-vae": "fdae.methods.vae.annealed_vae:AnnealedVAE",
    "beta-tcvae": "fdae.methods.vae.beta_tcvae:BetaTCVAE",
    "factor-vae": "fdae.methods.vae.factor_vae:FactorVAE",
    "dip-vae-i": "fdae.methods.vae.dip_vae:DIPVAEI",
    "dip-vae-ii": "fdae.methods.vae.dip_vae:DIPVAEII",
}
# Shared sections that only some methods read (the others refuse them).
OPTIONAL_SECTIONS = ("unet", "edm", "dyga")


def method_class(name: str) -> Any:
    """The method class registered under `name`, or one FdaeError listing the methods."""
    if name not in METHODS:
        raise FdaeError(f"config key 'method.name' is {name!r}; choose one of {', '.join(METHODS)}")
    import importlib

    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def method_config_class(name: str) -> type[MethodConfig]:
    return method_class(name).Config


def _default_method() -> MethodConfig:
    return method_config_class("fdae")()


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
    protocol: str = "paper"  # paper | dlib | unit-pca
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
class DygaConfig:
    """Dynamic Gaussian Anchoring (`fdae.methods.dyga`), read by the methods whose
    representation is made of units; off unless `dyga.enabled=true`."""

    enabled: bool = False
    every: int = 500  # steps between fits
    num_samples: int = 2000  # encoded training images per fit
    components: int = 8
    max_components: int = 32
    em_steps: int = 30
    split_rounds: int = 3
    split_distance: float = 0.5  # in the normalised space
    min_mass: float = 10.0  # total responsibility below which a component is pruned
    weight: float = 0.1  # lam's scale
    reg: float = 1e-6  # added to every covariance's diagonal

    def check(self) -> None:
        for key in ("every", "num_samples", "components", "max_components", "em_steps"):
            if not getattr(self, key) >= 1:
                raise config_error(f"dyga.{key}", ">= 1", getattr(self, key), f"set dyga.{key} to a positive integer")
        if self.max_components < self.components:
            raise config_error("dyga.max_components", f">= dyga.components ({self.components})", self.max_components,
                               "raise dyga.max_components or lower dyga.components")
        if not 0.0 <= self.weight <= 1.0:
            raise config_error("dyga.weight", "in [0, 1]", self.weight, "the paper's value is 0.1")
        for key in ("split_rounds", "min_mass", "split_distance"):
            if not getattr(self, key) >= 0:
                raise config_error(f"dyga.{key}", ">= 0", getattr(self, key), f"set dyga.{key}=0 to turn it off")
        if not self.reg > 0:
            raise config_error("dyga.reg", "> 0 (it keeps every covariance invertible)", self.reg,
                               "the reference's value is 1e-6")



@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=_default_method)
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    dyga: DygaConfig = field(default_factory=DygaConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "unet.preset": ("tiny", "fast", "paper"),
    "optim.name": ("radam", "adamw", "adam"),
    "train.precision": ("auto", "fp32", "bf16"),
    "train.dist_backend": ("auto", "nccl", "gloo"),
    "eval.protocol": ("paper", "dlib", "unit-pca"),
}


def unused_sections(cfg: "Config") -> set[str]:
    """The shared sections that `cfg`'s method does not read (a VAE: unet, edm)."""
    return set(OPTIONAL_SECTIONS) - set(type(cfg.method).SECTIONS)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain data of a config; of a whole `Config`, only the sections its method reads."""
    data = dataclasses.asdict(cfg)
    if isinstance(cfg, Config):
        for section in unused_sections(cfg):
            del data[section]
    return data


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
    if isinstance(obj, Config):  # the shared sections its method does not read are not keys here
        names -= unused_sections(obj)
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
            if isinstance(current, MethodConfig):
                setattr(obj, key, _method_section(current, value))
            else:
                _apply(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def _method_section(current: MethodConfig, data: dict[str, Any]) -> MethodConfig:
    """The `method` section: its `name` picks the method's own config class (a fresh one
    when the name changes), and only that method's fields are accepted."""
    name = data.get("name", current.name)
    if not isinstance(name, str):
        raise FdaeError(f"config key 'method.name' must be a method name, got {name!r}; choose one of "
                        f"{', '.join(METHODS)}")
    cls = method_config_class(name)
    cfg = current if type(current) is cls else cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            owners = [m for m in METHODS if m != name and key in
                      {f.name for f in dataclasses.fields(method_config_class(m))}]
            where = f"it is a field of {', '.join(owners)}, not of {name}" if owners else "no method has it"
            raise FdaeError(f"config key 'method.{key}' does not apply to method {name}: {where}. The fields of "
                            f"{name} are: {', '.join(sorted(fields - {'name'}))} (see `fdae methods`)")
    _apply(cfg, data, prefix="method.")
    return cfg


def _merge(into: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`data` merged into `into` key by key, sections recursively (later values win)."""
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


# Fields the method section once held for every method (one flat record); a run saved
# then holds the other method's fields too, unused, and is read without them.
_LEGACY_UNION = {"num_concepts", "content_dim", "mask_dim", "adjust_dim", "use_masks",
                 "content_decorrelation_weight", "mask_entropy_weight", "encoder_width",
                 "mask_decoder_width", "latent_dim"}


def _legacy_unet(data: dict[str, Any]) -> dict[str, Any]:
    """A run saved before `unet.scale_shift` existed was built with the time embedding
    added before GroupNorms of gcd(32, channels) groups: rebuild that network (norm_channels
    0 means that grouping), so its weights load as they were trained."""
    unet = data.get("unet")
    if not isinstance(unet, dict) or "scale_shift" in unet:
        return data
    return {**data, "unet": {**unet, "scale_shift": False, "norm_channels": 0}}


def _from_legacy(data: dict[str, Any]) -> dict[str, Any]:
    data = _legacy_unet(data)
    method = data.get("method")
    if not isinstance(method, dict) or method.get("name", "fdae") not in ("fdae", "diffae"):
        return data
    own = {f.name for f in dataclasses.fields(method_config_class(method.get("name", "fdae")))}
    data = dict(data)
    data["method"] = {k: v for k, v in method.items() if k in own or k not in _LEGACY_UNION}
    return data


def _build(data: dict[str, Any], saved: bool = False) -> Config:
    """A validated Config from merged YAML/override data. `saved`: data fdae wrote itself
    (a run's config.yaml or checkpoint), which may predate per-method sections."""
    if saved:
        data = _from_legacy(data)
    cfg = Config()
    method = data.get("method")
    if isinstance(method, dict):  # first: which sections the rest may set depends on it
        cfg.method = _method_section(cfg.method, method)
    elif method is not None:
        raise FdaeError("config key 'method' is a section; give its fields, e.g. method.name=fdae")
    name = cfg.method.name
    for section in sorted(unused_sections(cfg)):
        if section in data:
            keys = data[section]
            key = f"{section}.{next(iter(keys))}" if isinstance(keys, dict) and keys else section
            what = {"unet": "U-Net", "edm": "diffusion schedule", "dyga": "units to anchor"}[section]
            raise FdaeError(f"config key '{key}' does not apply to method {name}: it has no {what}. Remove the "
                            f"'{section}' section (only "
                            f"{', '.join(m for m in METHODS if section in method_config_class(m).SECTIONS)} "
                            f"read it)")
    _apply(cfg, {k: v for k, v in data.items() if k != "method"})
    return validate(cfg)


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


SEED_LIMIT = 2**32  # numpy's RandomState (the metrics, the global RNGs) takes seeds below 2**32


_HINTS = {
    "optim.lr": "the presets use 1e-4 (paper) to 1e-3 (tiny); set optim.lr=1e-4",
    "edm.sigma_min": "EDM's default is 0.002; set edm.sigma_min=0.002",
    "edm.sigma_max": "EDM's default is 80; set edm.sigma_max=80",
    "edm.rho": "EDM's default is 7; set edm.rho=7",
    "edm.sigma_data": "EDM's default is 0.5; set edm.sigma_data=0.5",
    "edm.p_mean": "EDM's default is -1.2; set edm.p_mean=-1.2",
    "edm.p_std": "EDM's default is 1.2; set edm.p_std=1.2",
    "train.steps": "set train.steps to the number of optimizer steps, e.g. train.steps=1000",
}
_POSITIVE_FLOATS = ("optim.lr", "edm.sigma_data", "edm.sigma_min", "edm.sigma_max", "edm.rho",
                    "optim.grad_clip", "train.time_limit_min")


def config_error(key: str, rule: str, value: Any, fix: str) -> FdaeError:
    """The one message of a bad config value: the key, the rule, the value, the fix."""
    return FdaeError(f"config key '{key}' must be {rule}, got {value!r}; {fix}")



def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_finite(obj: Any, prefix: str = "") -> None:
    """No float anywhere may be inf or nan: every consumer (optimizer, EDM schedule,
    sampler) would turn one into NaN weights or images much later."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.")
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise config_error(key, "a finite number" + (" > 0" if key in _POSITIVE_FLOATS else ""), v,
                            _HINTS.get(key, f"set {key} to a real value (see configs/*.yaml)"))


def validate(cfg: Config) -> Config:
    """Every field against its range, so a bad value stops the run before any work with
    one message that names the key and the fix (not a traceback minutes later)."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise FdaeError(f"config key '{key}' is {value!r}; choose one of {', '.join(allowed)}")
    _check_finite(cfg)
    if not cfg.name or cfg.name in (".", "..") or "/" in cfg.name or "\\" in cfg.name:
        raise config_error("name", "a plain name (it names the run directory runs/NAME-TIMESTAMP)", cfg.name,
                    "set name=my-run")
    if not isinstance(cfg.seed, int) or not 0 <= cfg.seed < SEED_LIMIT:
        raise config_error("seed", "an integer in [0, 2**32)", cfg.seed, "set seed=0 (or another non-negative integer)")
    if not cfg.data.name:
        raise config_error("data.name", "a dataset name", cfg.data.name, "see `fdae data list`, or use folder:PATH")
    m, u, e, o, t, ev = cfg.method, cfg.unet, cfg.edm, cfg.optim, cfg.train, cfg.eval
    positive = {  # strictly > 0
        "train.batch_size": t.batch_size,
        "train.steps": t.steps,
        "optim.lr": o.lr,
        "edm.sigma_data": e.sigma_data,
        "edm.sigma_min": e.sigma_min,
        "edm.sigma_max": e.sigma_max,
        "edm.rho": e.rho,
        "edm.sample_steps": e.sample_steps,
        "eval.num_test": ev.num_test,
        "eval.num_votes_train": ev.num_votes_train,
        "eval.num_votes_eval": ev.num_votes_eval,
        "eval.batch_size": ev.batch_size,
    }
    for key, value in positive.items():
        if not value > 0:
            raise config_error(key, "> 0", value, _HINTS.get(key, f"set {key} to a positive value"))
    for key, value in (("unet.channels", u.channels), ("unet.num_blocks", u.num_blocks),
                       ("unet.head_channels", u.head_channels)):
        if value is not None and not value >= 1:
            raise config_error(key, ">= 1 or null (null keeps the preset's)", value, f"set {key}=null or a positive integer")
    for key, value in (("unet.channel_mult", u.channel_mult), ("unet.attn_resolutions", u.attn_resolutions),
                       ("unet.skip_dropout_resolutions", u.skip_dropout_resolutions)):
        if value is None:
            continue
        if key == "unet.channel_mult" and not value:
            raise config_error(key, "a non-empty list of positive integers or null", value, "e.g. unet.channel_mult=[1,2,2]")
        if not all(v >= 1 for v in value):
            raise config_error(key, "a list of positive integers or null", value,
                        "e.g. unet.channel_mult=[1,2,2] or unet.attn_resolutions=[16]")
    if u.norm_channels is not None and not (isinstance(u.norm_channels, int) and u.norm_channels >= 0):
        raise config_error("unet.norm_channels", ">= 1 (0: gcd(32, channels) groups, as fdae before it), or null",
                           u.norm_channels, "set unet.norm_channels=4 (the default) or null")
    if u.dropout is not None and not 0.0 <= u.dropout < 1.0:
        raise config_error("unet.dropout", "in [0, 1) or null", u.dropout, "set unet.dropout=0")
    if u.skip_dropout is not None and not 0.0 <= u.skip_dropout < 1.0:
        raise config_error("unet.skip_dropout", "in [0, 1) or null", u.skip_dropout,
                           "set unet.skip_dropout=0.2 (the paper's p) or 0 to turn it off")
    m.check()
    if "dyga" in type(m).SECTIONS:
        cfg.dyga.check()
    for key, value in (("optim.weight_decay", o.weight_decay),):
        if not value >= 0:
            raise config_error(key, ">= 0", value, f"set {key}=0 to turn it off")
    if not e.p_std >= 0:
        raise config_error("edm.p_std", ">= 0", e.p_std, _HINTS["edm.p_std"])
    at_least = {
        "train.log_every": (t.log_every, 1),
        "train.keep_last": (t.keep_last, 1),
        "train.max_bad_steps": (t.max_bad_steps, 1),
        "train.grad_accum": (t.grad_accum, 1),
        "train.image_steps": (t.image_steps, 1),
        "train.ckpt_every": (t.ckpt_every, 0),
        "train.eval_every": (t.eval_every, 0),
        "eval.async_workers": (ev.async_workers, 0),
        "eval.num_train": (ev.num_train, 2),
        "optim.warmup_steps": (o.warmup_steps, 0),
    }
    if t.image_every is not None:
        at_least["train.image_every"] = (t.image_every, 0)
    for key, (value, low) in at_least.items():
        if value < low:
            raise config_error(key, f">= {low}", value, f"set {key}={max(low, 1)} or more")
    for key, value in (("optim.grad_clip", o.grad_clip), ("train.time_limit_min", t.time_limit_min)):
        if value is not None and not value > 0:
            raise config_error(key, "> 0 or null", value, f"set {key}=null to turn it off")
    size = cfg.data.image_size
    if size is not None and (size < 16 or size % 16):
        raise FdaeError(f"config key 'data.image_size' must be a multiple of 16 (64 or 128) or null, got {size!r}")
    if size is not None and not cfg.data.name.startswith("folder:") and size not in (16, 32, 64):
        raise FdaeError(f"config key 'data.image_size' is {size}, but {cfg.data.name} has 64x64 images: choose 32 "
                        "or 16 to train on a box-filtered copy, or null; higher resolutions are for image folders "
                        "(data.name=folder:PATH).")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise FdaeError(f"config key 'optim.betas' must be two numbers in [0, 1), got {o.betas!r}; "
                        f"Adam's default is optim.betas=[0.9,0.999]")
    if t.batch_size % t.grad_accum:
        raise FdaeError(
            f"config key 'train.batch_size' ({t.batch_size}) must be divisible by "
            f"'train.grad_accum' ({t.grad_accum})"
        )
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        raise FdaeError(f"config key 'train.ema_decay' must be in (0, 1) or null, got {t.ema_decay}; "
                        f"e.g. train.ema_decay=0.999, or null for no EMA")
    if e.sigma_min >= e.sigma_max:
        raise FdaeError(f"config key 'edm.sigma_min' ({e.sigma_min}) must be below 'edm.sigma_max' "
                        f"({e.sigma_max}); EDM uses 0.002 and 80")
    from fdae.metrics.protocol import PROTOCOL_METRICS, parse_metrics  # light: no torch, no scikit-learn

    try:
        parse_metrics(list(ev.metrics), ev.protocol)
    except FdaeError:
        allowed = ", ".join(PROTOCOL_METRICS[ev.protocol])
        raise FdaeError(f"config key 'eval.metrics' is {ev.metrics!r}; under eval.protocol={ev.protocol} choose "
                        f"one or more of {allowed} (eval.protocol=dlib also has sap, modularity, beta_vae)") from None
    return cfg


def with_absolute_paths(cfg: Config) -> Config:
    """`data.root`, a `folder:PATH` dataset and a pretrained run (`method.pretrained`) made
    absolute (and `~` expanded), so that a run's saved config finds them from any working
    directory later."""
    if cfg.data.root is not None:
        cfg.data.root = str(Path(cfg.data.root).expanduser().absolute())
    if cfg.data.name.startswith("folder:"):
        cfg.data.name = "folder:" + str(Path(cfg.data.name[len("folder:"):]).expanduser().absolute())
    if getattr(cfg.method, "pretrained", ""):  # DisDiff's stage-1 run
        cfg.method.pretrained = str(Path(cfg.method.pretrained).expanduser().absolute())
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                saved: bool = False) -> Config:
    """Defaults <- YAML file <- `key=value` overrides, then validated. `saved`: the file
    is a run's own config.yaml (older layouts are read too)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = resolve_preset(path)
        # A run directory's config.yaml (e.g. `--config runs/X/config.yaml`) is fdae's own.
        saved = saved or (p.name == "config.yaml" and (p.parent / "checkpoints").is_dir())
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise FdaeError(f"config file {p} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise FdaeError(f"config file {p} must hold a mapping of sections, got {type(data).__name__}")
    for text in overrides or []:
        _merge(data, parse_override(text))
    return _build(data, saved=saved)


def config_from_dict(data: dict[str, Any]) -> Config:
    """The config a checkpoint holds (written by any version of fdae)."""
    return _build(data, saved=True)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
