from . import (backbones, dense_heads, detectors, inference, losses, sam,
               task_modules, utils)
from .backbones import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .inference import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .sam import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403

# Explicit: a star import of this package must not export the subpackage
# names (``utils`` would shadow ``pns_mmdet.utils``).
__all__ = [
    *backbones.__all__, *dense_heads.__all__, *detectors.__all__,
    *inference.__all__, *losses.__all__, *sam.__all__,
    *task_modules.__all__, *utils.__all__
]
