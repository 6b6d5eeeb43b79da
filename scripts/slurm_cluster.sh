#!/usr/bin/env bash
# A throw-away single-node Slurm cluster (with accounting, so that sacct and submitit see job states) on a
# Debian 12 machine without systemd. For the `slurm` tests and for trying `run_all.py --cluster slurm`.
#
#   scripts/slurm_cluster.sh install   apt-get the Debian packages (slurm-wlm munge slurmdbd mariadb-server)
#   scripts/slurm_cluster.sh up        write the configs, start munged mariadbd slurmdbd slurmctld slurmd, wait
#   scripts/slurm_cluster.sh down      cancel every job, stop the daemons this script started (by their pid files)
#   scripts/slurm_cluster.sh status    daemons, sinfo, squeue
#   scripts/slurm_cluster.sh clean     down, then wipe Slurm state and the accounting database
#
# Settings (environment): SLURM_PARTITION (default debug), NODE_CPUS (default nproc; more than the real cores
# lets more tasks run at once), SLURM_WAIT_S (default 60, readiness timeout). Needs root.
set -euo pipefail

PARTITION=${SLURM_PARTITION:-debug}
NODE=$(hostname -s)
CPUS_REAL=$(nproc)
NODE_CPUS=${NODE_CPUS:-$CPUS_REAL}
WAIT_S=${SLURM_WAIT_S:-60}
ETC=/etc/slurm
LOGS=/var/log/slurm
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
DB_NAME=mmb_slurm_acct
DB_USER=slurm
DB_PASS=${SLURM_DB_PASS:-mmb-slurm}
MUNGE_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
MARIADB_SOCK=/run/mysqld/mysqld.sock
DBD_PID=/run/slurmdbd.pid
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid

say() { echo "[slurm_cluster $(date +%H:%M:%S)] $*" >&2; }
fail() { say "error: $*"; exit 1; }

# until CMD succeeds, at most $1 seconds
await() {
  local limit=$1 what=$2
  shift 2
  local t_end=$((SECONDS + limit))
  while ! "$@" >/dev/null 2>&1; do
    ((SECONDS < t_end)) || fail "gave up after ${limit}s waiting for $what"
    sleep 0.2
  done
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop the process of a pid file: TERM, wait up to 15 s, then KILL that pid
stop_pid() {
  local name=$1 file=$2 pid
  if ! alive "$file"; then
    rm -f "$file"
    return 0
  fi
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 75); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) ignored TERM; KILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  say "stopped $name (pid $pid)"
}

cmd_install() {
  [[ $(id -u) == 0 ]] || fail "run as root"
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
    && command -v munged >/dev/null; then
    say "packages already installed"
    return 0
  fi
  local t0=$SECONDS
  # another apt-get may hold the dpkg lock for a while: wait for it rather than fail
  apt-get -o DPkg::Lock::Timeout=600 update -q
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    slurm-wlm munge slurmdbd mariadb-server
  say "installed in $((SECONDS - t0)) s"
}

write_configs() {
  getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >>/etc/hosts
  local mem overrides=""
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$((mem * 9 / 10)) # a node declaring more memory than it has is drained
  ((NODE_CPUS > CPUS_REAL)) && overrides="SlurmdParameters=config_overrides"
  mkdir -p "$ETC" "$LOGS" "$CTLD_STATE" "$SLURMD_SPOOL"
  cat >"$ETC/slurm.conf" <<EOF
# written by mmbalance-bench scripts/slurm_cluster.sh: one node, no cgroups, daemons as root
ClusterName=mmbtest
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MinJobAge=30
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
$overrides
NodeName=$NODE CPUs=$NODE_CPUS RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
  chmod 600 "$ETC/slurmdbd.conf" # slurmdbd refuses a password file others can read
}

start_munge() {
  alive "$MUNGE_PID" && return 0
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  await 10 "munge" sh -c 'munge -n | unmunge'
}

start_mariadb() {
  alive "$MARIADB_PID" && return 0
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  # unix socket only, no TCP port
  nohup /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file="$MARIADB_PID" --socket="$MARIADB_SOCK" \
    >"$LOGS/mariadb.log" 2>&1 &
  await "$WAIT_S" "mariadb" mariadb -e 'select 1'
  mariadb -e "CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost'; FLUSH PRIVILEGES;"
}

node_state_fresh() { # slurmd registered after $1 (epoch seconds) and the node is idle
  local t
  t=$(scontrol show node -o "$NODE" | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
  [[ -n $t && $t != None ]] && (($(date -d "$t" +%s) >= $1 - 2)) \
    && sinfo -h -n "$NODE" -o %t | grep -qx idle
}

cmd_up() {
  [[ $(id -u) == 0 ]] || fail "run as root"
  command -v slurmctld >/dev/null || fail "Slurm is not installed: run '$0 install' first"
  local t0=$SECONDS t_slurmd=0
  write_configs
  start_munge
  start_mariadb
  alive "$DBD_PID" || slurmdbd
  await "$WAIT_S" "slurmdbd" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
  alive "$CTLD_PID" || slurmctld
  await "$WAIT_S" "slurmctld" sh -c 'scontrol ping | grep -q UP'
  if ! alive "$SLURMD_PID"; then
    t_slurmd=$(date +%s)
    slurmd
  fi
  # slurmctld may report the node idle from saved state before this slurmd registered
  await "$WAIT_S" "node $NODE idle" node_state_fresh "$t_slurmd"
  await "$WAIT_S" "sacct" sacct -n -X -S now
  say "cluster up in $((SECONDS - t0)) s (partition $PARTITION, node $NODE, $NODE_CPUS CPUs)"
}

cmd_down() {
  local t0=$SECONDS
  if alive "$CTLD_PID"; then
    # no job may outlive slurmd
    scancel --full --user=root 2>/dev/null || true
    for u in $(squeue -h -o %u 2>/dev/null | sort -u); do scancel --full --user="$u" 2>/dev/null || true; done
    local t_end=$((SECONDS + 30))
    while [[ -n $(squeue -h 2>/dev/null) ]] && ((SECONDS < t_end)); do sleep 0.5; done
  fi
  stop_pid slurmd "$SLURMD_PID"
  stop_pid slurmctld "$CTLD_PID"
  stop_pid slurmdbd "$DBD_PID"
  stop_pid mariadbd "$MARIADB_PID"
  stop_pid munged "$MUNGE_PID"
  say "cluster down in $((SECONDS - t0)) s"
}

cmd_status() {
  local name file
  for name in munged:$MUNGE_PID mariadbd:$MARIADB_PID slurmdbd:$DBD_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
    file=${name#*:}
    if alive "$file"; then echo "${name%%:*}: pid $(cat "$file")"; else echo "${name%%:*}: stopped"; fi
  done
  if alive "$CTLD_PID"; then
    sinfo
    squeue
  fi
}

cmd_clean() {
  cmd_down
  rm -rf "${CTLD_STATE:?}"/* "${SLURMD_SPOOL:?}"/*
  # job ids restart at 1 with a wiped state: drop the old accounting rows too
  if [[ -d /var/lib/mysql/$DB_NAME ]]; then
    start_mariadb
    mariadb -e "DROP DATABASE $DB_NAME"
    stop_pid mariadbd "$MARIADB_PID"
  fi
  say "state wiped"
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
