#!/usr/bin/env bash
# Installs the ONNX Runtime library and the models of the OCR function:
#
#   $DEST/onnxruntime/libonnxruntime.so.1   (ONNX Runtime 1.30.0, CPU, linux-x64)
#   $DEST/ocr/ch_PP-OCRv4_det_infer.onnx, ch_PP-OCRv4_rec_infer.onnx,
#             ch_ppocr_mobile_v2.0_cls_infer.onnx, ppocr_keys_v1.txt, MODELS.md  (PP-OCRv4)
#   $DEST/ocr/pero-latin-rec-int8.onnx (the default), pero-latin-rec.onnx (float), pero-latin.dict,
#             pero-latin.lm.gz (the character language model the decoding reads with), MODEL_CARD.md
#             (the default recognizer, trained by this project: copied from training/model)
#
# DEST defaults to models/ at the repository root (git-ignored). The files are copied from
# ../shared/assets when that exists (SHARED_ASSETS overrides the path), otherwise downloaded
# from their public release locations with curl. Every file is checked against
# scripts/models.sha256; a mismatch removes the file and fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${DEST:-$root/models}
shared=${SHARED_ASSETS:-$root/../shared/assets}
sums=$root/scripts/models.sha256

# Public release locations (override to use a mirror).
ORT_VERSION=${ORT_VERSION:-1.30.0}
ORT_URL=${ORT_URL:-https://github.com/microsoft/onnxruntime/releases/download/v$ORT_VERSION/onnxruntime-linux-x64-$ORT_VERSION.tgz}
# PP-OCRv4 in ONNX as packaged by github.com/gutenye/ocr (MIT; models Apache-2.0 from PaddleOCR).
MODELS_URL=${MODELS_URL:-https://media.githubusercontent.com/media/gutenye/ocr/1f3d9fd055b968b7586f3ebe7acac277ffaf8a9e/assets}

want_sum() { awk -v f="$1" '$2 == f {print $1}' "$sums"; }

verify() { # verify REL: checks $dest/REL against the pinned sum
	local rel=$1 want got
	want=$(want_sum "$rel")
	got=$(sha256sum "$dest/$rel" | cut -d' ' -f1)
	if [ "$want" != "$got" ]; then
		rm -f "$dest/$rel"
		echo "models: $rel: sha256 $got, want $want (removed)" >&2
		echo "hint: the upstream file changed or the download was cut; check the source, then update scripts/models.sha256" >&2
		return 1
	fi
}

installed() { # installed REL: present and verified already
	[ -f "$dest/$1" ] && [ "$(sha256sum "$dest/$1" | cut -d' ' -f1)" = "$(want_sum "$1")" ]
}

fetch() { # fetch URL OUT
	curl -fL --retry 3 --connect-timeout 20 -o "$2.part" "$1" && mv "$2.part" "$2"
}

mkdir -p "$dest/onnxruntime" "$dest/ocr"
models=(ch_PP-OCRv4_det_infer.onnx ch_PP-OCRv4_rec_infer.onnx ch_ppocr_mobile_v2.0_cls_infer.onnx ppocr_keys_v1.txt)

if [ -d "$shared" ]; then
	echo "models: copying from $shared"
	install -m 0644 "$shared/onnxruntime/linux-x64/libonnxruntime.so.1" "$dest/onnxruntime/libonnxruntime.so.1"
	for f in "${models[@]}" MODELS.md; do
		install -m 0644 "$shared/models/pp-ocrv4/$f" "$dest/ocr/$f"
	done
else
	command -v curl >/dev/null || { echo "models: curl is needed to download the models" >&2; exit 1; }
	if ! installed onnxruntime/libonnxruntime.so.1; then
		echo "models: downloading $ORT_URL"
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		fetch "$ORT_URL" "$tmp/ort.tgz"
		tar -xzf "$tmp/ort.tgz" -C "$tmp"
		lib=$(find "$tmp" -name "libonnxruntime.so.$ORT_VERSION" -print -quit)
		[ -n "$lib" ] || { echo "models: libonnxruntime.so.$ORT_VERSION not in $ORT_URL" >&2; exit 1; }
		install -m 0644 "$lib" "$dest/onnxruntime/libonnxruntime.so.1"
	fi
	for f in "${models[@]}"; do
		installed "ocr/$f" && continue
		echo "models: downloading $MODELS_URL/$f"
		fetch "$MODELS_URL/$f" "$dest/ocr/$f"
	done
fi

for f in pero-latin-rec-int8.onnx pero-latin-rec.onnx pero-latin.dict pero-latin.lm.gz; do
	install -m 0644 "$root/training/model/$f" "$dest/ocr/$f"
done
install -m 0644 "$root/training/MODEL_CARD.md" "$dest/ocr/MODEL_CARD.md"

status=0
while read -r _ rel; do
	case $rel in ''|\#*) continue ;; esac
	verify "$rel" || status=1
done < <(grep -v '^#' "$sums")
[ $status = 0 ] || exit $status
echo "models: ready in $dest (runtime: $dest/onnxruntime/libonnxruntime.so.1, set PERO_ORT_LIB to use another)"
