"""Photometric augmentations of upstream PromptNucSeg (albumentations).

Image-only, uint8 in and out (so the packed inputs stay uint8), BGR like
every mmdet pipeline (``channel_order`` where colour matters). Each has a
``prob``; randomness comes from ``np.random`` (seeded by mmengine).
"""
from typing import Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

__all__ = [
    'RandomColorJitter', 'RandomBlur', 'RandomGaussianNoise', 'RandomDownscale'
]


def _check_prob(prob: float) -> float:
    if not 0 <= prob <= 1:
        raise ValueError(f'prob must be in [0, 1], got {prob}')
    return prob


def _check_uint8(img: np.ndarray, name: str) -> None:
    if img.dtype != np.uint8:
        raise TypeError(f'{name} expects a uint8 image, got {img.dtype}; '
                        'put it before transforms that convert to float')


@TRANSFORMS.register_module()
class RandomColorJitter(BaseTransform):
    """Brightness / contrast / saturation / hue jitter in random order.

    Matches ``albumentations.ColorJitter`` on uint8 images: brightness
    multiplies by f ~ U[1-b, 1+b]; contrast blends with the mean grey level
    with f ~ U[1-c, 1+c]; saturation blends with the grey image with
    f ~ U[1-s, 1+s]; hue shifts the OpenCV hue (0..179) by h x 180 with
    h ~ U[-hue, hue].

    Required/modified keys: ``img`` (uint8, H x W x 3).

    Args:
        prob (float): probability of applying. Defaults to 0.2.
        brightness (float): Defaults to 0.25.
        contrast (float): Defaults to 0.25.
        saturation (float): Defaults to 0.1.
        hue (float): at most 0.5. Defaults to 0.05.
        channel_order (str): 'bgr' (mmdet default) or 'rgb'.
            Defaults to 'bgr'.
    """

    def __init__(self,
                 prob: float = 0.2,
                 brightness: float = 0.25,
                 contrast: float = 0.25,
                 saturation: float = 0.1,
                 hue: float = 0.05,
                 channel_order: str = 'bgr') -> None:
        self.prob = _check_prob(prob)
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError('jitter strengths must be >= 0 and hue <= 0.5')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got "
                             f'{channel_order!r}')
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.channel_order = channel_order

    def _grey(self, img: np.ndarray) -> np.ndarray:
        code = (cv2.COLOR_BGR2GRAY
                if self.channel_order == 'bgr' else cv2.COLOR_RGB2GRAY)
        return cv2.cvtColor(img, code)

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        _check_uint8(img, 'RandomColorJitter')
        ops = np.random.permutation(4)
        for op in ops:
            if op == 0 and self.brightness:
                f = np.random.uniform(1 - self.brightness, 1 + self.brightness)
                img = np.clip(img.astype(np.float32) * f, 0,
                              255).round().astype(np.uint8)
            elif op == 1 and self.contrast:
                f = np.random.uniform(1 - self.contrast, 1 + self.contrast)
                mean = float(self._grey(img).mean())
                img = np.clip(
                    img.astype(np.float32) * f + mean * (1 - f), 0,
                    255).round().astype(np.uint8)
            elif op == 2 and self.saturation:
                f = np.random.uniform(1 - self.saturation, 1 + self.saturation)
                grey = self._grey(img).astype(np.float32)[..., None]
                img = np.clip(
                    img.astype(np.float32) * f + grey * (1 - f), 0,
                    255).round().astype(np.uint8)
            elif op == 3 and self.hue:
                h = np.random.uniform(-self.hue, self.hue)
                to_hsv, from_hsv = ((cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
                                    if self.channel_order == 'bgr' else
                                    (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB))
                hsv = cv2.cvtColor(img, to_hsv)
                lut = ((np.arange(256) + h * 180) % 180).astype(np.uint8)
                hsv[..., 0] = cv2.LUT(hsv[..., 0], lut)
                img = cv2.cvtColor(hsv, from_hsv)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, brightness='
                f'{self.brightness}, contrast={self.contrast}, saturation='
                f'{self.saturation}, hue={self.hue})')


