"""MoNuSeg / Kumar converter: Aperio ImageScope XML polygons -> COCO.

Each ``Annotations/Annotation/Regions/Region`` is one nucleus with
``Vertices/Vertex`` ``X`` (column) and ``Y`` (row) in pixels. Polygons are
filled in XML order with scikit-image ``draw.polygon`` semantics (pixel
centres on the boundary are inside) and later regions overwrite earlier
ones, which reproduces the reference instance maps shipped with the
MoNuSeg copy in ``shared/data`` exactly.
"""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..datasets.coco_utils import polygons_to_instance_map
from ..datasets.coco_writer import CocoLayoutWriter, split_stems
from ..datasets.io import load_image
from .generic import IMAGE_EXTS, find_by_stem

__all__ = ['parse_aperio_xml', 'convert_monuseg']

_IMAGE_DIRS = ('images', 'Images', 'Tissue Images', 'Tissue images', 'tif',
               '.')
_XML_DIRS = ('annotations', 'Annotations', 'xml', '.')


def parse_aperio_xml(path: str) -> List[np.ndarray]:
    """Read the nucleus polygons of an Aperio ImageScope XML file.

    Args:
        path (str): XML path.

    Returns:
        list[np.ndarray]: one (V, 2) float64 array of (x, y) vertices per
        ``Region``, in file order.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unparsable XML, vertices without numeric X/Y, or
            NaN/inf coordinates.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation XML not found: {path}')
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, ValueError, LookupError, RecursionError) as e:
        # (LookupError: unknown encoding declared; RecursionError: absurdly
        # deep nesting)
        raise ValueError(f'cannot parse annotation XML {path}: '
                         f'{type(e).__name__}: {e}') from e
    polys = []
    for k, region in enumerate(root.iter('Region')):
        verts = []
        for v in region.iter('Vertex'):
            try:
                verts.append((float(v.get('X')), float(v.get('Y'))))
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f'{path}: Region #{k} (Id={region.get("Id")}) has a '
                    f'Vertex without numeric X/Y: {v.attrib}') from e
        poly = np.asarray(verts, np.float64).reshape(-1, 2)
        # float() accepts 'nan'/'inf'; such a vertex cannot be filled.
        if not np.isfinite(poly).all():
            raise ValueError(
                f'{path}: Region #{k} (Id={region.get("Id")}) has a '
                'non-finite (NaN/inf) vertex coordinate')
        polys.append(poly)
    return polys


def _find_dir(root: str, names: Sequence[str], exts: Sequence[str]) -> str:
    for n in names:
        d = osp.normpath(osp.join(root, n))
        if osp.isdir(d) and find_by_stem(d, exts):
            return d
    raise FileNotFoundError(
        f'no folder with {"/".join(exts)} files under {root} (looked in '
        f'{", ".join(names)})')


def convert_monuseg(src: str,
                    out_root: str,
                    split: str = 'train',
                    split_ratios: Optional[Sequence[float]] = None,
                    seed: int = 0,
                    image_dir: Optional[str] = None,
                    xml_dir: Optional[str] = None,
                    rule: str = 'skimage',
                    write_maps: bool = True,
                    append: bool = False) -> Dict[str, str]:
    """Convert a MoNuSeg/Kumar folder (images + Aperio XML) to COCO.

    Args:
        src (str): dataset folder. Images are looked for in ``images/``,
            ``Tissue Images/`` or ``src`` itself, XML in ``annotations/``,
            ``Annotations/`` or ``src`` (override with ``image_dir`` /
            ``xml_dir``).
        out_root (str): output dataset root.
        split (str): split name. Defaults to 'train'.
        split_ratios (Sequence[float], optional): seeded (train, val, test)
            split instead of one split. Defaults to None.
        seed (int): split seed. Defaults to 0.
        image_dir (str, optional): explicit image folder.
        xml_dir (str, optional): explicit XML folder.
        rule (str): polygon fill rule, ``'skimage'`` (default, matches
            scikit-image >= 0.16) or ``'pnpoly'``.
        write_maps (bool): write inst_maps/ and class_maps/. Defaults to
            True.
        append (bool): add to existing split files in ``out_root`` (e.g.
            Kumar's test1 and test2 into one test split). Defaults to False.

    Returns:
        dict: split -> annotation JSON path.
    """
    xml_dir = xml_dir or _find_dir(src, _XML_DIRS, ('.xml', ))
    image_dir = image_dir or _find_dir(src, _IMAGE_DIRS, IMAGE_EXTS)
    xmls = find_by_stem(xml_dir, ('.xml', ))
    images = find_by_stem(image_dir, IMAGE_EXTS)
    for stem, x in xmls.items():
        if stem not in images:
            raise FileNotFoundError(f'no image for annotation {x}: expected '
                                    f'{stem}.<tif|png|...> in {image_dir}')
    assignment = split_stems(list(xmls), split_ratios, seed, default=split)
    writer = CocoLayoutWriter(out_root, ('nucleus', ), write_maps, append)
    for stem in sorted(xmls):
        img = load_image(images[stem])
        polys = parse_aperio_xml(xmls[stem])
        inst = polygons_to_instance_map(polys, img.shape[:2], rule)
        writer.add(stem, img, inst, split=assignment[stem], name=xmls[stem])
    return writer.save()
