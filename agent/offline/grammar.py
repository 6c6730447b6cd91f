"""The offline commands as one JSGF grammar, and the numbers and labels it can say.

A closed grammar alone would force every sentence into some command. So beside the commands
stands <other>: any run of common words that are not command words. A sentence outside the
commands is heard as such a run, and gets the offline sentence instead of a wrong action.
"""

from __future__ import annotations

UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

LABELS = ("pasta", "egg", "eggs", "tea", "coffee", "oven", "pizza", "rice", "bread", "cake",
          "cookies", "laundry", "potatoes", "chicken", "soup", "nap", "workout", "break",
          "homework", "bath", "dinner", "lunch", "breakfast", "kitchen")
"""Timer names the grammar knows (a label must be a word the recogniser can hear)."""

WAKE_WORDS = ("hey jarvis", "alexa", "hey mycroft", "hey rhasspy", "okay nabu")
"""Heard (and ignored) before a command: the audio of a turn may start with the wake word."""

EXTRA_PRONUNCIATIONS = {"mycroft": "M AY K R AO F T", "rhasspy": "R AE S P IY",
                        "nabu": "N AA B UW", "unmute": "AH N M Y UW T"}
"""Words of the grammar missing from pocketsphinx's en-us dictionary, in its phone set."""

# Everyday words for <other>: none is a command word, so a sentence made of them is no command.
FILLER = """the a an is are was be to of in on at it this that what who where why when which
how do does did can could would should will i you we they he she my your our me us him her
weather rain sunny tomorrow today tonight news play music song radio call send message
email tell me about joke story light lights lamp door open close lock buy add list shopping
calendar meeting appointment remind reminder note read find search show weather forecast
temperature outside inside house home car drive traffic train bus flight book order food
restaurant recipe cook make give get go come see look want need like love know think say
speak talk ask answer question help name day night week month year morning evening
birthday friend mother father family who's there here now later again more less some any
all no yes not and or but if so with from by for up down off out over under about into
good bad great nice big small new old first last next other many much very really just
thank thanks hello hi goodbye bye sorry well okay""".split()

COMMAND_WORDS = frozenset(
    "timer timers set start cancel delete remove stop left long much time what's volume louder "
    "quieter softer mute microphone listening percent minute minutes second seconds hour hours "
    "half quiet enough turn".split())


OTHER_WEIGHT = 1e-46
"""How much less likely than a command a sentence of other words is, before any sound is heard
(with the listener's beams; a sharp balance, measured: 1e-45 refuses more and hears fewer
commands, 1e-50 almost never refuses)."""


MIN_FILLER_LETTERS = 4


def _alternatives(items) -> str:
    return " | ".join(items)


def number_rule() -> str:
    """<num>: one to ninety-nine, as words."""
    tens = [f"{t} [{_alternatives(f'{u}' for u in UNITS[1:])}]" for t in TENS[2:]]
    return "<num> = " + _alternatives(UNITS[1:] + TEENS + tens) + ";"


def build(labels=LABELS, wake_words=WAKE_WORDS, filler=None, other_weight: float = OTHER_WEIGHT) -> str:
    """The grammar: an optional wake word, then one command or a run of other words."""
    # Short words fit any sound: a loop of them would outscore real commands. Longer words
    # only fit sentences that sound like them (measured: benchmarks/bench_offline.py).
    filler = [w for w in (filler if filler is not None else FILLER)
              if w not in COMMAND_WORDS and len(w) >= MIN_FILLER_LETTERS]
    rules = [
        f"public <utt> = [<wake>] [please] (/1/ <command> | /{other_weight:g}/ <other>) [please];",
        f"<wake> = {_alternatives(wake_words)};",
        "<command> = <set_timer> | <cancel_timer> | <time_left> | <what_time> | <stop> "
        "| <volume> | <mute>;",
        # set a timer for five minutes; set a pasta timer for ten minutes; a two minute timer
        "<set_timer> = (set | start) [a | an | the | my] [<label>] timer for <duration> "
        "[<called> <label>] | (set | start) [a | an] <duration> [<label>] timer [<called> <label>] "
        "| <duration> [<label>] timer;",
        "<called> = called | named | for [the] | for my;",
        "<duration> = <num> <minutes> [and <num> <seconds>] | <num> <seconds> "
        "| <num> <hours> [and <num> <minutes>] | (a | one) minute and a half | half an hour "
        "| an hour | a minute;",
        "<minutes> = minute | minutes;",
        "<seconds> = second | seconds;",
        "<hours> = hour | hours;",
        # cancel the timer; cancel the pasta timer; stop the egg timer; cancel all timers
        "<cancel_timer> = (cancel | stop | delete | remove) [the | my] [<label>] timer "
        "| cancel [all] [the | my] timers;",
        # how long is left on the pasta timer; how much time is left
        "<time_left> = how (long | much time) [is] left [on [the | my] [<label>] timer] "
        "| how long until [the | my] [<label>] timer [rings];",
        "<what_time> = what time is it | what's the time | what is the time | tell me the time;",
        "<stop> = stop [it | that] | be quiet | quiet | enough;",
        "<volume> = (turn it | turn the volume | volume) (up | down) | louder | quieter | softer "
        "| (set [the] volume to | volume [to] | turn the volume to) <level> [percent] "
        "| maximum volume;",
        "<level> = zero | <num> | one hundred | a hundred;",
        "<mute> = mute [the microphone] | stop listening;",
        f"<label> = {_alternatives(labels)};",
        number_rule(),
        f"<other> = ({_alternatives(dict.fromkeys(filler))})+;",
    ]
    return "#JSGF V1.0;\ngrammar offline;\n" + "\n".join(rules) + "\n"
