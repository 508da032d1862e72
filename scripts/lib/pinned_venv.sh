# A Python environment of pinned PyPI packages, made once (sourced by torch2_env.sh and mkl_env.sh).
#   engine_pinned_venv VENV STAMP LABEL SIZE CHECK HINT -- PACKAGES...
# Returns at once when VENV/STAMP records exactly PACKAGES; otherwise creates VENV (a plain venv of
# /usr/bin/python3) if needed, pip-installs PACKAGES, runs `CHECK VENV` (a shell function that proves the
# environment works, non-zero when it does not) and only then writes the stamp. LABEL and SIZE name the
# environment in the one line it prints while setting up; HINT is added to the pip failure's message.
engine_pinned_venv() {
  local venv="$1" stamp="$1/$2" label="$3" size="$4" check="$5" hint="$6"
  shift 7  # the six arguments and --
  local want
  want="$(printf '%s\n' "$@")"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "setting up $label from PyPI in $venv ($*; about $size)"
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv" || {
      echo "error: /usr/bin/python3 -m venv $venv failed (is python3-venv installed?)" >&2
      return 1
    }
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input "$@" || {
    echo "error: pip install into $venv failed; check access to PyPI and the free disk ($size), or delete" \
         "$venv and retry${hint:+; $hint}" >&2
    return 1
  }
  "$check" "$venv" || return 1
  printf '%s' "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
}
