"""Real PortAudio streams over ALSA's file plugin: sample-exact capture and playback, devices.

Each case runs in a child process (ALSA reads ALSA_CONFIG_PATH once per process).
"""

import pytest

from fixtures_audio import alsa_file_card, run_scenario

pytest.importorskip("pyaudio")


@pytest.fixture
def card(tmp_path):
    return tmp_path, alsa_file_card(tmp_path, tmp_path / "capture.raw",
                                    extra=("usb_mic_left", "usb_mic_right"))


def test_capture_at_24k_is_sample_exact_in_20ms_frames(card):
    """A 24 kHz mono device's samples arrive unchanged, in exact 480-sample frames."""
    folder, env = card
    r = run_scenario("capture_exact", env, str(folder), 24000, 1, 0)
    assert r["rate"] == 24000 and r["sizes"] == [480]
    assert r["exact"], r


@pytest.mark.parametrize("rate,channels,channel", [(48000, 2, 1), (16000, 1, 0), (44100, 1, 0)])
def test_capture_picks_the_channel_and_resamples_without_seams(card, rate, channels, channel):
    """The voice channel of a 48/44.1/16 kHz device equals one continuous soxr stream of it:
    chunk edges leave no trace."""
    folder, env = card
    r = run_scenario("capture_exact", env, str(folder), rate, channels, channel)
    assert r["rate"] == rate and r["sizes"] == [480]
    assert r["exact"], r


def test_playback_at_24k_is_sample_exact_and_positions_complete(card):
    """Two items played at 24 kHz reach the device byte for byte, and every sample counts as played."""
    folder, env = card
    r = run_scenario("playback_exact", env, str(folder), 24000, 1)
    assert r["found_at"] >= 0, r
    assert r["drained"] and r["positions"] == {"a": 12000, "b": 7001}


def test_playback_at_48k_stereo_is_one_resampled_stream_on_both_channels(card):
    """At 48 kHz stereo both channels carry the same continuous resampling of the items."""
    folder, env = card
    r = run_scenario("playback_exact", env, str(folder), 48000, 2)
    assert r["rate"] == 48000 and r["lanes_equal"]
    assert r["max_diff"] <= 1 and r["compared"] > 37000, r  # the tail differs: silence follows


def test_blocks_the_device_swallows_are_silence_the_queue_waits_and_a_new_run_starts(card):
    """Told by the device's delay that blocks vanish (a call each 1.2 ms, the delay staying 0,
    as PulseAudio did at a restart), the speaker gives silence, takes nothing from the queue
    and writes nothing to the reference; when the delay grows again the queued delta plays on
    from where it was and the reference counts a new run (the canceller pairs afresh after)."""
    folder, env = card
    r = run_scenario("swallowing_device", env, str(folder))
    assert r["delta_first_block_at"] == 0  # (taken before the device showed it swallows)
    assert r["swallowed"] == 29 and r["silent_while_swallowing"], r
    during, after = r["during"], r["after"]
    assert after["queued"] == during["queued"] == 4800 - 480, r
    assert after["written"] == during["written"] and after["paused"], r
    assert r["rest_of_delta_at"] >= 0 and r["runs_at_end"] == after["runs"] + 1, r


def test_devices_lists_marks_the_pick_and_lists_candidates_of_an_ambiguous_name(card):
    """`mira-agent devices` marks the output the config picks; an ambiguous input name lists both
    candidates and exits 1."""
    folder, env = card
    config = folder / "agent.toml"
    config.write_text('[audio]\ninput_device = "usb_mic"\noutput_device = "spk"\n')
    r = run_scenario("devices_listing", env, str(config))
    assert r["status"] == 1
    text = r["text"]
    assert "matches 2 input devices" in text and "'usb_mic_left'" in text and "'usb_mic_right'" in text
    out = text.split("Output devices")[1]
    assert any(line.startswith(" *") and line.split()[2] == "spk" for line in out.splitlines())
    config.write_text('[audio]\ninput_device = "usb_mic_left"\n')
    r = run_scenario("devices_listing", env, str(config))
    assert r["status"] == 0
    assert any(line.startswith(" *") and "usb_mic_left" in line for line in r["text"].splitlines())


def test_unknown_device_is_a_state_told_in_one_sentence(card):
    """A device name that matches nothing does not raise at start: the listener is told, once, a
    sentence naming the key, and the microphone waits for the device."""
    folder, env = card
    r = run_scenario("open_error", env, "nothing-like-this")
    assert r["error"] is None and r["lost"] is True
    (ok, message), = r["told"]
    assert ok is False and message.startswith("microphone cannot be opened: [audio] input_device = "
                                              "'nothing-like-this' matches no input device")
    assert message.endswith("; waiting for it")



def test_a_slow_consumer_drops_input_counts_it_and_logs_once(card):
    """When frames are taken slower than the device makes them, input is dropped and counted,
    one warning is logged (at most one a minute), and frames keep coming."""
    folder, env = card
    r = run_scenario("capture_overflow", env, str(folder))
    assert r["dropped"] > 0 and r["still_flowing"]
    assert len(r["warnings"]) == 1 and "chunks dropped" in r["warnings"][0]
