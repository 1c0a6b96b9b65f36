"""Offline dataset converters (CLIs in tools/dataset_converters).

They read public dataset layouts and write the pns_mmdet COCO layout through
:class:`pns_mmdet.datasets.CocoLayoutWriter`. Nothing in ``pns_mmdet.datasets``
or ``pns_mmdet.models`` imports this package.
"""
from .check import check_coco_dataset
from .cli import run_cli
from .cpm17 import convert_cpm17
from .generic import convert_generic, find_by_stem, rescale_pair
from .monuseg import convert_monuseg, parse_aperio_xml
from .pannuke import (PANNUKE_CLASSES, PANNUKE_FOLD_ORDERS, convert_pannuke,
                      find_pannuke_fold, pannuke_masks_to_instance_map)

__all__ = [
    'check_coco_dataset', 'convert_cpm17', 'convert_generic', 'find_by_stem',
    'convert_monuseg', 'parse_aperio_xml', 'PANNUKE_CLASSES',
    'PANNUKE_FOLD_ORDERS', 'convert_pannuke', 'find_pannuke_fold',
    'pannuke_masks_to_instance_map', 'rescale_pair', 'run_cli'
]
