"""Each part of PromptNucSeg sees its input exactly as it was trained."""
from torch import Tensor, nn

__all__ = ['part_input']


def part_input(img: Tensor, part: nn.Module) -> Tensor:
    """What ``part``'s own data preprocessor would give for this image.

    The end-to-end model only converts BGR to RGB; each part then
    normalises with its own mean/std (the prompter uses ImageNet
    statistics, LiteMedSAM scales to [0, 1]).

    Args:
        img (Tensor): (3, h, w) float RGB in [0, 255].
        part (nn.Module): The prompter or the segmentor (a module with an
            mmdet ``data_preprocessor``, or without one: unchanged).

    Returns:
        Tensor: (3, h, w) in the part's channel order, normalised with its
        mean/std.
    """
    dp = getattr(part, 'data_preprocessor', None)
    if dp is None:
        return img
    # mmengine's ImgDataPreprocessor keeps these two switches private; they
    # are the only record of what the part was trained on.
    if not getattr(dp, '_channel_conversion', True):
        img = img.flip(0)  # the part was trained on BGR
    if getattr(dp, '_enable_normalize', False):
        img = (img - dp.mean.to(img)) / dp.std.to(img)
    return img
