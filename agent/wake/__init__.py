"""Wake-word detectors behind one interface (openWakeWord, Porcupine), opened with their fallback."""

from agent.wake.detector import Detection, WakeDetector, WakeEngineError
from agent.wake.factory import open_detector

__all__ = ["Detection", "WakeDetector", "WakeEngineError", "open_detector"]
