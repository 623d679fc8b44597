"""Functional coverage of the PE, mesh and router regressions: named bins, crossed with idle/backpressure.

Nothing in rtl/ or in the testbenches changes. A run is observed from outside: :func:`monitored` replaces
the ``Simulator`` name of a runner module (``verif.pysim_pe``, ``host.pysim``) by :class:`MonitoredSimulator`,
which elaborates the design while recording the blocks it creates (PEs, LOADs, COMPUTEs, FIFOs, routers,
their input FIFOs) and adds one process that samples their ports every cycle and counts bin hits. The
stimulus is the regressions' own (``verif.scenarios`` cases, ``host.pysim.run_images`` on random networks,
``verif.router_traffic``).

Every bin is counted separately under the cross ``plain`` (no idle cycles, no backpressure in the run) and
``stalled`` (random idle inputs and/or output backpressure); a bin that needs backpressure only has the
``stalled`` cross. ``python -m verif.coverage`` (or ``scripts/coverage.py``) runs the default-suite stimulus
and a sweep of ``--seeds`` seeds and writes ``coverage.json`` and ``coverage.txt`` (docs/verification.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random

import numpy as np
from amaranth.hdl import Fragment
from amaranth.lib import fifo as libfifo
from amaranth.sim import Simulator

import rtl.load
import rtl.mesh
import rtl.pe
from rtl import layouts as L
from rtl.noc_layouts import Port
from rtl.router import route

__all__ = ["BINS", "CROSSES", "Coverage", "MonitoredSimulator", "monitored"]

CROSSES = ("plain", "stalled")

#: Bin name -> (what it means, crosses that apply).
BINS = {
    "pe.v_eq_theta": ("a sweep finds V == theta exactly for a lane in use, not fired (fires on equality)", CROSSES),
    "pe.fifo_compute_full": ("the FIFO between the memory interface and COMPUTE is full (needs STORE to fall "
                             "behind: output backpressure)", ("stalled",)),
    "pe.fifo_store_full": ("the FIFO between COMPUTE and STORE is full", CROSSES),
    "pe.fifo_out_full": ("the PE output FIFO is full", ("stalled",)),
    "pe.defer_used": ("an early event is parked in the defer FIFO", CROSSES),
    "pe.defer_full": ("the defer FIFO holds defer_depth events (input refused for an early event)", CROSSES),
    "pe.simultaneous_spikes": ("two or more lanes of one word fire in the same sweep token", CROSSES),
    "pe.marker_before_start": ("a STEP_END reaches LOAD before the PE's START (START guard parks it)", CROSSES),
    "pe.spike_before_start": ("a SPIKE reaches LOAD before the PE's START", CROSSES),
    "pe.spike_at_t_end": ("an output spike at t = t_end", CROSSES),
    "pe.output_backpressure": ("o valid and not ready", ("stalled",)),
    "pe.start_drain": ("a START is taken while the previous inference's tokens are still in the pipeline "
                       "(LOAD DRAIN)", CROSSES),
    "mesh.abort_idle": ("early-exit abort while a PE is idle (nothing in flight)", CROSSES),
    "mesh.abort_load_issuing": ("early-exit abort while LOAD issues a token", CROSSES),
    "mesh.abort_fifo_compute": ("early-exit abort with tokens in the COMPUTE FIFO", CROSSES),
    "mesh.abort_fifo_store": ("early-exit abort with tokens in the STORE FIFO", CROSSES),
    "mesh.abort_fifo_out": ("early-exit abort with events in the PE output FIFO", CROSSES),
    "mesh.abort_defer": ("early-exit abort with events parked in the defer FIFO", CROSSES),
    **{f"router.contention_{p.name.lower()}": (f"two or more input heads want the {p.name.lower()} output in "
                                                "one cycle", CROSSES) for p in Port},
    "router.input_fifo_full": ("a router input FIFO is full", CROSSES),
    "router.output_held": ("a router output is valid and not ready", ("stalled",)),
}


@dataclasses.dataclass
class Coverage:
    """Hit counts per (bin, cross)."""

    hits: dict = dataclasses.field(default_factory=dict)

    def hit(self, name: str, cross: str, n: int = 1) -> None:
        if name not in BINS:
            raise KeyError(f"unknown coverage bin {name!r}")
        self.hits[name, cross] = self.hits.get((name, cross), 0) + n

    def count(self, name: str, cross: str) -> int:
        return self.hits.get((name, cross), 0)

    def merge(self, other: Coverage) -> None:
        for (name, cross), n in other.hits.items():
            self.hit(name, cross, n)

    def missed(self) -> list[tuple[str, str]]:
        return [(b, c) for b, (_, crosses) in BINS.items() for c in crosses if not self.count(b, c)]


class _Recorder:
    """Replaces classes by recording subclasses while a design is elaborated; remembers who created whom."""

    def __init__(self):
        self.made = []      # (kind, object, owner)
        self.stack = []

    def patch(self, stack: contextlib.ExitStack, module, name: str, kind: str) -> None:
        original = getattr(module, name)
        rec = self

        class Recorded(original):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                rec.made.append((kind, self, rec.stack[-1] if rec.stack else None))

            def elaborate(self, platform):
                rec.stack.append(self)
                try:
                    return super().elaborate(platform)
                finally:
                    rec.stack.pop()

        Recorded.__name__ = original.__name__
        Recorded.__qualname__ = original.__qualname__
        setattr(module, name, Recorded)
        stack.callback(setattr, module, name, original)


class MonitoredSimulator(Simulator):
    """An ``amaranth.sim.Simulator`` that also counts coverage bins of the PEs and routers inside the design.

    Set the class attributes ``coverage`` (a :class:`Coverage`) and ``cross`` before use (see
    :func:`monitored`).
    """

    coverage: Coverage = None
    cross: str = "plain"

    def __init__(self, toplevel):
        rec = _Recorder()
        with contextlib.ExitStack() as stack:
            rec.patch(stack, rtl.mesh, "Router", "router")
            rec.patch(stack, rtl.mesh, "PE", "pe")
            for name in ("Load", "Compute", "Store", "MemoryInterface"):
                rec.patch(stack, rtl.pe, name, name.lower())
            rec.patch(stack, rtl.load, "StreamFIFO", "defer")
            rec.patch(stack, libfifo, "SyncFIFOBuffered", "router_fifo")
            frag = Fragment.get(toplevel, None)
        super().__init__(frag)
        self._probes = self._collect(toplevel, rec.made)
        by_origin = {}
        todo = [frag]
        while todo:
            f = todo.pop()
            for o in f.origins or ():
                by_origin[id(o)] = f
            todo += [sub for sub, _, _ in f.subfragments]
        for p in self._probes["pes"]:
            # LOAD's START guard flag: high from a START until the inference's last step completes.
            p["armed"] = _fragment_signal(by_origin[id(p["load"])], "armed")
        self.add_process(self._monitor)

    @staticmethod
    def _collect(top, made):
        def owner_of(o):
            return top if o is None else o

        pes = {}
        for kind, obj, _ in made:
            if kind == "pe":
                pes.setdefault(id(obj), {"pe": obj})
        if isinstance(top, rtl.pe.PE):
            pes.setdefault(id(top), {"pe": top})
        blocks = {}
        for kind, obj, owner in made:
            if kind in ("load", "compute", "store", "memoryinterface"):
                pes[id(owner_of(owner))][kind] = obj
                blocks[id(obj)] = pes[id(owner_of(owner))]
        for kind, obj, owner in made:
            if kind == "defer":
                blocks[id(owner)]["defer"] = obj
        routers = {}
        for kind, obj, _ in made:
            if kind == "router":
                routers[id(obj)] = {"router": obj, "fifos": []}
        if isinstance(top, rtl.mesh.Router):
            routers[id(top)] = {"router": top, "fifos": []}
        for kind, obj, owner in made:
            if kind == "router_fifo":
                routers[id(owner_of(owner))]["fifos"].append(obj)
        abort = getattr(top, "abort", None) if isinstance(top, rtl.mesh.Mesh) else None
        return {"pes": list(pes.values()), "routers": list(routers.values()), "abort": abort}

    async def _monitor(self, ctx):
        cov, cross = type(self).coverage, type(self).cross
        probes = self._probes
        sigs = []

        def add(sig):
            sigs.append(sig.as_value() if hasattr(sig, "as_value") else sig)
            return len(sigs) - 1

        pe_idx = []
        for p in probes["pes"]:
            pe, load, comp, store, mem = p["pe"], p["load"], p["compute"], p["store"], p["memoryinterface"]
            cfg = pe.config
            f = pe.fifos
            idx = {
                "lv": add(load.i.valid), "lr": add(load.i.ready), "lp": add(load.i.payload),
                "req": add(load.req.valid),
                "cv": add(comp.i.valid), "cr": add(comp.i.ready), "cp": add(comp.i.payload),
                "sv": add(store.i.valid), "sr": add(store.i.ready), "sp": add(store.i.payload),
                "ov": add(pe.o.valid), "or": add(pe.o.ready), "op": add(pe.o.payload),
                "fc": add(f["compute"].level), "fs": add(f["store"].level), "fo": add(f["out"].level),
                "fd": add(p["defer"].level), "t_end": add(mem.t_end), "active": add(comp.active),
                "armed": add(p["armed"]),
            }
            pe_idx.append((cfg, f, p["defer"], idx))
        r_idx = []
        for r in probes["routers"]:
            router = r["router"]
            if len(r["fifos"]) != len(Port):
                continue
            idx = {"rdy": [add(q.r_rdy) for q in r["fifos"]], "head": [add(q.r_data) for q in r["fifos"]],
                   "wrdy": [add(q.w_rdy) for q in r["fifos"]],
                   "ov": [add(router.port_o(p).valid) for p in Port], "or": [add(router.port_o(p).ready) for p in Port]}
            r_idx.append((router, idx))
        abort = add(probes["abort"]) if probes["abort"] is not None else None
        if not sigs:
            return
        layouts = {}

        def view(cfg, kind, bits):
            key = (cfg, kind)
            if key not in layouts:
                layouts[key] = {"event": L.event_layout, "resp": L.read_response_layout,
                                "store": L.compute_layout}[kind](cfg)
            return layouts[key].from_bits(bits)

        while True:
            _, _, *v = await ctx.tick().sample(*sigs)
            for cfg, f, defer, idx in pe_idx:
                self._sample_pe(cov, cross, cfg, f, defer, idx, v, view, abort)
            for router, idx in r_idx:
                self._sample_router(cov, cross, router, idx, v)

    @staticmethod
    def _sample_pe(cov, cross, cfg, f, defer, idx, v, view, abort):
        if v[idx["fc"]] == f["compute"].depth:
            cov.hit("pe.fifo_compute_full", cross)
        if v[idx["fs"]] == f["store"].depth:
            cov.hit("pe.fifo_store_full", cross)
        if v[idx["fo"]] == f["out"].depth:
            cov.hit("pe.fifo_out_full", cross)
        if v[idx["fd"]]:
            cov.hit("pe.defer_used", cross)
        if v[idx["fd"]] >= cfg.defer_depth:
            cov.hit("pe.defer_full", cross)
        if v[idx["ov"]] and not v[idx["or"]]:
            cov.hit("pe.output_backpressure", cross)
        if abort is not None and v[abort]:
            busy = False
            if v[idx["req"]]:
                cov.hit("mesh.abort_load_issuing", cross)
                busy = True
            for key, name in (("fc", "compute"), ("fs", "store"), ("fo", "out"), ("fd", "defer")):
                if v[idx[key]]:
                    cov.hit(f"mesh.abort_{'fifo_' + name if name != 'defer' else 'defer'}", cross)
                    busy = True
            if not busy and not v[idx["cv"]] and not v[idx["sv"]]:
                cov.hit("mesh.abort_idle", cross)
            return
        if v[idx["lv"]] and v[idx["lr"]]:
            kind = view(cfg, "event", v[idx["lp"]]).kind
            if kind == L.EventKind.START:
                if v[idx["fc"]] or v[idx["fs"]] or v[idx["cv"]] or v[idx["sv"]]:
                    cov.hit("pe.start_drain", cross)
            elif not v[idx["armed"]]:
                cov.hit("pe.marker_before_start" if kind == L.EventKind.STEP_END else "pe.spike_before_start", cross)
        if v[idx["cv"]] and v[idx["cr"]]:
            x = view(cfg, "resp", v[idx["cp"]])
            if x.token.op == L.Op.SWEEP:
                t = int(x.token.time)
                for j in range(cfg.lanes):
                    s = x.state[j]
                    if s.fired or x.token.word * cfg.lanes + j >= v[idx["active"]]:
                        continue
                    if int(s.slope) * (t + 1) - int(s.offset) == int(x.thresholds[j]):
                        cov.hit("pe.v_eq_theta", cross)
        if v[idx["sv"]] and v[idx["sr"]]:
            x = view(cfg, "store", v[idx["sp"]])
            if bin(int(x.newly)).count("1") >= 2:
                cov.hit("pe.simultaneous_spikes", cross)
        if v[idx["ov"]] and v[idx["or"]]:
            ev = view(cfg, "event", v[idx["op"]])
            if ev.kind == L.EventKind.SPIKE and ev.time == v[idx["t_end"]]:
                cov.hit("pe.spike_at_t_end", cross)

    @staticmethod
    def _sample_router(cov, cross, router, idx, v):
        flit = router._flit
        want = {}
        for p in Port:
            if v[idx["rdy"][p]]:
                h = flit.from_bits(v[idx["head"][p]])
                o = route(router.x, router.y, int(h.x), int(h.y), bool(h.host))
                want[o] = want.get(o, 0) + 1
            if not v[idx["wrdy"][p]]:
                cov.hit("router.input_fifo_full", cross)
            if v[idx["ov"][p]] and not v[idx["or"][p]]:
                cov.hit("router.output_held", cross)
        for o, n in want.items():
            if n >= 2:
                cov.hit(f"router.contention_{o.name.lower()}", cross)


def _fragment_signal(fragment, name: str):
    """The signal called ``name`` assigned in a fragment's own statements."""
    for stmts in fragment.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                if sig.name == name:
                    return sig
    raise LookupError(f"no signal {name!r} in {fragment!r}")


