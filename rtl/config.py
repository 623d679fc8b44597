"""The one parameter object of a processing element (PE); every width in rtl/ is derived from it."""

from __future__ import annotations

from dataclasses import dataclass

from model.network import no_spike, potential_bits, weight_sum_bits

__all__ = ["PEConfig", "bits_for"]

MAX_NEURONS = 1 << 16
MAX_FAN_IN = 1 << 20
MAX_LANES = 64
MAX_WEIGHT_WORDS = 1 << 22  # weight SRAM words (fan_in * neurons / lanes); far beyond any FPGA's block RAM
MAX_FIFO_DEPTH = 1024
MAX_DEFER_DEPTH = 4096  # the defer FIFO is sized for the worst case run-ahead of many sources (host/plan.py)
MAX_SOURCES = 1 << 12
MAX_CONV_SIZE = 1 << 10
MAX_CONV_KERNEL = 8
MAX_PENDING_FIFO = 64  # entries of LOAD's pending FIFO: each one a comparator in the hazard check
#: Weights per WEIGHT configuration word at most (PEConfig.cfg_weights): 4 x 8 bits is as wide as the
#: thresholds and input map entries the same word carries, so the mesh's flits do not grow with the lanes.
MAX_CFG_WEIGHTS = 4


def bits_for(n: int) -> int:
    """Unsigned width holding every value in 0..n (at least 1 bit)."""
    return max(1, int(n).bit_length())


