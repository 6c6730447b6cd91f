#!/usr/bin/env bash
# Install mira-agent as a systemd service on Raspberry Pi OS or Debian, Bookworm or Trixie, 64-bit
# (arm64 or amd64). Safe to run again: it upgrades the program to the versions in constraints.txt
# and keeps the config and keys already there.
#
#   sudo systemd/install.sh                              install or upgrade, ask for the key, start
#   sudo systemd/install.sh --key-stdin < key.txt        take the key from standard input
#   sudo systemd/install.sh --key-file key.txt           take the key from a file
#   sudo systemd/install.sh --uninstall [--purge]        remove it (--purge: config, keys, user too)
#
# Options:
#   --no-start                install and enable, but do not (re)start the service now
#   --porcupine-key-file F    the Picovoice AccessKey for the porcupine wake engine, from file F
#   --button-only             a reduced install for 32-bit Raspberry Pi OS (armhf): no wake word and
#                             no echo canceller; a talk button ([button] pin) starts conversations
#   --force                   install on a distribution or architecture not listed below anyway
#   --source DIR              the mira-agent source tree (default: the folder above this script)
#   --root DIR                write every file under DIR instead of /, reading DIR/etc/os-release;
#                             commands that would change this machine (apt-get, useradd, pip,
#                             systemctl start, ...) are printed, not run
# Supported: Debian 12 (bookworm) and 13 (trixie), and Raspberry Pi OS Bookworm and Trixie built on
# them, on arm64 or amd64; armhf only with --button-only.
# Before it starts the service it checks the config (mira-agent check --offline, as the service
# user); with no key, or a config that cannot work on this box, it installs and enables the service,
# says what to edit and how to start it, and does not start it. Keys are never read from the
# environment or the command line (both end up in logs and the shell history). In a chroot or a
# container (an image being built: systemd not running) the service is enabled for the next boot.
# Exit status: 0 installed (the last line says whether it was started); 1 refused or failed.
# Environment:
#   DESTDIR                 same as --root
#   MIRA_INSTALL_DRY=1      print the commands instead of running them (needs --root)
set -euo pipefail

SERVICE=mira-agent.service
SERVICE_USER=mira-agent
DEVICE_GROUPS=(audio gpio spi)
# audio is a Debian base group; gpio and spi come with Raspberry Pi OS and are made if missing.
MADE_GROUPS=(gpio spi)
PREFIX=/opt/mira-agent
ETC=/etc/mira-agent
STATE=/var/lib/mira-agent
UNIT_DIR=/etc/systemd/system
APT_PACKAGES=(python3-venv python3-dev gcc pkg-config portaudio19-dev libportaudio2
              libsystemd-dev alsa-utils libasound2-plugins procps)
SUPPORTED="Debian 12 (bookworm) or 13 (trixie), or Raspberry Pi OS Bookworm or Trixie, on arm64 or amd64"
ARMHF_REFUSAL="32-bit Raspberry Pi OS (armhf) cannot run the wake word or the echo canceller: the\
 Pi 3, 3B+, 4, 400, 5, 500, Zero 2 W and Compute Modules 3, 4 and 5 run Raspberry Pi OS (64-bit),\
 which Raspberry Pi Imager (https://www.raspberrypi.com/software/) writes to the card; on this\
 system, --button-only installs without them (a talk button starts conversations)"
KEY_HELP="--key-stdin < key.txt or --key-file key.txt"

ROOT=${DESTDIR:-/}
SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY=${MIRA_INSTALL_DRY:-0}
ACTION=install
PURGE=0
START=1
KEY_STDIN=0
KEY_FILE=
PORCUPINE_KEY_FILE=
BUTTON_ONLY=0
FORCE=0

