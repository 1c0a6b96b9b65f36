"""Corrupted-input campaign: every reader against seeded malformed files.

For each reader of the project (images, instance maps, COCO JSON, Aperio
XML, PanNuke folds, checkpoints, configs through the tools) a seeded set of
variants of a valid file is generated: truncations at several offsets,
random byte flips, wrong dtype/shape/rank, negative or float ids, NaN,
empty files, directories where files are expected, headers claiming
200000 x 200000 pixels (decompression bombs) and format-specific damage.
Each variant must give either

- a result that honours the reader's contract (and, for variants that are
  still valid, exactly the expected content), or
- the project's own error: a builtin/pns_mmdet exception type
  (``ValueError``, ``KeyError``, ``OSError``, ``CheckpointError`` ...) whose
  message names the file,

and never a hang (20 s alarm), a MemoryError, or a bare library exception
(``JSONDecodeError``, ``PIL.UnidentifiedImageError``, ``BadZipFile`` ...).
The tools return exit code 2 with a one-line ``[tool] error:`` message.
Everything runs in-process, except one CLI check in a subprocess.

The table (reader, variants, handled, of which results / errors) is
printed (``pytest -s``), written to ``corrupted_inputs_table.md`` in the
pytest temporary folder and added to the terminal summary (conftest.py).
"""
import contextlib
import io
import json
import os
import os.path as osp
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import scipy.io
import tifffile
import torch
from PIL import Image

import pns_mmdet  # noqa: F401  (registers datasets, loader, hook)
from pns_mmdet.converters import convert_pannuke, parse_aperio_xml
from pns_mmdet.datasets.coco_utils import (encode_instance_rle,
                                           polygons_to_instance_map,
                                           segmentation_to_pixels)
from pns_mmdet.datasets.io import load_image, load_instance_map
from pns_mmdet.engine import load_checkpoint_file

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(REPO, 'tests', 'test_engine'))
sys.path.insert(0, osp.join(REPO, 'tests', 'test_tools'))
from tiny_promptnucseg import write_tiny_config  # noqa: E402
from tool_loading import load_tool  # noqa: E402
from toy_training import toy_config  # noqa: E402

#: Filled by the campaign; tests/test_reliability/conftest.py adds it to the
#: terminal summary (through ``config.pns_campaign_table``).
CAMPAIGN_ROWS = []

SEED = 20261203
TIMEOUT_S = 20
MIN_VARIANTS = 20


# ----------------------------------------------------------------------
# Generic machinery
# ----------------------------------------------------------------------
class Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no reader's
    ``except Exception`` swallows it."""


@contextlib.contextmanager
def alarm(seconds):
    def handler(signum, frame):
        raise Timeout(f'no answer within {seconds} s')

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def own_error(err, names):
    """The project's clear error: builtin or pns_mmdet type, naming one of
    ``names`` (the corrupted file)."""
    module = type(err).__module__
    if not (module == 'builtins' or module.startswith('pns_mmdet')
            or isinstance(err, CliError)):
        return False
    if isinstance(err, (MemoryError, RecursionError, SystemError,
                        AssertionError)):
        return False
    text = str(err)
    return any(str(n) in text for n in names)


def run_campaign(reader, variants, read):
    """Try every variant; return the failures (variant, reason).

    ``variants``: list of (name, path, names, expect, check) where
    ``expect`` is 'result', 'error' or 'either' and ``check(result)``
    raises AssertionError when a result breaks the contract.
    """
    failures, results, errors = [], 0, 0
    start = time.perf_counter()
    for name, path, names, expect, check in variants:
        try:
            with alarm(TIMEOUT_S):
                out = read(path)
        except Timeout:
            failures.append((name, f'hang (> {TIMEOUT_S} s)'))
            continue
        except Exception as err:  # judged below, never re-raised
            if expect == 'result':
                failures.append((name, f'raised {type(err).__name__}: '
                                 f'{str(err)[:200]}'))
            elif own_error(err, names):
                errors += 1
            else:
                failures.append((name, f'{type(err).__module__}.'
                                 f'{type(err).__name__}: {str(err)[:200]}'))
            continue
        if expect == 'error':
            failures.append((name, 'accepted (expected an error)'))
            continue
        try:
            check(out)
            results += 1
        except AssertionError as err:
            failures.append((name, f'wrong result: {err}'))
    CAMPAIGN_ROWS.append(
        dict(reader=reader, variants=len(variants),
             handled=len(variants) - len(failures), results=results,
             errors=errors, seconds=time.perf_counter() - start))
    return failures


def truncations(data, rng, n_random=3):
    """Offsets: empty, 1 byte, 8 bytes, quarter, half, three quarters, one
    byte short, and a few seeded random ones."""
    n = len(data)
    cuts = sorted({0, 1, min(8, n - 1), n // 4, n // 2, 3 * n // 4, n - 1}
                  | {int(c) for c in rng.integers(1, n - 1, n_random)})
    return [(f'truncated@{c}', data[:c]) for c in cuts if c < n]


def byte_flips(data, rng, count=4, start=0):
    out = []
    for k in range(count):
        b = bytearray(data)
        pos = rng.integers(start, len(b), 1 + k * 2)
        for p in pos:
            b[p] ^= int(rng.integers(1, 256))
        out.append((f'flip{len(pos)}@{",".join(map(str, pos))}', bytes(b)))
    return out


class Files:
    """Writes variant files into one folder, each under a unique name."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.k = 0

    def path(self, suffix):
        self.k += 1
        return osp.join(self.root, f'v{self.k:03d}{suffix}')

    def bytes(self, data, suffix):
        p = self.path(suffix)
        with open(p, 'wb') as f:
            f.write(data)
        return p

    def directory(self, suffix):
        p = self.path(suffix)
        os.makedirs(p)
        return p


