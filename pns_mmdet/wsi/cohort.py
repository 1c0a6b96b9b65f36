"""Cohort inference on Ray: many slides over many workers, resumable.

Each worker is a Ray actor that builds the model once
(:class:`~pns_mmdet.wsi.cohort_worker.CohortWorker`); each slide is one
call of its ``run`` method, which runs
:class:`~pns_mmdet.wsi.runner.SlideRunner` into ``OUT/<slide stem>/``. A
worker process that dies (killed, out of memory, node lost) is restarted
by Ray (``max_restarts``) and the call retried (``max_task_retries``); the
slide runner's SQLite journal makes the retry continue after the last
finished tile, so the outputs equal those of an uninterrupted run.

The driver (:class:`CohortRunner`) hands one slide at a time to each idle
worker and keeps the manifest ``OUT/cohort.csv``
(:class:`~pns_mmdet.wsi.manifest.CohortManifest`: one row per slide,
rewritten atomically at every change). A slide whose folder already holds
a finished run (its ``run.json``) is not sent again.

Every path is absolute: on a cluster, slides, config, checkpoints and
``OUT`` must be on a file system that every node sees at the same path
(docs/cohort.md).
"""
import math
import os
import os.path as osp
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .cohort_worker import CohortWorker, RunnerSpec
from .manifest import MANIFEST_COLUMNS, MANIFEST_NAME, CohortManifest

__all__ = [
    'CohortRunner', 'CohortSummary', 'slide_stem',
    # Re-exported: the parts a cohort is made of.
    'RunnerSpec', 'CohortWorker', 'CohortManifest', 'MANIFEST_COLUMNS',
    'MANIFEST_NAME'
]


def slide_stem(path: str) -> str:
    """Output folder name of a slide (``a.ome.tiff`` -> ``a.ome``)."""
    return osp.splitext(osp.basename(path))[0]


@dataclass
class CohortSummary:
    """What :meth:`CohortRunner.run` did."""
    total: int = 0
    finished: int = 0
    skipped: int = 0  # finished in an earlier run, not sent again
    failed: int = 0
    nuclei: int = 0  # of the slides finished in this run
    seconds: float = 0.0
    workers: List[str] = field(default_factory=list)
    rows: List[Dict[str, str]] = field(default_factory=list)

    @property
    def nuclei_per_second(self) -> float:
        return self.nuclei / self.seconds if self.seconds > 0 else 0.0


