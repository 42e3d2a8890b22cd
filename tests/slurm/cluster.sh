#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, in a folder of its own, for the `slurm` test tier.
#
#   tests/slurm/cluster.sh up   DIR   # start munged, MariaDB, slurmdbd, slurmctld, slurmd
#   tests/slurm/cluster.sh down DIR   # cancel its jobs, then stop exactly the daemons `up`
#                                     # started (by recorded pid)
#   tests/slurm/cluster.sh env  DIR   # print the `export SLURM_CONF=...` line for clients
#
# Needs the Debian packages slurm-wlm, slurmdbd and mariadb-server (root, no systemd needed).
# Every daemon writes its pid file and log under DIR; `down` never stops anything by name.
set -euo pipefail

usage() { echo "usage: $0 up|down|env DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
etc=$dir/etc; run=$dir/run; log=$dir/log; pids=$dir/pids

die() { echo "slurm cluster: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS LOGFILE DESCRIPTION COMMAND...
  local seconds=$1 logfile=$2 what=$3; shift 3
  for _ in $(seq $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "slurm cluster: $what did not come up within ${seconds}s; its log: $logfile" >&2
  tail -n 20 "$logfile" >&2 2>/dev/null || true
  "$0" down "$dir" >/dev/null 2>&1 || true
  exit 1
}

stop_pidfile() {  # stop the process recorded in a pid file, TERM then KILL
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

cancel_jobs() {
  # Every job of this private cluster was submitted to it by its users here: cancel them all
  # (by job id) and give them KillWait to end, so no training process outlives the cluster.
  [ -f "$etc/slurm.conf" ] && [ -f "$pids/slurmctld.pid" ] || return 0
  kill -0 "$(cat "$pids/slurmctld.pid")" 2>/dev/null || return 0
  export SLURM_CONF=$etc/slurm.conf
  local ids
  ids=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || return 0
  [ -n "${ids// /}" ] || return 0
  echo "slurm cluster: cancelling jobs $ids"
  # shellcheck disable=SC2086 # one argument per job id
  timeout 10 scancel $ids || true
  for _ in $(seq 200); do
    [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  echo "slurm cluster: jobs still ending after 20 s: $(squeue -h -o %A | tr '\n' ' ')" >&2
}

down() {
  cancel_jobs
  # reverse start order; each pid came from the daemon's own pid file under $pids
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    stop_pidfile "$pids/$name.pid"
  done
  echo "slurm cluster: down ($dir)"
}

up() {
  local missing=()
  for cmd in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sbatch sacct; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing commands: ${missing[*]}. Install: apt-get install -y slurm-wlm slurmdbd mariadb-server"
  fi
  [ -r /etc/munge/munge.key ] || die "no /etc/munge/munge.key (the munge package creates it)"
  if [ -f "$pids/slurmctld.pid" ] && kill -0 "$(cat "$pids/slurmctld.pid")" 2>/dev/null; then
    die "a cluster is already running in $dir (run: $0 down $dir)"
  fi

  mkdir -p "$etc" "$run" "$log" "$pids" "$dir/state" "$dir/spool" "$dir/munge" "$dir/mysql"
  chmod 755 "$dir" "$run" "$pids"
  chown munge:munge "$dir/munge"; chmod 0755 "$dir/munge"

  local mysql_port ctld_port slurmd_port dbd_port cpus mem
  mysql_port=$(free_port); ctld_port=$(free_port); slurmd_port=$(free_port); dbd_port=$(free_port)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  local munge_socket=$dir/munge/munge.socket.2

  # 1. munge, as user munge
  runuser -u munge -- munged --force --socket="$munge_socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" \
    || die "munged failed to start; its log: $dir/munge/munged.log"
  wait_for 10 "$dir/munge/munged.log" munged test -S "$munge_socket"
  cp "$dir/munge/munged.pid" "$pids/munged.pid"

  # 2. MariaDB on 127.0.0.1 only, no grant tables (a throwaway database for accounting)
  if [ ! -d "$dir/mysql/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/mysql" --user=root --auth-root-authentication-method=normal \
      >"$log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; its log: $log/mariadb-install.log"
  fi
  nohup mariadbd --no-defaults --datadir="$dir/mysql" --user=root --bind-address=127.0.0.1 \
    --port="$mysql_port" --socket="$run/mysqld.sock" --pid-file="$pids/mariadbd.pid" \
    --skip-grant-tables --log-error="$log/mariadbd.log" >/dev/null 2>&1 &
  wait_for 30 "$log/mariadbd.log" MariaDB mariadb --no-defaults --socket="$run/mysqld.sock" -e 'select 1'

  # 3. slurmdbd (its config is read from the folder of $SLURM_CONF and must be mode 600)
  cat >"$etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$munge_socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$pids/slurmdbd.pid
LogFile=$log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$mysql_port
StorageUser=root
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$etc/slurmdbd.conf"

  cat >"$etc/slurm.conf" <<CONF
ClusterName=gsamrepro
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
KillWait=2
ReturnToService=2
JobRequeue=1
MinJobAge=600
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$pids/slurmctld.pid
SlurmdPidFile=$pids/slurmd.pid
SlurmctldLogFile=$log/slurmctld.log
SlurmdLogFile=$log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStoragePass=$munge_socket
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$etc/slurm.conf
  echo "export SLURM_CONF=$etc/slurm.conf" >"$dir/env.sh"

  slurmdbd >>"$log/slurmdbd.log" 2>&1 || die "slurmdbd failed to start; its log: $log/slurmdbd.log"
  wait_for 30 "$log/slurmdbd.log" slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$dbd_port"

  # 4. slurmctld, then slurmd
  slurmctld -i >>"$log/slurmctld.log" 2>&1 || die "slurmctld failed to start; its log: $log/slurmctld.log"
  wait_for 30 "$log/slurmctld.log" slurmctld scontrol ping
  slurmd >>"$log/slurmd.log" 2>&1 || die "slurmd failed to start; its log: $log/slurmd.log"
  wait_for 60 "$log/slurmd.log" "the node (idle)" bash -c \
    "sinfo -h -N -o '%T' | grep -qE '^(idle|mixed|allocated)'"
  echo "slurm cluster: up in $dir ($cpus CPUs); clients need: export SLURM_CONF=$etc/slurm.conf"
}

case $action in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$etc/slurm.conf" ;;
  *) usage ;;
esac
