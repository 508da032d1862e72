#!/usr/bin/env bash
# Fills third_party_cache/ (ignored by git) from this build machine with what a GPU machine without network
# may lack, in the layout scripts/gpu_check.sh looks for by default:
#   third_party_cache/stb/include/stb/{stb_image.h,stb_image_write.h,stb_truetype.h}   (libstb-dev)
#   third_party_cache/nlohmann_json/include/nlohmann/                                  (nlohmann-json3-dev)
#   third_party_cache/cli11/include/CLI/                                               (libcli11-dev)
#   third_party_cache/fonts/DejaVuSans.ttf                                             (fonts-dejavu-core)
#   third_party_cache/googletest/                        (googletest's source tree, /usr/src/googletest)
# Copy the repository with third_party_cache/ to the GPU machine and run scripts/gpu_check.sh there: each
# piece is used only where that machine lacks the package (about 8 MB in all).
# Usage: scripts/third_party_cache.sh [--check]   (--check: say what is missing, copy nothing)
# Exit status: 0 when every piece is in place, 1 when one is missing on this machine too (install the
# Debian package named, e.g. with scripts/test.sh, which installs them all).
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "third_party_cache.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

CACHE=third_party_cache
status=0

# bring SOURCE DESTINATION PACKAGE: copies a file or folder unless the destination is already there.
bring() {
  local source=$1 destination=$2 package=$3
  if [ -e "$destination" ]; then
    echo "have     $destination"
  elif [ ! -e "$source" ]; then
    echo "missing  $source on this machine: install the Debian package $package" >&2
    status=1
  elif [ "$check_only" -eq 1 ]; then
    echo "absent   $destination (from $source)"
  else
    mkdir -p "$(dirname "$destination")"
    cp -r "$source" "$destination"
    echo "copied   $source -> $destination"
  fi
}

for header in stb_image.h stb_image_write.h stb_truetype.h; do
  bring "/usr/include/stb/$header" "$CACHE/stb/include/stb/$header" libstb-dev
done
bring /usr/include/nlohmann "$CACHE/nlohmann_json/include/nlohmann" nlohmann-json3-dev
bring /usr/include/CLI "$CACHE/cli11/include/CLI" libcli11-dev
bring /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$CACHE/fonts/DejaVuSans.ttf" fonts-dejavu-core
bring /usr/src/googletest "$CACHE/googletest" googletest
exit "$status"
