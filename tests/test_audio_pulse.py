"""Real-time PortAudio streams on a PulseAudio null sink whose monitor is the microphone.

Each case starts its own server in a temporary runtime directory (in a child process, which
also points ALSA at it) and stops it by pid.
"""

import pytest

from fixtures_audio import PulseServer, pulseaudio_available, run_scenario

pytest.importorskip("pyaudio")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not pulseaudio_available(),
                                 reason="needs pulseaudio, pulseaudio-utils, libasound2-plugins")]


def test_speaker_to_microphone_round_trip_is_sample_exact_and_volume_scales(tmp_path):
    """Audio played in real time comes back through the monitor and the microphone sample for
    sample; at volume 50 % a level of 8000 plays as 2000."""
    r = run_scenario("pulse_round_trip", {}, str(tmp_path))
    assert r["running"] and r["sizes"] == [480] and r["mic_rate"] == 24000
    assert r["exact_at"] >= 0, r
    assert r["quarter_samples"] >= 4800 - 480  # the first block glides to the new volume


def test_played_positions_track_the_sink_and_flush_silences_within_a_period(tmp_path):
    """Positions follow what the sink really played (median error under 2 ms), playback is real
    time, and flush() reaches the device within a period and reports the true position."""
    r = run_scenario("pulse_playback", {}, str(tmp_path))
    assert r["running"] and r["a_exact"], r
    assert 1.9 < r["play_s"] < 2.5
    assert r["position_error_ms"]["median"] < 5.0, r["position_error_ms"]  # target 10 ms: bench_audio
    assert r["position_error_ms"]["p95"] < 10.0, r["position_error_ms"]
    flush = r["flush"]
    assert 0 <= flush["to_device_ms"] <= 20 + 5, flush
    assert abs(flush["position_error_ms"]) <= 10, flush
    assert flush["to_silence_at_sink_ms"] <= 20 + 1000 * r["latency"] + 40, flush
    assert r["underruns"] == 0


def test_losing_the_sound_server_is_reported_and_both_streams_come_back(tmp_path):
    """Killing the server is seen within a second by microphone and speaker; when it returns they
    reopen on their own and audio flows and plays again."""
    r = run_scenario("pulse_device_loss", {}, str(tmp_path))
    assert r["running"]
    assert r["lost_after_s"] is not None and r["lost_after_s"] < 1.0, r
    assert r["back_after_s"] is not None and r["back_after_s"] < 5.0, r
    assert r["mic_flows_again"] and r["speaker_runs_again"] and r["speaker_plays_again"]
    assert sorted(map(tuple, r["events"])) == [("mic", False), ("mic", True),
                                               ("speaker", False), ("speaker", True)]
    assert r["reopens"] == [1, 1]


def test_hardware_mixer_control_sets_the_sink_volume(tmp_path, monkeypatch):
    """AlsaMixer drives an ALSA mixer control (here PulseAudio's Master) through amixer."""
    from agent.audio.mixer import AlsaMixer
    from agent.errors import AudioDeviceError

    with PulseServer(tmp_path) as server:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        mixer = AlsaMixer("Master")
        assert "100%" in server.pactl("get-sink-volume", "spk")
        mixer.set(40)
        assert mixer.get() == 40
        assert "100%" not in server.pactl("get-sink-volume", "spk")
        with pytest.raises(AudioDeviceError, match="'NoSuchControl'"):
            AlsaMixer("NoSuchControl").set(50)


def test_a_resting_speaker_wakes_for_the_next_delta_and_plays_it_whole(tmp_path):
    """With nothing to play the speaker's stream rests (here after 0.3 s); each delta then
    starts it again, the restart runs at once (the sink's monitor is being read, as the
    daemon's microphone reads it), and no sample of any delta is lost on its way. How
    soon is a benchmark row (bench_audio: delta-to-device after a rest)."""
    r = run_scenario("pulse_wake", {}, str(tmp_path), 6)
    assert r["running"] and all(r["rested"]) and r["restarts_at_once"] is True, r
    assert len(r["delays"]) == 6 and all(0 <= d < 1.0 for d in r["delays"]), r
    assert all(r["whole"]), r
