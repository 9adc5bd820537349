"""The split sizes of an all-to-all-v: the sweep's uneven pattern and the counts' checks."""

from __future__ import annotations


def pattern(m: int, ranks: int, rank: int) -> tuple[list[int], list[int]]:
    """(send counts, receive counts) of ``rank`` in the sweep's pattern: block r -> j is
    m (1 + (r + 2j) mod 3) elements."""
    send = [m * (1 + (rank + 2 * j) % 3) for j in range(ranks)]
    recv = [m * (1 + (j + 2 * rank) % 3) for j in range(ranks)]
    return send, recv


def pattern_unit(count: int, ranks: int) -> int:
    """The unit m of a mean send buffer of ``count`` elements (2 m p: the blocks average 2m)."""
    return count // (2 * ranks)


def counts(comm, sendbuf, recvbuf, sendcounts=None, recvcounts=None
           ) -> tuple[list[int], list[int], list[int], list[int]]:
    """(send counts, send offsets, receive counts, receive offsets) of one call: the ones
    given, else the pattern with m from the send buffer's length.

    Raises:
        ValueError: counts of the wrong length, negative, or not adding up to the buffers.
    """
    p, rank = comm.Get_size(), comm.Get_rank()
    if sendcounts is None or recvcounts is None:
        units = sum(1 + (rank + 2 * j) % 3 for j in range(p))
        m = sendbuf.shape[0] // units
        sendcounts, recvcounts = pattern(m, p, rank)
    sendcounts, recvcounts = [int(c) for c in sendcounts], [int(c) for c in recvcounts]
    if len(sendcounts) != p or len(recvcounts) != p or min(sendcounts + recvcounts) < 0:
        raise ValueError(f"alltoallv on {p} ranks needs {p} non-negative send and receive "
                         "counts")
    if sum(sendcounts) > sendbuf.shape[0] or sum(recvcounts) > recvbuf.shape[0]:
        raise ValueError(f"alltoallv counts of {sum(sendcounts)} and {sum(recvcounts)} "
                         f"elements for buffers of {sendbuf.shape[0]} and {recvbuf.shape[0]}")
    sdispls, rdispls = [0] * p, [0] * p
    for j in range(1, p):
        sdispls[j] = sdispls[j - 1] + sendcounts[j - 1]
        rdispls[j] = rdispls[j - 1] + recvcounts[j - 1]
    return sendcounts, sdispls, recvcounts, rdispls


def sent_bytes(count: int, ranks: int, rank: int, itemsize: int) -> int:
    """Bytes ``rank`` sends to the others in the pattern of a ``count``-element mean buffer."""
    send, _ = pattern(pattern_unit(count, ranks), ranks, rank)
    return (sum(send) - send[rank]) * itemsize