@contextlib.contextmanager
def monitored(module, coverage: Coverage, cross: str):
    """While active, ``module.Simulator`` is a :class:`MonitoredSimulator` counting into ``coverage``."""
    if cross not in CROSSES:
        raise ValueError(f"cross: expected one of {CROSSES}, got {cross!r}")
    cls = type("Monitored", (MonitoredSimulator,), {"coverage": coverage, "cross": cross})
    original = module.Simulator
    module.Simulator = cls
    try:
        yield
    finally:
        module.Simulator = original


# ---- the regressions' stimulus -------------------------------------------------------------------------

def run_pe_cases(cov: Coverage, cfg, scenarios, seeds, *, variants=("as_is",)) -> int:
    """PE scenario cases through ``verif.pysim_pe`` (tests/rtl/test_pe_pysim.py); each case as generated
    (``as_is``) and, in the sweep, also without stalls (``plain``) and with idle 0.3 / stall 0.5 (``stalled``).
    Raises AssertionError on a mismatch with the golden model (coverage of a failing run means nothing)."""
    from verif import pysim_pe
    from verif.scenarios import make_case
    from verif.scoreboard import first_mismatch

    runs = 0
    for scenario in scenarios:
        for seed in seeds:
            case = make_case(cfg, scenario, seed)
            for variant in variants:
                idle, stall = {"as_is": (case.idle, case.stall), "plain": (0.0, 0.0),
                               "stalled": (max(case.idle, 0.3), max(case.stall, 0.5))}[variant]
                cross = "stalled" if idle or stall else "plain"
                with monitored(pysim_pe, cov, cross):
                    got, _ = pysim_pe.run_streams(cfg, case.cfg_words(cfg), case.streams, n_out=case.weight.shape[1],
                                                  t_end=case.t_end, neuron_base=case.neuron_base, seed=seed,
                                                  idle=idle, stall=stall)
                for g, w in zip(got, case.expected, strict=True):
                    msg = first_mismatch(g, w, cfg.no_spike)
                    assert msg is None, f"{scenario} seed {seed} {variant}: {msg}"
                runs += 1
    return runs


