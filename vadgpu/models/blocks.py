"""Building blocks of the two architectures.

DDL (2D, frames as a batch):
    MultiKernelBlock  parallel k x k convolutions (3, 5, 7), concat, BN + ReLU, then space-to-depth (encoder) or
                      depth-to-space (decoder) 2x2, then a 1x1 convolution to the block width (+ BN + ReLU).
Dual-path (3D):
    DoubleConv3d      (Conv3d 3x3x3 -> BN3d -> ReLU) x 2
    Down3d            stride-2 Conv3d then DoubleConv3d
    Up3d              stride-2 ConvTranspose3d, optional skip concat, DoubleConv3d
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiKernelBlock(nn.Module):
    """One DDL encoder or decoder block; halves (encoder) or doubles (decoder) H and W.

    The parallel branches see the same input at three receptive fields; the 2x2 rearrangement moves resolution into
    channels (or back) without the information loss of pooling, and the 1x1 convolution mixes the result down to
    `out_ch`. In the decoder each branch makes 4x the channels so depth-to-space has 4 sub-pixels to spread.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernels: tuple[int, ...] = (3, 5, 7),
        decode: bool = False,
        last: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.decode = decode
        branch_ch = 4 * out_ch if decode else out_ch
        # no biases where BatchNorm follows: its shift makes them redundant (and their gradient is zero)
        self.branches = nn.ModuleList(nn.Conv2d(in_ch, branch_ch, k, padding=k // 2, bias=False) for k in kernels)
        self.norm = nn.BatchNorm2d(len(kernels) * branch_ch)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # space-to-depth multiplies channels by 4, depth-to-space divides them by 4
        mixed_ch = len(kernels) * branch_ch * 4 if not decode else len(kernels) * branch_ch // 4
        self.mix = nn.Conv2d(mixed_ch, out_ch, 1, bias=last)
        # the output block of the decoder ends in the sigmoid, so no BN/ReLU squeezing its range
        self.out_norm = nn.Identity() if last else nn.Sequential(nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_ch, H, W)
        x = torch.cat([branch(x) for branch in self.branches], dim=1)  # (B, K * branch_ch, H, W)
        x = self.drop(F.relu(self.norm(x), inplace=True))
        x = F.pixel_shuffle(x, 2) if self.decode else F.pixel_unshuffle(x, 2)
        return self.out_norm(self.mix(x))  # (B, out_ch, 2H or H/2, 2W or W/2)


class DoubleConv3d(nn.Sequential):
    """(Conv3d 3x3x3 -> BatchNorm3d -> ReLU) twice, keeping T, H, W."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        )


class Down3d(nn.Sequential):
    """Stride-2 Conv3d (halves T, H, W; a length of 1 stays 1) then DoubleConv3d."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv3d(in_ch, out_ch, 3, stride=2, padding=1, bias=False), DoubleConv3d(out_ch, out_ch))


class Up3d(nn.Module):
    """Stride-2 ConvTranspose3d to the size of the matching encoder level, optional skip concat, DoubleConv3d."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int = 0):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, out_ch, 3, stride=2, padding=1)
        self.conv = DoubleConv3d(out_ch + skip_ch, out_ch)
        self.uses_skip = skip_ch > 0

    def forward(self, x: torch.Tensor, size: torch.Size, skip: torch.Tensor | None = None) -> torch.Tensor:
        # output_size picks the output padding per dimension, so odd sizes and T that shrank to 1 come back exactly
        x = self.up(x, output_size=size)  # (N, out_ch, *size)
        if self.uses_skip:
            x = torch.cat([skip, x], dim=1)
        return self.conv(x)
