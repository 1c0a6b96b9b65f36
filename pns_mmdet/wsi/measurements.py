"""Per-nucleus morphology in physical units and stain optical densities.

Shape comes from :func:`skimage.measure.regionprops` and stain from colour
deconvolution (:func:`skimage.color.rgb2hed`, Ruifrok & Johnston's H&E-DAB
vectors). No peer writes these to a table; QuPath users compute them by
hand.
"""
from typing import Dict

import numpy as np
from skimage import color, measure

__all__ = ['nucleus_measurements', 'MEASUREMENT_KEYS']

#: Keys of :func:`nucleus_measurements`, in CSV column order.
MEASUREMENT_KEYS = ('area_um2', 'perimeter_um', 'eccentricity', 'solidity',
                    'major_axis_um', 'minor_axis_um', 'hematoxylin_od',
                    'eosin_od')

# rgb2hed returns -log10(I) / 6 projected on the stain vectors (it divides
# ln(I) by ln(1e-6)); times 6 gives base-10 optical density.
_HED_TO_OD = 6.0


def nucleus_measurements(mask: np.ndarray, rgb: np.ndarray,
                         mpp: float) -> Dict[str, float]:
    """Morphology and stain of one nucleus.

    Args:
        mask (np.ndarray): (h, w) bool, the nucleus' pixels (usually its
            bounding box crop), at resolution ``mpp``.
        rgb (np.ndarray): (h, w, 3) uint8 RGB pixels under ``mask``, same
            frame.
        mpp (float): µm per pixel of ``mask``/``rgb`` (the model frame).

    Returns:
        dict[str, float]: ``area_um2`` (pixel count x mpp², equal to the
        area of the pixel-edge polygon), ``perimeter_um`` (regionprops'
        4-connected estimate, shorter than the staircase outline),
        ``eccentricity`` (0 circle .. 1 line), ``solidity`` (pixels / pixels
        of the convex hull image; a digital disk of radius 10 px has
        0.93), ``major_axis_um`` /
        ``minor_axis_um`` (of the ellipse with the same second moments),
        ``hematoxylin_od`` / ``eosin_od`` (mean base-10 optical density of
        each stain over the nucleus).
    """
    mask = np.asarray(mask, dtype=bool)
    rgb = np.asarray(rgb)
    if mask.ndim != 2:
        raise ValueError(f'nucleus_measurements: mask must be 2-D, got '
                         f'shape {mask.shape}')
    if rgb.shape != mask.shape + (3, ) or rgb.dtype != np.uint8:
        raise ValueError(f'nucleus_measurements: rgb must be {mask.shape} '
                         f'x 3 uint8 like the mask, got {rgb.shape} '
                         f'{rgb.dtype}')
    if not mpp > 0:
        raise ValueError(f'nucleus_measurements: mpp must be > 0, got {mpp}')
    if not mask.any():
        raise ValueError('nucleus_measurements: the mask is empty')
    props = measure.regionprops(mask.astype(np.uint8))[0]
    hed = color.rgb2hed(rgb[mask][None])[0] * _HED_TO_OD  # (n, 3)
    return {
        'area_um2': float(props.area) * mpp**2,
        'perimeter_um': float(props.perimeter) * mpp,
        'eccentricity': float(props.eccentricity),
        'solidity': float(props.solidity),
        'major_axis_um': float(props.axis_major_length) * mpp,
        'minor_axis_um': float(props.axis_minor_length) * mpp,
        'hematoxylin_od': float(hed[:, 0].mean()),
        'eosin_od': float(hed[:, 1].mean()),
    }
