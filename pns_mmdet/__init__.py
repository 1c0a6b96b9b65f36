"""pns_mmdet: PromptNucSeg as an MMDetection 3.x plugin.

Importing this package registers every component into mmdet's registries
(configs do it with ``custom_imports=dict(imports=['pns_mmdet'])``) and makes
mmengine able to resume its own checkpoints under torch >= 2.6.
"""
from .version import __version__
from .engine import *  # noqa: F401,F403
from .datasets import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403

__all__ = ['__version__']