def run_start_guard(cov: Coverage, cfg, seed: int, *, idle: float, stall: float) -> None:
    """A two-sender input stream for one PE that reaches the corners the merged scenarios do not: sender B's
    ``STEP_END(0)`` and a ``SPIKE`` at t = 0 arrive before the PE's START (START guard), and sender A runs one
    step ahead with exactly ``defer_depth`` early events (spikes at t = 2 and its ``STEP_END(2)``), filling the
    defer FIFO, before B's ``STEP_END(1)`` closes step 1. Checked against the golden model."""
    from host.codec import PECodec
    from verif import pysim_pe
    from verif.scenarios import golden_times
    from verif.scoreboard import first_mismatch

    rng = np.random.default_rng([seed, 11])
    codec = PECodec(cfg)
    n_in = min(cfg.fan_in, cfg.defer_depth + 2)
    n_out = cfg.neurons
    t_end = min(cfg.max_t_end, 4)
    weight = rng.integers(-(1 << (cfg.weight_bits - 1)), 1 << (cfg.weight_bits - 1), size=(n_in, n_out))
    threshold = rng.integers(1, 3 * (1 << (cfg.weight_bits - 1)), size=n_out)
    times = np.full(n_in, cfg.no_spike)
    early = list(range(1, min(cfg.defer_depth, n_in)))          # defer_depth - 1 spikes at t = 2 (A)
    times[early] = 2
    times[0] = 0                                                 # B's spike at t = 0, before START
    ev = [codec.spike(0, 0), codec.step_end(0), codec.start()]  # B (parked by the START guard), START
    ev += [codec.step_end(0), codec.step_end(1)]                 # A closes step 0, A's marker of step 1
    ev += [codec.spike(i, 2) for i in early] + [codec.step_end(2)]   # A, a step ahead: defer_depth early events
    ev += [codec.step_end(1), codec.step_end(2)]                 # B closes steps 1 and 2
    for t in range(3, t_end + 1):
        ev += [codec.step_end(t), codec.step_end(t)]
    words = PECodec(cfg).layer_cfg_words(weight, threshold, sources=2, t_end=t_end)
    cross = "stalled" if idle or stall else "plain"
    with monitored(pysim_pe, cov, cross):
        got, _ = pysim_pe.run_streams(cfg, words, [ev], n_out=n_out, t_end=t_end, seed=seed, idle=idle, stall=stall)
    want = golden_times(cfg, weight, threshold, t_end, [times])[0]
    msg = first_mismatch(got[0], want, cfg.no_spike)
    assert msg is None, f"start guard stimulus seed {seed}: {msg}"


