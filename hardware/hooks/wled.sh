#!/bin/sh
# The speaker's state on a WLED LED strip (https://kno.wled.ge), over WLED's JSON API.
#   [hooks]
#   argv = ["/etc/mira-agent/hooks/wled.sh", "http://192.168.1.50"]
#   events = ["state"]
# Effects: 0 solid, 1 blink, 2 breathe. Colours as the speaker's own LEDs show them.
[ "$MIRA_EVENT" = state ] || exit 0
case "$MIRA_STATE" in
  idle) json='{"on":false}' ;;
  connecting|thinking) json='{"on":true,"seg":[{"fx":1,"col":[[0,255,255]]}]}' ;;
  listening|follow_up) json='{"on":true,"seg":[{"fx":0,"col":[[0,0,255]]}]}' ;;
  speaking) json='{"on":true,"seg":[{"fx":2,"col":[[0,255,0]]}]}' ;;
  muted) json='{"on":true,"seg":[{"fx":0,"col":[[255,0,0]]}]}' ;;
  *) json='{"on":true,"seg":[{"fx":1,"col":[[255,96,0]]}]}' ;;  # offline, reconnecting, error
esac
exec curl -fsS --max-time 2 -H 'Content-Type: application/json' -d "$json" "$1/json/state" >/dev/null
