from .formatting import PackNucleusInputs
from .geometric import RandomNucleusFlip, RandomRotate90, RandomShiftScale
from .loading import LoadNucleusAnnotations
from .nucleus_points import NucleusPointsFromMasks
from .photometric import (RandomBlur, RandomColorJitter, RandomDownscale,
                          RandomGaussianNoise)

__all__ = [
    'PackNucleusInputs', 'NucleusPointsFromMasks', 'LoadNucleusAnnotations',
    'RandomNucleusFlip', 'RandomRotate90', 'RandomShiftScale',
    'RandomColorJitter', 'RandomBlur', 'RandomGaussianNoise', 'RandomDownscale'
]
