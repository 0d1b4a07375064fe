# shellcheck shell=bash
# Sourced by run.sh and ab.sh: what a process and the whole machine spent during one load run.
#
# On these 2-core VMs the hypervisor takes a varying share of the CPUs ("steal" in /proc/stat:
# up to 25% during a wrk run, 2 to 7% with the machine idle; docs/benchmarks.md, "How to read
# the figures"), and the same build's figures move with it between runs and between machines.
# Every run therefore prints the machine's shares next to its own figures, so a slow run can be
# told from a slow build.

CLK_TCK="$(getconf CLK_TCK)"

# utime + stime of a process, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal
machine_ticks() { awk '/^cpu / {print $2, $3, $4, $5, $6, $7, $8, $9; exit}' /proc/stat; }

# per-call CPU of `ticks` over `calls`, in µs
per_call() { awk -v t="$1" -v n="$2" -v k="$CLK_TCK" 'BEGIN {printf "%.1f", t * 1000000 / k / n}'; }

# "busy X%, steal Y%, idle Z%" of the whole machine between two machine_ticks readings
machine_shares() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    for (i = 1; i <= 8; i++) { d[i] = y[i] - x[i]; total += d[i] }
    if (total <= 0) { print "machine: no ticks"; exit }
    busy = d[1] + d[2] + d[3] + d[6] + d[7];
    printf "machine: busy %.0f%%, steal %.0f%%, idle %.0f%%", 100 * busy / total, 100 * d[8] / total, 100 * (d[4] + d[5]) / total
  }'
}
