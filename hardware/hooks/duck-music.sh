#!/bin/sh
# Turn the music (MPD, through mpc) down while a conversation is open, and back up after it.
#   [hooks]
#   argv = ["/etc/mira-agent/hooks/duck-music.sh", "15"]
#   events = ["session_opened", "session_closed"]
#   env_allow = ["STATE_DIRECTORY"]
# $1 is the volume while ducked; the volume before is kept in the service's state directory.
saved="${STATE_DIRECTORY:-/tmp}/music-volume-before-duck"
case "$MIRA_EVENT" in
  session_opened)
    mpc volume | sed -n 's/^volume: *\([0-9]*\)%.*/\1/p' > "$saved"
    mpc -q volume "${1:-15}" ;;
  session_closed)
    if [ -s "$saved" ]; then mpc -q volume "$(cat "$saved")" && rm -f "$saved"; fi ;;
esac
