"""On the wire (issues 12 and 19): append sizes per format, replies cut by the device's own frames,
a black hole mid-utterance with the shipped settings, and the network-fault proof repeated.
Real sockets on 127.0.0.1, the project's server, a fault proxy. MIRA_BENCH_FAULT_ROUNDS sets how
often the fault proof runs (50 by default)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from agent.audio.codec import frame_bytes
from benchmarks.common import Row, median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from wire_scenarios import (black_hole_mid_utterance, cancelled_by_device,  # noqa: E402
                            conversation_through_latency, every_network_fault)

FAULT_ROUNDS = int(os.environ.get("MIRA_BENCH_FAULT_ROUNDS", "50"))
LATENCY_TRIALS = 4
BLACK_HOLES = 3


def _quiet() -> None:
    for name in ("websockets", "agent"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _append_rows(tmp: Path) -> list[Row]:
    rows = []
    for fmt, frame_ms in (("pcm16", 20), ("g711_ulaw", 20), ("g711_alaw", 20), ("pcm16", 40),
                          ("g711_ulaw", 40)):
        server = conversation_through_latency(tmp, one_way_s=0.0, reply_delay_ms=0, fmt=fmt,
                                              frame_ms=frame_ms)
        sizes = sorted(server.sessions[0].append_sizes)
        want = frame_bytes(fmt, frame_ms)
        rows.append(Row(f"append sizes seen, {fmt} {frame_ms} ms frames",
                        " ".join(f"{n} B" for n in sizes) or "none", f"{want} B only", sizes == [want]))
    return rows


def _race_rows(tmp: Path) -> list[Row]:
    rows = []
    for one_way in (0.0, 0.15):
        for delay_ms in (0, 400):
            cut = completed = 0
            for _ in range(LATENCY_TRIALS):
                server = conversation_through_latency(tmp, one_way_s=one_way, reply_delay_ms=delay_ms)
                cut += cancelled_by_device(server)
                completed += sum(r.status == "completed" for s in server.sessions for r in s.replies)
            rows.append(Row(f"replies cut by the device's own frames ({one_way * 1000:.0f} ms each way, "
                            f"server answers after {delay_ms} ms), of {LATENCY_TRIALS}",
                            f"{cut} cut, {completed} whole", "0 cut", cut == 0 and completed >= LATENCY_TRIALS))
    return rows


def _black_hole_rows(tmp: Path) -> list[Row]:
    trials = [black_hole_mid_utterance(tmp) for _ in range(BLACK_HOLES)]
    detect = [t.detect_s for t in trials]
    missing = sum(t.missing for t in trials)
    heard = sum(t.transcript == "tell me a story" for t in trials)
    worst = max(detect)
    return [
        Row(f"black hole mid-utterance, shipped settings: found dead (median of {len(trials)})",
            f"{median(detect):.2f} s", "<= 3.2 s", 0 < median(detect) <= 3.2),
        Row("  worst", f"{worst:.2f} s", "<= 3.5 s", 0 < worst <= 3.5),
        Row("  utterance frames the next session never got", f"{missing}", "0", missing == 0),
        Row("  utterances heard whole by the next session", f"{heard}/{len(trials)}", "all",
            heard == len(trials)),
        Row("  turns dropped", f"{sum(t.dropped_turns for t in trials)}", "0",
            sum(t.dropped_turns for t in trials) == 0),
    ]


def _fault_rows(tmp: Path) -> list[Row]:
    rounds = [every_network_fault(tmp) for _ in range(FAULT_ROUNDS)]
    lost = sum(r.lost for r in rounds)
    disorder = sum(r.disorder for r in rounds)
    lossy = sum(1 for r in rounds if r.lost or r.disorder)
    short = sum(1 for r in rounds if len(set(r.got)) < r.processed - 5)
    overlaps = [n for r in rounds for n in r.overlaps]
    return [
        Row(f"fault proof x{FAULT_ROUNDS} (6 faults each): frames lost", f"{lost}", "0", lost == 0),
        Row("  frames out of order, or a session skipping ahead", f"{disorder}", "0", disorder == 0),
        Row("  rounds with any loss", f"{lossy}/{FAULT_ROUNDS}", "0", lossy == 0),
        Row("  rounds whose last frames never reached a server (> 5)", f"{short}", "0", short == 0),
        Row("  audio sent again after a drop (unconfirmed tail), median / worst",
            f"{median(overlaps) * 20:.0f} / {max(overlaps) * 20} ms", "<= 500 ms",
            max(overlaps) * 20 <= 500),
    ]


def rows() -> list[Row]:
    _quiet()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        return _append_rows(tmp) + _race_rows(tmp) + _black_hole_rows(tmp) + _fault_rows(tmp)
