"""Whole-slide inference: stream processing tiles through the engine.

Frames (docs/wsi.md):

* **model frame**: slide pixels at the model's resolution ``model_mpp``
  (the config's ``data_mpp``); the processing-tile grid lives here.
* **level-0 frame**: slide pixels at pyramid level 0, in the continuous
  pixel-square convention of GeoJSON/QuPath (pixel column x covers
  ``[x, x + 1]``). Every output is in this frame: with
  ``s = model_mpp / slide_mpp``, a model-frame pixel edge at ``u`` is at
  ``u * s`` in level 0.

A slide is cut into processing tiles of ``tile_size`` px (model frame)
overlapping by ``overlap`` px, in raster order; the last tile of a row or
column is flush with the region's border. Between two neighbouring tiles,
the ownership border is the middle of their overlap, so every tile has a
*core* (the tile minus about half the overlap on its inner sides; outer
sides of the region are unbounded) and the cores partition the region.

Ownership: a nucleus found in a tile is kept when its prompt point lies in
the tile's core, and then dropped when an already stored nucleus has its
point within ``dedup_radius`` (the same nucleus seen from the neighbouring
tile with a slightly different point; the engine's point NMS radius inside
an image). Nuclei cut by a tile border have their points in the halo, so the
neighbour that sees them whole owns them, provided half the overlap is
larger than a nucleus plus the engine's edge margin.

The :class:`~pns_mmdet.wsi.store.NucleusStore` is the resume journal: each
tile's nuclei and its "done" mark are written in one transaction, in raster
order, so a killed run resumes at the first tile not done and gives the
same nuclei as an uninterrupted one. Memory is bounded by a few tiles
(read-ahead) and a thumbnail-sized tissue mask; nuclei live on disk.
"""
import json
import math
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
from torch.utils.data import DataLoader

from ..utils import atomic_write
from .grid import ProcessingTile, processing_tiles, tiles_with_tissue
from .nucleus_records import tile_records
from .overlay import write_tissue_and_overlay
from .run_info import peak_rss_mb, versions
from .tile_loader import StageTimer, TileDataset, no_collate

__all__ = ['SlideRunner', 'SlideSummary', 'ProcessingTile',
           'processing_tiles', 'RUN_STATUS_FINISHED']

RUN_STATUS_FINISHED = 'finished'
# Name of the store while the slide is in progress (the journal).
PARTIAL_DB = '.nuclei.db.partial'


