#!/usr/bin/env bash
# Starts or stops a real XMPP server (Prosody or ejabberd) on 127.0.0.1 for ackstorm's XMPP
# tests and load runs, with accounts registered in bulk: user1..userN, or with --prefix P the
# names a load run uses, P0..P(N-1) (ackstorm's users are `population.user_prefix` + 0..N-1;
# the prefix is `u` by default, so `--users 1000 --prefix u` registers u0..u999).
#
#   scripts/xmpp-server.sh start  prosody|ejabberd [--users N] [--prefix P]
#   scripts/xmpp-server.sh stop   prosody|ejabberd
#   scripts/xmpp-server.sh status prosody|ejabberd
#
# Needs the Debian packages: apt-get install -y prosody ejabberd (the distro's own services may
# run too: this instance uses its own ports, node name, config and data, and touches no /etc).
#
# Configuration comes from deploy/prosody/prosody.cfg.lua.in and deploy/ejabberd/*.in,
# rendered into the instance directory ${XMPP_STATE:-/tmp/ackstorm-xmpp}/<server>, which also
# holds data, logs, the pid file and certificates from a test CA (ca.crt; STARTTLS is offered,
# not required). Run as root, the server runs as the package's user (prosody / ejabberd).
#
# Environment (defaults):
#   XMPP_STATE=/tmp/ackstorm-xmpp  XMPP_DOMAIN=localhost  XMPP_PASSWORD=ackstorm (every user's)
#   PROSODY_C2S_PORT=15222  PROSODY_HTTP_PORT=15280   (WebSocket: /xmpp-websocket)
#   EJABBERD_C2S_PORT=15232 EJABBERD_HTTP_PORT=15290  (WebSocket: /ws)  EJABBERD_DIST_PORT=15299
# MUC: conference.$XMPP_DOMAIN on both.
#
# `start` is idempotent: on a running instance it registers any missing users and returns.
# XMPP lowercases user names (nodeprep), so a prefix must be lowercase.
# Registration: Prosody account files are written directly (20,000 users ~1 s, start ~0.5 s);
# ejabberd (start ~2-4 s) imports one XEP-0227 file with `ejabberdctl import_piefxis`
# (20,000 users ~3 s; prosodyctl or `ejabberdctl register` cost ~0.3-1 s per user).
set -euo pipefail
# ejabberdctl lives in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE_ROOT=${XMPP_STATE:-/tmp/ackstorm-xmpp}
DOMAIN=${XMPP_DOMAIN:-localhost}
PASSWORD=${XMPP_PASSWORD:-ackstorm}
PROSODY_C2S_PORT=${PROSODY_C2S_PORT:-15222}
PROSODY_HTTP_PORT=${PROSODY_HTTP_PORT:-15280}
EJABBERD_C2S_PORT=${EJABBERD_C2S_PORT:-15232}
EJABBERD_HTTP_PORT=${EJABBERD_HTTP_PORT:-15290}
EJABBERD_DIST_PORT=${EJABBERD_DIST_PORT:-15299}
START_TIMEOUT=${XMPP_START_TIMEOUT:-60}

die() {
    echo "xmpp-server.sh: error: $*" >&2
    exit 1
}

usage() {
    sed -n '7,9p' "$0" | sed 's/^# //' >&2
    exit 2
}

# The account names: user1..user$USERS, or $PREFIX0..$PREFIX$((USERS-1)) with --prefix.
user_names() {
    local i
    if [ -n "$PREFIX" ]; then
        for ((i = 0; i < USERS; i++)); do echo "$PREFIX$i"; done
    else
        for ((i = 1; i <= USERS; i++)); do echo "user$i"; done
    fi
}

# How the accounts are named, for messages.
users_range() {
    if [ -n "$PREFIX" ]; then echo "${PREFIX}0..$PREFIX$((USERS - 1))"; else echo "user1..user$USERS"; fi
}