class CohortRunner:
    """Run a cohort of slides on the Ray cluster this process is connected
    to (``ray.init`` first).

    Args:
        spec (RunnerSpec): The model and slide-runner settings.
        out_dir (str): Output folder (``<stem>/`` per slide and
            ``cohort.csv``); on a cluster, on a shared file system.
        workers (int, optional): Number of actors; default as many as the
            cluster's CPUs (or GPUs) allow, at most one per slide.
        cpus_per_worker (float): Ray CPUs reserved per actor (also its
            torch threads when ``spec.threads`` is unset).
        gpus_per_worker (float): Ray GPUs per actor (0: CPU only; a
            fraction shares a GPU).
        max_task_retries (int): Times a slide is retried after its worker
            died (each retry resumes from the journal).
        poll_interval (float): Seconds between progress polls.
    """

    def __init__(self,
                 spec: RunnerSpec,
                 out_dir: str,
                 workers: Optional[int] = None,
                 cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0,
                 max_task_retries: int = 3,
                 poll_interval: float = 1.0) -> None:
        if workers is not None and int(workers) < 1:
            raise ValueError(f'workers must be >= 1, got {workers}')
        if not cpus_per_worker > 0:
            raise ValueError(f'cpus_per_worker must be > 0, got '
                             f'{cpus_per_worker}')
        if not gpus_per_worker >= 0:
            raise ValueError(f'gpus_per_worker must be >= 0, got '
                             f'{gpus_per_worker}')
        if int(max_task_retries) < 0:
            raise ValueError('max_task_retries must be >= 0')
        self.spec = spec
        self.out_dir = osp.abspath(out_dir)
        self.workers = None if workers is None else int(workers)
        self.cpus_per_worker = float(cpus_per_worker)
        self.gpus_per_worker = float(gpus_per_worker)
        self.max_task_retries = int(max_task_retries)
        self.poll_interval = float(poll_interval)
        if spec.threads is None:
            spec.threads = max(1, int(self.cpus_per_worker))
        self.manifest_path = osp.join(self.out_dir, MANIFEST_NAME)

    # ------------------------------------------------------------ plan
    def plan(self, slides: Sequence[str],
             stems: Optional[Sequence[str]] = None,
             overwrite: bool = False
             ) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
        """Split slides into those to run and those already finished.

        Args:
            slides (Sequence[str]): Slide paths.
            stems (Sequence[str], optional): Output folder names (unique);
                default the file stems.
            overwrite (bool): Run finished slides again.

        Returns:
            tuple[list, list]: ``(slide, stem)`` pairs to run and pairs
            finished earlier (absolute slide paths, input order).
        """
        from .runner import SlideRunner
        slides = [osp.abspath(s) for s in slides]
        stems = list(stems) if stems is not None else [
            slide_stem(s) for s in slides]
        if len(stems) != len(slides):
            raise ValueError('one stem per slide expected')
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise ValueError(f'several slides would write into the same '
                             f'folder: {dup}; give unique stems')
        todo, done = [], []
        for slide, stem in zip(slides, stems):
            out = osp.join(self.out_dir, stem)
            if not overwrite and SlideRunner.finished_run(out) is not None:
                done.append((slide, stem))
            else:
                todo.append((slide, stem))
        return todo, done

    # ------------------------------------------------------------- run
    def run(self,
            slides: Sequence[str],
            stems: Optional[Sequence[str]] = None,
            options: Optional[Dict] = None,
            overwrite: bool = False,
            log: Optional[Callable[[str], None]] = None,
            progress: Optional[Callable[[Dict], None]] = None
            ) -> CohortSummary:
        """Segment every slide; returns when each is finished or failed.

        Args:
            slides (Sequence[str]): Slide paths.
            stems (Sequence[str], optional): Output folder names.
            options (dict, optional): ``slide_mpp``, ``tissue_mask``,
                ``roi`` for every slide.
            overwrite (bool): Redo finished slides.
            log (callable, optional): Gets one line per finished / failed
                slide and per worker event.
            progress (callable, optional): Gets a snapshot dict every
                ``poll_interval``: ``done``, ``total``, ``failed``,
                ``nuclei``, ``nuclei_per_second``, ``running`` (list of
                (slide, tiles_done, tiles_todo)).

        Returns:
            CohortSummary: Counts, nuclei, seconds and the manifest rows of
            these slides.

        Raises:
            RuntimeError: Ray is not initialised, or no worker could build
                the model (the first worker's error).
            ValueError: The cluster has fewer CPUs/GPUs than requested,
                or a bad manifest / stems.
        """
        log = log or (lambda line: None)
        options = dict(options or {})
        start = time.perf_counter()
        todo, done = self.plan(slides, stems, overwrite)
        os.makedirs(self.out_dir, exist_ok=True)
        manifest = CohortManifest(self.manifest_path)
        summary = CohortSummary(total=len(todo) + len(done))
        for slide, stem in done:
            self._finished_earlier(manifest, slide, stem)
            summary.skipped += 1
            log(f'{slide}: already finished in {osp.join(self.out_dir, stem)}'
                ' (--overwrite to redo)')
        for slide, _ in todo:
            manifest.set(slide, 'pending')
        manifest.write()
        if todo:
            self._schedule(todo, options, overwrite, manifest, summary, log,
                           progress, start)
        summary.seconds = time.perf_counter() - start
        keys = [osp.abspath(s) for s in slides]
        summary.rows = [dict(manifest.get(k)) for k in keys]
        return summary

    def _finished_earlier(self, manifest, slide, stem) -> None:
        """Manifest row of a slide finished before this run (its earlier
        row if any, else from its run.json)."""
        from .runner import SlideRunner
        row = manifest.get(slide)
        run = SlideRunner.finished_run(osp.join(self.out_dir, stem)) or {}
        if row is not None and row.get('status') == 'finished':
            return
        manifest.set(slide, 'finished', nuclei=run.get('nuclei', 0),
                     seconds=run.get('seconds', 0.0),
                     worker=(row or {}).get('worker', ''))

    def _worker_count(self, n_slides: int) -> int:
        import ray
        res = ray.cluster_resources()
        cpus, gpus = res.get('CPU', 0.0), res.get('GPU', 0.0)
        fit = math.floor(cpus / self.cpus_per_worker + 1e-9)
        if self.gpus_per_worker > 0:
            fit = min(fit, math.floor(gpus / self.gpus_per_worker + 1e-9))
        n = self.workers if self.workers is not None else min(
            max(fit, 1), n_slides)
        if n > fit:
            # Actors beyond the cluster's resources would wait forever.
            raise ValueError(
                f'{n} worker(s) x {self.cpus_per_worker:g} CPU / '
                f'{self.gpus_per_worker:g} GPU do not fit the Ray cluster '
                f'({cpus:g} CPUs, {gpus:g} GPUs): use fewer --workers or '
                'smaller --cpus-per-worker / --gpus-per-worker')
        return n

    def _new_actor(self, index: int):
        import ray
        cls = ray.remote(CohortWorker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            # A dead worker process is always replaced; how often one
            # slide is retried is bounded by max_task_retries.
            max_restarts=-1,
            max_task_retries=self.max_task_retries,
            # run() and status() at the same time.
            max_concurrency=2)
        return cls.remote(self.spec, index)

    def _schedule(self, todo, options, overwrite, manifest, summary, log,
                  progress, start) -> None:
        """Hand one slide at a time to each ready worker until all are
        done."""
        import ray
        from ray.exceptions import RayError
        if not ray.is_initialized():
            raise RuntimeError('CohortRunner.run needs a Ray connection: '
                               'call ray.init() first')
        n = self._worker_count(len(todo))
        run_id = uuid.uuid4().hex
        actors = {i: self._new_actor(i) for i in range(n)}
        starting = {actors[i].info.remote(): i for i in actors}
        names: Dict[int, str] = {}
        idle: deque = deque()
        running: Dict = {}  # run future -> (worker, slide, stem, t0)
        statuses: Dict = {}  # status future -> worker
        live: Dict[int, Dict] = {}
        pending = deque(todo)
        build_errors = []
        last_poll = 0.0
        while pending or running:
            while pending and idle:
                i = idle.popleft()
                slide, stem = pending.popleft()
                out = osp.join(self.out_dir, stem)
                fut = actors[i].run.remote(slide, out, options, overwrite,
                                           run_id)
                running[fut] = (i, slide, stem, time.perf_counter())
                manifest.set(slide, 'running', worker=names[i])
                manifest.write()
            if not running and not starting:
                # No worker left (each failed to build or died for good).
                if not names:
                    raise RuntimeError('no worker could build the model: '
                                       f'{build_errors[0]}')
                for slide, _ in pending:
                    manifest.set(slide, 'failed', error='no worker left: '
                                 + '; '.join(build_errors[-1:]))
                    summary.failed += 1
                    log(f'{slide}: failed: no worker left')
                manifest.write()
                break
            wait_on = list(running) + list(starting)
            ready, _ = ray.wait(wait_on, num_returns=1,
                                timeout=self.poll_interval)
            for fut in ready:
                if fut in starting:
                    i = starting.pop(fut)
                    try:
                        name = ray.get(fut)
                    except RayError as err:
                        build_errors.append(_short(err))
                        log(f'worker{i} could not start: {_short(err)}')
                        ray.kill(actors.pop(i))
                        continue
                    if names.get(i) != name:  # new, or a new process
                        log(f'{name} ready' if i not in names else
                            f'{name} ready (replaces {names[i]})')
                    names[i] = name
                    idle.append(i)
                    continue
                i, slide, stem, t0 = running.pop(fut)
                live.pop(i, None)
                self._finish(fut, i, names[i], slide, t0, manifest, summary,
                             log)
                # After a RayError the actor is restarted (or dead): ask
                # again whether it is ready before giving it a slide.
                if pending:
                    starting[actors[i].info.remote()] = i
            now = time.perf_counter()
            if progress is not None and now - last_poll >= \
                    self.poll_interval:
                last_poll = now
                self._poll(running, statuses, actors, live)
                progress(_snapshot(summary, live, now - start))
        if progress is not None:  # the final count
            progress(_snapshot(summary, {}, time.perf_counter() - start))
        summary.workers = [names[i] for i in sorted(names)]
        for actor in actors.values():
            ray.kill(actor)

    def _finish(self, fut, i, name, slide, t0, manifest, summary,
                log) -> None:
        """Manifest row and log line of a slide whose call returned."""
        import ray
        from ray.exceptions import RayError
        seconds = time.perf_counter() - t0
        try:
            res = ray.get(fut)
        except RayError as err:
            # The worker died on every attempt (max_task_retries).
            # Ray's text (actor ids, RPC codes) says little more.
            res = dict(status='failed', nuclei=0, worker=name,
                       error=f'the worker process died on each of '
                       f'{self.max_task_retries + 1} attempt(s) (killed, '
                       'out of memory or crashed; see the Ray logs of its '
                       f'node): {type(err).__name__}')
        if res['status'] == 'failed':
            summary.failed += 1
            manifest.set(slide, 'failed', seconds=seconds,
                         worker=res['worker'], error=res['error'])
            log(f'{slide}: failed on {res["worker"]}: {res["error"]}')
        else:
            summary.finished += 1
            summary.nuclei += res['nuclei']
            manifest.set(slide, 'finished', nuclei=res['nuclei'],
                         seconds=seconds, worker=res['worker'])
            resumed = (f', {res["tiles_resumed"]} tiles resumed'
                       if res.get('tiles_resumed') else '')
            log(f'{slide}: {res["nuclei"]} nuclei, {seconds:.1f} s on '
                f'{res["worker"]}{resumed}')
        manifest.write()

    @staticmethod
    def _poll(running, statuses, actors, live) -> None:
        """Collect answered status calls; ask the busy workers again."""
        import ray
        from ray.exceptions import RayError
        if statuses:
            ready, _ = ray.wait(list(statuses), num_returns=len(statuses),
                                timeout=0)
            for fut in ready:
                i = statuses.pop(fut)
                try:
                    status = ray.get(fut)
                except RayError:
                    continue  # restarting; the next poll asks again
                # An answer that arrives after its slide returned is old.
                if status and any(j == i and status['slide'] == slide
                                  for j, slide, *_ in running.values()):
                    live[i] = status
        asked = set(statuses.values())
        for i, *_ in running.values():
            if i not in asked and i in actors:
                statuses[actors[i].status.remote()] = i


def _snapshot(summary: CohortSummary, live: Dict[int, Dict],
              seconds: float) -> Dict:
    """Progress: slides done (finished, failed or finished earlier) of
    the total, nuclei (finished slides of this run plus the running
    slides' so far) and their rate, the running slides' tiles."""
    nuclei = summary.nuclei + sum(s.get('nuclei', 0) for s in live.values())
    return dict(
        done=summary.finished + summary.failed + summary.skipped,
        total=summary.total, failed=summary.failed, nuclei=nuclei,
        nuclei_per_second=nuclei / max(seconds, 1e-9),
        running=[(s['slide'], s['tiles_done'], s['tiles_todo'])
                 for s in live.values()])


def _short(err: BaseException) -> str:
    """One line of a Ray error: the user exception it carries
    (``ValueError: ...``, the last such line of the remote traceback),
    else its first line."""
    lines = [ln.strip() for ln in str(err).strip().splitlines()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[0] if lines and lines[0] else type(err).__name__


_EXCEPTION_LINE = re.compile(
    r'^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): \S')
