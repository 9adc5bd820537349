"""The MPI benchmarks, one module per benchmark with its command: every collective through its
declaration (:mod:`.collective`), gradient compression (:mod:`.compress`), SGD (:mod:`.sgd`),
the environment and machine reference (:mod:`.info`); and the outline they share
(:mod:`.sweep`)."""
