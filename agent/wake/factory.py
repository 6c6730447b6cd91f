"""Open the configured wake-word engine, or its fallback, or none: never an exception."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from agent.errors import MiraAgentError
from agent.secrets import find_secret as _find_secret
from agent.wake.detector import WakeDetector, WakeEngineError
from agent.wake.settings import WakeSettings

log = logging.getLogger(__name__)


def _path(p: str, base_dir: Path | None) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _open_engine(engine: str, settings: WakeSettings, find_secret: Callable, base_dir: Path | None,
                 porcupine_create: Callable | None) -> WakeDetector:
    if engine == "openwakeword":
        from agent.wake.openwakeword import BUILTIN_MODELS, OpenWakeWordDetector
        model = settings.model if settings.model in BUILTIN_MODELS else _path(settings.model, base_dir)
        return OpenWakeWordDetector(model, threshold=settings.threshold,
                                    trigger_level=settings.trigger_level,
                                    refractory_s=settings.refractory_s,
                                    vad_gate=settings.vad_gate)
    if engine == "porcupine":
        from agent.wake.porcupine import PorcupineDetector
        p = settings.porcupine
        key = find_secret(credential="porcupine-access-key", file=p.access_key_file,
                          env="PORCUPINE_ACCESS_KEY", what="Porcupine AccessKey",
                          key="wake.porcupine.access_key_file", base_dir=base_dir)
        if not key:
            raise WakeEngineError("porcupine has no AccessKey (set the systemd credential "
                                  "porcupine-access-key, wake.porcupine.access_key_file or "
                                  "PORCUPINE_ACCESS_KEY)")
        keywords = [str(_path(k, base_dir)) if k.endswith(".ppn") else k for k in p.keywords]
        return PorcupineDetector(key, keywords, sensitivities=p.sensitivities,
                                 refractory_s=settings.refractory_s, create=porcupine_create)
    raise WakeEngineError(f"unknown wake engine {engine!r}")


def _describe(engine: str, settings: WakeSettings) -> str:
    if engine == "openwakeword":
        return f"openwakeword {Path(settings.model).stem!r}"
    return f"porcupine {', '.join(map(repr, settings.porcupine.keywords))}"


def open_detector(settings: WakeSettings, find_secret: Callable = _find_secret, *,
                  base_dir: Path | None = None,
                  porcupine_create: Callable | None = None) -> WakeDetector | None:
    """The configured detector, else the fallback engine's, else None (button only).

    find_secret has agent.secrets.find_secret's signature; base_dir resolves relative model, keyword
    and key-file paths (the config file's folder); porcupine_create replaces pvporcupine.create.
    Logs one line: what listens, or what failed and what the daemon does instead.
    """
    if settings.engine == "none":
        log.info("wake word off (wake.engine = none): only the button starts a conversation")
        return None
    failures = []
    engines = [settings.engine]
    if settings.fallback_engine not in ("none", settings.engine):
        engines.append(settings.fallback_engine)
    for engine in engines:
        try:
            detector = _open_engine(engine, settings, find_secret, base_dir, porcupine_create)
        except MiraAgentError as e:  # WakeEngineError, SecretError from the key file
            failures.append(str(e).rstrip("."))
            continue
        except Exception as e:  # a broken native library must not take the daemon down
            log.debug("wake engine %s failed", engine, exc_info=True)
            failures.append(f"{engine} failed to start ({type(e).__name__}: {e})")
            continue
        if failures:
            log.warning("wake word: %s; listening with the fallback %s instead", failures[0],
                        _describe(engine, settings))
        else:
            log.info("wake word: listening for %s", _describe(engine, settings))
        return detector
    if len(failures) > 1:
        failures = [f"{failures[0]}, and the fallback failed too: {failures[1]}"]
    log.warning("wake word: %s; the wake word is off and only the button starts a conversation",
                failures[0])
    return None
