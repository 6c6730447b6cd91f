"""PortAudio (through PyAudio): one host per process, finding devices, keeping streams open.

PortAudio lists the devices once, when it is initialised, and its calls are not meant to
race each other; so the process shares one `PortAudioHost` that serialises them and
re-initialises (re-scans the devices) when no stream is open, which is what a reopen after
a device loss needs. `ALSA_CONFIG_PATH` must be set before the first use (tests do).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal

from agent.errors import AudioDeviceError
from agent.service.logs import native_chatter_hidden

log = logging.getLogger(__name__)

Kind = Literal["input", "output"]
KEEPER_POLL_S = 0.5  # how often the microphone's and speaker's keepers look at their stream: a
                     # loss is seen within this, and a 10 Hz look costs ~0.0007 CPU s/s each


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise AudioDeviceError("PyAudio is not installed, so [audio] backend \"alsa\" cannot work: "
                               "install the alsa extra (pip install 'mira-agent[alsa]') or set "
                               "[audio] backend = \"file\"") from None
    return pyaudio


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device, as `mira-agent devices` shows it."""

    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: int

    def channels(self, kind: Kind) -> int:
        return self.inputs if kind == "input" else self.outputs


class PortAudioHost:
    """The process's PortAudio: every call under one lock, re-scanned when no stream is open."""

    def __init__(self):
        self._lock = threading.RLock()
        self._pa = None
        self._streams = 0
        self._keepers: set[StreamKeeper] = set()  # started keepers, reopened around a rescan

    def _get(self):
        if self._pa is None:
            os.environ.setdefault("JACK_NO_START_SERVER", "1")  # PortAudio probes JACK: no jackd
            with native_chatter_hidden():  # ALSA and JACK probe messages
                self._pa = _pyaudio().PyAudio()
        return self._pa

    def devices(self) -> list[DeviceInfo]:
        with self._lock:
            pa = self._get()
            out = []
            for i in range(pa.get_device_count()):
                d = pa.get_device_info_by_index(i)
                out.append(DeviceInfo(i, str(d["name"]), int(d["maxInputChannels"]),
                                      int(d["maxOutputChannels"]), int(d["defaultSampleRate"])))
            return out

    def default_index(self, kind: Kind) -> int | None:
        with self._lock:
            pa = self._get()
            try:
                info = (pa.get_default_input_device_info() if kind == "input"
                        else pa.get_default_output_device_info())
            except (OSError, IOError):
                return None
            return int(info["index"])

    def supports(self, kind: Kind, index: int, rate: int, channels: int) -> bool:
        with self._lock:
            pa = self._get()
            fmt = _pyaudio().paInt16
            try:
                if kind == "input":
                    return bool(pa.is_format_supported(rate, input_device=index,
                                                       input_channels=channels, input_format=fmt))
                return bool(pa.is_format_supported(rate, output_device=index,
                                                   output_channels=channels, output_format=fmt))
            except ValueError:
                return False

    def open(self, kind: Kind, index: int, rate: int, channels: int, frames: int, callback):
        """Open and start a 16-bit callback stream; OSError when PortAudio refuses."""
        pyaudio = _pyaudio()
        with self._lock:
            pa = self._get()
            dev = {"input_device_index": index} if kind == "input" else {"output_device_index": index}
            stream = pa.open(format=pyaudio.paInt16, channels=channels, rate=rate,
                             input=kind == "input", output=kind == "output",
                             frames_per_buffer=frames, stream_callback=callback, **dev)
            self._streams += 1
            return stream

    def drop_queued(self, stream, between: Callable[[], None] = lambda: None) -> None:
        """Discard what the device still holds instead of playing it (Pa_AbortStream), run
        `between` while no callback can run, and start the stream again."""
        pa = _pyaudio()._portaudio  # PyAudio's Stream has no abort; its C module has
        with self._lock:
            pa.abort_stream(stream._stream)
            try:
                between()
            finally:
                pa.start_stream(stream._stream)

    def close(self, stream) -> None:
        with self._lock:
            try:
                stream.stop_stream()
            except OSError:
                pass  # a lost device: closing is what matters
            try:
                stream.close()
            finally:
                self._streams -= 1

    def rescan(self) -> None:
        """Re-initialise PortAudio, which lists the devices afresh (a device that appeared since).

        PortAudio only re-lists devices when no stream is open, so the streams of running
        keepers are closed and reopened around it: a gap of a few periods in the other device,
        paid only while one device is being looked for.
        """
        with self._lock:
            if self._pa is None:
                return
            running = [k for k in self._keepers if k.running]
            for keeper in running:
                keeper.suspend()
            self._pa.terminate()
            self._pa = None
            for keeper in running:
                keeper.resume()

    def terminate(self) -> None:
        """Release PortAudio (at exit, or in tests); the next use starts it again."""
        with self._lock:
            if self._pa is not None and not self._streams:
                self._pa.terminate()
                self._pa = None


