"""Fine-tuning for the ``train-on-self-hosted-gpu`` action.

- ``data``: rows -> token ids + labels with the loss mask of each format (completion-only, assistant-only, all).
- ``packing``: best-fit packing of samples into rows (attention kept inside each sample via position ids),
  the padded alternative, collators and the per-epoch shuffling sampler.
- ``modeling``: load model/tokenizer from a folder or hub id (offline-aware errors), LoRA, final save.
- ``run``: one training run as every process goes through it: check inputs, prepare, resume, train, finish.
- ``loop``: the step loop (token-weighted loss across micro-batches and processes, eval, checkpoints).
- ``distributed``: which rows each process trains on, the accelerator (timeout, FSDP2 on CPU), lost peers.
- ``checkpoints``: atomic checkpoint folders, ``latest``, keep-last rotation.
- ``metadata``: ``llmops-model.json`` writer and ``read_model_metadata`` for the other actions.
- ``preflight``: GPU runner checks before launching (nvidia-smi, free memory, stray processes, port, config).
- ``launch``: the explicit ``accelerate launch`` command the action runs (one machine or several).
- ``report``: JSON-lines log, step-summary table and loss curve.
"""
