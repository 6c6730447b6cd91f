"""Offline answers: when the Mira service cannot be reached, the speaker still keeps its timers,
tells the time, stops, changes the volume and mutes, and says what is wrong.

link.py knows whether the service is reachable; assistant.py runs one offline turn (listener.py
hears the command with a pocketsphinx grammar, intents.py reads it, answers.py acts through the
toolbox and words the answer, voice.py speaks it).
"""
