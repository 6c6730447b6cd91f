"""Rebuild pyopen-wakeword's TFLite interpreters with one thread and the XNNPACK delegate.

pyopen-wakeword creates its interpreters with default options: TFLite's reference kernels on as
many threads as it likes. The embedding model then costs about 4.6 ms of CPU per 80 ms step on
this machine (0.06 CPU s per audio second); with XNNPACK on one thread it costs about 1 ms, which
is what keeps the idle path under its 0.03 target. The library's streaming code is kept as it is:
only the interpreter (and its tensors) behind each model is swapped. If anything here is missing
(another library build or version), the library's own interpreters stay in use.
"""

from __future__ import annotations

import ctypes as C
import logging

log = logging.getLogger(__name__)

_c_void_p = C.c_void_p


def _declare(lib) -> None:
    lib.TfLiteInterpreterOptionsCreate.argtypes = []
    lib.TfLiteInterpreterOptionsCreate.restype = _c_void_p
    lib.TfLiteInterpreterOptionsSetNumThreads.argtypes = [_c_void_p, C.c_int32]
    lib.TfLiteInterpreterOptionsSetNumThreads.restype = None
    lib.TfLiteInterpreterOptionsAddDelegate.argtypes = [_c_void_p, _c_void_p]
    lib.TfLiteInterpreterOptionsAddDelegate.restype = None
    lib.TfLiteInterpreterOptionsDelete.argtypes = [_c_void_p]
    lib.TfLiteInterpreterOptionsDelete.restype = None
    lib.TfLiteXNNPackDelegateCreate.argtypes = [_c_void_p]
    lib.TfLiteXNNPackDelegateCreate.restype = _c_void_p
    lib.TfLiteXNNPackDelegateDelete.argtypes = [_c_void_p]
    lib.TfLiteXNNPackDelegateDelete.restype = None
    lib.TfLiteInterpreterDelete.argtypes = [_c_void_p]
    lib.TfLiteInterpreterDelete.restype = None


def _build(lib, model, shape: tuple[int, ...] | None) -> tuple[int, int] | None:
    """A one-thread XNNPACK interpreter for a loaded model: (interpreter, delegate), or None."""
    options = lib.TfLiteInterpreterOptionsCreate()
    if not options:
        return None
    lib.TfLiteInterpreterOptionsSetNumThreads(options, 1)
    delegate = lib.TfLiteXNNPackDelegateCreate(None)  # NULL: the delegate's default options
    if delegate:
        lib.TfLiteInterpreterOptionsAddDelegate(options, delegate)
    interpreter = lib.TfLiteInterpreterCreate(model, options)
    lib.TfLiteInterpreterOptionsDelete(options)
    ok = bool(interpreter)
    if ok and shape is not None:
        dims = (C.c_int32 * len(shape))(*shape)
        ok = lib.TfLiteInterpreterResizeInputTensor(interpreter, C.c_int32(0), dims,
                                                    C.c_int32(len(shape))) == 0
    ok = ok and lib.TfLiteInterpreterAllocateTensors(interpreter) == 0
    if not ok:
        if interpreter:
            lib.TfLiteInterpreterDelete(interpreter)
        if delegate:
            lib.TfLiteXNNPackDelegateDelete(delegate)
        return None
    return interpreter, delegate


def speed_up(obj, names: tuple[str, str, str, str], shape: tuple[int, ...] | None,
             delegates: list[int]) -> bool:
    """Swap one interpreter of a pyopen-wakeword object (attribute names: model, interpreter,
    input tensor, output tensor) for a faster one; the delegate is appended to `delegates`,
    to be freed with free_delegates() after the object is closed."""
    model_attr, interp_attr, in_attr, out_attr = names
    try:
        lib = obj.lib
        _declare(lib)
        model, old = getattr(obj, model_attr), getattr(obj, interp_attr)
        built = _build(lib, model, shape)
        if built is None:
            return False
        interpreter, delegate = built
        setattr(obj, in_attr, lib.TfLiteInterpreterGetInputTensor(interpreter, C.c_int32(0)))
        setattr(obj, out_attr, lib.TfLiteInterpreterGetOutputTensor(interpreter, C.c_int32(0)))
        setattr(obj, interp_attr, interpreter)
        lib.TfLiteInterpreterDelete(old)
        if delegate:
            delegates.append(delegate)
        return True
    except (AttributeError, OSError, RuntimeError) as e:  # another build or version of the library
        log.debug("keeping pyopen-wakeword's default interpreter (%s)", e)
        return False


def free_delegates(lib, delegates: list[int]) -> None:
    """Free XNNPACK delegates once the interpreters that used them are deleted."""
    if delegates:
        _declare(lib)
    while delegates:
        lib.TfLiteXNNPackDelegateDelete(delegates.pop())