say() { printf '%s\n' "mira-agent install: $*"; }
die() { printf '%s\n' "mira-agent install: error: $*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --uninstall) ACTION=uninstall ;;
        --purge) PURGE=1 ;;
        --no-start) START=0 ;;
        --key-stdin) KEY_STDIN=1 ;;
        --key-file) [[ $# -ge 2 ]] || die "--key-file needs a file"; KEY_FILE=$2; shift ;;
        --key-file=*) KEY_FILE=${1#--key-file=} ;;
        --porcupine-key-file) [[ $# -ge 2 ]] || die "--porcupine-key-file needs a file"
                              PORCUPINE_KEY_FILE=$2; shift ;;
        --porcupine-key-file=*) PORCUPINE_KEY_FILE=${1#--porcupine-key-file=} ;;
        --button-only) BUTTON_ONLY=1 ;;
        --force) FORCE=1 ;;
        --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --source) [[ $# -ge 2 ]] || die "--source needs a directory"; SOURCE=$2; shift ;;
        --source=*) SOURCE=${1#--source=} ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help); nothing was changed" ;;
    esac
    shift
done

if [[ $ACTION == install && $PURGE == 1 ]]; then
    die "--purge only goes with --uninstall (sudo $0 --uninstall --purge); nothing was changed"
fi
if [[ $ACTION == uninstall ]] && [[ $KEY_STDIN == 1 || -n $KEY_FILE$PORCUPINE_KEY_FILE || $BUTTON_ONLY == 1 ]]; then
    die "--uninstall takes no key or install options; nothing was changed"
fi
if [[ $KEY_STDIN == 1 && -n $KEY_FILE ]]; then
    die "give the key one way: --key-stdin or --key-file; nothing was changed"
fi
for var in MIRA_API_KEY PORCUPINE_ACCESS_KEY; do
    if [[ -n ${!var:-} ]]; then
        die "$var is set in the environment, which the installer does not read (a key on a command" \
            "line stays in the shell history): unset it and pass the key with $KEY_HELP" \
            "(--porcupine-key-file for the Picovoice AccessKey); nothing was changed"
    fi
done
# pip reads a bare relative name ("src[device]") as a package on the index, not as a folder.
[[ -d $SOURCE ]] || die "--source $SOURCE is not a directory; nothing was changed"
SOURCE=$(cd "$SOURCE" && pwd)

ROOT=${ROOT%/}
if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || die "--root $ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT == / ]] && ROOT=
fi
# Files go under $ROOT; commands act on this machine, so with a root they are only printed.
# LIVE: systemd runs this machine now. Not in a root, nor in a chroot or container (an image being
# built), where the unit is enabled for the next boot and nothing is started.
LIVE=0
[[ -z $ROOT && -d /run/systemd/system ]] && LIVE=1
if [[ -n $ROOT ]]; then
    DRY=1
elif [[ $DRY == 1 ]]; then
    die "MIRA_INSTALL_DRY=1 needs --root DIR (files would still be written to /)"
elif [[ $(id -u) -ne 0 ]]; then
    die "run as root (sudo $0)"
fi

# A command that changes the system: run it, or print it in dry mode. Never pass secrets here.
run() {
    if [[ $DRY == 1 ]]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

# --- decisions: nothing on the machine changes before all of these have passed ---------------

CODENAME=unknown
ARCH=unknown
check_platform() {
    local release=$ROOT/etc/os-release id=unknown name=unknown
    [[ -r $release ]] || release=$ROOT/usr/lib/os-release
    if [[ -r $release ]]; then
        # shellcheck disable=SC1090
        read -r id CODENAME < <(. "$release" && printf '%s %s\n' "${ID:-unknown}" "${VERSION_CODENAME:-unknown}")
        # shellcheck disable=SC1090
        name=$(. "$release" && printf '%s' "${PRETTY_NAME:-$id}")
    fi
    ARCH=$(dpkg --print-architecture 2>/dev/null || true)
    if [[ -z $ARCH ]]; then
        case $(uname -m) in
            aarch64) ARCH=arm64 ;; x86_64) ARCH=amd64 ;; armv6l|armv7l) ARCH=armhf ;; *) ARCH=$(uname -m) ;;
        esac
    fi
    if [[ ! $id =~ ^(debian|raspbian)$ || ! $CODENAME =~ ^(bookworm|trixie)$ ]]; then
        [[ $FORCE == 1 ]] || die "$name ($id $CODENAME) is not supported; mira-agent installs on" \
            "$SUPPORTED. --force installs anyway (untested: it may fail inside pip); nothing was changed"
        say "warning: $name is not a supported system; installing anyway (--force)"
    fi
    case $ARCH in
        arm64|amd64) ;;
        armhf)
            [[ $BUTTON_ONLY == 1 ]] || die "$ARMHF_REFUSAL; nothing was changed" ;;
        *)
            [[ $FORCE == 1 ]] || die "the $ARCH architecture is not supported; mira-agent installs on" \
                "$SUPPORTED. --force installs anyway (untested); nothing was changed"
            say "warning: $ARCH is not a supported architecture; installing anyway (--force)" ;;
    esac
    if [[ $BUTTON_ONLY == 1 ]]; then
        say "reduced install (--button-only): no wake word, no echo canceller; a talk button starts conversations"
    fi
}

