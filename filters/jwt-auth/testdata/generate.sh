#!/usr/bin/env bash
# Regenerates the jwt-auth test keys and their public JWKS with openssl.
#
#   rsa.pem        RSA 2048 private key (PKCS#8), for RS256/384/512 and PS256/384/512, kid "rsa-1"
#   ec256.pem      EC P-256 private key (PKCS#8), for ES256, kid "ec256-1"
#   ec384.pem      EC P-384 private key (PKCS#8), for ES384, kid "ec384-1"
#   ed25519.pem    Ed25519 private key (PKCS#8), for EdDSA, kid "ed25519-1"
#   <name>.pub.pem the matching public key (SPKI)
#   <name>.jwks.json a JWKS with that one public key
#   jwks.json      a JWKS with all four public keys
#   hs.secret      64 ASCII hex characters, used as a UTF-8 HMAC secret (HS256/384/512),
#                  e.g. "secret": {"inline": "<contents>"}; no trailing newline
#
# The RSA JWK has no "alg" (one key serves RS* and PS*); the others carry theirs.
# Native tests (src/tests/) and the Envoy integration tests read these files;
# after regenerating, run `cargo test -p jwt-auth`.
#
# Usage: filters/jwt-auth/testdata/generate.sh   (needs openssl >= 1.1.1 and coreutils)
set -euo pipefail
cd "$(dirname "$0")"

b64url() { basenc --base64url -w0 | tr -d '='; }
hex_to_bin() { local hex; hex=$(cat); printf '%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')"; }

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
for k in rsa ec256 ec384 ed25519; do
  openssl pkey -in "$k.pem" -pubout -out "$k.pub.pem"
done

n=$(openssl rsa -in rsa.pem -noout -modulus 2>/dev/null | cut -d= -f2 | hex_to_bin | b64url)
e=$(openssl rsa -in rsa.pem -noout -text 2>/dev/null | grep -q 'publicExponent: 65537' && echo AQAB)
[ "$e" = AQAB ] || { echo "unexpected RSA exponent" >&2; exit 1; }

# The uncompressed EC point 04||x||y and the Ed25519 key are the last bytes of the SPKI DER.
ec_xy() { # file, coordinate size
  local der; der=$(mktemp)
  openssl pkey -in "$1" -pubout -outform DER -out "$der"
  x=$(tail -c $((2 * $2)) "$der" | head -c "$2" | b64url)
  y=$(tail -c "$2" "$der" | b64url)
  rm -f "$der"
}
ec_xy ec256.pem 32; x256=$x; y256=$y
ec_xy ec384.pem 48; x384=$x; y384=$y
x25519=$(openssl pkey -in ed25519.pem -pubout -outform DER | tail -c 32 | b64url)

rsa_jwk="{\"kty\":\"RSA\",\"use\":\"sig\",\"kid\":\"rsa-1\",\"n\":\"$n\",\"e\":\"$e\"}"
ec256_jwk="{\"kty\":\"EC\",\"use\":\"sig\",\"kid\":\"ec256-1\",\"alg\":\"ES256\",\"crv\":\"P-256\",\"x\":\"$x256\",\"y\":\"$y256\"}"
ec384_jwk="{\"kty\":\"EC\",\"use\":\"sig\",\"kid\":\"ec384-1\",\"alg\":\"ES384\",\"crv\":\"P-384\",\"x\":\"$x384\",\"y\":\"$y384\"}"
ed_jwk="{\"kty\":\"OKP\",\"use\":\"sig\",\"kid\":\"ed25519-1\",\"alg\":\"EdDSA\",\"crv\":\"Ed25519\",\"x\":\"$x25519\"}"

printf '{"keys":[%s]}\n' "$rsa_jwk" > rsa.jwks.json
printf '{"keys":[%s]}\n' "$ec256_jwk" > ec256.jwks.json
printf '{"keys":[%s]}\n' "$ec384_jwk" > ec384.jwks.json
printf '{"keys":[%s]}\n' "$ed_jwk" > ed25519.jwks.json
printf '{"keys":[%s,%s,%s,%s]}\n' "$rsa_jwk" "$ec256_jwk" "$ec384_jwk" "$ed_jwk" > jwks.json

openssl rand -hex 32 | tr -d '\n' > hs.secret
chmod 644 ./*.pem
echo "regenerated $(pwd)"
