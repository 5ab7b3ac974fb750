"""The daemon's main thread: start the parts, then supervise until a signal or the end.

Threads: capture (`capture.camera.Capture`, newest frame into a one-slot mailbox),
inference (`daemon.inference.InferenceLoop`, pipeline → sinks), the MQTT sender and the
display's render thread (owned by those parts), and this one, which handles signals,
systemd notifications, STATUS, stats, reloads and the display while no frames come.

systemd sees READY=1 once the models are loaded, the camera delivers and the first frame is
processed; WATCHDOG=1 every half watchdog period but only if a frame was processed since the
previous ping, so a stalled camera or a hung model gets the service restarted; STOPPING=1
on SIGTERM, then a clean exit 0 within STOP_BUDGET_S. SIGHUP re-reads the config file and
applies what can change without reopening the camera or reloading a model; an invalid file
is logged and the running config kept. A finite source (a file without `loop`) ends the
run: tracks are closed, the publisher flushed, and the exit code is 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.capture.camera import Capture
from edge_agent.config import Config, merge_reload
from edge_agent.config import load as load_config
from edge_agent.daemon import logs
from edge_agent.daemon.host import cpu_temperature_c, local_ip
from edge_agent.daemon.inference import InferenceLoop
from edge_agent.daemon.notify import Notifier
from edge_agent.daemon.parts import open_capture, open_panel, open_pipeline, open_publisher
from edge_agent.daemon.sinks import DisplaySink, Health, PublisherSink, ResultSink
from edge_agent.daemon.statedir import StateDirLock
from edge_agent.daemon.stats import Stats, percentiles
from edge_agent.daemon.timers import Periodic
from edge_agent.errors import EX_SOFTWARE, ConfigError, EdgeAgentError
from edge_agent.publish import MqttPublisher
from edge_agent.publish.messages import iso_utc
from edge_agent.types import BrokerState, BrokerStatus, CameraState
from edge_agent.vision.pipeline import Pipeline

log = logging.getLogger("edge_agent.daemon")

STOP_BUDGET_S = 5.0  # SIGTERM to exit, all included
STATUS_PERIOD_S = 2.0
SIGNAL_POLL_S = 0.1  # how soon the main loop notices a signal
# `online` goes out once a face in view at the start can have been confirmed, or after this
# long without frames (a camera that fails at boot still shows its device and diagnostics).
ANNOUNCE_LATEST_S = 15.0
DISPLAY_REFRESH_S = 1.0  # redraw period while no frames drive the display
IP_REFRESH_S = 60.0
DISABLED = BrokerStatus(BrokerState.DISABLED)


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run did, for `bench` and the demo's summary (read after it ended)."""

    frames: int
    seconds: float  # from the first result to the last
    fps: float
    stage_ms_total: dict[str, float]
    decode_s: float
    frames_dropped: int
    accelerator: str
    models: dict[str, str]  # task -> "file (variant, where it runs)"