is_root() { [ "$(id -u)" = 0 ]; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

read_pid() { if [ -s "$1" ]; then tr -dc '0-9' <"$1"; fi; }

# Renders template $1 to $2, replacing @STATE@ @DOMAIN@ @C2S_PORT@ @HTTP_PORT@ @DIST_PORT@.
render() {
    sed -e "s|@STATE@|$STATE|g" -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@C2S_PORT@|$C2S_PORT|g" \
        -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@DIST_PORT@|${DIST_PORT:-}|g" "$1" >"$2"
}

# A test CA (ca.crt: what clients trust) and the server's certificate for $DOMAIN and
# conference.$DOMAIN signed by it (tls.crt, tls.key, both in tls.pem); kept across restarts.
make_cert() {
    [ -s "$STATE/tls.pem" ] && [ -s "$STATE/ca.crt" ] && return
    command -v openssl >/dev/null || die "openssl is missing (apt-get install -y openssl)"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=ackstorm test CA" \
            -keyout "$STATE/ca.key" -out "$STATE/ca.crt" &&
            openssl req "${ec[@]}" -subj "/CN=$DOMAIN" -keyout "$STATE/tls.key" -out "$STATE/tls.csr" &&
            printf '%s\n' "subjectAltName=DNS:$DOMAIN,DNS:conference.$DOMAIN" "basicConstraints=CA:FALSE" \
                "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$STATE/tls.ext" &&
            openssl x509 -req -in "$STATE/tls.csr" -CA "$STATE/ca.crt" -CAkey "$STATE/ca.key" \
                -CAcreateserial -days 3650 -extfile "$STATE/tls.ext" -out "$STATE/tls.crt"
    } >"$STATE/openssl.log" 2>&1 || die "openssl could not make certificates in $STATE (see $STATE/openssl.log)"
    cat "$STATE/tls.crt" "$STATE/tls.key" >"$STATE/tls.pem"
}

# Fails if a port we need is taken by something that is not this instance.
check_ports_free() {
    local p
    for p in "$@"; do
        if port_open "$p"; then
            die "127.0.0.1:$p is already in use by another process (see: ss -ltnp 'sport = :$p');" \
                "stop it or choose other ports (see the environment variables in $0)"
        fi
    done
}

# Waits until the server ($1, log $2) listens on every port given after them.
wait_ready() {
    local name=$1 log=$2
    shift 2
    local deadline=$((SECONDS + START_TIMEOUT)) p
    for p in "$@"; do
        until port_open "$p"; do
            if ! server_alive; then
                echo "--- last lines of $log ---" >&2
                tail -n 30 "$log" >&2 2>/dev/null || true
                die "$name exited during start-up (full log: $log)"
            fi
            [ $SECONDS -lt $deadline ] || die "$name did not listen on 127.0.0.1:$p within ${START_TIMEOUT}s (log: $log)"
            sleep 0.1
        done
    done
}

# ---------------------------------------------------------------------------------------------
# Prosody

prosody_setup() {
    STATE=$STATE_ROOT/prosody C2S_PORT=$PROSODY_C2S_PORT HTTP_PORT=$PROSODY_HTTP_PORT
    PIDFILE=$STATE/prosody.pid LOG=$STATE/prosody.log
}

server_alive_prosody() { pid_alive "$(read_pid "$PIDFILE")"; }

