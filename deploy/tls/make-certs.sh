#!/usr/bin/env bash
# Makes the mutual-TLS material federation routers present on 8300, as `consul tls ca create` and
# `consul tls cert create -server -dc <dc>` would: one CA for every datacenter, and per datacenter a
# server certificate whose DNS SAN server.<dc>.consulate is what a router checks against the
# datacenter its peer claims (Consul's verify_server_hostname). EC P-256, like Consul's defaults.
#
#   deploy/tls/make-certs.sh DIR DC...        e.g. deploy/tls/make-certs.sh /tls dc1 dc2
#
# Compose's one-shot `certs` service runs it into the shared `tls` volume on every `up`, so it is
# idempotent: an existing CA is never replaced (that would orphan every certificate it signed), and
# a server certificate is only reissued when it is missing, no longer verifies against the CA
# (expired, or from another CA) or is about to expire.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 DIR DC..." >&2
  exit 2
fi
dir=$1
shift
for dc in "$@"; do
  # The same datacenter syntax services/lib/tls.ts reads back out of the SAN.
  if [[ ! $dc =~ ^[a-z0-9_-]+$ ]]; then
    echo "$0: datacenter \"$dc\" must be lower-case letters, digits, '-' or '_'" >&2
    exit 2
  fi
done

# Consul's defaults: the CA lives 5 years, a server certificate 1 year; one that expires within
# 30 days is reissued.
readonly CA_DAYS=1825 SERVER_DAYS=365 RENEW_BEFORE_SECONDS=$((30 * 86400))
readonly ca=$dir/consulate-agent-ca.pem ca_key=$dir/consulate-agent-ca-key.pem

mkdir -p "$dir"
# Inside $dir, so putting a file in place is a rename, atomic on the same file system.
work=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Our own config, so the extensions do not depend on the distribution's openssl.cnf.
cat >"$work/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF

server_extensions() {
  cat <<CNF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:server.$1.consulate, DNS:localhost, IP:127.0.0.1
CNF
}

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

random_serial() {
  echo "0x$(openssl rand -hex 16)"
}

# Files are written under $work and renamed into place, so an interrupted run never leaves a
# certificate without its key. Keys are 0600: the non-root user that writes them reads them.
install_pair() {
  local cert=$1 key=$2 target_cert=$3 target_key=$4
  chmod 0600 "$key"
  chmod 0644 "$cert"
  mv -f "$key" "$target_key"
  mv -f "$cert" "$target_cert"
}

if [[ -e $ca || -e $ca_key ]]; then
  if [[ ! -s $ca || ! -s $ca_key ]]; then
    echo "$0: found only one of $ca and $ca_key; restore the other or remove both to make a new CA" >&2
    exit 1
  fi
  echo "keeping the CA in $ca"
else
  new_key "$work/ca-key.pem"
  openssl req -new -x509 -config "$work/openssl.cnf" -extensions ca_ext -key "$work/ca-key.pem" \
    -subj "/CN=Consulate Agent CA" -days "$CA_DAYS" -set_serial "$(random_serial)" -sha256 -out "$work/ca.pem"
  install_pair "$work/ca.pem" "$work/ca-key.pem" "$ca" "$ca_key"
  echo "made the CA $ca"
fi

for dc in "$@"; do
  cert=$dir/$dc-server-consulate-0.pem
  key=$dir/$dc-server-consulate-0-key.pem
  if [[ -s $cert && -s $key ]] && openssl verify -CAfile "$ca" "$cert" >/dev/null 2>&1 &&
    openssl x509 -in "$cert" -noout -checkend "$RENEW_BEFORE_SECONDS" >/dev/null; then
    echo "keeping $cert"
    continue
  fi
  new_key "$work/server-key.pem"
  openssl req -new -config "$work/openssl.cnf" -key "$work/server-key.pem" -subj "/CN=server.$dc.consulate" -out "$work/server.csr"
  server_extensions "$dc" >"$work/server.ext"
  openssl x509 -req -in "$work/server.csr" -CA "$ca" -CAkey "$ca_key" -set_serial "$(random_serial)" \
    -days "$SERVER_DAYS" -sha256 -extfile "$work/server.ext" -out "$work/server.pem"
  install_pair "$work/server.pem" "$work/server-key.pem" "$cert" "$key"
  echo "made $cert"
done
