# Sourced by scripts/libbpf.sh and scripts/sysroot.sh: apt with a state of its own
# in a work directory (sources, lists, caches), reaching Debian's archive for this
# machine's release; the machine's apt sources, lists, caches and dpkg architectures
# stay as they were.
#
#   private_apt WORK TYPE CODENAME RETRIES TIMEOUT [DEBARCH]
#     TYPE: deb or deb-src. Sets apt_opts, for apt-get "${apt_opts[@]}" ...
private_apt() {
  local work=$1 type=$2 codename=$3 retries=$4 timeout=$5 debarch=${6:-}
  mkdir -p "$work/lists/partial" "$work/archives/partial"
  {
    echo "$type http://deb.debian.org/debian $codename main"
    echo "$type http://deb.debian.org/debian $codename-updates main"
    echo "$type http://deb.debian.org/debian-security $codename-security main"
  } >"$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    -o "Acquire::Retries=$retries" -o "Acquire::http::Timeout=$timeout")
  [[ -z $debarch ]] || apt_opts+=(-o "APT::Architecture=$debarch" -o "APT::Architectures=$debarch")
}
