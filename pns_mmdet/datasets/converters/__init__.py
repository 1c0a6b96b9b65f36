"""Library code of the dataset converters (CLIs in tools/dataset_converters).
"""
from .check import check_coco_dataset
from .coco_writer import (CocoLayoutWriter, describe_splits,
                          instance_map_to_coco, split_stems)
from .cpm17 import convert_cpm17
from .generic import convert_generic, find_by_stem
from .monuseg import convert_monuseg, parse_aperio_xml
from .pannuke import (PANNUKE_CLASSES, PANNUKE_FOLD_ORDERS, convert_pannuke,
                      find_pannuke_fold, pannuke_masks_to_instance_map)

__all__ = [
    'check_coco_dataset', 'CocoLayoutWriter', 'instance_map_to_coco',
    'split_stems', 'describe_splits', 'convert_cpm17', 'convert_generic',
    'find_by_stem', 'convert_monuseg', 'parse_aperio_xml', 'PANNUKE_CLASSES',
    'PANNUKE_FOLD_ORDERS', 'convert_pannuke', 'find_pannuke_fold',
    'pannuke_masks_to_instance_map'
]
