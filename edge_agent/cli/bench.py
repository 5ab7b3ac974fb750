"""`edge-agent bench`: the daemon itself, run on a file at full speed, with its numbers.

It builds the same `Daemon` that `edge-agent run` builds (capture thread, pipeline,
publisher, display) and only swaps the camera for a file read without pacing, so what it
measures is what the appliance does. Numbers belong here and in the issue notes, never in
timed tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from edge_agent.config import Config, load_or_default
from edge_agent.daemon import Daemon, RunReport
from edge_agent.daemon.notify import Notifier
from edge_agent.daemon.stats import percentiles
from edge_agent.demo.clips import multiface_clip, multiface_clip_path
from edge_agent.demo.samples import DEMO_CLIP, sample
from edge_agent.errors import UsageError

BENCH_SUFFIX = "-bench"
log = logging.getLogger("edge_agent.bench")

STAGES = ("decode", "detect", "classify", "track", "publish", "display")


def process_age_s() -> float:
    """Seconds since this process started (interpreter start-up and imports included)."""
    with open("/proc/self/stat") as stat:
        started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as uptime:
        now = float(uptime.read().split()[0])
    return now - started_ticks / os.sysconf("SC_CLK_TCK")


def made_apart(clip: Path) -> Path:
    """The multi-face clip, made in a process of its own the first time it is asked for.

    Making it (decoding and encoding 288 frames) leaves this process's heap larger, and the
    first `bench --multiface` reported its peak RSS 13 MB above every later run's."""
    if not clip.is_file():
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(multiface_clip).result()  # (its errors are raised here)
    return clip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def anon_rss_mb() -> float:
    """The process's own (anonymous) memory now, without the pages it maps from files.

    Peak RSS also counts the shared libraries' file pages, and how many of those a load
    maps depends on the page cache: right after `make setup` wrote them, each fault maps a
    whole large folio, and the same run peaks some 50 MB higher than once the cache was
    dropped (178 against 129 MB here). This part does not move with the cache.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class Progress:
    """A one-line bar on stderr, drawn only on a terminal and at most ten times a second."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self._drawn_at = 0.0

    def draw(self, done: int, fps: float, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self._drawn_at < 0.1):
            return
        self._drawn_at = now
        if self.total:
            filled = int(30 * min(done, self.total) / self.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}"
        else:
            bar = f"{done} frames"
        sys.stderr.write(f"\r{bar} {fps:6.1f} fps" + ("\n" if final else ""))
        sys.stderr.flush()


def _count_frames(path: Path) -> int | None:
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count or None


def run_bench(daemon: Daemon, progress: Progress) -> tuple[list[float], float]:
    """Drive the daemon until the file ends or `frames` have been processed; return every
    frame's latency (drained as it goes: the daemon keeps only a recent window) and the
    highest anonymous memory seen (sampled every 50 ms)."""
    latencies: list[float] = []
    anon_peak = anon_rss_mb()
    daemon.start()
    # The daemon itself stops after `frames` (Daemon(max_frames=...)): stopping it from
    # here would let it run on while this loop notices, and count frames past N.
    while not daemon.wait_done(0.05):
        latencies += daemon.stats.take_latencies()
        anon_peak = max(anon_peak, anon_rss_mb())
        progress.draw(daemon.stats.processed, daemon.stats.fps)
    daemon.shutdown()
    return latencies + daemon.stats.take_latencies(), max(anon_peak, anon_rss_mb())


def summary(
    run: RunReport, config: Config, startup_s: float, latencies: list[float], anon_mb: float
) -> dict[str, Any]:
    totals = dict(run.stage_ms_total, decode=run.decode_s * 1e3)
    frames = run.frames
    return {
        "fps": run.fps,
        "frames": frames,
        "latency_ms": percentiles(latencies),
        "rss_mb": round(peak_rss_mb(), 1),
        "rss_anon_mb": round(anon_mb, 1),
        "startup_s": round(startup_s, 3),
        "stages_ms": {stage: round(totals.get(stage, 0.0) / max(frames, 1), 3) for stage in STAGES},
        "frames_dropped": run.frames_dropped,
        "accelerator": run.accelerator,
        "models": run.models,
        "num_threads": config.models.num_threads,
        "classify_rate_hz": config.classifier.rate_hz,
    }


