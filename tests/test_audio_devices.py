"""Choosing a device from the config: an index, a unique name part, or the default."""

import pytest

from agent.audio.portaudio import DeviceInfo, find_device
from agent.errors import AudioDeviceError

DEVICES = [
    DeviceInfo(0, "bcm2835 Headphones: - (hw:0,0)", 0, 8, 44100),
    DeviceInfo(1, "seeed-2mic-voicecard: - (hw:1,0)", 2, 2, 48000),
    DeviceInfo(2, "USB PnP Sound Device: Audio (hw:2,0)", 1, 0, 48000),
    DeviceInfo(3, "USB Audio CODEC: - (hw:3,0)", 2, 2, 48000),
    DeviceInfo(4, "default", 32, 32, 44100),
]


def pick(spec, kind="input", default=4):
    return find_device(DEVICES, spec, kind, default, f"{kind}_device").index


def test_a_unique_name_part_picks_the_device_case_blind():
    """'SEEED' picks the ReSpeaker card."""
    assert pick("SEEED") == 1


def test_an_ambiguous_name_part_lists_every_candidate_and_the_fix():
    """'usb' matches two microphones: the error names both, with their indexes, and the fix."""
    with pytest.raises(AudioDeviceError) as e:
        pick("usb")
    assert str(e.value) == ("[audio] input_device = 'usb' matches 2 input devices "
                            "(2: 'USB PnP Sound Device: Audio (hw:2,0)', "
                            "3: 'USB Audio CODEC: - (hw:3,0)'): use a longer part of one name, "
                            "or its index")


def test_only_devices_of_the_right_direction_count():
    """'usb' as a speaker is unique: the PnP device has no output channels."""
    assert pick("usb", "output") == 3
    with pytest.raises(AudioDeviceError, match="matches no input device"):
        pick("Headphones")


def test_an_exact_name_wins_over_names_containing_it():
    """A device named exactly "USB" is picked although two others contain "USB"."""
    devices = DEVICES + [DeviceInfo(5, "USB", 1, 0, 16000)]
    assert find_device(devices, "usb", "input", 4, "input_device").index == 5


def test_an_index_picks_that_device_and_a_wrong_one_says_so():
    """An integer is an index; one with no such input device is an error naming the key."""
    assert pick(3) == 3
    with pytest.raises(AudioDeviceError, match=r"\[audio\] input_device = 0: there is no input"):
        pick(0)


def test_empty_means_the_default_device():
    """'' picks PortAudio's default, and says so when there is none."""
    assert pick("") == 4
    with pytest.raises(AudioDeviceError, match="there is no default input device"):
        pick("", default=None)