# A key as given: one line of printable characters, no spaces. Prints the key; dies on anything else.
read_key() {
    local what=$1 from=$2 text=$3 key lines
    lines=$(printf '%s\n' "$text" | grep -c '[^[:space:]]' || true)
    key=${text//[$'\r\n\t ']/}
    [[ -n $key ]] || die "$from gave an empty $what; nothing was changed"
    [[ $lines -le 1 ]] || die "$from holds $lines lines; it must hold the $what alone on one line; nothing was changed"
    [[ $key =~ ^[!-~]+$ ]] || die "$from: the $what has characters a key cannot have (not printable ASCII); nothing was changed"
    [[ ${#key} -ge 8 && ${#key} -le 1024 ]] || die "$from: the $what is ${#key} characters long, which no key is; nothing was changed"
    printf '%s' "$key"
}

read_key_file() {
    local what=$1 file=$2
    [[ -r $file && -f $file ]] || die "cannot read the $what file $file; nothing was changed"
    read_key "$what" "the file $file" "$(cat -- "$file")"
}

KEY=
PORCUPINE_KEY=
HAVE_KEY=0
read_keys() {
    local text=
    if [[ $KEY_STDIN == 1 ]]; then
        text=$(cat)
        KEY=$(read_key "API key" "--key-stdin (standard input)" "$text")
    elif [[ -n $KEY_FILE ]]; then
        KEY=$(read_key_file "API key" "$KEY_FILE")
    elif [[ ! -s $ROOT$ETC/mira-api-key && -t 0 ]]; then
        IFS= read -r -s -p "Mira API key (input hidden, empty to skip): " text
        printf '\n'
        if [[ -n ${text//[[:space:]]/} ]]; then
            KEY=$(read_key "API key" "the prompt" "$text")
        fi
    fi
    if [[ -n $PORCUPINE_KEY_FILE ]]; then
        PORCUPINE_KEY=$(read_key_file "Picovoice AccessKey" "$PORCUPINE_KEY_FILE")
    fi
}

# --- changes ----------------------------------------------------------------------------------

install_packages() {
    local missing=() p wanted=("${APT_PACKAGES[@]}")
    # lgpio (the Pi's GPIO backend) has no wheel for Python 3.13 on ARM: pip builds it with swig.
    if [[ $CODENAME == trixie && $ARCH =~ ^(arm64|armhf)$ ]]; then
        wanted+=(swig)
    fi
    # numpy and soxr may have no armhf wheel: pip builds them.
    if [[ $ARCH == armhf ]]; then
        wanted+=(g++ cmake)
    fi
    for p in "${wanted[@]}"; do
        if [[ $DRY == 1 ]] || ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$p")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    say "installing Debian packages: ${missing[*]}"
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

group_exists() { [[ $DRY != 1 ]] && getent group "$1" >/dev/null; }
user_exists() { [[ $DRY != 1 ]] && getent passwd "$1" >/dev/null; }

create_user() {
    local g
    for g in "${MADE_GROUPS[@]}"; do
        group_exists "$g" || run groupadd --system "$g"
    done
    if ! user_exists "$SERVICE_USER"; then
        say "creating system user $SERVICE_USER"
        run useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "Mira voice assistant" "$SERVICE_USER"
    fi
    local IFS=,
    run usermod --append --groups "${DEVICE_GROUPS[*]}" "$SERVICE_USER"
}

# pip builds in the folder it installs from: a copy of what the package build reads keeps
# root-owned build/ and *.egg-info out of the user's checkout.
STAGE=
stage_source() {
    STAGE=$(mktemp -d "${TMPDIR:-/tmp}/mira-agent-src.XXXXXX")
    trap 'rm -rf "$STAGE"' EXIT
    mkdir "$STAGE/mira-agent"
    cp -R "$SOURCE/agent" "$SOURCE/pyproject.toml" "$SOURCE/README.md" "$SOURCE/constraints.txt" \
        "$STAGE/mira-agent/"
    find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
}

install_program() {
    local venv=$PREFIX/venv extras=device
    [[ $BUTTON_ONLY == 1 ]] && extras=alsa,gpio,systemd
    mkdir -p "$ROOT$PREFIX"
    if [[ ! -x $ROOT$venv/bin/python ]]; then
        say "creating the virtual environment $venv"
        run python3 -m venv "$ROOT$venv"
    fi
    stage_source
    say "installing mira-agent[$extras] from $SOURCE into $venv with the versions in constraints.txt" \
        "(several minutes on a Pi: PyAudio and systemd-python are compiled; pip's progress follows)"
    run "$ROOT$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip wheel
    # PYPI=1 makes lgpio's source build (no wheel for Python 3.13 on ARM) link its own copy of
    # liblgpio, which Debian does not package.
    run env PYPI=1 "$ROOT$venv/bin/pip" install --disable-pip-version-check --progress-bar on \
        --upgrade --constraint "$STAGE/mira-agent/constraints.txt" "$STAGE/mira-agent[$extras]"
    # The unit's Documentation= points here.
    rm -rf "$ROOT$PREFIX/doc"
    mkdir -p "$ROOT$PREFIX/doc"
    if [[ -d $SOURCE/hardware ]]; then
        cp -R "$SOURCE/hardware" "$ROOT$PREFIX/doc/hardware"
    fi
}

# Sets KEY = VALUE inside [SECTION] of a TOML file: the reduced install's changes to the example.
set_toml() {
    local file=$1 section=$2 key=$3 value=$4 tmp
    tmp=$(mktemp "$file.XXXXXX")
    awk -v section="[$section]" -v key="$key" -v value="$value" '
        /^\[/ { inside = ($0 == section) }
        inside && $0 ~ "^" key " *=" { print key " = " value; done = 1; next }
        { print }
        END { exit done ? 0 : 1 }' "$file" >"$tmp" || { rm -f "$tmp"; die "$file has no $key in [$section]"; }
    cat "$tmp" >"$file"
    rm -f "$tmp"
}

install_config() {
    local etc=$ROOT$ETC
    mkdir -p "$etc"
    chmod 0750 "$etc"
    run chown "root:$SERVICE_USER" "$etc"
    # The example is refreshed on every install; the live config is the user's and is kept.
    install -m 0640 "$SOURCE/config/agent.toml" "$etc/agent.toml.example"
    run chown "root:$SERVICE_USER" "$etc/agent.toml.example"
    if [[ -e $etc/agent.toml ]]; then
        say "kept $ETC/agent.toml (the new example is $ETC/agent.toml.example)"
    else
        install -m 0640 "$SOURCE/config/agent.toml" "$etc/agent.toml"
        if [[ $BUTTON_ONLY == 1 ]]; then
            set_toml "$etc/agent.toml" wake engine '"none"'
            set_toml "$etc/agent.toml" echo enabled false
            set_toml "$etc/agent.toml" echo barge_in false
        fi
        run chown "root:$SERVICE_USER" "$etc/agent.toml"
        say "wrote $ETC/agent.toml: edit it for your microphone, speaker and buttons"
    fi
}

# Write a secret to a root-only file. printf is a shell builtin: the secret is in no process's argv.
write_secret() {
    local path=$1 value=$2 tmp
    tmp=$(umask 077 && mktemp "$path.XXXXXX")
    printf '%s\n' "$value" >"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$path"
    run chown root:root "$path"
}

install_keys() {
    local keyfile=$ROOT$ETC/mira-api-key
    if [[ -n $KEY ]]; then
        write_secret "$keyfile" "$KEY"
        say "stored the API key in $ETC/mira-api-key (mode 0600, passed to the service as a credential)"
    elif [[ -s $keyfile ]]; then
        chmod 0600 "$keyfile"
        say "kept the API key in $ETC/mira-api-key"
    fi
    [[ -s $keyfile ]] && HAVE_KEY=1
    if [[ -n $PORCUPINE_KEY ]]; then
        write_secret "$ROOT$ETC/porcupine-access-key" "$PORCUPINE_KEY"
        say "stored the Porcupine AccessKey in $ETC/porcupine-access-key"
    fi
}

# Enabling offline (a root, a chroot) only makes a symlink, so it is really done, not printed.
# Without systemctl (a bare build container) the same WantedBy= link is made by hand.
WANTS=multi-user.target.wants
enable_in_root() {
    if command -v systemctl >/dev/null; then
        systemctl --root="${ROOT:-/}" --quiet enable "$SERVICE"
    else
        mkdir -p "$ROOT$UNIT_DIR/$WANTS"
        ln -sfn "$UNIT_DIR/$SERVICE" "$ROOT$UNIT_DIR/$WANTS/$SERVICE"
    fi
}

disable_in_root() {
    if command -v systemctl >/dev/null; then
        systemctl --root="${ROOT:-/}" --quiet disable "$SERVICE"
    else
        rm -f "$ROOT$UNIT_DIR/$WANTS/$SERVICE"
    fi
}

install_unit() {
    mkdir -p "$ROOT$UNIT_DIR"
    install -m 0644 "$SOURCE/systemd/$SERVICE" "$ROOT$UNIT_DIR/$SERVICE"
    if [[ $LIVE == 1 ]]; then
        run systemctl daemon-reload
        run systemctl --quiet enable "$SERVICE"
    else
        enable_in_root
    fi
}

# --- validate, then start ---------------------------------------------------------------------

# Runs `mira-agent check --offline` as the service will run: its user and groups, its working
# directory, and the keys as credentials. Prints the check's table; returns its exit status.
check_config() {
    local bin=$1 mode=(check --offline) creds status=0 k
    # Before `check --offline` existed, the whole check (with the server row) stands in.
    [[ $("$bin" check --help 2>/dev/null || true) == *--offline* ]] || mode=(check)
    if [[ -n $ROOT ]]; then
        # A root's keys are already named as the unit's credentials.
        (cd "$ROOT" && CREDENTIALS_DIRECTORY=$ROOT$ETC "$bin" "${mode[@]}" --config "$ROOT$ETC/agent.toml") || status=$?
        return "$status"
    fi
    creds=$(mktemp -d)
    for k in mira-api-key porcupine-access-key; do
        [[ -s $ETC/$k ]] && install -m 0400 -o "$SERVICE_USER" "$ETC/$k" "$creds/$k"
    done
    chown "$SERVICE_USER" "$creds"
    install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE"
    (cd "$STATE" && runuser -u "$SERVICE_USER" -- env CREDENTIALS_DIRECTORY="$creds" \
        "$bin" "${mode[@]}" --config "$ETC/agent.toml") || status=$?
    rm -rf "$creds"
    return "$status"
}

not_started() {
    say "installed and enabled, NOT started: $1"
    say "then start it: sudo systemctl start $SERVICE (or run this installer again)"
}

start_service() {
    local bin=$ROOT$PREFIX/venv/bin/mira-agent
    if [[ $START == 0 ]]; then
        say "installed and enabled; not started (--no-start)"
        return
    fi
    if [[ $HAVE_KEY == 0 ]]; then
        not_started "no API key; store it with: sudo $0 --key-stdin < key.txt (or write it to $ETC/mira-api-key, mode 0600, owner root)"
        return
    fi
    if [[ -x $bin ]]; then
        # An upgrade restarts the service anyway, and the running one holds the sound card.
        if [[ $LIVE == 1 ]] && systemctl --quiet is-active "$SERVICE"; then
            say "stopping the running service to check the config against the devices"
            systemctl stop "$SERVICE"
        fi
        local who=", as the user $SERVICE_USER"
        [[ -z $ROOT ]] || who=" in $ROOT"
        say "checking $ETC/agent.toml on this box (mira-agent check --offline$who)"
        if ! check_config "$bin" | sed 's/^/    /'; then
            not_started "the check above found what would stop it; edit $ETC/agent.toml as its fix lines say"
            return
        fi
    else
        say "dry run: $PREFIX/venv/bin/mira-agent check --offline would check the config here"
    fi
    if [[ $LIVE == 0 && $DRY == 0 ]]; then
        say "installed and enabled for the next boot; not started: systemd is not running here" \
            "(a chroot or a container)"
        return
    fi
    run systemctl restart "$SERVICE"
    if [[ $DRY == 1 ]]; then
        say "dry run: nothing was started"
        return
    fi
    say "started. Check it with: systemctl status $SERVICE; journalctl -u $SERVICE -f;" \
        "sudo $PREFIX/venv/bin/mira-agent check --config $ETC/agent.toml"
}

uninstall() {
    say "removing $SERVICE and $PREFIX"
    if [[ $LIVE == 1 ]]; then
        run systemctl --quiet disable --now "$SERVICE" || true
    elif [[ -e $ROOT$UNIT_DIR/$SERVICE ]]; then
        disable_in_root
    fi
    rm -f "$ROOT$UNIT_DIR/$SERVICE"
    [[ $LIVE == 0 ]] || run systemctl daemon-reload
    rm -rf "$ROOT$PREFIX"
    if [[ $PURGE == 1 ]]; then
        say "purging $ETC, $STATE and the user $SERVICE_USER"
        rm -rf "$ROOT$ETC" "$ROOT$STATE" "$ROOT$UNIT_DIR/$SERVICE.d"
        if user_exists "$SERVICE_USER" || [[ $DRY == 1 ]]; then
            run userdel "$SERVICE_USER"
        fi
    else
        say "kept $ETC (config and keys) and local drop-ins; --purge removes them and the user"
    fi
    # The Debian packages and the audio/gpio/spi groups are shared with the rest of the system: kept.
}

main() {
    for f in config/agent.toml "systemd/$SERVICE" pyproject.toml constraints.txt README.md agent/__init__.py; do
        [[ $ACTION == uninstall || -f $SOURCE/$f ]] ||
            die "$SOURCE/$f is missing: run this script from a mira-agent checkout (or pass --source);" \
                "nothing was changed"
    done
    if [[ $ACTION == uninstall ]]; then
        uninstall
        return
    fi
    check_platform
    read_keys
    install_packages
    create_user
    install_program
    install_config
    install_keys
    install_unit
    start_service
}

main
