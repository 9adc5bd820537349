"""The communication of one training step under data, ZeRO, tensor and pipeline parallelism:
the model's shape and cost (:mod:`.model`), the layout of D x T x P ranks (:mod:`.layout`),
memory per rank (:mod:`.memory`), gradient buckets (:mod:`.buckets`), pipeline schedules
(:mod:`.pipeline`), the closed-form traffic (:mod:`.traffic`) and the step on MPI
(:mod:`.step`)."""
