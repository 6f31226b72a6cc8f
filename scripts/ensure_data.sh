#!/usr/bin/env bash
# Make sure a named dataset is on this machine: where it already is, nothing happens; else Debian's package
# when we are root with apt-get; else torchvision's download. Failing all, ganforge's error says what to do.
set -euo pipefail
ganforge=$1
name=$2
declare -A debian=([fashion-mnist]=dataset-fashion-mnist [emoji]="fonts-noto-color-emoji unicode-data")
if "$ganforge" data list | grep -E "^$name " | grep -q "not found"; then
  pkg=${debian[$name]:-}
  if [ -n "$pkg" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "$name: not found; installing Debian's $pkg"
    # shellcheck disable=SC2086  # $pkg may name several packages
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkg >/dev/null || true
  fi
  "$ganforge" data prepare "$name"
fi