def run_mesh(cov: Coverage, net, mesh, neurons, lanes, inputs, *, seed, idle, stall, early_exit=False,
             window=1) -> None:
    """One ``host.pysim.run_images`` run (tests/rtl/test_mesh.py), checked against model.run (all spike
    times; with early exit only the run's completion)."""
    import model
    from host import pysim
    from host.plan import plan_mesh
    from verif.scoreboard import compare_images

    mp = plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=window)
    cross = "stalled" if idle or stall else "plain"
    with monitored(pysim, cov, cross):
        results = pysim.run_images(mp, inputs, seed=seed, idle=idle, stall=stall, early_exit=early_exit,
                                   max_cycles=200_000)
    if not early_exit:
        score, errors = compare_images(results, model.run(net, inputs), net.no_spike)
        assert not errors and score, errors or score.first


def run_router(cov: Coverage, noc, x, y, seed, *, per_port=40, p_idle=0.3, p_stall=0.3) -> None:
    """Random router traffic (tests/rtl/test_router.py, verif.router_traffic), checked for delivery."""
    from verif.router_traffic import check_delivery, make_traffic, run_traffic

    rng = random.Random(seed)
    dut = rtl.mesh.Router(noc, x=x, y=y)
    traffic = make_traffic(rng, noc, per_port)
    cls = type("Monitored", (MonitoredSimulator,),
               {"coverage": cov, "cross": "stalled" if p_idle or p_stall else "plain"})
    received, _ = run_traffic(dut, traffic, rng, p_idle=p_idle, p_stall=p_stall, simulator=cls,
                              label=f"router seed {seed}: ")
    check_delivery(traffic, received, x, y)


