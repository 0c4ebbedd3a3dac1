"""Fine-tuning for the ``train-on-self-hosted-gpu`` action.

- ``data``: rows -> token ids + labels with the loss mask of each format (completion-only, assistant-only, all).
- ``packing``: best-fit packing of samples into rows (attention kept inside each sample via position ids),
  the padded alternative, collators and the per-epoch shuffling sampler.
- ``modeling``: load model/tokenizer from a folder or hub id (offline-aware errors), LoRA, final save.
- ``loop``: the accelerate training loop (token-weighted loss across micro-batches, eval, checkpoints, resume).
- ``checkpoints``: atomic checkpoint folders, ``latest``, keep-last rotation.
- ``metadata``: ``llmops-model.json`` writer and ``read_model_metadata`` for the other actions.
- ``preflight``: GPU runner checks before launching (nvidia-smi, free memory, stray processes, port, config).
- ``launch``: the explicit ``accelerate launch`` command the action runs.
- ``report``: JSON-lines log, step-summary table and loss curve.
"""