HOST = PortAudioHost()


def find_device(devices: list[DeviceInfo], spec: str | int, kind: Kind, default: int | None,
                key: str) -> DeviceInfo:
    """The device a config value names: an index, a unique name substring, or "" (the default).

    An exact name wins over substrings; an ambiguous substring lists the candidates.
    """
    usable = [d for d in devices if d.channels(kind)]
    if isinstance(spec, int):
        for d in usable:
            if d.index == spec:
                return d
        raise AudioDeviceError(f"[audio] {key} = {spec}: there is no {kind} device with that "
                               f"index; `mira-agent devices` lists them")
    if spec == "":
        for d in usable:
            if d.index == default:
                return d
        raise AudioDeviceError(f"there is no default {kind} device: set [audio] {key} to a "
                               "device from `mira-agent devices`")
    exact = [d for d in usable if d.name.lower() == spec.lower()]
    found = exact or [d for d in usable if spec.lower() in d.name.lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise AudioDeviceError(f"[audio] {key} = {spec!r} matches no {kind} device; "
                               "`mira-agent devices` lists them")
    names = ", ".join(f"{d.index}: {d.name!r}" for d in found)
    raise AudioDeviceError(f"[audio] {key} = {spec!r} matches {len(found)} {kind} devices "
                           f"({names}): use a longer part of one name, or its index")


def list_devices(host: PortAudioHost = HOST) -> list[DeviceInfo]:
    """Every PortAudio device."""
    return host.devices()


def chosen_devices(settings, host: PortAudioHost = HOST) -> dict[Kind, DeviceInfo | AudioDeviceError]:
    """The input and output device the [audio] settings pick, or why they pick none."""
    devices = host.devices()
    out: dict[Kind, DeviceInfo | AudioDeviceError] = {}
    for kind in ("input", "output"):
        try:
            out[kind] = find_device(devices, getattr(settings, f"{kind}_device"), kind,
                                    host.default_index(kind), f"{kind}_device")
        except AudioDeviceError as e:
            out[kind] = e
    return out


def format_devices(settings, host: PortAudioHost = HOST) -> str:
    """The table `mira-agent devices` prints; '*' marks the devices the [audio] settings pick."""
    devices = host.devices()
    picks = chosen_devices(settings, host)
    lines = []
    for kind, key in (("input", "input_device"), ("output", "output_device")):
        spec = getattr(settings, key)
        default = host.default_index(kind)
        pick = picks[kind]
        chosen = pick.index if isinstance(pick, DeviceInfo) else None
        problem = None if isinstance(pick, DeviceInfo) else str(pick)
        lines.append(f"{kind.capitalize()} devices ([audio] {key} = {spec!r}):")
        for d in devices:
            if not d.channels(kind):
                continue
            mark = "*" if d.index == chosen else " "
            extra = " (default)" if d.index == default else ""
            lines.append(f" {mark} {d.index:>3}  {d.name}{extra}  "
                         f"{d.channels(kind)} ch, {d.default_rate} Hz")
        if not any(d.channels(kind) for d in devices):
            lines.append("   (none)")
        if problem:
            lines.append(f"   ! {problem}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


class StreamKeeper:
    """Keeps one stream open: opens it when the device is there, notices it die or stall, reopens it.

    open_stream() opens and starts the stream (raising AudioDeviceError or OSError); the
    stream's callback calls beat(). A device that cannot be opened at start (absent, late at
    boot, busy) is a state, not an error: on_state(False, why) is told and opening is retried.
    A stream that is no longer active, or that has not called back for `stall_s`, is lost:
    on_state(False, why). Either way opening is tried after 0.5, 1, 2, ... up to
    `max_backoff_s` seconds, with the device list scanned afresh each time, until it works:
    then on_state(True, what).
    """

    def __init__(self, what: str, open_stream: Callable[[], object],
                 on_state: Callable[[bool, str], None] | None = None, *,
                 host: PortAudioHost = HOST, stall_s: float = 3.0,
                 first_backoff_s: float = 0.5, max_backoff_s: float = 5.0, poll_s: float = 0.1):
        self.what = what
        self._open_stream = open_stream
        self._on_state = on_state
        self._host = host
        self._stall = stall_s
        self._first_backoff = first_backoff_s
        self._max_backoff = max_backoff_s
        self._poll = poll_s
        self._stream = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened_once = False
        self.last_beat = 0.0
        self.lost = False
        """True while the device is absent or lost, until the stream is open again."""
        self.reopens = 0
        """Successful opens after the device was absent or lost."""
        self.resting = False
        """The stream was stopped on purpose (nothing to do): not a loss."""

    def beat(self) -> None:
        """Called from the stream's callback: it is alive."""
        self.last_beat = time.monotonic()

    @property
    def running(self) -> bool:
        """True while a stream is open."""
        return self._stream is not None

    def start(self) -> None:
        """Open the stream if the device is there (else tell on_state why not), and watch it."""
        self._stop.clear()
        try:
            self._open()
        except (AudioDeviceError, OSError) as e:
            self.lost = True
            why = f"{self.what} cannot be opened: {e}; waiting for it"
            log.warning("%s", why)
            self._tell(False, why)
        with self._host._lock:
            self._host._keepers.add(self)
        self._thread = threading.Thread(target=self._watch, name=f"keeper-{self.what}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._host._lock:
            self._host._keepers.discard(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        self._close()

    def suspend(self) -> None:
        """Close the stream for a rescan (the host holds its lock until resume())."""
        self._close()

    def resume(self) -> None:
        """Reopen after a rescan; a failure is left to the watcher to report and retry."""
        try:
            self._open()
        except (AudioDeviceError, OSError) as e:
            log.debug("reopening %s after a rescan failed: %s", self.what, e)

    def _open(self) -> None:
        with self._host._lock:  # a rescan on another keeper's thread sees this stream or none
            self._stream = self._open_stream()
            self.last_beat = time.monotonic()
            self._opened_once = True

    def _close(self) -> None:
        with self._host._lock:
            stream, self._stream = self._stream, None
            if stream is not None:
                self._host.close(stream)

    def drop_queued(self, between: Callable[[], None] = lambda: None) -> None:
        """Silence now: the device's own buffer is discarded, not played (a barge-in's flush)."""
        stream = self._stream
        if stream is None:
            return
        try:
            self._host.drop_queued(stream, between)
        except OSError:
            pass  # a stream dying now is the watcher's to notice and reopen

    def _alive(self) -> bool:
        with self._host._lock:  # not between drop_queued's abort and restart, nor in a rescan
            stream = self._stream
            if stream is None:
                return False
            try:
                active = stream.is_active()
            except OSError:
                return False
        if self.resting:  # (read after: a stream is marked resting before it stops)
            return True
        return active and time.monotonic() - self.last_beat < self._stall

    def _tell(self, ok: bool, message: str) -> None:
        if self._on_state is not None:
            try:
                self._on_state(ok, message)
            except Exception:  # a listener's bug must not stop the reopening
                log.exception("device state listener failed")

    def _watch(self) -> None:
        while not self._stop.wait(self._poll if self._stream is not None else 0):
            if self._alive():
                continue
            if not self.lost:
                self.lost = True
                why = f"{self.what} stopped working (lost or unplugged?); reopening it"
                log.warning("%s", why)
                self._tell(False, why)
            self._close()
            again = self._opened_once
            if not self._reopen():
                return
            self.lost = False
            self.reopens += 1
            back = f"{self.what} works again" if again else f"{self.what} found and opened"
            log.warning("%s", back)
            self._tell(True, back)

    def _reopen(self) -> bool:
        delay = self._first_backoff
        while not self._stop.wait(delay):
            self._host.rescan()
            try:
                self._open()
                return True
            except (AudioDeviceError, OSError) as e:
                log.debug("opening %s failed: %s", self.what, e)
            delay = min(delay * 2, self._max_backoff)
        return False
