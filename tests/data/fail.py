"""An MPI program the emulated-cluster tests start to see a job fail (not a test module).

``python fail.py HOW [PID_DIR]``: every rank writes an empty file named by its pid into PID_DIR
(when given) and meets the others at a barrier; then the last rank dies without finalizing
while the others still sleep, by ``os._exit(3)`` (HOW ``exit``) or SIGKILL (HOW ``kill``).
"""

import os
import signal
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
if len(sys.argv) > 2:
    open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
comm.Barrier()
if comm.rank == comm.size - 1:
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)
time.sleep(60)
