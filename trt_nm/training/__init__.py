"""Training: the trainer loop (:mod:`.trainer`), its extension point (:mod:`.callbacks`),
quantization-aware training (:mod:`.qat`), checkpoints (:mod:`.checkpoint`) and
multi-process data parallelism (:mod:`.distributed`)."""
