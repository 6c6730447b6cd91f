#!/usr/bin/env bash
# Install mira-agent as a systemd service on Raspberry Pi OS Bookworm (64-bit). Safe to run again:
# it upgrades the program and keeps the config and keys already there.
#
#   sudo systemd/install.sh                          install or upgrade, ask for the key, start
#   sudo MIRA_API_KEY=... systemd/install.sh         take the key from the environment
#   sudo systemd/install.sh --key-stdin < key.txt    take the key from standard input
#   sudo systemd/install.sh --uninstall [--purge]    remove it (--purge: config, keys, user too)
#
# Options:
#   --no-start      install and enable, but do not (re)start the service now
#   --source DIR    the mira-agent source tree (default: the folder above this script)
#   --root DIR      write every file under DIR instead of /; commands that would change this
#                   machine (apt-get, useradd, pip, systemctl start, ...) are printed, not run
# Environment:
#   MIRA_API_KEY            the Mira API key (never pass it as an argument: argv is public)
#   PORCUPINE_ACCESS_KEY    optional Picovoice AccessKey for the porcupine wake engine
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
              libsystemd-dev alsa-utils libasound2-plugins)

ROOT=${DESTDIR:-/}
SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY=${MIRA_INSTALL_DRY:-0}
ACTION=install
PURGE=0
START=1
KEY_STDIN=0

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
        --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --source) [[ $# -ge 2 ]] || die "--source needs a directory"; SOURCE=$2; shift ;;
        --source=*) SOURCE=${1#--source=} ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

ROOT=${ROOT%/}
if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || die "--root $ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT == / ]] && ROOT=
fi
# Files go under $ROOT; commands act on this machine, so with a root they are only printed.
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

check_platform() {
    [[ -z $ROOT ]] || return 0
    local codename=unknown arch
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091
        codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-unknown}")
    fi
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    if [[ $codename != bookworm || $arch != arm64 ]]; then
        say "warning: made for Raspberry Pi OS Bookworm 64-bit (arm64), this is $codename/$arch; continuing"
    fi
}

install_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
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

install_program() {
    local venv=$PREFIX/venv
    mkdir -p "$ROOT$PREFIX"
    if [[ ! -x $ROOT$venv/bin/python ]]; then
        say "creating the virtual environment $venv"
        run python3 -m venv "$ROOT$venv"
    fi
    say "installing mira-agent from $SOURCE into $venv (this takes a while on a Pi)"
    run "$ROOT$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip wheel
    run "$ROOT$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade "${SOURCE}[device]"
    # The unit's Documentation= points here.
    rm -rf "$ROOT$PREFIX/doc"
    mkdir -p "$ROOT$PREFIX/doc"
    if [[ -d $SOURCE/hardware ]]; then
        cp -R "$SOURCE/hardware" "$ROOT$PREFIX/doc/hardware"
    fi
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

HAVE_KEY=0
install_keys() {
    local keyfile=$ROOT$ETC/mira-api-key key=${MIRA_API_KEY:-}
    if [[ $KEY_STDIN == 1 ]]; then
        IFS= read -r key || [[ -n $key ]] || die "--key-stdin: nothing on standard input"
    fi
    if [[ -z $key && ! -s $keyfile && -t 0 ]]; then
        IFS= read -r -s -p "Mira API key (input hidden, empty to skip): " key
        printf '\n'
    fi
    key=${key//[$'\r\n\t ']/}
    if [[ -n $key ]]; then
        write_secret "$keyfile" "$key"
        say "stored the API key in $ETC/mira-api-key (mode 0600, passed to the service as a credential)"
    elif [[ -s $keyfile ]]; then
        chmod 0600 "$keyfile"
        say "kept the API key in $ETC/mira-api-key"
    else
        say "no API key given: put it in $ETC/mira-api-key (mode 0600, owner root)"
    fi
    if [[ -s $keyfile ]]; then
        HAVE_KEY=1
    fi
    if [[ -n ${PORCUPINE_ACCESS_KEY:-} ]]; then
        write_secret "$ROOT$ETC/porcupine-access-key" "$PORCUPINE_ACCESS_KEY"
        say "stored the Porcupine AccessKey in $ETC/porcupine-access-key"
    fi
}

# Enabling offline only makes a symlink inside the root, so it is really done, not printed.
# Without systemctl (a bare build container) the same WantedBy= link is made by hand.
WANTS=multi-user.target.wants
enable_in_root() {
    if command -v systemctl >/dev/null; then
        systemctl --root="$ROOT" --quiet enable "$SERVICE"
    else
        mkdir -p "$ROOT$UNIT_DIR/$WANTS"
        ln -sfn "$UNIT_DIR/$SERVICE" "$ROOT$UNIT_DIR/$WANTS/$SERVICE"
    fi
}

disable_in_root() {
    if command -v systemctl >/dev/null; then
        systemctl --root="$ROOT" --quiet disable "$SERVICE"
    else
        rm -f "$ROOT$UNIT_DIR/$WANTS/$SERVICE"
    fi
}

install_unit() {
    mkdir -p "$ROOT$UNIT_DIR"
    install -m 0644 "$SOURCE/systemd/$SERVICE" "$ROOT$UNIT_DIR/$SERVICE"
    if [[ -n $ROOT ]]; then
        enable_in_root
    else
        run systemctl daemon-reload
        run systemctl --quiet enable "$SERVICE"
    fi
    if [[ $START == 0 ]]; then
        say "installed and enabled; not started (--no-start)"
    elif [[ $HAVE_KEY == 0 ]]; then
        say "installed and enabled; start it once the key is in place: systemctl start $SERVICE"
    else
        run systemctl restart "$SERVICE"
        if [[ $DRY == 1 ]]; then
            say "dry run: nothing was started"
            return
        fi
        say "started. Check it with: systemctl status $SERVICE; journalctl -u $SERVICE -f;" \
            "sudo -u $SERVICE_USER $PREFIX/venv/bin/mira-agent check --config $ETC/agent.toml"
    fi
}

uninstall() {
    say "removing $SERVICE and $PREFIX"
    if [[ -n $ROOT ]]; then
        if [[ -e $ROOT$UNIT_DIR/$SERVICE ]]; then
            disable_in_root
        fi
    else
        run systemctl --quiet disable --now "$SERVICE" || true
    fi
    rm -f "$ROOT$UNIT_DIR/$SERVICE"
    [[ -n $ROOT ]] || run systemctl daemon-reload
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
    for f in config/agent.toml "systemd/$SERVICE" pyproject.toml; do
        [[ $ACTION == uninstall || -f $SOURCE/$f ]] ||
            die "$SOURCE/$f is missing: run this script from a mira-agent checkout (or pass --source)"
    done
    if [[ $ACTION == uninstall ]]; then
        uninstall
        return
    fi
    check_platform
    install_packages
    create_user
    install_program
    install_config
    install_keys
    install_unit
}

main
