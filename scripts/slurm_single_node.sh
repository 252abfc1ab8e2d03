#!/bin/bash
# Runs the Slurm recipe of docs/recipes/ on a real, single-node Slurm: sets
# one up on this Debian machine (the slurm-wlm and munge packages; needs
# root), submits the array of 4 shards and the merge job with
# --dependency=afterok, waits for them, and checks that the merged report
# holds the same runs and statistics as the same comparison run unsharded.
#
#   bash scripts/slurm_single_node.sh [path/to/pa-onnx]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/pa-onnx}")
WORK=$(mktemp -d /tmp/pa-slurm.XXXXXX)
chmod 755 "$WORK"

if ! command -v slurmctld >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: the authentication Slurm's daemons and commands share.
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --force; else create-munge-key -f; fi
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

host=$(hostname -s)
cpus=$(nproc)
mem=$(free -m | awk '/^Mem:/ {print int($2 * 0.8)}')
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=pa-onnx
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pkill -x slurmctld || true
pkill -x slurmd || true
sleep 1
slurmctld -i
slurmd
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
    sleep 1
done
sinfo

export PA_ONNX=$BIN OUT=$WORK/cluster SEEDS=8 EPOCHS=2 SHARDS=4
jid=$(sbatch --parsable --export=ALL --chdir="$PWD" --output="$WORK/shard-%a.log" docs/recipes/slurm.sbatch)
mid=$(sbatch --parsable --export=ALL --chdir="$PWD" --output="$WORK/merge.log" --dependency=afterok:"$jid" docs/recipes/slurm-merge.sbatch)
echo "submitted array $jid (4 shards) and merge $mid (afterok:$jid)"
while squeue -h -j "$jid,$mid" 2>/dev/null | grep -q .; do sleep 2; done
sacct -j "$jid,$mid" 2>/dev/null || true
for f in "$WORK"/shard-*.log "$WORK"/merge.log; do echo "== $f"; cat "$f"; done
test -s "$OUT/merged/report.json" || { echo "FAILED: no merged report"; exit 1; }

"$BIN" compare models/compare/small_cnn.onnx --data synthetic --seeds 8 --epochs 2 --threads "$cpus" \
    --quiet --out "$WORK/unsharded"
python3 - "$OUT/merged/report.json" "$WORK/unsharded/report.json" <<'PY'
import json, sys
def numbers(path):
    r = json.load(open(path))
    runs = sorted((x["arm"], x["seed"], [(e["train_loss"], e["test_loss"], e["test_acc"]) for e in x["epochs"]]) for x in r["runs"])
    return runs, r["summary"], r["missing"]
merged, unsharded = numbers(sys.argv[1]), numbers(sys.argv[2])
print(f"merged: {len(merged[0])} runs, {len(merged[2])} missing; unsharded: {len(unsharded[0])} runs")
if merged != unsharded:
    sys.exit("FAILED: the merged report differs from the unsharded one")
print("PASSED: the merged report equals the unsharded one (runs and statistics)")
PY