def png_chunk(kind, body):
    return (struct.pack('>I', len(body)) + kind + body +
            struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff))


def png_bomb(width=200000, height=200000, bit_depth=8, colour=2):
    """A valid PNG header (correct CRCs) claiming ``width`` x ``height``,
    with one tiny IDAT: tens of GB if a decoder believed it."""
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b'\0' * 64)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) +
            png_chunk(b'IDAT', idat) + png_chunk(b'IEND', b''))


def tiff_bomb(width=200000, height=200000):
    """A little-endian baseline TIFF claiming ``width`` x ``height`` RGB
    (uncompressed, one strip) with 16 bytes of data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8),
               (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8),
               (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd_offset = 8 + 16
    head = b'II*\0' + struct.pack('<I', ifd_offset) + b'\0' * 16
    ifd = struct.pack('<H', len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack('<H', value) + b'\0\0' if typ == 3 else \
            struct.pack('<I', value)
        ifd += struct.pack('<HHI', tag, typ, count) + packed
    return head + ifd + struct.pack('<I', 0)


def npy_bomb(shape=(200000, 200000), dtype='<i8'):
    """A .npy header declaring ``shape`` followed by 64 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, dict(descr=dtype, fortran_order=False, shape=shape))
    return buf.getvalue() + b'\0' * 64


def npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


class Evil:
    """Unpickling it creates ``<folder>/PWNED`` (arbitrary code)."""

    def __init__(self, folder):
        self.marker = osp.join(folder, 'PWNED')

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def encoded(img, ext, params=()):
    ok, data = cv2.imencode(ext, img, list(params))
    assert ok
    return data.tobytes()


# ----------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------
def image_variants(files, rng):
    rgb = rng.integers(0, 256, (24, 32, 3), np.uint8)
    rgb16 = rng.integers(0, 65536, (24, 32, 3), np.uint16)
    grey16 = rng.integers(0, 65536, (24, 32), np.uint16)
    pal = rng.integers(0, 16, (24, 32), np.uint8)

    def exact(expected):
        def check(out):
            assert out.shape == expected.shape and out.dtype == np.uint8
            assert np.array_equal(out, expected), 'pixels differ'
        return check

    def contract(out):
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8
        assert out.ndim == 3 and out.shape[2] == 3 and out.size > 0

    def scaled(a):
        return np.round(a.astype(np.float64) * 255 / a.max()).astype(
            np.uint8)

    png = encoded(rgb[..., ::-1], '.png')
    png16 = encoded(rgb16[..., ::-1], '.png')
    jpeg = encoded(rgb[..., ::-1], '.jpg', (cv2.IMWRITE_JPEG_QUALITY, 95))
    palette_img = Image.fromarray(pal, 'P')
    palette_img.putpalette(
        rng.integers(0, 256, 768, np.uint8).tolist())
    buf = io.BytesIO()
    palette_img.save(buf, 'PNG')
    pal_png = buf.getvalue()
    pal_rgb = np.array(palette_img.convert('RGB'))
    tif = io.BytesIO()
    tifffile.imwrite(tif, rgb)
    tif = tif.getvalue()
    tif16 = io.BytesIO()
    tifffile.imwrite(tif16, grey16)
    tif16 = tif16.getvalue()
    nan = rng.random((8, 8, 3)).astype(np.float32)
    nan[2, 3, 1] = np.nan
    nan_tiff = files.path('.tif')
    tifffile.imwrite(nan_tiff, nan)

    v = [
        ('png rgb8', files.bytes(png, '.png'), 'result', exact(rgb)),
        ('png rgb16', files.bytes(png16, '.png'), 'result',
         exact(scaled(rgb16))),
        ('png palette', files.bytes(pal_png, '.png'), 'result',
         exact(pal_rgb)),
        ('jpeg', files.bytes(jpeg, '.jpg'), 'result', contract),
        ('tiff rgb8', files.bytes(tif, '.tif'), 'result', exact(rgb)),
        ('tiff grey16', files.bytes(tif16, '.tif'), 'result',
         exact(np.repeat(scaled(grey16)[..., None], 3, -1))),
        ('png named .jpg', files.bytes(png, '.jpg'), 'result', exact(rgb)),
        ('empty file', files.bytes(b'', '.png'), 'error', None),
        ('directory', files.directory('.png'), 'error', None),
        ('missing file', files.path('.png'), 'error', None),
        ('text as png', files.bytes(b'hello, not a picture\n', '.png'),
         'error', None),
        ('png bomb 200000^2', files.bytes(png_bomb(), '.png'), 'error',
         None),
        ('png bomb 16-bit', files.bytes(png_bomb(bit_depth=16), '.png'),
         'error', None),
        ('tiff bomb 200000^2', files.bytes(tiff_bomb(), '.tif'), 'error',
         None),
        ('png width 0', files.bytes(png_bomb(0, 24), '.png'), 'error',
         None),
        ('float tiff with NaN', nan_tiff, 'error', None),
    ]
    # Damage of each format: anything but a clean error or a valid image
    # fails. (A JPEG with flipped entropy-coded bytes still decodes, to
    # other pixels: a valid image.)
    for fmt, data, ext in (('png', png, '.png'), ('png16', png16, '.png'),
                           ('palette', pal_png, '.png'),
                           ('jpeg', jpeg, '.jpg'), ('tiff', tif, '.tif'),
                           ('tiff16', tif16, '.tif')):
        for name, bad in truncations(data, rng, 1) + byte_flips(
                data, rng, 2):
            v.append((f'{fmt} {name}', files.bytes(bad, ext), 'either',
                      contract))
    # IHDR damage with a recomputed CRC: the decoder must catch the size.
    ihdr = bytearray(png)
    ihdr[16:20] = struct.pack('>I', 7)  # width 7 instead of 32
    fixed = bytes(ihdr[:29]) + struct.pack(
        '>I', zlib.crc32(bytes(ihdr[12:29])) & 0xffffffff) + bytes(ihdr[33:])
    v.append(('png wrong width, valid crc', files.bytes(fixed, '.png'),
              'either', contract))
    return [(n, p, [p], e, c) for n, p, e, c in v]