def default_suite(cov: Coverage, progress=print) -> None:
    """The stimulus of the default suite's Amaranth-simulator regressions, with their configs and seeds:
    tests/rtl/test_pe_pysim.py::test_pe_matches_golden_model (every scenario, its lanes2 and lanes1 configs, seed 0;
    the request-stage variants of the two add no other LOAD behaviour),
    tests/rtl/test_mesh.py::test_random_networks_bit_exact (base seed 1) and
    tests/rtl/test_router.py::test_random_traffic_backpressure (base seed 1)."""
    import model
    from rtl.noc_layouts import NocConfig
    from verif.scenarios import SCENARIOS

    for name, cfg in PE_CONFIGS.items():
        progress(f"default: PE {name}")
        run_pe_cases(cov, cfg, list(SCENARIOS), [0])
    for arch, mesh, neurons, lanes in MESH_CASES:
        progress(f"default: mesh {arch} on {mesh}")
        seed = 1 + sum(mesh)
        rng = np.random.default_rng(seed)
        net = model.random_network(arch, seed=seed, time_bits=4)
        run_mesh(cov, net, mesh, neurons, lanes, _random_inputs(rng, net, 2), seed=seed, idle=0.2, stall=0.2)
    for x, y in ((1, 1), (0, 0), (2, 1)):
        progress(f"default: router ({x}, {y})")
        run_router(cov, NocConfig(width=3, height=2, payload_bits=16), x, y, 1 + 10 * x + y)