def _check(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside the allowed range {lo}..{hi}")
    return value


@dataclass(frozen=True, kw_only=True)
class PEConfig:
    """Elaboration-time parameters of one PE.

    Parameters
    ----------
    neurons : int
        Neurons the PE holds (neuron SRAM capacity); a multiple of ``lanes``. At run time the ``ACTIVE``
        register selects how many of them are used (1..neurons).
    fan_in : int
        Weight rows: the largest input index + 1 of a layer the PE can run (input space of SPIKE events).
    lanes : int
        Neurons updated per cycle; a power of two. One weight / neuron / threshold SRAM word holds
        ``lanes`` entries.
    weight_bits, time_bits, threshold_bits : int
        docs/spec.md section 1 (signed weights, unsigned times, unsigned thresholds).
    fifo_depth : int
        Entries of each stream FIFO between LOAD, COMPUTE, STORE and on the output.
    defer_depth : int
        Entries of the defer FIFO that parks input events of a later time step until the current step
        completes (needed when several sources feed one PE through a network-on-chip).
    max_sources : int
        Largest value of the runtime ``SOURCES`` register (STEP_END markers that complete a step).
    conv_inputs : int
        Entries of the input map of the conv mode (docs/pe.md "Conv mode"): input indices a conv layer's SPIKE
        events may carry. 0 (the default) builds no conv hardware: the PE is exactly the dense one.
    conv_size : int
        Largest height or width of a conv layer's input or output map (coordinates 0..conv_size - 1).
    conv_kernel : int
        Largest kernel height or width (and padding) of the conv mode.
    weight_depth : int
        Words of the weight SRAM; 0 (the default): ``fan_in * neurons / lanes``, a row of every neuron for every
        input, which the dense mode needs. The conv mode addresses its kernel slice compactly (row ``r``, word
        ``w`` at ``r * CH_WORDS + w``), so a PE that runs only conv-mode layers (``host.plan.plan_mesh`` with
        ``compact_weights``) is built with just the words its largest slice needs.
    weight_spram : bool
        Build the weight SRAM as a single-port memory whose physical rows are at least 16 bits wide (narrower
        words packed, ``weight_pack``): the shape of the iCE40UP5K's SPRAM blocks (16K x 16), onto which
        ``synth_ice40 -spram`` maps it. The memory interface already uses the weight SRAM single-port (a core
        read wins over a configuration write), so behaviour and cycle counts do not change.
    request_stage : bool
        Put a two-entry stream FIFO between LOAD and the memory interface: its handshake is registered, so
        LOAD's word search no longer reaches the SRAM ports and the configuration arbitration in the same
        cycle (a shorter critical path on FPGAs). Throughput is unchanged; each read request takes one cycle
        longer, so the PE's minimum event interval grows from 5 to 6 cycles (docs/pe.md "Cycle model").
        Spike times do not change.
    sweep_group : int
        0 (the default): a step's sweep finds the next rising or pending word with one search over all ``W``
        words. A power of two ``G`` >= 2: the search is split (docs/pe.md "Grouped sweep"): each cycle looks
        for the next candidate only inside the current group of ``G`` words, and a cycle that finds none there
        moves to the next group that has one instead of issuing (one cycle per group the sweep enters), and the
        closing ``MARK`` goes out from a state of its own (one cycle). The same tokens in the same order,
        shorter logic paths on FPGAs; a sweep takes up to ``ceil(W / G)`` cycles more. Spike times do not
        change.
    fetch_stage : bool
        False (the default): LOAD takes the next event in the cycle that issues the current event's last word,
        so events follow each other without a gap. True: it takes it in a cycle of its own (``FETCH``), one
        cycle more per event that issues words, and the last word's handshake (the pending bit of word ``k``,
        the request stage's ready) no longer reaches the event decision (early / park / START / SPIKE /
        STEP_END) and the defer FIFO in the same cycle: a shorter critical path on FPGAs. Spike times do not
        change.
    compute_stage : bool
        False (the default): COMPUTE applies a token in one cycle: the SRAM word read from the FIFO, the
        ``S x t`` product and the comparison or the sum behind it. True: the products are registered first
        (rtl/compute.py, stage A then B), so the multiplier and the carry chains after it lie in different
        cycles (a shorter critical path on FPGAs). Throughput is unchanged; each token takes one
        cycle longer, so the pipeline latency grows by one (``pipeline_latency``). Spike times do not change.
    input_stage : bool
        Put a three-entry stream FIFO with a registered read (``lib.fifo.SyncFIFOBuffered``) in front of LOAD:
        LOAD's input handshake (``i.ready``, decided by the event decision) then no longer reaches back into
        the sender (on a mesh: the network interface and the router's output arbitration into its input
        FIFOs), and LOAD's event decision starts at a register instead of the sender's logic (a shorter
        critical path on FPGAs). Throughput is unchanged; each event arrives two cycles later. An abort
        empties it with the rest of the PE. Spike times do not change.
    pooling : bool
        True (the default): STORE has the max-pooling window bits (``neurons`` flip-flops, and per lane a
        multiplexer over them; docs/pe.md "Max-pooling"). False: no pooling hardware, the ``POOL_SHIFT``
        register must stay 0 (``host.codec`` refuses another value): the one-PE board top, whose layer-by-layer
        plan runs no max-pooling (``host.plan.StackPlan`` refuses maxpool2d layers). Spike times and cycles of
        unpooled layers do not change.
    defer_bram : bool
        Build the defer FIFO with a registered read (``lib.fifo.SyncFIFOBuffered``), which FPGA tools map onto
        block RAM, instead of the combinational read of ``SyncFIFO``, which becomes LUT RAM on the ECP5 and
        flip-flops on the iCE40: the choice for deep defer FIFOs (a conv layer's run-ahead needs about 1,700
        entries). An event parked in an empty defer FIFO can be replayed one cycle later than without it; spike
        times do not change.
    cfg_stream : bool
        Build the weight stream (docs/pe.md "Weight stream"): after a ``STREAM`` register write, the next
        configuration words carry ``stream_weights`` weights each in all their bits (no target, row or neuron
        field), which the memory interface collects and writes one whole weight SRAM word per cycle. 6 weights
        per word with 4 lanes and 8-bit weights, against ``cfg_weights`` = 4 per WEIGHT word. Not with
        ``weight_spram``. False (the default): no stream hardware, WEIGHT words only (they work either way).
    pool_ram : bool
        With ``pooling``: STORE keeps the window bits in a ``words x lanes`` memory read combinationally
        (``rtl.sram.SRAM(comb_read=True)``, LUT RAM on FPGAs) instead of ``neurons`` flip-flops with a multiplexer
        over them; a CLEAR token clears its word's block instead of all bits (docs/pe.md "Max-pooling"). False
        (the default): the flip-flops. Spike times and cycles do not change.
    pending_fifo : int
        0 (the default): LOAD keeps the read-after-write hazard as one ``pending`` bit per state word. ``D >= 2``:
        as a FIFO of the ``D`` words issued and not yet written back, in issue order (the pipeline writes back in
        that order); a word is read while no entry holds it, LOAD issues nothing while the FIFO is full, and a
        step's sweep starts once every earlier word is written back (docs/pe.md "Pending FIFO"). The per-word
        cost of a PE with hundreds of words (the conv-mode PEs of a board build) falls to the ``rising`` bit;
        the same tokens in the same order, a sweep up to ``pipeline_latency`` cycles later. Spike times do not
        change.

    Raises
    ------
    ValueError
        One message naming the bad parameter and its limit.
    """

    neurons: int = 64
    fan_in: int = 1024
    lanes: int = 4
    weight_bits: int = 8
    time_bits: int = 8
    threshold_bits: int = 16
    fifo_depth: int = 4
    defer_depth: int = 8
    max_sources: int = 16
    conv_inputs: int = 0
    conv_size: int = 1
    conv_kernel: int = 5
    weight_depth: int = 0
    weight_spram: bool = False
    request_stage: bool = False
    defer_bram: bool = False
    sweep_group: int = 0
    fetch_stage: bool = False
    compute_stage: bool = False
    input_stage: bool = False
    pooling: bool = True
    cfg_stream: bool = False
    pending_fifo: int = 0
    pool_ram: bool = False

    def __post_init__(self):
        _check("neurons", self.neurons, 1, MAX_NEURONS)
        _check("fan_in", self.fan_in, 1, MAX_FAN_IN)
        _check("lanes", self.lanes, 1, MAX_LANES)
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes: {self.lanes} is not a power of two (allowed 1, 2, 4, ..., {MAX_LANES})")
        if self.lanes > self.neurons:
            raise ValueError(f"lanes: {self.lanes} exceeds neurons={self.neurons}")
        if self.neurons % self.lanes:
            raise ValueError(f"neurons: {self.neurons} is not a multiple of lanes={self.lanes}")
        _check("weight_bits", self.weight_bits, 2, 16)
        _check("time_bits", self.time_bits, 2, 16)
        _check("threshold_bits", self.threshold_bits, 1, 32)
        _check("fifo_depth", self.fifo_depth, 2, MAX_FIFO_DEPTH)
        _check("defer_depth", self.defer_depth, 2, MAX_DEFER_DEPTH)
        _check("max_sources", self.max_sources, 1, MAX_SOURCES)
        _check("conv_inputs", self.conv_inputs, 0, MAX_FAN_IN)
        _check("conv_size", self.conv_size, 1, MAX_CONV_SIZE)
        _check("conv_kernel", self.conv_kernel, 1, MAX_CONV_KERNEL)
        _check("weight_depth", self.weight_depth, 0, self.fan_in * self.words)
        if self.sweep_group and (self.sweep_group < 2 or self.sweep_group & (self.sweep_group - 1)):
            raise ValueError(f"sweep_group: {self.sweep_group} is not 0 or a power of two >= 2")
        if self.pending_fifo:
            _check("pending_fifo", self.pending_fifo, 2, MAX_PENDING_FIFO)
        if self.cfg_stream and self.weight_spram:
            raise ValueError("cfg_stream: the weight stream needs a simple dual-port weight SRAM, not weight_spram")
        if self.weight_words > MAX_WEIGHT_WORDS:
            raise ValueError(f"fan_in: fan_in * neurons / lanes = {self.weight_words} weight SRAM words exceeds "
                             f"the limit {MAX_WEIGHT_WORDS} (lower fan_in or neurons, or raise lanes)")

    # ---- derived quantities (never hard-code these elsewhere) ----

    @property
    def words(self) -> int:
        """Words of the neuron-state and threshold SRAMs, and weight words per input row."""
        return self.neurons // self.lanes

    @property
    def weight_words(self) -> int:
        """Depth of the weight SRAM: ``weight_depth``, or (0) ``fan_in`` rows of ``words`` words."""
        return self.weight_depth or self.fan_in * self.words

    @property
    def pipeline_latency(self) -> int:
        """Cycles from LOAD issuing a word's read request to STORE's write-back of that word reaching LOAD,
        with every FIFO empty and ready: the shortest interval between two tokens of one word (5, one more
        with ``request_stage`` and one more with ``compute_stage``)."""
        return 5 + self.request_stage + self.compute_stage

    @property
    def sweep_groups(self) -> int:
        """Groups of the grouped sweep search (``sweep_group``); 1: one search over every word."""
        if not self.sweep_group or self.sweep_group >= self.words:
            return 1
        return -(-self.words // self.sweep_group)

    @property
    def weight_pack(self) -> int:
        """Weight SRAM words per physical row: with ``weight_spram``, the most (a power of two) whose row stays
        within 16 bits; otherwise 1."""
        width = self.lanes * self.weight_bits
        if not self.weight_spram or width >= 16:
            return 1
        return 1 << ((16 // width).bit_length() - 1)

    @property
    def cfg_weights(self) -> int:
        """Weights one WEIGHT configuration word writes: ``min(lanes, MAX_CFG_WEIGHTS)`` consecutive lanes of one
        weight SRAM word."""
        return min(self.lanes, MAX_CFG_WEIGHTS)

    @property
    def lane_bits(self) -> int:
        """Bits selecting a lane inside a word (0 when lanes == 1)."""
        return self.lanes.bit_length() - 1

    @property
    def no_spike(self) -> int:
        return no_spike(self.time_bits)

    @property
    def max_t_end(self) -> int:
        return self.no_spike - 1

    @property
    def index_bits(self) -> int:
        """Width of an event index: input indices 0..fan_in-1 and neuron indices 0..neurons-1."""
        return bits_for(max(self.fan_in, self.neurons, self.conv_inputs) - 1)

    @property
    def neuron_bits(self) -> int:
        """Width of a neuron number inside the PE (0..neurons-1)."""
        return bits_for(self.neurons - 1)

    @property
    def row_bits(self) -> int:
        """Width of a weight row number (0..fan_in-1)."""
        return bits_for(self.fan_in - 1)

    @property
    def word_bits(self) -> int:
        """Width of a neuron / threshold SRAM address."""
        return bits_for(self.words - 1)

    @property
    def weight_addr_bits(self) -> int:
        return bits_for(self.weight_words - 1)

    @property
    def active_bits(self) -> int:
        """Width of the ACTIVE register (1..neurons)."""
        return bits_for(self.neurons)

    @property
    def sources_bits(self) -> int:
        return bits_for(self.max_sources)

    @property
    def slope_bits(self) -> int:
        """Signed width of S (spec section 4) for the largest fan-in."""
        return weight_sum_bits(self.fan_in, self.weight_bits)

    @property
    def potential_bits(self) -> int:
        """Signed width of V for the largest fan-in and t_end, wide enough to compare with any threshold."""
        return potential_bits(self.fan_in, self.weight_bits, self.max_t_end, self.threshold_bits)

    @property
    def cfg_data_bits(self) -> int:
        """Width of the data field of a configuration word: ``cfg_weights`` weights (one WEIGHT word writes them
        all), a threshold or any register value."""
        conv = (self.row_bits + 2 * self.coord_bits, self.tile_bits, self.kernel_bits, self.word_bits + 1,
                self.pool_shift_bits) if self.conv else ()
        stream = (self.stream_count_bits + bits_for(self.words),) if self.cfg_stream else ()
        return max(self.cfg_weights * self.weight_bits, self.threshold_bits, self.index_bits, self.time_bits,
                   self.sources_bits, self.active_bits, *conv, *stream)

    @property
    def cfg_bits(self) -> int:
        """Width of a configuration word: target (2 bits), row, neuron and data fields."""
        return 2 + self.cfg_row_bits + self.neuron_bits + self.cfg_data_bits

    @property
    def stream_count_bits(self) -> int:
        """Width of the STREAM register's word count (1..weight_words weight SRAM words)."""
        return bits_for(self.weight_words)

    @property
    def stream_weights(self) -> int:
        """Weights one word of the weight stream carries (``cfg_stream``): as many as fit in all its bits."""
        return self.cfg_bits // self.weight_bits

    @property
    def cfg_row_bits(self) -> int:
        """Width of the row field of a configuration word (weight row, input map entry, or register number:
        0..4, 0..14 with the conv mode, 15 with the weight stream)."""
        if self.conv or self.cfg_stream:
            return max(self.row_bits, 4, bits_for(self.conv_inputs - 1) if self.conv else 0)
        return max(self.row_bits, 3)

    @property
    def pool_shift_bits(self) -> int:
        """Width of the POOL_SHIFT register (0..neuron_bits: a pooling window spans 2**POOL_SHIFT neurons; the
        register is kept, and must hold 0, without ``pooling``)."""
        return bits_for(self.neuron_bits)

    # ---- conv mode (docs/pe.md "Conv mode"; only when conv_inputs > 0) ----

    @property
    def conv(self) -> bool:
        """The PE has the conv mode (input map, conv registers)."""
        return self.conv_inputs > 0

    @property
    def coord_bits(self) -> int:
        """Width of a map coordinate (0..conv_size - 1)."""
        return bits_for(self.conv_size - 1)

    @property
    def tile_bits(self) -> int:
        """Width of a tile origin or size register (0..conv_size)."""
        return bits_for(self.conv_size)

    @property
    def kernel_bits(self) -> int:
        """Width of the KH, KW and PAD registers (0..conv_kernel)."""
        return bits_for(self.conv_kernel)
