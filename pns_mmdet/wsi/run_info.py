"""What a slide run records about itself (run.json): memory, versions."""
import platform
import resource
from typing import Dict

__all__ = ['peak_rss_mb', 'versions']


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB; Linux reports KB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def versions() -> Dict[str, str]:
    import mmdet
    import mmengine
    import torch

    from .. import version
    out = dict(pns_mmdet=version.__version__, torch=torch.__version__,
               mmdet=mmdet.__version__, mmengine=mmengine.__version__,
               python=platform.python_version())
    try:
        import openslide
        out['openslide_python'] = openslide.__version__
        out['openslide'] = openslide.__library_version__
    except Exception:  # noqa: BLE001  (optional backend)
        pass
    return out