def print_table(result: dict[str, Any]) -> None:
    latency = result["latency_ms"]
    lines = [
        f"frames      {result['frames']}  ({result['frames_dropped']} dropped)",
        f"fps         {result['fps']}",
        f"latency     p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms",
        f"peak RSS    {result['rss_mb']} MB ({result['rss_anon_mb']} MB of it the process's own)",
        f"first result {result['startup_s']} s after start",
        "stages (mean ms per frame):",
        *(f"  {stage:<9} {ms:7.3f}" for stage, ms in result["stages_ms"].items()),
        f"accelerator {result['accelerator']}, {result['num_threads']} threads",
        *(f"  {name:<9} {model}" for name, model in result["models"].items()),
    ]
    print("\n".join(lines))


def as_bench(config: Config, *, mqtt: bool) -> None:
    """Keep bench off the appliance's broker identity: no MQTT unless asked, and with
    --mqtt its own client id and device id, so it never publishes as the real device,
    flips its availability or kicks the running daemon off the broker."""
    if not mqtt:
        config.mqtt.enabled = False
        return
    device = config.effective_device_id[: 64 - len(BENCH_SUFFIX)]
    config.device_id = f"{device}{BENCH_SUFFIX}"
    client_id = config.mqtt.client_id
    config.mqtt.client_id = (
        f"{client_id}{BENCH_SUFFIX}" if client_id else f"edge-agent-bench-{os.getpid()}"
    )


def _no_outbox_promise(record: logging.LogRecord) -> bool:
    """The publisher's "N event(s) stay in the outbox for the next start" is untrue for
    bench: its state folder is deleted when it ends (bench says so itself)."""
    return "stay in the outbox" not in record.getMessage()


def main(args: argparse.Namespace) -> int:
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames {args.frames}: must be at least 1")
    config = load_or_default(args.config)
    if args.multiface and args.source:
        raise UsageError("--multiface and --source: give one")
    source = (
        made_apart(multiface_clip_path())
        if args.multiface
        else Path(args.source)
        if args.source
        else sample(DEMO_CLIP)
    )
    config.camera.source = str(source)
    config.camera.realtime = False  # full speed, every frame
    config.camera.loop = args.frames is not None  # N frames may be more than one pass
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as state:
        config.state.dir = state  # the outbox must not touch the appliance's own state
        as_bench(config, mqtt=args.mqtt)
        daemon = Daemon(config, None, notifier=Notifier(environ={}), max_frames=args.frames)
        total = args.frames or (_count_frames(source) if source.is_file() else None)
        progress = Progress(total)
        mqtt_log = logging.getLogger("edge_agent.mqtt")
        mqtt_log.addFilter(_no_outbox_promise)
        try:
            latencies, anon_mb = run_bench(daemon, progress)
        finally:  # (only for this run: a later publisher in the process says it again)
            mqtt_log.removeFilter(_no_outbox_promise)
        first = daemon.stats.first_result_at
        # the process's age when the first result came: interpreter start-up included
        startup_s = process_age_s() - (time.monotonic() - first) if first is not None else 0.0
        progress.draw(daemon.stats.processed, daemon.stats.fps, final=True)
        result = summary(daemon.report(), config, startup_s, latencies, anon_mb)
        unsent = daemon.outbox_depth
    if unsent:  # bench's outbox was temporary: these are gone, not kept for a next start
        log.warning("%d event(s) were not acknowledged by the broker before bench ended", unsent)
    if daemon.failure is not None:  # numbers from a run that broke off would mislead
        raise daemon.failure
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return 0
