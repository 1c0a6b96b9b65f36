import pytest
import torch

from pns_mmdet.models.task_modules import EmbeddingCache


def test_encodes_each_distinct_input_once_and_evicts_lru():
    calls = []

    def encode(x):
        calls.append(len(x))
        return x.mean(dim=(2, 3), keepdim=True) * 2

    cache = EmbeddingCache(max_entries=2)
    a, b, c = (torch.full((3, 4, 4), float(v)) for v in (1, 2, 3))
    out = cache.encode(torch.stack([a, b]), encode)
    assert calls == [2] and out[:, 0, 0, 0].tolist() == [2., 4.]
    cache.encode(torch.stack([b, a]), encode)
    assert calls == [2]  # both cached
    cache.encode(torch.stack([c]), encode)  # evicts b (least recent)
    assert len(cache) == 2
    cache.encode(torch.stack([a]), encode)
    assert calls == [2, 1]
    cache.encode(torch.stack([b]), encode)
    assert calls == [2, 1, 1]
    # A different input of the same shape is a different entry.
    assert EmbeddingCache.key(a) != EmbeddingCache.key(a + 1e-6)
    with pytest.raises(ValueError, match='max_entries must be >= 1'):
        EmbeddingCache(0)
