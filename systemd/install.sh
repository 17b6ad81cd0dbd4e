#!/usr/bin/env bash
# Install the agent on a head unit (run as root):
#   systemd/install.sh WHEEL_DIR MODEL.gguf [--with-sim]
# WHEEL_DIR holds the vehicle-agent wheel and wheels of every runtime dependency
# (the aarch64 bundle ships them); MODEL.gguf has its .sha256.json manifest beside it.
set -euo pipefail
wheels=${1:?usage: install.sh WHEEL_DIR MODEL.gguf [--with-sim]}
model=${2:?usage: install.sh WHEEL_DIR MODEL.gguf [--with-sim]}
with_sim=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-/opt/vehicle-agent}
root=${DESTDIR:-}

[ -f "$model" ] || { echo "install.sh: no model at $model" >&2; exit 2; }
[ -f "$model.sha256.json" ] || { echo "install.sh: $model has no manifest $model.sha256.json" >&2; exit 2; }
speech="${model%.gguf}.speech.arpa"  # the speech language model built beside it (voice.domain)
[ -f "$speech" ] && [ -f "$speech.sha256.json" ] || { echo "install.sh: no speech language model $speech (with its manifest) beside the model" >&2; exit 2; }

python3 -m venv "$root$prefix/venv"
"$root$prefix/venv/bin/pip" install --no-index --find-links "$wheels" vehicle-agent
install -d -m 0755 "$root/etc/vehicle-agent" "$root/etc/systemd/system"
[ -f "$root/etc/vehicle-agent/config.yaml" ] || install -m 0644 "$here/config.yaml" "$root/etc/vehicle-agent/config.yaml"
install -d -m 0700 "$root/var/lib/private/vehicle-agent"
install -m 0644 "$model" "$root/var/lib/private/vehicle-agent/model.gguf"
install -m 0644 "$model.sha256.json" "$root/var/lib/private/vehicle-agent/model.gguf.sha256.json"
install -m 0644 "$speech" "$root/var/lib/private/vehicle-agent/model.speech.arpa"
install -m 0644 "$speech.sha256.json" "$root/var/lib/private/vehicle-agent/model.speech.arpa.sha256.json"
ln -sfn private/vehicle-agent "$root/var/lib/vehicle-agent"
install -m 0644 "$here/vehicle-agent.service" "$root/etc/systemd/system/"
if [ "$with_sim" = "--with-sim" ]; then
  install -m 0644 "$here/vehicle-sim.service" "$root/etc/systemd/system/"
fi
if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  [ "$with_sim" = "--with-sim" ] && systemctl enable --now vehicle-sim.service
  systemctl enable --now vehicle-agent.service
fi
echo "installed: $prefix, /etc/vehicle-agent/config.yaml, /var/lib/vehicle-agent/model.gguf"
