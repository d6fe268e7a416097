# Sourced, not run: installs Debian packages with apt-get, through sudo
# unless already root. scripts/test.sh and the benchmark scripts use it
# for whatever they find missing.
apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
