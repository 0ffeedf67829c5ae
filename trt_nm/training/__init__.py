"""Training: the trainer loop (:mod:`.trainer`), checkpoints (:mod:`.checkpoint`) and
multi-process data parallelism (:mod:`.distributed`)."""
