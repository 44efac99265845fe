#!/bin/sh
# Generates the compose stack's credentials at its first start, into the git-ignored folder
# bind-mounted at /secrets (.compose-secrets/): a password per NATS user (the users of
# deploy/nats/permissions.conf), a CA, one certificate for the gRPC services and one for the
# operator's supctl (mutual TLS), one for the console, and the console's operator token.
# Nothing is printed; an existing set is kept. Runs once, as root, only to hand each file to
# its reader: the services (uid 10001) get their own folder, the operator (the folder's owner)
# gets operator/.
set -eu
dir=/secrets
umask 077
owner=$(stat -c %u:%g "$dir")

# The console's client certificate (mutual TLS to the coordinator and scheduler) and the token
# an operator signs in to it with (a copy in operator/console-token).
console_credentials() {
    ctmp=$(mktemp -d)
    mkdir -p "$dir/console"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=sup-console" \
        -keyout "$dir/console/client-key.pem" -out "$ctmp/console.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' > "$ctmp/console.ext"
    openssl x509 -req -in "$ctmp/console.csr" -CA "$dir/operator/ca.pem" -CAkey "$dir/operator/ca-key.pem" \
        -CAcreateserial -days 825 -extfile "$ctmp/console.ext" -out "$dir/console/client.pem" 2>/dev/null
    cp "$dir/operator/ca.pem" "$dir/console/ca.pem"
    openssl rand -hex 24 > "$dir/console/token"
    cp "$dir/console/token" "$dir/operator/console-token"
    rm -rf "$ctmp" "$dir/operator/ca.srl"
    chown -R 10001:10001 "$dir/console"
    chown "$owner" "$dir/operator/console-token"
    chmod 0700 "$dir/console"
}

if [ -f "$dir/.complete" ]; then
    # A set made before the console existed gains the console's credentials.
    [ -f "$dir/console/client.pem" ] || console_credentials
    echo "credentials exist in .compose-secrets; kept"
    exit 0
fi
services="coordinator provisioner scheduler health logwatch"
mkdir -p "$dir/nats" "$dir/operator" "$dir/automation"
for s in $services; do mkdir -p "$dir/$s"; done

# NATS: hex passwords need no quoting. The server's auth.conf defines them as config variables
# and then holds deploy/nats/permissions.conf (mounted at /permissions.conf), which names them
# ($SUP_NATS_<USER>_PASSWORD): one file, as nats-server resolves variables per file.
: > "$dir/nats/auth.conf"
for u in $services automation; do
    pw=$(openssl rand -hex 24)
    upper=$(echo "$u" | tr '[:lower:]' '[:upper:]')
    printf 'SUP_NATS_%s_PASSWORD: "%s"\n' "$upper" "$pw" >> "$dir/nats/auth.conf"
    printf '%s\n' "$pw" > "$dir/$u/nats.password"
done
cat /permissions.conf >> "$dir/nats/auth.conf"

# TLS: a CA, the gRPC servers' certificate (every name they are reached by) and supctl's.
tmp=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=SUP control plane compose CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/operator/ca-key.pem" -out "$dir/operator/ca.pem" 2>/dev/null
issue() { # name, extensions
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$tmp/$1-key.pem" -out "$tmp/$1.csr" 2>/dev/null
    printf '%s\n' "$2" > "$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$dir/operator/ca.pem" -CAkey "$dir/operator/ca-key.pem" \
        -CAcreateserial -days 825 -extfile "$tmp/$1.ext" -out "$tmp/$1.pem" 2>/dev/null
}
issue sup-grpc "subjectAltName=DNS:coordinator-1,DNS:coordinator-2,DNS:scheduler,DNS:health,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"
issue supctl "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
for s in coordinator scheduler health; do
    cp "$tmp/sup-grpc.pem" "$dir/$s/server.pem"
    cp "$tmp/sup-grpc-key.pem" "$dir/$s/server-key.pem"
    cp "$dir/operator/ca.pem" "$dir/$s/ca.pem"
done
cp "$tmp/supctl.pem" "$dir/operator/supctl.pem"
cp "$tmp/supctl-key.pem" "$dir/operator/supctl-key.pem"
rm -rf "$tmp" "$dir/operator/ca.srl"

console_credentials

# Each reader owns its own files; nobody else can read a key or a password.
for s in nats $services; do chown -R 10001:10001 "$dir/$s"; done
chown -R "$owner" "$dir/operator" "$dir/automation"
chmod 0755 "$dir"
chmod 0700 "$dir"/*
chmod 0644 "$dir/operator/ca.pem"
touch "$dir/.complete"
echo "credentials generated in .compose-secrets"
