"""The optimization side: gradient compression (:mod:`.compression`: compressors, error
feedback, the compressed exchange) and SGD (:mod:`.sgd`: synchronous, local and asynchronous
modes, models, datasets, schedules)."""
