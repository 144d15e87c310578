"""How an FPGA deployment is configured: the part, the clock, the I/O style and the folding.

Frozen dataclasses parsed at the edge (CLI ``--fpga-*`` flags, YAML ``fpga:``). The parts table
holds the resource budgets the analytical estimate compares against (from the vendors' product
tables: Zynq UltraScale+ and Alveo data sheets).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Part:
    """An FPGA part's budget: DSP48E2 slices, LUTs, flip-flops, 36 Kbit block RAMs."""

    name: str
    board: str
    dsp: int
    lut: int
    ff: int
    bram36: int

    @property
    def bram18(self) -> int:
        return 2 * self.bram36


PARTS: dict[str, Part] = {p.name: p for p in (
    # Ultra96(-V2): Zynq UltraScale+ ZU3EG (DS891): 360 DSP, 70,560 LUT, 141,120 FF, 216 BRAM36
    Part("xczu3eg-sbva484-1-e", "Ultra96", 360, 70_560, 141_120, 216),
    # ZCU104: ZU7EV (DS891): 1,728 DSP, 230,400 LUT, 460,800 FF, 312 BRAM36 (+96 URAM, unused)
    Part("xczu7ev-ffvc1156-2-e", "ZCU104", 1_728, 230_400, 460_800, 312),
    # Alveo U250 (DS962): 12,288 DSP, 1,728,000 LUT, 3,456,000 FF, 2,688 BRAM36 (+URAM, unused)
    Part("xcu250-figd2104-2L-e", "Alveo U250", 12_288, 1_728_000, 3_456_000, 2_688),
)}
DEFAULT_PART = "xczu3eg-sbva484-1-e"


class IOStyle(str, Enum):
    """hls4ml's two styles: every layer a function on whole arrays (``parallel``), or layers
    as concurrent DATAFLOW processes with ping-pong buffers between them (``stream``), so that
    consecutive frames overlap and throughput is set by the slowest layer."""

    PARALLEL = "io_parallel"
    STREAM = "io_stream"


@dataclass(frozen=True)
class FpgaConfig:
    """``reuse`` fixes every layer's ReuseFactor (hls4ml: each multiplier used ``reuse``
    times per output pixel); ``None`` chooses it: the folding that meets ``fps`` within the
    part, or the fastest folding that fits the part when ``fps`` is not given."""

    part: str = DEFAULT_PART
    clock_mhz: float = 200.0
    io: IOStyle = IOStyle.STREAM
    reuse: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"unknown FPGA part {self.part!r}: choose from "
                             f"{', '.join(f'{n} ({p.board})' for n, p in PARTS.items())}")
        if self.clock_mhz <= 0:
            raise ValueError("the FPGA clock must be positive (MHz)")
        if self.reuse is not None and self.reuse < 1:
            raise ValueError("the reuse factor must be at least 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("the fps target must be positive")

    @property
    def budget(self) -> Part:
        return PARTS[self.part]
