"""Image embeddings of a frozen encoder, computed once per distinct input."""
import hashlib
from collections import OrderedDict
from typing import Callable

import torch
from mmdet.registry import TASK_UTILS
from torch import Tensor

__all__ = ['EmbeddingCache']


@TASK_UTILS.register_module()
class EmbeddingCache:
    """An LRU cache of image embeddings for frozen-encoder training.

    With a frozen image encoder (LiteMedSAM fine-tuning on CPU) the encoder
    dominates each iteration, yet the same crops recur every epoch. The
    segmentor's ``train_cfg.embedding_cache = dict(type='EmbeddingCache',
    max_entries=N)`` names this component; it is built only then and holds
    at most ``max_entries`` embeddings.

    The key is a digest of the exact input tensor (after augmentation and
    normalisation), not an image id: random crops, flips and colour jitter
    then give separate entries and an entry is never stale. The digest
    costs one device-to-host copy of the batch, small next to the encoder.

    Args:
        max_entries (int): Embeddings kept (least recently used dropped).
    """

    def __init__(self, max_entries: int) -> None:
        if int(max_entries) < 1:
            raise ValueError(f'EmbeddingCache: max_entries must be >= 1, got '
                             f'{max_entries}')
        self.max_entries = int(max_entries)
        self._entries: 'OrderedDict[str, Tensor]' = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def key(image: Tensor) -> str:
        """Digest of one (3, S, S) input."""
        return hashlib.blake2b(
            image.detach().contiguous().cpu().numpy().tobytes(),
            digest_size=16).hexdigest()

    def encode(self, inputs: Tensor,
               encode_fn: Callable[[Tensor], Tensor]) -> Tensor:
        """Embeddings of (B, 3, S, S) ``inputs``, encoding only new ones.

        Args:
            inputs (Tensor): (B, 3, S, S) encoder inputs.
            encode_fn (callable): (b, 3, S, S) -> (b, C, h, w), e.g. the
                segmentor's ``encode_image``.

        Returns:
            Tensor: (B, C, h, w) on the device of ``inputs`` (detached).
        """
        keys = [self.key(x) for x in inputs]
        missing = [i for i, k in enumerate(keys) if k not in self._entries]
        if missing:
            fresh = encode_fn(inputs[missing])
            for i, emb in zip(missing, fresh):
                self._entries[keys[i]] = emb.detach()
        out = []
        for k in keys:
            self._entries.move_to_end(k)
            out.append(self._entries[k])
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return torch.stack(out).to(inputs.device)
