"""`edge-agent run`: the appliance daemon, camera to MQTT and the local display.

Threads:
- capture (`capture.camera.Capture`): reads the source into a one-slot mailbox, so a slow
  consumer never stalls it and the pipeline always gets the newest frame;
- inference (here): newest frame → pipeline → publisher and display. The display only
  swaps a reference; the publisher never touches the network here, but a frame with events
  costs one sqlite commit to the outbox (about 0.3 ms with fsync; most frames have none);
- publishing and display: threads owned by `MqttPublisher` and `Display`;
- the main thread supervises: signals, systemd notifications, STATUS, stats, reloads.

systemd sees READY=1 once the models are loaded, the camera delivers and the first frame is
processed; WATCHDOG=1 every half watchdog period but only if a frame was processed since the
previous ping, so a stalled camera or a hung model gets the service restarted; STOPPING=1
on SIGTERM, then a clean exit 0 within STOP_BUDGET_S. SIGHUP re-reads the config file and
applies what can change without reopening the camera or reloading a model; an invalid file
is logged and the running config kept. A finite source (a file without `loop`) ends the
run: tracks are closed, the publisher flushed, and the exit code is 0.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from edge_agent.capture.camera import Capture
from edge_agent.config import Config, load_or_default, merge_reload, resolve_path
from edge_agent.config import load as load_config
from edge_agent.daemon import logs
from edge_agent.daemon.notify import Notifier
from edge_agent.errors import EX_SOFTWARE, ConfigError, EdgeAgentError

log = logging.getLogger("edge_agent.daemon")

STOP_BUDGET_S = 5.0  # SIGTERM to exit, all included
STATUS_PERIOD_S = 2.0
SIGNAL_POLL_S = 0.1  # how soon the main loop notices a signal
DISPLAY_REFRESH_S = 1.0  # redraw period while no frames drive the display
FPS_WINDOW_S = 5.0
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def local_ip() -> str | None:
    """The IPv4 address of the interface that holds the default route (read locally from
    /proc and the interface; nothing is sent)."""
    try:
        with open("/proc/net/route") as routes:
            next(routes)
            interface = next(
                (line.split()[0] for line in routes if line.split()[1] == "00000000"), None
            )
        if interface is None:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
        return socket.inet_ntoa(answer[20:24])
    except (OSError, StopIteration, IndexError):
        return None


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


class Stats:
    """Counters the inference thread writes and the main thread reads."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.processed = 0
        self.faces = 0
        self._times: deque[float] = deque()
        self._latency_ms: list[float] = []
        self._lock = threading.Lock()
        self.first_result_at: float | None = None
        self.last_result_at = 0.0
        # Sums per stage, for `edge-agent bench`: adding floats costs nothing per frame.
        self.stage_ms_total: dict[str, float] = {}

    def record(self, latency_ms: float, faces: int, stages_ms: dict[str, float]) -> None:
        now = time.monotonic()
        with self._lock:
            if self.first_result_at is None:
                self.first_result_at = now
            self.last_result_at = now
            self.processed += 1
            self.faces = faces
            for stage, ms in stages_ms.items():
                self.stage_ms_total[stage] = self.stage_ms_total.get(stage, 0.0) + ms
            self._times.append(now)
            self._latency_ms.append(latency_ms)
            if len(self._latency_ms) > 10_000:
                del self._latency_ms[:5_000]

    @property
    def fps(self) -> float:
        """Frames processed per second over the last FPS_WINDOW_S."""
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] > FPS_WINDOW_S:
                self._times.popleft()
            count = len(self._times)
        span = min(FPS_WINDOW_S, now - self.started)
        return count / span if span > 0.5 else 0.0

    def take_latencies(self) -> list[float]:
        with self._lock:
            values, self._latency_ms = self._latency_ms, []
        return values


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        notifier: Notifier | None = None,
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.verbose = verbose
        self.notifier = notifier or Notifier()
        self.stats = Stats()
        self.pipeline: Any = None
        self.capture: Capture | None = None
        self.publisher: Any = None
        self.display: Any = None
        self.ready = False
        self.ip: str | None = None
        self.faults: list[str] = []
        self._wake = threading.Event()
        self._stop = threading.Event()  # stop inference
        self._signals: deque[int] = deque()
        self._pending: Config | None = None  # tunables for the inference thread
        self._pending_lock = threading.Lock()
        self._done = threading.Event()  # inference ended (source end or failure)
        self._failure: BaseException | None = None
        self._inference: threading.Thread | None = None
        self._last_result: Any = None
        self._last_t = 0.0

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Only a deque append: Event.set() here could deadlock on the Event's own lock if
        # the signal lands while the main thread is inside wait() or clear().
        self._signals.append(signum)

    def install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _stop_requested(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals)

    # -- startup ------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        self.notifier.status(text)

    def start(self) -> None:
        from edge_agent.vision.pipeline import Pipeline

        config = self.config
        self._status("loading models")
        started = time.monotonic()
        self.pipeline = Pipeline(config)
        log.info(
            "models loaded in %.1f s on %s",
            time.monotonic() - started,
            self.pipeline.accelerator.in_use,
            extra={"ACCELERATOR": self.pipeline.accelerator.in_use},
        )
        if self._stop_requested():
            return
        self.capture = Capture(config.camera)
        self._status(f"opening camera {self.capture.spec.describe()}")
        self.capture.start()
        log.info(
            "camera %s (%s)",
            self.capture.spec.describe(),
            "paced at its own rate"
            if self.capture.paced
            else "every frame"
            if self.capture.mailbox.lossless
            else "newest frame only",
        )
        if config.mqtt.enabled:
            self.publisher = self._open_publisher(config)
        if config.display.kind != "none":
            self.display = self._open_display(config)
        self.ip = local_ip()
        self._inference = threading.Thread(target=self._infer, name="inference", daemon=True)
        self._inference.start()

    def _open_publisher(self, config: Config) -> Any:
        from edge_agent.publish.mqtt import MqttPublisher

        publisher = MqttPublisher(config, accelerator=self.pipeline.accelerator.in_use)
        publisher.start()
        return publisher

    def _open_display(self, config: Config) -> Any:
        from edge_agent.display import open_display

        try:
            display = open_display(config.display)
        except ConfigError:
            raise
        except EdgeAgentError as error:  # a missing panel must not stop detection
            log.error("display %s unavailable: %s", config.display.kind, error)
            self.faults.append(f"display: {error}")
            return None
        if display is not None:
            display.start()
        return display

    # -- the inference thread ------------------------------------------------------------
    def _infer(self) -> None:
        assert self.capture is not None
        try:
            while not self._stop.is_set():
                frame = self.capture.take(timeout=0.25)
                if frame is None:
                    if self.capture.ended:
                        break
                    self._expire_tracks()
                    continue
                with self._pending_lock:
                    pending, self._pending = self._pending, None
                if pending is not None:
                    self.pipeline.apply_tunables(pending)
                    log.info(
                        "tunables in effect from frame %d (detector.score_threshold = %s)",
                        frame.index,
                        self.pipeline.detector.score_threshold,
                    )
                result = self.pipeline.process(frame)
                self._last_result, self._last_t = result, frame.t
                published = time.perf_counter()
                self._publish(result, frame.wall)
                handed_over = time.monotonic()  # latency ends when the publisher has it
                shown = time.perf_counter()
                self._show(result.faces, frame.image)
                stages = result.stages_ms
                stages["publish"] = (shown - published) * 1e3
                stages["display"] = (time.perf_counter() - shown) * 1e3
                self.stats.record((handed_over - frame.read_at) * 1e3, len(result.faces), stages)
                if self.stats.processed == 1:
                    self._wake.set()  # READY is the main thread's to send
        except BaseException as error:  # a bug or a broken model: exit, systemd restarts
            self._failure = error
            log.error("inference failed: %r", error, exc_info=True)
        finally:
            self._done.set()
            self._wake.set()

    def _expire_tracks(self) -> None:
        """A live camera that delivers nothing still ends faces on time, so dashboards
        do not show a face that is long gone."""
        assert self.capture is not None
        if not self.capture.spec.live or not self.pipeline.tracker.tracks:
            return
        events = self.pipeline.expire(self.capture.clock())
        if events:
            from edge_agent.types import FrameResult

            self._publish(FrameResult(self.stats.processed, self._last_t, [], events), time.time())

    def _publish(self, result: Any, wall: float) -> None:
        publisher = self.publisher
        if publisher is None:
            return
        try:
            publisher.publish_frame(result, wall)
        except Exception as error:
            log.error("publishing a frame failed: %s", error)

    def _show(self, faces: list[Any], image: Any) -> None:
        display = self.display  # the main thread may swap it on SIGHUP
        if display is None:
            return
        from edge_agent.display import DisplayState

        try:
            display.update(
                DisplayState(
                    faces=faces,
                    frame=image,
                    fps=self.stats.fps,
                    broker=self.broker,
                    camera=self.camera_state,
                    faults=list(self.faults),
                    ip=self.ip,
                    wall=time.time(),
                )
            )
        except Exception as error:
            log.error("display update failed: %s", error)

    def _refresh_display(self) -> None:
        """Frames drive the display; while none come (camera starting, stalled or lost) the
        main loop redraws it, so the panel says so, shows no stale face, and dims on time."""
        if self.display is not None and self.camera_state != "ok":
            self._show([], None)

    # -- what the main thread reports ------------------------------------------------------
    @property
    def failure(self) -> BaseException | None:
        """What ended the run early: the inference thread's error, else the source's."""
        if self._failure is not None:
            return self._failure
        return self.capture.failure if self.capture is not None else None

    def wait_done(self, timeout: float) -> bool:
        """Wait for the inference thread to end by itself (source ended, or a failure)."""
        return self._done.wait(timeout)

    @property
    def broker(self) -> str:
        if self.publisher is None:
            return "disabled"
        return str(self.publisher.status)

    @property
    def camera_state(self) -> str:
        return "starting" if self.capture is None else self.capture.state

    def status_line(self) -> str:
        faces = self.stats.faces
        parts = [
            f"{self.stats.fps:.1f} fps",
            f"{faces} face{'s' if faces != 1 else ''}",
            f"camera {self.camera_state}",
            f"broker {self.broker}",
            f"{self.capture.dropped if self.capture else 0} dropped",
        ]
        if self.capture is not None and self.capture.error and self.camera_state != "ok":
            parts.append(self.capture.error)
        return ", ".join(parts)

    def stats_message(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "fps": round(self.stats.fps, 2),
            "latency_ms": percentiles(self.stats.take_latencies()),
            "frames_dropped": self.capture.dropped if self.capture else 0,
            "frames_processed": self.stats.processed,
            "accelerator": self.pipeline.accelerator.in_use if self.pipeline else "cpu",
            "camera": self.camera_state,
            "uptime_s": round(time.monotonic() - self.stats.started, 1),
        }
        temperature = cpu_temperature_c()
        if temperature is not None:
            stats["cpu_temp_c"] = temperature
        return stats

    # -- reload -----------------------------------------------------------------------
    def reload(self) -> None:
        if self.config_path is None:
            log.warning("SIGHUP: no config file to reload (running on the built-in defaults)")
            return
        if self.ready:  # before READY, a reload must not announce readiness early
            self.notifier.reloading()
        try:
            try:
                new = load_config(self.config_path)
            except ConfigError as error:
                log.error("config reload rejected, keeping the running config: %s", error)
                return
            outcome = merge_reload(self.config, new)
            for path, (old, value) in outcome.ignored.items():
                log.warning(
                    "config reload: %s = %r (was %r) needs a restart; not applied", path, value, old
                )
            if not outcome.applied:
                log.info("config reloaded from %s: no reloadable change", self.config_path)
                return
            self.config = outcome.config
            with self._pending_lock:
                self._pending = outcome.config
            if any(path.startswith("display.") for path in outcome.applied):
                self._reopen_display()
            if self.publisher is not None:
                self.publisher.set_stats_interval(self.config.mqtt.stats_interval_s)
            if not self.verbose:  # -v on the command line outlasts reloads
                logs.set_level(self.config.log_level)
            changes = ", ".join(
                f"{path} = {value!r} (was {old!r})"
                for path, (old, value) in outcome.applied.items()
            )
            log.info("config reloaded from %s: %s", self.config_path, changes)
        finally:
            if self.ready:
                self.notifier.ready(self.status_line())

    def _reopen_display(self) -> None:
        if self.display is not None:
            self.display.stop()
            self.display = None
        self.faults = [f for f in self.faults if not f.startswith("display:")]
        if self.config.display.kind != "none":
            try:
                self.display = self._open_display(self.config)
            except ConfigError as error:
                log.error("display not reopened: %s", error)

    # -- the main loop --------------------------------------------------------------------
    def run(self) -> int:
        self.install_signals()
        try:
            self.start()
        except BaseException:
            self._abort()
            raise
        watchdog = self.notifier.watchdog_interval_s
        now = time.monotonic()
        next_ping = now + (watchdog or 0.0)
        next_status = now
        next_stats = now + self.config.mqtt.stats_interval_s
        next_ip = now + 60.0
        next_display = now
        reported_camera = self.camera_state
        pinged_at_count = 0
        while True:
            while self._signals:
                signum = self._signals.popleft()
                if signum == signal.SIGHUP:
                    self.reload()
                    # a shorter stats period takes effect now, not after the old one ends
                    next_stats = min(
                        next_stats, time.monotonic() + self.config.mqtt.stats_interval_s
                    )
                else:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    return self.shutdown()
            if self._done.is_set():
                break
            now = time.monotonic()
            if not self.ready and self.stats.processed > 0:
                self.ready = True
                self.notifier.ready(self.status_line())
                log.info("ready: %s", self.status_line())
                pinged_at_count = 0
                next_ping = now
            if watchdog and self.ready and now >= next_ping:
                if self.stats.processed > pinged_at_count:
                    self.notifier.watchdog()
                    pinged_at_count = self.stats.processed
                next_ping = now + watchdog
            if now >= next_status:
                self._status(
                    self.status_line()
                    if self.ready
                    else f"waiting for the first frame: {self.status_line()}"
                )
                next_status = now + STATUS_PERIOD_S
            camera = self.camera_state
            if now >= next_stats or (self.ready and camera != reported_camera):
                # a camera that stalls, is lost or comes back is published at once
                self._send_stats()
                reported_camera = camera
                next_stats = now + self.config.mqtt.stats_interval_s
            if now >= next_ip:
                self.ip, next_ip = local_ip(), now + 60.0
            if now >= next_display:
                self._refresh_display()
                next_display = now + DISPLAY_REFRESH_S
            deadlines = [next_status, next_stats, next_ip, next_display]
            if watchdog and self.ready:
                deadlines.append(next_ping)
            timeout = min(deadlines) - time.monotonic()
            self._wake.wait(min(max(0.0, timeout), SIGNAL_POLL_S))
            self._wake.clear()
        # The inference thread ended by itself: the source ended, or something failed.
        failure = self.failure
        if failure is not None:
            self.shutdown()
            return failure.exit_code if isinstance(failure, EdgeAgentError) else EX_SOFTWARE
        log.info("source ended after %d frame(s)", self.stats.processed)
        return self.shutdown()

    def _send_stats(self) -> None:
        stats = self.stats_message()
        log.info(
            "stats: %.1f fps, latency p50 %.0f ms p95 %.0f ms, %d dropped, camera %s, broker %s",
            stats["fps"],
            stats["latency_ms"]["p50"],
            stats["latency_ms"]["p95"],
            stats["frames_dropped"],
            stats["camera"],
            self.broker,
            extra={
                "FPS": stats["fps"],
                "LATENCY_P95_MS": stats["latency_ms"]["p95"],
                "FRAMES_DROPPED": stats["frames_dropped"],
                "CAMERA": stats["camera"],
            },
        )
        if self.publisher is not None:
            try:
                self.publisher.publish_stats(stats)
            except Exception as error:
                log.error("publishing stats failed: %s", error)

    def shutdown(self) -> int:
        """Stop everything within STOP_BUDGET_S of being asked; 0 unless a thread hangs."""
        deadline = time.monotonic() + STOP_BUDGET_S
        self.notifier.stopping()
        self._stop.set()
        if self.capture is not None:
            self.capture.stop(timeout=0.5)
        if self._inference is not None:
            self._inference.join(timeout=max(0.1, deadline - time.monotonic() - 3.0))
        hung = self._inference is not None and self._inference.is_alive()
        if hung:
            log.error("the inference thread did not stop; exiting without it")
        elif self.pipeline is not None:
            self._close_tracks()
        if self.display is not None:
            self.display.stop()
        if self.publisher is not None:
            self._stop_publisher(deadline)
        log.info("stopped after %d frame(s)", self.stats.processed)
        self.notifier.close()
        if hung:  # a thread stuck inside a model call would hang interpreter exit
            logging.shutdown()
            os._exit(EX_SOFTWARE)
        return 0

    def _abort(self) -> None:
        """Startup failed part way: release what was opened, then let the error through."""
        self._stop.set()
        if self.capture is not None:
            self.capture.stop(timeout=0.5)
        if self.display is not None:
            self.display.stop()
        if self.publisher is not None:
            self._stop_publisher(time.monotonic() + 2.0)
        self.notifier.close()

    def _close_tracks(self) -> None:
        """End every open track, so subscribers see the faces leave."""
        from edge_agent.types import FrameResult

        events = self.pipeline.finish(self._last_t)
        if events and self.publisher is not None and self._last_result is not None:
            closing = FrameResult(self._last_result.frame, self._last_t, [], events)
            self._publish(closing, time.time())

    def _stop_publisher(self, deadline: float) -> None:
        flush = max(0.2, deadline - time.monotonic() - 0.5)
        stopper = threading.Thread(
            target=self.publisher.stop,
            kwargs={"flush_timeout_s": flush},
            name="mqtt-stop",
            daemon=True,
        )
        stopper.start()
        stopper.join(max(0.1, deadline - time.monotonic() - 0.2))
        if stopper.is_alive():
            log.warning("MQTT publisher did not stop within the stop budget")


def main(args: argparse.Namespace) -> int:
    config_path = resolve_path(getattr(args, "config", None))
    config = load_or_default(getattr(args, "config", None))
    target = logs.setup("debug" if getattr(args, "verbose", False) else config.log_level)
    log.info(
        "edge-agent starting (config %s, logging to %s)", config_path or "built-in defaults", target
    )
    verbose = bool(getattr(args, "verbose", False))
    return Daemon(config, config_path, verbose=verbose).run()
