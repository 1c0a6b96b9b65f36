"""Cohort workers: what a Ray actor builds and how it runs one slide.

:class:`RunnerSpec` holds the model and slide-runner settings (picklable,
sent to every worker); :class:`CohortWorker` is the actor class: it builds
the model once and runs slides one after another with
:class:`~pns_mmdet.wsi.runner.SlideRunner`. See
:mod:`pns_mmdet.wsi.cohort` for the driver.
"""
import os
import os.path as osp
import socket
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

from ..utils import atomic_write

__all__ = ['RunnerSpec', 'CohortWorker', 'OVERWRITE_MARKER']

# In a slide folder while an --overwrite run of it is under way: the run
# id, so that Ray's retry of the call resumes instead of wiping again.
OVERWRITE_MARKER = '.cohort_overwrite'


@dataclass
class RunnerSpec:
    """Everything a worker needs to build its model and slide runner.

    Picklable (Ray sends it to every worker); paths are made absolute.

    Attributes:
        config (str): PromptNucSeg config file.
        model_mpp (float): µm/px of the model (the config's ``data_mpp``).
        device (str, optional): ``cpu`` / ``cuda`` / ``cuda:N``; default
            cuda when the worker sees a GPU, else cpu.
        prompter_checkpoint, segmentor_checkpoint (str, optional):
            Overrides of the config's checkpoints.
        cfg_options (dict, optional): Config overrides.
        trust_checkpoints (Sequence[str]): Files to unpickle fully
            (``--trust-checkpoint``), trusted in every worker.
        tile_size, overlap (int): Processing tiles (model frame px).
        read_workers (int): Tile-reading processes per worker.
        gz (bool): Write ``nuclei.geojson.gz``.
        threads (int, optional): torch threads per worker (its CPUs).
        inferencer (callable, optional): Builds the inferencer with
            ``NucleusInferencer``'s arguments; default
            :class:`~pns_mmdet.apis.NucleusInferencer`. Must be importable
            on the workers.
    """
    config: str
    model_mpp: float
    device: Optional[str] = None
    prompter_checkpoint: Optional[str] = None
    segmentor_checkpoint: Optional[str] = None
    cfg_options: Optional[dict] = None
    trust_checkpoints: Sequence[str] = ()
    tile_size: int = 1024
    overlap: int = 128
    read_workers: int = 1
    gz: bool = False
    threads: Optional[int] = None
    inferencer: Optional[Callable] = None

    def __post_init__(self) -> None:
        def absolute(p):
            return None if p is None else osp.abspath(osp.expanduser(p))
        self.config = absolute(self.config)
        self.prompter_checkpoint = absolute(self.prompter_checkpoint)
        self.segmentor_checkpoint = absolute(self.segmentor_checkpoint)
        self.trust_checkpoints = [absolute(p) for p in
                                  self.trust_checkpoints or ()]

    def build(self):
        """The :class:`~pns_mmdet.wsi.runner.SlideRunner` (model built)."""
        from ..engine import trust_checkpoints
        from .runner import SlideRunner
        if self.threads:
            import torch
            torch.set_num_threads(int(self.threads))
        # Through the environment, so the reading processes trust them too.
        trust_checkpoints(self.trust_checkpoints)
        factory = self.inferencer
        if factory is None:
            from ..apis import NucleusInferencer as factory
        inferencer = factory(
            self.config,
            device=self.device,
            prompter_checkpoint=self.prompter_checkpoint,
            segmentor_checkpoint=self.segmentor_checkpoint,
            cfg_options=self.cfg_options)
        return SlideRunner(
            inferencer,
            self.model_mpp,
            tile_size=self.tile_size,
            overlap=self.overlap,
            workers=self.read_workers,
            gz=self.gz,
            config_name=self.config)


class CohortWorker:
    """One Ray actor: a model built once, slides run one after another.

    Used through ``ray.remote(CohortWorker)`` (see :class:`CohortRunner`);
    plain Python otherwise. The actor allows two concurrent calls so that
    :meth:`status` answers while :meth:`run` works (the driver sends one
    slide at a time).

    Args:
        spec (RunnerSpec): How to build the slide runner.
        index (int): Worker number, for the manifest's ``worker`` column.
    """

    def __init__(self, spec: RunnerSpec, index: int) -> None:
        self.runner = spec.build()
        self.name = f'worker{index}@{socket.gethostname()}:{os.getpid()}'
        self._status = {}

    def info(self) -> str:
        """``worker<i>@<host>:<pid>`` (answers once the model is built)."""
        return self.name

    def status(self) -> Dict:
        """The running slide: ``slide``, ``tiles_done``, ``tiles_todo``,
        ``nuclei`` (including those of a resumed journal); {} when
        idle."""
        return dict(self._status)

    def run(self, slide: str, slide_out: str, options: Dict,
            overwrite: bool = False, run_id: str = '') -> Dict:
        """Run one slide; never raises for a bad slide.

        Args:
            slide (str): Slide file.
            slide_out (str): Its output folder.
            options (dict): ``slide_mpp``, ``tissue_mask``, ``roi`` of
                :meth:`SlideRunner.run`.
            overwrite (bool): Redo a finished slide, drop a journal.
            run_id (str): Identifies the cohort run. With ``overwrite``, a
                retry of the same run (Ray resending the call after the
                worker died) resumes the journal that the first attempt
                started instead of wiping it again.

        Returns:
            dict: ``status`` ('finished' | 'skipped' | 'failed'),
            ``nuclei``, ``seconds`` (this call), ``worker``, ``error``,
            ``tiles_run``, ``tiles_resumed``.
        """
        start = time.perf_counter()
        self._status = dict(slide=slide, tiles_done=0, tiles_todo=0,
                            nuclei=0)
        marker = osp.join(slide_out, OVERWRITE_MARKER)
        if overwrite and run_id and _read(marker) == run_id:
            overwrite = False  # this run already wiped the folder

        def on_start(todo):
            # Called after the runner dropped the old outputs and opened
            # the new journal: from now on a retry must resume.
            if overwrite and run_id:
                with atomic_write(marker, 'w') as f:
                    f.write(run_id)
            self._status['tiles_todo'] = todo

        def progress(done, todo, nuclei):
            self._status.update(tiles_done=done, tiles_todo=todo,
                                nuclei=nuclei)

        try:
            summary = self.runner.run(slide, slide_out, overwrite=overwrite,
                                      progress=progress, on_start=on_start,
                                      **options)
        except Exception as err:  # noqa: BLE001
            # A bad slide (unreadable, no MPP, bad ROI...) is a failed row;
            # the worker goes on with the next one.
            return dict(status='failed', nuclei=0,
                        seconds=time.perf_counter() - start,
                        worker=self.name,
                        error=f'{type(err).__name__}: {err}', tiles_run=0,
                        tiles_resumed=0)
        finally:
            self._status = {}
        if osp.exists(marker):
            os.remove(marker)
        return dict(status=summary.status, nuclei=summary.nuclei,
                    seconds=time.perf_counter() - start, worker=self.name,
                    error='', tiles_run=summary.tiles_run,
                    tiles_resumed=summary.tiles_resumed)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ''