@TRANSFORMS.register_module()
class RandomBlur(BaseTransform):
    """Box blur with a random odd kernel size (``albumentations.Blur``).

    Args:
        prob (float): probability of applying. Defaults to 0.2.
        blur_limit (tuple): (min, max) kernel size; odd sizes in that range
            are drawn uniformly (``Blur(10)`` = (3, 10) -> 3, 5, 7, 9).
            Defaults to (3, 10).
    """

    def __init__(self,
                 prob: float = 0.2,
                 blur_limit: Tuple[int, int] = (3, 10)) -> None:
        self.prob = _check_prob(prob)
        self.sizes = [
            k for k in range(int(blur_limit[0]),
                             int(blur_limit[1]) + 1) if k % 2 == 1
        ]
        if not self.sizes:
            raise ValueError(f'blur_limit {blur_limit} holds no odd size')
        self.blur_limit = tuple(blur_limit)

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        _check_uint8(results['img'], 'RandomBlur')
        k = self.sizes[np.random.randint(len(self.sizes))]
        results['img'] = cv2.blur(results['img'], (k, k))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, blur_limit='
                f'{self.blur_limit})')


@TRANSFORMS.register_module()
class RandomGaussianNoise(BaseTransform):
    """Additive per-pixel, per-channel Gaussian noise (``GaussNoise``).

    The variance is drawn from ``var_range`` (``GaussNoise(50)`` =
    (0, 50)); the result is clipped to 0..255 and rounded.

    Args:
        prob (float): probability of applying. Defaults to 0.25.
        var_range (tuple): noise variance range (intensity units squared).
            Defaults to (0., 50.).
    """

    def __init__(self,
                 prob: float = 0.25,
                 var_range: Tuple[float, float] = (0., 50.)) -> None:
        self.prob = _check_prob(prob)
        if not 0 <= var_range[0] <= var_range[1]:
            raise ValueError(f'invalid var_range {var_range}')
        self.var_range = tuple(var_range)

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        _check_uint8(img, 'RandomGaussianNoise')
        std = np.sqrt(np.random.uniform(*self.var_range))
        noise = np.random.normal(0.0, std, img.shape).astype(np.float32)
        results['img'] = np.clip(img.astype(np.float32) + noise, 0,
                                 255).round().astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, var_range='
                f'{self.var_range})')


_INTERP = dict(nearest=cv2.INTER_NEAREST,
               bilinear=cv2.INTER_LINEAR,
               area=cv2.INTER_AREA,
               bicubic=cv2.INTER_CUBIC)


@TRANSFORMS.register_module()
class RandomDownscale(BaseTransform):
    """Lose detail by down- then up-scaling the image (``Downscale``).

    Args:
        prob (float): probability of applying. Defaults to 0.15.
        scale_range (tuple): downscale factor range. Defaults to
            (0.5, 0.5).
        interpolation (str): 'nearest' (albumentations' default),
            'bilinear', 'area' or 'bicubic'. Defaults to 'nearest'.
    """

    def __init__(self,
                 prob: float = 0.15,
                 scale_range: Sequence[float] = (0.5, 0.5),
                 interpolation: str = 'nearest') -> None:
        self.prob = _check_prob(prob)
        if not 0 < scale_range[0] <= scale_range[1] < 1:
            raise ValueError(f'scale_range must lie in (0, 1), got '
                             f'{scale_range}')
        if interpolation not in _INTERP:
            raise ValueError(f'interpolation must be one of '
                             f'{list(_INTERP)}, got {interpolation!r}')
        self.scale_range = tuple(scale_range)
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        _check_uint8(img, 'RandomDownscale')
        h, w = img.shape[:2]
        s = np.random.uniform(*self.scale_range)
        flag = _INTERP[self.interpolation]
        small = cv2.resize(
            img, (max(1, int(round(w * s))), max(1, int(round(h * s)))),
            interpolation=flag)
        out = cv2.resize(small, (w, h), interpolation=flag)
        if out.ndim == 2 and img.ndim == 3:
            out = out[..., None]
        results['img'] = out
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, scale_range='
                f'{self.scale_range}, interpolation={self.interpolation!r})')
