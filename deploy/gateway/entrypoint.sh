#!/bin/sh
# The gateway container's entrypoint: runs `acestream-gateway "$@"` as the unprivileged user
# `gateway`, with the group of the mounted Docker socket as a supplementary group, so the gateway
# can manage its engines without being root and without anyone looking up the host's docker gid.
#
# Started as root (the image's default), it reads the socket's group and switches with setpriv,
# dropping every capability on the way (the kernel clears them when the uid leaves 0; the
# inheritable set is cleared too and no-new-privs keeps it so). Started as another user (--user,
# compose `user:`), it cannot change groups: it runs the gateway as that user and, when that user
# cannot use the socket, says which --group-add / group_add: would let it.
set -eu

RUN_AS=gateway

# The socket the gateway's Docker client will use: DOCKER_HOST's when it is a unix socket, the
# default path when DOCKER_HOST is unset, none for a TCP daemon.
docker_socket() {
    case "${DOCKER_HOST:-}" in
        "") echo /var/run/docker.sock ;;
        unix://*) echo "${DOCKER_HOST#unix://}" ;;
        *) echo "" ;;
    esac
}

say() { echo "gateway-entrypoint: $*" >&2; }

socket="$(docker_socket)"
[ -n "$socket" ] && [ -S "$socket" ] || socket=""

if [ "$(id -u)" != 0 ]; then
    if [ -n "$socket" ] && ! { [ -r "$socket" ] && [ -w "$socket" ]; }; then
        say "uid $(id -u) cannot use $socket (owner $(stat -c %u:%g "$socket")," \
            "mode $(stat -c %a "$socket")): add --group-add $(stat -c %g "$socket")" \
            "(compose: group_add) or start the container without --user"
    fi
    exec acestream-gateway "$@"
fi

groups="$RUN_AS"
if [ -n "$socket" ]; then
    groups="$RUN_AS,$(stat -c %g "$socket")"
    case "$(stat -c %A "$socket")" in
        ????rw*) ;;
        *) say "$socket (mode $(stat -c %a "$socket")) cannot be used through its group;" \
            "make it group-readable and -writable on the host (Docker's default: root:docker 660)" ;;
    esac
fi
exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --groups="$groups" --inh-caps=-all \
    --no-new-privs -- acestream-gateway "$@"
