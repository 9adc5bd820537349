"""PowerSGD, DGC and signSGD with majority vote without MPI: DGC's momentum correction on a
hand-worked example and its density schedule, PowerSGD's shapes, formulas and full-rank
exactness, the vote's packing; and their bad input on the command line (one line, exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
from launch import mpirun, serial, usage_error_line

from distbench.algorithms.compression import make_compressor
from distbench.algorithms.compression.dgc import DGC
from distbench.algorithms.compression.powersgd import (
    PowerSGD,
    compressible,
    matrix_shape,
    orthogonalize,
)
from distbench.algorithms.compression.vote import MajorityVote


def test_dgc_momentum_correction_and_masking_by_hand():
    """m = 0.5, k = 1 of 4, no warm-up. Step 1: g = (1, -2, 0.5, 0): u = v = g, the largest
    |v| is -2 at 1, sent and masked: v = u = (1, 0, 0.5, 0). Step 2: g = (1, 1, 1, 1):
    u = 0.5 u + g = (1.5, 1, 1.25, 1), v = v + u = (2.5, 1, 1.75, 1), 2.5 at 0 is sent:
    v = (0, 1, 1.75, 1), u = (0, 1, 1.25, 1)."""
    c = DGC(dgc_density=0.25, dgc_momentum=0.5, dgc_warmup_epochs=0)
    vals, idx = c.compress(np.array([1, -2, 0.5, 0], dtype=np.float32))
    assert vals.tolist() == [-2.0] and idx.tolist() == [1]
    assert c.residual_memory.tolist() == [1, 0, 0.5, 0] == c.momentum.tolist()
    vals, idx = c.compress(np.ones(4, dtype=np.float32))
    assert vals.tolist() == [2.5] and idx.tolist() == [0]
    assert c.residual_memory.tolist() == [0, 1, 1.75, 1]
    assert c.momentum.tolist() == [0, 1, 1.25, 1]
    out = c.decompress((vals, idx), (4,))
    assert out.tolist() == [2.5, 0, 0, 0]


def test_dgc_local_clipping_scales_by_the_root_of_the_workers():
    c = DGC(dgc_density=0.25, dgc_momentum=0.0, dgc_warmup_epochs=0, dgc_clip=2.0, ranks=4)
    c.compress(np.array([3, 4, 0, 0], dtype=np.float32))  # norm 5, limit 2 / sqrt(4) = 1
    assert np.allclose(c.residual_memory + c.decompress(
        (np.array([0.8], dtype=np.float32), np.array([1], dtype=np.int32)), (4,)),
        [0.6, 0.8, 0, 0])


def test_dgc_density_schedule_is_the_papers():
    c = DGC(dgc_warmup_epochs=4, steps_per_epoch=10)
    got = [c.density_at(s) for s in (0, 9, 10, 19, 20, 29, 30, 39, 40, 1000)]
    assert got == [0.25, 0.25, 0.0625, 0.0625, 0.015625, 0.015625, 0.004, 0.004, 0.001, 0.001]
    assert [1 - d for d in (0.25, 0.0625, 0.015625, 0.004, 0.001)] == \
        pytest.approx([0.75, 0.9375, 0.984375, 0.996, 0.999])
    spread = DGC(dgc_warmup_epochs=2, steps_per_epoch=1)
    assert [spread.density_at(s / 2) for s in range(5)] == [0.25, 0.0625, 0.015625, 0.004, 0.001]
    assert DGC(dgc_warmup_epochs=0).density_at(0) == 0.001


def test_powersgd_shapes_formulas_and_full_rank_exactness():
    assert matrix_shape(4096) == (64, 64) and matrix_shape(8192) == (64, 128)
    assert matrix_shape(4810) == (65, 74) and matrix_shape(7) == (1, 7)
    assert compressible((64, 64), 2, 2.0) and not compressible((6, 5), 2, 2.0)
    assert not compressible((100,), 2, 2.0)
    c = PowerSGD(powersgd_rank=2)
    assert c.payload_bytes(4096) == 4 * 2 * 128
    assert c.payload_bytes(320, [(10, 20), (120,)]) == 4 * (2 * 30 + 120)
    p = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    orthogonalize(p)
    assert np.allclose(p.T @ p, np.eye(3), atol=1e-5)
    full = PowerSGD(powersgd_rank=8, min_compression_rate=0.1)
    x = np.random.default_rng(1).standard_normal(64).astype(np.float32)  # 8 x 8 at rank 8
    y = full.decompress(full.compress(x), (64,))
    assert np.allclose(y, x, atol=1e-4)
    with pytest.raises(Exception, match="larger than min"):
        PowerSGD(powersgd_rank=9).check_shapes([(8, 8), (4, 100)], "x")


def test_vote_packs_one_bit_per_element_and_a_scale():
    v = MajorityVote()
    x = np.array([0.5, -1, 0, 2, -3, 1, 1, -1, 4], dtype=np.float32)
    bits, scale = v.compress(x)
    assert bits.nbytes == 2 and v.payload_bytes(9) == 2 + 4
    assert np.unpackbits(bits)[:9].tolist() == [1, 0, 1, 1, 0, 1, 1, 0, 1]
    assert scale[0] == pytest.approx(np.abs(x).mean())
    flipped = MajorityVote(adversarial=1, rank=3)
    flipped.ranks = 4
    fb, _ = flipped.compress(x)
    assert (np.unpackbits(fb)[:9] == 1 - np.unpackbits(bits)[:9]).all()
    signum = make_compressor("majority", signum_momentum=0.5)
    signum.compress(np.ones(9, dtype=np.float32))
    assert np.allclose(signum.momentum, 0.5)


@pytest.mark.parametrize("args, needle", [
    (["compress", "--method", "powersgd", "--powersgd-rank", "0"], "'0' is not in [1, 65536]"),
    (["compress", "--method", "powersgd", "--powersgd-rank", "600", "-b", "1M", "-e", "1M"],
     "larger than min(n, m) = 512"),
    (["compress", "--method", "dgc", "--dgc-density", "0.5"], "--dgc-density"),
    (["compress", "--method", "dgc", "--dgc-warmup-epochs", "-1"], "--dgc-warmup-epochs"),
    (["compress", "--method", "majority", "--adversarial", "2", "-b", "1M", "-e", "1M"],
     "--adversarial 2: at most 1 of the 2 workers"),
    (["sgd", "--compress", "powersgd", "--powersgd-rank", "65", "--model", "mlp"],
     "larger than min(n, m)"),
    (["fedavg", "--compress", "dgc"], "--compress dgc is not for federated uploads"),
])
def test_bad_compressor_input_is_one_line_and_exit_2(args, needle, tmp_path):
    proc = mpirun(2, [*args, "--output", str(tmp_path)], timeout=120)
    line = usage_error_line(proc)
    assert needle in line, line


def test_a_powersgd_option_without_powersgd_is_an_error():
    proc = serial(["compress", "--method", "topk", "--powersgd-rank", "4"], timeout=60)
    assert proc.returncode == 2 and "--powersgd-rank" in proc.stderr


def test_fedavg_uploads_through_powersgd_carry_p_and_q(tmp_path):
    """The softmax model's 650 parameters read as a 25 x 26 matrix: rank 2 uploads P (50) and
    Q (52) float32 per client and round, 408 bytes, against 2600 dense."""
    import json

    proc = mpirun(2, ["fedavg", "--rounds", "3", "--compress", "powersgd", "--json", "--quiet",
                      "--output", str(tmp_path)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = next(r for r in json.loads(proc.stdout) if r.get("kind") == "summary")
    assert summary["bytes_up"] == 3 * 10 * 4 * 2 * (25 + 26)