@dataclass
class SlideSummary:
    """What :meth:`SlideRunner.run` did for one slide."""
    slide: str
    out_dir: str
    status: str  # 'finished' | 'skipped'
    tiles_total: int = 0
    tiles_tissue: int = 0
    tiles_run: int = 0
    tiles_resumed: int = 0
    nuclei: int = 0
    seconds: float = 0.0
    outputs: Dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One human-readable summary line."""
        if self.status == 'skipped':
            return (f'{self.slide}: already finished ({self.nuclei} nuclei '
                    f'in {self.out_dir}); --overwrite to redo')
        resumed = (f', {self.tiles_resumed} from an earlier run'
                   if self.tiles_resumed else '')
        return (f'{self.slide}: {self.nuclei} nuclei, {self.tiles_tissue}/'
                f'{self.tiles_total} tiles with tissue ({self.tiles_run} run'
                f'{resumed}), {self.seconds:.1f} s -> {self.out_dir}')


class SlideRunner:
    """Run a :class:`~pns_mmdet.apis.NucleusInferencer` over whole slides.

    Args:
        inferencer: A ``NucleusInferencer`` (``__call__(rgb) ->
            NucleusResult`` in the tile frame, ``class_names``,
            ``palette``).
        model_mpp (float): µm/px the model was trained at (the config's
            ``data_mpp``); tiles are read at this resolution.
        tile_size (int): Processing-tile side, model frame px.
        overlap (int): Overlap of neighbouring processing tiles, model frame
            px; half of it must exceed a nucleus' diameter plus the engine's
            ``edge_margin`` (default 128: 64 px = 16 µm at 0.25 µm/px).
        dedup_radius (float, optional): Model-frame px; a nucleus whose
            point is this close to a stored one is the neighbour's
            duplicate. Default: the engine's point NMS radius (prompter
            ``test_cfg.nms_radius``), else 6.
        workers (int): DataLoader worker processes reading tiles ahead (0:
            read in this process).
        prefetch (int): Tiles read ahead per worker (bounds memory).
        thumbnail_side (int): Longest side of the overlay thumbnail (at
            most the slide's).
        tissue_mpp (float): µm/px the tissue is detected at (coarser
            than the thumbnail when the slide allows; 8 is about 1.25x).
        gz (bool): Write ``nuclei.geojson.gz`` instead of
            ``nuclei.geojson``.
        config_name (str): Recorded in run.json and the journal.
    """

    def __init__(self,
                 inferencer,
                 model_mpp: float,
                 tile_size: int = 1024,
                 overlap: int = 128,
                 dedup_radius: Optional[float] = None,
                 workers: int = 0,
                 prefetch: int = 2,
                 thumbnail_side: int = 2048,
                 tissue_mpp: float = 8.0,
                 gz: bool = False,
                 config_name: str = '') -> None:
        if not (isinstance(model_mpp, (int, float)) and model_mpp > 0):
            raise ValueError(f'model_mpp must be a positive number (µm/px), '
                             f'got {model_mpp!r}')
        if int(tile_size) < 32:
            raise ValueError(f'tile_size must be >= 32 px, got {tile_size}')
        if not 0 <= int(overlap) < int(tile_size):
            raise ValueError(f'overlap must be in [0, tile_size={tile_size})'
                             f', got {overlap}')
        if int(workers) < 0 or int(prefetch) < 1:
            raise ValueError('workers must be >= 0 and prefetch >= 1')
        self.inferencer = inferencer
        self.model_mpp = float(model_mpp)
        self.tile_size = int(tile_size)
        self.overlap = int(overlap)
        if dedup_radius is None:
            dedup_radius = self._engine_nms_radius(inferencer)
        self.dedup_radius = float(dedup_radius)
        self.workers = int(workers)
        self.prefetch = int(prefetch)
        self.thumbnail_side = int(thumbnail_side)
        self.tissue_mpp = float(tissue_mpp)
        self.gz = bool(gz)
        self.config_name = config_name
        self.class_names = list(inferencer.class_names)
        self.palette = [tuple(int(c) for c in p) for p in inferencer.palette]

    @staticmethod
    def _engine_nms_radius(inferencer) -> float:
        """The engine's own cross-tile point NMS radius (else 6 px)."""
        model = getattr(inferencer, 'model', None)
        if hasattr(model, 'tiled_prompter'):
            return float(model.tiled_prompter().nms_radius)
        return 6.0

    # ------------------------------------------------------------ paths
    def output_paths(self, slide_out: str) -> Dict[str, str]:
        """Final output files of a slide folder."""
        return dict(
            geojson=osp.join(
                slide_out,
                'nuclei.geojson.gz' if self.gz else 'nuclei.geojson'),
            csv=osp.join(slide_out, 'nuclei.csv'),
            db=osp.join(slide_out, 'nuclei.db'),
            tissue_mask=osp.join(slide_out, 'tissue_mask.png'),
            overlay=osp.join(slide_out, 'thumbnail_overlay.png'),
            run=osp.join(slide_out, 'run.json'))

    @staticmethod
    def finished_run(slide_out: str) -> Optional[dict]:
        """run.json of a finished slide folder, else None."""
        path = osp.join(slide_out, 'run.json')
        try:
            with open(path) as f:
                run = json.load(f)
        except (OSError, ValueError):
            return None
        if run.get('status') != RUN_STATUS_FINISHED:
            return None
        if not all(osp.isfile(p) for p in run.get('outputs', {}).values()):
            return None
        return run

    # -------------------------------------------------------------- run
    def run(self,
            slide_path: str,
            slide_out: str,
            slide_mpp: Optional[float] = None,
            tissue_mask: Optional[str] = None,
            roi: Optional[Sequence[int]] = None,
            overwrite: bool = False,
            progress: Optional[Callable[[int, int, int], None]] = None,
            on_start: Optional[Callable[[int], None]] = None
            ) -> SlideSummary:
        """Segment every nucleus of one slide into ``slide_out``.

        Args:
            slide_path (str): Slide file (anything
                :func:`~pns_mmdet.wsi.reader.open_slide` reads).
            slide_out (str): Output folder of this slide (created).
            slide_mpp (float, optional): Overrides the slide's level-0 MPP.
            tissue_mask (str, optional): Mask image (any size, same aspect
                as the slide; non-zero = tissue) instead of detection.
            roi (Sequence[int], optional): x, y, w, h in level-0 pixels;
                only tiles of this region are processed.
            overwrite (bool): Redo a finished slide (and drop a journal).
            progress (callable, optional): ``progress(tiles_done,
                tiles_todo, nuclei)`` after each tile.
            on_start (callable, optional): ``on_start(tiles_todo)`` once
                the grid is known.

        Returns:
            SlideSummary: Counts, time and the output paths.

        Raises:
            SlideReadError, SlideMetadataError: From the reader (unreadable
                slide, no MPP and no ``slide_mpp``).
            ValueError: Bad ROI or tissue mask, or a journal started with
                other settings (rerun with ``overwrite``).
        """
        from .reader import open_slide
        from .store import NucleusStore
        from .writers import write_csv, write_geojson
        start = time.perf_counter()
        paths = self.output_paths(slide_out)
        if not overwrite:
            done = self.finished_run(slide_out)
            if done is not None:
                return SlideSummary(
                    slide_path, slide_out, 'skipped',
                    tiles_total=done.get('tiles_total', 0),
                    tiles_tissue=done.get('tiles_tissue', 0),
                    nuclei=done.get('nuclei', 0), outputs=done['outputs'])
        os.makedirs(slide_out, exist_ok=True)
        partial = osp.join(slide_out, PARTIAL_DB)
        if overwrite:
            # Also SQLite's side files of an interrupted journal.
            side = [partial + x for x in ('', '-journal', '-wal', '-shm')]
            for p in list(paths.values()) + side:
                if osp.exists(p):
                    os.remove(p)
        elif osp.isfile(paths['db']) and not osp.exists(partial):
            # Killed after the store was renamed but before run.json: the
            # journal is complete; finish the outputs again from it.
            os.replace(paths['db'], partial)

        timer = StageTimer()
        with open_slide(slide_path, slide_mpp=slide_mpp) as reader:
            s = self.model_mpp / float(reader.mpp)
            region = self._model_region(reader, roi, s)
            tiles = processing_tiles(region, self.tile_size, self.overlap)
            # Never upsample: small slides get a thumbnail of their size.
            side0 = max(reader.dimensions)
            thumb = reader.thumbnail(min(self.thumbnail_side, side0))
            mask = self._tissue(thumb, tissue_mask, reader.dimensions,
                                float(reader.mpp))
            scale = (thumb.shape[1] / reader.dimensions[0],
                     thumb.shape[0] / reader.dimensions[1])
            mask_scale = (mask.shape[1] / reader.dimensions[0],
                          mask.shape[0] / reader.dimensions[1])
            keep = tiles_with_tissue(tiles, mask, s, mask_scale)
            params = dict(
                slide=osp.abspath(slide_path), config=self.config_name,
                model_mpp=self.model_mpp, slide_mpp=float(reader.mpp),
                tile_size=self.tile_size, overlap=self.overlap,
                dedup_radius=self.dedup_radius, region=list(region),
                tiles=len(tiles), tissue_tiles=len(keep),
                class_names=self.class_names)
            dims = tuple(int(v) for v in reader.dimensions)
            backend = reader.backend
            slide_mpp_read = float(reader.mpp)

        store = NucleusStore(partial, mode='a')
        try:
            old = store.get_meta('params')
            if old is None:
                store.set_meta('params', params)
            elif old != params:
                diff = sorted(k for k in params if old.get(k) != params[k])
                raise ValueError(
                    f'{partial}: this unfinished run was started with other '
                    f'settings ({", ".join(diff)}); rerun with --overwrite '
                    'to start again')
            done_tiles = store.done_tiles()
            todo = [t for t in keep if t.index not in done_tiles]
            resumed = len(keep) - len(todo)
            if on_start is not None:
                on_start(len(todo))
            model = getattr(self.inferencer, 'model', None)
            segmentor = getattr(model, 'segmentor', None)
            timer.wrap(getattr(model, 'prompter', None), 'predict',
                       'prompter')
            timer.wrap(segmentor, 'encode_image', 'encoder')
            timer.wrap(segmentor, 'decode_prompts', 'decoder')
            try:
                n_run = self._process(slide_path, slide_mpp, todo, store, s,
                                      timer, progress)
            finally:
                timer.unwrap()
            # The engine's own work (tiling, NMS, painting) is what its
            # calls took beyond the three parts.
            timer.seconds['stitching'] -= (timer.seconds['prompter'] +
                                           timer.seconds['encoder'] +
                                           timer.seconds['decoder'])
            with timer.stage('writing'):
                nuclei = len(store)
                names, palette = self.class_names, self.palette
                write_geojson(store.iter_records(), paths['geojson'],
                              names, palette, self.gz)
                write_csv(store.iter_records(), paths['csv'])
                write_tissue_and_overlay(thumb, mask, store, paths, scale,
                                         self.palette)
        finally:
            store.close()
        os.replace(partial, paths['db'])
        seconds = time.perf_counter() - start
        outputs = {k: v for k, v in paths.items() if k != 'run'}
        area_mm2 = sum(
            (min(t.core[2], t.x + t.w) - max(t.core[0], t.x)) *
            (min(t.core[3], t.y + t.h) - max(t.core[1], t.y))
            for t in keep) * (self.model_mpp * 1e-3)**2
        run = dict(
            status=RUN_STATUS_FINISHED, slide=osp.abspath(slide_path),
            backend=backend, dimensions=list(dims),
            slide_mpp=slide_mpp_read, model_mpp=self.model_mpp,
            scale=s, config=self.config_name, tile_size=self.tile_size,
            overlap=self.overlap, dedup_radius=self.dedup_radius,
            roi=list(roi) if roi is not None else None,
            region_model=list(region), tiles_total=len(tiles),
            tiles_tissue=len(keep), tiles_done=len(keep),
            tiles_run=n_run, tiles_resumed=resumed, nuclei=nuclei,
            tissue_area_mm2=area_mm2, seconds=seconds,
            seconds_by_stage=timer.seconds, peak_rss_mb=peak_rss_mb(),
            workers=self.workers, versions=versions(), outputs=outputs)
        with atomic_write(paths['run'], 'w') as f:
            json.dump(run, f, indent=2)
        return SlideSummary(slide_path, slide_out, 'finished',
                            tiles_total=len(tiles), tiles_tissue=len(keep),
                            tiles_run=n_run, tiles_resumed=resumed,
                            nuclei=nuclei, seconds=seconds, outputs=outputs)

    # ---------------------------------------------------------- helpers
    def _model_region(self, reader, roi, s) -> Tuple[int, int, int, int]:
        """Processing region in the model frame (from an optional level-0
        ROI, clipped to the slide)."""
        w0, h0 = reader.dimensions
        if roi is None:
            x, y, w, h = 0, 0, w0, h0
        else:
            if len(roi) != 4 or min(roi[2], roi[3]) <= 0:
                raise ValueError(f'--roi must be X Y W H with W, H > 0 '
                                 f'(level-0 pixels), got {list(roi)}')
            x, y, w, h = (int(v) for v in roi)
            if x >= w0 or y >= h0 or x + w <= 0 or y + h <= 0:
                raise ValueError(
                    f'--roi {x} {y} {w} {h} lies outside the slide '
                    f'{reader.path} ({w0} x {h0} level-0 px)')
            x1, y1 = min(x + w, w0), min(y + h, h0)
            x, y = max(x, 0), max(y, 0)
            w, h = x1 - x, y1 - y
        return (int(math.floor(x / s)), int(math.floor(y / s)),
                int(math.ceil((x + w) / s - 1e-9)),
                int(math.ceil((y + h) / s - 1e-9)))

    def _tissue(self, thumb: np.ndarray, tissue_mask: Optional[str],
                dims: Tuple[int, int], slide_mpp: float) -> np.ndarray:
        """Boolean tissue mask at about ``tissue_mpp`` (never finer than
        the thumbnail): detected (clean-up sizes in µm), or the user's mask
        resized."""
        th, tw = thumb.shape[:2]
        # Tissue at about tissue_mpp µm/px (1.25x-like): enough to skip
        # tiles, and the morphology's µm-sized structuring elements stay
        # a few pixels wide.
        f = min(1.0, (slide_mpp * dims[0] / tw) / self.tissue_mpp)
        th, tw = max(int(round(th * f)), 1), max(int(round(tw * f)), 1)
        if (th, tw) != thumb.shape[:2]:
            thumb = cv2.resize(thumb, (tw, th), interpolation=cv2.INTER_AREA)
        if tissue_mask is None:
            from .tissue import detect_tissue
            thumb_mpp = slide_mpp * dims[0] / tw
            mask = np.asarray(detect_tissue(thumb, mpp=thumb_mpp), bool)
        else:
            from .tissue import load_tissue_mask
            mask = np.asarray(load_tissue_mask(
                tissue_mask, size=(tw, th), slide_dimensions=dims), bool)
        if mask.shape != (th, tw):
            raise ValueError(f'tissue mask of shape {mask.shape}, expected '
                             f'the thumbnail\'s {(th, tw)}')
        return mask

    def _process(self, slide_path, slide_mpp, todo, store, s, timer,
                 progress) -> int:
        """Run the engine over the tiles still to do, in raster order."""
        dataset = TileDataset(slide_path, slide_mpp, self.model_mpp, todo)
        loader_kwargs = dict(batch_size=None, shuffle=False,
                             num_workers=self.workers,
                             collate_fn=no_collate)
        if self.workers > 0:
            loader_kwargs.update(prefetch_factor=self.prefetch,
                                 persistent_workers=False)
        loader = DataLoader(dataset, **loader_kwargs)
        tile_by_index = {t.index: t for t in todo}
        # Ids continue the journal's, so a resumed run numbers as a whole.
        next_id = store.max_id() + 1
        nuclei = len(store)
        iterator = iter(loader)
        try:
            return self._loop(iterator, tile_by_index, store, s, timer,
                           progress, next_id, nuclei, len(todo))
        finally:
            del iterator  # stops the workers
            if dataset._reader is not None:  # workers=0: ours
                dataset._reader.close()

    def _loop(self, iterator, tile_by_index, store, s, timer, progress,
              next_id, nuclei, total) -> int:
        """Engine, ownership and journal for each tile read."""
        n = 0
        while True:
            with timer.stage('read'):
                try:
                    index, rgb, read_s = next(iterator)
                except StopIteration:
                    break
            # With workers, 'read' is the wait for the next tile (reading
            # overlaps the model); the workers' own read time is kept apart.
            timer.seconds['read_in_workers'] = timer.seconds.get(
                'read_in_workers', 0.0) + (read_s if self.workers else 0.0)
            tile = tile_by_index[index]
            with timer.stage('stitching'):
                result = self.inferencer(rgb)
            with timer.stage('merge'):
                records = tile_records(tile, rgb, result, store, s, next_id,
                                       self.dedup_radius, self.model_mpp,
                                       self.class_names)
            with timer.stage('writing'):
                store.add_tile(tile.index, records)
            next_id += len(records)
            nuclei += len(records)
            n += 1
            if progress is not None:
                progress(n, total, nuclei)
        return n

