"""Speech made and heard on the device: a grammar recogniser (pocketsphinx) and espeak-ng.

Shared by the local Mira server (agent.devserver) and the offline answers (agent.offline).
"""
