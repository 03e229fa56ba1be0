#!/usr/bin/env bash
# Installs what training the recognizer needs, from Debian's packages, when it is missing:
# python3-torch and python3-onnx (Debian's /usr/bin/python3; another python3 on the PATH may
# lack them), Pillow and NumPy, the fortune texts and the fonts the corpus config lists.
set -euo pipefail
pkgs=(python3-torch python3-onnx python3-pil python3-numpy fortunes fortunes-cs fortunes-de
	fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-noto-core
	fonts-noto-mono fonts-texgyre fonts-open-sans)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
echo "training: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
	{ $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
