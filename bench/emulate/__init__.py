"""The emulated cluster: network namespaces as nodes joined by rate-limited links
(:mod:`.network`), the ssh stand-in that starts each node's daemons (:mod:`.agent`), the
cluster and its mpirun launch (:mod:`.cluster`), a real Slurm on it (:mod:`.slurm`), and the
``distbench emulate`` command (:mod:`.command`)."""
