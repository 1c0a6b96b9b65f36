from .coco_writer import (CocoLayoutWriter, describe_splits,
                          instance_map_to_coco, split_stems)
from .io import (INST_MAP_KEYS, check_instance_map, load_image,
                 load_instance_map, to_uint8_rgb)
from .nucleus_dataset import NUCLEUS_METAINFO, PANNUKE_METAINFO, NucleusDataset
from .transforms import *  # noqa: F401,F403

__all__ = [
    'load_instance_map', 'load_image', 'to_uint8_rgb', 'check_instance_map',
    'INST_MAP_KEYS', 'NucleusDataset', 'PANNUKE_METAINFO', 'NUCLEUS_METAINFO',
    'CocoLayoutWriter', 'instance_map_to_coco', 'split_stems',
    'describe_splits'
]
