"""Open the configured wake-word engine, or its fallback, or none; only a missing model file raises."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from agent.errors import ConfigError, MiraAgentError
from agent.secrets import find_secret as _find_secret
from agent.wake.detector import WakeDetector, WakeEngineError
from agent.wake.settings import WakeSettings

log = logging.getLogger(__name__)


def _path(p: str, base_dir: Path | None) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def wake_word_models(settings: WakeSettings, base_dir: Path | None) -> list[tuple[str | Path, float]]:
    """(built-in name or resolved .tflite path, threshold) of every configured wake word."""
    from agent.wake.openwakeword import BUILTIN_MODELS
    return [(m if m in BUILTIN_MODELS else _path(m, base_dir), t) for m, t in settings.wake_words()]


def _with_verifier(detector, settings: WakeSettings, base_dir: Path | None):
    """The detector, asking the configured verifier; without it (and a warning) if it is unusable."""
    from agent.wake.verifier import Verifier
    if not settings.verifier:
        return detector
    try:
        detector.use_verifier(Verifier.load(_path(settings.verifier, base_dir),
                                            threshold=settings.verifier_threshold))
    except WakeEngineError as e:
        log.warning("wake word: %s; listening without it (anyone's voice wakes the speaker)", e)
    else:
        log.info("wake word: the owner's voice verifier %s is asked when %s fires", settings.verifier,
                 ", ".join(sorted(detector.verifier.entries)))
    return detector


def describe_verifier(settings: WakeSettings, base_dir: Path | None = None) -> str:
    """What the configured verifier does, for `mira-agent check`; a WakeEngineError naming the file
    when it cannot be used (missing, damaged, made for other model files)."""
    import pyopen_wakeword

    from agent.wake.verifier import Verifier, file_digest
    models = Path(pyopen_wakeword.__file__).parent / "models"
    verifier = Verifier.load(_path(settings.verifier, base_dir), threshold=settings.verifier_threshold)
    files = {Path(m).stem: models / f"{m}.tflite" if isinstance(m, str) else m
             for m, _ in wake_word_models(settings, base_dir)}
    verifier.check_fits({name: file_digest(f) for name, f in files.items()},
                        file_digest(models / "embedding_model.tflite"))
    used = [f"{name} ({verifier.entries[name].positives} clips)" for name in files if name in verifier.entries]
    return f"{settings.verifier}: the owner's voice is checked for {', '.join(used)}"


def _open_engine(engine: str, settings: WakeSettings, find_secret: Callable, base_dir: Path | None,
                 porcupine_create: Callable | None) -> WakeDetector:
    if engine == "openwakeword":
        from agent.wake.openwakeword import OpenWakeWordDetector
        detector = OpenWakeWordDetector(wake_word_models(settings, base_dir),
                                        trigger_level=settings.trigger_level,
                                        refractory_s=settings.refractory_s,
                                        vad_gate=settings.vad_gate)
        return _with_verifier(detector, settings, base_dir)
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


def _engines(settings: WakeSettings) -> list[str]:
    """The engines the settings may start, in order: the main one, then a different fallback."""
    if settings.engine == "none":
        return []  # the wake word is off: a fallback is only for a main engine that fails
    engines = [settings.engine]
    if settings.fallback_engine not in ("none", settings.engine):
        engines.append(settings.fallback_engine)
    return engines


def _model_file_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        return f"{path} does not exist"
    except IsADirectoryError:
        return f"{path} is a folder, not a model file"
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    return None


def check_model_files(settings: WakeSettings, base_dir: Path | None = None) -> None:
    """ConfigError when a model or keyword file the settings name is missing or unreadable: only a
    person can fix that, so it must not quietly turn the wake word off. (A file that is there but
    broken is the engine's to refuse: the fallback, if any, takes over.)"""
    from agent.wake.settings import OPENWAKEWORD_MODELS

    engines = _engines(settings)
    for model, _ in settings.wake_words() if "openwakeword" in engines else ():
        problem = None if model in OPENWAKEWORD_MODELS else _model_file_problem(_path(model, base_dir))
        if problem:
            where = f"models: {model!r}" if settings.models else f"model = {model!r}"
            raise ConfigError(f"[wake] {where}: {problem}; put the .tflite file "
                              f"there, or use a built-in model ({', '.join(OPENWAKEWORD_MODELS)})")
    if "porcupine" in engines:
        for keyword in settings.porcupine.keywords:
            if keyword.endswith(".ppn"):
                problem = _model_file_problem(_path(keyword, base_dir))
                if problem:
                    raise ConfigError(f"[wake.porcupine] keywords: {problem}; put the .ppn file "
                                      f"there, or use a built-in keyword such as \"jarvis\"")


def _describe(engine: str, settings: WakeSettings) -> str:
    if engine == "openwakeword":
        return f"openwakeword {', '.join(repr(Path(m).stem) for m, _ in settings.wake_words())}"
    return f"porcupine {', '.join(map(repr, settings.porcupine.keywords))}"


def open_detector(settings: WakeSettings, find_secret: Callable = _find_secret, *,
                  base_dir: Path | None = None,
                  porcupine_create: Callable | None = None) -> WakeDetector | None:
    """The configured detector, else the fallback engine's, else None (button only).

    find_secret has agent.secrets.find_secret's signature; base_dir resolves relative model, keyword
    and key-file paths (the config file's folder); porcupine_create replaces pvporcupine.create.
    Logs one line: what listens, or what failed and what the daemon does instead. A model file
    that is missing or unreadable raises ConfigError (see check_model_files).
    """
    check_model_files(settings, base_dir)
    if settings.engine == "none":
        log.info("wake word off (wake.engine = none): only the button starts a conversation")
        return None
    failures = []
    for engine in _engines(settings):
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