def inst_map_variants(files, rng):
    inst = np.zeros((24, 32), np.int32)
    for k in range(1, 6):
        y, x = rng.integers(0, 18, 2)
        inst[y:y + 5, x:x + 6] = k * 300  # ids > 255: 16-bit needed

    def exact(expected):
        def check(out):
            assert out.dtype in (np.int32, np.int64) and out.ndim == 2
            assert np.array_equal(out, expected), 'ids differ'
        return check

    def contract(out):
        assert out.ndim == 2 and out.dtype in (np.int32, np.int64)
        assert out.size and out.min() >= 0

    png16 = encoded(inst.astype(np.uint16), '.png')
    png8 = encoded((inst // 300).astype(np.uint8), '.png')
    pal = Image.fromarray((inst // 300).astype(np.uint8), 'P')
    pal.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    buf = io.BytesIO()
    pal.save(buf, 'PNG')
    npy = npy_bytes(inst)
    mat_path = files.path('.mat')
    scipy.io.savemat(mat_path, dict(inst_map=inst))
    with open(mat_path, 'rb') as f:
        mat = f.read()
    other_mat = files.path('.mat')
    scipy.io.savemat(other_mat, dict(something_else=inst))
    dict_npy = npy_bytes(np.array({'inst_map': inst, 'type_map': inst > 0}),
                         allow_pickle=True)

    evil_npy = npy_bytes(np.array({'inst_map': Evil(files.root)}),
                         allow_pickle=True)
    neg = inst.copy()
    neg[0, 0] = -3
    flt = inst.astype(np.float32)
    flt[3, 3] = 2.5
    nan = inst.astype(np.float64)
    nan[1, 1] = np.nan

    v = [
        ('png 16-bit', files.bytes(png16, '.png'), 'result', exact(inst)),
        ('png 8-bit', files.bytes(png8, '.png'), 'result',
         exact(inst // 300)),
        ('png palette (indices = ids)', files.bytes(buf.getvalue(), '.png'),
         'result', exact(inst // 300)),
        ('npy int32', files.bytes(npy, '.npy'), 'result', exact(inst)),
        ('npy integral float', files.bytes(npy_bytes(inst.astype(
            np.float64)), '.npy'), 'result', exact(inst)),
        ('npy (H, W, 1)', files.bytes(npy_bytes(inst[..., None]), '.npy'),
         'result', exact(inst)),
        ('npy upstream dict', files.bytes(dict_npy, '.npy'), 'result',
         exact(inst)),
        ('mat v5', mat_path, 'result', exact(inst)),
        ('npy malicious pickle', files.bytes(evil_npy, '.npy'), 'error',
         None),
        ('npy negative id', files.bytes(npy_bytes(neg), '.npy'), 'error',
         None),
        ('npy float id 2.5', files.bytes(npy_bytes(flt), '.npy'), 'error',
         None),
        ('npy NaN', files.bytes(npy_bytes(nan), '.npy'), 'error', None),
        ('npy rank 3 (H, W, 3)', files.bytes(npy_bytes(np.dstack(
            [inst] * 3)), '.npy'), 'error', None),
        ('npy rank 1', files.bytes(npy_bytes(inst.ravel()), '.npy'),
         'error', None),
        ('npy 0-d', files.bytes(npy_bytes(np.array(5)), '.npy'), 'error',
         None),
        ('npy complex', files.bytes(npy_bytes(inst.astype(np.complex64)),
                                    '.npy'), 'error', None),
        ('npy strings', files.bytes(npy_bytes(inst.astype(str)), '.npy'),
         'error', None),
        ('npy bomb header 200000^2', files.bytes(npy_bomb(), '.npy'),
         'error', None),
        ('npy negative shape', files.bytes(npy_bomb((-5, 4)), '.npy'),
         'error', None),
        ('png bomb 200000^2', files.bytes(png_bomb(colour=0), '.png'),
         'error', None),
        ('png RGB label image', files.bytes(encoded(np.dstack(
            [inst.astype(np.uint8)] * 3), '.png'), '.png'), 'error', None),
        ('jpeg map', files.bytes(encoded((inst // 300).astype(np.uint8),
                                         '.jpg'), '.jpg'), 'error', None),
        ('empty .npy', files.bytes(b'', '.npy'), 'error', None),
        ('empty .mat', files.bytes(b'', '.mat'), 'error', None),
        ('empty .png', files.bytes(b'', '.png'), 'error', None),
        ('directory .npy', files.directory('.npy'), 'error', None),
        ('directory .mat', files.directory('.mat'), 'error', None),
        ('unknown extension', files.bytes(npy, '.bin'), 'error', None),
        ('mat without inst key', other_mat, 'error', None),
        ('npz corrupt zip', files.bytes(b'PK\x03\x04' + bytes(40), '.npz'),
         'error', None),
    ]
    for fmt, data, ext in (('png16', png16, '.png'), ('npy', npy, '.npy'),
                           ('mat', mat, '.mat')):
        for name, bad in truncations(data, rng, 1) + byte_flips(
                data, rng, 2):
            v.append((f'{fmt} {name}', files.bytes(bad, ext), 'either',
                      contract))
    return [(n, p, [p], e, c) for n, p, e, c in v]


def coco_base(rng):
    """Two images; compressed RLE, uncompressed RLE and polygon masks."""
    h, w = 24, 32
    m1 = np.zeros((h, w), bool)
    m1[3:9, 4:12] = True
    ys, xs = np.nonzero(m1)
    rle = encode_instance_rle(ys, xs, h, w)
    m2 = np.zeros((h, w), bool)
    m2[12:20, 15:22] = True
    flat = m2.T.ravel().astype(np.int64)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    runs = np.diff(np.concatenate([[0], change, [h * w]])).tolist()
    runs = [r for r in runs if r] if flat[0] == 0 else [0] + runs
    poly = [2.0, 14.0, 10.0, 14.0, 10.0, 22.0, 2.0, 22.0]
    anns = [
        dict(id=1, image_id=1, category_id=1, segmentation=rle,
             bbox=[4, 3, 8, 6], area=48, iscrowd=0),
        dict(id=2, image_id=1, category_id=1,
             segmentation=dict(size=[h, w], counts=runs),
             bbox=[15, 12, 7, 8], area=56, iscrowd=0),
        dict(id=3, image_id=2, category_id=2, segmentation=[poly],
             bbox=[2, 14, 8, 8], area=64, iscrowd=0),
    ]
    coco = dict(images=[dict(id=1, file_name='a.png', height=h, width=w),
                        dict(id=2, file_name='b.png', height=h, width=w)],
                annotations=anns,
                categories=[dict(id=1, name='tumour'),
                            dict(id=2, name='immune')])
    return coco


def read_coco(path):
    """NucleusDataset + the pixels of every mask (what the loading
    transform decodes), as {image id: [pixel counts]}."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    ds = DATASETS.build(
        dict(type='NucleusDataset', ann_file=path, data_prefix=dict(img=''),
             metainfo=dict(classes=('tumour', 'immune')), test_mode=True,
             pipeline=[], check_files=False))
    out = {}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        sizes = []
        for inst in info['instances']:
            ys, xs = segmentation_to_pixels(inst['mask'], info['height'],
                                            info['width'])
            sizes.append(len(ys))
        out[info['img_id']] = sizes
    return out


def coco_variants(files, rng):
    base = coco_base(rng)
    text = json.dumps(base).encode()
    expected = read_coco(files.bytes(text, '.json'))
    assert expected == {1: [48, 56], 2: [64]}, expected

    def equal(value):
        def check(out):
            assert out == value, out
        return check

    exact = equal(expected)

    def contract(out):
        assert isinstance(out, dict)
        assert all(isinstance(s, list) for s in out.values())

    def mutate(fn):
        coco = json.loads(text)
        fn(coco)
        return json.dumps(coco).encode()

    def seg(k, value):
        return mutate(lambda c: c['annotations'][k].__setitem__(
            'segmentation', value))

    def img(key, value):
        return mutate(lambda c: c['images'][0].__setitem__(key, value))

    big = dict(size=[200000, 200000], counts=[200000 * 200000])
    v = [
        ('intact', text, 'result', exact),
        ('category not in metainfo (ignored)', mutate(
            lambda c: c['annotations'][0].__setitem__('category_id', 9)),
         'result', equal({1: [56], 2: [64]})),
        ('empty file', b'', 'error', None),
        ('top level list', b'[1, 2, 3]', 'error', None),
        ('images not a list', mutate(lambda c: c.__setitem__('images', 3)),
         'error', None),
        ('no categories', mutate(lambda c: c.pop('categories')), 'error',
         None),
        ('not UTF-8', b'\xff\xfe\x00{' + text[1:], 'error', None),
        ('deeply nested', b'[' * 100000 + b']' * 100000, 'error', None),
        ('annotation without segmentation', mutate(
            lambda c: c['annotations'][0].pop('segmentation')), 'error',
         None),
        ('RLE bad characters', seg(0, dict(size=[24, 32], counts='\x01~~')),
         'error', None),
        ('RLE truncated string', seg(0, dict(
            size=[24, 32], counts=base['annotations'][0]['segmentation']
            ['counts'][:-3] + 'o')), 'error', None),
        ('RLE size mismatch', seg(0, dict(base['annotations'][0][
            'segmentation'], size=[32, 24])), 'error', None),
        ('RLE size floats', seg(1, dict(size=[24.0, 32.0], counts=[768])),
         'error', None),
        ('RLE negative run', seg(1, dict(size=[24, 32],
                                         counts=[800, -32])), 'error',
         None),
        ('RLE float runs', seg(1, dict(size=[24, 32], counts=[700.5, 67.5])),
         'error', None),
        ('RLE runs short of H*W', seg(1, dict(size=[24, 32], counts=[10, 5])),
         'error', None),
        ('RLE counts None', seg(1, dict(size=[24, 32], counts=None)),
         'error', None),
        ('polygon 5 numbers', seg(2, [[1, 2, 3, 4, 5]]), 'error', None),
        ('polygon NaN', seg(2, [[2, 14, float('nan'), 14, 10, 22]]),
         'error', None),
        ('polygon inf', seg(2, [[2, 14, float('inf'), 14, 10, 22]]),
         'error', None),
        ('polygon 1e30', seg(2, [[2, 14, 1e30, 14, 10, 22]]), 'error',
         None),
        ('polygon strings', seg(2, [['a', 'b', 'c', 'd', 'e', 'f']]),
         'error', None),
        ('segmentation a number', seg(2, 7), 'error', None),
        ('height negative', img('height', -24), 'error', None),
        ('height 24.5', img('height', 24.5), 'error', None),
        ('height string', img('height', 'abc'), 'error', None),
        ('height NaN', img('height', float('nan')), 'error', None),
        ('height missing', mutate(lambda c: c['images'][0].pop('height')),
         'error', None),
        ('bomb: 200000^2 image with matching RLE', mutate(
            lambda c: (c['images'][0].update(height=200000, width=200000),
                       c['annotations'][0].__setitem__('segmentation', big))
        ), 'error', None),
        ('bbox missing', mutate(lambda c: c['annotations'][0].pop('bbox')),
         'error', None),
        ('duplicate annotation ids', mutate(
            lambda c: c['annotations'][1].__setitem__('id', 1)), 'error',
         None),
        ('annotation id a list', mutate(
            lambda c: c['annotations'][1].__setitem__('id', [1])), 'error',
         None),
    ]
    v = [(n, files.bytes(d, '.json'), e, c) for n, d, e, c in v]
    v.append(('directory', files.directory('.json'), 'error', None))
    v.append(('missing', files.path('.json'), 'error', None))
    for name, bad in truncations(text, rng, 3) + byte_flips(text, rng, 4):
        v.append((name, files.bytes(bad, '.json'), 'either', contract))
    return [(n, p, [p], e, c) for n, p, e, c in v]


XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
REGION = ('<Region Id="{k}"><Vertices><Vertex X="{x0}" Y="{y0}"/>'
          '<Vertex X="{x1}" Y="{y0}"/><Vertex X="{x1}" Y="{y1}"/>'
          '<Vertex X="{x0}" Y="{y1}"/></Vertices></Region>')


def aperio(regions):
    return (XML_HEAD + '<Annotations><Annotation Id="1"><Regions>' +
            ''.join(regions) + '</Regions></Annotation></Annotations>'
            ).encode()


def read_xml(path):
    """What the MoNuSeg converter does with an XML: polygons -> map."""
    polys = parse_aperio_xml(path)
    return polygons_to_instance_map(polys, (40, 48))


def xml_variants(files, rng):
    regions = [REGION.format(k=k, x0=4 * k, y0=3 * k, x1=4 * k + 6,
                             y1=3 * k + 5) for k in range(1, 7)]
    text = aperio(regions)
    expected = read_xml(files.bytes(text, '.xml'))
    assert expected.max() == 6

    def exact(out):
        assert np.array_equal(out, expected)

    def contract(out):
        assert out.shape == (40, 48) and out.min() >= 0

    def empty(out):
        assert out.shape == (40, 48) and out.max() == 0

    def one(x0='2', y0='2', x1='9', y1='9'):
        return aperio([REGION.format(k=1, x0=x0, y0=y0, x1=x1, y1=y1)])

    laughs = (XML_HEAD + '<!DOCTYPE a [<!ENTITY l0 "ha">' + ''.join(
        f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10}">' for i in range(1, 10)) +
        ']><Annotations><Region Id="&l9;"/></Annotations>').encode()
    xxe = (XML_HEAD + '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">'
           ']><Annotations><Region Id="&x;"/></Annotations>').encode()
    v = [
        ('intact', text, 'result', exact),
        ('utf-16 with BOM', text.decode().replace('UTF-8', 'UTF-16').encode(
            'utf-16'), 'result', exact),
        ('vertices outside the image', one('-50', '-50', '500', '1e9'),
         'result', contract),
        ('region without vertices', aperio(['<Region Id="1"/>']), 'result',
         empty),
        ('empty file', b'', 'error', None),
        ('not XML', b'MoNuSeg annotations\n', 'error', None),
        ('X not a number', one(x0='abc'), 'error', None),
        ('X missing', aperio(['<Region Id="1"><Vertices><Vertex Y="3"/>'
                              '</Vertices></Region>']), 'error', None),
        ('X NaN', one(x0='nan'), 'error', None),
        ('Y inf', one(y1='inf'), 'error', None),
        ('X -inf', one(x1='-inf'), 'error', None),
        ('billion laughs', laughs, 'error', None),
        ('external entity', xxe, 'error', None),
        ('unknown encoding', text.replace(b'UTF-8', b'x-no-such'), 'error',
         None),
        ('latin-1 bytes declared UTF-8', text.replace(b'Id="1"',
                                                      b'Id="\xe9"'),
         'error', None),
        ('deep nesting', XML_HEAD.encode() + b'<a>' * 200000 + b'</a>' *
         200000, 'either', contract),
    ]
    v = [(n, files.bytes(d, '.xml'), e, c) for n, d, e, c in v]
    v.append(('directory', files.directory('.xml'), 'error', None))
    v.append(('missing', files.path('.xml'), 'error', None))
    for name, bad in truncations(text, rng, 2) + byte_flips(text, rng, 4):
        v.append((name, files.bytes(bad, '.xml'), 'either', contract))
    return [(n, p, [p], e, c) for n, p, e, c in v]


def pannuke_arrays(rng, n=2):
    images = rng.uniform(0, 255, (n, 16, 16, 3))
    masks = np.zeros((n, 16, 16, 6))
    masks[:, 2:6, 2:6, 0] = 3
    masks[:, 8:12, 9:14, 1] = 1
    masks[..., 5] = masks[..., :5].sum(-1) == 0
    types = np.array(['Colon'] * n)
    return dict(images=images, masks=masks, types=types)


def pannuke_variants(files, rng, out_root):
    good = pannuke_arrays(rng)
    counter = [0]

    def fold(**override):
        """A flat fold folder; override: name -> array, bytes or 'dir'."""
        src = files.directory('_fold')
        for name in ('images', 'masks', 'types'):
            p = osp.join(src, f'{name}.npy')
            value = override.get(name, good[name])
            if isinstance(value, str) and value == 'dir':
                os.makedirs(p)
            elif isinstance(value, bytes):
                with open(p, 'wb') as f:
                    f.write(value)
            elif value is not None:
                np.save(p, value, allow_pickle=value.dtype.hasobject)
        return src

    def read(src):
        counter[0] += 1
        out = osp.join(out_root, f'o{counter[0]}')
        paths = convert_pannuke(src, out, folds=[1])
        with open(paths['fold1']) as f:
            coco = json.load(f)
        return len(coco['images']), len(coco['annotations'])

    def exact(out):
        assert out == (2, 4), out

    def contract(out):
        assert out[0] <= 2

    m_nan = good['masks'].copy()
    m_nan[0, 3, 3, 0] = np.nan
    m_neg = good['masks'].copy()
    m_neg[0, 3, 3, 0] = -1
    m_flt = good['masks'].copy()
    m_flt[0, 3, 3, 0] = 1.5
    i_nan = good['images'].copy()
    i_nan[1, 0, 0, 0] = np.nan
    masks_bytes = npy_bytes(good['masks'])
    images_bytes = npy_bytes(good['images'])
    v = [
        ('intact', fold(), 'result', exact, 'images'),
        ('masks 5 channels', fold(masks=good['masks'][..., :5]), 'result',
         exact, 'masks'),
        ('images uint8', fold(images=good['images'].astype(np.uint8)),
         'result', exact, 'images'),
        ('masks NaN', fold(masks=m_nan), 'error', None, 'masks'),
        ('masks negative id', fold(masks=m_neg), 'error', None, 'masks'),
        ('masks float id 1.5', fold(masks=m_flt), 'error', None, 'masks'),
        ('images NaN', fold(images=i_nan), 'error', None, 'images'),
        ('images rank 3', fold(images=good['images'][..., 0]), 'error',
         None, 'images'),
        ('masks rank 3', fold(masks=good['masks'][..., 0]), 'error', None,
         'masks'),
        ('masks 4 channels', fold(masks=good['masks'][..., :4]), 'error',
         None, 'masks'),
        ('masks wrong size', fold(masks=good['masks'][:, :8]), 'error',
         None, 'masks'),
        ('masks one image short', fold(masks=good['masks'][:1]), 'error',
         None, 'masks'),
        ('types wrong length', fold(types=good['types'][:1]), 'error', None,
         'types'),
        ('types pickled objects', fold(types=np.array([{'a': 1}] * 2)),
         'error', None, 'types'),
        ('images complex', fold(images=good['images'].astype(complex)),
         'error', None, 'images'),
        ('images strings', fold(images=good['images'].astype(str)), 'error',
         None, 'images'),
        ('masks bomb header', fold(masks=npy_bomb((200000, 256, 256, 6),
                                                  '<f8')), 'error', None,
         'masks'),
        ('images bomb header', fold(images=npy_bomb((200000, 256, 256, 3),
                                                    '<f8')), 'error', None,
         'images'),
        ('masks empty file', fold(masks=b''), 'error', None, 'masks'),
        ('masks directory', fold(masks='dir'), 'error', None, 'masks'),
        ('masks missing', fold(masks=None), 'error', None, 'fold'),
        ('masks not npy', fold(masks=b'PanNuke masks\n'), 'error', None,
         'masks'),
    ]
    for name, bad in truncations(masks_bytes, rng, 1):
        v.append((f'masks {name}', fold(masks=bad), 'error', None, 'masks'))
    for name, bad in truncations(images_bytes, rng, 0)[::2]:
        v.append((f'images {name}', fold(images=bad), 'error', None,
                  'images'))
    for name, bad in byte_flips(masks_bytes, rng, 2, start=0):
        v.append((f'masks {name}', fold(masks=bad), 'either', contract,
                  'masks'))
    out = []
    for name, src, expect, check, culprit in v:
        names = [src] if culprit == 'fold' else [
            osp.join(src, f'{culprit}.npy')]
        out.append((name, src, names, expect, check))
    return out, read


def checkpoint_variants(files, rng):
    state = dict(state_dict={'w': torch.arange(6.0).reshape(2, 3),
                             'b': torch.zeros(3, dtype=torch.int64)},
                 meta=dict(epoch=3, note='fine', arr=np.arange(3)))
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    legacy = io.BytesIO()
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    legacy = legacy.getvalue()

    def exact(out):
        assert torch.equal(out['state_dict']['w'], state['state_dict']['w'])
        assert out['meta']['epoch'] == 3

    def contract(out):
        assert out is not None

    evil = io.BytesIO()
    torch.save(dict(x=Evil(files.root)), evil)
    zipped = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(zipped, 'w') as z:
        z.writestr('readme.txt', 'not a checkpoint')
    v = [
        ('intact zip', data, 'result', exact),
        ('intact legacy', legacy, 'result', exact),
        ('plain pickle of a dict', pickle.dumps({'a': 1}), 'either',
         contract),
        ('empty file', b'', 'error', None),
        ('text', b'checkpoint\n', 'error', None),
        ('random bytes', rng.integers(0, 256, 4096, np.uint8).tobytes(),
         'error', None),
        ('malicious __reduce__', evil.getvalue(), 'error', None),
        ('zip without data.pkl', zipped.getvalue(), 'error', None),
        ('npy file', npy_bytes(np.arange(4)), 'error', None),
    ]
    v = [(n, files.bytes(d, '.pth'), e, c) for n, d, e, c in v]
    v.append(('directory', files.directory('.pth'), 'error', None))
    v.append(('missing', files.path('.pth'), 'error', None))
    for fmt, blob in (('zip', data), ('legacy', legacy)):
        for name, bad in truncations(blob, rng, 2) + byte_flips(blob, rng,
                                                                 3):
            v.append((f'{fmt} {name}', files.bytes(bad, '.pth'), 'either',
                      contract))
    return [(n, p, [p], e, c) for n, p, e, c in v]


class CliError(ValueError):
    """A tool returned exit code 2 with its one-line message."""


def config_variants(files, rng, work):
    cfg = toy_config(osp.join(work, 'toy_work'), max_epochs=1)
    cfg.update(test_dataloader=cfg['val_dataloader'],
               test_evaluator=dict(type='ToyMetric'), test_cfg=dict(),
               custom_hooks=[], val_cfg=None, val_dataloader=None,
               val_evaluator=None)
    cfg['train_cfg'] = dict(by_epoch=True, max_epochs=1)
    from mmengine.config import Config
    good = files.path('.py')
    Config(cfg).dump(good)
    with open(good, 'rb') as f:
        text = f.read()
    v = [
        ('intact', text, '.py', 'result'),
        ('syntax error', text + b'\nmodel = dict(\n', '.py', 'error'),
        ('NUL byte', text + b'\x00', '.py', 'error'),
        ('not UTF-8', b'\xff\xfe' + text, '.py', 'error'),
        ('empty file', b'', '.py', 'error'),
        ('no model', text + b'\ndel model\n', '.py', 'error'),
        ('raises', text + b'\nraise RuntimeError("boom")\n', '.py', 'error'),
        ('exits', text + b'\nraise SystemExit(0)\n', '.py', 'error'),
        ('missing _base_', b"_base_ = './no_such_base.py'\n", '.py',
         'error'),
        ('_base_ is itself', b"_base_ = './%s'\n", '.py', 'error'),
        ('custom_imports unknown module', text + b"\ncustom_imports = dict("
         b"imports=['no_such_module_xyz'])\n", '.py', 'error'),
        ('wrong extension', text, '.txt', 'error'),
        ('broken JSON', b'{"model": {"type": ', '.json', 'error'),
        ('broken YAML', b'model: [1,\n', '.yaml', 'error'),
        ('JSON list', b'[1, 2]', '.json', 'error'),
    ]
    out = []
    for name, data, ext, expect in v:
        p = files.path(ext)
        if b'%s' in data:
            data = data % osp.basename(p).encode()
        with open(p, 'wb') as f:
            f.write(data)
        out.append((name, p, expect))
    out.append(('directory', files.directory('.py'), 'error'))
    out.append(('missing', files.path('.py'), 'error'))
    for name, bad in truncations(text, rng, 2) + byte_flips(text, rng, 3):
        p = files.bytes(bad, '.py')
        out.append((name, p, 'either'))

    def check(result):
        assert result == 0, result

    return [(n, p, [p], e, check) for n, p, e in out]


def make_config_reader(work, monkeypatch):
    """Each config goes through tools/train.py, tools/test.py and
    tools/infer.py (in-process). All must agree: exit 0 (train/test; infer
    then says the model is not PromptNucSeg) or exit 2 with the message
    naming the config, and never raise."""
    monkeypatch.syspath_prepend(osp.join(REPO, 'tests', 'test_engine'))
    tools = {name: load_tool(name) for name in ('train', 'test', 'infer')}
    image = osp.join(work, 'cfg_image.png')
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)

    def read(path):
        codes, messages = {}, []
        for name, tool in tools.items():
            tag = f'{name}_{time.time_ns()}'
            if name == 'infer':
                argv = [path, image, '--out-dir', osp.join(work, tag),
                        '--device', 'cpu']
            else:
                argv = [path, '--work-dir', osp.join(work, tag)]
            err = io.StringIO()
            with contextlib.redirect_stderr(err), \
                    contextlib.redirect_stdout(io.StringIO()):
                code = tool.main(argv)
            codes[name] = code
            text = err.getvalue().strip()
            if code not in (0, None):
                assert code == 2, (name, code, text)
                assert text.startswith(f'[{name}] error:'), (name, text)
                assert 'Traceback' not in text, (name, text)
                messages.append(text)
        if codes['train'] in (0, None) and codes['test'] in (0, None):
            return 0
        raise CliError(' | '.join(messages))

    return read


# ----------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------
def test_corrupted_input_campaign(tmp_path, monkeypatch,
                                  tmp_path_factory, request):
    rng = np.random.default_rng(SEED)
    monkeypatch.setenv('PNS_TRUST_CHECKPOINTS', '')
    campaigns = []
    files = Files(tmp_path / 'images')
    campaigns.append(('images (io.load_image: PNG/JPEG/TIFF, 16-bit, '
                      'palette)', image_variants(files, rng), load_image))
    files = Files(tmp_path / 'maps')
    campaigns.append(('instance maps (io.load_instance_map: PNG/NPY/MAT)',
                      inst_map_variants(files, rng), load_instance_map))
    files = Files(tmp_path / 'coco')
    campaigns.append(('COCO JSON (NucleusDataset + coco_utils: RLE, '
                      'polygons)', coco_variants(files, rng), read_coco))
    files = Files(tmp_path / 'xml')
    campaigns.append(('Aperio XML (converters.parse_aperio_xml)',
                      xml_variants(files, rng), read_xml))
    files = Files(tmp_path / 'pannuke')
    variants, read = pannuke_variants(files, rng, str(tmp_path / 'p_out'))
    campaigns.append(('PanNuke .npy folds (converters.convert_pannuke)',
                      variants, read))
    files = Files(tmp_path / 'ckpt')
    campaigns.append(('checkpoints (engine.load_checkpoint_file)',
                      checkpoint_variants(files, rng), load_checkpoint_file))
    files = Files(tmp_path / 'cfg')
    work = str(tmp_path / 'cfg_work')
    os.makedirs(work)
    write_tiny_config(work)
    campaigns.append(('configs (tools/train.py, test.py, infer.py)',
                      config_variants(files, rng, work),
                      make_config_reader(work, monkeypatch)))

    all_failures = {}
    for reader, variants, read in campaigns:
        failures = run_campaign(reader, variants, read)
        if failures:
            all_failures[reader] = failures
    rows = CAMPAIGN_ROWS[-len(campaigns):]
    table = format_table(rows)
    print('\n' + table)
    out = tmp_path_factory.getbasetemp() / 'corrupted_inputs_table.md'
    out.write_text(table + '\n')
    request.config.pns_campaign_table = f'{table}\n(also in {out})'
    # No malicious pickle ran (they would have created PWNED files).
    pwned = [p for p, _, names in os.walk(tmp_path) if 'PWNED' in names]
    assert not pwned, pwned
    for row in rows:
        assert row['variants'] >= MIN_VARIANTS, row
    assert not all_failures, json.dumps(all_failures, indent=1)


def format_table(rows):
    lines = ['| reader | variants | handled | correct result | clear error '
             '| seconds |', '|---|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f"| {r['reader']} | {r['variants']} | {r['handled']} "
                     f"| {r['results']} | {r['errors']} "
                     f"| {r['seconds']:.1f} |")
    total = {k: sum(r[k] for r in rows)
             for k in ('variants', 'handled', 'results', 'errors',
                       'seconds')}
    lines.append(f"| **total** | {total['variants']} | {total['handled']} "
                 f"| {total['results']} | {total['errors']} "
                 f"| {total['seconds']:.1f} |")
    return '\n'.join(lines)


def test_cli_subprocess_broken_config_and_image(tmp_path):
    """The real command line: exit code 2, one line, no traceback."""
    cfg = tmp_path / 'broken.py'
    cfg.write_text('model = dict(type="X",\n')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test.py'), str(cfg)],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f'[test] error: config "{cfg}" cannot be loaded: '
                    "SyntaxError: '(' was never closed (line 1)"), last
    assert 'Traceback' not in proc.stderr


def test_infer_cli_reports_corrupt_images(tmp_path, capsys):
    """tools/infer.py on a folder with a decompression bomb, a truncated
    PNG and a good image: exit 1, the bad files named, the good one
    written."""
    images = tmp_path / 'images'
    images.mkdir()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(images / 'ok.png')
    (images / 'bomb.png').write_bytes(png_bomb())
    data = (images / 'ok.png').read_bytes()
    (images / 'cut.png').write_bytes(data[:len(data) // 2])
    cfg = write_tiny_config(tmp_path)
    code = load_tool('infer').main([cfg, str(images), '--out-dir',
                                    str(tmp_path / 'out'), '--device',
                                    'cpu'])
    err = capsys.readouterr().err
    assert code == 1
    assert f'skipped {images / "bomb.png"}: cannot read image' in err
    assert f'skipped {images / "cut.png"}: cannot read image' in err
    assert (tmp_path / 'out' / 'ok_inst.png').is_file()
    assert not (tmp_path / 'out' / 'bomb_inst.png').exists()


def test_converter_clis_report_bad_inputs(tmp_path, capsys):
    """Each converter CLI on a corrupt input: exit 2, one line naming the
    file (in-process)."""
    rng = np.random.default_rng(SEED)
    cases = []
    # PanNuke: masks.npy truncated
    fold = tmp_path / 'pannuke'
    fold.mkdir()
    arrays = pannuke_arrays(rng)
    for name, arr in arrays.items():
        np.save(fold / f'{name}.npy', arr)
    data = (fold / 'masks.npy').read_bytes()
    (fold / 'masks.npy').write_bytes(data[:len(data) // 2])
    cases.append(('pannuke', [str(fold), str(tmp_path / 'o1'), '--folds',
                              '1'], fold / 'masks.npy'))
    # MoNuSeg: a NaN vertex
    mon = tmp_path / 'mon'
    (mon / 'images').mkdir(parents=True)
    (mon / 'annotations').mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(
        mon / 'images' / 'a.png')
    xml = mon / 'annotations' / 'a.xml'
    xml.write_bytes(aperio([REGION.format(k=1, x0='nan', y0=1, x1=5,
                                          y1=5)]))
    cases.append(('monuseg', [str(mon), str(tmp_path / 'o2')], xml))
    # generic: an instance map with a negative id
    (tmp_path / 'img').mkdir()
    (tmp_path / 'maps').mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        tmp_path / 'img' / 'a.png')
    bad = np.zeros((8, 8), np.int32)
    bad[2, 2] = -1
    np.save(tmp_path / 'maps' / 'a.npy', bad)
    cases.append(('generic', [str(tmp_path / 'img'), str(tmp_path / 'maps'),
                              str(tmp_path / 'o3')],
                  tmp_path / 'maps' / 'a.npy'))
    # CPM-17: a truncated label .mat
    cpm = tmp_path / 'cpm' / 'train'
    (cpm / 'Images').mkdir(parents=True)
    (cpm / 'Labels').mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        cpm / 'Images' / 'a.png')
    scipy.io.savemat(cpm / 'Labels' / 'a.mat',
                     dict(inst_map=np.zeros((8, 8), np.int32)))
    mat = (cpm / 'Labels' / 'a.mat').read_bytes()
    (cpm / 'Labels' / 'a.mat').write_bytes(mat[:len(mat) // 2])
    cases.append(('cpm17', [str(tmp_path / 'cpm'), str(tmp_path / 'o4'),
                            '--splits', 'train'], cpm / 'Labels' / 'a.mat'))
    # check_dataset: a truncated annotation file
    root = tmp_path / 'ds'
    (root / 'annotations').mkdir(parents=True)
    ann = root / 'annotations' / 'train.json'
    ann.write_text(json.dumps(coco_base(rng))[:100])
    cases.append(('check_dataset', [str(root), 'annotations/train.json',
                                    '--classes', 'tumour', 'immune'], ann))
    for tool, argv, culprit in cases:
        module = load_tool(osp.join('dataset_converters', tool))
        assert module.main(argv) == 2, tool
        err = capsys.readouterr().err.strip()
        assert err.startswith(f'[{tool}] error: ') and '\n' not in err, err
        assert str(culprit) in err, (tool, err)
