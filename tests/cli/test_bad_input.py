"""Bad input never gets a traceback (issue 14): a table of malformed inputs, each run in-process through
``yoso.cli.main``. Every case must exit 2 with exactly one line on stderr that names the flag or the file field,
no traceback, and leave the folder exactly as it was: no output file created, a finished output that was already
there byte-identical.

Kinds covered: input arrays, output paths, sizes, network-file corners, datasets, silent clamping, messages that
name the flag, usage errors, data loss on ``yoso train --out``, corrupt and hostile ``--resume`` checkpoints.
Ctrl-C, the internal-error status and the output-flag table have their own tests at the end.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import model
from yoso.cli import OUTPUTS, build_parser, main

TINY = "64-8-10"  # digits images are 8x8


# ---- inputs the cases refer to, written into each case's own folder ----------------------------------------------

def good_header(**over):
    h = {"format": "yoso-relpsp", "version": 1, "time_bits": 8, "t_end": 254, "weight_bits": 8,
         "threshold_bits": 16, "input_shape": [64],
         "encoding": {"kind": "linear-intensity", "t_in_max": 31, "p_min": 1},
         "layers": [{"kind": "dense", "in": 64, "out": 10}]}
    h.update(over)
    return h


def dense_arrays():
    return {"layer0.weight": np.ones((64, 10), np.int8), "layer0.threshold": np.full(10, 50, np.int32)}


def conv_header(**layer):
    spec = {"kind": "conv2d", "in_shape": [1, 8, 8], "out_channels": 2, "kernel": [3, 3], "stride": 1,
            "padding": 0}
    spec.update(layer)
    return good_header(input_shape=[1, 8, 8], layers=[spec, {"kind": "dense", "in": 72, "out": 10}])


def conv_arrays(k=(3, 3)):
    return {"layer0.weight": np.ones((2, 1, *k), np.int8), "layer0.threshold": np.full(2, 9, np.int32),
            "layer1.weight": np.ones((72, 10), np.int8), "layer1.threshold": np.full(10, 9, np.int32)}


def write_net(path: Path, header, arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, header=np.array(json.dumps(header) if not isinstance(header, str) else header), **arrays)


def zip_member_without_magic(path: Path) -> None:
    write_net(path, good_header(), dense_arrays())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("layer1.weight.npy", b"not an array")


def huge_declared_array(path: Path) -> None:
    """A member whose .npy header claims 2**40 values (and holds a few bytes): refused, never allocated."""
    write_net(path, good_header(), dense_arrays())
    hdr = "{'descr': '|i1', 'fortran_order': False, 'shape': (1048576, 1048576), }"
    hdr += " " * (-(len(hdr) + 11) % 64) + "\n"
    blob = b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + b"\x00" * 16
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("layer0.extra.npy", blob)


def finished_run(folder: Path) -> None:
    """What a finished `yoso train` leaves (contents do not matter: they must survive byte for byte)."""
    folder.mkdir()
    model.save(model.random_network(TINY, seed=1), folder / "network.npz")
    (folder / "checkpoint.pt").write_bytes(b"checkpoint of the finished run")
    (folder / "report.json").write_text('{"fixed_point_test_accuracy": 0.9}\n')


def torch_save(path: Path, obj) -> None:
    import torch

    path.parent.mkdir(exist_ok=True)
    torch.save(obj, path)


class Hostile:
    def __reduce__(self):
        return (os.system, ("touch HACKED",))


def idx_folder(folder: Path, *, truncate=False, bad_magic=False, n=5) -> None:
    folder.mkdir()
    for prefix in ("train", "t10k"):
        images = b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, 8, 8)) + bytes(n * 64)
        labels = b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(n)
        if bad_magic:
            images = b"\x01\x02" + images[2:]
        for name, data in ((f"{prefix}-images-idx3-ubyte.gz", images), (f"{prefix}-labels-idx1-ubyte.gz", labels)):
            blob = gzip.compress(data)
            (folder / name).write_bytes(blob[:len(blob) // 2] if truncate else blob)


SETUP = {
    # input arrays
    "t0d.npy": lambda p: np.save(p, np.array(3)),
    "t0rows.npy": lambda p: np.save(p, np.zeros((0, 64), np.int64)),
    "t.npz": lambda p: np.savez(p, x=np.zeros((2, 64), np.int64)),
    "t.txt": lambda p: p.write_text("1 2 3\n4 5 6\n"),
    "tu64.npy": lambda p: np.save(p, np.full((2, 64), 2**64 - 1, np.uint64)),
    "tfloat.npy": lambda p: np.save(p, np.zeros((2, 64))),
    "tbool.npy": lambda p: np.save(p, np.zeros((2, 64), bool)),
    "tobj.npy": lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "tshape.npy": lambda p: np.save(p, np.zeros((2, 63), np.int64)),
    "tneg.npy": lambda p: np.save(p, np.full((2, 64), -1, np.int64)),
    "tdir": lambda p: p.mkdir(),
    # network files
    "junk.npz": lambda p: p.write_bytes(b"junk"),
    "nomagic.npz": zip_member_without_magic,
    "hugearray.npz": huge_declared_array,
    "nested.npz": lambda p: write_net(p, '{"a": ' * 100000 + "1" + "}" * 100000, {}),
    "notjson.npz": lambda p: write_net(p, "{not json", {}),
    "kernel3.npz": lambda p: write_net(p, conv_header(kernel=[3, 3, 3]), conv_arrays()),
    "kernel0.npz": lambda p: write_net(p, conv_header(kernel=[0, 0]), conv_arrays((0, 0))),
    "kernelint.npz": lambda p: write_net(p, conv_header(kernel=3), conv_arrays()),
    "padding.npz": lambda p: write_net(p, conv_header(padding=60000), conv_arrays()),
    "inshape.npz": lambda p: write_net(p, conv_header(in_shape=[]), conv_arrays()),
    "metadata.npz": lambda p: write_net(p, good_header(metadata=[1, 2]), dense_arrays()),
    "nolayers.npz": lambda p: write_net(p, good_header(layers=[]), {}),
    "version.npz": lambda p: write_net(p, good_header(version=True), dense_arrays()),
    "wrange.npz": lambda p: write_net(p, good_header(), {**dense_arrays(),
                                                          "layer0.weight": np.full((64, 10), 300, np.int16)}),
    "extra.npz": lambda p: write_net(p, good_header(), {**dense_arrays(), "layer9.weight": np.zeros(3, np.int8)}),
    "objarray.npz": lambda p: np.savez(p, header=np.array([{"x": 1}], dtype=object)),
    "bigdense.npz": lambda p: write_net(p, good_header(layers=[{"kind": "dense", "in": 64, "out": 10**12}]),
                                        dense_arrays()),
    # a finished output that must survive
    "existing.npz": lambda p: model.save(model.random_network(TINY, seed=2), p),
    "run": finished_run,
    "afile": lambda p: p.write_text("a regular file\n"),
    "adir": lambda p: p.mkdir(),
    "fifo": lambda p: os.mkfifo(p),
    # datasets
    "idx_trunc": lambda p: idx_folder(p, truncate=True),
    "idx_magic": lambda p: idx_folder(p, bad_magic=True),
    "idx_empty": lambda p: idx_folder(p, n=0),
    # checkpoints for --resume (in a folder that is otherwise a run in progress)
    "ck_trunc/checkpoint.pt": lambda p: (p.parent.mkdir(), p.write_bytes(b"PK\x03\x04truncated")),
    "ck_pickle/checkpoint.pt": lambda p: (p.parent.mkdir(), p.write_bytes(pickle.dumps(Hostile()))),
    "ck_keys/checkpoint.pt": lambda p: torch_save(p, {"foo": 1}),
    "ck_state/checkpoint.pt": lambda p: torch_save(p, {"config": "{}", "state": {}, "optim": {}, "epoch": 1,
                                                        "history": "[]"}),
}


@dataclass
class Case:
    id: str
    argv: list[str]
    names: str  # what the one stderr line must contain (flag or field)
    needs: tuple[str, ...] = ()  # SETUP entries written before the run


def infer(*extra, net="{net}"):
    return ["infer", "--net", net, *extra]


def times(name):
    return infer("--input-times", f"{{tmp}}/{name}", "--dump-spikes", "{tmp}/dump.npz")


def netfile(name, field):
    return Case(f"netfile-{name}", infer("--dataset", "digits", "--dump-spikes", "{tmp}/dump.npz",
                                         net=f"{{tmp}}/{name}"), field, (name,))


def netgen(*extra, out="{tmp}/existing.npz"):
    return ["netgen", "--arch", TINY, *extra, "--out", out]


def train(*extra, out="{tmp}/run", arch=TINY):
    return ["train", "--dataset", "digits", "--arch", arch, "--epochs", "1", "--qat-epochs", "0", "--quiet",
            "--no-plots", "--train-limit", "60", "--test-limit", "20", "--out", out, *extra]


CASES = [
    # -- input arrays (one shared loader: yoso/util.py load_array) --
    Case("times-0d", times("t0d.npy"), "--input-times", ("t0d.npy",)),
    Case("times-0rows", times("t0rows.npy"), "--input-times", ("t0rows.npy",)),
    Case("times-npz", times("t.npz"), "--input-times", ("t.npz",)),
    Case("times-text", times("t.txt"), "--input-times", ("t.txt",)),
    Case("times-uint64", times("tu64.npy"), "18446744073709551615", ("tu64.npy",)),
    Case("times-float", times("tfloat.npy"), "--input-times", ("tfloat.npy",)),
    Case("times-bool", times("tbool.npy"), "--input-times", ("tbool.npy",)),
    Case("times-object", times("tobj.npy"), "--input-times", ("tobj.npy",)),
    Case("times-shape", times("tshape.npy"), "--input-times", ("tshape.npy",)),
    Case("times-negative", times("tneg.npy"), "input 0 is -1", ("tneg.npy",)),
    Case("times-missing", times("nope.npy"), "--input-times"),
    Case("times-folder", times("tdir"), "--input-times", ("tdir",)),
    Case("verify-times-npz", ["verify", "--net", "{net}", "--mesh", "1x1", "--input-times", "{tmp}/t.npz"],
         "--input-times", ("t.npz",)),
    # -- output paths (one shared check before the work: yoso/cli.py check_outputs) --
    Case("dump-is-folder", infer("--dataset", "digits", "--dump-spikes", "{tmp}/adir"), "--dump-spikes", ("adir",)),
    Case("dump-under-file", infer("--dataset", "digits", "--dump-spikes", "{tmp}/afile/d.npz"), "--dump-spikes",
         ("afile",)),
    Case("dump-is-net", infer("--dataset", "digits", "--dump-spikes", "{tmp}/existing.npz",
                              net="{tmp}/existing.npz"), "--dump-spikes", ("existing.npz",)),
    Case("dump-empty", infer("--dataset", "digits", "--dump-spikes", ""), "--dump-spikes"),
    Case("netgen-out-fifo", netgen(out="{tmp}/fifo"), "--out", ("fifo",)),  # renaming over it would destroy it
    Case("dump-fifo", infer("--dataset", "digits", "--dump-spikes", "{tmp}/fifo"), "--dump-spikes", ("fifo",)),
    Case("netgen-out-folder", netgen(out="{tmp}/adir"), "--out", ("adir",)),
    Case("netgen-out-under-file", netgen(out="{tmp}/afile/n.npz"), "--out", ("afile",)),
    Case("netgen-out-empty", netgen(out=""), "--out"),
    Case("verilog-out-folder", ["verilog", "--out", "{tmp}/adir"], "--out", ("adir",)),
    Case("verilog-out-under-file", ["verilog", "--out", "{tmp}/afile/pe.v"], "--out", ("afile",)),
    Case("verilog-out-is-net", ["verilog", "--net", "{tmp}/existing.npz", "--out", "{tmp}/existing.npz"], "--out",
         ("existing.npz",)),
    Case("fpga-verilog-only-folder", ["fpga", "--board", "icebreaker", "--net", "{net}", "--verilog-only",
                                      "{tmp}/adir"], "--verilog-only", ("adir",)),
    Case("fpga-verilog-only-under-file", ["fpga", "--board", "icebreaker", "--net", "{net}", "--verilog-only",
                                          "{tmp}/afile/top.v"], "--verilog-only", ("afile",)),
    Case("fpga-build-dir-file", ["fpga", "--board", "icebreaker", "--net", "{net}", "--build-dir", "{tmp}/afile"],
         "--build-dir", ("afile",)),
    Case("train-out-file", train(out="{tmp}/afile"), "--out", ("afile",)),
    Case("train-out-under-file", train(out="{tmp}/afile/run"), "--out", ("afile",)),
    # -- data loss: a finished run is never overwritten by accident --
    Case("train-into-finished-run", train(), "network.npz, checkpoint.pt, report.json", ("run",)),
    Case("train-into-finished-run-other-arch", train(arch="64-16-10"), "--out", ("run",)),
    Case("train-force-and-resume", train("--force", "--resume"), "--force", ("run",)),
    Case("netgen-bad-value-keeps-existing", netgen("--t-in-max", "300"), "--t-in-max", ("existing.npz",)),
    # -- sizes, refused before anything is allocated --
    Case("netgen-arch-31-digits", ["netgen", "--arch", "64-" + "9" * 31 + "-10", "--out", "{tmp}/n.npz"], "--arch"),
    Case("netgen-arch-huge", ["netgen", "--arch", "64-100000-100000", "--out", "{tmp}/n.npz"], "--arch"),
    Case("train-arch-31-digits", train(arch="64-" + "9" * 31 + "-10"), "--arch"),
    Case("train-arch-huge-dense", train(arch="64-300000000-10"), "--arch"),
    Case("train-conv-huge-padding", train(arch="1x8x8-c4k3p5000-10"), "--arch"),
    Case("train-conv-huge-channels", train(arch="1x8x8-c100000000k3-10"), "--arch"),
    Case("infer-huge-declared-array", infer("--dataset", "digits", net="{tmp}/hugearray.npz"), "layer0.extra",
         ("hugearray.npz",)),
    # -- network-file corners (model/netfile.py) --
    netfile("junk.npz", "--net"),
    netfile("nomagic.npz", "layer1.weight: not a .npy array"),
    netfile("nested.npz", "header: JSON nested too deeply"),
    netfile("notjson.npz", "header: invalid JSON"),
    netfile("kernel3.npz", "layers[0].kernel"),
    netfile("kernel0.npz", "layers[0].kernel"),
    netfile("kernelint.npz", "layers[0].kernel"),
    netfile("padding.npz", "layers[0].padding"),
    netfile("inshape.npz", "layers[0].in_shape"),
    netfile("metadata.npz", "metadata: expected a JSON object"),
    netfile("nolayers.npz", "layers"),
    netfile("version.npz", "version"),
    netfile("wrange.npz", "layers[0].weight: value 300"),
    netfile("extra.npz", "layer9.weight: unexpected array"),
    netfile("objarray.npz", "header: holds Python objects"),
    netfile("bigdense.npz", "layer0.weight"),
    Case("net-missing", infer("--dataset", "digits", net="{tmp}/none.npz"), "--net"),
    Case("net-folder", infer("--dataset", "digits", net="{tmp}/adir"), "--net", ("adir",)),
    # -- datasets --
    Case("dataset-empty", infer("--dataset", ""), "--dataset"),
    Case("dataset-unknown", infer("--dataset", "cifar"), "--dataset"),
    Case("dataset-no-folder", infer("--dataset", "mnist:"), "--dataset"),
    Case("dataset-missing-folder", infer("--dataset", "idx:{tmp}/nothing"), "--dataset"),
    Case("dataset-truncated-gz", infer("--dataset", "idx:{tmp}/idx_trunc"), "--dataset", ("idx_trunc",)),
    Case("dataset-bad-magic", infer("--dataset", "idx:{tmp}/idx_magic"), "--dataset", ("idx_magic",)),
    Case("dataset-no-images", infer("--dataset", "idx:{tmp}/idx_empty"), "--dataset", ("idx_empty",)),
    Case("train-dataset-no-images", ["train", "--dataset", "idx:{tmp}/idx_empty", "--arch", "64-10", "--out",
                                     "{tmp}/r", "--quiet"], "--dataset", ("idx_empty",)),
    Case("train-dataset-empty", ["train", "--dataset", "", "--arch", TINY, "--out", "{tmp}/r"], "--dataset"),
    Case("train-dataset-truncated", ["train", "--dataset", "idx:{tmp}/idx_trunc", "--arch", "784-10", "--out",
                                     "{tmp}/r", "--quiet"], "--dataset", ("idx_trunc",)),
    # -- no silent changes --
    Case("netgen-t-in-max-300", netgen("--t-in-max", "300", out="{tmp}/n.npz"), "--t-in-max"),
    Case("netgen-t-in-max-above-t-end", netgen("--t-end", "20", "--t-in-max", "21", out="{tmp}/n.npz"),
         "--t-in-max"),
    Case("netgen-t-end-300", netgen("--t-end", "300", out="{tmp}/n.npz"), "--t-end"),
    # -- messages name the flag --
    Case("netgen-seed-negative", netgen("--seed", "-1", out="{tmp}/n.npz"), "--seed"),
    Case("train-seed-negative", train("--seed", "-1", out="{tmp}/r"), "--seed"),
    Case("netgen-time-bits", netgen("--time-bits", "1", out="{tmp}/n.npz"), "--time-bits"),
    Case("netgen-weight-bits", netgen("--weight-bits", "40", out="{tmp}/n.npz"), "--weight-bits"),
    Case("netgen-arch-garbage", ["netgen", "--arch", "abc", "--out", "{tmp}/n.npz"], "--arch"),
    Case("verify-window-huge", ["verify", "--net", "{tmp}/wide.npz", "--mesh", "4x4", "--neurons", "16",
                                "--window", "100000", "--dataset", "digits"], "--window", ("wide.npz",)),
    Case("verify-mesh-zero", ["verify", "--net", "{net}", "--mesh", "0x0", "--dataset", "digits"], "--mesh"),
    Case("verify-lanes-3", ["verify", "--net", "{net}", "--mesh", "2x2", "--lanes", "3", "--dataset", "digits"],
         "--lanes"),
    Case("train-jitter-huge", train("--jitter", str(10**15), out="{tmp}/r"), "--jitter"),
    Case("train-threads-huge", train("--threads", str(10**9), out="{tmp}/r"), "--threads"),
    Case("train-lr-inf", train("--lr", "inf", out="{tmp}/r"), "--lr"),
    Case("train-tau-tiny-diverges", train("--tau", "1e-300", out="{tmp}/r"), "--tau"),
    Case("fpga-dataset-empty", ["fpga", "--board", "icebreaker", "--net", "{net}", "--dataset", "",
                                "--verilog-only", "{tmp}/t.v"], "--dataset"),
    Case("verilog-balance-no-mesh", ["verilog", "--balance", "--out", "{tmp}/pe.v"], "--balance"),
    Case("fpga-compact-no-mesh", ["fpga", "--board", "icebreaker", "--net", "{net}", "--compact-weights",
                                  "--verilog-only", "{tmp}/t.v"], "--compact-weights"),
    Case("verify-compact-dense-net", ["verify", "--net", "{net}", "--mesh", "1x1", "--compact-weights",
                                      "--dataset", "digits"], "--compact-weights"),
    Case("net-empty", infer("--dataset", "digits", net=""), "--net"),
    Case("infer-min-accuracy-above-1", infer("--dataset", "digits", "--min-accuracy", "2"), "--min-accuracy"),
    Case("infer-min-accuracy-without-labels", times("t0rows.npy")[:-2] + ["--min-accuracy", "0.5"],
         "--min-accuracy", ("t0rows.npy",)),
    Case("infer-limit-zero", infer("--dataset", "digits", "--limit", "0"), "--limit"),
    Case("infer-batch-zero", infer("--dataset", "digits", "--batch", "0"), "--batch"),
    # -- usage errors: argparse, one line too --
    Case("usage-limit-not-int", infer("--dataset", "digits", "--limit", "abc"), "--limit"),
    Case("usage-unknown-flag", infer("--dataset", "digits", "--frobnicate"), "--frobnicate"),
    Case("usage-missing-net", ["infer", "--dataset", "digits"], "--net"),
    Case("usage-both-sources", infer("--dataset", "digits", "--input-times", "x.npy"), "--input-times"),
    Case("usage-unknown-command", ["frobnicate"], "frobnicate"),
    Case("usage-bad-choice", ["fpga", "--board", "nexys", "--net", "{net}"], "--board"),
    # -- --resume: corrupt and hostile checkpoints --
    Case("resume-truncated", train("--resume", out="{tmp}/ck_trunc"), "--resume", ("ck_trunc/checkpoint.pt",)),
    Case("resume-pickle", train("--resume", out="{tmp}/ck_pickle"), "--resume: ", ("ck_pickle/checkpoint.pt",)),
    Case("resume-wrong-keys", train("--resume", out="{tmp}/ck_keys"), "--resume", ("ck_keys/checkpoint.pt",)),
    Case("resume-other-settings", train("--resume", out="{tmp}/ck_state"), "--resume", ("ck_state/checkpoint.pt",)),
    Case("resume-no-checkpoint", train("--resume", out="{tmp}/run2"), "--resume", ("run2",)),
]

SETUP["wide.npz"] = lambda p: model.save(model.random_network("64-200-10", seed=0), p)
SETUP["run2"] = lambda p: (p.mkdir(), (p / "report.json").write_text("{}\n"))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    d = tmp_path_factory.mktemp("shared")
    net = d / "net.npz"
    model.save(model.random_network(TINY, seed=0), net)
    return {"net": str(net)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, shared, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a hostile pickle would drop HACKED here
    for name in case.needs:
        SETUP[name](tmp_path / name)
    before = snapshot(tmp_path)
    argv = [a.format(tmp=tmp_path, **shared) for a in case.argv]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert case.names in lines[0], lines[0]
    assert rc == 2, lines[0]
    assert lines[0].startswith("yoso"), lines[0]
    assert snapshot(tmp_path) == before, "the folder changed: a file was created, changed or removed"


def test_table_covers_every_kind():
    assert len(CASES) >= 80 and len({c.id for c in CASES}) == len(CASES)


SUBPARSERS = next(a for a in build_parser()._actions if a.dest == "command").choices


@pytest.mark.parametrize("command", sorted(SUBPARSERS))
def test_every_output_flag_is_checked(command):
    """An option that names an output (dest out/build_dir/..., metavar OUT...) must be in yoso.cli.OUTPUTS, or it
    would skip the shared check."""
    for action in SUBPARSERS[command]._actions:
        metavar = str(action.metavar or "")
        if action.dest in ("out", "dump_spikes", "verilog_only", "build_dir") or metavar.startswith("OUT"):
            assert action.dest in OUTPUTS[command], f"yoso {command} {action.option_strings}"


def test_every_command_is_in_the_output_table():
    assert set(SUBPARSERS) <= set(OUTPUTS), set(SUBPARSERS) - set(OUTPUTS)


# ---- exit codes, Ctrl-C, missing parent folders ------------------------------------------------------------------

def test_ctrl_c_is_one_line_and_writes_nothing(shared, tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "run", interrupted)
    rc = main(infer("--dataset", "digits", "--json", "--dump-spikes", str(tmp_path / "d.npz"), net=shared["net"]))
    err = capsys.readouterr().err.strip()
    assert rc == 130 and len(err.splitlines()) == 1 and "interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_train_says_how_to_resume(tmp_path, capsys, monkeypatch):
    """Interrupted right after the first epoch's checkpoint: the one line names the epoch and --resume."""
    import training.train as tt

    real = tt._save_checkpoint

    def save_then_interrupt(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(tt, "_save_checkpoint", save_then_interrupt)
    out = tmp_path / "run"
    rc = main(train("--epochs", "2", out=str(out)))
    err = capsys.readouterr().err.strip()
    assert rc == 130 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "epoch 1 of 2" in err and "--resume" in err
    assert (out / "checkpoint.pt").exists() and not (out / "network.npz").exists()


def test_internal_error_keeps_its_traceback_and_status_3(shared, capsys, monkeypatch):
    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(model, "run", bug)
    assert main(infer("--dataset", "digits", net=shared["net"])) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "internal error" in err


def test_missing_parent_folders_are_created_for_every_file_output(shared, tmp_path, capsys):
    """The one decision about missing parents, the same for every command: created, at write time."""
    assert main(netgen(out=str(tmp_path / "a" / "b" / "n.npz"))) == 0
    assert main(infer("--dataset", "digits", "--limit", "5", "--dump-spikes", str(tmp_path / "c" / "d.npz"),
                      net=shared["net"])) == 0
    assert (tmp_path / "a" / "b" / "n.npz").is_file() and (tmp_path / "c" / "d.npz").is_file()


def test_force_replaces_a_finished_run(tmp_path, capsys):
    finished_run(tmp_path / "run")
    (tmp_path / "run" / "curves.png").write_bytes(b"old plot")
    assert main(train("--force", out=str(tmp_path / "run"))) == 0
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"network.npz", "checkpoint.pt", "report.json"}  # --no-plots: the old plot is gone too
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() != b"checkpoint of the finished run"
    assert model.load(tmp_path / "run" / "network.npz").describe() == "1x8x8-8-10"


def test_help_exits_0(capsys):
    assert main(["infer", "--help"]) == 0
    assert "--net" in capsys.readouterr().out


def test_exit_1_means_a_check_failed(shared, capsys):
    """Status 1 is a failed check, never bad input: an accuracy below --min-accuracy (a random network on digits
    is near chance); the same bar met exits 0."""
    rc = main(infer("--dataset", "digits", "--limit", "50", "--json", "--min-accuracy", "0.99", net=shared["net"]))
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("yoso infer: check failed: accuracy") and "--min-accuracy 0.99" in err
    assert main(infer("--dataset", "digits", "--limit", "50", "--min-accuracy", "0", net=shared["net"])) == 0
