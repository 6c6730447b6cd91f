"""Audio: devices (sound cards through PortAudio, or WAV files), framing, codecs, playout.

base: the Microphone and Speaker interfaces; devices: open_microphone / open_speaker;
capture, playback, portaudio, mixer: the ALSA backend; wavfile: the file backend;
playout: the buffer shared with the speaker's callback; codec, g711, resample, frames.
"""
