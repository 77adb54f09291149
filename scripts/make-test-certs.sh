#!/usr/bin/env bash
# Makes a throwaway CA and server certificates for tests and `make run`:
#   DIR/ca.pem, DIR/ca.key                     the CA (trust ca.pem in clients)
#   DIR/server.pem, DIR/server.key             localhost, 127.0.0.1, ::1 (chain: cert + CA)
#   DIR/other.pem, DIR/other.key               other.test, *.other.test (for SNI)
# Idempotent: existing files are kept. Never commit them (DIR is under build/).
set -euo pipefail
dir="${1:-build/certs}"
mkdir -p "$dir"
cd "$dir"
[ -f server.pem ] && [ -f other.pem ] && exit 0

days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -subj "/CN=tongdao test CA" -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

issue() { # name, subject alternative names
  local name="$1" san="$2"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=${name}" \
    -keyout "${name}.key" -out "${name}.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$san" > "${name}.ext"
  openssl x509 -req -in "${name}.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "${name}.ext" -out "${name}.crt" 2>/dev/null
  cat "${name}.crt" ca.pem > "${name}.pem" # certificate, then its chain
  rm -f "${name}.csr" "${name}.ext" "${name}.crt"
}
issue server "DNS:localhost,IP:127.0.0.1,IP:::1"
issue other "DNS:other.test,DNS:*.other.test"
chmod 600 ./*.key
