"""The one U-Net of fdae (ADM / guided-diffusion layout), configurable by presets.

Two ways to condition it, chosen per method:
  * a spatial map added after the input convolution (FDAE: `h = conv0(x) + cond_map`,
    then a second convolution widens to the base channels);
  * a vector latent that scales each ResBlock's normalised features (Diff-AE's
    adaptive group norm: `h = GN(h) * (1 + s(z))`).
The noise level enters every ResBlock additively through a sinusoidal embedding.
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
    time_scale: float = 1000.0  # the embedding sees time_scale * c_noise (official FDAE)


PRESETS: dict[str, UNetSpec] = {
    # The official FDAE generator: 281.5 M parameters with an 80-channel condition map.
    "paper": UNetSpec(),
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


def _norm(ch: int) -> nn.GroupNorm:
    return GroupNorm32(math.gcd(32, ch), ch)


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
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float,
                 latent_dim: int = 0, up: bool = False, down: bool = False):
        super().__init__()
        self.up, self.down = up, down
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.latent = nn.Linear(latent_dim, cout) if latent_dim else None
        self.norm2 = _norm(cout)
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
        h = h + self.emb(emb)[:, :, None, None]
        h = self.norm2(h)
        if self.latent is not None and z is not None:
            h = h * (1.0 + self.latent(z)[:, :, None, None])
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over pixels via scaled_dot_product_attention."""

    def __init__(self, ch: int, head_channels: int):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = _norm(ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = _zero(nn.Linear(ch, ch))

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # B, L, C
        q, k, v = self.qkv(t).reshape(b, hgt * wid, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # B, heads, L, dh
        a = a.transpose(1, 2).reshape(b, hgt * wid, c)
        return x + self.proj(a).transpose(1, 2).reshape(b, c, hgt, wid)


class Level(nn.Module):
    """A ResBlock optionally followed by attention (one U-Net 'block')."""

    def __init__(self, res: ResBlock, attn: Attention | None):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: Tensor, emb: Tensor, z: Tensor | None) -> Tensor:
        x = self.res(x, emb, z)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    def __init__(self, spec: UNetSpec):
        super().__init__()
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

        def level(cin: int, cout: int, res: int, **kw) -> Level:
            attn = Attention(cout, spec.head_channels) if res in spec.attn_resolutions and not kw else None
            return Level(ResBlock(cin, cout, emb_dim, spec.dropout, zdim, **kw), attn)

        self.down = nn.ModuleList()
        skips = [ch]
        cur, res = ch, spec.image_size
        for i, mult in enumerate(spec.channel_mult):
            for _ in range(spec.num_blocks):
                self.down.append(level(cur, ch * mult, res))
                cur = ch * mult
                skips.append(cur)
            if i != len(spec.channel_mult) - 1:
                self.down.append(level(cur, cur, res, down=True) if spec.resblock_updown
                                 else Level(_Downsample(cur), None))
                res //= 2
                skips.append(cur)
        self.mid = nn.ModuleList([
            Level(ResBlock(cur, cur, emb_dim, spec.dropout, zdim), Attention(cur, spec.head_channels)),
            Level(ResBlock(cur, cur, emb_dim, spec.dropout, zdim), None),
        ])
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
        self.out = nn.Sequential(_norm(cur), nn.SiLU(), _zero(nn.Conv2d(cur, spec.out_channels, 3, padding=1)))

    def forward(self, x: Tensor, noise_labels: Tensor, cond_map: Tensor | None = None,
                latent: Tensor | None = None) -> Tensor:
        """x: c_in-scaled noisy image; noise_labels: c_noise per sample."""
        # Each ResBlock projects SiLU(emb) (ADM's emb_layers = SiLU, Linear): applied once here.
        emb = F.silu(self.time_embed(timestep_embedding(noise_labels * self.spec.time_scale, self.spec.channels).to(x.dtype)))
        z = None
        if self.latent_embed is not None:
            if latent is None:
                raise ValueError("this U-Net was built with latent_dim > 0 and needs a latent")
            z = F.silu(self.latent_embed(latent.to(emb.dtype)))
        if self.conv_cond is not None:
            h = self.conv_cond(x)
            if cond_map is not None:
                h = h + cond_map.to(h.dtype)
            h = self.conv_in(h)
        else:
            h = self.conv_in(x)
        hs = [h]
        for blk in self.down:
            h = blk(h, emb, z)
            hs.append(h)
        for blk in self.mid:
            h = blk(h, emb, z)
        for k, blk in enumerate(self.up):
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, z)
            up = self.upsample[str(k)] if str(k) in self.upsample else None
            if up is not None:
                h = up(h, emb, z)
        return self.out(h)


class _Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        return self.conv(upsample_nearest2x(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
