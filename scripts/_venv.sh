# Sourced by scripts/run and scripts/test: make .venv and install airq_nb into it.
# The install is skipped when pyproject.toml has not changed since the last one and that
# one included the extras asked for (a stamp in .venv), so a second run starts at once.
ensure_venv() {
    local extras="$1"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    local stamp=".venv/.airq_nb-install" hash
    hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
    local installed_hash="" installed_extras=""
    [ -f "$stamp" ] && read -r installed_hash installed_extras < "$stamp"
    if [ "$installed_hash" = "$hash" ] && { [ -z "$extras" ] || [ "$installed_extras" = "$extras" ]; }; then
        return
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    echo "$hash $extras" > "$stamp"
}
