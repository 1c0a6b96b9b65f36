from .formatting import PackNucleusInputs
from .geometric import RandomRotate90, RandomShiftScale
from .nucleus_points import NucleusPointsFromMasks
from .photometric import (RandomBlur, RandomColorJitter, RandomDownscale,
                          RandomGaussianNoise)

__all__ = [
    'PackNucleusInputs', 'NucleusPointsFromMasks', 'RandomRotate90',
    'RandomShiftScale', 'RandomColorJitter', 'RandomBlur',
    'RandomGaussianNoise', 'RandomDownscale'
]
