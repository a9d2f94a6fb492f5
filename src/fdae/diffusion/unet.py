"""The one U-Net of fdae (ADM / guided-diffusion layout), configurable by presets.

Three ways to condition it, chosen per method:
  * a spatial map added after the input convolution (FDAE: `h = conv0(x) + cond_map`,
    then a second convolution widens to the base channels);
  * a vector latent that scales each ResBlock's normalised features (Diff-AE's
    adaptive group norm: `h = (GN(h) * (1 + s_t) + b_t) * (1 + s(z))`);
  * a set of condition tokens (B, N, context_dim) read by cross-attention (EncDiff, the
    LDM layout): with `context_dim > 0` the attention at `attn_resolutions` and in the
    middle becomes a transformer block (self-attention, cross-attention, feed-forward).
The noise level enters every ResBlock through a sinusoidal embedding, by default as ADM's
scale-shift norm, `GN(h) * (1 + s_t) + b_t`, after the norm, so no normalisation can remove
it; the method's own FiLM (Diff-AE's AdaGN, DisDiff's `* (1 + s_z) + b_z`) follows it, as in
ADM, Diff-AE and DisDiff's code. The `paper` preset keeps the official FDAE generator's
additive embedding (`GN(h + e_t)`), harmless there because its 32 groups hold 6 or more
channels each; an additive embedding before a one-channel group (an instance norm, which
subtracts it exactly) is refused (`check_conditioning`).

Skip Dropout (the DyGA paper's plug-in) drops whole channels of the skip connections at
the chosen resolutions in training, so the decoder has to rely on its conditioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fdae.nn.norm import GroupNorm32


@dataclass(frozen=True)
class UNetSpec:
    channels: int = 192
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_blocks: int = 3
    attn_resolutions: tuple[int, ...] = (32, 16, 8)
    head_channels: int = 64
    dropout: float = 0.1
    resblock_updown: bool = True
    image_size: int = 64
    in_channels: int = 3
    out_channels: int = 3
    cond_channels: int = 0  # spatial condition map channels (0: none)
    latent_dim: int = 0  # vector latent for AdaGN (0: none)
    latent_shift: bool = False  # the latent also shifts (FiLM: h (1 + s(z)) + b(z); DisDiff's G)
    context_dim: int = 0  # width of cross-attention condition tokens (0: none)
    skip_dropout: float = 0.0  # Skip Dropout probability p (0: off)
    # resolutions whose skips are dropped; None: the two highest (the "high-resolution levels")
    skip_dropout_resolutions: tuple[int, ...] | None = None
    time_scale: float = 1000.0  # the embedding sees time_scale * c_noise (official FDAE)
    # ADM's use_scale_shift_norm: the noise level's embedding scales and shifts the
    # normalised features (True) or is added before the norm (False: the official FDAE)
    scale_shift: bool = True
    # every GroupNorm has as many groups as possible, at most 32, of at least this many
    # channels each (32 groups of 6 at the paper's 192 channels; 4 of 4 at 16 channels)
    norm_channels: int = 4


PRESETS: dict[str, UNetSpec] = {
    # The official FDAE generator: 281.5 M parameters with an 80-channel condition map.
    "paper": UNetSpec(scale_shift=False),
    # Sized for minutes of training on one GPU (see BENCHMARKS.md).
    "fast": UNetSpec(channels=96, channel_mult=(1, 2, 3, 4), num_blocks=2,
                     attn_resolutions=(16, 8), head_channels=64, dropout=0.0),
    # For CPU tests and the demo.
    "tiny": UNetSpec(channels=32, channel_mult=(1, 2, 2), num_blocks=1,
                     attn_resolutions=(16,), head_channels=32, dropout=0.0),
}


def make_spec(preset: str, **overrides) -> UNetSpec:
    """A preset with non-None overrides applied (lists become tuples)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown U-Net preset {preset!r}; choose one of {', '.join(PRESETS)}")
    clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
    return replace(PRESETS[preset], **clean)


def norm_groups(ch: int, min_channels: int = 4, max_groups: int = 32) -> int:
    """The number of GroupNorm groups for `ch` channels: the most groups, at most
    `max_groups`, that divide `ch` into groups of at least `min_channels` channels (one
    group when `ch` is below `min_channels`). 32 for every width of the paper's U-Net, as
    the official GroupNorm32. `min_channels` 0: gcd(max_groups, ch), the grouping of runs
    saved before this option (one channel per group at 16 or 32 channels)."""
    if min_channels == 0:
        return math.gcd(max_groups, ch)
    for groups in range(min(max_groups, ch), 0, -1):
        if ch % groups == 0 and ch // groups >= min_channels:
            return groups
    return 1


