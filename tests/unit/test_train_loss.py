"""The training loss scores only labelled positions and still equals the cross-entropy of the full, shifted logits."""
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def _batch(model):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 17), generator=gen)
    positions = torch.arange(17).repeat(3, 1)
    positions[1, 9:] = torch.arange(8)  # two packed samples in row 1
    labels = ids.clone()
    labels[:, :5] = -100  # prompts
    labels[1, 9] = -100  # the second sample's first token
    labels[2] = -100  # a row with nothing to learn
    return ids, positions, labels


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def test_labelled_positions_only_give_the_full_logits_loss_and_gradients(model):
    import torch.nn.functional as F

    from llmops.train.loop import labelled_only

    ids, positions, labels = _batch(model)
    logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits
    full = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum")
    expected = _grads(model, full)

    targets = F.pad(labels[:, 1:], (0, 1), value=-100)
    keep = targets != -100
    with labelled_only(model.get_output_embeddings(), keep):
        scored = model(input_ids=ids, position_ids=positions, use_cache=False).logits
    assert scored.shape == (int(keep.sum()), model.config.vocab_size)
    loss = F.cross_entropy(scored, targets[keep], reduction="sum")
    assert loss.item() == pytest.approx(full.item(), rel=1e-6)
    for got, want in zip(_grads(model, loss), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    # the hook is gone afterwards: generation and eval see every position again
    assert model(input_ids=ids).logits.shape == (3, 17, model.config.vocab_size)


def test_a_micro_batch_without_labels_gives_zero_loss_and_zero_gradients(model):
    from llmops.train.loop import labelled_only

    ids, positions, _ = _batch(model)
    keep = torch.zeros(ids.shape, dtype=torch.bool)
    with labelled_only(model.get_output_embeddings(), keep):
        scored = model(input_ids=ids, position_ids=positions, use_cache=False).logits
    loss = torch.nn.functional.cross_entropy(scored, ids[keep], reduction="sum")
    assert loss.item() == 0.0
    grads = _grads(model, loss)  # backward works (DDP needs every rank to run one), and changes nothing
    assert all(g is not None and float(g.abs().max()) == 0.0 for g in grads)
