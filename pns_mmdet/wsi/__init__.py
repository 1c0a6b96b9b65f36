"""Whole-slide inference: reading slides, tissue, outputs, running, and
cohorts of slides on Ray.

Frames: the level-0 frame is slide pixels at pyramid level 0 (what QuPath
shows; every output uses it); the model frame is pixels at the model's
``data_mpp``. See docs/wsi.md.
"""
from .cohort import CohortRunner, CohortSummary
from .cohort_worker import CohortWorker, RunnerSpec
from .manifest import CohortManifest
from .measurements import MEASUREMENT_KEYS, nucleus_measurements
from .reader import (BACKENDS, SlideError, SlideMetadataError, SlideReader,
                     SlideReadError, open_slide)
from .runner import (ProcessingTile, SlideRunner, SlideSummary,
                     processing_tiles)
from .store import STORE_FORMAT, NucleusRecord, NucleusStore
from .synthetic_slide import SYNTHETIC_RENDER_MPP, make_synthetic_slide
from .tissue import TISSUE_CHANNELS, detect_tissue, load_tissue_mask
from .writers import CSV_COLUMNS, write_csv, write_geojson

__all__ = [
    'MEASUREMENT_KEYS', 'nucleus_measurements',
    'BACKENDS', 'SlideError', 'SlideMetadataError', 'SlideReadError',
    'SlideReader', 'open_slide', 'STORE_FORMAT', 'NucleusRecord',
    'NucleusStore', 'SYNTHETIC_RENDER_MPP',
    'make_synthetic_slide', 'TISSUE_CHANNELS', 'detect_tissue',
    'load_tissue_mask', 'CSV_COLUMNS', 'write_csv', 'write_geojson',
    'ProcessingTile', 'SlideRunner', 'SlideSummary', 'processing_tiles',
    'CohortRunner', 'CohortSummary', 'CohortWorker', 'RunnerSpec',
    'CohortManifest'
]