def _norm(ch: int, min_channels: int) -> nn.GroupNorm:
    return GroupNorm32(norm_groups(ch, min_channels), ch)


def check_conditioning(spec: UNetSpec) -> None:
    """Refuse an additive noise embedding before a GroupNorm of one channel per group: that
    norm subtracts each channel's mean, so it removes the added embedding exactly and the
    network never sees its noise level (the small U-Nets once trained that way)."""
    if spec.scale_shift:
        return
    for width in sorted({spec.channels * m for m in spec.channel_mult}):
        if width // norm_groups(width, spec.norm_channels) >= 2:
            continue
        if spec.norm_channels == 0:
            raise ValueError(
                "this run was trained by an older fdae whose U-Net added the noise embedding before GroupNorms "
                f"of one channel per group (at {width} channels), which removed it: the network never saw its "
                "noise level. Train it again with this version (its config is reused as it is)")
        raise ValueError(
                f"unet.scale_shift=false adds the noise embedding before a GroupNorm of one channel per group "
                f"at {width} channels (unet.norm_channels={spec.norm_channels}), which removes it: the network "
                "would not hear its noise level; set unet.scale_shift=true (ADM's scale-shift norm) or "
                "unet.norm_channels to 2 or more")


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def upsample_nearest2x(x: Tensor) -> Tensor:
    """`F.interpolate(x, scale_factor=2, mode="nearest")`, exactly, written as a broadcast.

    Its backward is a 2x2 sum (a reduction) where torch.compile lowers the interpolate's
    backward to an index_put with atomic adds (seen at 1.3 ms a step in the paper preset's
    profile, issue 6).
    """
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """ADM's residual block. The noise embedding `emb` is projected per channel and applied
    as a scale and shift after the second norm (`scale_shift`), or added before it (the
    official FDAE generator); the latent's FiLM, when the block has one, comes after."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float,
                 latent_dim: int = 0, up: bool = False, down: bool = False, latent_shift: bool = False,
                 scale_shift: bool = True, norm_channels: int = 4):
        super().__init__()
        self.up, self.down = up, down
        self.latent_shift = latent_shift
        self.scale_shift = scale_shift
        self.norm1 = _norm(cin, norm_channels)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout if scale_shift else cout)
        self.latent = nn.Linear(latent_dim, 2 * cout if latent_shift else cout) if latent_dim else None
        self.norm2 = _norm(cout, norm_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return upsample_nearest2x(x)
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: Tensor, emb: Tensor, z: Tensor | None) -> Tensor:
        h = F.silu(self.norm1(x))
        h = self.conv1(self._resample(h))
        x = self._resample(x)
        e = self.emb(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1.0 + scale) + shift
        else:
            h = self.norm2(h + e)
        if self.latent is not None and z is not None:
            if self.latent_shift:
                scale, shift = self.latent(z)[:, :, None, None].chunk(2, dim=1)
                h = h * (1.0 + scale) + shift
            else:
                h = h * (1.0 + self.latent(z)[:, :, None, None])
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over pixels via scaled_dot_product_attention."""

    def __init__(self, ch: int, head_channels: int, norm_channels: int = 4):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = _norm(ch, norm_channels)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = _zero(nn.Linear(ch, ch))

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # B, L, C
        q, k, v = self.qkv(t).reshape(b, hgt * wid, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # B, heads, L, dh
        a = a.transpose(1, 2).reshape(b, hgt * wid, c)
        return x + self.proj(a).transpose(1, 2).reshape(b, c, hgt, wid)


def _heads_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Multi-head attention of queries (B, L, C) over keys/values (B, M, C) -> (B, L, C)."""
    b, n, c = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, c // heads).transpose(1, 2)  # noqa: E731
    a = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return a.transpose(1, 2).reshape(b, n, c)


class CrossAttention(nn.Module):
    """Attention of the pixels' tokens (queries) over a context; context None: self-attention."""

    def __init__(self, ch: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(ch, ch, bias=False)
        self.k = nn.Linear(context_dim, ch, bias=False)
        self.v = nn.Linear(context_dim, ch, bias=False)
        self.out = nn.Linear(ch, ch)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        ctx = x if context is None else context.to(x.dtype)
        return self.out(_heads_attention(self.q(x), self.k(ctx), self.v(ctx), self.heads))


class Transformer(nn.Module):
    """LDM's spatial transformer: x + proj_out(block(proj_in(GN(x)))) where the block is
    self-attention, cross-attention to the condition tokens and a GEGLU feed-forward, each
    pre-LayerNorm and residual. proj_out starts at zero, so a new block is the identity
    and the tokens' influence is learned."""

    def __init__(self, ch: int, head_channels: int, context_dim: int, norm_channels: int = 4):
        super().__init__()
        heads = max(1, ch // head_channels)
        self.norm = _norm(ch, norm_channels)
        self.proj_in = nn.Linear(ch, ch)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(ch), nn.LayerNorm(ch), nn.LayerNorm(ch)
        self.self_attn = CrossAttention(ch, ch, heads)
        self.cross_attn = CrossAttention(ch, context_dim, heads)
        self.ff_in = nn.Linear(ch, 8 * ch)  # GEGLU: value and gate, 4x wide each
        self.ff_out = nn.Linear(4 * ch, ch)
        self.proj_out = _zero(nn.Linear(ch, ch))

    def forward(self, x: Tensor, context: Tensor | None) -> Tensor:
        if context is None:
            raise ValueError("this U-Net was built with context_dim > 0 and needs condition tokens (context)")
        b, c, hgt, wid = x.shape
        t = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # B, L, C
        t = t + self.self_attn(self.norm1(t))
        t = t + self.cross_attn(self.norm2(t), context)
        value, gate = self.ff_in(self.norm3(t)).chunk(2, dim=-1)
        t = t + self.ff_out(value * F.gelu(gate))
        return x + self.proj_out(t).transpose(1, 2).reshape(b, c, hgt, wid)


def skip_dropout(h: Tensor, p: float) -> Tensor:
    """Skip Dropout: one Bernoulli(1 - p) keep decision per (sample, channel), kept channels
    scaled by 1 / (1 - p) so the expectation is unchanged. Draws from the global RNG
    (checkpointed with the run, so resume stays exact)."""
    keep = torch.empty(h.shape[0], h.shape[1], 1, 1, device=h.device, dtype=h.dtype).bernoulli_(1.0 - p)
    return h * keep / (1.0 - p)


class Level(nn.Module):
    """A ResBlock optionally followed by attention or a transformer (one U-Net 'block')."""

    def __init__(self, res: ResBlock, attn: Attention | Transformer | None):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: Tensor, emb: Tensor, z: Tensor | None, context: Tensor | None = None) -> Tensor:
        x = self.res(x, emb, z)
        if isinstance(self.attn, Transformer):
            return self.attn(x, context)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    def __init__(self, spec: UNetSpec):
        super().__init__()
        check_conditioning(spec)
        self.spec = spec
        ch = spec.channels
        emb_dim = 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.latent_embed = (
            nn.Sequential(nn.Linear(spec.latent_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if spec.latent_dim else None
        )
        zdim = emb_dim if spec.latent_dim else 0
        if spec.cond_channels:
            self.conv_cond = nn.Conv2d(spec.in_channels, spec.cond_channels, 3, padding=1)
            self.conv_in = nn.Conv2d(spec.cond_channels, ch, 3, padding=1)
        else:
            self.conv_cond = None
            self.conv_in = nn.Conv2d(spec.in_channels, ch, 3, padding=1)

        def attention(c: int) -> Attention | Transformer:
            if spec.context_dim:
                return Transformer(c, spec.head_channels, spec.context_dim, spec.norm_channels)
            return Attention(c, spec.head_channels, spec.norm_channels)

        def resblock(cin: int, cout: int, **kw) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, spec.dropout, zdim, latent_shift=spec.latent_shift,
                            scale_shift=spec.scale_shift, norm_channels=spec.norm_channels, **kw)

        def level(cin: int, cout: int, res: int, **kw) -> Level:
            attn = attention(cout) if res in spec.attn_resolutions and not kw else None
            return Level(resblock(cin, cout, **kw), attn)

        self.down = nn.ModuleList()
        skips = [ch]
        skip_res = [spec.image_size]
        cur, res = ch, spec.image_size
        for i, mult in enumerate(spec.channel_mult):
            for _ in range(spec.num_blocks):
                self.down.append(level(cur, ch * mult, res))
                cur = ch * mult
                skips.append(cur)
                skip_res.append(res)
            if i != len(spec.channel_mult) - 1:
                self.down.append(level(cur, cur, res, down=True) if spec.resblock_updown
                                 else Level(_Downsample(cur), None))
                res //= 2
                skips.append(cur)
                skip_res.append(res)
        self.mid = nn.ModuleList([
            Level(resblock(cur, cur), attention(cur)),
            Level(resblock(cur, cur), None),
        ])
        # which skip, in the order the decoder takes them, Skip Dropout drops
        dropped = skip_dropout_resolutions(spec)
        self.skip_dropped = [r in dropped for r in reversed(skip_res)] if spec.skip_dropout else []
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleDict()
        for i, mult in reversed(list(enumerate(spec.channel_mult))):
            for j in range(spec.num_blocks + 1):
                self.up.append(level(cur + skips.pop(), ch * mult, res))
                cur = ch * mult
                if i and j == spec.num_blocks:
                    self.upsample[str(len(self.up) - 1)] = (
                        level(cur, cur, res, up=True) if spec.resblock_updown else Level(_Upsample(cur), None)
                    )
                    res *= 2
        self.out = nn.Sequential(_norm(cur, spec.norm_channels), nn.SiLU(), _zero(nn.Conv2d(cur, spec.out_channels, 3, padding=1)))

    def forward(self, x: Tensor, noise_labels: Tensor, cond_map: Tensor | None = None,
                latent: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        """x: c_in-scaled noisy image; noise_labels: c_noise per sample; the conditioning
        the U-Net was built for: cond_map (B, cond_channels, H, W), latent (B, latent_dim)
        or context tokens (B, N, context_dim)."""
        # Each ResBlock projects SiLU(emb) (ADM's emb_layers = SiLU, Linear): applied once here.
        emb = F.silu(self.embed_time(noise_labels, x.dtype))
        z = self.embed_latent(latent, emb.dtype)
        h, hs = self.down_half(x, emb, z, context, cond_map)
        return self.up_half(h, hs, emb, z, context)

    def embed_time(self, noise_labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """The noise level's embedding before its SiLU (B, 4 * channels)."""
        return self.time_embed(timestep_embedding(noise_labels * self.spec.time_scale, self.spec.channels).to(dtype))

    def embed_latent(self, latent: Tensor | None, dtype: torch.dtype = torch.float32) -> Tensor | None:
        if self.latent_embed is None:
            return None
        if latent is None:
            raise ValueError("this U-Net was built with latent_dim > 0 and needs a latent")
        return F.silu(self.latent_embed(latent.to(dtype)))

    def down_half(self, x: Tensor, emb: Tensor, z: Tensor | None = None, context: Tensor | None = None,
                  cond_map: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Input convolution and encoder levels: the deepest features and every skip."""
        if self.conv_cond is not None:
            h = self.conv_cond(x)
            if cond_map is not None:
                h = h + cond_map.to(h.dtype)
            h = self.conv_in(h)
        else:
            h = self.conv_in(x)
        hs = [h]
        for blk in self.down:
            h = blk(h, emb, z, context)
            hs.append(h)
        return h, hs

    def up_half(self, h: Tensor, hs: list[Tensor], emb: Tensor, z: Tensor | None = None,
                context: Tensor | None = None) -> Tensor:
        """Middle blocks, decoder levels (taking the skips, last first) and the output."""
        hs = list(hs)
        for blk in self.mid:
            h = blk(h, emb, z, context)
        drop = self.training and self.spec.skip_dropout > 0
        for k, blk in enumerate(self.up):
            skip = hs.pop()
            if drop and self.skip_dropped[k]:
                skip = skip_dropout(skip, self.spec.skip_dropout)
            h = blk(torch.cat([h, skip], dim=1), emb, z, context)
            up = self.upsample[str(k)] if str(k) in self.upsample else None
            if up is not None:
                h = up(h, emb, z, context)
        return self.out(h)


def skip_dropout_resolutions(spec: UNetSpec) -> tuple[int, ...]:
    """The resolutions whose skips Skip Dropout drops: as given, or the two highest
    (EncDiff's 16 and 8 px skips of its 16 px latent: half of them)."""
    if spec.skip_dropout_resolutions is not None:
        return tuple(spec.skip_dropout_resolutions)
    return (spec.image_size, spec.image_size // 2)


class _Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, z: Tensor | None = None, context=None) -> Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, z: Tensor | None = None, context=None) -> Tensor:
        return self.conv(upsample_nearest2x(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
