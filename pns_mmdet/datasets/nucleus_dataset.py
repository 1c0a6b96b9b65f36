"""COCO-format nucleus dataset (PanNuke, Kumar/MoNuSeg, CPM-17, own data)."""
import copy
import json
import os.path as osp
from typing import List, Union

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .coco_utils import check_image_size, validate_segmentation

__all__ = ['NucleusDataset', 'PANNUKE_METAINFO', 'NUCLEUS_METAINFO']

#: PanNuke's five nucleus types, in the order of its mask channels.
PANNUKE_METAINFO = dict(classes=('Neoplastic', 'Inflammatory', 'Connective',
                                 'Dead', 'Epithelial'),
                        palette=[(255, 0, 0), (0, 255, 0), (0, 0, 255),
                                 (255, 255, 0), (255, 165, 0)])

#: Class-agnostic datasets (Kumar/MoNuSeg, CPM-17, CPM-15, DSB...).
NUCLEUS_METAINFO = dict(classes=('nucleus', ), palette=[(0, 255, 0)])


@DATASETS.register_module()
class NucleusDataset(CocoDataset):
    """Nucleus instance dataset in the pns_mmdet COCO layout.

    Differences from :class:`mmdet.datasets.CocoDataset`:

    - Categories are matched to ``metainfo['classes']`` **by name**, and a
      class missing from the JSON is an error (mmdet would silently shift
      the labels of the following classes).
    - Every segmentation is validated when the annotations are parsed
      (RLE size and run lengths, polygon shapes): pycocotools decodes
      malformed RLE into garbage masks without complaint.
    - Image files are checked to exist (local paths only, disable with
      ``check_files=False``).
    - The optional per-image ``tissue`` field is carried to the data
      sample metainfo (``PackNucleusInputs`` keeps it); ``None`` when
      absent.
    - Empty images are kept by default (``filter_cfg=None``): tiles without
      nuclei are useful negatives.

    ``metainfo=dict(classes=('nucleus',))`` (or :data:`NUCLEUS_METAINFO`)
    selects the class-agnostic setting; the default is PanNuke's five
    classes.

    Args:
        check_files (bool): check that every image file exists while
            loading. Defaults to True.
        **kwargs: :class:`CocoDataset` / ``BaseDetDataset`` arguments
            (``data_root``, ``ann_file``, ``data_prefix=dict(img=...)``,
            ``pipeline``, ``test_mode``, ``metainfo``, ...).
    """

    METAINFO = PANNUKE_METAINFO

    def __init__(self, *args, check_files: bool = True, **kwargs) -> None:
        self.check_files = check_files
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Load and validate the annotation file.

        Returns:
            list[dict]: one parsed data info per image.

        Raises:
            FileNotFoundError: missing annotation file or image.
            ValueError: malformed JSON, missing categories or malformed
                segmentations (naming the file, image and annotation ids).
        """
        if self.backend_args is None:
            # Parse the JSON ourselves to name the file in errors
            # (pycocotools raises a bare JSONDecodeError / KeyError).
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(
                    f'annotation file not found: {self.ann_file}')
            try:
                with open(self.ann_file) as f:
                    raw = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError,
                    RecursionError) as e:  # (deeply nested: RecursionError)
                raise ValueError(
                    f'malformed JSON in {self.ann_file}: '
                    f'{type(e).__name__}: {e}') from e
            if not isinstance(raw, dict):
                raise ValueError(f'{self.ann_file}: expected a COCO dict, '
                                 f'got {type(raw).__name__}')
            for key in ('images', 'annotations', 'categories'):
                if not isinstance(raw.get(key), list):
                    raise ValueError(f'{self.ann_file}: "{key}" must be a '
                                     'list (COCO format)')
            self.coco = self.COCOAPI()
            self.coco.dataset = raw
            try:
                self.coco.createIndex()
            except (KeyError, TypeError) as e:
                raise ValueError(
                    f'{self.ann_file}: malformed COCO entry (missing or '
                    f'invalid field {e})') from e
        else:
            with get_local_path(self.ann_file,
                                backend_args=self.backend_args) as local_path:
                self.coco = self.COCOAPI(local_path)
        self._setup_categories()
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)
        data_list = []
        total_ann_ids = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = self.coco.load_imgs([img_id])[0]
            raw_img_info['img_id'] = img_id
            ann_ids = self.coco.get_ann_ids(img_ids=[img_id])
            total_ann_ids.extend(ann_ids)
            data_list.append(
                self.parse_data_info(
                    dict(raw_ann_info=self.coco.load_anns(ann_ids),
                         raw_img_info=raw_img_info)))
        if len(set(total_ann_ids)) != len(total_ann_ids):
            raise ValueError(
                f'annotation ids in {self.ann_file} are not unique')
        del self.coco
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        """Parse one image and its annotations (see class docstring)."""
        img_info = raw_data_info['raw_img_info']
        ann_info = raw_data_info['raw_ann_info']
        img_id = img_info['img_id']
        for key in ('file_name', 'height', 'width'):
            if key not in img_info:
                raise ValueError(f'{self.ann_file}: image {img_id} lacks '
                                 f'"{key}"')
        h, w = check_image_size(img_info['height'], img_info['width'],
                                f'{self.ann_file}: image {img_id}')
        img_path = osp.join(self.data_prefix['img'], img_info['file_name'])
        if (self.check_files and self.backend_args is None
                and not osp.isfile(img_path)):
            raise FileNotFoundError(
                f'{self.ann_file}: image {img_id} file not found: '
                f'{img_path}')
        data_info = dict(img_path=img_path,
                         img_id=img_id,
                         seg_map_path=None,
                         height=h,
                         width=w,
                         tissue=img_info.get('tissue'))
        instances = []
        for ann in ann_info:
            if ann.get('ignore', False):
                continue
            if ann.get('category_id') not in self.cat2label:
                continue  # category not selected by metainfo
            where = (f'{self.ann_file}: image {img_id}, annotation '
                     f'{ann.get("id")}')
            seg = ann.get('segmentation')
            if seg is None:
                raise ValueError(f'{where}: no segmentation')
            validate_segmentation(seg, h, w, where)
            try:
                x1, y1, bw, bh = [float(v) for v in ann['bbox']]
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f'{where}: bbox must be [x, y, w, h]') from e
            # Unlike CocoDataset, boxes of w or h < 1 are kept: tiny nuclei
            # are real (the mask decides; empty masks are dropped by
            # NucleusPointsFromMasks after augmentation).
            instances.append(
                dict(bbox=[x1, y1, x1 + bw, y1 + bh],
                     bbox_label=self.cat2label[ann['category_id']],
                     ignore_flag=1 if ann.get('iscrowd', False) else 0,
                     mask=seg))
        data_info['instances'] = instances
        return data_info

    def _setup_categories(self) -> None:
        """Map category ids to labels by name (order of metainfo classes).

        Replaces mmdet's mapping, which follows the JSON category order and
        therefore mislabels files whose categories are ordered differently.
        """
        classes = tuple(self.metainfo['classes'])
        cats = self.coco.dataset.get('categories', [])
        names = [c.get('name') for c in cats]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f'{self.ann_file}: duplicate category names '
                             f'{dup}')
        missing = [c for c in classes if c not in names]
        if missing:
            raise ValueError(
                f'{self.ann_file}: classes {missing} of the dataset '
                f'metainfo are not categories of the file (it has '
                f'{names}); set metainfo=dict(classes=...)')
        extra = [n for n in names if n not in classes]
        if extra:
            print_log(
                f'{self.ann_file}: annotations of categories {extra} are '
                f'ignored (not in metainfo classes {list(classes)})',
                logger='current')
        self.cat_ids = [
            c['id'] for n in classes for c in cats if c.get('name') == n
        ]
        self.cat2label = {
            c['id']: classes.index(c['name'])
            for c in cats if c.get('name') in classes
        }