# A name as Prosody's data paths have it: every non-alphanumeric byte escaped as %xx.
prosody_escape() {
    local s=$1 out="" c j
    for ((j = 0; j < ${#s}; j++)); do
        c=${s:j:1}
        case $c in
            [A-Za-z0-9]) out+=$c ;;
            *) out+=$(printf '%%%02x' "'$c") ;;
        esac
    done
    echo "$out"
}

# Writes the account files (internal_plain storage) of the users that are missing.
prosody_register() {
    local dir u t0=$SECONDS made=0
    local host
    host=$(prosody_escape "$DOMAIN")
    dir=$STATE/data/$host/accounts
    mkdir -p "$dir"
    local pw=${PASSWORD//\\/\\\\}
    pw=${pw//\"/\\\"}
    local file
    while read -r u; do
        file=$u
        [[ $u =~ ^[A-Za-z0-9]+$ ]] || file=$(prosody_escape "$u")
        [ -e "$dir/$file.dat" ] && continue
        printf 'return {\n\t["password"] = "%s";\n};\n' "$pw" >"$dir/$file.dat"
        made=$((made + 1))
    done < <(user_names)
    if is_root; then chown -R prosody:prosody "$STATE/data"; fi
    echo "prosody: $made new account(s) written, $(users_range) ready ($((SECONDS - t0)) s)"
}

prosody_start() {
    command -v prosody >/dev/null ||
        die "prosody is not installed (apt-get update && apt-get install -y prosody)"
    prosody_setup
    mkdir -p "$STATE/data"
    if server_alive; then
        echo "prosody: already running (pid $(read_pid "$PIDFILE"))"
        prosody_register
        report
        return
    fi
    check_ports_free "$C2S_PORT" "$HTTP_PORT"
    render "$ROOT/deploy/prosody/prosody.cfg.lua.in" "$STATE/prosody.cfg.lua"
    make_cert
    rm -f "$PIDFILE" "$STATE/prosody.sock"
    prosody_register
    local run=()
    if is_root; then
        chown -R prosody:prosody "$STATE"
        run=(setpriv --reuid=prosody --regid=prosody --init-groups --)
    fi
    # setsid: the server leaves this script's process group (CI ends the job's group). Output
    # before logging is set up goes to console.log.
    (cd "$STATE" && exec setsid "${run[@]}" prosody -F --config "$STATE/prosody.cfg.lua" \
        >"$STATE/console.log" 2>&1 </dev/null) &
    local launched=$!
    local deadline=$((SECONDS + START_TIMEOUT))
    until [ -s "$PIDFILE" ]; do
        if ! pid_alive "$launched"; then
            tail -n 30 "$STATE/console.log" "$LOG" >&2 2>/dev/null || true
            die "prosody exited during start-up (logs: $STATE/console.log, $LOG)"
        fi
        [ $SECONDS -lt $deadline ] || die "prosody wrote no pid file within ${START_TIMEOUT}s (log: $LOG)"
        sleep 0.1
    done
    wait_ready prosody "$LOG" "$C2S_PORT" "$HTTP_PORT"
    report
}

prosody_stop() {
    prosody_setup
    stop_pid prosody "$(read_pid "$PIDFILE")"
    rm -f "$PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# ejabberd

ejabberd_setup() {
    STATE=$STATE_ROOT/ejabberd C2S_PORT=$EJABBERD_C2S_PORT HTTP_PORT=$EJABBERD_HTTP_PORT
    DIST_PORT=$EJABBERD_DIST_PORT PIDFILE=$STATE/ejabberd.pid LOG=$STATE/logs/ejabberd.log
}

ctl() {
    EJABBERD_PID_PATH=$PIDFILE ejabberdctl --config-dir "$STATE" --config "$STATE/ejabberd.yml" \
        --ctl-config "$STATE/ejabberdctl.cfg" --logs "$STATE/logs" --spool "$STATE/spool" "$@"
}

server_alive_ejabberd() { pid_alive "$(read_pid "$PIDFILE")"; }

# Imports the users that do not exist yet, in one XEP-0227 file (importing an existing
# account fails the whole import).
ejabberd_register() {
    local t0=$SECONDS f=$STATE/users.xml made=0
    local pw=${PASSWORD//&/&amp;}
    pw=${pw//</&lt;}
    pw=${pw//\'/&apos;}
    declare -A have=()
    local u
    while read -r u; do
        [ -n "$u" ] && have[$u]=1
    done < <(ctl registered_users "$DOMAIN" 2>/dev/null)
    {
        echo "<?xml version='1.0' encoding='UTF-8'?>"
        echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='$DOMAIN'>"
        while read -r u; do
            [ -n "${have[$u]:-}" ] && continue
            echo "<user name='$u' password='$pw'/>"
            made=$((made + 1))
        done < <(user_names)
        echo "</host></server-data>"
    } >"$f"
    if [ $made -gt 0 ]; then
        if is_root; then chown ejabberd:ejabberd "$f"; fi
        ctl import_piefxis "$f" >/dev/null || die "ejabberdctl import_piefxis $f failed (log: $LOG)"
    fi
    echo "ejabberd: $made new account(s) imported, $(users_range) ready ($((SECONDS - t0)) s)"
}

ejabberd_start() {
    command -v ejabberdctl >/dev/null ||
        die "ejabberd is not installed (apt-get update && apt-get install -y ejabberd)"
    if ! is_root && [ "$(id -un)" != ejabberd ]; then
        die "the Debian ejabberdctl runs only as root or as user ejabberd (try: sudo $0 start ejabberd)"
    fi
    ejabberd_setup
    mkdir -p "$STATE/spool" "$STATE/logs"
    if server_alive; then
        echo "ejabberd: already running (pid $(read_pid "$PIDFILE"))"
        ejabberd_register
        report
        return
    fi
    check_ports_free "$C2S_PORT" "$HTTP_PORT" "$DIST_PORT"
    render "$ROOT/deploy/ejabberd/ejabberd.yml.in" "$STATE/ejabberd.yml"
    render "$ROOT/deploy/ejabberd/ejabberdctl.cfg.in" "$STATE/ejabberdctl.cfg"
    cp "$ROOT/deploy/ejabberd/inetrc" "$STATE/inetrc"
    make_cert
    rm -f "$PIDFILE"
    if is_root; then chown -R ejabberd:ejabberd "$STATE"; fi
    # ejabberdctl start detaches the Erlang VM (in its own session) and returns.
    ctl start || die "ejabberdctl start failed (log: $LOG)"
    local deadline=$((SECONDS + START_TIMEOUT))
    until [ -s "$PIDFILE" ] && ctl status >/dev/null 2>&1; do
        if [ -s "$PIDFILE" ] && ! server_alive; then
            tail -n 30 "$LOG" >&2 2>/dev/null || true
            die "ejabberd exited during start-up (log: $LOG)"
        fi
        [ $SECONDS -lt $deadline ] || {
            tail -n 30 "$LOG" >&2 2>/dev/null || true
            die "ejabberd did not start within ${START_TIMEOUT}s (log: $LOG)"
        }
        sleep 0.5
    done
    wait_ready ejabberd "$LOG" "$C2S_PORT" "$HTTP_PORT"
    ejabberd_register
    report
}

ejabberd_stop() {
    ejabberd_setup
    local pid
    pid=$(read_pid "$PIDFILE")
    if pid_alive "$pid"; then
        ctl stop >/dev/null 2>&1 || true
    fi
    stop_pid ejabberd "$pid"
    rm -f "$PIDFILE"
}

# ---------------------------------------------------------------------------------------------

server_alive() { "server_alive_$SERVER"; }

# Stops process $2 (TERM, then KILL after 15 s).
stop_pid() {
    local name=$1 pid=$2 i
    if ! pid_alive "$pid"; then
        echo "$name: not running"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_alive "$pid" || {
            echo "$name: stopped"
            return
        }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    echo "$name: killed (did not stop within 15 s)"
}

report() {
    local ws
    case $SERVER in
        prosody) ws=xmpp-websocket ;;
        ejabberd) ws=ws ;;
    esac
    echo "$SERVER ready: c2s 127.0.0.1:$C2S_PORT, websocket ws://127.0.0.1:$HTTP_PORT/$ws," \
        "domain $DOMAIN, MUC conference.$DOMAIN, users $(users_range) password '$PASSWORD'," \
        "state $STATE"
}

status() {
    "${SERVER}_setup"
    if server_alive; then
        echo "$SERVER: running (pid $(read_pid "$PIDFILE")), state $STATE"
    else
        echo "$SERVER: not running"
        return 3
    fi
}

[ $# -ge 2 ] || usage
ACTION=$1 SERVER=$2
shift 2
USERS=10
PREFIX=
while [ $# -gt 0 ]; do
    case $1 in
        --prefix)
            [ $# -ge 2 ] || die "--prefix needs a name"
            PREFIX=$2
            shift 2
            ;;
        --prefix=*)
            PREFIX=${1#--prefix=}
            shift
            ;;
        --users)
            [ $# -ge 2 ] || die "--users needs a number"
            USERS=$2
            shift 2
            ;;
        --users=*)
            USERS=${1#--users=}
            shift
            ;;
        *) die "unknown option $1" ;;
    esac
done
if ! [[ $USERS =~ ^[0-9]+$ ]] || [ "$USERS" -lt 1 ]; then
    die "--users must be a positive number, not '$USERS'"
fi
# User ids as ackstorm allows them ([A-Za-z0-9_.-]), lowercase as XMPP stores them.
if [ -n "$PREFIX" ] && ! [[ $PREFIX =~ ^[a-z0-9_.-]+$ ]]; then
    die "--prefix must be lowercase letters, digits, '_', '.' or '-', not '$PREFIX'"
fi
case $SERVER in
    prosody | ejabberd) ;;
    *) die "unknown server '$SERVER' (prosody or ejabberd)" ;;
esac
mkdir -p "$STATE_ROOT"
case $ACTION in
    start) "${SERVER}_start" ;;
    stop) "${SERVER}_stop" ;;
    status) status ;;
    *) usage ;;
esac