class Daemon:
    """`edge-agent run`. `sinks` are extra result consumers (the demo's counters);
    `keep_display` leaves the last picture on the panel at the end (the demo's png);
    `max_frames` ends the run after that many processed frames (bench's exact counts)."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        notifier: Notifier | None = None,
        verbose: bool = False,
        sinks: Sequence[ResultSink] = (),
        keep_display: bool = False,
        max_frames: int | None = None,
    ) -> None:
        self.config = config
        self.max_frames = max_frames  # a finite run (bench): the source "ends" after these
        self.config_path = config_path
        self.verbose = verbose
        self.notifier = notifier or Notifier()
        self.stats = Stats()
        self._started_at = iso_utc(time.time())
        self.models_loaded = threading.Event()
        self.ready = False
        self._extra_sinks = list(sinks)
        self._keep_display = keep_display
        self._pipeline: Pipeline | None = None
        self._capture: Capture | None = None
        self._publisher: MqttPublisher | None = None
        self._display: DisplaySink | None = None
        self._loop: InferenceLoop | None = None
        self._ip: str | None = None
        self._faults: list[str] = []
        self._signals: deque[int] = deque()
        self._state_lock = StateDirLock(Path(config.state.dir))

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Only a deque append: Event.set() here could deadlock on the Event's own lock if
        # the signal lands while the main thread is inside wait() or clear().
        self._signals.append(signum)

    def _stop_requested(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals)

    # -- start ----------------------------------------------------------------------------
    def start(self) -> None:
        """Open every part and start inference; returns at once after that."""
        config = self.config
        self.notifier.status("loading models")
        self._pipeline = open_pipeline(config)
        self.models_loaded.set()
        if self._stop_requested():
            return
        self._capture = open_capture(config, self.notifier.status)
        # (the first stats go out with the fresh state, before `online`)
        self._publisher = open_publisher(
            config, self._pipeline.accelerator.in_use, self.stats_message()
        )
        self._open_display()
        self._ip = local_ip()
        sinks: list[ResultSink] = []
        if self._publisher is not None:
            sinks.append(PublisherSink(self._publisher))
        if self._display is not None:
            sinks.append(self._display)
        self._loop = InferenceLoop(
            self._pipeline,
            self._capture,
            [*sinks, *self._extra_sinks],
            self.stats,
            max_frames=self.max_frames,
        )
        self._loop.start()

    def _open_display(self) -> None:
        display, fault = open_panel(self.config, keep_last_picture=self._keep_display)
        if fault:
            self._faults.append(fault)
        self._display = DisplaySink(display, self.health) if display is not None else None

    # -- what the supervisor reports ------------------------------------------------------
    @property
    def accelerator(self) -> str | None:
        return self._pipeline.accelerator.in_use if self._pipeline is not None else None

    @property
    def failure(self) -> BaseException | None:
        """What ended the run early: the inference thread's error, else the source's."""
        if self._loop is not None and self._loop.failure is not None:
            return self._loop.failure
        return self._capture.failure if self._capture is not None else None

    def wait_done(self, timeout: float) -> bool:
        """Wait for the inference thread to end by itself (source ended, or a failure)."""
        if self._loop is None:
            time.sleep(timeout)
            return False
        return self._loop.done.wait(timeout)

    @property
    def broker(self) -> BrokerStatus:
        return DISABLED if self._publisher is None else self._publisher.status

    @property
    def camera_state(self) -> CameraState:
        return "starting" if self._capture is None else self._capture.state

    @property
    def outbox_depth(self) -> int:
        """Events not yet acknowledged by the broker (0 without MQTT)."""
        return self._publisher.outbox_depth if self._publisher is not None else 0

    @property
    def frames_dropped(self) -> int:
        return self._capture.dropped if self._capture is not None else 0

    def health(self) -> Health:
        return Health(self.stats.fps, self.broker, self.camera_state, tuple(self._faults), self._ip)

    def status_line(self) -> str:
        faces = self.stats.faces
        parts = [
            f"{self.stats.fps:.1f} fps",
            f"{faces} face{'s' if faces != 1 else ''}",
            f"camera {self.camera_state}",
            f"broker {self.broker}",
            f"{self.frames_dropped} dropped",
        ]
        capture = self._capture
        if capture is not None and capture.error and self.camera_state != "ok":
            parts.append(capture.error)
        return ", ".join(parts)

    def stats_message(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "fps": round(self.stats.fps, 2),
            "latency_ms": percentiles(self.stats.take_latencies()),
            "frames_dropped": self.frames_dropped,
            "frames_processed": self.stats.processed,
            "accelerator": self.accelerator or "cpu",
            "camera": self.camera_state,
            "uptime_s": round(time.monotonic() - self.stats.started, 1),
            "started_at": self._started_at,
        }
        temperature = cpu_temperature_c()
        if temperature is not None:
            stats["cpu_temp_c"] = temperature
        return stats

    def report(self) -> RunReport:
        pipeline = self._pipeline
        return RunReport(
            frames=self.stats.processed,
            seconds=self.stats.last_result_at - (self.stats.first_result_at or 0.0)
            if self.stats.first_result_at is not None
            else 0.0,
            fps=round(self.stats.mean_fps, 1),
            stage_ms_total=dict(self.stats.stage_ms_total),
            decode_s=self._capture.decode_s if self._capture is not None else 0.0,
            frames_dropped=self.frames_dropped,
            accelerator=self.accelerator or "cpu",
            models=pipeline.describe_models() if pipeline is not None else {},
        )

    # -- reload ---------------------------------------------------------------------------
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
                    "config reload: %s = %r (was %r) needs a restart; not applied",
                    path,
                    value,
                    old,
                )
            if not outcome.applied:
                log.info("config reloaded from %s: no reloadable change", self.config_path)
                return
            self.config = outcome.config
            if self._loop is not None:
                self._loop.apply(outcome.config)
            if any(path.startswith("display.") for path in outcome.applied):
                self._reopen_display()
            if self._publisher is not None:
                self._publisher.set_stats_interval(self.config.mqtt.stats_interval_s)
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
        old = self._display
        if old is not None and self._loop is not None:
            self._loop.sinks.remove(old)
        if old is not None:
            old.display.stop()
        self._display = None
        self._faults = [f for f in self._faults if not f.startswith("display:")]
        try:
            self._open_display()
        except ConfigError as error:
            log.error("display not reopened: %s", error)
        if self._display is not None and self._loop is not None:
            self._loop.sinks.append(self._display)

    # -- the main loop --------------------------------------------------------------------
    def run(self) -> int:
        for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(handled, self._on_signal)
        self._state_lock.acquire()  # before the models load: a second daemon exits at once
        try:
            self.start()
        except BaseException:
            self._abort()
            raise
        watchdog = Periodic(self.notifier.watchdog_interval_s)
        status = Periodic(STATUS_PERIOD_S, first_in_s=0.0)
        stats = Periodic(self.config.mqtt.stats_interval_s)
        ip = Periodic(IP_REFRESH_S)
        display = Periodic(DISPLAY_REFRESH_S, first_in_s=0.0)
        reported_camera = self.camera_state
        pinged_at_count = 0
        announce_by = time.monotonic() + ANNOUNCE_LATEST_S
        announced = self._publisher is None
        loop = self._loop
        while True:
            while self._signals:
                signum = self._signals.popleft()
                if signum == signal.SIGHUP:
                    self.reload()
                    stats.reset(self.config.mqtt.stats_interval_s)
                else:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    return self.shutdown()
            if loop is None or loop.done.is_set():
                break
            now = time.monotonic()
            if not announced and (
                self.stats.processed >= self.config.tracker.confirm_hits or now >= announce_by
            ):
                assert self._publisher is not None
                self._publisher.announce()
                announced = True
            if not self.ready and self.stats.processed > 0:
                self.ready = True
                self.notifier.ready(self.status_line())
                log.info("ready: %s", self.status_line())
                pinged_at_count = 0
                watchdog.next_at = now
            # (due() first: a period without frames passes without a ping)
            if self.ready and watchdog.due(now) and self.stats.processed > pinged_at_count:
                self.notifier.watchdog()
                pinged_at_count = self.stats.processed
            if status.due(now):
                line = self.status_line()
                self.notifier.status(line if self.ready else f"waiting for the first frame: {line}")
            camera = self.camera_state
            if stats.due(now) or (self.ready and camera != reported_camera):
                # a camera that stalls, is lost or comes back is published at once
                self._send_stats()
                reported_camera = camera
                stats.next_at = now + (stats.period_s or 0.0)
            if ip.due(now):
                self._ip = local_ip()
            if display.due(now):
                self._refresh_display()
            timers = [status, stats, ip, display] + ([watchdog] if self.ready else [])
            timeout = min(timer.seconds_left(time.monotonic()) for timer in timers)
            if not self.ready:  # READY as soon as the first frame is through
                loop.first_result.wait(min(timeout, SIGNAL_POLL_S))
            else:
                loop.done.wait(min(timeout, SIGNAL_POLL_S))
        if loop is None:  # stopped while the models loaded
            return self.shutdown()
        # The inference thread ended by itself: the source ended, or something failed.
        failure = self.failure
        if failure is not None:
            self.shutdown()
            return failure.exit_code if isinstance(failure, EdgeAgentError) else EX_SOFTWARE
        log.info("source ended after %d frame(s)", self.stats.processed)
        return self.shutdown(source_ended=True)

    def _refresh_display(self) -> None:
        """Frames drive the display; while none come (camera starting, stalled or lost) the
        main loop redraws it, so the panel says so, shows no stale face, and dims on time."""
        display = self._display
        if display is not None and self.camera_state != "ok":
            try:
                display.show(None, None)
            except Exception as error:
                log.error("display update failed: %s", error)

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
        if self._publisher is not None:
            try:
                self._publisher.publish_stats(stats)
            except Exception as error:
                log.error("publishing stats failed: %s", error)

    # -- stop -------------------------------------------------------------------------------
    def shutdown(self, *, source_ended: bool = False) -> int:
        """Stop everything within STOP_BUDGET_S of being asked; 0 unless a thread hangs.

        Only a source that ended closes the tracks (face_lost for each face in view): a
        stop or a failure is not the faces leaving, and `offline` says the device no longer
        knows. So a service restart flips no presence sensor to "nobody there" first.
        """
        deadline = time.monotonic() + STOP_BUDGET_S
        self.notifier.stopping()
        if self._capture is not None:
            self._capture.stop(timeout=0.5)
        hung = False
        if self._loop is not None:
            hung = not self._loop.stop(deadline - time.monotonic() - 3.0)
            if hung:
                log.error("the inference thread did not stop; exiting without it")
            elif source_ended:
                self._loop.close_tracks()
        if self._display is not None:
            self._display.display.stop()
        if self._publisher is not None:
            self._stop_publisher(deadline)
        log.info("stopped after %d frame(s)", self.stats.processed)
        self.notifier.close()
        self._state_lock.release()
        if hung:  # a thread stuck inside a model call would hang interpreter exit
            logging.shutdown()
            os._exit(EX_SOFTWARE)
        return 0

    def _abort(self) -> None:
        """Startup failed part way: release what was opened, then let the error through."""
        if self._loop is not None:
            self._loop.stop(0.5)
        if self._capture is not None:
            self._capture.stop(timeout=0.5)
        if self._display is not None:
            self._display.display.stop()
        if self._publisher is not None:
            self._stop_publisher(time.monotonic() + 2.0)
        self.notifier.close()
        self._state_lock.release()

    def _stop_publisher(self, deadline: float) -> None:
        publisher = self._publisher
        assert publisher is not None
        flush = max(0.2, deadline - time.monotonic() - 0.5)
        stopper = threading.Thread(
            target=publisher.stop,
            kwargs={"flush_timeout_s": flush},
            name="mqtt-stop",
            daemon=True,
        )
        stopper.start()
        stopper.join(max(0.1, deadline - time.monotonic() - 0.2))
        if stopper.is_alive():
            log.warning("MQTT publisher did not stop within the stop budget")