def sweep(cov: Coverage, seeds: int, base: int = 0, progress=print) -> None:
    """The slow sweep: ``seeds`` seeds of every PE scenario (as generated, plain and stalled), the START-guard
    / defer-fill stimulus, random mesh networks per mesh case (without early exit, and with early exit plain
    and stalled), and router traffic with and without idle inputs and backpressure."""
    import model
    from rtl.noc_layouts import NocConfig
    from verif.scenarios import SCENARIOS

    for k in range(seeds):
        s = base + k
        for name, cfg in PE_CONFIGS.items():
            progress(f"sweep seed {s}: PE {name}")
            run_pe_cases(cov, cfg, list(SCENARIOS), [s], variants=("as_is", "plain", "stalled"))
        for name, cfg in PE_CONFIGS.items():
            for idle, stall in ((0.0, 0.0), (0.3, 0.5)):
                progress(f"sweep seed {s}: PE {name} start guard / defer fill, idle {idle}")
                run_start_guard(cov, cfg, s, idle=idle, stall=stall)
        rng = np.random.default_rng([s, 7])
        for i, (arch, mesh, neurons, lanes) in enumerate(MESH_CASES):
            net = model.random_network(arch, seed=s, time_bits=4)
            inputs = _random_inputs(rng, net, 3)
            # Without early exit plain and stalled alternate over seeds; with early exit both every seed, with
            # a run-ahead window of 4 (plain) or 8 (stalled), so that defer FIFOs hold events at the abort.
            stalled = bool((s + i) % 2)
            runs = [(False, stalled, 1), (True, False, 4), (True, True, 8)]
            for early, stalled, window in runs:
                idle = stall = 0.3 if stalled else 0.0
                progress(f"sweep seed {s}: mesh {arch} early_exit={early} idle/stall={idle} window={window}")
                run_mesh(cov, net, mesh, neurons, lanes, inputs, seed=s, idle=idle, stall=stall, early_exit=early,
                         window=window)
        for x, y in ((1, 1), (0, 0), (2, 1)):
            for p in (0.0, 0.4):
                progress(f"sweep seed {s}: router ({x}, {y}) idle/stall {p}")
                run_router(cov, NocConfig(width=3, height=2, payload_bits=16), x, y, 100 * s + 10 * x + y,
                           p_idle=p, p_stall=p)


def _random_inputs(rng, net, n):
    t = rng.integers(0, net.t_end + 1, size=(n, net.n_inputs))
    t[rng.random(t.shape) < 0.3] = net.no_spike
    return t


#: tests/rtl/test_pe_pysim.py CONFIGS (lanes2, lanes1; not their request-stage variants).
PE_CONFIGS = {}
MESH_CASES = [("5-4", (1, 1), 4, 2), ("6-7-3", (2, 2), 4, 2), ("5-6-4-2", (3, 2), 2, 1)]


def _init_configs():
    from rtl.config import PEConfig

    PE_CONFIGS["lanes2"] = PEConfig(neurons=8, fan_in=12, lanes=2, time_bits=4, max_sources=3, defer_depth=4,
                                    fifo_depth=2)
    PE_CONFIGS["lanes1"] = PEConfig(neurons=3, fan_in=9, lanes=1, weight_bits=4, time_bits=4, threshold_bits=8,
                                    max_sources=2)


_init_configs()


def report(default: Coverage | None, swept: Coverage | None, seeds: int) -> tuple[dict, str]:
    """(JSON-able dict, text table) of both runs."""
    rows = []
    for name, (what, crosses) in BINS.items():
        for cross in crosses:
            rows.append({"bin": name, "cross": cross, "what": what,
                         "default": default.count(name, cross) if default else None,
                         "sweep": swept.count(name, cross) if swept else None})
    doc = {"sweep_seeds": seeds, "bins": rows,
           "default_missed": [f"{r['bin']}/{r['cross']}" for r in rows if default and not r["default"]],
           "sweep_missed": [f"{r['bin']}/{r['cross']}" for r in rows if swept and not r["sweep"]]}
    lines = [f"{'bin':<28} {'cross':<8} {'default':>8} {'sweep':>8}"]
    for r in rows:
        d = "-" if r["default"] is None else str(r["default"])
        s = "-" if r["sweep"] is None else str(r["sweep"])
        lines.append(f"{r['bin']:<28} {r['cross']:<8} {d:>8} {s:>8}")
    if default:
        lines.append(f"default suite misses {len(doc['default_missed'])}: {', '.join(doc['default_missed']) or '-'}")
    if swept:
        missed = ", ".join(doc["sweep_missed"]) or "-"
        lines.append(f"sweep ({seeds} seeds) misses {len(doc['sweep_missed'])}: {missed}")
    return doc, "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """``python -m verif.coverage [--seeds N] [--base S] [--out DIR] [--no-default] [--no-sweep]``."""
    import argparse
    import json
    import sys
    import time
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m verif.coverage",
                                 description="Coverage bins of the default suite's stimulus and of a seed sweep.")
    ap.add_argument("--seeds", type=int, default=2, help="sweep seeds (default 2)")
    ap.add_argument("--base", type=int, default=0, help="first sweep seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("build/coverage"), help="folder for coverage.json / .txt")
    ap.add_argument("--no-default", action="store_true", help="skip the default-suite stimulus")
    ap.add_argument("--no-sweep", action="store_true", help="skip the sweep")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds: must be >= 1, got {args.seeds}")
    t0 = time.monotonic()

    def progress(msg):
        print(f"[{time.monotonic() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    default = swept = None
    if not args.no_default:
        default = Coverage()
        default_suite(default, progress)
    if not args.no_sweep:
        swept = Coverage()
        sweep(swept, args.seeds, args.base, progress)
    doc, text = report(default, swept, args.seeds)
    doc["seconds"] = round(time.monotonic() - t0, 1)
    doc["replay"] = "python -m verif.coverage " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "coverage.txt").write_text(text)
    print(text, end="")
    print(f"written: {args.out / 'coverage.json'}, {args.out / 'coverage.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
